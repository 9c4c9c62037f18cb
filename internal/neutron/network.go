package neutron

import (
	"net/netip"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// checkNetworkType refuses provider network types the translation does not
// implement: every network here is an overlay network of bridges.
func checkNetworkType(n *Network) error {
	if n.QoSPolicyID != nil && *n.QoSPolicyID != "" {
		return unsupported("network %s: qos_policy_id: Neutron QoS policies are not translated; use the MidoNet API's qos_policies", n.ID)
	}
	if n.NetworkType == nil {
		return nil
	}
	switch *n.NetworkType {
	case "", NetworkTypeMidonet, NetworkTypeLocal, NetworkTypeVXLAN:
		return nil
	case NetworkTypeUplink:
		return unsupported("network %s: provider:network_type uplink is not supported; give the router an external gateway on an external network and bind a port of that network to the uplink interface", n.ID)
	}
	return unsupported("network %s: provider:network_type %s is not supported; networks are MidoNet overlay networks (type midonet, local or vxlan)", n.ID, *n.NetworkType)
}

// createNetwork makes the network's bridge.
func (t *txn) createNetwork(n *Network) error {
	if err := checkNetworkType(n); err != nil {
		return err
	}
	b := topology.Bridge{ID: n.ID, Name: topology.Str(n.Name), AdminStateUp: isUp(n.AdminStateUp)}
	if o := n.Owner(); o != "" {
		b.TenantID = topology.Str(o)
	}
	b.Normalize()
	return t.tx.Create(&b)
}

// updateNetwork copies the name and admin state to the bridge, and the
// MTU to its DHCP subnets.
func (t *txn) updateNetwork(old, n *Network) error {
	if err := checkNetworkType(n); err != nil {
		return err
	}
	b, err := load[topology.Bridge](t, n.ID, "network "+n.ID.String())
	if err != nil {
		return err
	}
	b.Name, b.AdminStateUp = topology.Str(n.Name), isUp(n.AdminStateUp)
	if err := t.tx.Put(b); err != nil {
		return err
	}
	if mtuOf(old) == mtuOf(n) {
		return nil
	}
	subnets, err := topology.ListOf[topology.DHCPSubnet](t.tx)
	if err != nil {
		return err
	}
	for i := range subnets {
		if d := &subnets[i]; d.BridgeID == n.ID {
			d.InterfaceMTU = mtuOf(n)
			if err := t.tx.Put(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// mtuOf is the MTU a network's DHCP subnets hand out (nil: Neutron gave
// none, the agents' default applies).
func mtuOf(n *Network) *int {
	if n.MTU == nil || *n.MTU <= 0 {
		return nil
	}
	m := *n.MTU
	return &m
}

// deleteNetwork deletes the bridge with what it holds (its ports, DHCP
// subnets). The seeded MAC and ARP entries went with the ports.
func (t *txn) deleteNetwork(n *Network) error {
	return t.remove(topology.KindBridge, n.ID)
}

// subnetPrefix parses a subnet's CIDR, IPv4 or IPv6 as its ip_version
// says (none: as the CIDR is written).
func subnetPrefix(s *Subnet) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s.CIDR)
	if err != nil {
		return p, invalid("subnet %s: cidr %q is not a CIDR", s.ID, s.CIDR)
	}
	switch {
	case s.IPVersion == 4 && !p.Addr().Is4(), s.IPVersion == 6 && !p.Addr().Is6(), p.Addr().Is4In6():
		return p, invalid("subnet %s: cidr %s is not an IPv%d prefix", s.ID, s.CIDR, s.IPVersion)
	case s.IPVersion != 0 && s.IPVersion != 4 && s.IPVersion != 6:
		return p, invalid("subnet %s: ip_version %d is neither 4 nor 6", s.ID, s.IPVersion)
	}
	return p.Masked(), nil
}

// routedPrefix is subnetPrefix for a subnet a router attaches to: the
// virtual routers route IPv4 only.
func routedPrefix(s *Subnet) (netip.Prefix, error) {
	p, err := subnetPrefix(s)
	if err == nil && p.Addr().Is6() {
		return p, unsupported("subnet %s: a router interface or gateway on an IPv6 subnet is not supported (the virtual routers route IPv4 only; the subnet's VMs get their addresses by DHCPv6 and reach each other over the network)", s.ID)
	}
	return p, err
}

// dhcpID is the stored id of a subnet's DHCP subnet.
func dhcpID(network ID, p netip.Prefix) string {
	return topology.DHCPSubnetID(network, p.Addr().String()+"_"+itoa(p.Bits()))
}

// metadataPrefix is where VMs reach the metadata service.
var metadataPrefix = netip.MustParsePrefix("169.254.169.254/32")

// dhcpFromSubnet fills a DHCP subnet from a Neutron subnet: the gateway is
// the default gateway and, until a DHCP port gives one, the server
// address; host routes become option 121 routes. (The network's MTU
// becomes the interface MTU option.)
func dhcpFromSubnet(s *Subnet, p netip.Prefix, d *topology.DHCPSubnet) error {
	d.BridgeID = s.NetworkID
	d.SubnetPrefix, d.SubnetLength = topology.Str(p.Addr().String()), p.Bits()
	d.Enabled = isUp(s.EnableDHCP)
	d.DefaultGateway = nil
	if s.GatewayIP != nil && *s.GatewayIP != "" {
		gw, err := parseAddr4("gateway_ip", *s.GatewayIP)
		if err != nil {
			return err
		}
		if !p.Contains(gw) {
			return invalid("subnet %s: gateway_ip %s is outside %s", s.ID, gw, p)
		}
		d.DefaultGateway = topology.Str(gw.String())
	}
	d.DNSServerAddrs = nil
	for _, a := range s.DNSNameservers {
		ip, err := parseAddr4("dns_nameservers", a)
		if err != nil {
			return err
		}
		d.DNSServerAddrs = append(d.DNSServerAddrs, ip.String())
	}
	d.Opt121Routes = []topology.Opt121Route{}
	for _, r := range s.HostRoutes {
		dst, err := parsePrefix4("host_routes.destination", r.Destination)
		if err != nil {
			return err
		}
		nh, err := parseAddr4("host_routes.nexthop", r.Nexthop)
		if err != nil {
			return err
		}
		d.Opt121Routes = append(d.Opt121Routes, opt121(dst, nh))
	}
	for _, pool := range s.AllocationPools {
		for _, a := range []string{pool.Start, pool.End} {
			ip, err := parseAddr4("allocation_pools", a)
			if err != nil {
				return err
			}
			if !p.Contains(ip) {
				return invalid("subnet %s: allocation pool address %s is outside %s", s.ID, ip, p)
			}
		}
	}
	return nil
}

func opt121(dst netip.Prefix, gw netip.Addr) topology.Opt121Route {
	return topology.Opt121Route{DestinationPrefix: topology.Str(dst.Masked().Addr().String()),
		DestinationLength: dst.Bits(), GatewayAddr: topology.Str(gw.String())}
}

// createSubnet makes the subnet's DHCP subnet on the network's bridge.
func (t *txn) createSubnet(s *Subnet) error {
	p, err := subnetPrefix(s)
	if err != nil {
		return err
	}
	n, err := load[Network](t, s.NetworkID, "subnet "+s.ID.String()+": network_id")
	if err != nil {
		return err
	}
	if err := checkNetworkType(n); err != nil {
		return err
	}
	if p.Addr().Is6() {
		return t.createSubnet6(s, p)
	}
	var d topology.DHCPSubnet
	if err := dhcpFromSubnet(s, p, &d); err != nil {
		return err
	}
	d.ServerAddr = d.DefaultGateway
	d.InterfaceMTU = mtuOf(n)
	d.Normalize()
	if err := d.Validate(); err != nil {
		return err
	}
	return t.tx.Create(&d)
}

// updateSubnet rewrites the DHCP subnet, keeping its hosts and the
// server address and metadata route a DHCP port gave it, and moves the
// routers' default routes through the subnet's gateway to the new one.
func (t *txn) updateSubnet(old, s *Subnet) error {
	p, err := subnetPrefix(s)
	if err != nil {
		return err
	}
	op, err := subnetPrefix(old)
	if err != nil {
		return err
	}
	if p != op || s.NetworkID != old.NetworkID {
		return invalid("subnet %s: cidr and network_id cannot change", s.ID)
	}
	if p.Addr().Is6() {
		return t.updateSubnet6(s, p)
	}
	var d topology.DHCPSubnet
	if err := t.tx.Get(topology.KindDHCPSubnet, dhcpID(s.NetworkID, p), &d); err != nil {
		return err
	}
	oldGw := d.DefaultGateway
	if err := dhcpFromSubnet(s, p, &d); err != nil {
		return err
	}
	server, err := t.dhcpPortAddr(s)
	if err != nil {
		return err
	}
	if server.IsValid() {
		d.ServerAddr = topology.Str(server.String())
		d.Opt121Routes = append(d.Opt121Routes, opt121(metadataPrefix, server))
	} else {
		d.ServerAddr = d.DefaultGateway
	}
	if err := d.Validate(); err != nil {
		return err
	}
	if err := t.tx.Put(&d); err != nil {
		return err
	}
	if deref(oldGw) != deref(d.DefaultGateway) {
		return t.moveGatewayRoutes(s.ID, d.DefaultGateway)
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// dhcpPortAddr returns the address the network's DHCP port has on the
// subnet, if it has one.
func (t *txn) dhcpPortAddr(s *Subnet) (netip.Addr, error) {
	ports, err := topology.ListOf[Port](t.tx)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, np := range ports {
		if np.NetworkID != s.NetworkID || np.DeviceOwner != OwnerDHCP {
			continue
		}
		for _, ip := range np.FixedIPs {
			if ip.SubnetID == s.ID {
				return netip.ParseAddr(ip.IPAddress)
			}
		}
	}
	return netip.Addr{}, nil
}

// moveGatewayRoutes points the default routes that routers have through
// the subnet's gateway at its new gateway (none: routes to the link).
func (t *txn) moveGatewayRoutes(subnet ID, gw *string) error {
	routers, err := topology.ListOf[Router](t.tx)
	if err != nil {
		return err
	}
	for _, r := range routers {
		if r.GwPortID == nil {
			continue
		}
		gp, err := lookup[Port](t, *r.GwPortID)
		if err != nil || gp == nil {
			return err
		}
		for _, ip := range gp.FixedIPs {
			if ip.SubnetID != subnet {
				continue
			}
			a, err := netip.ParseAddr(ip.IPAddress)
			if err != nil {
				continue
			}
			rt, err := lookup[topology.Route](t, derivedIDAddr(gatewayPortID(*r.GwPortID), roleDefaultRoute, a))
			if err != nil || rt == nil {
				return err
			}
			rt.NextHopGateway = gw
			if err := t.tx.Put(rt); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteSubnet deletes the DHCP subnet.
func (t *txn) deleteSubnet(s *Subnet) error {
	p, err := subnetPrefix(s)
	if err != nil {
		return nil // nothing was made for it
	}
	if p.Addr().Is6() {
		return t.tx.Delete(topology.KindDHCPSubnetV6, dhcpID(s.NetworkID, p))
	}
	return t.tx.Delete(topology.KindDHCPSubnet, dhcpID(s.NetworkID, p))
}

// The MAC and ARP entries a port seeds on its network.

func macKey(network ID, mac [6]byte) string { return nsdb.BridgeMACKey(network.String(), 0, mac) }
func arpKey(network ID, ip netip.Addr) string {
	return nsdb.BridgeARPKey(network.String(), ip)
}
