package packet

import (
	"encoding/binary"
	"net/netip"
)

// Layer says how far Parsed.Decode got: each level implies the ones below.
type Layer uint8

const (
	LayerNone Layer = iota // shorter than an Ethernet header: nothing is valid
	Layer2                 // Ethernet (and any 802.1Q tag) decoded; EthType known
	Layer3                 // ARP or a valid IPv4/IPv6 header decoded
	Layer4                 // TCP, UDP or ICMP header decoded
)

// String returns the layer's name.
func (l Layer) String() string {
	switch l {
	case LayerNone:
		return "none"
	case Layer2:
		return "L2"
	case Layer3:
		return "L3"
	case Layer4:
		return "L4"
	}
	return "unknown"
}

// Parsed is a summary of a frame, filled in place by Decode without
// allocating. Fields hold values and offsets into the decoded frame, never
// copies of it. The frame stays owned by the caller; Parsed keeps a
// reference to it, so the frame must not be reused while the Parsed is in
// use. The rewrite methods (SetIPv4Src, DecTTL, ...) modify that frame in
// place.
//
// A field is valid only at the Layer that sets it, as noted per group;
// otherwise it is zero. Malformed or truncated input never panics: decoding
// stops at the last layer that was complete.
type Parsed struct {
	buf []byte

	// Layer is the deepest layer decoded.
	Layer Layer

	// Layer2: always set when Layer >= Layer2.
	EthDst, EthSrc [6]byte
	HasVLAN        bool   // an 802.1Q tag follows the MAC addresses
	VLANTCI        uint16 // the tag's TCI, when HasVLAN
	EthType        uint16 // the ethertype after any tag (0x8100 if the tag is truncated)
	L3Off          int    // offset of the L3 header: 14, or 18 when tagged

	// ARP, when EthType is EtherTypeARP and Layer >= Layer3.
	ARPOp          uint16
	ARPSHA, ARPTHA [6]byte
	ARPSPA, ARPTPA [4]byte

	// IP, when IPVersion is 4 or 6 (then Layer >= Layer3).
	IPVersion   uint8
	Src, Dst    netip.Addr
	IPProto     uint8 // IPv4 protocol; IPv6 upper-layer next header after known extension headers
	TOS         uint8 // IPv4 TOS or IPv6 traffic class
	TTL         uint8 // IPv4 TTL or IPv6 hop limit
	IPHeaderLen int   // IPv4 header incl. options, or 40 plus the walked IPv6 extension headers (clipped to IPEnd)
	IPEnd       int   // offset just past the datagram: by its length field, clipped to the frame
	Frag        uint8 // FragNone, FragFirst or FragLater
	FragOffset  int   // fragment offset in bytes
	IPID        uint16
	// IPChecksumOK reports whether the IPv4 header checksum verified (IPv4 only).
	IPChecksumOK bool

	// L4, when Layer == Layer4. Later fragments (FragLater) have no L4.
	L4Off      int    // offset of the TCP, UDP or ICMP header
	PayloadOff int    // offset of the L4 payload
	SrcPort    uint16 // TCP/UDP
	DstPort    uint16 // TCP/UDP
	TCPFlags   uint8
	ICMPType   uint8 // ICMP or ICMPv6
	ICMPCode   uint8
	ICMPIdent  uint16 // echo request/reply identifier (ICMPv4)
	ICMPSeq    uint16 // echo request/reply sequence number (ICMPv4)
	// QuotedOff is the offset of the IPv4 header quoted by an ICMPv4 error
	// message, or 0. It is set only when the quoted header is valid and is
	// followed by at least 8 bytes (RFC 792), so QuotedL4 reads safely.
	QuotedOff int
}

// Decode fills p from frame, an Ethernet frame, without allocating.
func (p *Parsed) Decode(frame []byte) {
	*p = Parsed{buf: frame}
	if len(frame) < EthernetHeaderLen {
		return
	}
	p.Layer = Layer2
	eth := Ethernet(frame)
	p.EthDst, p.EthSrc = eth.Dst(), eth.Src()
	p.EthType = eth.EtherType()
	p.L3Off = EthernetHeaderLen
	if p.EthType == EtherTypeVLAN {
		if len(frame) < EthernetHeaderLen+VLANTagLen {
			return
		}
		tag := VLANTag(frame[EthernetHeaderLen:])
		p.HasVLAN = true
		p.VLANTCI = tag.TCI()
		p.EthType = tag.EtherType()
		p.L3Off += VLANTagLen
	}
	switch p.EthType {
	case EtherTypeARP:
		p.decodeARP()
	case EtherTypeIPv4:
		p.decodeIPv4()
	case EtherTypeIPv6:
		p.decodeIPv6()
	}
}

func (p *Parsed) decodeARP() {
	a := ARP(p.buf[p.L3Off:])
	if !a.IsValid() {
		return
	}
	p.Layer = Layer3
	p.ARPOp = a.Op()
	p.ARPSHA, p.ARPSPA = a.SHA(), a.SPA()
	p.ARPTHA, p.ARPTPA = a.THA(), a.TPA()
}

func (p *Parsed) decodeIPv4() {
	ip := IPv4(p.buf[p.L3Off:])
	if !ip.IsValid() {
		return
	}
	p.Layer = Layer3
	p.IPVersion = 4
	p.Src, p.Dst = ip.SrcAddr(), ip.DstAddr()
	p.IPProto = ip.Protocol()
	p.TOS = ip.TOS()
	p.TTL = ip.TTL()
	p.IPHeaderLen = ip.HeaderLen()
	p.IPEnd = p.L3Off + min(int(ip.TotalLen()), len(ip))
	p.Frag = ip.FragType()
	p.FragOffset = ip.FragmentOffset()
	p.IPID = ip.ID()
	p.IPChecksumOK = ip.IsChecksumValid()
	if p.Frag == FragLater {
		return
	}
	p.decodeL4(p.L3Off + p.IPHeaderLen)
}

// maxIPv6ExtHeaders bounds the extension-header walk.
const maxIPv6ExtHeaders = 8

// IPv6 extension header types the decoder walks over.
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6DestOpts = 60
)

func (p *Parsed) decodeIPv6() {
	ip := IPv6(p.buf[p.L3Off:])
	if !ip.IsValid() {
		return
	}
	p.Layer = Layer3
	p.IPVersion = 6
	p.Src, p.Dst = netip.AddrFrom16(ip.Src()), netip.AddrFrom16(ip.Dst())
	p.TOS = ip.TrafficClass()
	p.TTL = ip.HopLimit()
	p.IPEnd = len(p.buf)
	if pl := int(ip.PayloadLen()); pl != 0 { // 0 is a jumbogram: use the frame
		p.IPEnd = min(p.L3Off+IPv6HeaderLen+pl, len(p.buf))
	}
	next := ip.NextHeader()
	off := p.L3Off + IPv6HeaderLen
	for range maxIPv6ExtHeaders {
		if next != ipv6HopByHop && next != ipv6Routing && next != ipv6Fragment && next != ipv6DestOpts {
			break
		}
		if off+8 > p.IPEnd {
			// Truncated extension header: the upper layer is unknown.
			p.IPProto, p.IPHeaderLen = next, min(off, p.IPEnd)-p.L3Off
			return
		}
		h := p.buf[off:]
		hlen := (int(h[1]) + 1) * 8
		if next == ipv6Fragment {
			hlen = 8
			fo := binary.BigEndian.Uint16(h[2:])
			p.FragOffset = int(fo &^ 7)
			p.IPID = uint16(binary.BigEndian.Uint32(h[4:]))
			switch {
			case p.FragOffset != 0:
				p.Frag = FragLater
			case fo&1 != 0:
				p.Frag = FragFirst
			}
		}
		next = h[0]
		off += hlen
	}
	p.IPProto = next
	if off > p.IPEnd { // the last extension header overruns the datagram
		p.IPHeaderLen = p.IPEnd - p.L3Off
		return
	}
	p.IPHeaderLen = off - p.L3Off
	if p.Frag == FragLater {
		return
	}
	p.decodeL4(off)
}

// decodeL4 decodes the transport header at off, bounded by p.IPEnd.
func (p *Parsed) decodeL4(off int) {
	l4 := p.buf[off:p.IPEnd]
	switch p.IPProto {
	case IPProtoTCP:
		if len(l4) < TCPMinHeaderLen {
			return
		}
		t := TCP(l4)
		doff := t.DataOffset()
		if doff < TCPMinHeaderLen || doff > len(l4) {
			return
		}
		p.SrcPort, p.DstPort = t.SrcPort(), t.DstPort()
		p.TCPFlags = t.Flags()
		p.PayloadOff = off + doff
	case IPProtoUDP:
		if len(l4) < UDPHeaderLen {
			return
		}
		u := UDP(l4)
		p.SrcPort, p.DstPort = u.SrcPort(), u.DstPort()
		p.PayloadOff = off + UDPHeaderLen
	case IPProtoICMP:
		if p.IPVersion != 4 || len(l4) < ICMPv4HeaderLen {
			return
		}
		c := ICMPv4(l4)
		p.ICMPType, p.ICMPCode = c.Type(), c.Code()
		switch {
		case p.ICMPType == ICMPEchoRequest || p.ICMPType == ICMPEchoReply:
			p.ICMPIdent, p.ICMPSeq = c.Ident(), c.Seq()
		case c.IsError():
			q := c.Quoted()
			if q.IsValid() && len(q) >= q.HeaderLen()+8 {
				p.QuotedOff = off + ICMPv4HeaderLen
			}
		}
		p.PayloadOff = off + ICMPv4HeaderLen
	case IPProtoICMPv6:
		if p.IPVersion != 6 || len(l4) < 4 {
			return
		}
		p.ICMPType, p.ICMPCode = l4[0], l4[1]
		p.PayloadOff = off + 4
	default:
		return
	}
	p.L4Off = off
	p.Layer = Layer4
}

// Frame returns the decoded frame (the caller's buffer, not a copy).
func (p *Parsed) Frame() []byte { return p.buf }

// Ethernet returns a view of the Ethernet header, or nil below Layer2.
func (p *Parsed) Ethernet() Ethernet {
	if p.Layer < Layer2 {
		return nil
	}
	return Ethernet(p.buf[:EthernetHeaderLen])
}

// IPv4 returns a view of the IPv4 datagram (header through IPEnd), or nil
// if the frame is not valid IPv4.
func (p *Parsed) IPv4() IPv4 {
	if p.IPVersion != 4 {
		return nil
	}
	return IPv4(p.buf[p.L3Off:p.IPEnd])
}

// IPv6 returns a view of the IPv6 datagram, or nil if the frame is not
// valid IPv6.
func (p *Parsed) IPv6() IPv6 {
	if p.IPVersion != 6 {
		return nil
	}
	return IPv6(p.buf[p.L3Off:p.IPEnd])
}

// TCP returns a view of the TCP segment, or nil.
func (p *Parsed) TCP() TCP {
	if p.Layer < Layer4 || p.IPProto != IPProtoTCP {
		return nil
	}
	return TCP(p.buf[p.L4Off:p.IPEnd])
}

// UDP returns a view of the UDP datagram, or nil.
func (p *Parsed) UDP() UDP {
	if p.Layer < Layer4 || p.IPProto != IPProtoUDP {
		return nil
	}
	return UDP(p.buf[p.L4Off:p.IPEnd])
}

// ICMPv4 returns a view of the ICMPv4 message, or nil.
func (p *Parsed) ICMPv4() ICMPv4 {
	if p.Layer < Layer4 || p.IPVersion != 4 || p.IPProto != IPProtoICMP {
		return nil
	}
	return ICMPv4(p.buf[p.L4Off:p.IPEnd])
}

// Quoted returns the IPv4 datagram quoted by an ICMPv4 error, or nil when
// QuotedOff is 0. Its header is valid and at least 8 bytes of its payload
// (the quoted ports, for TCP and UDP) follow.
func (p *Parsed) Quoted() IPv4 {
	if p.QuotedOff == 0 {
		return nil
	}
	return IPv4(p.buf[p.QuotedOff:p.IPEnd])
}

// QuotedL4 returns the first 8 bytes of the quoted datagram's payload (TCP
// or UDP ports, or an ICMP header), or nil when QuotedOff is 0.
func (p *Parsed) QuotedL4() []byte {
	q := p.Quoted()
	if q == nil {
		return nil
	}
	hl := q.HeaderLen()
	return q[hl : hl+8]
}

// Payload returns the L4 payload (up to IPEnd, excluding Ethernet padding),
// or nil below Layer4.
func (p *Parsed) Payload() []byte {
	if p.Layer < Layer4 {
		return nil
	}
	return p.buf[p.PayloadOff:p.IPEnd]
}

// VXLAN reports whether the frame is a VXLAN packet to UDP destination port
// port (VXLANPort, or an overlay's configured port), and if so returns its
// VNI and the inner Ethernet frame, a sub-slice of the frame.
func (p *Parsed) VXLAN(port uint16) (vni uint32, inner []byte, ok bool) {
	if p.Layer < Layer4 || p.IPProto != IPProtoUDP || p.DstPort != port {
		return 0, nil, false
	}
	v := VXLAN(p.buf[p.PayloadOff:p.IPEnd])
	if !v.IsValid() {
		return 0, nil, false
	}
	return v.VNI(), p.buf[p.PayloadOff+VXLANHeaderLen : p.IPEnd], true
}
