package sim

import (
	"encoding/binary"

	"github.com/midonet/midonet/internal/packet"
)

const (
	arpOpRequest = 1
	arpOpReply   = 2

	// generatedTTL is the TTL of packets a router originates.
	generatedTTL = 64
	// fragNeededMTU is the next-hop MTU a router reports when its inbound
	// filter drops a first fragment: a 1500-byte underlay minus the VXLAN
	// overlay's 50 bytes, what DHCP advertises to VMs.
	fragNeededMTU = 1450
)

// alloc returns n bytes of the generated-packet scratch buffer. When the
// buffer is full a larger one replaces it; frames already handed out keep
// the old array alive, so their slices stay valid.
func (s *Simulator) alloc(n int) []byte {
	if cap(s.genBuf)-len(s.genBuf) < n {
		s.genBuf = make([]byte, 0, max(2*cap(s.genBuf), n+1024))
	}
	l := len(s.genBuf)
	s.genBuf = s.genBuf[:l+n]
	b := s.genBuf[l : l+n : l+n]
	clear(b)
	return b
}

func (s *Simulator) generate(p *port, frame []byte) {
	s.res.Generated = append(s.res.Generated, Generated{Port: p.id, Frame: frame})
}

// buildARP writes an Ethernet/IPv4 ARP frame from sha to ethDst.
func (s *Simulator) buildARP(op uint16, sha [6]byte, spa [4]byte, tha [6]byte, tpa [4]byte, ethDst [6]byte) []byte {
	b := s.alloc(packet.EthernetHeaderLen + packet.ARPIPv4Len)
	packet.Ethernet(b).Encode(packet.EthernetFields{Dst: ethDst, Src: sha, EtherType: packet.EtherTypeARP})
	packet.ARP(b[packet.EthernetHeaderLen:]).Encode(packet.ARPFields{Op: op, SHA: sha, SPA: spa, THA: tha, TPA: tpa})
	return b
}

// quotedDatagram returns the IPv4 header and first 8 payload bytes of the
// packet as it was before routing (s.preRouting), for an ICMP error: copied
// from the frame when there is one, with the addresses, TTL and ports the
// packet had at the router; synthesized from the match otherwise.
func (s *Simulator) quotedDatagram() []byte {
	m := &s.preRouting
	var p packet.Parsed
	if s.pkt.Frame != nil {
		p.Decode(s.pkt.Frame)
	}
	hl := packet.IPv4MinHeaderLen
	if p.IPVersion == 4 {
		hl = p.IPHeaderLen
	}
	q := s.alloc(hl + 8)
	if p.IPVersion == 4 {
		copy(q, s.pkt.Frame[p.L3Off:min(p.IPEnd, p.L3Off+hl+8)])
	} else {
		packet.IPv4(q).Encode(packet.IPv4Fields{TOS: m.NwTOS, TotalLen: uint16(hl + 8), TTL: m.NwTTL,
			Protocol: m.NwProto, Src: m.NwSrc, Dst: m.NwDst})
	}
	ip := packet.IPv4(q)
	copy(q[12:16], m.NwSrc[:])
	copy(q[16:20], m.NwDst[:])
	q[8] = m.NwTTL
	if m.NwFrag != packet.FragLater {
		switch m.NwProto {
		case packet.IPProtoTCP, packet.IPProtoUDP:
			binary.BigEndian.PutUint16(q[hl:], m.TpSrc)
			binary.BigEndian.PutUint16(q[hl+2:], m.TpDst)
		}
	}
	ip.SetChecksum(0)
	ip.SetChecksum(ip.CalculateChecksum())
	return q
}

// canSendICMPError reports whether a router may answer the pre-routing
// packet with an ICMP error: never for non-IPv4, ICMP errors, multicast or
// broadcast destinations, broadcast sources, or later fragments (RFC 1812
// 4.3.2.7, as MidoNet's Icmp.scala).
func (s *Simulator) canSendICMPError(in *port) bool {
	m := &s.preRouting
	s.seen |= FieldEthType | FieldEthDst | FieldNwSrc | FieldNwDst | FieldNwProto | FieldNwFrag
	if m.EthType != packet.EtherTypeIPv4 || isMulticastMAC(m.EthDst) || m.NwFrag == packet.FragLater {
		return false
	}
	if m.NwProto == packet.IPProtoICMP {
		s.seen |= FieldTpSrc
		switch uint8(m.TpSrc) {
		case packet.ICMPDestUnreachable, packet.ICMPTimeExceeded, packet.ICMPParameterProblem:
			return false
		}
	}
	dst, src := u32(m.NwDst), u32(m.NwSrc)
	if dst>>28 == 0xe || dst == 0xffffffff || src == 0xffffffff || src>>28 == 0xe {
		return false
	}
	if in.hasAddr && in.subnet.bits < 31 && dst == in.subnet.addr|^uint32(0)>>in.subnet.bits {
		return false
	}
	return true
}

// icmpError generates an ICMP error about the pre-routing packet, sent back
// out of router port in to the packet's sender.
func (s *Simulator) icmpError(in *port, typ, code uint8) {
	if !in.hasAddr || !s.canSendICMPError(in) {
		return
	}
	m := &s.preRouting
	quoted := s.quotedDatagram()
	const hdr = packet.EthernetHeaderLen + packet.IPv4MinHeaderLen + packet.ICMPv4HeaderLen
	b := s.alloc(hdr + len(quoted))
	packet.Ethernet(b).Encode(packet.EthernetFields{Dst: m.EthSrc, Src: in.mac, EtherType: packet.EtherTypeIPv4})
	ipLen := packet.IPv4MinHeaderLen + packet.ICMPv4HeaderLen + len(quoted)
	packet.IPv4(b[packet.EthernetHeaderLen:]).Encode(packet.IPv4Fields{TotalLen: uint16(ipLen), TTL: generatedTTL,
		Protocol: packet.IPProtoICMP, Src: in.addr, Dst: m.NwSrc})
	icmp := packet.ICMPv4(b[packet.EthernetHeaderLen+packet.IPv4MinHeaderLen:])
	icmp[0], icmp[1] = typ, code
	if typ == packet.ICMPDestUnreachable && code == packet.ICMPCodeFragNeeded {
		binary.BigEndian.PutUint16(icmp[6:], fragNeededMTU)
	}
	copy(icmp[packet.ICMPv4HeaderLen:], quoted)
	icmp.SetChecksum(packet.Checksum(icmp, 0))
	s.generate(in, b)
	if s.tracing {
		s.trace("router", in.device, "icmp error", "type "+itoa(int(typ))+" code "+itoa(int(code))+" to "+addr4(m.NwSrc).String())
	}
}

// echoReply generates the reply to an ICMP echo request addressed to router
// port in (or another of the router's addresses), sent back out of in.
func (s *Simulator) echoReply(in *port) {
	m := &s.preRouting
	var p packet.Parsed
	if s.pkt.Frame != nil {
		p.Decode(s.pkt.Frame)
	}
	var icmpIn []byte
	if p.Layer == packet.Layer4 && p.IPVersion == 4 && p.IPProto == packet.IPProtoICMP {
		icmpIn = s.pkt.Frame[p.L4Off:p.IPEnd]
	}
	icmpLen := packet.ICMPv4HeaderLen
	if icmpIn != nil {
		icmpLen = len(icmpIn)
	}
	b := s.alloc(packet.EthernetHeaderLen + packet.IPv4MinHeaderLen + icmpLen)
	packet.Ethernet(b).Encode(packet.EthernetFields{Dst: m.EthSrc, Src: in.mac, EtherType: packet.EtherTypeIPv4})
	packet.IPv4(b[packet.EthernetHeaderLen:]).Encode(packet.IPv4Fields{TOS: m.NwTOS,
		TotalLen: uint16(packet.IPv4MinHeaderLen + icmpLen), TTL: generatedTTL,
		Protocol: packet.IPProtoICMP, Src: m.NwDst, Dst: m.NwSrc})
	icmp := packet.ICMPv4(b[packet.EthernetHeaderLen+packet.IPv4MinHeaderLen:])
	if icmpIn != nil {
		copy(icmp, icmpIn)
	} else {
		binary.BigEndian.PutUint16(icmp[4:], m.ICMPID)
	}
	icmp[0], icmp[1] = packet.ICMPEchoReply, 0
	icmp.SetChecksum(0)
	icmp.SetChecksum(packet.Checksum(icmp, 0))
	s.generate(in, b)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
