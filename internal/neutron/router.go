package neutron

import (
	"crypto/rand"
	"net/netip"
	"slices"

	"github.com/midonet/midonet/internal/topology"
)

// The port range of the SNAT to a router's gateway address (MidoNet's
// default).
const (
	snatPortStart = 1
	snatPortEnd   = 65535
)

// routerChains are the chains a Neutron router owns, with MidoNet's names.
func routerChains(id ID) []struct {
	id   ID
	name string
} {
	s := id.String()
	return []struct {
		id   ID
		name string
	}{
		{DerivedID(id, roleInChain), "OS_PRE_ROUTING_" + s},
		{DerivedID(id, roleOutChain), "OS_POST_ROUTING_" + s},
		{DerivedID(id, roleFwdChain), "OS_FORWARD_" + s},
		{DerivedID(id, roleSkipSNATChain), "OS_SKIP_SNAT_" + s},
		{DerivedID(id, roleFloatSNATExact), "OS_FLOAT_SNAT_EXACT_" + s},
		{DerivedID(id, roleFloatSNAT), "OS_FLOAT_SNAT_" + s},
	}
}

// createRouter makes the router with its chains and port groups:
//
//	post-routing (outbound): jump skip-SNAT, jump float-SNAT-exact, jump float-SNAT,
//	                         then the gateway's SNAT rules
//	skip-SNAT:               accept unless an earlier rule rewrote the destination
//	                         (the gateway and floating IPs put their own rules around it)
//	pre-routing (inbound):   floating IP DNAT, reverse SNAT to the gateway address
func (t *txn) createRouter(r *Router) error {
	tenant := r.Owner()
	for _, c := range routerChains(r.ID) {
		if err := t.createChain(c.id, c.name, tenant); err != nil {
			return err
		}
	}
	rt := topology.Router{ID: r.ID, Name: topology.Str(r.Name), AdminStateUp: isUp(r.AdminStateUp),
		InboundFilterID:  topology.IDPtr(DerivedID(r.ID, roleInChain)),
		OutboundFilterID: topology.IDPtr(DerivedID(r.ID, roleOutChain)),
		ForwardChainID:   topology.IDPtr(DerivedID(r.ID, roleFwdChain))}
	if tenant != "" {
		rt.TenantID = topology.Str(tenant)
	}
	rt.Normalize()
	if err := t.tx.Create(&rt); err != nil {
		return err
	}
	edge := topology.PortGroup{ID: DerivedID(r.ID, roleEdgeGroup), Stateful: true}
	edge.Name = topology.Str("OS_PORT_GROUP_" + edge.ID.String())
	rif := topology.PortGroup{ID: DerivedID(r.ID, roleRIFGroup), Name: topology.Str("OS_PORT_GROUP_ROUTER_INTF_" + r.ID.String())}
	for _, g := range []*topology.PortGroup{&edge, &rif} {
		if tenant != "" {
			g.TenantID = topology.Str(tenant)
		}
		g.Normalize()
		if err := t.tx.Create(g); err != nil {
			return err
		}
	}
	out := DerivedID(r.ID, roleOutChain)
	for _, j := range []struct{ id, to ID }{
		{DerivedID(r.ID, roleSkipSNATJump), DerivedID(r.ID, roleSkipSNATChain)},
		{DerivedID(r.ID, roleFloatSNATExJump), DerivedID(r.ID, roleFloatSNATExact)},
		{DerivedID(r.ID, roleFloatSNATJump), DerivedID(r.ID, roleFloatSNAT)},
	} {
		if err := t.addRule(topology.Rule{ID: j.id, ChainID: out, Type: topology.RuleJump, JumpChainID: topology.IDPtr(j.to)}, appendRule); err != nil {
			return err
		}
	}
	skip := topology.Rule{ID: DerivedID(r.ID, roleSkipSNATAccept), ChainID: DerivedID(r.ID, roleSkipSNATChain), Type: topology.RuleAccept}
	skip.MatchNwDstRewritten, skip.CondInvert, skip.FragmentPolicy = true, true, topology.Str(topology.FragAny)
	if err := t.addRule(skip, appendRule); err != nil {
		return err
	}
	if r.GwPortID != nil {
		if err := t.createGateway(r); err != nil {
			return err
		}
	}
	return t.addExtraRoutes(r, nil)
}

// updateRouter applies name and state, the gateway (added, removed,
// moved, SNAT switched) and the extra routes.
func (t *txn) updateRouter(old, r *Router) error {
	rt, err := load[topology.Router](t, r.ID, "router "+r.ID.String())
	if err != nil {
		return err
	}
	rt.Name, rt.AdminStateUp = topology.Str(r.Name), isUp(r.AdminStateUp)
	if o := r.Owner(); o != "" {
		rt.TenantID = topology.Str(o)
	}
	if err := t.tx.Put(rt); err != nil {
		return err
	}
	switch {
	case old.GwPortID == nil && r.GwPortID != nil:
		err = t.createGateway(r)
	case old.GwPortID != nil && (r.GwPortID == nil || *r.GwPortID != *old.GwPortID):
		if err = t.deleteGateway(old); err == nil && r.GwPortID != nil {
			err = t.createGateway(r)
		}
	case r.GwPortID != nil && snatEnabled(old) != snatEnabled(r):
		var addr netip.Addr
		if addr, err = t.gatewayAddr(r); err == nil && addr.IsValid() {
			if snatEnabled(r) {
				err = t.createSNAT(r.ID, gatewayPortID(*r.GwPortID), addr)
			} else {
				err = t.deleteSNAT(r.ID)
			}
		}
	}
	if err != nil {
		return err
	}
	return t.addExtraRoutes(r, old)
}

// deleteRouter deletes the router, its chains and port groups; its ports
// and routes go with it.
func (t *txn) deleteRouter(r *Router) error {
	if r.GwPortID != nil {
		if err := t.deleteGateway(r); err != nil {
			return err
		}
	}
	if err := t.remove(topology.KindRouter, r.ID); err != nil {
		return err
	}
	for _, c := range routerChains(r.ID) {
		if err := t.remove(topology.KindChain, c.id); err != nil {
			return err
		}
	}
	for _, role := range []string{roleEdgeGroup, roleRIFGroup} {
		if err := t.remove(topology.KindPortGroup, DerivedID(r.ID, role)); err != nil {
			return err
		}
	}
	return nil
}

func snatEnabled(r *Router) bool {
	return r.Gateway != nil && (r.Gateway.EnableSNAT == nil || *r.Gateway.EnableSNAT)
}

// gatewayAddr returns the first IPv4 address of the router's gateway port.
func (t *txn) gatewayAddr(r *Router) (netip.Addr, error) {
	gp, err := load[Port](t, *r.GwPortID, "router "+r.ID.String()+": gw_port_id")
	if err != nil {
		return netip.Addr{}, err
	}
	for _, f := range gp.FixedIPs {
		if a, err := netip.ParseAddr(f.IPAddress); err == nil && a.Is4() {
			return a, nil
		}
	}
	return netip.Addr{}, nil
}

// newRouterPort builds a router port linked to the bridge port of a
// Neutron port, with its MAC and a tunnel key.
func (t *txn) newRouterPort(id, router ID, np *Port) (topology.Port, error) {
	rp := topology.Port{ID: id, Type: topology.PortTypeRouter, DeviceID: router, AdminStateUp: true,
		PeerID: topology.IDPtr(np.ID), PortSubnet: []string{}}
	if np.MACAddress != "" {
		m, err := parseMAC(np.MACAddress)
		if err != nil {
			return rp, err
		}
		rp.PortMAC = topology.Str(topology.FormatMAC(m))
	} else {
		var b [3]byte
		rand.Read(b[:])
		rp.PortMAC = topology.Str(topology.RandomPortMAC(b))
	}
	return rp, topology.AllocateTunnelKey(t.tx, &rp, t.randInt)
}

// link makes the bridge port of np the peer of the router port rp.
func (t *txn) link(np *Port, rp *topology.Port) error {
	bp, err := load[topology.Port](t, np.ID, "port "+np.ID.String())
	if err != nil {
		return err
	}
	if bp.PeerID != nil && *bp.PeerID != rp.ID {
		return invalid("port %s is already linked to port %s", np.ID, bp.PeerID)
	}
	bp.PeerID = topology.IDPtr(rp.ID)
	return t.tx.Put(bp)
}

// createGateway links the router to its gateway port on the external
// network: a router port with the gateway port's addresses and MAC, routes
// to the external subnets, a default route through their gateway, and the
// SNAT rules when SNAT is on.
//
// Neutron's gateway port is a port of the external network: its id names
// the bridge port, and the router side gets a derived id.
func (t *txn) createGateway(r *Router) error {
	np, err := load[Port](t, *r.GwPortID, "router "+r.ID.String()+": gw_port_id")
	if err != nil {
		return err
	}
	addrs, err := t.portAddrs(np)
	if err != nil {
		return err
	}
	rp, err := t.newRouterPort(gatewayPortID(np.ID), r.ID, np)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		rp.PortSubnet = append(rp.PortSubnet, netip.PrefixFrom(a.ip, a.prefix.Bits()).String())
	}
	rp.Normalize()
	if err := t.tx.Create(&rp); err != nil {
		return err
	}
	if err := t.link(np, &rp); err != nil {
		return err
	}
	for i, a := range addrs {
		if err := t.interfaceRoutes(&rp, a); err != nil {
			return err
		}
		d, err := t.dhcpOf(a)
		if err != nil {
			return err
		}
		any4 := netip.MustParsePrefix("0.0.0.0/0")
		src, srcLen := condPrefix(any4)
		def := topology.Route{ID: derivedIDAddr(rp.ID, roleDefaultRoute, a.ip), Type: topology.RouteNormal,
			SrcNetworkAddr: src, SrcNetworkLength: srcLen, DstNetworkAddr: src, DstNetworkLength: srcLen,
			NextHopPort: topology.IDPtr(rp.ID), NextHopGateway: d.DefaultGateway, Weight: 100, RouterID: r.ID}
		if err := t.createRoute(def); err != nil {
			return err
		}
		if i == 0 && snatEnabled(r) {
			if err := t.createSNAT(r.ID, rp.ID, a.ip); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteGateway undoes createGateway; the bridge side is Neutron's port
// and goes when Neutron deletes it.
func (t *txn) deleteGateway(r *Router) error {
	if err := t.deleteSNAT(r.ID); err != nil {
		return err
	}
	return t.remove(topology.KindPort, gatewayPortID(*r.GwPortID))
}

// removeGatewayPort is the part of a gateway port's deletion on the
// router side.
func (t *txn) removeGatewayPort(p *Port) error {
	rp, err := lookup[topology.Port](t, gatewayPortID(p.ID))
	if err != nil || rp == nil {
		return err
	}
	if err := t.deleteSNAT(rp.DeviceID); err != nil {
		return err
	}
	return t.remove(topology.KindPort, rp.ID)
}

// interfaceRoutes adds a router port's routes for one address: to its
// subnet through the port, and the address itself as a Local route.
func (t *txn) interfaceRoutes(rp *topology.Port, a portAddr) error {
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	src, srcLen := condPrefix(any4)
	dst, dstLen := condPrefix(a.prefix)
	if err := t.createRoute(topology.Route{ID: derivedIDAddr(rp.ID, rolePortRoute, a.ip), Type: topology.RouteNormal,
		SrcNetworkAddr: src, SrcNetworkLength: srcLen, DstNetworkAddr: dst, DstNetworkLength: dstLen,
		NextHopPort: topology.IDPtr(rp.ID), Weight: 100, RouterID: rp.DeviceID}); err != nil {
		return err
	}
	return t.createRoute(topology.Route{ID: derivedIDAddr(rp.ID, roleLocalRoute, a.ip), Type: topology.RouteLocal,
		SrcNetworkAddr: src, SrcNetworkLength: srcLen, DstNetworkAddr: topology.Str(a.ip.String()), DstNetworkLength: 32,
		NextHopPort: topology.IDPtr(rp.ID), Weight: 100, RouterID: rp.DeviceID})
}

// createSNAT adds the gateway's SNAT rules: traffic leaving by the gateway
// port from other addresses is translated to the gateway address (ports
// 1-65535), as is traffic whose destination an earlier rule rewrote;
// fragments that could not be translated are dropped; the replies are
// translated back; other traffic to the gateway address but ICMP is
// dropped. Around the skip-SNAT chain's rule: traffic leaving by the
// gateway port returns to the SNAT rules, traffic entering by it is
// accepted as is.
func (t *txn) createSNAT(router, gwPort ID, addr netip.Addr) error {
	if ok, err := t.tx.Exists(topology.KindRule, DerivedID(router, roleSNAT).String()); err != nil || ok {
		return err
	}
	in, out, skip := DerivedID(router, roleInChain), DerivedID(router, roleOutChain), DerivedID(router, roleSkipSNATChain)
	any := topology.Str(topology.FragAny)
	self := netip.PrefixFrom(addr, 32)
	target := []topology.NatTarget{{AddressFrom: topology.Str(addr.String()), AddressTo: topology.Str(addr.String()),
		PortFrom: snatPortStart, PortTo: snatPortEnd}}

	skipOut := topology.Rule{ID: DerivedID(router, roleSkipSNATOutGw), ChainID: skip, Type: topology.RuleReturn}
	skipOut.OutPorts, skipOut.FragmentPolicy = []ID{gwPort}, any
	if err := t.addRule(skipOut, prependRule); err != nil {
		return err
	}
	skipIn := topology.Rule{ID: DerivedID(router, roleSkipSNATInGw), ChainID: skip, Type: topology.RuleAccept}
	skipIn.InPorts, skipIn.FragmentPolicy = []ID{gwPort}, any
	if err := t.addRule(skipIn, appendRule); err != nil {
		return err
	}

	snat := topology.Rule{ID: DerivedID(router, roleSNAT), ChainID: out, Type: topology.RuleSNAT,
		FlowAction: topology.Str(topology.FlowAccept), NatTargets: target}
	snat.OutPorts, snat.InvNwSrc = []ID{gwPort}, true
	snat.NwSrcAddress, snat.NwSrcLength = condPrefix(self)
	snat.FragmentPolicy = topology.Str(topology.FragUnfragmented)
	rewritten := topology.Rule{ID: DerivedID(router, roleSNATDstRewrite), ChainID: out, Type: topology.RuleSNAT,
		FlowAction: topology.Str(topology.FlowAccept), NatTargets: target}
	rewritten.MatchNwDstRewritten = true
	rewritten.FragmentPolicy = topology.Str(topology.FragUnfragmented)
	frags := topology.Rule{ID: DerivedID(router, roleSNATDropFrags), ChainID: out, Type: topology.RuleDrop}
	frags.OutPorts, frags.InvNwSrc, frags.FragmentPolicy = []ID{gwPort}, true, any
	frags.NwSrcAddress, frags.NwSrcLength = condPrefix(self)
	rev := topology.Rule{ID: DerivedID(router, roleRevSNAT), ChainID: in, Type: topology.RuleRevSNAT,
		FlowAction: topology.Str(topology.FlowAccept)}
	rev.NwDstAddress, rev.NwDstLength = condPrefix(self)
	icmp := 1
	drop := topology.Rule{ID: DerivedID(router, roleDropToGw), ChainID: in, Type: topology.RuleDrop}
	drop.NwDstAddress, drop.NwDstLength = condPrefix(self)
	drop.NwProto, drop.InvNwProto, drop.FragmentPolicy = &icmp, true, any
	for _, r := range []topology.Rule{snat, rewritten, frags, rev, drop} {
		if err := t.addRule(r, appendRule); err != nil {
			return err
		}
	}
	return nil
}

// deleteSNAT removes the gateway's SNAT rules.
func (t *txn) deleteSNAT(router ID) error {
	for _, role := range []string{roleSNAT, roleSNATDstRewrite, roleSNATDropFrags, roleRevSNAT, roleDropToGw,
		roleSkipSNATOutGw, roleSkipSNATInGw} {
		if err := t.deleteRule(DerivedID(router, role)); err != nil {
			return err
		}
	}
	return nil
}

// addExtraRoutes applies a router's extra routes: each goes through the
// router port whose subnet holds its next hop. old is nil on create.
func (t *txn) addExtraRoutes(r, old *Router) error {
	id := func(h HostRoute) ID { return DerivedID(r.ID, roleExtraRoute+"/"+h.Destination+"/"+h.Nexthop) }
	var before []HostRoute
	if old != nil {
		before = old.Routes
	}
	for _, h := range before {
		if !slices.Contains(r.Routes, h) {
			if err := t.tx.Delete(topology.KindRoute, id(h).String()); err != nil {
				return err
			}
		}
	}
	var ports []topology.Port
	for _, h := range r.Routes {
		if slices.Contains(before, h) {
			continue
		}
		dst, err := parsePrefix4("routes.destination", h.Destination)
		if err != nil {
			return err
		}
		nh, err := parseAddr4("routes.nexthop", h.Nexthop)
		if err != nil {
			return err
		}
		if ports == nil {
			all, err := topology.ListOf[topology.Port](t.tx)
			if err != nil {
				return err
			}
			for _, p := range all {
				if p.DeviceID == r.ID {
					ports = append(ports, p)
				}
			}
		}
		var via *topology.Port
		for i := range ports {
			for _, s := range ports[i].PortSubnet {
				pfx, err := netip.ParsePrefix(s)
				if err == nil && pfx.Masked().Contains(nh) && pfx.Addr() != nh {
					via = &ports[i]
				}
			}
		}
		if via == nil {
			return invalid("router %s: no router port is on a subnet holding the next hop %s of route %s", r.ID, nh, dst)
		}
		src, srcLen := condPrefix(netip.MustParsePrefix("0.0.0.0/0"))
		d, dLen := condPrefix(dst.Masked())
		if err := t.createRoute(topology.Route{ID: id(h), Type: topology.RouteNormal, SrcNetworkAddr: src,
			SrcNetworkLength: srcLen, DstNetworkAddr: d, DstNetworkLength: dLen, NextHopPort: topology.IDPtr(via.ID),
			NextHopGateway: topology.Str(nh.String()), Weight: 100, RouterID: r.ID}); err != nil {
			return err
		}
	}
	return nil
}

// interfaceSubnets returns the subnets a router interface call names.
func (ri *RouterInterface) subnets() []ID {
	out := slices.Clone(ri.SubnetIDs)
	if ri.SubnetID != nil && !slices.Contains(out, *ri.SubnetID) {
		out = append(out, *ri.SubnetID)
	}
	return out
}

// addInterface attaches a router to a network through a Neutron port: a
// router port with the port's addresses in the named subnets (a port
// without addresses gets the subnets' gateways), linked to the port's
// bridge port and in the router's interface group; routes to the subnets
// and to its addresses; a metadata route through the subnet's DHCP port;
// and "same subnet" SNAT so that traffic the router sends back into the
// network it came from (to a VIP, a floating IP of a neighbour) returns
// through the router.
func (t *txn) addInterface(ri *RouterInterface) error {
	if ri.PortID == nil {
		return invalid("router interface of router %s: port_id is required (Neutron creates the port first)", ri.ID)
	}
	if _, err := load[topology.Router](t, ri.ID, "router interface: router"); err != nil {
		return err
	}
	np, err := load[Port](t, *ri.PortID, "router interface of router "+ri.ID.String()+": port_id")
	if err != nil {
		return err
	}
	if ok, err := t.tx.Exists(topology.KindPort, routerPeerID(np.ID).String()); err != nil || ok {
		return err // attached already: a retry
	}
	if !isRIF(np) {
		old := *np
		np.DeviceOwner, np.DeviceID = OwnerRouterInterface, ri.ID.String()
		if err := t.updatePort(&old, np); err != nil {
			return err
		}
		if err := t.tx.Put(np); err != nil {
			return err
		}
	}
	all, err := t.portAddrs(np)
	if err != nil {
		return err
	}
	want := ri.subnets()
	for _, sid := range want {
		if s, err := lookup[Subnet](t, sid); err != nil {
			return err
		} else if s != nil {
			if _, err := routedPrefix(s); err != nil {
				return err
			}
		}
	}
	var addrs []portAddr
	for _, a := range all {
		if len(want) == 0 || slices.Contains(want, a.subnet.ID) {
			addrs = append(addrs, a)
		}
	}
	if len(np.FixedIPs) == 0 {
		for _, sid := range want {
			s, err := load[Subnet](t, sid, "router interface: subnet_id")
			if err != nil {
				return err
			}
			pfx, err := routedPrefix(s)
			if err != nil {
				return err
			}
			if s.GatewayIP == nil {
				return invalid("router interface of router %s: port %s has no fixed IPs and subnet %s has no gateway_ip", ri.ID, np.ID, s.ID)
			}
			gw, err := parseAddr4("gateway_ip", *s.GatewayIP)
			if err != nil {
				return err
			}
			addrs = append(addrs, portAddr{ip: gw, subnet: s, prefix: pfx})
		}
	}
	rp, err := t.newRouterPort(routerPeerID(np.ID), ri.ID, np)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		rp.PortSubnet = append(rp.PortSubnet, netip.PrefixFrom(a.ip, a.prefix.Bits()).String())
	}
	rp.Normalize()
	if err := t.tx.Create(&rp); err != nil {
		return err
	}
	if err := t.link(np, &rp); err != nil {
		return err
	}
	if err := t.joinGroup(DerivedID(ri.ID, roleRIFGroup), rp.ID); err != nil {
		return err
	}
	for i, a := range addrs {
		if err := t.interfaceRoutes(&rp, a); err != nil {
			return err
		}
		if a.subnet.GatewayIP != nil && *a.subnet.GatewayIP == a.ip.String() {
			if server, err := t.dhcpPortAddr(a.subnet); err != nil {
				return err
			} else if server.IsValid() {
				if err := t.createRoute(metadataRoute(&rp, a.prefix, server)); err != nil {
					return err
				}
			}
		}
		if i == 0 {
			if err := t.sameSubnetSNAT(ri.ID, rp.ID, a.ip); err != nil {
				return err
			}
		}
	}
	return nil
}

// joinGroup adds a port to a port group.
func (t *txn) joinGroup(group, port ID) error {
	g, err := lookup[topology.PortGroup](t, group)
	if err != nil || g == nil {
		return err
	}
	if !slices.Contains(g.PortIDs, port) {
		g.PortIDs = append(g.PortIDs, port)
	}
	return t.tx.Put(g)
}

// sameSubnetSNAT adds the interface's SNAT (entering and leaving by the
// interface, forward flows not to the metadata address) and its reverse.
func (t *txn) sameSubnetSNAT(router, rp ID, addr netip.Addr) error {
	out := topology.Rule{ID: DerivedID(rp, roleSameSubnetSNAT), ChainID: DerivedID(router, roleOutChain), Type: topology.RuleSNAT,
		FlowAction: topology.Str(topology.FlowAccept), NatTargets: []topology.NatTarget{{AddressFrom: topology.Str(addr.String()),
			AddressTo: topology.Str(addr.String()), PortFrom: snatPortStart, PortTo: snatPortEnd}}}
	out.InPorts, out.OutPorts, out.InvNwDst, out.MatchForwardFlow = []ID{rp}, []ID{rp}, true, true
	out.NwDstAddress, out.NwDstLength = condPrefix(metadataPrefix)
	out.FragmentPolicy = topology.Str(topology.FragUnfragmented)
	in := topology.Rule{ID: DerivedID(rp, roleSameSubnetRev), ChainID: DerivedID(router, roleInChain), Type: topology.RuleRevSNAT,
		FlowAction: topology.Str(topology.FlowAccept)}
	in.InPorts, in.MatchReturnFlow = []ID{rp}, true
	in.NwDstAddress, in.NwDstLength = condPrefix(netip.PrefixFrom(addr, 32))
	for _, r := range []topology.Rule{out, in} {
		if ok, err := t.tx.Exists(topology.KindRule, r.ID.String()); err != nil || ok {
			if err == nil {
				err = invalid("router %s: interface port %s already has its SNAT rules", router, rp)
			}
			return err
		}
		if err := t.addRule(r, appendRule); err != nil {
			return err
		}
	}
	return nil
}

// removeInterfacePort is the router side of a router interface port's
// deletion: the router port with its routes and SNAT rules.
func (t *txn) removeInterfacePort(p *Port) error {
	rp := routerPeerID(p.ID)
	for _, role := range []string{roleSameSubnetSNAT, roleSameSubnetRev} {
		if err := t.deleteRule(DerivedID(rp, role)); err != nil {
			return err
		}
	}
	return t.remove(topology.KindPort, rp)
}

// removeInterface applies remove_router_interface. Neutron deletes the
// interface's port first, which removes the router port; when the port
// remains (only some subnets were removed), its addresses in those
// subnets leave the router port.
func (t *txn) removeInterface(ri *RouterInterface) error {
	if ri.PortID == nil {
		return nil
	}
	np, err := lookup[Port](t, *ri.PortID)
	if err != nil || np == nil {
		return err
	}
	rp, err := lookup[topology.Port](t, routerPeerID(np.ID))
	if err != nil || rp == nil {
		return err
	}
	gone := ri.subnets()
	if len(gone) == 0 {
		return t.removeInterfacePort(np)
	}
	kept := []string{}
	fixed, err := t.fixedSubnets(np)
	if err != nil {
		return err
	}
	for _, f := range fixed {
		ip := f.ip
		pfx, _ := subnetPrefix(f.subnet)
		if !slices.Contains(gone, f.subnet.ID) {
			kept = append(kept, netip.PrefixFrom(ip, pfx.Bits()).String())
			continue
		}
		for _, role := range []string{rolePortRoute, roleLocalRoute} {
			if err := t.tx.Delete(topology.KindRoute, derivedIDAddr(rp.ID, role, ip).String()); err != nil {
				return err
			}
		}
	}
	if len(kept) == 0 {
		return t.removeInterfacePort(np)
	}
	rp.PortSubnet = kept
	rp.Normalize()
	return t.tx.Put(rp)
}

// readdressInterface follows a change of a router interface port's fixed
// IPs on its router port: addresses, routes and the same-subnet SNAT.
func (t *txn) readdressInterface(p *Port, addrs []portAddr) error {
	rp, err := lookup[topology.Port](t, routerPeerID(p.ID))
	if err != nil || rp == nil {
		return err
	}
	routes, err := topology.ListOf[topology.Route](t.tx)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.NextHopPort != nil && *r.NextHopPort == rp.ID && r.Type != "" {
			if err := t.tx.Delete(topology.KindRoute, r.ID.String()); err != nil {
				return err
			}
		}
	}
	rp.PortSubnet = []string{}
	for _, a := range addrs {
		rp.PortSubnet = append(rp.PortSubnet, netip.PrefixFrom(a.ip, a.prefix.Bits()).String())
		if err := t.interfaceRoutes(rp, a); err != nil {
			return err
		}
	}
	rp.Normalize()
	if err := t.tx.Put(rp); err != nil {
		return err
	}
	for _, role := range []string{roleSameSubnetSNAT, roleSameSubnetRev} {
		if err := t.deleteRule(DerivedID(rp.ID, role)); err != nil {
			return err
		}
	}
	if len(addrs) > 0 {
		return t.sameSubnetSNAT(rp.DeviceID, rp.ID, addrs[0].ip)
	}
	return nil
}
