package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/nsdb"
)

// rig is an API server driven in-process, over its own prefix of the
// shared embedded store, holding a fixture with one object of every kind:
// every route of the server can be called with ids that exist. Tests of
// what bad input does to the store compare the store's contents before and
// after each request.
type rig struct {
	t     testing.TB
	store *nsdb.Store
	srv   *api.Server
	ids   map[string]string // collection segment ("bridges") → the fixture's object of it
	vars  map[string]string // other path wildcards → a value naming a fixture entry
	saved []*mvccKV         // the fixture's keys, for restore
	// replacer turns "@name" into the fixture's values (symbols).
	replacer *strings.Replacer
}

type mvccKV struct{ key, value string }

var rigCount atomic.Int64

// rigConfig says where a rig's store is and how its server is set.
type rigConfig struct {
	endpoints []string // default: the shared embedded store
	api       api.Config
	// storeTimeout bounds each store request (nsdb's RequestTimeout).
	storeTimeout time.Duration
}

// newRig builds the fixture through the API itself, then saves the store's
// contents.
func newRig(t testing.TB, maxBody int64) *rig {
	return newRigWith(t, rigConfig{api: api.Config{MaxBodyBytes: maxBody}})
}

func newRigWith(t testing.TB, cfg rigConfig) *rig {
	t.Helper()
	prefix := fmt.Sprintf("/api-rig-%d", rigCount.Add(1))
	if cfg.endpoints == nil {
		cfg.endpoints = testStore.Client().Endpoints()
	}
	store, err := nsdb.Open(context.Background(), nsdb.Config{Endpoints: cfg.endpoints, Prefix: prefix, RequestTimeout: cfg.storeTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		store.Client().Delete(ctx, prefix+"/", clientv3.WithPrefix())
		store.Close()
	})
	cfg.api.Store = store
	rg := &rig{t: t, store: store, srv: api.New(cfg.api), ids: map[string]string{}, vars: map[string]string{}}
	rg.build()
	rg.replacer = rg.newReplacer()
	rg.saved = rg.dump()
	return rg
}

// call sends one request to the handler in-process.
func (rg *rig) call(method, path string, body any) response {
	rg.t.Helper()
	var b []byte
	switch x := body.(type) {
	case nil:
	case string:
		b = []byte(x)
	default:
		b, _ = json.Marshal(x)
	}
	req := httptest.NewRequest(method, "http://rig"+api.BasePath+path, bytes.NewReader(b))
	if b != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return rg.serve(req)
}

func (rg *rig) serve(req *http.Request) response {
	w := httptest.NewRecorder()
	rg.srv.ServeHTTP(w, req)
	return response{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

// mustCreate POSTs body to path and returns the new object's id (or the
// tail of its Location, for objects without one).
func (rg *rig) mustCreate(path string, body any) string {
	rg.t.Helper()
	r := rg.call("POST", path, body)
	// The store-failure rigs give the store a short timeout, which a loaded
	// machine can exceed while the fixture is built: that is not under test.
	for try := 0; r.status == http.StatusServiceUnavailable && try < 3; try++ {
		r = rg.call("POST", path, body)
	}
	if r.status != http.StatusCreated {
		rg.t.Fatalf("fixture: POST %s: %d %s", path, r.status, r.body)
	}
	loc := r.header.Get("Location")
	return loc[strings.LastIndex(loc, "/")+1:]
}

const (
	rigMAC     = "02:00:00:00:00:01"
	rigARPIP   = "10.0.0.5"
	rigARPMAC  = "02:00:00:00:00:05"
	rigSubnet  = "10.0.0.0_24"
	rigDHCPMAC = "02:00:00:00:00:0a"
	rigAddr    = "10.0.0.9"

	rigSubnet6     = "2001:db8::_64"
	rigDHCP6Client = "02:00:00:00:00:0b"
)

// build creates the fixture: a bridge and a router with a port each, the
// bridge port bound to a host of a tunnel zone and a member of a port
// group, and one of every other kind around them.
func (rg *rig) build() {
	id := func(kind, path string, body any) string {
		rg.ids[kind] = rg.mustCreate(path, body)
		return rg.ids[kind]
	}
	chain := id("chains", "/chains", map[string]any{"name": "rig"})
	bridge := id("bridges", "/bridges", map[string]any{"name": "rig", "inboundFilterId": chain})
	router := id("routers", "/routers", map[string]any{"name": "rig"})
	port := id("ports", "/bridges/"+bridge+"/ports", map[string]any{"type": "Bridge"})
	port2 := rg.mustCreate("/bridges/"+bridge+"/ports", map[string]any{"type": "Bridge"})
	port3 := rg.mustCreate("/bridges/"+bridge+"/ports", map[string]any{"type": "Bridge"})
	rport := rg.mustCreate("/routers/"+router+"/ports", map[string]any{"type": "Router", "portAddress": "10.1.0.1", "networkLength": 24})
	id("routes", "/routers/"+router+"/routes", map[string]any{"type": "Normal", "srcNetworkAddr": "0.0.0.0",
		"dstNetworkAddr": "10.2.0.0", "dstNetworkLength": 16, "nextHopPort": rport})
	id("rules", "/chains/"+chain+"/rules", map[string]any{"type": "accept", "nwProto": 6})
	group := id("port_groups", "/port_groups", map[string]any{"name": "rig"})
	rg.mustCreate("/port_groups/"+group+"/ports", map[string]any{"portId": port})
	ipg := id("ip_addr_groups", "/ip_addr_groups", map[string]any{"name": "rig"})
	rg.mustCreate("/ip_addr_groups/"+ipg+"/ip_addrs", map[string]any{"addr": rigAddr, "version": 4})
	host := id("hosts", "/hosts", map[string]any{"id": "3f6a2b4e-0000-4000-8000-00000000a001", "name": "rig"})
	host2 := rg.mustCreate("/hosts", map[string]any{"id": "3f6a2b4e-0000-4000-8000-00000000a002", "name": "rig2"})
	tz := id("tunnel_zones", "/tunnel_zones", map[string]any{"name": "rig", "type": "vxlan"})
	rg.mustCreate("/tunnel_zones/"+tz+"/hosts", map[string]any{"hostId": host, "ipAddress": "192.168.0.1"})
	rg.mustCreate("/hosts/"+host+"/ports", map[string]any{"portId": port, "interfaceName": "rig0"})
	rg.mustCreate("/bridges/"+bridge+"/dhcp", map[string]any{"subnetPrefix": "10.0.0.0", "subnetLength": 24})
	rg.mustCreate("/bridges/"+bridge+"/dhcp/"+rigSubnet+"/hosts", map[string]any{"macAddr": rigDHCPMAC, "ipAddr": "10.0.0.10"})
	rg.mustCreate("/bridges/"+bridge+"/dhcpV6", map[string]any{"prefix": "2001:db8::", "prefixLength": 64})
	rg.mustCreate("/bridges/"+bridge+"/dhcpV6/"+rigSubnet6+"/hostsV6", map[string]any{"clientId": rigDHCP6Client, "fixedAddress": "2001:db8::b"})
	rg.mustCreate("/bridges/"+bridge+"/mac_table", map[string]any{"macAddr": rigMAC, "portId": port})
	rg.mustCreate("/bridges/"+bridge+"/arp_table", map[string]any{"ip": rigARPIP, "mac": rigARPMAC})
	lb := id("load_balancers", "/load_balancers", map[string]any{})
	hm := id("health_monitors", "/health_monitors", map[string]any{"type": "TCP", "delay": 5, "timeout": 2, "maxRetries": 3})
	pool := id("pools", "/load_balancers/"+lb+"/pools", map[string]any{"lbMethod": "ROUND_ROBIN", "healthMonitorId": hm})
	id("pool_members", "/pools/"+pool+"/pool_members", map[string]any{"address": "10.0.0.20", "protocolPort": 80})
	id("vips", "/pools/"+pool+"/vips", map[string]any{"address": "10.0.0.30", "protocolPort": 80})
	id("mirrors", "/mirrors", map[string]any{"toPortId": rport})
	// The rules belong to a policy of their own, so that the fixture's
	// policy may take a rule of each type (a policy holds one of each).
	qos := id("qos_policies", "/qos_policies", map[string]any{"name": "rig-rules"})
	id("qos_bw_limit_rules", "/qos_policies/"+qos+"/qos_bw_limit_rules", map[string]any{"maxKbps": 1000})
	id("qos_dscp_rules", "/qos_policies/"+qos+"/qos_dscp_rules", map[string]any{"dscpMark": 10})
	id("qos_policies", "/qos_policies", map[string]any{"name": "rig"})
	id("bgp_peers", "/routers/"+router+"/bgp_peers", map[string]any{"asNumber": 65001, "address": "10.1.0.2"})
	id("bgp_networks", "/routers/"+router+"/bgp_networks", map[string]any{"subnetAddress": "10.3.0.0", "subnetLength": 24})
	id("traces", "/traces", map[string]any{"name": "rig", "deviceType": "BRIDGE", "deviceId": bridge, "condition": map[string]any{}})
	id("l2insertions", "/l2insertions", map[string]any{"portId": port, "srvPortId": port2, "mac": "02:00:00:00:00:61"})
	rg.vars = map[string]string{
		"portId": port, "hostId": host, "port2": port2, "port3": port3, "host2": host2, "rport": rport, "subnet": rigSubnet, "mac": rigDHCPMAC, "vlan": "0",
		"subnet6": rigSubnet6, "client": strings.ReplaceAll(rigDHCP6Client, ":", "-"),
		"ver": "4", "addr": rigAddr, "name": "rig0",
		"macEntry": strings.ReplaceAll(rigMAC, ":", "-") + "_" + port,
		"arpEntry": rigARPIP + "_" + strings.ReplaceAll(rigARPMAC, ":", "-"),
	}
}

// fill turns a route pattern into a path naming the fixture's objects;
// wildcard i takes override(i, value) instead when override is given.
func (rg *rig) fill(pattern string, override func(i int, value string) string) string {
	segs := strings.Split(strings.TrimSuffix(pattern, "/{$}"), "/")
	n := 0
	for i, seg := range segs {
		if !strings.HasPrefix(seg, "{") {
			continue
		}
		name := strings.Trim(seg, "{}.")
		v, ok := rg.vars[name]
		switch {
		case name == "id" && i > 0:
			v, ok = rg.ids[segs[i-1]]
		case name == "entry" && i > 0 && segs[i-1] == "arp_table":
			v, ok = rg.vars["arpEntry"], true
		case name == "entry":
			v, ok = rg.vars["macEntry"], true
		}
		if !ok {
			v = "5b4cb2f1-0000-4000-8000-0000000000ff" // a new kind of wildcard: an unknown id
		}
		if override != nil {
			v = override(n, v)
		}
		segs[i] = v
		n++
	}
	return strings.Join(segs, "/")
}

// validBodies holds a body each write route takes on the fixture: the
// seeds the fuzzer mutates, and the writes of the store-failure tests.
// "@name" stands for the fixture's id of that collection or variable.
var validBodies = map[string]string{
	"POST /bridges":                                       `{"name": "b", "tenantId": "t", "adminStateUp": true}`,
	"POST /bridges/{id}/arp_table":                        `{"ip": "10.0.0.77", "mac": "02:00:00:00:00:77"}`,
	"POST /bridges/{id}/dhcp":                             `{"subnetPrefix": "10.7.0.0", "subnetLength": 24, "defaultGateway": "10.7.0.1", "opt121Routes": [{"destinationPrefix": "10.9.0.0", "destinationLength": 16, "gatewayAddr": "10.7.0.254"}]}`,
	"POST /bridges/{id}/dhcp/{subnet}/hosts":              `{"macAddr": "02:00:00:00:00:71", "ipAddr": "10.0.0.71", "name": "vm", "extraDhcpOpts": [{"optName": "mtu", "optValue": "1400"}]}`,
	"POST /bridges/{id}/dhcpV6":                           `{"prefix": "2001:db8:7::", "prefixLength": 64, "dnsServerAddrs": ["2001:db8:7::53"]}`,
	"POST /bridges/{id}/dhcpV6/{subnet6}/hostsV6":         `{"clientId": "02:00:00:00:00:7b", "fixedAddress": "2001:db8::7b", "name": "vm"}`,
	"POST /bridges/{id}/mac_table":                        `{"macAddr": "02:00:00:00:00:72", "portId": "@ports"}`,
	"POST /bridges/{id}/ports":                            `{"type": "Bridge", "vlanId": 0, "inboundFilterId": "@chains"}`,
	"POST /bridges/{id}/vlans/{vlan}/mac_table":           `{"macAddr": "02:00:00:00:00:73", "portId": "@ports"}`,
	"POST /chains":                                        `{"name": "c", "tenantId": "t"}`,
	"POST /chains/{id}/rules":                             `{"type": "snat", "flowAction": "accept", "nwSrcAddress": "10.0.0.0", "nwSrcLength": 24, "tpDst": {"start": 80, "end": 80}, "natTargets": [{"addressFrom": "1.1.1.1", "addressTo": "1.1.1.1", "portFrom": 1024, "portTo": 65535}], "position": 1}`,
	"POST /health_monitors":                               `{"type": "TCP", "delay": 5, "timeout": 3, "maxRetries": 2}`,
	"POST /hosts":                                         `{"id": "3f6a2b4e-0000-4000-8000-00000000a003", "name": "h3"}`,
	"POST /hosts/{id}/ports":                              `{"portId": "@port2", "interfaceName": "rig1"}`,
	"POST /ip_addr_groups":                                `{"name": "g"}`,
	"POST /ip_addr_groups/{id}/ip_addrs":                  `{"addr": "10.0.0.99", "version": 4}`,
	"POST /l2insertions":                                  `{"portId": "@ports", "srvPortId": "@port3", "mac": "02:00:00:00:00:61", "position": 2, "vlan": 10}`,
	"POST /load_balancers":                                `{"adminStateUp": true}`,
	"POST /load_balancers/{id}/pools":                     `{"lbMethod": "ROUND_ROBIN", "healthMonitorId": "@health_monitors"}`,
	"POST /login":                                         `{}`,
	"POST /mirrors":                                       `{"toPortId": "@ports", "conditions": [{"nwProto": 6, "tpDst": {"start": 22, "end": 22}}]}`,
	"POST /pool_members":                                  `{"poolId": "@pools", "address": "10.0.0.21", "protocolPort": 8080}`,
	"POST /pools":                                         `{"loadBalancerId": "@load_balancers", "lbMethod": "ROUND_ROBIN"}`,
	"POST /pools/{id}/pool_members":                       `{"address": "10.0.0.22", "protocolPort": 80, "weight": 2}`,
	"POST /pools/{id}/vips":                               `{"address": "10.0.0.31", "protocolPort": 443, "sessionPersistence": "SOURCE_IP"}`,
	"POST /port_groups":                                   `{"name": "pg", "stateful": true}`,
	"POST /port_groups/{id}/ports":                        `{"portId": "@port2"}`,
	"POST /ports/{id}/link":                               `{"peerId": "@rport"}`,
	"POST /qos_policies":                                  `{"name": "q", "rules": [{"id": "5b4cb2f1-0000-4000-8000-0000000000a1", "type": "bandwidth_limit", "max_kbps": 100, "max_burst_kbps": 10}]}`,
	"POST /qos_policies/{id}/qos_bw_limit_rules":          `{"maxKbps": 500, "maxBurstKb": 50}`,
	"POST /qos_policies/{id}/qos_dscp_rules":              `{"dscpMark": 12}`,
	"POST /routers":                                       `{"name": "r", "tenantId": "t"}`,
	"POST /routers/{id}/bgp_networks":                     `{"subnetAddress": "10.8.0.0", "subnetLength": 16}`,
	"POST /routers/{id}/bgp_peers":                        `{"asNumber": 65002, "address": "10.1.0.3", "keepAlive": 30, "holdTime": 90}`,
	"POST /routers/{id}/ports":                            `{"type": "Router", "portAddress": "10.9.0.1", "networkLength": 24}`,
	"POST /routers/{id}/routes":                           `{"type": "Normal", "srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": "10.4.0.0", "dstNetworkLength": 16, "nextHopPort": "@rport", "weight": 10}`,
	"POST /traces":                                        `{"name": "t", "deviceType": "ROUTER", "deviceId": "@routers", "condition": {"nwProto": 17}, "enabled": true}`,
	"POST /tunnel_zones":                                  `{"name": "tz9", "type": "vxlan"}`,
	"POST /tunnel_zones/{id}/hosts":                       `{"hostId": "@host2", "ipAddress": "192.168.0.2"}`,
	"POST /vips":                                          `{"poolId": "@pools", "address": "10.0.0.32", "protocolPort": 80}`,
	"PUT /bgp_peers/{id}":                                 `{"asNumber": 65003, "address": "10.1.0.2"}`,
	"PUT /bridges/{id}":                                   `{"name": "b2", "adminStateUp": false, "inboundFilterId": "@chains"}`,
	"PUT /bridges/{id}/dhcp/{subnet}":                     `{"subnetPrefix": "10.0.0.0", "subnetLength": 24, "serverAddr": "10.0.0.2", "dnsServerAddrs": ["8.8.8.8"]}`,
	"PUT /bridges/{id}/dhcp/{subnet}/hosts/{mac}":         `{"macAddr": "02:00:00:00:00:0a", "ipAddr": "10.0.0.11"}`,
	"PUT /bridges/{id}/dhcpV6/{subnet6}":                  `{"prefix": "2001:db8::", "prefixLength": 64, "dnsServerAddrs": ["2001:db8::53"]}`,
	"PUT /bridges/{id}/dhcpV6/{subnet6}/hostsV6/{client}": `{"clientId": "02:00:00:00:00:0b", "fixedAddress": "2001:db8::c"}`,
	"PUT /health_monitors/{id}":                           `{"type": "TCP", "delay": 10}`,
	"PUT /hosts/{id}":                                     `{"floodingProxyWeight": 1, "containerWeight": 1, "containerLimit": -1, "enforceContainerLimit": false}`,
	"PUT /l2insertions/{id}":                              `{"portId": "@ports", "srvPortId": "@port2", "mac": "02:00:00:00:00:61", "position": 3, "failOpen": true}`,
	"PUT /load_balancers/{id}":                            `{"adminStateUp": false}`,
	"PUT /mirrors/{id}":                                   `{"toPortId": "@rport"}`,
	"PUT /pool_members/{id}":                              `{"poolId": "@pools", "weight": 3, "adminStateUp": false}`,
	"PUT /pools/{id}":                                     `{"loadBalancerId": "@load_balancers", "lbMethod": "ROUND_ROBIN", "adminStateUp": false}`,
	"PUT /port_groups/{id}":                               `{"name": "pg2"}`,
	"PUT /ports/{id}":                                     `{"type": "Bridge", "vlanId": 0, "outboundFilterId": "@chains"}`,
	"PUT /qos_bw_limit_rules/{id}":                        `{"maxKbps": 7, "policyId": "@qos_policies"}`,
	"PUT /qos_dscp_rules/{id}":                            `{"dscpMark": 3, "policyId": "@qos_policies"}`,
	"PUT /qos_policies/{id}":                              `{"name": "q2"}`,
	"PUT /routers/{id}":                                   `{"name": "r2", "asNumber": 65000}`,
	"PUT /traces/{id}":                                    `{"name": "t2", "deviceType": "BRIDGE", "deviceId": "@bridges", "condition": {}}`,
	"PUT /tunnel_zones/{id}":                              `{"name": "rig2", "type": "vxlan"}`,
	"PUT /vips/{id}":                                      `{"poolId": "@pools", "address": "10.0.0.33"}`,
}

// validBody returns the body of route with the fixture's ids, or "" when
// the table has none.
func (rg *rig) validBody(route string) string {
	return rg.symbols().Replace(validBodies[route])
}

// symbols replaces each "@name" with the fixture's id of that collection or
// variable.
func (rg *rig) symbols() *strings.Replacer { return rg.replacer }

func (rg *rig) newReplacer() *strings.Replacer {
	names := map[string]string{}
	maps.Copy(names, rg.vars)
	maps.Copy(names, rg.ids)
	// Longest names first, so that @macEntry is not read as @mac.
	keys := slices.SortedFunc(maps.Keys(names), func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	for _, k := range keys {
		pairs = append(pairs, "@"+k, names[k])
	}
	return strings.NewReplacer(pairs...)
}

// dump reads every key of the rig's prefix, in key order.
func (rg *rig) dump() []*mvccKV {
	rg.t.Helper()
	resp, err := rg.store.Client().Get(context.Background(), rg.store.Prefix()+"/", clientv3.WithPrefix())
	if err != nil {
		rg.t.Fatal(err)
	}
	out := make([]*mvccKV, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = &mvccKV{string(kv.Key), string(kv.Value)}
	}
	return out
}

// changes describes how the store differs from the fixture ("" if not).
func (rg *rig) changes() string {
	rg.t.Helper()
	now := map[string]string{}
	for _, kv := range rg.dump() {
		now[kv.key] = kv.value
	}
	var diffs []string
	for _, kv := range rg.saved {
		if v, ok := now[kv.key]; !ok {
			diffs = append(diffs, "deleted "+kv.key)
		} else if v != kv.value {
			diffs = append(diffs, "changed "+kv.key+": "+kv.value+" -> "+v)
		}
		delete(now, kv.key)
	}
	for _, k := range slices.Sorted(maps.Keys(now)) {
		diffs = append(diffs, "created "+k+": "+now[k])
	}
	return strings.Join(diffs, "\n")
}

// restore puts the store back to the fixture in one transaction.
func (rg *rig) restore() {
	rg.t.Helper()
	saved := map[string]string{}
	for _, kv := range rg.saved {
		saved[kv.key] = kv.value
	}
	var ops []clientv3.Op
	for _, kv := range rg.dump() {
		if v, ok := saved[kv.key]; !ok {
			ops = append(ops, clientv3.OpDelete(kv.key))
		} else if v == kv.value {
			delete(saved, kv.key)
		}
	}
	for k, v := range saved {
		ops = append(ops, clientv3.OpPut(k, v))
	}
	if _, err := rg.store.Client().Txn(context.Background()).Then(ops...).Commit(); err != nil {
		rg.t.Fatal(err)
	}
}

// checkErrorEntity reports how an error answer breaks the contract's shape
// ("" if it does not): the vendor error type, and a JSON object whose code
// is the status and whose violations, if any, come with a 400.
func checkErrorEntity(r response) string {
	if r.status < 400 || len(r.body) == 0 {
		return ""
	}
	if ct := r.header.Get("Content-Type"); ct != "application/vnd.org.midonet.Error-v1+json" {
		return "Content-Type " + ct
	}
	var e struct {
		Message    *string         `json:"message"`
		Code       *int            `json:"code"`
		Violations json.RawMessage `json:"violations"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		return "not an error entity: " + err.Error()
	}
	if e.Code == nil || *e.Code != r.status {
		return fmt.Sprintf("code %v, want %d", e.Code, r.status)
	}
	if e.Violations != nil {
		var vs []struct {
			Property *string `json:"property"`
			Message  *string `json:"message"`
		}
		if err := json.Unmarshal(e.Violations, &vs); err != nil || len(vs) == 0 {
			return "violations are not a list of {property, message}"
		}
		for _, v := range vs {
			if v.Property == nil || v.Message == nil {
				return "a violation without property or message"
			}
		}
		if r.status != http.StatusBadRequest || e.Message == nil || *e.Message != "Validation error(s) found" {
			return "violations outside a 400 \"Validation error(s) found\""
		}
	}
	return ""
}
