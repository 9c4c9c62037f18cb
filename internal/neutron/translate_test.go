package neutron

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

const tenant = "tenant-a"

// netFixture is a network with one IPv4 subnet.
type netFixture struct {
	net, subnet ID
}

func (r *rig) network(cidr, gw string, extra ...any) netFixture {
	r.t.Helper()
	f := netFixture{net: topology.NewID(), subnet: topology.NewID()}
	r.create("networks", body(append([]any{"id", f.net, "tenant_id", tenant, "name", "net-" + cidr,
		"admin_state_up", true, "shared", false, "router:external", false}, extra...)...))
	r.create("subnets", body("id", f.subnet, "network_id", f.net, "tenant_id", tenant, "ip_version", 4,
		"cidr", cidr, "gateway_ip", gw, "enable_dhcp", true, "dns_nameservers", []string{},
		"host_routes", []any{}, "allocation_pools", []any{}))
	return f
}

// securityGroup creates a group with Neutron's default rules: egress IPv4
// and IPv6 to anywhere, ingress from members of the group.
func (r *rig) securityGroup(name string) ID {
	r.t.Helper()
	id := topology.NewID()
	rule := func(dir, et string, remote any) map[string]any {
		return map[string]any{"id": topology.NewID(), "security_group_id": id, "tenant_id": tenant, "direction": dir,
			"ethertype": et, "protocol": nil, "port_range_min": nil, "port_range_max": nil,
			"remote_ip_prefix": nil, "remote_group_id": remote}
	}
	r.create("security_groups", body("id", id, "tenant_id", tenant, "name", name, "description", "",
		"security_group_rules", []any{rule("egress", "IPv4", nil), rule("egress", "IPv6", nil),
			rule("ingress", "IPv4", id), rule("ingress", "IPv6", id)}))
	return id
}

func (r *rig) vif(f netFixture, ip, mac string, sgs []ID, extra ...any) ID {
	r.t.Helper()
	id := topology.NewID()
	r.create("ports", body(append([]any{"id", id, "tenant_id", tenant, "network_id", f.net, "name", "vm-" + ip,
		"admin_state_up", true, "mac_address", mac, "fixed_ips", []any{map[string]any{"subnet_id": f.subnet, "ip_address": ip}},
		"security_groups", sgs, "device_owner", "compute:nova", "device_id", topology.NewID().String()}, extra...)...))
	return id
}

func TestNetworkTranslation(t *testing.T) {
	r := newRig(t)
	id := topology.NewID()
	r.create("networks", body("id", id, "tenant_id", tenant, "name", "blue", "admin_state_up", false,
		"router:external", true, "shared", true, "provider:network_type", "midonet", "mtu", 1450))
	b := must[topology.Bridge](r, id)
	if deref(b.Name) != "blue" || deref(b.TenantID) != tenant || b.AdminStateUp {
		t.Errorf("bridge = name %q tenant %q up %v, want blue, %s, down", deref(b.Name), deref(b.TenantID), b.AdminStateUp, tenant)
	}
	// The Neutron object is stored as posted, extension fields included.
	c, _ := r.svc.collection("networks")
	raw, err := c.get(t.Context(), id)
	if err != nil || !strings.Contains(string(raw), `"mtu":1450`) || !strings.Contains(string(raw), `"router:external":true`) {
		t.Errorf("stored network = %s, %v; want the posted fields", raw, err)
	}
	if err := r.update("networks", id, body("name", "green", "admin_state_up", true)); err != nil {
		t.Fatal(err)
	}
	if b := must[topology.Bridge](r, id); deref(b.Name) != "green" || !b.AdminStateUp {
		t.Errorf("after update: name %q up %v", deref(b.Name), b.AdminStateUp)
	}
	r.delete("networks", id)
	absent[topology.Bridge](r, id)
	r.delete("networks", id) // deletes are idempotent

	if _, err := r.createErr("networks", body("id", topology.NewID(), "name", "x", "qos_policy_id", topology.NewID())); !errors.Is(err, ErrUnsupported) {
		t.Errorf("network with a QoS policy: err = %v, want ErrUnsupported", err)
	}
	for _, typ := range []string{"uplink", "vlan", "flat"} {
		_, err := r.createErr("networks", body("id", topology.NewID(), "name", "x", "provider:network_type", typ))
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("network of type %s: err = %v, want ErrUnsupported", typ, err)
		}
	}
}

func TestSubnetTranslation(t *testing.T) {
	r := newRig(t)
	net := topology.NewID()
	r.create("networks", body("id", net, "tenant_id", tenant, "name", "n", "mtu", 1450))
	sub := topology.NewID()
	r.create("subnets", body("id", sub, "network_id", net, "ip_version", 4, "cidr", "10.1.0.0/24",
		"gateway_ip", "10.1.0.1", "enable_dhcp", true, "dns_nameservers", []string{"10.1.0.2", "8.8.8.8"},
		"host_routes", []any{map[string]any{"destination": "192.168.0.0/16", "nexthop": "10.1.0.254"}},
		"allocation_pools", []any{map[string]any{"start": "10.1.0.10", "end": "10.1.0.200"}}))
	did := topology.DHCPSubnetID(net, "10.1.0.0_24")
	d, ok := get[topology.DHCPSubnet](r, did)
	if !ok {
		t.Fatalf("no DHCP subnet %s", did)
	}
	got := fmt.Sprintf("gw=%s server=%s dns=%v enabled=%v routes=%s/%d via %s", deref(d.DefaultGateway), deref(d.ServerAddr),
		d.DNSServerAddrs, d.Enabled, deref(d.Opt121Routes[0].DestinationPrefix), d.Opt121Routes[0].DestinationLength,
		deref(d.Opt121Routes[0].GatewayAddr))
	want := "gw=10.1.0.1 server=10.1.0.1 dns=[10.1.0.2 8.8.8.8] enabled=true routes=192.168.0.0/16 via 10.1.0.254"
	if got != want || len(d.Opt121Routes) != 1 {
		t.Errorf("DHCP subnet:\n got %s\nwant %s", got, want)
	}
	if d.InterfaceMTU == nil || *d.InterfaceMTU != 1450 {
		t.Errorf("DHCP subnet MTU = %v, want the network's 1450", d.InterfaceMTU)
	}
	if err := r.update("networks", net, body("mtu", 1400)); err != nil {
		t.Fatal(err)
	}
	if d, _ := get[topology.DHCPSubnet](r, did); d.InterfaceMTU == nil || *d.InterfaceMTU != 1400 {
		t.Errorf("DHCP subnet MTU after the network's change = %v, want 1400", d.InterfaceMTU)
	}
	if err := r.update("subnets", sub, body("enable_dhcp", false, "dns_nameservers", []string{}, "gateway_ip", "10.1.0.254")); err != nil {
		t.Fatal(err)
	}
	d, _ = get[topology.DHCPSubnet](r, did)
	if d.Enabled || len(d.DNSServerAddrs) != 0 || deref(d.DefaultGateway) != "10.1.0.254" {
		t.Errorf("after update: enabled %v dns %v gw %s", d.Enabled, d.DNSServerAddrs, deref(d.DefaultGateway))
	}
	r.delete("subnets", sub)
	if _, ok := get[topology.DHCPSubnet](r, did); ok {
		t.Error("DHCP subnet outlives its subnet")
	}

	for name, b := range map[string][]byte{
		"IPv6 SLAAC":  body("id", topology.NewID(), "network_id", net, "ip_version", 6, "cidr", "2001:db8::/64", "ipv6_address_mode", "slaac"),
		"IPv6 in DNS": body("id", topology.NewID(), "network_id", net, "ip_version", 4, "cidr", "10.2.0.0/24", "dns_nameservers", []string{"2001:db8::1"}),
	} {
		if _, err := r.createErr("subnets", b); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", name, err)
		}
	}
	_, err := r.createErr("subnets", body("id", topology.NewID(), "network_id", topology.NewID(), "ip_version", 4, "cidr", "10.3.0.0/24"))
	if !errors.Is(err, topology.ErrInvalid) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("subnet of a missing network: err = %v, want a 400 naming the network", err)
	}
}

func TestPortTranslation(t *testing.T) {
	r := newRig(t)
	f := r.network("10.0.0.0/24", "10.0.0.1")
	sg := r.securityGroup("web")
	mac := "fa:16:3e:11:22:33"
	port := r.vif(f, "10.0.0.5", mac, []ID{sg},
		"allowed_address_pairs", []any{map[string]any{"ip_address": "10.0.0.100/32", "mac_address": "fa:16:3e:aa:bb:cc"}},
		"extra_dhcp_opts", []any{map[string]any{"opt_name": "mtu", "opt_value": "1400", "ip_version": 4}},
		"binding:host_id", "compute-1", "binding:profile", map[string]any{"interface_name": "vm1-tap"})

	bp := must[topology.Port](r, port)
	in, out, spoof := DerivedID(port, roleInChain), DerivedID(port, roleOutChain), DerivedID(port, roleAntiSpoofChain)
	if bp.DeviceID != f.net || bp.Type != topology.PortTypeBridge || bp.TunnelKey == 0 ||
		deref(bp.InterfaceName) != "vm1-tap" || bp.HostID == nil || *bp.InboundFilterID != in || *bp.OutboundFilterID != out {
		t.Errorf("bridge port = %+v", bp)
	}
	host := must[topology.Host](r, *bp.HostID)
	if deref(host.Name) != "compute-1" {
		t.Errorf("the port is bound to host %q, want compute-1 (created for its agent to adopt)", deref(host.Name))
	}
	sgIn, sgOut := DerivedID(sg, roleInChain), DerivedID(sg, roleOutChain)
	sameLines(t, "anti-spoof chain", describeRules(r.rules(spoof)), []string{
		"return tpsrc=68-68 tpdst=67-67 frag=any",
		"return dl=0x806 src=10.0.0.5/32 frag=any",
		"return dlsrc=" + mac + " src=10.0.0.5/32 frag=any",
		"return dl=0x806 src=10.0.0.100/32 frag=any",
		"return dlsrc=fa:16:3e:aa:bb:cc src=10.0.0.100/32 frag=any",
		"drop frag=any",
	})
	sameLines(t, "inbound chain (from the VM)", describeRules(r.rules(in)), []string{
		"jump to=" + spoof.String(),
		"accept return",
		"jump to=" + sgIn.String(),
		"drop !dl=0x806 frag=any",
	})
	sameLines(t, "outbound chain (to the VM)", describeRules(r.rules(out)), []string{
		"accept return",
		"jump to=" + sgOut.String(),
		"drop !dl=0x806 frag=any",
	})
	// MAC and ARP entries, DHCP lease, address group membership.
	m, _ := topology.ParseMAC(mac)
	if v := r.state(nsdb.BridgeMACKey(f.net.String(), 0, m)); v != port.String() {
		t.Errorf("MAC entry = %q, want the port", v)
	}
	if v := r.state(nsdb.BridgeARPKey(f.net.String(), addr("10.0.0.5"))); v != mac {
		t.Errorf("ARP entry = %q, want %s", v, mac)
	}
	d, _ := get[topology.DHCPSubnet](r, topology.DHCPSubnetID(f.net, "10.0.0.0_24"))
	if len(d.Hosts) != 1 || deref(d.Hosts[0].MacAddr) != mac || deref(d.Hosts[0].IPAddr) != "10.0.0.5" ||
		len(d.Hosts[0].ExtraDHCPOpts) != 1 || d.Hosts[0].ExtraDHCPOpts[0].OptValue != "1400" {
		t.Errorf("DHCP hosts = %+v", d.Hosts)
	}
	g := must[topology.IPAddrGroup](r, sg)
	if len(g.IPAddrPorts) != 1 || g.IPAddrPorts[0].IPAddress != "10.0.0.5" || g.IPAddrPorts[0].PortIDs[0] != port {
		t.Errorf("address group = %+v", g.IPAddrPorts)
	}

	// Port security off: chains stay, empty; the group keeps the address.
	if err := r.update("ports", port, body("port_security_enabled", false, "security_groups", []ID{})); err != nil {
		t.Fatal(err)
	}
	for _, c := range []ID{in, out, spoof} {
		if rs := r.rules(c); len(rs) != 0 {
			t.Errorf("chain %s has %d rules with port security off", c, len(rs))
		}
	}
	if g := must[topology.IPAddrGroup](r, sg); len(g.IPAddrPorts) != 0 {
		t.Errorf("address group after leaving the group = %+v", g.IPAddrPorts)
	}
	// Rebinding follows Neutron; no interface name means Nova's tap.
	if err := r.update("ports", port, body("binding:host_id", "compute-2", "binding:profile", map[string]any{})); err != nil {
		t.Fatal(err)
	}
	bp = must[topology.Port](r, port)
	if h := must[topology.Host](r, *bp.HostID); deref(h.Name) != "compute-2" || deref(bp.InterfaceName) != "tap"+port.String()[:11] {
		t.Errorf("rebound to %s/%s", deref(h.Name), deref(bp.InterfaceName))
	}

	r.delete("ports", port)
	absent[topology.Port](r, port)
	for _, c := range []ID{in, out, spoof} {
		absent[topology.Chain](r, c)
	}
	if v := r.state(nsdb.BridgeMACKey(f.net.String(), 0, m)); v != "" {
		t.Errorf("MAC entry outlives the port: %s", v)
	}
	if v := r.state(nsdb.BridgeARPKey(f.net.String(), addr("10.0.0.5"))); v != "" {
		t.Errorf("ARP entry outlives the port: %s", v)
	}
	d, _ = get[topology.DHCPSubnet](r, topology.DHCPSubnetID(f.net, "10.0.0.0_24"))
	if len(d.Hosts) != 0 {
		t.Errorf("DHCP hosts outlive the port: %+v", d.Hosts)
	}
}

func TestPortRefusals(t *testing.T) {
	r := newRig(t)
	f := r.network("10.0.0.0/24", "10.0.0.1")
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"address outside the subnet": {body("id", topology.NewID(), "network_id", f.net, "mac_address", "fa:16:3e:00:00:01",
			"fixed_ips", []any{map[string]any{"subnet_id": f.subnet, "ip_address": "10.9.9.9"}}, "device_owner", "compute:nova"), topology.ErrInvalid},
		"missing security group": {body("id", topology.NewID(), "network_id", f.net, "mac_address", "fa:16:3e:00:00:02",
			"fixed_ips", []any{}, "security_groups", []ID{topology.NewID()}, "device_owner", "compute:nova"), topology.ErrInvalid},
		"IPv6 allowed pair": {body("id", topology.NewID(), "network_id", f.net, "mac_address", "fa:16:3e:00:00:03",
			"fixed_ips", []any{}, "allowed_address_pairs", []any{map[string]any{"ip_address": "2001:db8::1"}}, "device_owner", "compute:nova"), ErrUnsupported},
	} {
		_, err := r.createErr("ports", c.b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
	// A refused port leaves nothing behind: the transaction is all or nothing.
	if left := r.objects("/topology/neutron_", "/topology/bridges/", "/topology/dhcp_subnets/"); len(left) != 0 {
		t.Errorf("refused ports left objects behind: %v", left)
	}
}

func TestDHCPPortGivesServerAndMetadataRoute(t *testing.T) {
	r := newRig(t)
	f := r.network("10.0.0.0/24", "10.0.0.1")
	router := r.router(nil)
	rif := r.routerInterface(router, f, "10.0.0.1", "fa:16:3e:00:01:01")
	dhcp := topology.NewID()
	r.create("ports", body("id", dhcp, "network_id", f.net, "mac_address", "fa:16:3e:00:00:02", "device_owner", "network:dhcp",
		"fixed_ips", []any{map[string]any{"subnet_id": f.subnet, "ip_address": "10.0.0.2"}}, "device_id", "dhcp"))
	did := topology.DHCPSubnetID(f.net, "10.0.0.0_24")
	d, _ := get[topology.DHCPSubnet](r, did)
	if deref(d.ServerAddr) != "10.0.0.2" || len(d.Opt121Routes) != 1 || deref(d.Opt121Routes[0].DestinationPrefix) != "169.254.169.254" ||
		deref(d.Opt121Routes[0].GatewayAddr) != "10.0.0.2" {
		t.Errorf("DHCP subnet with a DHCP port: server %s routes %+v", deref(d.ServerAddr), d.Opt121Routes)
	}
	rp := routerPeerID(rif)
	meta := must[topology.Route](r, derivedIDAddr(rp, roleMetaRoute, addr("10.0.0.2")))
	if deref(meta.DstNetworkAddr) != "169.254.169.254" || deref(meta.NextHopGateway) != "10.0.0.2" || *meta.NextHopPort != rp {
		t.Errorf("metadata route = %+v", meta)
	}
	// No chains: a network service's port is trusted.
	if bp := must[topology.Port](r, dhcp); bp.InboundFilterID != nil {
		t.Errorf("DHCP port has filters: %+v", bp)
	}
	r.delete("ports", dhcp)
	d, _ = get[topology.DHCPSubnet](r, did)
	if deref(d.ServerAddr) != "10.0.0.1" || len(d.Opt121Routes) != 0 {
		t.Errorf("after the DHCP port's deletion: server %s routes %+v", deref(d.ServerAddr), d.Opt121Routes)
	}
	absent[topology.Route](r, meta.ID)
}

func (r *rig) router(gw *ID, extra ...any) ID {
	r.t.Helper()
	id := topology.NewID()
	kv := []any{"id", id, "tenant_id", tenant, "name", "r", "admin_state_up", true}
	if gw != nil {
		kv = append(kv, "gw_port_id", *gw)
	}
	r.create("routers", body(append(kv, extra...)...))
	return id
}

// routerInterface creates a router interface port with ip and attaches it.
func (r *rig) routerInterface(router ID, f netFixture, ip, mac string) ID {
	r.t.Helper()
	p := topology.NewID()
	r.create("ports", body("id", p, "tenant_id", tenant, "network_id", f.net, "mac_address", mac, "device_owner", "network:router_interface",
		"device_id", router.String(), "fixed_ips", []any{map[string]any{"subnet_id": f.subnet, "ip_address": ip}}))
	if err := r.svc.AddRouterInterface(r.t.Context(), router, RouterInterface{PortID: &p, SubnetID: &f.subnet, TenantID: tenant}); err != nil {
		r.t.Fatalf("add router interface: %v", err)
	}
	return p
}

// external makes an external network 198.51.100.0/24 (gateway .1) and a
// router gateway port on it at .2.
func (r *rig) external() (netFixture, ID) {
	r.t.Helper()
	ext := r.network("198.51.100.0/24", "198.51.100.1", "router:external", true)
	gw := topology.NewID()
	r.create("ports", body("id", gw, "network_id", ext.net, "mac_address", "fa:16:3e:00:00:aa", "device_owner", "network:router_gateway",
		"fixed_ips", []any{map[string]any{"subnet_id": ext.subnet, "ip_address": "198.51.100.2"}}))
	return ext, gw
}

func TestRouterTranslation(t *testing.T) {
	r := newRig(t)
	ext, gw := r.external()
	router := r.router(&gw, "external_gateway_info", map[string]any{"network_id": ext.net, "enable_snat": true,
		"external_fixed_ips": []any{map[string]any{"subnet_id": ext.subnet, "ip_address": "198.51.100.2"}}})
	rt := must[topology.Router](r, router)
	in, out := DerivedID(router, roleInChain), DerivedID(router, roleOutChain)
	skip, exact, float := DerivedID(router, roleSkipSNATChain), DerivedID(router, roleFloatSNATExact), DerivedID(router, roleFloatSNAT)
	if *rt.InboundFilterID != in || *rt.OutboundFilterID != out || *rt.ForwardChainID != DerivedID(router, roleFwdChain) ||
		deref(rt.TenantID) != tenant {
		t.Errorf("router = %+v", rt)
	}
	if g := must[topology.PortGroup](r, DerivedID(router, roleEdgeGroup)); !g.Stateful {
		t.Error("the edge port group is not stateful")
	}
	must[topology.PortGroup](r, DerivedID(router, roleRIFGroup))

	// The gateway: a router port with the gateway port's address and MAC,
	// linked to the gateway port on the external network.
	gp := gatewayPortID(gw)
	rp := must[topology.Port](r, gp)
	if rp.DeviceID != router || *rp.PeerID != gw || deref(rp.PortMAC) != "fa:16:3e:00:00:aa" ||
		len(rp.PortSubnet) != 1 || rp.PortSubnet[0] != "198.51.100.2/24" {
		t.Errorf("gateway router port = %+v", rp)
	}
	if bp := must[topology.Port](r, gw); bp.PeerID == nil || *bp.PeerID != gp {
		t.Errorf("the gateway's bridge port is not linked: %+v", bp)
	}
	routes := map[string]string{}
	for _, role := range []string{rolePortRoute, roleLocalRoute, roleDefaultRoute} {
		rt := must[topology.Route](r, derivedIDAddr(gp, role, addr("198.51.100.2")))
		routes[role] = fmt.Sprintf("%s %s/%d via %s", rt.Type, deref(rt.DstNetworkAddr), rt.DstNetworkLength, deref(rt.NextHopGateway))
	}
	if routes[rolePortRoute] != "Normal 198.51.100.0/24 via " || routes[roleLocalRoute] != "Local 198.51.100.2/32 via " ||
		routes[roleDefaultRoute] != "Normal 0.0.0.0/0 via 198.51.100.1" {
		t.Errorf("gateway routes = %v", routes)
	}
	gwAddr := "198.51.100.2"
	sameLines(t, "post-routing chain", describeRules(r.rules(out)), []string{
		"jump to=" + skip.String(),
		"jump to=" + exact.String(),
		"jump to=" + float.String(),
		fmt.Sprintf("snat/accept out=[%s] !src=%s/32 nat=%s-%s:1-65535 frag=unfragmented", gp, gwAddr, gwAddr, gwAddr),
		fmt.Sprintf("snat/accept dst-rewritten nat=%s-%s:1-65535 frag=unfragmented", gwAddr, gwAddr),
		fmt.Sprintf("drop out=[%s] !src=%s/32 frag=any", gp, gwAddr),
	})
	sameLines(t, "pre-routing chain", describeRules(r.rules(in)), []string{
		fmt.Sprintf("rev_snat/accept dst=%s/32", gwAddr),
		fmt.Sprintf("drop !proto=1 dst=%s/32 frag=any", gwAddr),
	})
	sameLines(t, "skip-SNAT chain", describeRules(r.rules(skip)), []string{
		fmt.Sprintf("return out=[%s] frag=any", gp),
		"accept NOT dst-rewritten frag=any",
		fmt.Sprintf("accept in=[%s] frag=any", gp),
	})

	// SNAT off, then on again.
	gwInfo := map[string]any{"network_id": ext.net, "enable_snat": false}
	if err := r.update("routers", router, body("external_gateway_info", gwInfo)); err != nil {
		t.Fatal(err)
	}
	if n := len(r.rules(out)); n != 3 {
		t.Errorf("post-routing has %d rules with SNAT off, want the 3 jumps", n)
	}
	if n := len(r.rules(in)) + len(r.rules(skip)); n != 1 {
		t.Errorf("pre-routing and skip-SNAT have %d rules with SNAT off, want 1", n)
	}
	gwInfo["enable_snat"] = true
	if err := r.update("routers", router, body("external_gateway_info", gwInfo)); err != nil {
		t.Fatal(err)
	}
	if n := len(r.rules(out)); n != 6 {
		t.Errorf("post-routing has %d rules with SNAT on again, want 6", n)
	}

	// Extra routes go through the port whose subnet holds the next hop.
	hop := map[string]any{"destination": "203.0.113.0/24", "nexthop": "198.51.100.9"}
	if err := r.update("routers", router, body("routes", []any{hop})); err != nil {
		t.Fatal(err)
	}
	extra := must[topology.Route](r, DerivedID(router, roleExtraRoute+"/203.0.113.0/24/198.51.100.9"))
	if *extra.NextHopPort != gp || deref(extra.NextHopGateway) != "198.51.100.9" {
		t.Errorf("extra route = %+v", extra)
	}
	if err := r.update("routers", router, body("routes", []any{})); err != nil {
		t.Fatal(err)
	}
	absent[topology.Route](r, extra.ID)
	err := r.update("routers", router, body("routes", []any{map[string]any{"destination": "203.0.113.0/24", "nexthop": "10.77.0.1"}}))
	if !errors.Is(err, topology.ErrInvalid) {
		t.Errorf("a route to an unreachable next hop: err = %v, want 400", err)
	}

	// Removing the gateway removes the router port and the SNAT.
	if err := r.update("routers", router, body("external_gateway_info", nil, "gw_port_id", nil)); err != nil {
		t.Fatal(err)
	}
	absent[topology.Port](r, gp)
	absent[topology.Route](r, derivedIDAddr(gp, roleDefaultRoute, addr("198.51.100.2")))
	if n := len(r.rules(out)); n != 3 {
		t.Errorf("post-routing has %d rules without a gateway, want 3", n)
	}
}

func TestRouterInterfaceTranslation(t *testing.T) {
	r := newRig(t)
	f := r.network("10.0.0.0/24", "10.0.0.1")
	router := r.router(nil)
	rif := r.routerInterface(router, f, "10.0.0.1", "fa:16:3e:00:01:01")
	rp := routerPeerID(rif)
	p := must[topology.Port](r, rp)
	if p.DeviceID != router || *p.PeerID != rif || p.PortSubnet[0] != "10.0.0.1/24" || deref(p.PortMAC) != "fa:16:3e:00:01:01" {
		t.Errorf("interface router port = %+v", p)
	}
	if g := must[topology.PortGroup](r, DerivedID(router, roleRIFGroup)); len(g.PortIDs) != 1 || g.PortIDs[0] != rp {
		t.Errorf("interface group = %v", g.PortIDs)
	}
	// A retried attach changes nothing.
	if err := r.svc.AddRouterInterface(t.Context(), router, RouterInterface{PortID: &rif, SubnetID: &f.subnet}); err != nil {
		t.Fatalf("retried attach: %v", err)
	}
	sub := must[topology.Route](r, derivedIDAddr(rp, rolePortRoute, addr("10.0.0.1")))
	if deref(sub.DstNetworkAddr) != "10.0.0.0" || sub.DstNetworkLength != 24 {
		t.Errorf("subnet route = %+v", sub)
	}
	must[topology.Route](r, derivedIDAddr(rp, roleLocalRoute, addr("10.0.0.1")))
	sameLines(t, "post-routing same-subnet SNAT", describeRules(r.rules(DerivedID(router, roleOutChain)))[3:], []string{
		fmt.Sprintf("snat/accept fwd in=[%s] out=[%s] !dst=169.254.169.254/32 nat=10.0.0.1-10.0.0.1:1-65535 frag=unfragmented", rp, rp),
	})
	sameLines(t, "pre-routing same-subnet reverse SNAT", describeRules(r.rules(DerivedID(router, roleInChain))), []string{
		fmt.Sprintf("rev_snat/accept return in=[%s] dst=10.0.0.1/32", rp),
	})
	// Neutron removes an interface by deleting its port, then calls
	// remove_router_interface.
	r.delete("ports", rif)
	if err := r.svc.RemoveRouterInterface(t.Context(), router, RouterInterface{PortID: &rif, SubnetID: &f.subnet}); err != nil {
		t.Fatal(err)
	}
	absent[topology.Port](r, rp)
	absent[topology.Route](r, sub.ID)
	if n := len(r.rules(DerivedID(router, roleInChain))); n != 0 {
		t.Errorf("pre-routing keeps %d rules", n)
	}
}

func TestFloatingIPTranslation(t *testing.T) {
	r := newRig(t)
	ext, gw := r.external()
	router := r.router(&gw, "external_gateway_info", map[string]any{"network_id": ext.net, "enable_snat": true})
	f := r.network("10.0.0.0/24", "10.0.0.1")
	r.routerInterface(router, f, "10.0.0.1", "fa:16:3e:00:01:01")
	vm1 := r.vif(f, "10.0.0.5", "fa:16:3e:00:00:05", nil)
	vm2 := r.vif(f, "10.0.0.6", "fa:16:3e:00:00:06", nil)
	fip := topology.NewID()
	r.create("floating_ips", body("id", fip, "tenant_id", tenant, "floating_ip_address", "198.51.100.50",
		"floating_network_id", ext.net, "router_id", router, "port_id", vm1, "fixed_ip_address", "10.0.0.5"))
	arp := nsdb.BridgeARPKey(ext.net.String(), addr("198.51.100.50"))
	if v := r.state(arp); v != "fa:16:3e:00:00:aa" {
		t.Errorf("the floating IP's ARP entry = %q, want the gateway port's MAC", v)
	}
	gp := gatewayPortID(gw)
	check := func(fixed string) {
		t.Helper()
		sameLines(t, "pre-routing", describeRules(r.rules(DerivedID(router, roleInChain)))[:1], []string{
			"dnat/accept dst=198.51.100.50/32 nat=" + fixed + "-" + fixed + ":0-0 frag=any"})
		sameLines(t, "float-SNAT-exact", describeRules(r.rules(DerivedID(router, roleFloatSNATExact))), []string{
			fmt.Sprintf("snat/accept out=[%s] src=%s/32 nat=198.51.100.50-198.51.100.50:0-0 frag=any", gp, fixed)})
		sameLines(t, "float-SNAT", describeRules(r.rules(DerivedID(router, roleFloatSNAT))), []string{
			fmt.Sprintf("snat/accept src=%s/32 nat=198.51.100.50-198.51.100.50:0-0 frag=any", fixed)})
		sameLines(t, "skip-SNAT", describeRules(r.rules(DerivedID(router, roleSkipSNATChain))), []string{
			fmt.Sprintf("return out=[%s] frag=any", gp),
			fmt.Sprintf("return out=[%s] frag=any", gp),
			"accept NOT dst-rewritten frag=any",
			fmt.Sprintf("accept in=[%s] frag=any", gp),
			fmt.Sprintf("accept in=[%s] frag=any", gp),
		})
	}
	check("10.0.0.5")
	// Re-associate with another port.
	if err := r.update("floating_ips", fip, body("port_id", vm2, "fixed_ip_address", "10.0.0.6")); err != nil {
		t.Fatal(err)
	}
	check("10.0.0.6")
	// Disassociate: rules and ARP entry go, the floating IP stays.
	if err := r.update("floating_ips", fip, body("port_id", nil, "fixed_ip_address", nil, "router_id", nil)); err != nil {
		t.Fatal(err)
	}
	if n := len(r.rules(DerivedID(router, roleFloatSNAT))); n != 0 || r.state(arp) != "" {
		t.Errorf("after disassociation: %d float-SNAT rules, ARP %q", n, r.state(arp))
	}
	// Associate again, then delete the VM's port: Neutron disassociates.
	if err := r.update("floating_ips", fip, body("port_id", vm2, "fixed_ip_address", "10.0.0.6", "router_id", router)); err != nil {
		t.Fatal(err)
	}
	r.delete("ports", vm2)
	if n := len(r.rules(DerivedID(router, roleFloatSNAT))); n != 0 || r.state(arp) != "" {
		t.Errorf("after the port's deletion: %d float-SNAT rules, ARP %q", n, r.state(arp))
	}
	c, _ := r.svc.collection("floating_ips")
	raw, _ := c.get(t.Context(), fip)
	if !strings.Contains(string(raw), `"port_id":null`) {
		t.Errorf("the floating IP still names the deleted port: %s", raw)
	}
}

func TestSecurityGroupRuleTranslation(t *testing.T) {
	r := newRig(t)
	sg := r.securityGroup("default")
	in, out := DerivedID(sg, roleInChain), DerivedID(sg, roleOutChain)
	sameLines(t, "egress rules (inbound chain)", describeRules(r.rules(in)), []string{
		"accept dl=0x800 frag=any", "accept dl=0x86dd frag=any"})
	sameLines(t, "ingress rules (outbound chain)", describeRules(r.rules(out)), []string{
		"accept dl=0x800 srcgroup=" + sg.String() + " frag=any", "accept dl=0x86dd srcgroup=" + sg.String() + " frag=any"})
	if g := must[topology.IPAddrGroup](r, sg); *g.InboundChainID != in || *g.OutboundChainID != out || deref(g.Name) != "default" {
		t.Errorf("address group = %+v", g)
	}

	for _, c := range []struct {
		name string
		kv   []any
		want []string
	}{
		{"ssh from a prefix", []any{"direction", "ingress", "ethertype", "IPv4", "protocol", "tcp", "port_range_min", 22, "port_range_max", 22,
			"remote_ip_prefix", "192.0.2.0/24"},
			[]string{"accept dl=0x800 proto=6 src=192.0.2.0/24 tpdst=22-22 frag=header", "accept dl=0x800 proto=6 src=192.0.2.0/24 frag=nonheader"}},
		{"icmp echo by number", []any{"direction", "ingress", "ethertype", "IPv4", "protocol", "1", "port_range_min", 8, "port_range_max", 0},
			[]string{"accept dl=0x800 proto=1 tpsrc=8-8 tpdst=0-0 frag=header", "accept dl=0x800 proto=1 frag=nonheader"}},
		{"any icmp", []any{"direction", "ingress", "ethertype", "IPv4", "protocol", "icmp"},
			[]string{"accept dl=0x800 proto=1 frag=any"}},
		{"udp egress to a group", []any{"direction", "egress", "ethertype", "IPv4", "protocol", 17, "port_range_min", 53, "port_range_max", 53,
			"remote_group_id", sg},
			[]string{"accept dl=0x800 proto=17 dstgroup=" + sg.String() + " tpdst=53-53 frag=header", "accept dl=0x800 proto=17 dstgroup=" + sg.String() + " frag=nonheader"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := topology.NewID()
			chain := out
			if c.kv[1] == "egress" {
				chain = in
			}
			before := len(r.rules(chain))
			r.create("security_group_rules", body(append([]any{"id", id, "security_group_id", sg, "tenant_id", tenant}, c.kv...)...))
			sameLines(t, "new rules", describeRules(r.rules(chain))[before:], c.want)
			r.delete("security_group_rules", id)
			if n := len(r.rules(chain)); n != before {
				t.Errorf("after deleting the rule the chain has %d rules, want %d", n, before)
			}
		})
	}
	_, err := r.createErr("security_group_rules", body("id", topology.NewID(), "security_group_id", sg, "direction", "ingress",
		"ethertype", "IPv6", "remote_ip_prefix", "2001:db8::/64"))
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("IPv6 prefix: err = %v, want ErrUnsupported", err)
	}
	_, err = r.createErr("security_group_rules", body("id", topology.NewID(), "security_group_id", sg, "direction", "ingress",
		"remote_address_group_id", topology.NewID()))
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("address group: err = %v, want ErrUnsupported", err)
	}
	_, err = r.createErr("security_groups", body("id", topology.NewID(), "name", "stateless", "stateful", false, "security_group_rules", []any{}))
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("stateless group: err = %v, want ErrUnsupported", err)
	}
	_, err = r.createErr("security_group_rules", body("id", topology.NewID(), "security_group_id", sg, "direction", "sideways"))
	if !errors.Is(err, topology.ErrInvalid) {
		t.Errorf("bad direction: err = %v, want 400", err)
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	r := newRig(t)
	f := r.network("10.0.0.0/24", "10.0.0.1")
	sg := r.securityGroup("sg")
	id := topology.NewID()
	b := body("id", id, "network_id", f.net, "mac_address", "fa:16:3e:00:00:07", "device_owner", "compute:nova",
		"fixed_ips", []any{map[string]any{"subnet_id": f.subnet, "ip_address": "10.0.0.7"}}, "security_groups", []ID{sg})
	first := r.create("ports", b)
	key := must[topology.Port](r, id).TunnelKey
	second := r.create("ports", b)
	if fmt.Sprint(first) != fmt.Sprint(second) || must[topology.Port](r, id).TunnelKey != key {
		t.Errorf("a retried create answered differently:\n%v\n%v", first, second)
	}
	if g := must[topology.IPAddrGroup](r, sg); len(g.IPAddrPorts) != 1 || len(g.IPAddrPorts[0].PortIDs) != 1 {
		t.Errorf("a retried create added the port twice: %+v", g.IPAddrPorts)
	}
	_, err := r.createErr("ports", body("id", id, "network_id", f.net, "mac_address", "fa:16:3e:00:00:08", "device_owner", "compute:nova"))
	if !errors.Is(err, topology.ErrExists) {
		t.Errorf("another port with the same id: err = %v, want a conflict", err)
	}
}

// TestLifecycleLeavesNothing builds a tenant's networks the way Neutron
// does, then deletes everything in Neutron's order: the store must hold
// nothing the translation made.
func TestLifecycleLeavesNothing(t *testing.T) {
	r := newRig(t)
	ext, gw := r.external()
	router := r.router(&gw, "external_gateway_info", map[string]any{"network_id": ext.net, "enable_snat": true},
		"routes", []any{map[string]any{"destination": "203.0.113.0/24", "nexthop": "198.51.100.9"}})
	f1 := r.network("10.0.1.0/24", "10.0.1.1")
	f2 := r.network("10.0.2.0/24", "10.0.2.1")
	rif1 := r.routerInterface(router, f1, "10.0.1.1", "fa:16:3e:00:01:01")
	rif2 := r.routerInterface(router, f2, "10.0.2.1", "fa:16:3e:00:02:01")
	sg := r.securityGroup("web")
	rule := topology.NewID()
	r.create("security_group_rules", body("id", rule, "security_group_id", sg, "direction", "ingress", "ethertype", "IPv4",
		"protocol", "tcp", "port_range_min", 22, "port_range_max", 22))
	dhcp := topology.NewID()
	r.create("ports", body("id", dhcp, "network_id", f1.net, "mac_address", "fa:16:3e:00:00:02", "device_owner", "network:dhcp",
		"fixed_ips", []any{map[string]any{"subnet_id": f1.subnet, "ip_address": "10.0.1.2"}}))
	vm1 := r.vif(f1, "10.0.1.10", "fa:16:3e:00:01:10", []ID{sg}, "binding:host_id", "h1")
	vm2 := r.vif(f2, "10.0.2.10", "fa:16:3e:00:02:10", []ID{sg}, "binding:host_id", "h2")
	fip := topology.NewID()
	r.create("floating_ips", body("id", fip, "floating_ip_address", "198.51.100.50", "floating_network_id", ext.net,
		"router_id", router, "port_id", vm1, "fixed_ip_address", "10.0.1.10"))

	r.delete("floating_ips", fip)
	r.delete("ports", vm1)
	r.delete("ports", vm2)
	r.delete("ports", dhcp)
	r.delete("security_group_rules", rule)
	r.delete("security_groups", sg)
	for _, p := range []struct {
		port ID
		f    netFixture
	}{{rif1, f1}, {rif2, f2}} {
		r.delete("ports", p.port)
		if err := r.svc.RemoveRouterInterface(t.Context(), router, RouterInterface{PortID: &p.port, SubnetID: &p.f.subnet}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.update("routers", router, body("external_gateway_info", nil, "gw_port_id", nil, "routes", []any{})); err != nil {
		t.Fatal(err)
	}
	r.delete("ports", gw)
	r.delete("routers", router)
	for _, f := range []netFixture{f1, f2, ext} {
		r.delete("subnets", f.subnet)
		r.delete("networks", f.net)
	}
	// The hosts the bindings registered stay for their agents.
	if left := r.objects("/topology/hosts/"); len(left) != 0 {
		t.Errorf("the store keeps %d keys after everything was deleted:\n  %s", len(left), strings.Join(left, "\n  "))
	}
}
