package sim

import (
	"encoding/binary"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
)

// applyNAT applies a NAT rule whose condition matched; it reports whether
// the rule applied (a reverse rule without a binding does not, and
// evaluation continues). It sets s.natFailed when no port is left.
func (s *Simulator) applyNAT(r *rule) bool {
	if !s.isIPv4() {
		return false
	}
	switch r.nat {
	case natDNAT, natSNAT:
		if r.static {
			return s.staticNAT(r)
		}
		return s.dynamicNAT(r)
	case natRevSNAT:
		return s.reverseNAT(flowstate.RevSNAT)
	case natRevDNAT:
		return s.reverseNAT(flowstate.RevDNAT)
	}
	return false
}

// staticNAT is a stateless 1:1 rewrite (floating IP). For an ICMP error the
// quoted header's matching address is rewritten too.
func (s *Simulator) staticNAT(r *rule) bool {
	var ip [4]byte
	binary.BigEndian.PutUint32(ip[:], r.target[0].ipFrom)
	icmpErr := s.isICMPError()
	if r.nat == natDNAT {
		old := s.nwDst()
		if icmpErr {
			if d := s.icmpData(); d.Valid && d.Src == old {
				d.Src = ip
				s.setICMPData(d)
			}
		}
		s.setNwDst(ip)
		s.nwDstRewritten = true
	} else {
		old := s.nwSrc()
		if icmpErr {
			if d := s.icmpData(); d.Valid && d.Dst == old {
				d.Dst = ip
				s.setICMPData(d)
			}
		}
		s.setNwSrc(ip)
	}
	if s.tracing {
		s.trace("rule", r.id, "nat", natKindNames[r.nat]+" to "+addr4(ip).String())
	}
	return true
}

// natTuple reads the protocol and the ports NAT keys use: TCP/UDP ports,
// or the ICMP echo identifier in both.
func (s *Simulator) natTuple() (proto uint8, sp, dp uint16, ok bool) {
	if s.nwFrag() == packet.FragLater {
		return 0, 0, 0, false
	}
	switch proto = s.nwProto(); proto {
	case packet.IPProtoTCP, packet.IPProtoUDP:
		return proto, s.tpSrc(), s.tpDst(), true
	case packet.IPProtoICMP:
		if s.isICMPEcho() {
			id := s.icmpID()
			return proto, id, id, true
		}
	}
	return 0, 0, 0, false
}

func (s *Simulator) lookupNAT(k flowstate.NATKey) (flowstate.NATBinding, bool) {
	s.tag(NATTag(k))
	for i := range s.res.NAT {
		if s.res.NAT[i].Key == k {
			return s.res.NAT[i].Binding, true
		}
	}
	if s.state == nil {
		return flowstate.NATBinding{}, false
	}
	return s.state.NAT(k)
}

// natKeyFree reports whether no binding uses k, without tagging: probing
// candidate ports must not make the flow depend on every one of them.
func (s *Simulator) natKeyFree(k flowstate.NATKey) bool {
	for i := range s.res.NAT {
		if s.res.NAT[i].Key == k {
			return false
		}
	}
	if s.state == nil {
		return true
	}
	_, used := s.state.NAT(k)
	return !used
}

func (s *Simulator) recordNAT(k flowstate.NATKey, b flowstate.NATBinding) {
	for i := range s.res.NAT {
		if s.res.NAT[i].Key == k {
			s.res.NAT[i].Binding = b
			return
		}
	}
	s.res.NAT = append(s.res.NAT, flowstate.NATEntry{Key: k, Binding: b})
}

// dynamicNAT translates a connection statefully: an existing forward key is
// reused, otherwise a binding is allocated and both the forward and the
// reverse key are recorded (reference §2.7).
func (s *Simulator) dynamicNAT(r *rule) bool {
	if s.isICMPError() {
		// An error about a translated connection follows its binding; an
		// error never creates one.
		if r.nat == natDNAT {
			return s.icmpErrorNAT(flowstate.FwdDNAT)
		}
		return s.icmpErrorNAT(flowstate.FwdSNAT)
	}
	proto, sp, dp, ok := s.natTuple()
	if !ok {
		return false
	}
	src, dst := s.nwSrc(), s.nwDst()
	dev := s.device
	fwdType := flowstate.FwdSNAT
	if r.nat == natDNAT {
		fwdType = flowstate.FwdDNAT
	}
	fwd := flowstate.NATKey{Type: fwdType, Src: addr4(src), Dst: addr4(dst), SrcPort: sp, DstPort: dp, Proto: proto, Device: dev}
	b, found := s.lookupNAT(fwd)
	if !found {
		if r.nat == natDNAT {
			b = s.allocDNAT(r, dp, proto)
		} else if b, ok = s.allocSNAT(r, dst, sp, dp, proto); !ok {
			s.natFailed = true
			return true
		}
	}
	var rev flowstate.NATKey
	var orig flowstate.NATBinding
	if r.nat == natSNAT {
		rev = flowstate.NATKey{Type: flowstate.RevSNAT, Src: addr4(dst), Dst: b.IP, SrcPort: dp, DstPort: b.Port, Proto: proto, Device: dev}
		orig = flowstate.NATBinding{IP: addr4(src), Port: sp}
	} else {
		rev = flowstate.NATKey{Type: flowstate.RevDNAT, Src: b.IP, Dst: addr4(src), SrcPort: b.Port, DstPort: sp, Proto: proto, Device: dev}
		orig = flowstate.NATBinding{IP: addr4(dst), Port: dp}
	}
	s.recordNAT(fwd, b)
	s.recordNAT(rev, orig)
	ip := b.IP.As4()
	ports := proto != packet.IPProtoICMP
	if r.nat == natSNAT {
		s.setNwSrc(ip)
		if ports {
			s.setTpSrc(b.Port)
		}
	} else {
		s.setNwDst(ip)
		if ports {
			s.setTpDst(b.Port)
		}
		s.nwDstRewritten = true
	}
	if s.tracing {
		s.trace("rule", r.id, "nat", natKindNames[r.nat]+" "+fwd.String()+" → "+b.IP.String()+":"+itoa(int(b.Port)))
	}
	return true
}

// allocDNAT picks a random target, address and port. ICMP identifiers and
// targets without a port range keep the original port.
func (s *Simulator) allocDNAT(r *rule, dp uint16, proto uint8) flowstate.NATBinding {
	t := &r.target[s.rng.IntN(len(r.target))]
	ip := t.ipFrom + uint32(s.rng.Uint64N(uint64(t.ipTo-t.ipFrom)+1))
	port := dp
	if proto != packet.IPProtoICMP && t.portTo != 0 {
		port = t.portFrom + uint16(s.rng.IntN(int(t.portTo-t.portFrom)+1))
	}
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], ip)
	return flowstate.NATBinding{IP: addr4(a), Port: port}
}

// allocSNAT picks a source address and port whose reverse key towards this
// destination is free, so that no (NAT address, port) is used twice towards
// the same (dst, dst port); a port may serve several destinations, as in
// MidoNet. The search starts at a random target, address and port and
// probes linearly. ICMP keeps its identifier, and a target without a port
// range the source port.
//
// With leased port blocks (SNATBlockReader), ports come only from the
// blocks this host holds: when none of them has a free port, allocSNAT
// fails with s.natWait set and res.NATLease naming an address to lease a
// block of.
func (s *Simulator) allocSNAT(r *rule, dst [4]byte, sp, dp uint16, proto uint8) (flowstate.NATBinding, bool) {
	rev := flowstate.NATKey{Type: flowstate.RevSNAT, Src: addr4(dst), SrcPort: dp, Proto: proto, Device: s.device}
	leases, _ := s.state.(SNATBlockReader)
	var want NATLeaseRequest // the first leased address found full
	t0 := s.rng.IntN(len(r.target))
	for ti := range r.target {
		t := &r.target[(t0+ti)%len(r.target)]
		nIPs := uint64(t.ipTo-t.ipFrom) + 1
		ip0 := s.rng.Uint64N(nIPs)
		lo, hi := t.portFrom, t.portTo
		fixed := proto == packet.IPProtoICMP || (lo == 0 && hi == 0)
		if fixed {
			lo, hi = sp, sp
		}
		if lo == 0 {
			lo = 1
		}
		for i := range nIPs {
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], t.ipFrom+uint32((ip0+i)%nIPs))
			rev.Dst = addr4(a)
			if !fixed && leases != nil {
				blocks, leasing := leases.SNATBlocks(s.device, rev.Dst)
				if leasing {
					if s.allocInBlocks(&rev, blocks, lo, hi) {
						return flowstate.NATBinding{IP: rev.Dst, Port: rev.DstPort}, true
					}
					if !want.IP.IsValid() {
						want = NATLeaseRequest{Device: s.device, IP: rev.Dst, PortFrom: lo, PortTo: hi}
					}
					continue
				}
			}
			if s.allocInRange(&rev, lo, hi) {
				return flowstate.NATBinding{IP: rev.Dst, Port: rev.DstPort}, true
			}
		}
	}
	if want.IP.IsValid() {
		s.natWait, s.res.NATLease = true, want
	}
	return flowstate.NATBinding{}, false
}

// allocInRange probes the ports [lo, hi] from a random one for a free
// reverse key, leaving it in rev.DstPort.
func (s *Simulator) allocInRange(rev *flowstate.NATKey, lo, hi uint16) bool {
	n := uint32(hi-lo) + 1
	p0 := uint32(s.rng.Uint64N(uint64(n)))
	for j := range n {
		rev.DstPort = lo + uint16((p0+j)%n)
		if s.natKeyFree(*rev) {
			return true
		}
	}
	return false
}

// allocInBlocks probes the ports of [lo, hi] inside the held blocks for a
// free reverse key, leaving it in rev.DstPort: on from the last port this
// simulator gave out for the address to the end of its block (round-robin,
// as MidoNet hands out a block's ports), then from a random block and
// port. Blocks whose every port is in use (towards any destination)
// are probed only when the others have no free port: a busy address holds
// mostly full blocks, and probing each of their ports made most of a
// connection's simulation.
func (s *Simulator) allocInBlocks(rev *flowstate.NATKey, blocks flowstate.HeldBlocks, lo, hi uint16) bool {
	if blocks.Set == nil {
		return false
	}
	share, shares := uint32(0), uint32(1)
	if ps, ok := s.state.(SNATPortSharer); ok {
		i, n := ps.SNATPortShare()
		share, shares = uint32(i), uint32(max(n, 1))
	}
	addr := flowstate.NATAddr{Device: s.device, IP: rev.Dst}
	probe := func(p uint32) bool {
		if p < uint32(lo) || p > uint32(hi) || p%shares != share {
			return false
		}
		rev.DstPort = uint16(p)
		if !s.natKeyFree(*rev) {
			return false
		}
		if s.natNext == nil {
			s.natNext = make(map[flowstate.NATAddr]uint16)
		}
		s.natNext[addr] = uint16(p + 1)
		return true
	}
	// Round-robin: on from the last port given out, to the end of its
	// block.
	if next, ok := s.natNext[addr]; ok {
		if b := flowstate.Block(next); blocks.Set.Has(b) && blocks.Used(b) < flowstate.BlockPorts {
			for p := uint32(next); p < uint32(b+1)*flowstate.BlockPorts; p++ {
				if probe(p) {
					return true
				}
			}
		}
	}
	first, last := flowstate.Block(lo), flowstate.Block(hi)
	b0, ok := blocks.Set.Next(first + uint16(s.rng.IntN(int(last-first)+1)))
	if !ok {
		return false
	}
	off := uint32(s.rng.IntN(flowstate.BlockPorts))
	for _, full := range [2]bool{false, true} {
		// Next wraps around: visit each held block once, from b0.
		for b := b0; ; {
			if b >= first && b <= last && (blocks.Used(b) >= flowstate.BlockPorts) == full {
				base := uint32(b) * flowstate.BlockPorts
				for j := range uint32(flowstate.BlockPorts) {
					if probe(base + (off+j)%flowstate.BlockPorts) {
						return true
					}
				}
			}
			if b, _ = blocks.Set.Next((b + 1) % flowstate.NumBlocks); b == b0 {
				break
			}
		}
	}
	return false
}

// reverseNAT undoes a translation for return traffic when the device holds
// a reverse key for the packet; for an ICMP error the key comes from the
// quoted header, and both the outer and the quoted addresses are restored.
func (s *Simulator) reverseNAT(typ flowstate.NATKeyType) bool {
	if s.isICMPError() {
		return s.icmpErrorNAT(typ)
	}
	proto, sp, dp, ok := s.natTuple()
	if !ok {
		return false
	}
	k := flowstate.NATKey{Type: typ, Src: addr4(s.nwSrc()), Dst: addr4(s.nwDst()), SrcPort: sp, DstPort: dp, Proto: proto, Device: s.device}
	b, found := s.lookupNAT(k)
	if !found {
		return false
	}
	ports := proto != packet.IPProtoICMP
	if typ == flowstate.RevSNAT {
		s.setNwDst(b.IP.As4())
		if ports {
			s.setTpDst(b.Port)
		}
		s.nwDstRewritten = true
	} else {
		s.setNwSrc(b.IP.As4())
		if ports {
			s.setTpSrc(b.Port)
		}
	}
	if s.tracing {
		s.trace("device", s.device, "nat", typ.String()+" "+k.String()+" → "+b.IP.String()+":"+itoa(int(b.Port)))
	}
	return true
}

// icmpErrorNAT translates an ICMP error about a translated connection. The
// quoted datagram is a packet of the connection travelling the other way,
// so its reversed tuple is the key: a reverse SNAT or forward DNAT key
// restores the quoted source and the outer destination, a reverse DNAT or
// forward SNAT key the quoted destination and the outer source.
func (s *Simulator) icmpErrorNAT(typ flowstate.NATKeyType) bool {
	d := s.icmpData()
	if !d.Valid {
		return false
	}
	k := flowstate.NATKey{Type: typ, Src: addr4(d.Dst), Dst: addr4(d.Src), SrcPort: d.DstPort, DstPort: d.SrcPort, Proto: d.Proto, Device: s.device}
	b, found := s.lookupNAT(k)
	if !found {
		return false
	}
	ip := b.IP.As4()
	ports := d.Proto != packet.IPProtoICMP
	if typ == flowstate.RevSNAT || typ == flowstate.FwdDNAT {
		if s.nwDst() == d.Src {
			s.setNwDst(ip)
			s.nwDstRewritten = true
		}
		d.Src = ip
		if ports {
			d.SrcPort = b.Port
		}
	} else {
		if s.nwSrc() == d.Dst {
			s.setNwSrc(ip)
		}
		d.Dst = ip
		if ports {
			d.DstPort = b.Port
		}
	}
	s.setICMPData(d)
	if s.tracing {
		s.trace("device", s.device, "nat", typ.String()+" (icmp error) "+k.String())
	}
	return true
}
