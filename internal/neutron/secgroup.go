package neutron

import (
	"slices"
	"strings"

	"github.com/midonet/midonet/internal/topology"
)

// A security group is two chains and an IP address group with the
// group's id: the inbound chain holds the egress rules (it filters what
// the group's ports send, jumped to from their inbound filters), the
// outbound chain the ingress rules; the address group holds the member
// ports' addresses, for rules of other groups naming this one as remote.

// createSecurityGroup makes the chains, the address group and the rules
// Neutron created with the group (the rules are stored as objects of
// their own too, as Neutron has them).
func (t *txn) createSecurityGroup(g *SecurityGroup) error {
	if err := checkStateful(g); err != nil {
		return err
	}
	in, out := DerivedID(g.ID, roleInChain), DerivedID(g.ID, roleOutChain)
	tenant := g.Owner()
	if err := t.createChain(in, "OS_SG_"+g.ID.String()+"_EGRESS", tenant); err != nil {
		return err
	}
	if err := t.createChain(out, "OS_SG_"+g.ID.String()+"_INGRESS", tenant); err != nil {
		return err
	}
	name := g.Name
	if name == "" {
		name = g.ID.String()
	}
	ag := topology.IPAddrGroup{ID: g.ID, Name: topology.Str(name), InboundChainID: topology.IDPtr(in), OutboundChainID: topology.IDPtr(out)}
	ag.Normalize()
	if err := t.tx.Create(&ag); err != nil {
		return err
	}
	for i := range g.Rules {
		r := &g.Rules[i]
		if r.SecurityGroupID == (ID{}) {
			r.SecurityGroupID = g.ID
		}
		if r.SecurityGroupID != g.ID {
			return invalid("security group %s: rule %s names security group %s", g.ID, r.ID, r.SecurityGroupID)
		}
		if err := t.addSGRule(r); err != nil {
			return err
		}
		if err := t.tx.Create(r); err != nil {
			return err
		}
	}
	return nil
}

// checkStateful refuses stateless groups: the translation's chains accept
// return flows by connection tracking, which a stateless group forgoes.
func checkStateful(g *SecurityGroup) error {
	if g.Stateful != nil && !*g.Stateful {
		return unsupported("security group %s: stateless security groups are not supported (the translation accepts replies by connection tracking)", g.ID)
	}
	return nil
}

// updateSecurityGroup renames the address group; Neutron changes rules by
// rule calls only.
func (t *txn) updateSecurityGroup(old, g *SecurityGroup) error {
	if err := checkStateful(g); err != nil {
		return err
	}
	ag, err := load[topology.IPAddrGroup](t, g.ID, "security group "+g.ID.String())
	if err != nil {
		return err
	}
	if g.Name != "" {
		ag.Name = topology.Str(g.Name)
	}
	g.Rules = old.Rules
	return t.tx.Put(ag)
}

// deleteSecurityGroup deletes the group's rules, chains and address group.
// Ports still in the group (Neutron should have emptied it) leave it,
// and rules of other groups that name it as remote go, since a rule on a
// missing group would match nothing.
func (t *txn) deleteSecurityGroup(g *SecurityGroup) error {
	ports, err := topology.ListOf[Port](t.tx)
	if err != nil {
		return err
	}
	for i := range ports {
		np := &ports[i]
		if !slices.Contains(np.SecurityGroups, g.ID) {
			continue
		}
		old := *np
		old.SecurityGroups = slices.Clone(np.SecurityGroups)
		np.SecurityGroups = slices.DeleteFunc(np.SecurityGroups, func(id ID) bool { return id == g.ID })
		if err := t.updatePort(&old, np); err != nil {
			return err
		}
		if err := t.tx.Put(np); err != nil {
			return err
		}
	}
	rules, err := topology.ListOf[topology.Rule](t.tx)
	if err != nil {
		return err
	}
	for _, r := range rules {
		if r.IPAddrGroupSrc != nil && *r.IPAddrGroupSrc == g.ID || r.IPAddrGroupDst != nil && *r.IPAddrGroupDst == g.ID {
			if err := t.deleteRule(r.ID); err != nil {
				return err
			}
		}
	}
	stored, err := topology.ListOf[SecurityGroupRule](t.tx)
	if err != nil {
		return err
	}
	for _, r := range stored {
		if r.SecurityGroupID == g.ID {
			if err := t.tx.Delete(KindSecurityGroupRule, r.ID.String()); err != nil {
				return err
			}
		}
	}
	for _, role := range []string{roleInChain, roleOutChain} {
		if err := t.remove(topology.KindChain, DerivedID(g.ID, role)); err != nil {
			return err
		}
	}
	return t.tx.Delete(topology.KindIPAddrGroup, g.ID.String())
}

// createSGRule adds a rule to its group (the group's stored rule list
// too).
func (t *txn) createSGRule(r *SecurityGroupRule) error {
	g, err := load[SecurityGroup](t, r.SecurityGroupID, "security group rule "+r.ID.String()+": security_group_id")
	if err != nil {
		return err
	}
	if err := t.addSGRule(r); err != nil {
		return err
	}
	g.Rules = append(g.Rules, *r)
	return t.tx.Put(g)
}

// deleteSGRule removes a rule and its non-header twin.
func (t *txn) deleteSGRule(r *SecurityGroupRule) error {
	if g, err := lookup[SecurityGroup](t, r.SecurityGroupID); err != nil {
		return err
	} else if g != nil {
		g.Rules = slices.DeleteFunc(g.Rules, func(x SecurityGroupRule) bool { return x.ID == r.ID })
		if err := t.tx.Put(g); err != nil {
			return err
		}
	}
	if err := t.deleteRule(r.ID); err != nil {
		return err
	}
	return t.deleteRule(DerivedID(r.ID, roleNonHeader))
}

// ethertypes of Neutron's rules.
var ethertypes = map[string]int{"ipv4": 0x0800, "ipv6": 0x86dd}

// addSGRule translates a Neutron rule into accept rules: an ingress rule
// goes to the group's outbound chain and matches the remote prefix or
// group as source, an egress rule to the inbound chain and matches them as
// destination. A port range becomes a destination port range (ICMP: the
// minimum is the type, matched as source, and the maximum the code,
// matched as destination) on first fragments, plus a twin without ports
// for later fragments, which carry none; a rule without ports matches
// fragments of any kind.
func (t *txn) addSGRule(r *SecurityGroupRule) error {
	if r.RemoteAddressGroupID != nil && *r.RemoteAddressGroupID != "" {
		return unsupported("security group rule %s: remote_address_group_id: Neutron address groups are not translated; use remote_ip_prefix or remote_group_id", r.ID)
	}
	base := topology.Rule{ID: r.ID, Type: topology.RuleAccept}
	proto, hasProto, err := r.Protocol.Number()
	if err != nil {
		return invalid("security group rule %s: %v", r.ID, err)
	}
	if hasProto {
		base.NwProto = &proto
	}
	if r.Ethertype != "" {
		et, ok := ethertypes[strings.ToLower(r.Ethertype)]
		if !ok {
			return invalid("security group rule %s: ethertype %q is neither IPv4 nor IPv6", r.ID, r.Ethertype)
		}
		base.DlType = &et
	}
	var prefix *string
	var plen int
	if r.RemoteIPPrefix != nil && *r.RemoteIPPrefix != "" {
		p, err := parsePrefix4("remote_ip_prefix", *r.RemoteIPPrefix)
		if err != nil {
			return err
		}
		prefix, plen = condPrefix(p.Masked())
	}
	switch strings.ToLower(r.Direction) {
	case "ingress":
		base.ChainID = DerivedID(r.SecurityGroupID, roleOutChain)
		base.NwSrcAddress, base.NwSrcLength, base.IPAddrGroupSrc = prefix, plen, r.RemoteGroupID
	case "egress":
		base.ChainID = DerivedID(r.SecurityGroupID, roleInChain)
		base.NwDstAddress, base.NwDstLength, base.IPAddrGroupDst = prefix, plen, r.RemoteGroupID
	default:
		return invalid("security group rule %s: direction %q is neither ingress nor egress", r.ID, r.Direction)
	}
	if r.PortRangeMin == nil && r.PortRangeMax == nil {
		base.FragmentPolicy = topology.Str(topology.FragAny)
		return t.addRule(base, appendRule)
	}
	header := base
	header.FragmentPolicy = topology.Str(topology.FragHeader)
	if hasProto && (proto == 1 || proto == 58) {
		if r.PortRangeMin != nil {
			header.TpSrc = &topology.PortRange{Start: *r.PortRangeMin, End: *r.PortRangeMin}
		}
		if r.PortRangeMax != nil {
			header.TpDst = &topology.PortRange{Start: *r.PortRangeMax, End: *r.PortRangeMax}
		}
	} else {
		lo, hi := r.PortRangeMin, r.PortRangeMax
		if lo == nil {
			lo = hi
		}
		if hi == nil {
			hi = lo
		}
		if *lo < 0 || *hi > 65535 || *lo > *hi {
			return invalid("security group rule %s: port range %d-%d is not a range of 0-65535", r.ID, *lo, *hi)
		}
		header.TpDst = &topology.PortRange{Start: *lo, End: *hi}
	}
	if err := t.addRule(header, appendRule); err != nil {
		return err
	}
	later := base
	later.ID, later.FragmentPolicy = DerivedID(r.ID, roleNonHeader), topology.Str(topology.FragNonheader)
	return t.addRule(later, appendRule)
}
