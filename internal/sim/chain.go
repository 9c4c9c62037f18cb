package sim

import (
	"fmt"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

type ruleAction uint8

const (
	actContinue ruleAction = iota
	actAccept
	actDrop
	actReject
	actReturn
	actJump
	actRedirect // the chain hands the packet to another port (L2 insertion)
)

var ruleActionNames = [...]string{"continue", "accept", "drop", "reject", "return", "jump", "redirect"}

func (a ruleAction) String() string { return ruleActionNames[a] }

type natKind uint8

const (
	natNone natKind = iota
	natDNAT
	natSNAT
	natRevDNAT
	natRevSNAT
)

var natKindNames = [...]string{"", "dnat", "snat", "rev_dnat", "rev_snat"}

type natTarget struct {
	ipFrom, ipTo     uint32
	portFrom, portTo uint16
}

type rule struct {
	id     ID
	typ    string
	cond   cond
	action ruleAction
	jump   handle[chain] // the target chain's handle: it may not exist
	jumpID ID
	nat    natKind
	static bool // a floating-IP style forward NAT rule: one address, no ports
	target []natTarget

	// l2_transform rules: pop the outer VLAN tag and/or push one (TCI,
	// without the present bit); a transform that changes nothing does not
	// fire. Redirect rules (l2_transform with action redirect) then hand
	// the packet to redirect: to its ingress, or out of it without its
	// outbound chains.
	transform  bool
	popVLAN    bool
	pushVLAN   uint16
	redirect   handle[port] // the target port's handle: it may not exist
	redirectID ID
	ingress    bool
	failOpen   bool
}

type chain struct {
	id    ID
	tag   Tag
	name  string
	rules []rule
}

type fragPolicy uint8

const (
	fragAny fragPolicy = iota
	fragHeader
	fragNonheader
	fragUnfragmented
)

// condField bits say which condition fields are set.
type condField uint32

const (
	cfInPorts condField = 1 << iota
	cfOutPorts
	cfPortGroup
	cfInPortGroup
	cfOutPortGroup
	cfIPGroupSrc
	cfIPGroupDst
	cfTraversed
	cfDlType
	cfDlSrc
	cfDlDst
	cfVLAN
	cfNoVLAN
	cfNwTos
	cfNwProto
	cfNwSrc
	cfNwDst
	cfTpSrc
	cfTpDst
	cfICMPDataSrc
	cfICMPDataDst
)

type cond struct {
	set        condField
	inv        condField // fields whose match is negated
	invertAll  bool
	fwdFlow    bool
	retFlow    bool
	dstRewrite bool
	frag       fragPolicy

	inPorts, outPorts                      []ID
	portGroup, inPortGroup, outPortGrp     ID
	ipGroupSrc, ipGroupDst                 map[[4]byte]struct{}
	traversed                              ID
	dlType                                 uint16
	dlSrc, dlSrcMask, dlDst, dlDstMask     [6]byte
	vlan                                   uint16
	vlanMask                               uint16 // the TCI bits the VLAN condition compares
	nwTos, nwProto                         uint8
	nwSrc, nwDst, icmpDataSrc, icmpDataDst prefix4
	tpSrc, tpDst                           [2]uint16
}

func (b *Builder) compileRule(tr *topology.Rule, ipg map[ID]map[[4]byte]struct{}) (rule, error) {
	r := rule{id: tr.ID, typ: tr.Type}
	flow := actAccept
	if tr.FlowAction != nil {
		switch *tr.FlowAction {
		case topology.FlowContinue:
			flow = actContinue
		case topology.FlowReturn:
			flow = actReturn
		}
	}
	switch tr.Type {
	case topology.RuleAccept:
		r.action = actAccept
	case topology.RuleDrop:
		r.action = actDrop
	case topology.RuleReject:
		r.action = actReject
	case topology.RuleReturn:
		r.action = actReturn
	case topology.RuleJump:
		r.action = actJump
		if tr.JumpChainID != nil {
			r.jumpID = *tr.JumpChainID
			r.jump = b.ix.chains.of(r.jumpID)
		}
	case topology.RuleDNAT, topology.RuleSNAT:
		r.action = flow
		r.nat = natDNAT
		if tr.Type == topology.RuleSNAT {
			r.nat = natSNAT
		}
		r.static = true
		for _, t := range tr.NatTargets {
			from, ok1 := topology.ParseIPv4(deref(t.AddressFrom))
			to, ok2 := topology.ParseIPv4(deref(t.AddressTo))
			if !ok1 || !ok2 {
				return r, fmt.Errorf("NAT target address %q-%q is not IPv4", deref(t.AddressFrom), deref(t.AddressTo))
			}
			nt := natTarget{ipFrom: u32(from.As4()), ipTo: u32(to.As4()), portFrom: uint16(t.PortFrom), portTo: uint16(t.PortTo)}
			if nt.ipTo < nt.ipFrom {
				nt.ipFrom, nt.ipTo = nt.ipTo, nt.ipFrom
			}
			if nt.portTo < nt.portFrom {
				nt.portFrom, nt.portTo = nt.portTo, nt.portFrom
			}
			if nt.portFrom != 0 || nt.portTo != 0 || nt.ipFrom != nt.ipTo {
				r.static = false
			}
			r.target = append(r.target, nt)
		}
		if len(r.target) != 1 {
			r.static = false
		}
		if len(r.target) == 0 {
			return r, fmt.Errorf("%s rule without targets", tr.Type)
		}
	case topology.RuleRevDNAT:
		r.action, r.nat = flow, natRevDNAT
	case topology.RuleRevSNAT:
		r.action, r.nat = flow, natRevSNAT
	case topology.RuleL2Transform:
		r.transform, r.popVLAN, r.pushVLAN = true, tr.PopVLAN, uint16(tr.PushVLAN)&^packet.VLANPresent
		r.action = actAccept
		if tr.FlowAction != nil && *tr.FlowAction == topology.FlowRedirect {
			r.action, r.ingress, r.failOpen = actRedirect, tr.Ingress, tr.FailOpen
			if tr.TargetPortID != nil {
				r.redirectID = *tr.TargetPortID
				r.redirect = b.ix.ports.of(r.redirectID)
			}
		}
	default:
		// Trace rules continue: tracing is requested per simulation here.
		r.action = actContinue
	}
	if err := b.compileCond(&r.cond, &tr.Condition, ipg); err != nil {
		return r, err
	}
	// Dynamic NAT (and NAT on L4 fields) only ever matches unfragmented
	// packets; the API enforces it, objects built in code get it here.
	if tr.FragmentPolicy == nil && (r.nat == natDNAT || r.nat == natSNAT) &&
		(!r.static || tr.TpSrc != nil || tr.TpDst != nil) {
		r.cond.frag = fragUnfragmented
	}
	return r, nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (b *Builder) compileCond(c *cond, tc *topology.Condition, ipg map[ID]map[[4]byte]struct{}) error {
	set := func(f condField, inv bool) {
		c.set |= f
		if inv {
			c.inv |= f
		}
	}
	c.invertAll, c.fwdFlow, c.retFlow, c.dstRewrite = tc.CondInvert, tc.MatchForwardFlow, tc.MatchReturnFlow, tc.MatchNwDstRewritten
	if len(tc.InPorts) > 0 {
		c.inPorts = tc.InPorts
		set(cfInPorts, tc.InvInPorts)
	}
	if len(tc.OutPorts) > 0 {
		c.outPorts = tc.OutPorts
		set(cfOutPorts, tc.InvOutPorts)
	}
	if tc.PortGroup != nil {
		c.portGroup = *tc.PortGroup
		set(cfPortGroup, tc.InvPortGroup)
	}
	if tc.InPortGroup != nil {
		c.inPortGroup = *tc.InPortGroup
		set(cfInPortGroup, tc.InvInPortGroup)
	}
	if tc.OutPortGroup != nil {
		c.outPortGrp = *tc.OutPortGroup
		set(cfOutPortGroup, tc.InvOutPortGroup)
	}
	if tc.IPAddrGroupSrc != nil {
		c.ipGroupSrc = ipg[*tc.IPAddrGroupSrc] // a missing group is empty
		set(cfIPGroupSrc, tc.InvIPAddrGroupSrc)
	}
	if tc.IPAddrGroupDst != nil {
		c.ipGroupDst = ipg[*tc.IPAddrGroupDst]
		set(cfIPGroupDst, tc.InvIPAddrGroupDst)
	}
	if tc.TraversedDevice != nil {
		c.traversed = *tc.TraversedDevice
		set(cfTraversed, tc.InvTraversedDevice)
	}
	if tc.DlType != nil {
		c.dlType = uint16(*tc.DlType)
		set(cfDlType, tc.InvDlType)
	}
	var err error
	mac := func(v, mask *string, dst, dstMask *[6]byte) bool {
		if v == nil {
			return false
		}
		m, ok := topology.ParseMAC(*v)
		if !ok {
			err = fmt.Errorf("bad MAC %q", *v)
			return false
		}
		*dstMask = broadcastMAC
		if mask != nil {
			if *dstMask, ok = topology.ParseMACMask(*mask); !ok {
				err = fmt.Errorf("bad MAC mask %q", *mask)
				return false
			}
		}
		for i := range m {
			dst[i] = m[i] & dstMask[i]
		}
		return true
	}
	if mac(tc.DlSrc, tc.DlSrcMask, &c.dlSrc, &c.dlSrcMask) {
		set(cfDlSrc, tc.InvDlSrc)
	}
	if mac(tc.DlDst, tc.DlDstMask, &c.dlDst, &c.dlDstMask) {
		set(cfDlDst, tc.InvDlDst)
	}
	if err != nil {
		return err
	}
	if tc.VLAN != nil {
		c.vlan, c.vlanMask = uint16(*tc.VLAN), 0x0fff
		set(cfVLAN, false)
	}
	if tc.NoVLAN {
		set(cfNoVLAN, false)
	}
	if tc.NwTos != nil {
		c.nwTos = uint8(*tc.NwTos)
		set(cfNwTos, tc.InvNwTos)
	}
	if tc.NwProto != nil {
		c.nwProto = uint8(*tc.NwProto)
		set(cfNwProto, tc.InvNwProto)
	}
	pfx := func(a *string, l int, dst *prefix4, f condField, inv bool) error {
		if a == nil {
			return nil
		}
		p, ok := topology.Prefix4(*a, l)
		if !ok {
			return fmt.Errorf("bad prefix %s/%d", *a, l)
		}
		*dst = toPrefix4(p)
		set(f, inv)
		return nil
	}
	if err := pfx(tc.NwSrcAddress, tc.NwSrcLength, &c.nwSrc, cfNwSrc, tc.InvNwSrc); err != nil {
		return err
	}
	if err := pfx(tc.NwDstAddress, tc.NwDstLength, &c.nwDst, cfNwDst, tc.InvNwDst); err != nil {
		return err
	}
	if err := pfx(tc.IcmpDataSrcIPAddress, tc.IcmpDataSrcIPLength, &c.icmpDataSrc, cfICMPDataSrc, tc.InvIcmpDataSrcIP); err != nil {
		return err
	}
	if err := pfx(tc.IcmpDataDstIPAddress, tc.IcmpDataDstIPLength, &c.icmpDataDst, cfICMPDataDst, tc.InvIcmpDataDstIP); err != nil {
		return err
	}
	if tc.TpSrc != nil {
		c.tpSrc = [2]uint16{uint16(tc.TpSrc.Start), uint16(tc.TpSrc.End)}
		set(cfTpSrc, tc.InvTpSrc)
	}
	if tc.TpDst != nil {
		c.tpDst = [2]uint16{uint16(tc.TpDst.Start), uint16(tc.TpDst.End)}
		set(cfTpDst, tc.InvTpDst)
	}
	// The API always stores a fragment policy; an unset one (objects built
	// in code) gets the API's default.
	c.frag = fragAny
	if tc.FragmentPolicy != nil {
		switch *tc.FragmentPolicy {
		case topology.FragHeader:
			c.frag = fragHeader
		case topology.FragNonheader:
			c.frag = fragNonheader
		case topology.FragUnfragmented:
			c.frag = fragUnfragmented
		}
	} else if tc.TpSrc != nil || tc.TpDst != nil {
		c.frag = fragHeader
	}
	return nil
}
