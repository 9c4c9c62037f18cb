package neutron

import (
	"net/netip"

	"github.com/midonet/midonet/internal/topology"
)

// fipPorts are the two ports through which a floating IP's router reaches
// the floating network: the Neutron (bridge) port and its router peer.
type fipPorts struct {
	network, router *Port
	routerPort      ID
	isGateway       bool
}

// fipPortsOf finds where a floating IP's router meets the floating
// network: its gateway port when a gateway subnet holds the address,
// otherwise a router interface on that network whose subnet does.
func (t *txn) fipPortsOf(f *FloatingIP, addr netip.Addr) (fipPorts, error) {
	if f.RouterID == nil {
		return fipPorts{}, invalid("floating IP %s: an associated floating IP needs its router_id", f.ID)
	}
	r, err := load[Router](t, *f.RouterID, "floating IP "+f.ID.String()+": router_id")
	if err != nil {
		return fipPorts{}, err
	}
	holds := func(np *Port) (bool, error) {
		if np.NetworkID != f.FloatingNetworkID {
			return false, nil
		}
		for _, fx := range np.FixedIPs {
			s, err := lookup[Subnet](t, fx.SubnetID)
			if err != nil {
				return false, err
			}
			if s == nil {
				continue
			}
			if p, err := subnetPrefix(s); err == nil && p.Contains(addr) {
				return true, nil
			}
		}
		return false, nil
	}
	if r.GwPortID != nil {
		gp, err := lookup[Port](t, *r.GwPortID)
		if err != nil {
			return fipPorts{}, err
		}
		if gp != nil {
			if ok, err := holds(gp); err != nil || ok {
				return fipPorts{network: gp, routerPort: gatewayPortID(gp.ID), isGateway: true}, err
			}
		}
	}
	ports, err := topology.ListOf[Port](t.tx)
	if err != nil {
		return fipPorts{}, err
	}
	for i := range ports {
		np := &ports[i]
		if !isRIF(np) || np.DeviceID != r.ID.String() {
			continue
		}
		if ok, err := holds(np); err != nil || ok {
			return fipPorts{network: np, routerPort: routerPeerID(np.ID)}, err
		}
	}
	return fipPorts{}, invalid("floating IP %s: router %s has no port on a subnet of network %s holding %s", f.ID, r.ID, f.FloatingNetworkID, addr)
}

// fipAddrs parses a floating IP's two addresses.
func fipAddrs(f *FloatingIP) (floating, fixed netip.Addr, err error) {
	if floating, err = parseAddr4("floating_ip_address", f.FloatingIPAddress); err != nil {
		return
	}
	if f.FixedIPAddress == nil {
		return floating, fixed, invalid("floating IP %s: an associated floating IP needs its fixed_ip_address", f.ID)
	}
	fixed, err = parseAddr4("fixed_ip_address", *f.FixedIPAddress)
	return
}

// associateFIP makes the floating IP answer: the router's network-side
// port answers ARP for it on the floating network, traffic to it is
// translated to the fixed address (DNAT, first in the router's
// pre-routing chain), and traffic from the fixed address is translated to
// it (SNAT in the float-SNAT chains: exactly when it leaves by the
// router's port on the floating network, in general otherwise), all static
// 1:1 rules. Around the skip-SNAT rule: leaving by that port returns to
// the SNAT rules, entering by it is accepted.
func (t *txn) associateFIP(f *FloatingIP) error {
	floating, fixed, err := fipAddrs(f)
	if err != nil {
		return err
	}
	pp, err := t.fipPortsOf(f, floating)
	if err != nil {
		return err
	}
	mac, err := parseMAC(pp.network.MACAddress)
	if err != nil {
		return err
	}
	if err := t.seedState(arpKey(f.FloatingNetworkID, floating), topology.FormatMAC(mac)); err != nil {
		return err
	}
	r := *f.RouterID
	any := topology.Str(topology.FragAny)
	static := func(a netip.Addr) []topology.NatTarget {
		return []topology.NatTarget{{AddressFrom: topology.Str(a.String()), AddressTo: topology.Str(a.String())}}
	}
	fixedPfx, floatPfx := netip.PrefixFrom(fixed, 32), netip.PrefixFrom(floating, 32)

	snat := topology.Rule{ID: DerivedID(f.ID, roleFIPSNAT), ChainID: DerivedID(r, roleFloatSNAT), Type: topology.RuleSNAT,
		FlowAction: topology.Str(topology.FlowAccept), NatTargets: static(floating)}
	snat.NwSrcAddress, snat.NwSrcLength = condPrefix(fixedPfx)
	snat.FragmentPolicy = any
	exact := snat
	exact.ID, exact.ChainID = DerivedID(f.ID, roleFIPSNATExact), DerivedID(r, roleFloatSNATExact)
	exact.OutPorts = []ID{pp.routerPort}
	dnat := topology.Rule{ID: DerivedID(f.ID, roleFIPDNAT), ChainID: DerivedID(r, roleInChain), Type: topology.RuleDNAT,
		FlowAction: topology.Str(topology.FlowAccept), NatTargets: static(fixed)}
	dnat.NwDstAddress, dnat.NwDstLength = condPrefix(floatPfx)
	dnat.FragmentPolicy = any
	skipOut := topology.Rule{ID: DerivedID(f.ID, roleFIPSkipOut), ChainID: DerivedID(r, roleSkipSNATChain), Type: topology.RuleReturn}
	skipOut.OutPorts, skipOut.FragmentPolicy = []ID{pp.routerPort}, any
	skipIn := topology.Rule{ID: DerivedID(f.ID, roleFIPSkipIn), ChainID: DerivedID(r, roleSkipSNATChain), Type: topology.RuleAccept}
	skipIn.InPorts, skipIn.FragmentPolicy = []ID{pp.routerPort}, any

	snatPos := appendRule
	if pp.isGateway {
		snatPos = prependRule
	}
	for _, x := range []struct {
		r   topology.Rule
		pos int
	}{{dnat, prependRule}, {exact, prependRule}, {skipOut, prependRule}, {skipIn, appendRule}, {snat, snatPos}} {
		if err := t.addRule(x.r, x.pos); err != nil {
			return err
		}
	}
	return nil
}

// disassociateFIP undoes associateFIP.
func (t *txn) disassociateFIP(f *FloatingIP) error {
	for _, role := range []string{roleFIPSNAT, roleFIPSNATExact, roleFIPDNAT, roleFIPSkipOut, roleFIPSkipIn} {
		if err := t.deleteRule(DerivedID(f.ID, role)); err != nil {
			return err
		}
	}
	floating, err := netip.ParseAddr(f.FloatingIPAddress)
	if err != nil {
		return nil
	}
	v, err := t.tx.GetState(arpKey(f.FloatingNetworkID, floating))
	if err != nil || v == nil {
		return err
	}
	return t.tx.DeleteState(arpKey(f.FloatingNetworkID, floating))
}

func (t *txn) createFIP(f *FloatingIP) error {
	if _, err := parseAddr4("floating_ip_address", f.FloatingIPAddress); err != nil {
		return err
	}
	if f.PortID == nil {
		return nil
	}
	return t.associateFIP(f)
}

// updateFIP associates, disassociates or moves a floating IP.
func (t *txn) updateFIP(old, f *FloatingIP) error {
	same := func(a, b *ID) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }
	if same(old.PortID, f.PortID) && same(old.RouterID, f.RouterID) && deref(old.FixedIPAddress) == deref(f.FixedIPAddress) {
		return nil
	}
	if old.PortID != nil {
		if err := t.disassociateFIP(old); err != nil {
			return err
		}
	}
	if f.PortID != nil {
		return t.associateFIP(f)
	}
	return nil
}

func (t *txn) deleteFIP(f *FloatingIP) error {
	if f.PortID == nil {
		return nil
	}
	return t.disassociateFIP(f)
}

// disassociatePortFIPs disassociates the floating IPs of a port that goes
// away or stops being a VM's, as Neutron does.
func (t *txn) disassociatePortFIPs(port ID) error {
	fips, err := topology.ListOf[FloatingIP](t.tx)
	if err != nil {
		return err
	}
	for i := range fips {
		f := &fips[i]
		if f.PortID == nil || *f.PortID != port {
			continue
		}
		if err := t.disassociateFIP(f); err != nil {
			return err
		}
		f.PortID, f.FixedIPAddress, f.RouterID = nil, nil, nil
		if err := t.tx.Put(f); err != nil {
			return err
		}
	}
	return nil
}
