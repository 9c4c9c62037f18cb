package sim

import (
	"net/netip"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
)

// loadBalancer is an L4 (TCP) load balancer attached to a router
// (MidoNet's LoadBalancer.scala, reference §2.9). Its id is the device of
// its NAT keys, a namespace apart from the router's.
type loadBalancer struct {
	id      ID
	tag     Tag
	adminUp bool
	vips    []*vip
}

type vip struct {
	id      ID
	addr    [4]byte
	port    uint16
	adminUp bool
	sticky  bool // SOURCE_IP session persistence
	pool    *pool
}

type pool struct {
	id      ID
	tag     Tag
	adminUp bool
	members []*member
}

type member struct {
	addr    [4]byte
	port    uint16
	weight  int
	adminUp bool
	healthy bool // status ACTIVE (health monitor or default)
}

// active reports whether new connections may go to the member.
func (m *member) active() bool { return m.weight > 0 && m.adminUp && m.healthy }

func (p *pool) up() bool {
	if !p.adminUp {
		return false
	}
	for _, m := range p.members {
		if m.active() {
			return true
		}
	}
	return false
}

// valid reports whether an existing connection may stay on the backend b:
// an active member, or for non-sticky connections a healthy member that
// was disabled, so its connections drain.
func (p *pool) valid(b flowstate.NATBinding, sticky bool) bool {
	a := b.IP.As4()
	for _, m := range p.members {
		if m.addr != a || m.port != b.Port {
			continue
		}
		if m.active() || (!sticky && m.healthy && m.weight > 0) {
			return true
		}
	}
	return false
}

// pick chooses an active member at random, in proportion to its weight.
func (s *Simulator) pick(p *pool) (flowstate.NATBinding, bool) {
	total := 0
	for _, m := range p.members {
		if m.active() {
			total += m.weight
		}
	}
	if total == 0 {
		return flowstate.NATBinding{}, false
	}
	n := s.rng.IntN(total)
	for _, m := range p.members {
		if !m.active() {
			continue
		}
		if n < m.weight {
			return flowstate.NATBinding{IP: netip.AddrFrom4(m.addr), Port: m.port}, true
		}
		n -= m.weight
	}
	return flowstate.NATBinding{}, false
}

type lbVerdict uint8

const (
	lbContinue lbVerdict = iota // not for a VIP: the router's inbound filter applies
	lbAccept                    // translated (or returning): skip the router's filter
	lbDrop
)

// lbInbound load-balances a TCP connection to one of the balancer's VIPs,
// before the router's inbound filter.
func (s *Simulator) lbInbound(lb *loadBalancer) lbVerdict {
	s.tag(lb.tag)
	if !lb.adminUp || len(lb.vips) == 0 || !s.isIPv4() || s.nwProto() != packet.IPProtoTCP || s.nwFrag() == packet.FragLater {
		return lbContinue
	}
	dst, dp := s.nwDst(), s.tpDst()
	var v *vip
	for _, x := range lb.vips {
		if x.adminUp && x.addr == dst && x.port == dp {
			v = x
			break
		}
	}
	if v == nil {
		return lbContinue
	}
	src, sp := s.nwSrc(), s.tpSrc()
	fwd := flowstate.NATKey{Type: flowstate.FwdDNAT, Src: addr4(src), SrcPort: sp, Dst: addr4(dst), DstPort: dp,
		Proto: packet.IPProtoTCP, Device: lb.id}
	if v.sticky {
		fwd.Type, fwd.SrcPort = flowstate.FwdStickyDNAT, 0
	}
	p := v.pool
	if p != nil {
		s.tag(p.tag)
	}
	b, found := s.lookupNAT(fwd)
	switch {
	case found && p != nil && p.valid(b, v.sticky) && (p.up() || !v.sticky):
		// An existing connection keeps its backend.
	case p == nil || !p.up():
		return lbDrop
	default:
		var ok bool
		if b, ok = s.pick(p); !ok {
			return lbDrop
		}
	}
	// The reply's key names this connection exactly, sticky or not: the
	// backend may see the same 5-tuple again through another VIP of the
	// balancer (a client re-using its port after TIME_WAIT), and the newer
	// binding must replace the older one, not sit beside it.
	rev := flowstate.NATKey{Type: flowstate.RevDNAT, Src: b.IP, SrcPort: b.Port, Dst: addr4(src), DstPort: sp,
		Proto: packet.IPProtoTCP, Device: lb.id}
	vipBinding := flowstate.NATBinding{IP: addr4(dst), Port: dp}
	s.recordNAT(fwd, b)
	s.recordNAT(rev, vipBinding)
	if v.sticky {
		rev.Type, rev.DstPort = flowstate.RevStickyDNAT, 0
		s.recordNAT(rev, vipBinding)
	}
	s.setNwDst(b.IP.As4())
	s.setTpDst(b.Port)
	s.nwDstRewritten = true
	if s.tracing {
		s.trace("load-balancer", lb.id, "balance", "vip "+v.id.String()+" → "+b.IP.String()+":"+itoa(int(b.Port)))
	}
	return lbAccept
}

// lbOutbound restores the VIP as the source of a backend's reply, after
// routing and before the router's outbound filter (which it then skips, so
// that SNAT rules do not translate it again).
func (s *Simulator) lbOutbound(lb *loadBalancer) lbVerdict {
	s.tag(lb.tag)
	if len(lb.vips) == 0 || !s.isIPv4() || s.nwProto() != packet.IPProtoTCP || s.nwFrag() == packet.FragLater {
		return lbContinue
	}
	k := flowstate.NATKey{Type: flowstate.RevDNAT, Src: addr4(s.nwSrc()), SrcPort: s.tpSrc(), Dst: addr4(s.nwDst()),
		DstPort: s.tpDst(), Proto: packet.IPProtoTCP, Device: lb.id}
	b, found := s.lookupNAT(k)
	if !found {
		// The client's sticky key, for a connection whose own key is gone.
		k.Type, k.DstPort = flowstate.RevStickyDNAT, 0
		if b, found = s.lookupNAT(k); !found {
			return lbContinue
		}
	}
	if !lb.adminUp {
		return lbDrop
	}
	var v *vip
	for _, x := range lb.vips {
		if netip.AddrFrom4(x.addr) == b.IP && x.port == b.Port {
			v = x
			break
		}
	}
	if v == nil || v.pool == nil || !v.pool.valid(flowstate.NATBinding{IP: k.Src, Port: k.SrcPort}, v.sticky) {
		return lbDrop
	}
	s.setNwSrc(b.IP.As4())
	s.setTpSrc(b.Port)
	return lbAccept
}
