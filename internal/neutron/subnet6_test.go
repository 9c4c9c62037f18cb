package neutron

import (
	"errors"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// subnet6 creates an IPv6 subnet on a network.
func (r *rig) subnet6(net ID, cidr string, extra ...any) ID {
	r.t.Helper()
	id := topology.NewID()
	r.create("subnets", body(append([]any{"id", id, "network_id", net, "tenant_id", tenant, "ip_version", 6,
		"cidr", cidr, "gateway_ip", strings.TrimSuffix(cidr, "/64") + "1", "enable_dhcp", true,
		"ipv6_address_mode", "dhcpv6-stateful", "ipv6_ra_mode", nil, "dns_nameservers", []string{"2001:db8:1::53"},
		"host_routes", []any{}, "allocation_pools", []any{}}, extra...)...))
	return id
}

func TestSubnet6Translation(t *testing.T) {
	r := newRig(t)
	f := r.network("10.0.0.0/24", "10.0.0.1")
	sub := r.subnet6(f.net, "2001:db8:1::/64")
	did := topology.DHCPSubnetID(f.net, "2001:db8:1::_64")
	d, ok := get[topology.DHCPSubnetV6](r, did)
	if !ok || deref(d.Prefix) != "2001:db8:1::" || d.PrefixLength != 64 || d.BridgeID != f.net ||
		len(d.DNSServerAddrs) != 1 || d.DNSServerAddrs[0] != "2001:db8:1::53" || len(d.Hosts) != 0 {
		t.Fatalf("DHCPv6 subnet = %+v (found %v)", d, ok)
	}
	// The IPv4 subnet's DHCP is untouched.
	if _, ok := get[topology.DHCPSubnet](r, topology.DHCPSubnetID(f.net, "10.0.0.0_24")); !ok {
		t.Error("the IPv4 DHCP subnet is gone")
	}

	// A dual-stack VM: a DHCPv6 host by MAC, IPv6 from its MAC through
	// anti-spoofing, no ARP entry for the IPv6 address.
	mac := "fa:16:3e:66:00:05"
	sg := r.securityGroup("default")
	port := topology.NewID()
	r.create("ports", body("id", port, "tenant_id", tenant, "network_id", f.net, "name", "vm6", "admin_state_up", true,
		"mac_address", mac, "security_groups", []ID{sg}, "device_owner", "compute:nova",
		"fixed_ips", []any{map[string]any{"subnet_id": f.subnet, "ip_address": "10.0.0.5"},
			map[string]any{"subnet_id": sub, "ip_address": "2001:db8:1::5"}}))
	d, _ = get[topology.DHCPSubnetV6](r, did)
	if len(d.Hosts) != 1 || deref(d.Hosts[0].ClientID) != mac || deref(d.Hosts[0].FixedAddress) != "2001:db8:1::5" ||
		deref(d.Hosts[0].Name) != "vm6" {
		t.Errorf("DHCPv6 hosts = %+v", d.Hosts)
	}
	if d4, _ := get[topology.DHCPSubnet](r, topology.DHCPSubnetID(f.net, "10.0.0.0_24")); len(d4.Hosts) != 1 || deref(d4.Hosts[0].IPAddr) != "10.0.0.5" {
		t.Errorf("DHCP hosts = %+v", d4.Hosts)
	}
	spoof := DerivedID(port, roleAntiSpoofChain)
	sameLines(t, "anti-spoof chain", describeRules(r.rules(spoof)), []string{
		"return tpsrc=68-68 tpdst=67-67 frag=any",
		"return dl=0x806 src=10.0.0.5/32 frag=any",
		"return dlsrc=" + mac + " src=10.0.0.5/32 frag=any",
		"return dl=0x86dd dlsrc=" + mac + " frag=any",
		"drop frag=any",
	})
	if v := r.state(nsdb.BridgeARPKey(f.net.String(), addr("10.0.0.5"))); v != mac {
		t.Errorf("ARP entry = %q, want %s", v, mac)
	}
	if g := must[topology.IPAddrGroup](r, sg); len(g.IPAddrPorts) != 1 || g.IPAddrPorts[0].IPAddress != "10.0.0.5" {
		t.Errorf("address group = %+v, want the IPv4 address only", g.IPAddrPorts)
	}

	// A new address replaces the host entry.
	if err := r.update("ports", port, body("fixed_ips", []any{map[string]any{"subnet_id": sub, "ip_address": "2001:db8:1::6"}})); err != nil {
		t.Fatal(err)
	}
	d, _ = get[topology.DHCPSubnetV6](r, did)
	if len(d.Hosts) != 1 || deref(d.Hosts[0].FixedAddress) != "2001:db8:1::6" {
		t.Errorf("DHCPv6 hosts after readdressing = %+v", d.Hosts)
	}
	if v := r.state(nsdb.BridgeARPKey(f.net.String(), addr("10.0.0.5"))); v != "" {
		t.Errorf("ARP entry of the dropped IPv4 address = %q", v)
	}
	sameLines(t, "anti-spoof chain, IPv6 only", describeRules(r.rules(spoof)), []string{
		"return tpsrc=68-68 tpdst=67-67 frag=any",
		"return dl=0x86dd dlsrc=" + mac + " frag=any",
		"drop frag=any",
	})

	// The subnet's update: new DNS servers keep the hosts; DHCP off
	// deletes the DHCPv6 subnet, on again brings it back with the host.
	if err := r.update("subnets", sub, body("dns_nameservers", []string{"2001:db8:1::54", "2001:db8:1::55"})); err != nil {
		t.Fatal(err)
	}
	if d, _ = get[topology.DHCPSubnetV6](r, did); len(d.DNSServerAddrs) != 2 || len(d.Hosts) != 1 {
		t.Errorf("after the DNS update: %+v", d)
	}
	if err := r.update("subnets", sub, body("enable_dhcp", false)); err != nil {
		t.Fatal(err)
	}
	if _, ok := get[topology.DHCPSubnetV6](r, did); ok {
		t.Error("DHCPv6 subnet kept with enable_dhcp false")
	}
	if err := r.update("subnets", sub, body("enable_dhcp", true)); err != nil {
		t.Fatal(err)
	}
	if d, ok = get[topology.DHCPSubnetV6](r, did); !ok || len(d.Hosts) != 1 || deref(d.Hosts[0].FixedAddress) != "2001:db8:1::6" {
		t.Errorf("DHCPv6 subnet enabled again = %+v (found %v)", d, ok)
	}

	// Deletes clean up.
	r.delete("ports", port)
	if d, _ = get[topology.DHCPSubnetV6](r, did); len(d.Hosts) != 0 {
		t.Errorf("DHCPv6 hosts outlive the port: %+v", d.Hosts)
	}
	r.delete("subnets", sub)
	if _, ok := get[topology.DHCPSubnetV6](r, did); ok {
		t.Error("DHCPv6 subnet outlives its subnet")
	}
}

func TestSubnet6Refusals(t *testing.T) {
	r := newRig(t)
	f := r.network("10.0.0.0/24", "10.0.0.1")
	v6 := func(extra ...any) []byte {
		return body(append([]any{"id", topology.NewID(), "network_id", f.net, "ip_version", 6, "cidr", "2001:db8:2::/64"}, extra...)...)
	}
	for name, c := range map[string]struct {
		b    []byte
		want error
	}{
		"SLAAC":                {v6("ipv6_address_mode", "slaac"), ErrUnsupported},
		"stateless DHCPv6":     {v6("ipv6_address_mode", "dhcpv6-stateless"), ErrUnsupported},
		"router advertisement": {v6("ipv6_ra_mode", "dhcpv6-stateful", "ipv6_address_mode", "dhcpv6-stateful"), ErrUnsupported},
		"host routes":          {v6("host_routes", []any{map[string]any{"destination": "2001:db8:9::/64", "nexthop": "2001:db8:2::1"}}), ErrUnsupported},
		"unknown mode":         {v6("ipv6_address_mode", "magic"), topology.ErrInvalid},
		"IPv4 DNS server":      {v6("dns_nameservers", []string{"10.0.0.53"}), topology.ErrInvalid},
		"gateway outside":      {v6("gateway_ip", "2001:db8:3::1"), topology.ErrInvalid},
		"version mismatch":     {body("id", topology.NewID(), "network_id", f.net, "ip_version", 6, "cidr", "10.9.0.0/24"), topology.ErrInvalid},
	} {
		if _, err := r.createErr("subnets", c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}

	// Routers route IPv4 only: an interface or a gateway on an IPv6
	// subnet is refused, whether by subnet or by a port's address.
	sub := r.subnet6(f.net, "2001:db8:4::/64")
	router := topology.NewID()
	r.create("routers", body("id", router, "tenant_id", tenant, "name", "r6", "admin_state_up", true))
	rif := topology.NewID()
	if _, err := r.createErr("ports", body("id", rif, "network_id", f.net, "mac_address", "fa:16:3e:66:00:01",
		"device_owner", "network:router_interface", "device_id", router.String(),
		"fixed_ips", []any{map[string]any{"subnet_id": sub, "ip_address": "2001:db8:4::1"}})); !errors.Is(err, ErrUnsupported) ||
		!strings.Contains(err.Error(), "route IPv4 only") {
		t.Errorf("router interface port on an IPv6 subnet: err = %v, want ErrUnsupported naming IPv4 routing", err)
	}
	vm := r.vif(f, "10.0.0.7", "fa:16:3e:66:00:07", nil)
	if err := r.svc.AddRouterInterface(t.Context(), router, RouterInterface{PortID: &vm, SubnetID: &sub}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("add_router_interface with an IPv6 subnet: err = %v, want ErrUnsupported", err)
	}
	if _, err := r.createErr("ports", body("id", topology.NewID(), "network_id", f.net, "mac_address", "fa:16:3e:66:00:02",
		"device_owner", "compute:nova", "extra_dhcp_opts", []any{map[string]any{"opt_name": "dns-server", "opt_value": "2001:db8::1", "ip_version": 6}},
		"fixed_ips", []any{map[string]any{"subnet_id": sub, "ip_address": "2001:db8:4::9"}})); !errors.Is(err, ErrUnsupported) {
		t.Errorf("DHCPv6 extra option: err = %v, want ErrUnsupported", err)
	}
	if _, err := r.createErr("ports", body("id", topology.NewID(), "network_id", f.net, "mac_address", "fa:16:3e:66:00:03",
		"device_owner", "compute:nova", "fixed_ips", []any{map[string]any{"subnet_id": sub, "ip_address": "10.0.0.9"}})); !errors.Is(err, topology.ErrInvalid) {
		t.Errorf("IPv4 address in an IPv6 subnet: err = %v, want ErrInvalid", err)
	}
}
