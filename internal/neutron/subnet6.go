package neutron

import (
	"errors"
	"net/netip"
	"slices"
	"strings"

	"github.com/midonet/midonet/internal/topology"
)

// IPv6 address modes of a Neutron subnet.
const (
	ipv6DHCPStateful  = "dhcpv6-stateful"
	ipv6DHCPStateless = "dhcpv6-stateless"
	ipv6SLAAC         = "slaac"
)

// checkSubnet6 refuses what an IPv6 subnet asks for that the agents do
// not do, and checks its addresses. The agents serve stateful DHCPv6 and
// send no router advertisements, and nothing routes IPv6: a subnet whose
// VMs would configure themselves from advertisements (SLAAC, stateless
// DHCPv6, any ipv6_ra_mode) or need routes handed out is refused. The
// gateway_ip is kept as Neutron's record of the address a router interface
// would take; attaching a router to the subnet is refused.
func checkSubnet6(s *Subnet, p netip.Prefix) error {
	if m := deref(s.IPv6RAMode); m != "" {
		return unsupported("subnet %s: ipv6_ra_mode %s is not supported: the agents send no router advertisements (the routers do not route IPv6); leave it unset and use ipv6_address_mode dhcpv6-stateful", s.ID, m)
	}
	switch m := deref(s.IPv6AddressMode); m {
	case "", ipv6DHCPStateful:
	case ipv6SLAAC, ipv6DHCPStateless:
		return unsupported("subnet %s: ipv6_address_mode %s is not supported: it needs router advertisements, which the agents do not send; use dhcpv6-stateful (addresses from the agents' DHCPv6)", s.ID, m)
	default:
		return invalid("subnet %s: ipv6_address_mode %q is none of dhcpv6-stateful, dhcpv6-stateless, slaac", s.ID, m)
	}
	if len(s.HostRoutes) > 0 {
		return unsupported("subnet %s: host_routes on an IPv6 subnet are not supported: DHCPv6 hands out no routes", s.ID)
	}
	if s.GatewayIP != nil && *s.GatewayIP != "" {
		gw, err := parseAddr6("gateway_ip", *s.GatewayIP)
		if err != nil {
			return err
		}
		if !p.Contains(gw) {
			return invalid("subnet %s: gateway_ip %s is outside %s", s.ID, gw, p)
		}
	}
	for _, pool := range s.AllocationPools {
		for _, a := range []string{pool.Start, pool.End} {
			ip, err := parseAddr6("allocation_pools", a)
			if err != nil {
				return err
			}
			if !p.Contains(ip) {
				return invalid("subnet %s: allocation pool address %s is outside %s", s.ID, ip, p)
			}
		}
	}
	_, err := dnsServers6(s)
	return err
}

// dnsServers6 parses an IPv6 subnet's DNS servers (DHCPv6 option 23
// carries IPv6 addresses only).
func dnsServers6(s *Subnet) ([]string, error) {
	var out []string
	for _, a := range s.DNSNameservers {
		ip, err := parseAddr6("dns_nameservers", a)
		if err != nil {
			return nil, err
		}
		out = append(out, ip.String())
	}
	return out, nil
}

// parseAddr6 parses an IPv6 address.
func parseAddr6(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return a, invalid("%s %q is not an IP address", field, s)
	}
	if !a.Is6() || a.Is4In6() {
		return a, invalid("%s %s is not an IPv6 address, on an IPv6 subnet", field, s)
	}
	return a, nil
}

// dhcp6FromSubnet is the DHCPv6 subnet of an IPv6 Neutron subnet with
// DHCP enabled, without hosts.
func dhcp6FromSubnet(s *Subnet, p netip.Prefix) (*topology.DHCPSubnetV6, error) {
	dns, err := dnsServers6(s)
	if err != nil {
		return nil, err
	}
	d := &topology.DHCPSubnetV6{Prefix: topology.Str(p.Addr().String()), PrefixLength: p.Bits(),
		DNSServerAddrs: dns, BridgeID: s.NetworkID}
	d.Normalize()
	return d, d.Validate()
}

// createSubnet6 makes an IPv6 subnet's DHCPv6 subnet on the network's
// bridge (none with enable_dhcp false: its VMs are given no address).
func (t *txn) createSubnet6(s *Subnet, p netip.Prefix) error {
	if err := checkSubnet6(s, p); err != nil {
		return err
	}
	if !isUp(s.EnableDHCP) {
		return nil
	}
	d, err := dhcp6FromSubnet(s, p)
	if err != nil {
		return err
	}
	return t.tx.Create(d)
}

// updateSubnet6 rewrites the DHCPv6 subnet, keeping its hosts; enabling
// DHCP makes it with a host for each VM port already on the subnet,
// disabling it deletes it.
func (t *txn) updateSubnet6(s *Subnet, p netip.Prefix) error {
	if err := checkSubnet6(s, p); err != nil {
		return err
	}
	id := dhcpID(s.NetworkID, p)
	if !isUp(s.EnableDHCP) {
		return t.tx.Delete(topology.KindDHCPSubnetV6, id)
	}
	d, err := dhcp6FromSubnet(s, p)
	if err != nil {
		return err
	}
	var old topology.DHCPSubnetV6
	if ok, err := t.tx.Exists(topology.KindDHCPSubnetV6, id); err != nil {
		return err
	} else if ok {
		if err := t.tx.Get(topology.KindDHCPSubnetV6, id, &old); err != nil {
			return err
		}
		d.Hosts = old.Hosts
		return t.tx.Put(d)
	}
	ports, err := topology.ListOf[Port](t.tx)
	if err != nil {
		return err
	}
	for i := range ports {
		np := &ports[i]
		if np.NetworkID != s.NetworkID || !isVIF(np) {
			continue
		}
		for _, f := range np.FixedIPs {
			if ip, err := netip.ParseAddr(f.IPAddress); err == nil && f.SubnetID == s.ID {
				d.Hosts = append(d.Hosts, dhcpHost6(np, ip.String()))
			}
		}
	}
	return t.tx.Create(d)
}

// dhcpHost6 is the DHCPv6 host of a VM port's address. Its client id is
// the port's MAC, which the agents match against the MAC in the client's
// DUID-LL or DUID-LLT (what dhclient -6 and most clients send), else the
// Ethernet source of the request.
func dhcpHost6(p *Port, ip string) topology.DHCPHostV6 {
	h := topology.DHCPHostV6{ClientID: topology.Str(strings.ToLower(p.MACAddress)), FixedAddress: topology.Str(ip)}
	if p.Name != "" {
		h.Name = topology.Str(p.Name)
	}
	return h
}

// addDHCPHost6 gives a VM port's IPv6 address a DHCPv6 host entry, when
// its subnet serves DHCPv6.
func (t *txn) addDHCPHost6(p *Port, a portAddr) error {
	var d topology.DHCPSubnetV6
	if err := t.tx.Get(topology.KindDHCPSubnetV6, dhcpID(a.subnet.NetworkID, a.prefix), &d); err != nil {
		if errors.Is(err, topology.ErrNotFound) {
			return nil // enable_dhcp false
		}
		return err
	}
	h := dhcpHost6(p, a.ip.String())
	d.Hosts = slices.DeleteFunc(d.Hosts, func(x topology.DHCPHostV6) bool {
		return strings.EqualFold(deref(x.ClientID), deref(h.ClientID)) && deref(x.FixedAddress) == a.ip.String()
	})
	d.Hosts = append(d.Hosts, h)
	return t.tx.Put(&d)
}

// removeDHCPHost6 deletes the DHCPv6 host entry of a VM port's address.
func (t *txn) removeDHCPHost6(p *Port, network ID, pfx netip.Prefix, ip netip.Addr) error {
	var d topology.DHCPSubnetV6
	if err := t.tx.Get(topology.KindDHCPSubnetV6, dhcpID(network, pfx), &d); err != nil {
		if errors.Is(err, topology.ErrNotFound) {
			return nil // deleted with its subnet, or DHCP disabled
		}
		return err
	}
	n := len(d.Hosts)
	d.Hosts = slices.DeleteFunc(d.Hosts, func(x topology.DHCPHostV6) bool {
		return strings.EqualFold(deref(x.ClientID), p.MACAddress) && deref(x.FixedAddress) == ip.String()
	})
	if len(d.Hosts) == n {
		return nil
	}
	return t.tx.Put(&d)
}
