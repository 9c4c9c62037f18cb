package topology

import (
	"net/netip"
	"strconv"
)

// PortRange is an inclusive range of L4 ports (for ICMP: of types or codes).
type PortRange struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// Fragment policies of a condition.
const (
	FragAny          = "any"
	FragHeader       = "header"
	FragNonheader    = "nonheader"
	FragUnfragmented = "unfragmented"
)

// Condition is the match part of a rule, a mirror or a trace request. A
// condition matches when all its set fields match; each inversion flag
// negates its field and CondInvert the whole.
type Condition struct {
	CondInvert           bool       `json:"condInvert"`
	MatchForwardFlow     bool       `json:"matchForwardFlow"`
	MatchReturnFlow      bool       `json:"matchReturnFlow"`
	InPorts              []ID       `json:"inPorts"`
	InvInPorts           bool       `json:"invInPorts"`
	OutPorts             []ID       `json:"outPorts"`
	InvOutPorts          bool       `json:"invOutPorts"`
	PortGroup            *ID        `json:"portGroup"`
	InvPortGroup         bool       `json:"invPortGroup"`
	InPortGroup          *ID        `json:"inPortGroup"`
	InvInPortGroup       bool       `json:"invInPortGroup"`
	OutPortGroup         *ID        `json:"outPortGroup"`
	InvOutPortGroup      bool       `json:"invOutPortGroup"`
	IPAddrGroupSrc       *ID        `json:"ipAddrGroupSrc"`
	InvIPAddrGroupSrc    bool       `json:"invIpAddrGroupSrc"`
	IPAddrGroupDst       *ID        `json:"ipAddrGroupDst"`
	InvIPAddrGroupDst    bool       `json:"invIpAddrGroupDst"`
	TraversedDevice      *ID        `json:"traversedDevice"`
	InvTraversedDevice   bool       `json:"invTraversedDevice"`
	DlType               *int       `json:"dlType"`
	InvDlType            bool       `json:"invDlType"`
	DlSrc                *string    `json:"dlSrc"`
	DlSrcMask            *string    `json:"dlSrcMask"`
	InvDlSrc             bool       `json:"invDlSrc"`
	DlDst                *string    `json:"dlDst"`
	DlDstMask            *string    `json:"dlDstMask"`
	InvDlDst             bool       `json:"invDlDst"`
	VLAN                 *int       `json:"vlan"`
	NoVLAN               bool       `json:"noVlan"`
	NwTos                *int       `json:"nwTos"`
	InvNwTos             bool       `json:"invNwTos"`
	NwProto              *int       `json:"nwProto"`
	InvNwProto           bool       `json:"invNwProto"`
	NwSrcAddress         *string    `json:"nwSrcAddress"`
	NwSrcLength          int        `json:"nwSrcLength"`
	InvNwSrc             bool       `json:"invNwSrc"`
	NwDstAddress         *string    `json:"nwDstAddress"`
	NwDstLength          int        `json:"nwDstLength"`
	InvNwDst             bool       `json:"invNwDst"`
	TpSrc                *PortRange `json:"tpSrc"`
	InvTpSrc             bool       `json:"invTpSrc"`
	TpDst                *PortRange `json:"tpDst"`
	InvTpDst             bool       `json:"invTpDst"`
	IcmpDataSrcIPAddress *string    `json:"icmpDataSrcIpAddress"`
	IcmpDataSrcIPLength  int        `json:"icmpDataSrcIpLength"`
	InvIcmpDataSrcIP     bool       `json:"invIcmpDataSrcIp"`
	IcmpDataDstIPAddress *string    `json:"icmpDataDstIpAddress"`
	IcmpDataDstIPLength  int        `json:"icmpDataDstIpLength"`
	InvIcmpDataDstIP     bool       `json:"invIcmpDataDstIp"`
	MatchNwDstRewritten  bool       `json:"matchNwDstRewritten"`
	FragmentPolicy       *string    `json:"fragmentPolicy"`
}

// NormalizeCondition replaces nil lists with empty ones.
func (c *Condition) NormalizeCondition() {
	c.InPorts, c.OutPorts = ids(c.InPorts), ids(c.OutPorts)
}

// validateCondition checks the condition's fields; prefix is prepended to
// property names (for conditions nested in mirrors and traces).
func (c *Condition) validateCondition(v *violations, prefix string) {
	if c.DlType != nil && (*c.DlType < 0x600 || *c.DlType > 0xffff) {
		v.add(prefix+"dlType", "must be between 1536 and 65535")
	}
	v.checkMAC(prefix+"dlSrc", c.DlSrc, false)
	v.checkMAC(prefix+"dlDst", c.DlDst, false)
	for _, m := range []struct {
		prop string
		s    *string
	}{{"dlSrcMask", c.DlSrcMask}, {"dlDstMask", c.DlDstMask}} {
		if m.s != nil {
			if _, ok := ParseMACMask(*m.s); !ok {
				v.add(prefix+m.prop, "is not a valid MAC mask (use the form ffff.ffff.0000)")
			}
		}
	}
	if c.VLAN != nil {
		v.checkRange(prefix+"vlan", int64(*c.VLAN), 0, 4095)
	}
	if c.NwTos != nil {
		v.checkRange(prefix+"nwTos", int64(*c.NwTos), 0, 255)
	}
	if c.NwProto != nil {
		v.checkRange(prefix+"nwProto", int64(*c.NwProto), 0, 255)
	}
	v.checkIPv4(prefix+"nwSrcAddress", c.NwSrcAddress, false)
	v.checkIPv4(prefix+"nwDstAddress", c.NwDstAddress, false)
	v.checkIPv4(prefix+"icmpDataSrcIpAddress", c.IcmpDataSrcIPAddress, false)
	v.checkIPv4(prefix+"icmpDataDstIpAddress", c.IcmpDataDstIPAddress, false)
	v.checkRange(prefix+"nwSrcLength", int64(c.NwSrcLength), 0, 32)
	v.checkRange(prefix+"nwDstLength", int64(c.NwDstLength), 0, 32)
	v.checkRange(prefix+"icmpDataSrcIpLength", int64(c.IcmpDataSrcIPLength), 0, 32)
	v.checkRange(prefix+"icmpDataDstIpLength", int64(c.IcmpDataDstIPLength), 0, 32)
	for _, r := range []struct {
		prop string
		r    *PortRange
	}{{"tpSrc", c.TpSrc}, {"tpDst", c.TpDst}} {
		if r.r == nil {
			continue
		}
		// ICMP type and code ranges start at 0; L4 ports at 1.
		lo := int64(1)
		if c.NwProto != nil && *c.NwProto == 1 {
			lo = 0
		}
		if int64(r.r.Start) < lo || r.r.End > 65535 || r.r.Start > r.r.End {
			v.add(prefix+r.prop, "must be a range "+strconv.FormatInt(lo, 10)+"-65535 with start <= end")
		}
	}
	if c.FragmentPolicy != nil {
		switch *c.FragmentPolicy {
		case FragAny, FragHeader, FragNonheader, FragUnfragmented:
		default:
			v.add(prefix+"fragmentPolicy", "must be one of any, header, nonheader, unfragmented")
		}
	}
}

// NwSrcPrefix and NwDstPrefix return the condition's prefixes; ok is false
// when the field is unset.
func (c *Condition) NwSrcPrefix() (netip.Prefix, bool) {
	if c.NwSrcAddress == nil {
		return netip.Prefix{}, false
	}
	return Prefix4(*c.NwSrcAddress, c.NwSrcLength)
}

func (c *Condition) NwDstPrefix() (netip.Prefix, bool) {
	if c.NwDstAddress == nil {
		return netip.Prefix{}, false
	}
	return Prefix4(*c.NwDstAddress, c.NwDstLength)
}

// Rule types.
const (
	RuleAccept      = "accept"
	RuleDrop        = "drop"
	RuleReject      = "reject"
	RuleReturn      = "return"
	RuleJump        = "jump"
	RuleDNAT        = "dnat"
	RuleSNAT        = "snat"
	RuleRevDNAT     = "rev_dnat"
	RuleRevSNAT     = "rev_snat"
	RuleL2Transform = "l2_transform"
	RuleTrace       = "trace"
)

// Flow actions of NAT and L2 transform rules.
const (
	FlowAccept   = "accept"
	FlowContinue = "continue"
	FlowReturn   = "return"
	FlowRedirect = "redirect"
)

// NatTarget is a range of addresses and ports a NAT rule translates to.
type NatTarget struct {
	AddressFrom *string `json:"addressFrom"`
	AddressTo   *string `json:"addressTo"`
	PortFrom    int     `json:"portFrom"`
	PortTo      int     `json:"portTo"`
}

// Rule is an entry of a chain.
type Rule struct {
	ID        ID      `json:"id"`
	Type      string  `json:"type"`
	ChainID   ID      `json:"chainId"`
	Position  int     `json:"position"`
	MeterName *string `json:"meterName"`
	Condition

	JumpChainID   *ID         `json:"jumpChainId"`
	JumpChainName *string     `json:"jumpChainName"`
	FlowAction    *string     `json:"flowAction"`
	NatTargets    []NatTarget `json:"natTargets"`
	PopVLAN       bool        `json:"popVlan"`
	PushVLAN      int         `json:"pushVlan"`
	TargetPortID  *ID         `json:"targetPortId"`
	Ingress       bool        `json:"ingress"`
	FailOpen      bool        `json:"failOpen"`
}

func (Rule) Kind() string       { return KindRule }
func (r Rule) ObjectID() string { return r.ID.String() }
func (r *Rule) Normalize() {
	r.NormalizeCondition()
	if r.NatTargets == nil && (r.Type == RuleDNAT || r.Type == RuleSNAT) {
		r.NatTargets = []NatTarget{}
	}
}

// IsStaticNAT reports whether a NAT rule is a floating-IP style 1:1
// translation: one target, one address, no ports.
func (r *Rule) IsStaticNAT() bool {
	if len(r.NatTargets) != 1 {
		return false
	}
	t := r.NatTargets[0]
	return t.AddressFrom != nil && t.AddressTo != nil && *t.AddressFrom == *t.AddressTo && t.PortFrom == 0 && t.PortTo == 0
}

// ValidRuleType reports whether t is a rule type the API accepts.
func ValidRuleType(t string) bool {
	switch t {
	case RuleAccept, RuleDrop, RuleReject, RuleReturn, RuleJump, RuleDNAT, RuleSNAT,
		RuleRevDNAT, RuleRevSNAT, RuleL2Transform:
		return true
	}
	return false
}

// Validate checks the rule and applies MidoNet's fragment policy defaults.
func (r *Rule) Validate() error {
	var v violations
	if !ValidRuleType(r.Type) {
		v.add("type", "is not a valid rule type")
		return v.err()
	}
	if r.Position < 0 {
		v.add("position", "must be greater than or equal to 1")
	}
	r.validateCondition(&v, "")
	switch r.Type {
	case RuleJump:
		if r.JumpChainID == nil {
			v.add("jumpChainId", "may not be null")
		}
	case RuleDNAT, RuleSNAT, RuleRevDNAT, RuleRevSNAT:
		if r.FlowAction == nil {
			v.add("flowAction", "may not be null")
		} else if a := *r.FlowAction; a != FlowAccept && a != FlowContinue && a != FlowReturn {
			v.add("flowAction", "must be one of accept, continue, return")
		}
	case RuleL2Transform:
		if r.FlowAction == nil {
			v.add("flowAction", "may not be null")
		} else if a := *r.FlowAction; a != FlowAccept && a != FlowRedirect {
			v.add("flowAction", "must be one of accept, redirect")
		}
		v.checkRange("pushVlan", int64(r.PushVLAN), 0, 65535)
	}
	if r.Type == RuleDNAT || r.Type == RuleSNAT {
		if len(r.NatTargets) == 0 {
			v.add("natTargets", "must have at least one element")
		}
		for i, t := range r.NatTargets {
			p := "natTargets[" + strconv.Itoa(i) + "]."
			v.checkIPv4(p+"addressFrom", t.AddressFrom, true)
			v.checkIPv4(p+"addressTo", t.AddressTo, true)
			v.checkRange(p+"portFrom", int64(t.PortFrom), 0, 65535)
			v.checkRange(p+"portTo", int64(t.PortTo), 0, 65535)
			if t.PortFrom > t.PortTo {
				v.add(p+"portFrom", "must not exceed portTo")
			}
		}
	}
	if len(v) > 0 {
		return v.err()
	}
	// Fragment policy, as MidoNet defaults and restricts it.
	hasL4 := r.TpSrc != nil || r.TpDst != nil
	fp := r.FragmentPolicy
	if (r.Type == RuleDNAT || r.Type == RuleSNAT) && (!r.IsStaticNAT() || hasL4) {
		if fp == nil {
			r.FragmentPolicy = Str(FragUnfragmented)
		} else if *fp != FragUnfragmented {
			v.add("fragmentPolicy", "must be unfragmented for a dynamic NAT rule or one with L4 fields")
		}
	} else if hasL4 {
		if fp == nil {
			r.FragmentPolicy = Str(FragHeader)
		} else if *fp == FragAny || *fp == FragNonheader {
			v.add("fragmentPolicy", "must be header or unfragmented when tpSrc or tpDst is set")
		}
	} else if fp == nil {
		r.FragmentPolicy = Str(FragAny)
	}
	return v.err()
}

// Chain is an ordered list of rules.
type Chain struct {
	ID       ID      `json:"id"`
	TenantID *string `json:"tenantId"`
	Name     *string `json:"name"`
	// RuleIDs is the evaluation order.
	RuleIDs []ID `json:"_ruleIds"`
}

func (Chain) Kind() string       { return KindChain }
func (c Chain) ObjectID() string { return c.ID.String() }
func (c *Chain) Normalize()      { c.RuleIDs = ids(c.RuleIDs) }
func (c *Chain) Validate() error {
	var v violations
	v.checkLen("name", c.Name, 0, 255)
	return v.err()
}

// PortGroup is a set of ports; a stateful group shares connection state
// among its members.
type PortGroup struct {
	ID       ID      `json:"id"`
	TenantID *string `json:"tenantId"`
	Name     *string `json:"name"`
	Stateful bool    `json:"stateful"`
	PortIDs  []ID    `json:"_portIds"`
}

func (PortGroup) Kind() string       { return KindPortGroup }
func (g PortGroup) ObjectID() string { return g.ID.String() }
func (g *PortGroup) Normalize()      { g.PortIDs = ids(g.PortIDs) }
func (g *PortGroup) Validate() error {
	var v violations
	v.checkLen("name", g.Name, 0, 255)
	return v.err()
}

// IPAddrPort is a member address of an IP address group.
type IPAddrPort struct {
	IPAddress string `json:"ipAddress"`
	PortIDs   []ID   `json:"portIds"`
}

// IPAddrGroup is a set of addresses rules can match.
type IPAddrGroup struct {
	ID              ID           `json:"id"`
	Name            *string      `json:"name"`
	InboundChainID  *ID          `json:"inboundChainId"`
	OutboundChainID *ID          `json:"outboundChainId"`
	IPAddrPorts     []IPAddrPort `json:"ipAddrPorts"`
	RuleIDs         []ID         `json:"ruleIds"`
}

func (IPAddrGroup) Kind() string       { return KindIPAddrGroup }
func (g IPAddrGroup) ObjectID() string { return g.ID.String() }
func (g *IPAddrGroup) Normalize() {
	if g.IPAddrPorts == nil {
		g.IPAddrPorts = []IPAddrPort{}
	}
	for i := range g.IPAddrPorts {
		g.IPAddrPorts[i].PortIDs = ids(g.IPAddrPorts[i].PortIDs)
	}
	g.RuleIDs = ids(g.RuleIDs)
}
func (g *IPAddrGroup) Validate() error {
	var v violations
	v.checkLen("name", g.Name, 1, 255)
	return v.err()
}

// HasAddr reports whether the group holds addr (compared as addresses).
func (g *IPAddrGroup) HasAddr(addr netip.Addr) bool {
	for _, a := range g.IPAddrPorts {
		if x, err := netip.ParseAddr(a.IPAddress); err == nil && x == addr {
			return true
		}
	}
	return false
}
