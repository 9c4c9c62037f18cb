package neutron

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/midonet/midonet/internal/topology"
)

// Port kinds by device owner. A port is a VIF (a VM's) unless a network
// service owns it; MidoNet took an empty owner for a DHCP port, this
// translation takes it for a VIF, as Neutron's own port-security check does.
func isVIF(p *Port) bool {
	return strings.HasPrefix(p.DeviceOwner, OwnerComputePrefix) || p.DeviceOwner == ""
}
func isTrusted(p *Port) bool { return strings.HasPrefix(p.DeviceOwner, "network:") }
func isRIF(p *Port) bool     { return p.DeviceOwner == OwnerRouterInterface }
func isGateway(p *Port) bool { return p.DeviceOwner == OwnerRouterGateway }
func isDHCP(p *Port) bool    { return p.DeviceOwner == OwnerDHCP }
func isFIP(p *Port) bool     { return p.DeviceOwner == OwnerFloatingIP }

// seedsMACAndARP reports whether the port's MAC and addresses are seeded
// in its network's tables (ARP suppression, no flooding to find them).
func seedsMACAndARP(p *Port) bool { return isVIF(p) || isRIF(p) || isGateway(p) }

// securityEnabled reports whether the port's traffic is filtered.
func securityEnabled(p *Port) bool {
	return !isTrusted(p) && (p.PortSecurityEnabled == nil || *p.PortSecurityEnabled)
}

// routerPeerID is the id of the router port linked to a router interface
// or gateway Neutron port (whose own id is the bridge port's).
func routerPeerID(port ID) ID { return DerivedID(port, roleRouterPeer) }

// gatewayPortID is routerPeerID for a router's gateway port.
func gatewayPortID(port ID) ID { return routerPeerID(port) }

// portAddr is one fixed IP of a port with its subnet.
type portAddr struct {
	ip     netip.Addr
	subnet *Subnet
	prefix netip.Prefix
}

// portAddrs checks a port's fixed IPs: each is an address inside a subnet
// of the port's network, of the subnet's IP version. A router's port (an
// interface or a gateway) has IPv4 addresses only: the routers route IPv4.
func (t *txn) portAddrs(p *Port) ([]portAddr, error) {
	if p.QoSPolicyID != nil && *p.QoSPolicyID != "" {
		return nil, unsupported("port %s: qos_policy_id: Neutron QoS policies are not translated; use the MidoNet API's qos_policies", p.ID)
	}
	out := make([]portAddr, 0, len(p.FixedIPs))
	for _, f := range p.FixedIPs {
		ip, err := netip.ParseAddr(f.IPAddress)
		if err != nil || ip.Zone() != "" || ip.Is4In6() {
			return nil, invalid("port %s: fixed_ips.ip_address %q is not an IP address", p.ID, f.IPAddress)
		}
		s, err := load[Subnet](t, f.SubnetID, "port "+p.ID.String()+": fixed_ips.subnet_id")
		if err != nil {
			return nil, err
		}
		if s.NetworkID != p.NetworkID {
			return nil, invalid("port %s: subnet %s belongs to network %s, not the port's %s", p.ID, s.ID, s.NetworkID, p.NetworkID)
		}
		pfx, err := subnetPrefix(s)
		if isRIF(p) || isGateway(p) {
			pfx, err = routedPrefix(s)
		}
		if err != nil {
			return nil, err
		}
		if !pfx.Contains(ip) {
			return nil, invalid("port %s: fixed IP %s is outside subnet %s (%s)", p.ID, ip, s.ID, pfx)
		}
		out = append(out, portAddr{ip: ip, subnet: s, prefix: pfx})
	}
	return out, nil
}

// createPort translates a new Neutron port: a bridge port (bound to its
// host interface when the binding names one), seeded MAC and ARP
// entries, security chains, security group memberships, DHCP entries.
func (t *txn) createPort(p *Port) error {
	if isFIP(p) {
		return nil // a floating IP's port makes nothing: the FIP does
	}
	n, err := load[Network](t, p.NetworkID, "port "+p.ID.String()+": network_id")
	if err != nil {
		return err
	}
	if err := checkNetworkType(n); err != nil {
		return err
	}
	addrs, err := t.portAddrs(p)
	if err != nil {
		return err
	}
	bp := topology.Port{ID: p.ID, Type: topology.PortTypeBridge, DeviceID: p.NetworkID, AdminStateUp: isUp(p.AdminStateUp)}
	if err := t.bindPort(&bp, p); err != nil {
		return err
	}
	if err := topology.AllocateTunnelKey(t.tx, &bp, t.randInt); err != nil {
		return err
	}
	if !isTrusted(p) {
		bp.InboundFilterID = topology.IDPtr(DerivedID(p.ID, roleInChain))
		bp.OutboundFilterID = topology.IDPtr(DerivedID(p.ID, roleOutChain))
	}
	bp.Normalize()
	if err := t.tx.Create(&bp); err != nil {
		return err
	}
	return t.addPortState(p, addrs)
}

// bindPort sets the host binding from binding:host_id and the profile's
// interface_name. Without an interface name the port is plugged into
// Nova's tap device for it, tap plus the first 11 characters of its id.
func (t *txn) bindPort(bp *topology.Port, p *Port) error {
	bp.HostID, bp.InterfaceName = nil, nil
	if p.HostID == "" {
		return nil
	}
	host, err := t.hostByName(p.HostID)
	if err != nil {
		return err
	}
	bp.HostID = topology.IDPtr(host)
	bp.InterfaceName = topology.Str(interfaceName(p))
	return nil
}

// interfaceName is the host interface a bound port is plugged into.
func interfaceName(p *Port) string {
	if p.Profile != nil && p.Profile.InterfaceName != "" {
		return p.Profile.InterfaceName
	}
	return "tap" + p.ID.String()[:11]
}

// addPortState makes what hangs off a port besides its bridge port; the
// port's chains are created empty here even when port security is off.
func (t *txn) addPortState(p *Port, addrs []portAddr) error {
	mac, err := parseMAC(p.MACAddress)
	if err != nil {
		return err
	}
	if seedsMACAndARP(p) {
		if err := t.seedState(macKey(p.NetworkID, mac), p.ID.String()); err != nil {
			return err
		}
		for _, a := range addrs {
			if !a.ip.Is4() {
				continue // IPv6 neighbours are found by NDP, which the bridge carries
			}
			if err := t.seedState(arpKey(p.NetworkID, a.ip), topology.FormatMAC(mac)); err != nil {
				return err
			}
		}
	}
	if !isTrusted(p) {
		if err := t.addPortSecurity(p, addrs); err != nil {
			return err
		}
	}
	switch {
	case isVIF(p):
		return t.addDHCPHosts(p, addrs)
	case isDHCP(p):
		return t.addDHCPServer(p, addrs)
	}
	return nil
}

// removePortState undoes addPortState.
func (t *txn) removePortState(p *Port) error {
	if mac, err := parseMAC(p.MACAddress); err == nil && seedsMACAndARP(p) {
		if err := t.unseedState(macKey(p.NetworkID, mac), p.ID.String()); err != nil {
			return err
		}
		for _, f := range p.FixedIPs {
			if ip, err := netip.ParseAddr(f.IPAddress); err == nil && ip.Is4() {
				if err := t.unseedState(arpKey(p.NetworkID, ip), topology.FormatMAC(mac)); err != nil {
					return err
				}
			}
		}
	}
	if !isTrusted(p) {
		if err := t.removePortSecurity(p); err != nil {
			return err
		}
	}
	switch {
	case isVIF(p):
		return t.removeDHCPHosts(p)
	case isDHCP(p):
		return t.removeDHCPServer(p)
	}
	return nil
}

// addPortSecurity creates the port's chains and, with port security on,
// their rules, as MidoNet does:
//
//	inbound (from the VM):  jump anti-spoof, accept return flows, jump to each
//	                        group's egress chain, drop all but ARP
//	outbound (to the VM):   accept return flows, jump to each group's ingress
//	                        chain, drop all but ARP
//	anti-spoof:             return DHCP requests (68 → 67); per fixed IP and
//	                        allowed address pair: return ARP from that IP,
//	                        return IP from that IP and MAC; drop the rest
//
// and adds the port's addresses to its security groups' address groups.
func (t *txn) addPortSecurity(p *Port, addrs []portAddr) error {
	in, out, spoof := DerivedID(p.ID, roleInChain), DerivedID(p.ID, roleOutChain), DerivedID(p.ID, roleAntiSpoofChain)
	tenant := p.Owner()
	for _, c := range []struct {
		id   ID
		name string
	}{{in, "OS_PORT_" + p.ID.String() + "_INBOUND"}, {out, "OS_PORT_" + p.ID.String() + "_OUTBOUND"},
		{spoof, "OS_PORT_" + p.ID.String() + "_ANTI_SPOOF"}} {
		if err := t.createChain(c.id, c.name, tenant); err != nil {
			return err
		}
	}
	for _, sg := range p.SecurityGroups {
		if err := t.groupAddrs(sg, p.ID, addrs, true); err != nil {
			return err
		}
	}
	if !securityEnabled(p) {
		return nil
	}
	seq := 0
	rule := func(chain ID, r topology.Rule) error {
		seq++
		r.ID, r.ChainID = DerivedID(p.ID, fmt.Sprintf("rule/port/%d", seq)), chain
		return t.addRule(r, appendRule)
	}
	any := topology.Str(topology.FragAny)
	arp, notARP, ipv6 := 0x0806, 0x0806, 0x86dd
	mac, err := parseMAC(p.MACAddress)
	if err != nil {
		return err
	}

	// Anti-spoofing.
	if err := t.addRule(topology.Rule{ID: DerivedID(p.ID, roleAntiSpoofJump), ChainID: in, Type: topology.RuleJump,
		JumpChainID: topology.IDPtr(spoof)}, appendRule); err != nil {
		return err
	}
	dhcp := topology.Rule{Type: topology.RuleReturn}
	dhcp.TpSrc, dhcp.TpDst, dhcp.FragmentPolicy = &topology.PortRange{Start: 68, End: 68}, &topology.PortRange{Start: 67, End: 67}, any
	if err := rule(spoof, dhcp); err != nil {
		return err
	}
	pairs := make([]struct {
		pfx netip.Prefix
		mac string
	}, 0, len(addrs)+len(p.AllowedAddressPairs))
	v6 := false
	for _, a := range addrs {
		if !a.ip.Is4() {
			v6 = true
			continue
		}
		pairs = append(pairs, struct {
			pfx netip.Prefix
			mac string
		}{netip.PrefixFrom(a.ip, 32), p.MACAddress})
	}
	for _, ap := range p.AllowedAddressPairs {
		pfx, err := parsePrefix4("allowed_address_pairs.ip_address", ap.IPAddress)
		if err != nil {
			return err
		}
		mac := ap.MACAddress
		if mac == "" {
			mac = p.MACAddress
		}
		if _, err := parseMAC(mac); err != nil {
			return err
		}
		pairs = append(pairs, struct {
			pfx netip.Prefix
			mac string
		}{pfx, mac})
	}
	for _, pr := range pairs {
		m, _ := parseMAC(pr.mac)
		fromIP := topology.Rule{Type: topology.RuleReturn}
		fromIP.DlType, fromIP.FragmentPolicy = &arp, any
		fromIP.NwSrcAddress, fromIP.NwSrcLength = condPrefix(pr.pfx)
		if err := rule(spoof, fromIP); err != nil {
			return err
		}
		fromIPMAC := topology.Rule{Type: topology.RuleReturn}
		fromIPMAC.FragmentPolicy, fromIPMAC.DlSrc = any, topology.Str(topology.FormatMAC(m))
		fromIPMAC.NwSrcAddress, fromIPMAC.NwSrcLength = condPrefix(pr.pfx)
		if err := rule(spoof, fromIPMAC); err != nil {
			return err
		}
	}
	if v6 {
		// IPv6 from the port's MAC: its addresses, its link-local address,
		// neighbour discovery and DHCPv6. The rule engine matches no IPv6
		// addresses, so IPv6 is held to the port's MAC, not to its
		// addresses.
		fromMAC := topology.Rule{Type: topology.RuleReturn}
		fromMAC.DlType, fromMAC.FragmentPolicy = &ipv6, any
		fromMAC.DlSrc = topology.Str(topology.FormatMAC(mac))
		if err := rule(spoof, fromMAC); err != nil {
			return err
		}
	}
	drop := topology.Rule{Type: topology.RuleDrop}
	drop.FragmentPolicy = any
	if err := rule(spoof, drop); err != nil {
		return err
	}

	// Return flows, security groups, and the final drop.
	for _, chain := range []ID{out, in} {
		ret := topology.Rule{Type: topology.RuleAccept}
		ret.MatchReturnFlow = true
		if err := rule(chain, ret); err != nil {
			return err
		}
	}
	for _, sg := range p.SecurityGroups {
		if err := rule(in, topology.Rule{Type: topology.RuleJump, JumpChainID: topology.IDPtr(DerivedID(sg, roleInChain))}); err != nil {
			return err
		}
		if err := rule(out, topology.Rule{Type: topology.RuleJump, JumpChainID: topology.IDPtr(DerivedID(sg, roleOutChain))}); err != nil {
			return err
		}
	}
	for _, chain := range []ID{in, out} {
		d := topology.Rule{Type: topology.RuleDrop}
		d.DlType, d.InvDlType, d.FragmentPolicy = &notARP, true, any
		if err := rule(chain, d); err != nil {
			return err
		}
	}
	return nil
}

// removePortSecurity deletes the port's chains and takes its addresses out
// of its security groups' address groups.
func (t *txn) removePortSecurity(p *Port) error {
	for _, sg := range p.SecurityGroups {
		if err := t.groupAddrs(sg, p.ID, nil, false); err != nil {
			return err
		}
	}
	for _, role := range []string{roleInChain, roleOutChain, roleAntiSpoofChain} {
		if err := t.remove(topology.KindChain, DerivedID(p.ID, role)); err != nil {
			return err
		}
	}
	return nil
}

// groupAddrs adds the port's addresses to a security group's address
// group (add), or removes every address of the port from it.
func (t *txn) groupAddrs(sg, port ID, addrs []portAddr, add bool) error {
	g, err := lookup[topology.IPAddrGroup](t, sg)
	if err != nil {
		return err
	}
	if g == nil {
		if add {
			return invalid("port %s: security group %s does not exist", port, sg)
		}
		return nil
	}
	if add {
		for _, a := range addrs {
			if !a.ip.Is4() {
				continue // the rule engine matches IPv4 members only
			}
			i := slices.IndexFunc(g.IPAddrPorts, func(x topology.IPAddrPort) bool { return x.IPAddress == a.ip.String() })
			if i < 0 {
				g.IPAddrPorts = append(g.IPAddrPorts, topology.IPAddrPort{IPAddress: a.ip.String()})
				i = len(g.IPAddrPorts) - 1
			}
			if !slices.Contains(g.IPAddrPorts[i].PortIDs, port) {
				g.IPAddrPorts[i].PortIDs = append(g.IPAddrPorts[i].PortIDs, port)
			}
		}
	} else {
		kept := g.IPAddrPorts[:0]
		for _, x := range g.IPAddrPorts {
			x.PortIDs = slices.DeleteFunc(x.PortIDs, func(id ID) bool { return id == port })
			if len(x.PortIDs) > 0 {
				kept = append(kept, x)
			}
		}
		g.IPAddrPorts = kept
	}
	g.Normalize()
	return t.tx.Put(g)
}

// dhcpOf reads the DHCP subnet of a port address.
func (t *txn) dhcpOf(a portAddr) (*topology.DHCPSubnet, error) {
	var d topology.DHCPSubnet
	if err := t.tx.Get(topology.KindDHCPSubnet, dhcpID(a.subnet.NetworkID, a.prefix), &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// addDHCPHosts gives each address of a VIF a static DHCP lease with the
// port's extra DHCP options.
func (t *txn) addDHCPHosts(p *Port, addrs []portAddr) error {
	for _, o := range p.ExtraDHCPOpts {
		if o.IPVersion != nil && *o.IPVersion == 6 {
			return unsupported("port %s: extra_dhcp_opts %s: DHCPv6 options are not supported; the agents' DHCPv6 gives the address and the subnet's DNS servers", p.ID, o.OptName)
		}
	}
	for _, a := range addrs {
		if !a.ip.Is4() {
			if err := t.addDHCPHost6(p, a); err != nil {
				return err
			}
			continue
		}
		d, err := t.dhcpOf(a)
		if err != nil {
			return err
		}
		h := topology.DHCPHost{MacAddr: topology.Str(strings.ToLower(p.MACAddress)), IPAddr: topology.Str(a.ip.String())}
		if p.Name != "" {
			h.Name = topology.Str(p.Name)
		}
		for _, o := range p.ExtraDHCPOpts {
			h.ExtraDHCPOpts = append(h.ExtraDHCPOpts, topology.DHCPOption{OptName: o.OptName, OptValue: o.OptValue})
		}
		h.Normalize()
		d.Hosts = slices.DeleteFunc(d.Hosts, func(x topology.DHCPHost) bool {
			return strings.EqualFold(deref(x.MacAddr), p.MACAddress) && deref(x.IPAddr) == a.ip.String()
		})
		d.Hosts = append(d.Hosts, h)
		if err := t.tx.Put(d); err != nil {
			return err
		}
	}
	return nil
}

// removeDHCPHosts deletes the leases of a VIF.
func (t *txn) removeDHCPHosts(p *Port) error {
	fixed, err := t.fixedSubnets(p)
	if err != nil {
		return err
	}
	for _, f := range fixed {
		ip, s := f.ip, f.subnet
		if ip.Is4() {
			continue
		}
		if pfx, err := subnetPrefix(s); err == nil && pfx.Addr().Is6() {
			if err := t.removeDHCPHost6(p, s.NetworkID, pfx, ip); err != nil {
				return err
			}
		}
	}
	return t.eachDHCP(p, func(d *topology.DHCPSubnet, ip netip.Addr) {
		d.Hosts = slices.DeleteFunc(d.Hosts, func(x topology.DHCPHost) bool {
			return strings.EqualFold(deref(x.MacAddr), p.MACAddress) && deref(x.IPAddr) == ip.String()
		})
	})
}

// fixedSubnet is one of a port's fixed IPs with its subnet.
type fixedSubnet struct {
	ip     netip.Addr
	subnet *Subnet
}

// fixedSubnets returns the port's fixed IPs that parse and whose subnet
// still exists, with their subnets: what removing a port's derived objects
// walks (a subnet deleted first took its own objects with it).
func (t *txn) fixedSubnets(p *Port) ([]fixedSubnet, error) {
	var out []fixedSubnet
	for _, f := range p.FixedIPs {
		ip, err := netip.ParseAddr(f.IPAddress)
		if err != nil {
			continue
		}
		s, err := lookup[Subnet](t, f.SubnetID)
		if err != nil {
			return nil, err
		}
		if s != nil {
			out = append(out, fixedSubnet{ip, s})
		}
	}
	return out, nil
}

// eachDHCP applies change to the DHCP subnet of each address of the port
// that still has one.
func (t *txn) eachDHCP(p *Port, change func(d *topology.DHCPSubnet, ip netip.Addr)) error {
	fixed, err := t.fixedSubnets(p)
	if err != nil {
		return err
	}
	for _, f := range fixed {
		ip, s := f.ip, f.subnet
		pfx, err := subnetPrefix(s)
		if err != nil || !pfx.Addr().Is4() {
			continue
		}
		var ds topology.DHCPSubnet
		if err := t.tx.Get(topology.KindDHCPSubnet, dhcpID(s.NetworkID, pfx), &ds); err != nil {
			continue // deleted with its subnet
		}
		change(&ds, ip)
		if err := t.tx.Put(&ds); err != nil {
			return err
		}
	}
	return nil
}

// addDHCPServer makes a DHCP port's address the server address of its
// subnets, with an option 121 route to the metadata service through it,
// and routes the metadata address to it on the router serving the subnet.
func (t *txn) addDHCPServer(p *Port, addrs []portAddr) error {
	addrs = slices.DeleteFunc(slices.Clone(addrs), func(a portAddr) bool { return !a.ip.Is4() })
	for i, a := range addrs {
		d, err := t.dhcpOf(a)
		if err != nil {
			return err
		}
		d.ServerAddr = topology.Str(a.ip.String())
		d.Opt121Routes = append(d.Opt121Routes, opt121(metadataPrefix, a.ip))
		if err := t.tx.Put(d); err != nil {
			return err
		}
		if i == 0 {
			if err := t.addMetadataRoute(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeDHCPServer undoes addDHCPServer.
func (t *txn) removeDHCPServer(p *Port) error {
	if err := t.eachDHCP(p, func(d *topology.DHCPSubnet, ip netip.Addr) {
		d.ServerAddr = d.DefaultGateway
		d.Opt121Routes = slices.DeleteFunc(d.Opt121Routes, func(r topology.Opt121Route) bool {
			return deref(r.DestinationPrefix) == metadataPrefix.Addr().String() && r.DestinationLength == 32 &&
				deref(r.GatewayAddr) == ip.String()
		})
	}); err != nil {
		return err
	}
	return t.removeMetadataRoutes(p)
}

// addMetadataRoute routes the metadata address to the subnet's DHCP port
// on the router whose interface is the subnet's gateway.
func (t *txn) addMetadataRoute(a portAddr) error {
	rif, err := t.gatewayInterface(a.subnet)
	if err != nil || rif == nil {
		return err
	}
	return t.createRoute(metadataRoute(rif, a.prefix, a.ip))
}

// metadataRoute is the route to the metadata service through the DHCP
// port at server, on the router port rif.
func metadataRoute(rif *topology.Port, subnet netip.Prefix, server netip.Addr) topology.Route {
	src, srcLen := condPrefix(subnet)
	dst, dstLen := condPrefix(metadataPrefix)
	return topology.Route{ID: derivedIDAddr(rif.ID, roleMetaRoute, server), Type: topology.RouteNormal,
		SrcNetworkAddr: src, SrcNetworkLength: srcLen, DstNetworkAddr: dst, DstNetworkLength: dstLen,
		NextHopPort: topology.IDPtr(rif.ID), NextHopGateway: topology.Str(server.String()), Weight: 100,
		RouterID: rif.DeviceID}
}

// removeMetadataRoutes deletes the metadata routes through a DHCP port.
func (t *txn) removeMetadataRoutes(p *Port) error {
	fixed, err := t.fixedSubnets(p)
	if err != nil {
		return err
	}
	for _, f := range fixed {
		ip := f.ip
		rif, err := t.gatewayInterface(f.subnet)
		if err != nil {
			return err
		}
		if rif != nil {
			if err := t.tx.Delete(topology.KindRoute, derivedIDAddr(rif.ID, roleMetaRoute, ip).String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// gatewayInterface returns the router port that holds the subnet's
// gateway address, if a router interface has it.
func (t *txn) gatewayInterface(s *Subnet) (*topology.Port, error) {
	if s.GatewayIP == nil || *s.GatewayIP == "" {
		return nil, nil
	}
	ports, err := topology.ListOf[Port](t.tx)
	if err != nil {
		return nil, err
	}
	for _, np := range ports {
		if !isRIF(&np) || np.NetworkID != s.NetworkID {
			continue
		}
		for _, f := range np.FixedIPs {
			if f.SubnetID == s.ID && f.IPAddress == *s.GatewayIP {
				return lookup[topology.Port](t, routerPeerID(np.ID))
			}
		}
	}
	return nil, nil
}

// updatePort applies a changed Neutron port: what hangs off the port is
// made again from the new port, and the bridge port keeps its identity
// (tunnel key, links) while its state, filters and binding follow.
func (t *txn) updatePort(old, p *Port) error {
	if isFIP(old) && isFIP(p) {
		return nil
	}
	if old.DeviceOwner != p.DeviceOwner && !((isVIF(old) || isRIF(old)) && (isVIF(p) || isRIF(p))) {
		return unsupported("port %s: device_owner cannot change from %q to %q; delete the port and create another", p.ID, old.DeviceOwner, p.DeviceOwner)
	}
	if old.NetworkID != p.NetworkID {
		return invalid("port %s: network_id cannot change", p.ID)
	}
	addrs, err := t.portAddrs(p)
	if err != nil {
		return err
	}
	if err := t.removePortState(old); err != nil {
		return err
	}
	if isVIF(old) && !isVIF(p) {
		if err := t.disassociatePortFIPs(p.ID); err != nil {
			return err
		}
	}
	// Read the bridge port after deleting the chains, which cleared its
	// filters.
	bp, err := load[topology.Port](t, p.ID, "port "+p.ID.String())
	if err != nil {
		return err
	}
	bp.AdminStateUp = isUp(p.AdminStateUp)
	bp.InboundFilterID, bp.OutboundFilterID = nil, nil
	if !isTrusted(p) {
		bp.InboundFilterID = topology.IDPtr(DerivedID(p.ID, roleInChain))
		bp.OutboundFilterID = topology.IDPtr(DerivedID(p.ID, roleOutChain))
	}
	if old.HostID != p.HostID || interfaceName(old) != interfaceName(p) {
		if err := t.bindPort(bp, p); err != nil {
			return err
		}
	}
	if err := t.addPortState(p, addrs); err != nil {
		return err
	}
	if err := t.tx.Put(bp); err != nil {
		return err
	}
	if isRIF(p) && !slices.Equal(old.FixedIPs, p.FixedIPs) {
		return t.readdressInterface(p, addrs)
	}
	return nil
}

// deletePort removes what the port's creation made and what attaching it
// to a router made.
func (t *txn) deletePort(p *Port) error {
	if isFIP(p) {
		return nil
	}
	if err := t.removePortState(p); err != nil {
		return err
	}
	switch {
	case isGateway(p):
		if err := t.removeGatewayPort(p); err != nil {
			return err
		}
	case isRIF(p):
		if err := t.removeInterfacePort(p); err != nil {
			return err
		}
	case isVIF(p):
		if err := t.disassociatePortFIPs(p.ID); err != nil {
			return err
		}
	}
	return t.remove(topology.KindPort, p.ID)
}
