package packet

import (
	"encoding/binary"
	"net/netip"
)

// Header rewrites. Each method changes the decoded frame in place, patches
// the affected checksums incrementally (RFC 1624) rather than recomputing
// them, keeps the Parsed fields in step, and does not allocate. A method
// reports false, changing nothing, when the frame lacks the header it
// rewrites.

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

// SetIPv4Src sets the IPv4 source address, updating the header checksum and
// the TCP or UDP checksum, whose pseudo header covers the address.
func (p *Parsed) SetIPv4Src(a [4]byte) bool {
	if p.IPVersion != 4 {
		return false
	}
	p.setIPv4Addr(p.L3Off+12, a)
	p.Src = netip.AddrFrom4(a)
	return true
}

// SetIPv4Dst sets the IPv4 destination address, updating the header
// checksum and the TCP or UDP checksum.
func (p *Parsed) SetIPv4Dst(a [4]byte) bool {
	if p.IPVersion != 4 {
		return false
	}
	p.setIPv4Addr(p.L3Off+16, a)
	p.Dst = netip.AddrFrom4(a)
	return true
}

func (p *Parsed) setIPv4Addr(off int, a [4]byte) {
	old := [4]byte(p.buf[off : off+4])
	copy(p.buf[off:off+4], a[:])
	ip := IPv4(p.buf[p.L3Off:])
	ip.SetChecksum(ChecksumUpdate4(ip.Checksum(), old, a))
	if off := p.l4ChecksumOff(); off != 0 {
		p.patchL4Checksum(off, ChecksumUpdate4(binary.BigEndian.Uint16(p.buf[off:]), old, a))
	}
}

// l4ChecksumOff returns the offset of a TCP or UDP checksum field covering
// a pseudo header, or 0 if the frame has none (not TCP/UDP, a later
// fragment, or a truncated header).
func (p *Parsed) l4ChecksumOff() int {
	if p.Layer < Layer4 {
		return 0
	}
	switch p.IPProto {
	case IPProtoTCP:
		return p.L4Off + 16
	case IPProtoUDP:
		return p.L4Off + 6
	}
	return 0
}

// patchL4Checksum stores an incrementally updated L4 checksum at off,
// applying UDP's rule: a zero field means "no checksum" and stays zero, and
// a computed zero is sent as 0xffff.
func (p *Parsed) patchL4Checksum(off int, sum uint16) {
	if p.IPProto == IPProtoUDP {
		if binary.BigEndian.Uint16(p.buf[off:]) == 0 {
			return
		}
		if sum == 0 {
			sum = 0xffff
		}
	}
	binary.BigEndian.PutUint16(p.buf[off:], sum)
}

// SetTOS sets the IPv4 TOS byte (updating the header checksum) or the IPv6
// traffic class.
func (p *Parsed) SetTOS(tos uint8) bool {
	switch p.IPVersion {
	case 4:
		p.setIPv4Byte(p.L3Off+1, tos)
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
		p.setIPv4Byte(p.L3Off+8, ttl)
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

// setIPv4Byte sets the byte at off in the IPv4 header and patches the header
// checksum through the 16-bit word holding it.
func (p *Parsed) setIPv4Byte(off int, v uint8) {
	w := off - (off-p.L3Off)&1 // the checksummed word starts at an even header offset
	old := binary.BigEndian.Uint16(p.buf[w:])
	p.buf[off] = v
	ip := IPv4(p.buf[p.L3Off:])
	ip.SetChecksum(ChecksumUpdate16(ip.Checksum(), old, binary.BigEndian.Uint16(p.buf[w:])))
}

// SetSrcPort sets the TCP or UDP source port, updating its checksum.
func (p *Parsed) SetSrcPort(port uint16) bool {
	if !p.setPort(0, port) {
		return false
	}
	p.SrcPort = port
	return true
}

// SetDstPort sets the TCP or UDP destination port, updating its checksum.
func (p *Parsed) SetDstPort(port uint16) bool {
	if !p.setPort(2, port) {
		return false
	}
	p.DstPort = port
	return true
}

func (p *Parsed) setPort(rel int, port uint16) bool {
	csum := p.l4ChecksumOff()
	if csum == 0 {
		return false
	}
	off := p.L4Off + rel
	old := binary.BigEndian.Uint16(p.buf[off:])
	binary.BigEndian.PutUint16(p.buf[off:], port)
	p.patchL4Checksum(csum, ChecksumUpdate16(binary.BigEndian.Uint16(p.buf[csum:]), old, port))
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
