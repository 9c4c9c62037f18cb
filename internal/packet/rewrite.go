package packet

import (
	"encoding/binary"
	"net/netip"
)

// Header rewrites: one implementation, two ways in. Every rewrite changes
// the frame in place, patches the affected checksums incrementally (RFC
// 1624) rather than recomputing them, leaves a field that already holds
// the value untouched, and does not allocate. A rewrite reports false,
// changing nothing, when the frame lacks the header it rewrites.
//
//   - Parsed's Set* methods rewrite a decoded frame and keep the Parsed
//     fields in step (the agent, the simulation's generated packets).
//   - EthernetSet, IPv4Set and L4Set are the arguments of a datapath's set
//     actions; their Apply methods find the headers of an undecoded frame
//     themselves, as a datapath executing a flow's actions on every packet
//     does, and know about a TCP or UDP checksum left to offload.

// Field-selection bits of the set arguments: only the selected fields
// change.
const (
	SetSrc uint8 = 1 << iota // source address or port
	SetDst                   // destination address or port
	SetTOS                   // IPv4 TOS (DSCP and ECN)
	SetTTL                   // IPv4 TTL
)

// EthernetSet rewrites Ethernet addresses.
type EthernetSet struct {
	Src, Dst [6]byte
	Fields   uint8 // SetSrc | SetDst
}

// IPv4Set rewrites IPv4 fields. Decrementing the TTL is a set of TTL to
// the matched TTL minus one.
type IPv4Set struct {
	Src, Dst [4]byte
	TOS, TTL uint8
	Fields   uint8 // SetSrc | SetDst | SetTOS | SetTTL
}

// L4Set rewrites TCP or UDP ports.
type L4Set struct {
	Src, Dst uint16
	Fields   uint8 // SetSrc | SetDst
}

// L4Checksum says what the TCP or UDP checksum field of a frame holds.
type L4Checksum uint8

const (
	// L4ChecksumComplete: the field holds the checksum (for UDP, 0 means
	// the sender sent none).
	L4ChecksumComplete L4Checksum = iota
	// L4ChecksumPartial: the field holds only the pseudo-header sum, the
	// rest left to offload (CHECKSUM_PARTIAL); rewrites keep it so.
	L4ChecksumPartial
)

// Apply rewrites the selected Ethernet addresses of frame.
func (s *EthernetSet) Apply(frame []byte) bool {
	if len(frame) < EthernetHeaderLen {
		return false
	}
	if s.Fields&SetDst != 0 {
		Ethernet(frame).SetDst(s.Dst)
	}
	if s.Fields&SetSrc != 0 {
		Ethernet(frame).SetSrc(s.Src)
	}
	return true
}

// Apply rewrites the selected IPv4 fields of frame, an Ethernet frame with
// at most one VLAN tag, patching the header checksum and, for an address,
// the TCP or UDP checksum (csum says what it holds).
func (s *IPv4Set) Apply(frame []byte, csum L4Checksum) bool {
	ip, l4 := IPv4Headers(frame)
	if ip == nil {
		return false
	}
	if s.Fields&SetSrc != 0 {
		setIPv4Addr(ip, l4, 12, s.Src, csum)
	}
	if s.Fields&SetDst != 0 {
		setIPv4Addr(ip, l4, 16, s.Dst, csum)
	}
	if s.Fields&SetTOS != 0 {
		setIPv4Byte(ip, 1, s.TOS)
	}
	if s.Fields&SetTTL != 0 {
		setIPv4Byte(ip, 8, s.TTL)
	}
	return true
}

// Apply rewrites the selected ports of frame's TCP or UDP header, whichever
// proto names, patching its checksum (csum says what it holds). It
// reports false if the frame is not IPv4 carrying that protocol with its
// header's checksum field present.
func (s *L4Set) Apply(frame []byte, proto uint8, csum L4Checksum) bool {
	ip, l4 := IPv4Headers(frame)
	if ip == nil || ip.Protocol() != proto {
		// TODO(datapath, 2026-06): IPv6 transport rewrites.
		return false
	}
	if _, ok := l4ChecksumField(proto, l4); !ok {
		return false
	}
	if s.Fields&SetSrc != 0 {
		setL4Port(l4, proto, 0, s.Src, csum)
	}
	if s.Fields&SetDst != 0 {
		setL4Port(l4, proto, 2, s.Dst, csum)
	}
	return true
}

// IPv4Headers finds the IPv4 header of frame, an Ethernet frame with at
// most one VLAN (or QinQ outer) tag, without decoding the rest: ip runs
// from the header to the end of the frame, l4 from the end of the header
// (options included) to the end of the frame, nil for a later fragment.
// ip is nil when the frame is not IPv4 or its header is truncated or
// malformed. Only the header length and version are checked.
func IPv4Headers(frame []byte) (ip IPv4, l4 []byte) {
	if len(frame) < EthernetHeaderLen {
		return nil, nil
	}
	off, et := EthernetHeaderLen, Ethernet(frame).EtherType()
	if et == EtherTypeVLAN || et == EtherTypeQinQ {
		if len(frame) < EthernetHeaderLen+VLANTagLen {
			return nil, nil
		}
		off, et = EthernetHeaderLen+VLANTagLen, VLANTag(frame[EthernetHeaderLen:]).EtherType()
	}
	if et != EtherTypeIPv4 || len(frame) < off+IPv4MinHeaderLen {
		return nil, nil
	}
	ip = IPv4(frame[off:])
	hl := ip.HeaderLen()
	if ip.Version() != 4 || hl < IPv4MinHeaderLen || len(ip) < hl {
		return nil, nil
	}
	if ip.FragmentOffset() != 0 {
		return ip, nil
	}
	return ip, ip[hl:]
}

// l4ChecksumField returns the offset of the checksum field in l4, the
// header of transport proto, when proto is TCP or UDP and the field is
// there.
func l4ChecksumField(proto uint8, l4 []byte) (int, bool) {
	off := 0
	switch proto {
	case IPProtoTCP:
		off = 16
	case IPProtoUDP:
		off = 6
	default:
		return 0, false
	}
	return off, len(l4) >= off+2
}

// setIPv4Addr stores a at ip[off:off+4] (the source or destination
// address), patching the header checksum and the checksum of the TCP or
// UDP header in l4 (nil if none), whose pseudo header covers the address.
func setIPv4Addr(ip IPv4, l4 []byte, off int, a [4]byte, csum L4Checksum) {
	old := [4]byte(ip[off : off+4])
	if old == a {
		return
	}
	copy(ip[off:off+4], a[:])
	ip.SetChecksum(ChecksumUpdate4(ip.Checksum(), old, a))
	proto := ip.Protocol()
	f, ok := l4ChecksumField(proto, l4)
	if !ok {
		return
	}
	c := binary.BigEndian.Uint16(l4[f:])
	if csum == L4ChecksumPartial {
		// The field is the uncomplemented pseudo-header sum: it moves with
		// the address the other way.
		binary.BigEndian.PutUint16(l4[f:], ^ChecksumUpdate4(^c, old, a))
		return
	}
	putL4Checksum(l4[f:], proto, c, ChecksumUpdate4(c, old, a))
}

// setIPv4Byte sets the byte at off in the IPv4 header ip and patches the
// header checksum through the 16-bit word holding it.
func setIPv4Byte(ip IPv4, off int, v uint8) {
	if ip[off] == v {
		return
	}
	w := off &^ 1 // the checksummed word starts at an even header offset
	old := binary.BigEndian.Uint16(ip[w:])
	ip[off] = v
	ip.SetChecksum(ChecksumUpdate16(ip.Checksum(), old, binary.BigEndian.Uint16(ip[w:])))
}

// setL4Port stores port at l4[rel:] (0 source, 2 destination) of a TCP or
// UDP header whose checksum field is present, patching it unless it is
// left to offload (ports are not in the pseudo header it holds).
func setL4Port(l4 []byte, proto uint8, rel int, port uint16, csum L4Checksum) {
	old := binary.BigEndian.Uint16(l4[rel:])
	if old == port {
		return
	}
	binary.BigEndian.PutUint16(l4[rel:], port)
	if csum == L4ChecksumPartial {
		return
	}
	f, _ := l4ChecksumField(proto, l4)
	c := binary.BigEndian.Uint16(l4[f:])
	putL4Checksum(l4[f:], proto, c, ChecksumUpdate16(c, old, port))
}

// putL4Checksum stores an incrementally updated TCP or UDP checksum in
// field, whose value was old, applying UDP's rule: a zero field means "no
// checksum" and stays zero, and a computed zero is sent as 0xffff.
func putL4Checksum(field []byte, proto uint8, old, sum uint16) {
	if proto == IPProtoUDP {
		if old == 0 {
			return
		}
		sum = nonZeroUDP(sum)
	}
	binary.BigEndian.PutUint16(field, sum)
}

// SetEthSrc sets the Ethernet source address.
func (p *Parsed) SetEthSrc(mac [6]byte) bool {
	if p.Layer < Layer2 {
		return false
	}
	Ethernet(p.buf).SetSrc(mac)
	p.EthSrc = mac
	return true
}

// SetEthDst sets the Ethernet destination address.
func (p *Parsed) SetEthDst(mac [6]byte) bool {
	if p.Layer < Layer2 {
		return false
	}
	Ethernet(p.buf).SetDst(mac)
	p.EthDst = mac
	return true
}

// l4 returns the TCP or UDP header and payload, nil if the frame has none
// (not TCP/UDP, a later fragment, or a truncated header).
func (p *Parsed) l4() []byte {
	if p.Layer < Layer4 || p.IPProto != IPProtoTCP && p.IPProto != IPProtoUDP {
		return nil
	}
	return p.buf[p.L4Off:p.IPEnd]
}

// SetIPv4Src sets the IPv4 source address, updating the header checksum and
// the TCP or UDP checksum, whose pseudo header covers the address.
func (p *Parsed) SetIPv4Src(a [4]byte) bool {
	if p.IPVersion != 4 {
		return false
	}
	setIPv4Addr(IPv4(p.buf[p.L3Off:]), p.l4(), 12, a, L4ChecksumComplete)
	p.Src = netip.AddrFrom4(a)
	return true
}

// SetIPv4Dst sets the IPv4 destination address, updating the header
// checksum and the TCP or UDP checksum.
func (p *Parsed) SetIPv4Dst(a [4]byte) bool {
	if p.IPVersion != 4 {
		return false
	}
	setIPv4Addr(IPv4(p.buf[p.L3Off:]), p.l4(), 16, a, L4ChecksumComplete)
	p.Dst = netip.AddrFrom4(a)
	return true
}

// SetTOS sets the IPv4 TOS byte (updating the header checksum) or the IPv6
// traffic class.
func (p *Parsed) SetTOS(tos uint8) bool {
	switch p.IPVersion {
	case 4:
		setIPv4Byte(IPv4(p.buf[p.L3Off:]), 1, tos)
	case 6:
		w := binary.BigEndian.Uint16(p.buf[p.L3Off:])
		binary.BigEndian.PutUint16(p.buf[p.L3Off:], w&0xf00f|uint16(tos)<<4)
	default:
		return false
	}
	p.TOS = tos
	return true
}

// SetTTL sets the IPv4 TTL (updating the header checksum) or the IPv6 hop
// limit.
func (p *Parsed) SetTTL(ttl uint8) bool {
	switch p.IPVersion {
	case 4:
		setIPv4Byte(IPv4(p.buf[p.L3Off:]), 8, ttl)
	case 6:
		p.buf[p.L3Off+7] = ttl
	default:
		return false
	}
	p.TTL = ttl
	return true
}

// DecTTL decrements the IPv4 TTL or IPv6 hop limit as a router forwarding
// the packet does. It reports false, changing nothing, when the packet is
// not IP or its TTL is 0 or 1: the router must drop it (and may answer with
// ICMP time exceeded, see AppendICMPTimeExceeded).
func (p *Parsed) DecTTL() bool {
	if p.IPVersion == 0 || p.TTL <= 1 {
		return false
	}
	return p.SetTTL(p.TTL - 1)
}

// SetSrcPort sets the TCP or UDP source port, updating its checksum.
func (p *Parsed) SetSrcPort(port uint16) bool {
	l4 := p.l4()
	if l4 == nil {
		return false
	}
	setL4Port(l4, p.IPProto, 0, port, L4ChecksumComplete)
	p.SrcPort = port
	return true
}

// SetDstPort sets the TCP or UDP destination port, updating its checksum.
func (p *Parsed) SetDstPort(port uint16) bool {
	l4 := p.l4()
	if l4 == nil {
		return false
	}
	setL4Port(l4, p.IPProto, 2, port, L4ChecksumComplete)
	p.DstPort = port
	return true
}

// SetICMPEchoIdent sets the identifier of an ICMPv4 echo request or reply,
// updating the ICMP checksum (the "port" ICMP NAT translates).
func (p *Parsed) SetICMPEchoIdent(id uint16) bool {
	c := p.ICMPv4()
	if c == nil || (p.ICMPType != ICMPEchoRequest && p.ICMPType != ICMPEchoReply) {
		return false
	}
	old := c.Ident()
	binary.BigEndian.PutUint16(c[4:], id)
	c.SetChecksum(ChecksumUpdate16(c.Checksum(), old, id))
	p.ICMPIdent = id
	return true
}

// PushVLAN appends to dst a copy of frame with an 802.1Q tag carrying tci
// inserted after the MAC addresses, and returns the extended slice, as
// append does: it allocates only when dst lacks capacity for len(frame)+4
// more bytes. frame is not modified and must not overlap dst's spare
// capacity. It returns dst unchanged if frame is shorter than an Ethernet
// header. Any Parsed of frame does not describe the result; decode it anew.
func PushVLAN(dst, frame []byte, tci uint16) []byte {
	if len(frame) < EthernetHeaderLen {
		return dst
	}
	dst = append(dst, frame[:12]...)
	dst = binary.BigEndian.AppendUint16(dst, EtherTypeVLAN)
	dst = binary.BigEndian.AppendUint16(dst, tci)
	return append(dst, frame[12:]...)
}

// PushVLANHeadroom inserts an 802.1Q tag carrying tci into the frame
// buf[start:] without copying its payload, using 4 bytes of the headroom
// before start. It returns the tagged frame, buf[start-4:], and true; or
// nil and false when start < 4 or the frame is shorter than an Ethernet
// header. The buffer stays the caller's.
//
//	before: [ headroom ......| dst src | type | payload ]
//	                         ^ start
//	after:  [ headroom | dst src | 8100 tci | type | payload ]
//	                   ^ start-4
func PushVLANHeadroom(buf []byte, start int, tci uint16) ([]byte, bool) {
	if start < VLANTagLen || start > len(buf) || len(buf)-start < EthernetHeaderLen {
		return nil, false
	}
	f := buf[start-VLANTagLen:]
	copy(f[:12], f[VLANTagLen:VLANTagLen+12])
	binary.BigEndian.PutUint16(f[12:], EtherTypeVLAN)
	binary.BigEndian.PutUint16(f[14:], tci)
	return f, true
}

// PopVLAN removes the outer 802.1Q tag of frame in place by moving the MAC
// addresses 4 bytes forward, and returns the untagged frame, frame[4:], and
// true; the first 4 bytes become headroom. It returns frame and false if
// the frame carries no complete tag.
func PopVLAN(frame []byte) ([]byte, bool) {
	if len(frame) < EthernetHeaderLen+VLANTagLen || Ethernet(frame).EtherType() != EtherTypeVLAN {
		return frame, false
	}
	copy(frame[VLANTagLen:VLANTagLen+12], frame[:12])
	return frame[VLANTagLen:], true
}

// Rewrites of the datagram quoted by an ICMPv4 error (Parsed.Quoted), as NAT
// does when the error travels back through a translation: the quoted
// datagram is the original packet, so its source is the error's destination.
// Each updates the quoted IPv4 header checksum, the quoted UDP checksum when
// it is present and non-zero (it lies within the 8 quoted bytes; a TCP
// checksum does not), and the ICMP checksum covering all of them. They
// report false when the frame has no valid quote (QuotedOff is 0), or for
// ports, when the quote is not the start of a TCP or UDP datagram.

// SetQuotedIPv4Src sets the quoted datagram's source address.
func (p *Parsed) SetQuotedIPv4Src(a [4]byte) bool { return p.setQuotedAddr(12, a) }

// SetQuotedIPv4Dst sets the quoted datagram's destination address.
func (p *Parsed) SetQuotedIPv4Dst(a [4]byte) bool { return p.setQuotedAddr(16, a) }

// SetQuotedSrcPort sets the quoted TCP or UDP source port.
func (p *Parsed) SetQuotedSrcPort(port uint16) bool { return p.setQuotedPort(0, port) }

// SetQuotedDstPort sets the quoted TCP or UDP destination port.
func (p *Parsed) SetQuotedDstPort(port uint16) bool { return p.setQuotedPort(2, port) }

func (p *Parsed) setQuotedAddr(rel int, a [4]byte) bool {
	if p.QuotedOff == 0 {
		return false
	}
	q := IPv4(p.buf[p.QuotedOff:])
	icmp := ICMPv4(p.buf[p.L4Off:])
	off := p.QuotedOff + rel
	old := [4]byte(p.buf[off : off+4])
	copy(p.buf[off:off+4], a[:])
	oldQCheck := q.Checksum()
	q.SetChecksum(ChecksumUpdate4(oldQCheck, old, a))
	// Every changed word is at an even offset from the ICMP header, so the
	// ICMP checksum is patched word by word like the others.
	ic := ChecksumUpdate4(icmp.Checksum(), old, a)
	ic = ChecksumUpdate16(ic, oldQCheck, q.Checksum())
	if u := p.quotedUDP(); u != nil && u.Checksum() != 0 {
		oldU := u.Checksum()
		u.SetChecksum(nonZeroUDP(ChecksumUpdate4(oldU, old, a)))
		ic = ChecksumUpdate16(ic, oldU, u.Checksum())
	}
	icmp.SetChecksum(ic)
	return true
}

func (p *Parsed) setQuotedPort(rel int, port uint16) bool {
	if p.QuotedOff == 0 {
		return false
	}
	q := p.Quoted()
	if proto := q.Protocol(); proto != IPProtoTCP && proto != IPProtoUDP || q.FragmentOffset() != 0 {
		return false
	}
	icmp := ICMPv4(p.buf[p.L4Off:])
	l4 := p.QuotedL4()
	old := binary.BigEndian.Uint16(l4[rel:])
	binary.BigEndian.PutUint16(l4[rel:], port)
	ic := ChecksumUpdate16(icmp.Checksum(), old, port)
	if u := p.quotedUDP(); u != nil && u.Checksum() != 0 {
		oldU := u.Checksum()
		u.SetChecksum(nonZeroUDP(ChecksumUpdate16(oldU, old, port)))
		ic = ChecksumUpdate16(ic, oldU, u.Checksum())
	}
	icmp.SetChecksum(ic)
	return true
}

// quotedUDP returns the quoted UDP header, or nil if the quote is not the
// start of a UDP datagram.
func (p *Parsed) quotedUDP() UDP {
	q := p.Quoted()
	if q.Protocol() != IPProtoUDP || q.FragmentOffset() != 0 {
		return nil
	}
	return UDP(p.QuotedL4())
}

// nonZeroUDP maps a computed UDP checksum of zero to 0xffff (RFC 768).
func nonZeroUDP(c uint16) uint16 {
	if c == 0 {
		return 0xffff
	}
	return c
}
