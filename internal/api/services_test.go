package api_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

func TestDHCP(t *testing.T) {
	b := create(t, "/bridges", map[string]any{"name": "dhcp"})
	s := create(t, b["dhcpSubnets"].(string), map[string]any{
		"subnetPrefix": "10.0.0.0", "subnetLength": 24, "defaultGateway": "10.0.0.1",
		"dnsServerAddrs": []string{"8.8.8.8"}, "opt121Routes": []any{map[string]any{"destinationPrefix": "10.9.0.0", "destinationLength": 16, "gatewayAddr": "10.0.0.254"}},
	})
	if s["uri"] != b["dhcpSubnets"].(string)+"/10.0.0.0_24" || s["enabled"] != true {
		t.Errorf("subnet %v", s)
	}
	checkKeys(t, s, []string{"subnetPrefix", "subnetLength", "defaultGateway", "serverAddr", "dnsServerAddrs",
		"interfaceMTU", "opt121Routes", "enabled", "uri", "hosts"})
	expect(t, do(t, "POST", b["dhcpSubnets"].(string), map[string]any{"subnetPrefix": "10.0.0.0", "subnetLength": 24}), 409)
	expectViolation(t, do(t, "POST", b["dhcpSubnets"].(string), map[string]any{"subnetLength": 24}), "subnetPrefix")
	h := create(t, s["hosts"].(string), map[string]any{"macAddr": "02:00:00:00:00:0A", "ipAddr": "10.0.0.10", "name": "vm"})
	if h["uri"] != s["hosts"].(string)+"/02:00:00:00:00:0A" || h["extraDhcpOpts"] == nil {
		t.Errorf("dhcp host %v", h)
	}
	expect(t, do(t, "POST", s["hosts"].(string), map[string]any{"macAddr": "02:00:00:00:00:0a", "ipAddr": "10.0.0.11"}), 409)
	expectViolation(t, do(t, "POST", s["hosts"].(string), map[string]any{"macAddr": "nope", "ipAddr": "10.0.0.11"}), "macAddr")
	// Extra options the agents could not encode are refused, each named.
	expectViolation(t, do(t, "POST", s["hosts"].(string), map[string]any{"macAddr": "02:00:00:00:00:0b", "ipAddr": "10.0.0.11",
		"extraDhcpOpts": []any{map[string]any{"optName": "mtu", "optValue": "1400"},
			map[string]any{"optName": "no-such-option", "optValue": "1"}}}), "extraDhcpOpts[1]")
	expectViolation(t, do(t, "POST", s["hosts"].(string), map[string]any{"macAddr": "02:00:00:00:00:0b", "ipAddr": "10.0.0.11",
		"extraDhcpOpts": []any{map[string]any{"optName": "dns-server", "optValue": "10.0.0.300"}}}), "extraDhcpOpts[0]")
	create(t, s["hosts"].(string), map[string]any{"macAddr": "02:00:00:00:00:0b", "ipAddr": "10.0.0.11",
		"extraDhcpOpts": []any{map[string]any{"optName": "mtu", "optValue": "1400"}}})
	expect(t, do(t, "PUT", h["uri"].(string), map[string]any{"macAddr": "02:00:00:00:00:0A", "ipAddr": "10.0.0.12"}), 204)
	if got := expect(t, do(t, "GET", h["uri"].(string), nil), 200).obj(t); got["ipAddr"] != "10.0.0.12" {
		t.Errorf("host after PUT %v", got)
	}
	expect(t, do(t, "PUT", s["uri"].(string), map[string]any{"subnetPrefix": "10.0.0.0", "subnetLength": 24, "enabled": false}), 204)
	got := expect(t, do(t, "GET", s["uri"].(string), nil), 200).obj(t)
	if got["enabled"] != false || got["defaultGateway"] != nil {
		t.Errorf("subnet after PUT %v", got)
	}
	if l := expect(t, do(t, "GET", s["hosts"].(string), nil), 200).list(t); len(l) != 2 {
		t.Errorf("PUT of the subnet lost its hosts: %v", l)
	}
	expect(t, do(t, "DELETE", h["uri"].(string), nil), 204)
	expect(t, do(t, "GET", h["uri"].(string), nil), 404)
	expect(t, do(t, "DELETE", s["uri"].(string), nil), 204)
	expect(t, do(t, "GET", s["uri"].(string), nil), 404)
}

func TestMACAndARPTables(t *testing.T) {
	b := create(t, "/bridges", map[string]any{"name": "tables"})
	p := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	vp := create(t, b["ports"].(string), map[string]any{"type": "Bridge", "vlanId": 10})
	other := create(t, "/bridges", map[string]any{"name": "other"})
	op := create(t, other["ports"].(string), map[string]any{"type": "Bridge"})
	mac := b["macTable"].(string)
	e := create(t, mac, map[string]any{"macAddr": "02:00:00:00:00:01", "portId": id(p)})
	if e["uri"] != mac+"/02-00-00-00-00-01_"+id(p) || e["vlanId"] != float64(0) {
		t.Errorf("mac entry %v", e)
	}
	expect(t, do(t, "POST", mac, map[string]any{"macAddr": "02:00:00:00:00:02", "portId": id(op)}), 400)
	expect(t, do(t, "POST", mac, map[string]any{"macAddr": "02:00:00:00:00:02", "portId": id(vp)}), 400)
	expect(t, do(t, "POST", mac, map[string]any{"macAddr": "02-00", "portId": id(p)}), 400)
	expect(t, do(t, "POST", mac, map[string]any{"macAddr": "02:00:00:00:00:02", "portId": uuid.NewString()}), 404)
	vlanMAC := strings.Replace(b["vlanMacTableTemplate"].(string), "{vlanId}", "10", 1)
	ve := create(t, vlanMAC, map[string]any{"macAddr": "02:00:00:00:00:03", "portId": id(vp)})
	if !strings.Contains(ve["uri"].(string), "/vlans/10/mac_table/") || ve["vlanId"] != float64(10) {
		t.Errorf("vlan mac entry %v", ve)
	}
	if l := expect(t, do(t, "GET", mac, nil), 200).list(t); len(l) != 2 {
		t.Errorf("mac table of all VLANs: %v", l)
	}
	if l := expect(t, do(t, "GET", vlanMAC, nil), 200).list(t); len(l) != 1 {
		t.Errorf("mac table of VLAN 10: %v", l)
	}
	expect(t, do(t, "DELETE", e["uri"].(string), nil), 204)
	expect(t, do(t, "GET", e["uri"].(string), nil), 404)

	arp := b["arpTable"].(string)
	a := create(t, arp, map[string]any{"ip": "10.0.0.5", "mac": "02:00:00:00:00:05"})
	if a["uri"] != arp+"/10.0.0.5_02-00-00-00-00-05" {
		t.Errorf("arp entry %v", a)
	}
	expectViolation(t, do(t, "POST", arp, map[string]any{"ip": "10.0.0.256", "mac": "02:00:00:00:00:05"}), "ip")
	expectViolation(t, do(t, "POST", arp, map[string]any{"ip": "10.0.0.6"}), "mac")
	expect(t, do(t, "DELETE", a["uri"].(string), nil), 204)
	expect(t, do(t, "GET", a["uri"].(string), nil), 404)
}

func TestLoadBalancing(t *testing.T) {
	lb := create(t, "/load_balancers", map[string]any{})
	expect(t, do(t, "POST", "/load_balancers", map[string]any{"routerId": uuid.NewString()}), 400)
	hm := create(t, "/health_monitors", map[string]any{"type": "TCP", "delay": 1, "timeout": 1, "maxRetries": 3})
	pool := create(t, lb["pools"].(string), map[string]any{"lbMethod": "ROUND_ROBIN", "healthMonitorId": id(hm)})
	if pool["protocol"] != "TCP" || pool["status"] != "ACTIVE" || pool["loadBalancerId"] != id(lb) {
		t.Errorf("pool %v", pool)
	}
	expectViolation(t, do(t, "POST", lb["pools"].(string), map[string]any{}), "lbMethod")
	m := create(t, pool["poolMembers"].(string), map[string]any{"address": "10.0.0.10", "protocolPort": 80})
	if m["weight"] != float64(1) || m["adminStateUp"] != true || m["status"] != "ACTIVE" {
		t.Errorf("member %v", m)
	}
	expectViolation(t, do(t, "POST", pool["poolMembers"].(string), map[string]any{"protocolPort": 80}), "address")
	expect(t, do(t, "PUT", m["uri"].(string), map[string]any{"poolId": id(pool), "address": "10.0.0.99", "protocolPort": 81, "weight": 5}), 204)
	got := expect(t, do(t, "GET", m["uri"].(string), nil), 200).obj(t)
	if got["address"] != "10.0.0.10" || got["protocolPort"] != float64(80) || got["weight"] != float64(5) {
		t.Errorf("member after PUT (address and port are immutable) %v", got)
	}
	vip := create(t, pool["vips"].(string), map[string]any{"address": "192.0.2.10", "protocolPort": 80, "sessionPersistence": "SOURCE_IP"})
	if vip["loadBalancerId"] != id(lb) {
		t.Errorf("vip %v", vip)
	}
	expect(t, do(t, "POST", "/vips", map[string]any{"poolId": uuid.NewString(), "address": "192.0.2.11"}), 400)
	if l := expect(t, do(t, "GET", lb["vips"].(string), nil), 200).list(t); len(l) != 1 {
		t.Errorf("lb vips %v", l)
	}
	if l := expect(t, do(t, "GET", "/pools?hm_id="+id(hm), nil), 200).list(t); len(l) != 1 {
		t.Errorf("pools?hm_id %v", l)
	}
	// Attaching to a router, and the router delete refusal while attached.
	r := create(t, "/routers", map[string]any{"name": "lbr", "loadBalancerId": id(lb)})
	if got := expect(t, do(t, "GET", lb["uri"].(string), nil), 200).obj(t); got["routerId"] != id(r) {
		t.Errorf("lb routerId %v", got["routerId"])
	}
	expect(t, do(t, "POST", "/routers", map[string]any{"name": "lbr2", "loadBalancerId": id(lb)}), 409)
	expect(t, do(t, "DELETE", r["uri"].(string), nil), 409)
	expect(t, do(t, "DELETE", hm["uri"].(string), nil), 204)
	if got := expect(t, do(t, "GET", pool["uri"].(string), nil), 200).obj(t); got["healthMonitorId"] != nil {
		t.Errorf("pool keeps a deleted health monitor")
	}
	expect(t, do(t, "DELETE", lb["uri"].(string), nil), 204)
	for _, o := range []map[string]any{pool, m, vip} {
		expect(t, do(t, "GET", o["uri"].(string), nil), 404)
	}
	expect(t, do(t, "DELETE", pool["uri"].(string), nil), 204) // idempotent
	if got := expect(t, do(t, "GET", r["uri"].(string), nil), 200).obj(t); got["loadBalancerId"] != nil {
		t.Errorf("router keeps a deleted load balancer")
	}
}

func TestBGP(t *testing.T) {
	r := create(t, "/routers", map[string]any{"name": "bgp"})
	peer := create(t, r["bgpPeers"].(string), map[string]any{"asNumber": 65001, "address": "192.0.2.1", "keepAlive": 30})
	if peer["router"] != r["uri"] {
		t.Errorf("peer %v", peer)
	}
	expect(t, do(t, "POST", r["bgpPeers"].(string), map[string]any{"asNumber": 65001, "address": "192.0.2.1"}), 400)
	expectViolation(t, do(t, "POST", r["bgpPeers"].(string), map[string]any{"asNumber": 65001}), "address")
	expectViolation(t, do(t, "POST", r["bgpPeers"].(string), map[string]any{"asNumber": 65001, "address": "192.0.2.9", "holdTime": 1}), "holdTime")
	n := create(t, r["bgpNetworks"].(string), map[string]any{"subnetAddress": "203.0.113.0", "subnetLength": 24})
	expect(t, do(t, "DELETE", r["uri"].(string), nil), 204)
	expect(t, do(t, "GET", peer["uri"].(string), nil), 404)
	expect(t, do(t, "GET", n["uri"].(string), nil), 404)
}

// TestBGPStateShown: what agents write of BGP shows through the API: the
// learned routes among the router's routes, the port's bgpStatus, each
// peer's session status; none of it can be written through the API.
func TestBGPStateShown(t *testing.T) {
	ctx := context.Background()
	r := create(t, "/routers", map[string]any{"name": "bgp-state", "asNumber": 65000})
	rid, _ := uuid.Parse(id(r))
	port := create(t, r["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.1.0.2", "networkLength": 24})
	pid, _ := uuid.Parse(id(port))
	peer := create(t, r["bgpPeers"].(string), map[string]any{"asNumber": 65001, "address": "10.1.0.1",
		"status": map[string]any{"state": "Established"}})
	if peer["status"] != nil {
		t.Errorf("a peer's status was taken from the client: %v", peer["status"])
	}
	if port["bgpStatus"] != nil {
		t.Errorf("a new port has bgpStatus %v", port["bgpStatus"])
	}
	se, err := testStore.NewSession(ctx, nsdb.SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer se.Close()
	learned := topology.Route{ID: uuid.New(), Type: topology.RouteNormal, SrcNetworkAddr: topology.Str("0.0.0.0"),
		DstNetworkAddr: topology.Str("0.0.0.0"), NextHopPort: &pid, NextHopGateway: topology.Str("10.1.0.1"),
		Weight: 20, RouterID: rid, Learned: true}
	rb, _ := json.Marshal(learned)
	sb, _ := json.Marshal(topology.BGPSessionStatus{State: "Established", PortID: pid, Routes: 1})
	err = se.SetStates(ctx, []nsdb.StateEntry{
		{Key: nsdb.PortRouteKey(pid.String(), learned.ID.String()), Value: rb},
		{Key: nsdb.PortBGPKey(pid.String()), Value: []byte("peer 10.1.0.1 AS 65001: Established")},
		{Key: nsdb.BGPPeerStatusKey(id(peer)), Value: sb},
	})
	if err != nil {
		t.Fatal(err)
	}
	routes := expect(t, do(t, "GET", r["routes"].(string), nil), 200).list(t)
	var found map[string]any
	for _, rt := range routes {
		if rt["id"] == learned.ID.String() {
			found = rt
		} else if rt["learned"] != false {
			t.Errorf("stored route shown as learned: %v", rt)
		}
	}
	if found == nil || found["learned"] != true || found["nextHopGateway"] != "10.1.0.1" || found["nextHopPort"] != id(port) ||
		found["weight"] != float64(20) || found["router"] != r["uri"] {
		t.Errorf("learned route %v among %d routes", found, len(routes))
	}
	if found != nil {
		// Its own URI answers too, as a stored route's does.
		one := expect(t, do(t, "GET", found["uri"].(string), nil), 200).obj(t)
		if one["id"] != learned.ID.String() || one["learned"] != true || one["nextHopGateway"] != "10.1.0.1" {
			t.Errorf("GET %s: %v", found["uri"], one)
		}
	}
	other := create(t, "/routers", map[string]any{"name": "other"})
	for _, rt := range expect(t, do(t, "GET", other["routes"].(string), nil), 200).list(t) {
		if rt["learned"] == true {
			t.Errorf("another router lists the learned route %v", rt)
		}
	}
	for _, got := range []map[string]any{
		expect(t, do(t, "GET", port["uri"].(string), nil), 200).obj(t),
		findByID(t, expect(t, do(t, "GET", r["ports"].(string), nil), 200).list(t), id(port)),
	} {
		if got["bgpStatus"] != "peer 10.1.0.1 AS 65001: Established" {
			t.Errorf("port bgpStatus %v", got["bgpStatus"])
		}
	}
	for _, got := range []map[string]any{
		expect(t, do(t, "GET", peer["uri"].(string), nil), 200).obj(t),
		findByID(t, expect(t, do(t, "GET", r["bgpPeers"].(string), nil), 200).list(t), id(peer)),
	} {
		st, _ := got["status"].(map[string]any)
		if st["state"] != "Established" || st["portId"] != id(port) || st["routes"] != float64(1) {
			t.Errorf("peer status %v", got["status"])
		}
	}
	// A PUT keeps nothing of what the client says of the state.
	expect(t, do(t, "PUT", peer["uri"].(string), map[string]any{"asNumber": 65001, "address": "10.1.0.1",
		"status": map[string]any{"state": "Idle"}}), 204)
	var stored topology.BGPPeer
	if err := testStore.View(ctx, func(tx *nsdb.Tx) error { return tx.Get(topology.KindBGPPeer, id(peer), &stored) }); err != nil {
		t.Fatal(err)
	}
	if stored.Status != nil {
		t.Errorf("a status was stored with the peer: %+v", stored.Status)
	}
	got := expect(t, do(t, "GET", peer["uri"].(string), nil), 200).obj(t)
	if st, _ := got["status"].(map[string]any); st["state"] != "Established" {
		t.Errorf("after a PUT with a status: %v", got["status"])
	}
	// The agent gone, its state goes.
	se.Close()
	if got := expect(t, do(t, "GET", port["uri"].(string), nil), 200).obj(t); got["bgpStatus"] != nil {
		t.Errorf("bgpStatus %v after the agent left", got["bgpStatus"])
	}
	if got := expect(t, do(t, "GET", peer["uri"].(string), nil), 200).obj(t); got["status"] != nil {
		t.Errorf("peer status %v after the agent left", got["status"])
	}
}

func findByID(t *testing.T, l []map[string]any, want string) map[string]any {
	t.Helper()
	for _, o := range l {
		if o["id"] == want {
			return o
		}
	}
	t.Fatalf("%s not in the list", want)
	return nil
}

func TestMirrorsAndQoS(t *testing.T) {
	b := create(t, "/bridges", map[string]any{"name": "mq"})
	p := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	m := create(t, "/mirrors", map[string]any{"toPortId": id(p), "conditions": []any{map[string]any{"nwProto": 6}}})
	conds := m["conditions"].([]any)
	if len(conds) != 1 || conds[0].(map[string]any)["uri"] != nil || conds[0].(map[string]any)["nwProto"] != float64(6) {
		t.Errorf("mirror %v", m)
	}
	expect(t, do(t, "POST", "/mirrors", map[string]any{"toPortId": uuid.NewString()}), 404)
	b2 := create(t, "/bridges", map[string]any{"name": "mirrored", "inboundMirrorIds": []string{id(m)}})
	expect(t, do(t, "DELETE", m["uri"].(string), nil), 204)
	if got := expect(t, do(t, "GET", b2["uri"].(string), nil), 200).obj(t); len(got["inboundMirrorIds"].([]any)) != 0 {
		t.Errorf("bridge keeps a deleted mirror: %v", got["inboundMirrorIds"])
	}

	q := create(t, "/qos_policies", map[string]any{"name": "gold", "rules": []any{
		map[string]any{"id": uuid.NewString(), "type": "bandwidth_limit", "max_kbps": 1000, "max_burst_kbps": 100},
		map[string]any{"id": uuid.NewString(), "type": "dscp_marking", "dscp_mark": 10},
	}})
	if l := expect(t, do(t, "GET", q["bwLimitRules"].(string), nil), 200).list(t); len(l) != 1 || l[0]["maxKbps"] != float64(1000) {
		t.Errorf("bw rules %v", l)
	}
	dscp := expect(t, do(t, "GET", q["dscpRules"].(string), nil), 200).list(t)
	if len(dscp) != 1 || dscp[0]["policyId"] != id(q) || dscp[0]["dscpMark"] != float64(10) {
		t.Fatalf("dscp rules %v", dscp)
	}
	d := dscp[0]
	expectViolation(t, do(t, "POST", q["dscpRules"].(string), map[string]any{"dscpMark": 64}), "dscpMark")
	bq := create(t, "/bridges", map[string]any{"name": "qos", "qosPolicyId": id(q)})
	expect(t, do(t, "DELETE", q["uri"].(string), nil), 204)
	expect(t, do(t, "GET", d["uri"].(string), nil), 404)
	if got := expect(t, do(t, "GET", bq["uri"].(string), nil), 200).obj(t); got["qosPolicyId"] != nil {
		t.Errorf("bridge keeps a deleted QoS policy")
	}
}

func TestPortGroupsAndIPAddrGroups(t *testing.T) {
	b := create(t, "/bridges", map[string]any{"name": "groups"})
	p := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	g := create(t, "/port_groups", map[string]any{"name": "sg", "stateful": true})
	m := create(t, g["ports"].(string), map[string]any{"portId": id(p)})
	if m["portGroupId"] != id(g) || m["portId"] != id(p) {
		t.Errorf("member %v", m)
	}
	expect(t, do(t, "POST", g["ports"].(string), map[string]any{"portId": uuid.NewString()}), 404)
	if l := expect(t, do(t, "GET", p["portGroups"].(string), nil), 200).list(t); len(l) != 1 {
		t.Errorf("port's groups %v", l)
	}
	if l := expect(t, do(t, "GET", "/port_groups?port_id="+id(p), nil), 200).list(t); len(l) != 1 || id(l[0]) != id(g) {
		t.Errorf("port_groups?port_id %v", l)
	}
	expect(t, do(t, "PUT", g["uri"].(string), map[string]any{"name": "sg2"}), 204)
	if l := expect(t, do(t, "GET", g["ports"].(string), nil), 200).list(t); len(l) != 1 {
		t.Errorf("PUT lost membership: %v", l)
	}
	expect(t, do(t, "DELETE", m["uri"].(string), nil), 204)
	expect(t, do(t, "GET", m["uri"].(string), nil), 404)

	ig := create(t, "/ip_addr_groups", map[string]any{"name": "web"})
	expectViolation(t, do(t, "POST", "/ip_addr_groups", map[string]any{}), "name")
	a := create(t, ig["addrs"].(string), map[string]any{"addr": "10.0.0.1", "version": 4})
	if a["uri"] != ig["uri"].(string)+"/versions/4/ip_addrs/10.0.0.1" {
		t.Errorf("address %v", a)
	}
	expect(t, do(t, "POST", ig["addrs"].(string), map[string]any{"addr": "10.0.0.1", "version": 4}), 409)
	expect(t, do(t, "POST", ig["addrs"].(string), map[string]any{"addr": "10.0.0.2"}), 400)
	expect(t, do(t, "POST", ig["addrs"].(string), map[string]any{"addr": "10.0.0.300", "version": 4}), 400)
	create(t, ig["addrs"].(string), map[string]any{"addr": "10.0.0.3", "version": 4})
	got := expect(t, do(t, "GET", ig["uri"].(string), nil), 200).obj(t)
	if l := got["ipAddrPorts"].([]any); len(l) != 2 {
		t.Errorf("ipAddrPorts %v", l)
	}
	expect(t, do(t, "GET", ig["uri"].(string)+"/versions/5/ip_addrs/10.0.0.1", nil), 400)
	expect(t, do(t, "DELETE", a["uri"].(string), nil), 204)
	expect(t, do(t, "GET", a["uri"].(string), nil), 404)
	expect(t, do(t, "DELETE", a["uri"].(string), nil), 204)
}

// python-midonetclient sends some numbers as strings ("subnetLength": "24")
// and the burst of a bandwidth rule as maxBurstKbps; MidoNet accepts both.
func TestPythonClientQuirks(t *testing.T) {
	b := create(t, "/bridges", map[string]any{"name": "quirks"})
	s := create(t, b["dhcpSubnets"].(string), map[string]any{"subnetPrefix": "10.1.0.0", "subnetLength": "24",
		"opt121Routes": []any{map[string]any{"destinationPrefix": "172.16.0.0", "destinationLength": "16", "gatewayAddr": "10.1.0.254"}}})
	if s["subnetLength"] != float64(24) {
		t.Errorf("subnetLength %v", s["subnetLength"])
	}
	if r := s["opt121Routes"].([]any)[0].(map[string]any); r["destinationLength"] != float64(16) {
		t.Errorf("opt121 route %v", r)
	}
	expectViolation(t, do(t, "POST", b["dhcpSubnets"].(string), map[string]any{"subnetPrefix": "10.2.0.0", "subnetLength": "wide"}), "subnetLength")
	q := create(t, "/qos_policies", map[string]any{"name": "burst"})
	rule := create(t, q["bwLimitRules"].(string), map[string]any{"maxKbps": 1000, "maxBurstKbps": 100})
	if rule["maxBurstKbps"] != float64(100) || rule["maxBurstKb"] != float64(100) {
		t.Errorf("bw rule %v", rule)
	}
}

// TestRouterARPTable shows the ARP entries agents learned for a router.
func TestRouterARPTable(t *testing.T) {
	r := create(t, "/routers", map[string]any{"name": "arp"})
	if l := expect(t, do(t, "GET", r["uri"].(string)+"/arp_table", nil), 200).list(t); len(l) != 0 {
		t.Fatalf("new router's ARP table %v", l)
	}
	key := nsdb.RouterARPKey(id(r), netip.MustParseAddr("10.0.0.7"))
	if err := testStore.PutState(context.Background(), key, []byte("02:00:00:00:00:07")); err != nil {
		t.Fatal(err)
	}
	l := expect(t, do(t, "GET", r["uri"].(string)+"/arp_table", nil), 200).list(t)
	if len(l) != 1 || l[0]["ip"] != "10.0.0.7" || l[0]["mac"] != "02:00:00:00:00:07" {
		t.Errorf("router ARP table %v", l)
	}
	expect(t, do(t, "DELETE", r["uri"].(string), nil), 204)
	if _, err := testStore.GetState(context.Background(), key); err == nil {
		t.Error("the router's ARP table outlived the router")
	}
	expect(t, do(t, "GET", "/routers/"+uuid.NewString()+"/arp_table", nil), 404)
}

// TestQOSPolicyPutReplacesRules checks that a PUT with inline rules keeps
// the rules it names, creates new ones and deletes the policy's others, of
// both kinds, leaving another policy's rules alone.
func TestQOSPolicyPutReplacesRules(t *testing.T) {
	bwID, dscpID := uuid.NewString(), uuid.NewString()
	q := create(t, "/qos_policies", map[string]any{"name": "replace", "rules": []any{
		map[string]any{"id": bwID, "type": "bandwidth_limit", "max_kbps": 1000, "max_burst_kbps": 100},
		map[string]any{"id": dscpID, "type": "dscp_marking", "dscp_mark": 10},
	}})
	other := create(t, "/qos_policies", map[string]any{"name": "other", "rules": []any{
		map[string]any{"type": "dscp_marking", "dscp_mark": 12},
	}})
	expect(t, do(t, "PUT", q["uri"].(string), map[string]any{"name": "replace", "rules": []any{
		map[string]any{"id": bwID, "type": "bandwidth_limit", "max_kbps": 2000, "max_burst_kbps": 100},
		map[string]any{"type": "bandwidth_limit", "max_kbps": 3000, "max_burst_kbps": 100},
	}}), 204)
	bw := expect(t, do(t, "GET", q["bwLimitRules"].(string), nil), 200).list(t)
	if len(bw) != 2 {
		t.Fatalf("bw rules after PUT: %v", bw)
	}
	kept := false
	for _, x := range bw {
		if x["id"] == bwID {
			kept = x["maxKbps"] == float64(2000)
		}
	}
	if !kept {
		t.Errorf("PUT did not update bw rule %s in place: %v", bwID, bw)
	}
	if l := expect(t, do(t, "GET", q["dscpRules"].(string), nil), 200).list(t); len(l) != 0 {
		t.Errorf("dscp rules after a PUT without them: %v", l)
	}
	expect(t, do(t, "GET", "/qos_dscp_rules/"+dscpID, nil), 404)
	if l := expect(t, do(t, "GET", other["dscpRules"].(string), nil), 200).list(t); len(l) != 1 {
		t.Errorf("another policy's dscp rules after the PUT: %v", l)
	}
	expect(t, do(t, "PUT", q["uri"].(string), map[string]any{"name": "replace", "rules": []any{
		map[string]any{"type": "dscp_marking", "dscp_mark": 14},
	}}), 204)
	if l := expect(t, do(t, "GET", q["bwLimitRules"].(string), nil), 200).list(t); len(l) != 0 {
		t.Errorf("bw rules after a PUT without them: %v", l)
	}
	if l := expect(t, do(t, "GET", q["dscpRules"].(string), nil), 200).list(t); len(l) != 1 || l[0]["dscpMark"] != float64(14) {
		t.Errorf("dscp rules after the second PUT: %v", l)
	}
}

func TestDHCPv6(t *testing.T) {
	b := create(t, "/bridges", map[string]any{"name": "dhcp6"})
	list := b["dhcpSubnet6s"].(string)
	s := create(t, list, map[string]any{"prefix": "2001:DB8:6:0::", "prefixLength": 64, "dnsServerAddrs": []string{"2001:db8:6::2"}})
	if s["uri"] != list+"/2001:db8:6::_64" || s["prefix"] != "2001:db8:6::" || s["hosts"] != s["uri"].(string)+"/hostsV6" {
		t.Errorf("subnet %v", s)
	}
	expect(t, do(t, "POST", list, map[string]any{"prefix": "2001:db8:6::", "prefixLength": 64}), 409)
	expectViolation(t, do(t, "POST", list, map[string]any{"prefix": "10.0.0.0", "prefixLength": 64}), "prefix")
	expectViolation(t, do(t, "POST", list, map[string]any{"prefix": "2001:db8:7::", "prefixLength": 129}), "prefixLength")
	// Another spelling of the same subnet finds it.
	expect(t, do(t, "GET", list+"/2001:db8:6:0:0::_64", nil), 200)
	h := create(t, s["hosts"].(string), map[string]any{"clientId": "00:03:00:01:02:00:00:00:00:0a",
		"fixedAddress": "2001:db8:6::a", "name": "vm"})
	if h["uri"] != s["hosts"].(string)+"/00-03-00-01-02-00-00-00-00-0a" {
		t.Errorf("host %v", h)
	}
	expect(t, do(t, "POST", s["hosts"].(string), map[string]any{"clientId": "00:03:00:01:02:00:00:00:00:0A",
		"fixedAddress": "2001:db8:6::b"}), 409)
	expectViolation(t, do(t, "POST", s["hosts"].(string), map[string]any{"clientId": "vm-b", "fixedAddress": "2001:db8:6::b"}), "clientId")
	expectViolation(t, do(t, "POST", s["hosts"].(string), map[string]any{"clientId": "02:00:00:00:00:0b", "fixedAddress": "10.0.0.1"}), "fixedAddress")
	expect(t, do(t, "PUT", h["uri"].(string), map[string]any{"clientId": "00:03:00:01:02:00:00:00:00:0a", "fixedAddress": "2001:db8:6::c"}), 204)
	if got := expect(t, do(t, "GET", h["uri"].(string), nil), 200).obj(t); got["fixedAddress"] != "2001:db8:6::c" {
		t.Errorf("host after PUT %v", got)
	}
	if l := expect(t, do(t, "GET", s["hosts"].(string), nil), 200).list(t); len(l) != 1 {
		t.Errorf("hosts %v", l)
	}
	expect(t, do(t, "PUT", s["uri"].(string), map[string]any{"prefix": "2001:db8:6::", "prefixLength": 64}), 204)
	if l := expect(t, do(t, "GET", s["hosts"].(string), nil), 200).list(t); len(l) != 1 {
		t.Errorf("PUT of the subnet lost its hosts: %v", l)
	}
	expect(t, do(t, "DELETE", h["uri"].(string), nil), 204)
	expect(t, do(t, "GET", h["uri"].(string), nil), 404)
	// Deleting the bridge takes its DHCPv6 subnets along.
	expect(t, do(t, "DELETE", b["uri"].(string), nil), 204)
	expect(t, do(t, "GET", s["uri"].(string), nil), 404)
}

// L2 insertions: created between two bridge ports, listed by port or by
// service port, and refused where MidoNet refuses them.
func TestL2Insertions(t *testing.T) {
	b := create(t, "/bridges", map[string]any{"name": "insertions"})
	vm := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	svc := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	svc2 := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	r := create(t, "/routers", map[string]any{"name": "insertions"})
	rp := create(t, r["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": 24})
	ins := create(t, "/l2insertions", map[string]any{"portId": id(vm), "srvPortId": id(svc), "mac": "02:00:00:00:00:01",
		"position": 1, "vlan": 10, "failOpen": true})
	checkKeys(t, ins, []string{"id", "portId", "srvPortId", "vlan", "position", "failOpen", "mac", "uri"})
	create(t, "/l2insertions", map[string]any{"portId": id(vm), "srvPortId": id(svc2), "mac": "02:00:00:00:00:01", "position": 2})
	if l := expect(t, do(t, "GET", "/l2insertions?port="+id(vm), nil), 200).list(t); len(l) != 2 {
		t.Errorf("insertions of the port: %v", l)
	}
	if l := expect(t, do(t, "GET", "/l2insertions?srv_port="+id(svc2), nil), 200).list(t); len(l) != 1 {
		t.Errorf("insertions of the service port: %v", l)
	}
	if got := expect(t, do(t, "GET", vm["uri"].(string), nil), 200).obj(t); len(got["insertionIds"].([]any)) != 2 {
		t.Errorf("the protected port's insertionIds: %v", got["insertionIds"])
	}
	for _, tc := range []struct {
		name   string
		body   map[string]any
		status int
	}{
		{"same pair twice", map[string]any{"portId": id(vm), "srvPortId": id(svc), "mac": "02:00:00:00:00:01"}, 409},
		{"a service port protected", map[string]any{"portId": id(svc), "srvPortId": id(svc2), "mac": "02:00:00:00:00:02"}, 400},
		{"a protected port as a service", map[string]any{"portId": id(svc2), "srvPortId": id(vm), "mac": "02:00:00:00:00:02"}, 400},
		{"a router port", map[string]any{"portId": id(rp), "srvPortId": id(svc), "mac": "02:00:00:00:00:02"}, 400},
		{"no MAC", map[string]any{"portId": id(vm), "srvPortId": id(svc)}, 400},
		{"a port that does not exist", map[string]any{"portId": uuid.NewString(), "srvPortId": id(svc), "mac": "02:00:00:00:00:02"}, 404},
	} {
		t.Run(tc.name, func(t *testing.T) { expect(t, do(t, "POST", "/l2insertions", tc.body), tc.status) })
	}
	expect(t, do(t, "PUT", ins["uri"].(string), map[string]any{"portId": id(vm), "srvPortId": id(svc2), "mac": "02:00:00:00:00:01"}), 400)
	expect(t, do(t, "PUT", ins["uri"].(string), map[string]any{"portId": id(vm), "srvPortId": id(svc), "mac": "02:00:00:00:00:01", "position": 3}), 204)
	if got := expect(t, do(t, "GET", ins["uri"].(string), nil), 200).obj(t); got["position"] != float64(3) {
		t.Errorf("insertion after PUT %v", got)
	}
	// Deleting the service port deletes its insertions.
	expect(t, do(t, "DELETE", svc["uri"].(string), nil), 204)
	expect(t, do(t, "GET", ins["uri"].(string), nil), 404)
	c := create(t, "/chains", map[string]any{"name": "l2"})
	rule := create(t, c["rules"].(string), map[string]any{"type": "l2_transform", "flowAction": "redirect",
		"targetPortId": id(svc2), "pushVlan": 20})
	if rule["flowAction"] != "redirect" || rule["pushVlan"] != float64(20) || rule["targetPortId"] != id(svc2) {
		t.Errorf("l2_transform rule %v", rule)
	}
}

// TestQOSPolicyRulesStayWithTheirPolicy checks that an inline rule's id
// cannot take another policy's rule, and that a rule changing type keeps
// one object.
func TestQOSPolicyRulesStayWithTheirPolicy(t *testing.T) {
	ruleID := uuid.NewString()
	a := create(t, "/qos_policies", map[string]any{"name": "a", "rules": []any{
		map[string]any{"id": ruleID, "type": "dscp_marking", "dscp_mark": 10},
	}})
	b := create(t, "/qos_policies", map[string]any{"name": "b"})
	for _, typ := range []string{"dscp_marking", "bandwidth_limit"} {
		r := do(t, "PUT", b["uri"].(string), map[string]any{"name": "b", "rules": []any{
			map[string]any{"id": ruleID, "type": typ, "dscp_mark": 20, "max_kbps": 5},
		}})
		expect(t, r, 409)
		expect(t, do(t, "POST", "/qos_policies", map[string]any{"rules": []any{map[string]any{"id": ruleID, "type": typ}}}), 409)
	}
	got := expect(t, do(t, "GET", "/qos_dscp_rules/"+ruleID, nil), 200).obj(t)
	if got["policyId"] != id(a) || got["dscpMark"] != float64(10) {
		t.Fatalf("policy a's rule after b's PUTs: %v", got)
	}
	// Policy a turns its rule into a bandwidth limit: one rule remains.
	expect(t, do(t, "PUT", a["uri"].(string), map[string]any{"name": "a", "rules": []any{
		map[string]any{"id": ruleID, "type": "bandwidth_limit", "max_kbps": 7},
	}}), 204)
	expect(t, do(t, "GET", "/qos_dscp_rules/"+ruleID, nil), 404)
	if got := expect(t, do(t, "GET", "/qos_bw_limit_rules/"+ruleID, nil), 200).obj(t); got["maxKbps"] != float64(7) {
		t.Errorf("rule after its type changed: %v", got)
	}
}

// TestTracedPackets: GET /traces/{id}/packets lists the packets every
// agent published for the request, oldest first; deleting the request
// removes them.
func TestTracedPackets(t *testing.T) {
	b := create(t, "/bridges", map[string]any{"name": "traced"})
	tr := create(t, "/traces", map[string]any{"name": "t", "deviceType": "BRIDGE", "deviceId": id(b),
		"condition": map[string]any{"nwProto": 17}, "enabled": true, "limit": 5})
	packets := tr["uri"].(string) + "/packets"
	if l := expect(t, do(t, "GET", packets, nil), 200).list(t); len(l) != 0 {
		t.Fatalf("packets before any agent traced: %v", l)
	}
	reqID := uuid.MustParse(id(tr))
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i, host := range []uuid.UUID{uuid.New(), uuid.New()} {
		list := []topology.TracedPacket{{Time: t0.Add(time.Duration(1-i) * time.Second), HostID: host, PortID: uuid.New(),
			TraceRequestIDs: []uuid.UUID{reqID}, Packet: "udp", Result: "forward",
			Trace: []topology.TraceStep{{DeviceType: "bridge", Device: uuid.MustParse(id(b)), Event: "process"}}}}
		v, _ := json.Marshal(list)
		if err := testStore.PutState(context.Background(), nsdb.TracedPacketsKey(id(tr), host.String()), v); err != nil {
			t.Fatal(err)
		}
	}
	l := expect(t, do(t, "GET", packets, nil), 200).list(t)
	if len(l) != 2 || l[0]["time"].(string) >= l[1]["time"].(string) {
		t.Fatalf("packets %v, want both hosts' oldest first", l)
	}
	for _, k := range []string{"time", "hostId", "portId", "traceRequestIds", "packet", "result", "reason", "trace"} {
		if _, ok := l[0][k]; !ok {
			t.Errorf("a traced packet lacks %q: %v", k, l[0])
		}
	}
	// The request itself keeps exactly MidoNet's fields.
	got := expect(t, do(t, "GET", tr["uri"].(string), nil), 200).obj(t)
	if len(got) != 9 {
		t.Errorf("trace request keys %v, want MidoNet's 8 and uri", got)
	}
	expect(t, do(t, "GET", "/traces/"+uuid.NewString()+"/packets", nil), 404)
	expect(t, do(t, "DELETE", tr["uri"].(string), nil), 204)
	entries, _, err := testStore.ListState(context.Background(), nsdb.TracedPacketsPrefix(id(tr)))
	if err != nil || len(entries) != 0 {
		t.Errorf("traced packets left after the request's delete: %v %v", entries, err)
	}
}
