package packet

import (
	"encoding/binary"
	"slices"
)

// Builders append a complete frame to a caller's buffer and return the
// extended slice, as append does: they allocate only when dst lacks the
// capacity, and never keep a reference to dst or their inputs.

// BroadcastMAC is the Ethernet broadcast address.
var BroadcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// DefaultTTL is the TTL of IPv4 packets the builders originate when the
// caller leaves it zero.
const DefaultTTL uint8 = 64

// grow extends dst by n bytes and returns the whole slice and the new tail.
func grow(dst []byte, n int) ([]byte, []byte) {
	dst = slices.Grow(dst, n)
	l := len(dst)
	dst = dst[:l+n]
	return dst, dst[l:]
}

func appendARP(dst []byte, ethDst [6]byte, f ARPFields) []byte {
	dst, b := grow(dst, EthernetHeaderLen+ARPIPv4Len)
	Ethernet(b).Encode(EthernetFields{Dst: ethDst, Src: f.SHA, EtherType: EtherTypeARP})
	ARP(b[EthernetHeaderLen:]).Encode(f)
	return dst
}

// AppendARPRequest appends a broadcast ARP request from srcMAC/srcIP asking
// for the hardware address of targetIP.
func AppendARPRequest(dst []byte, srcMAC [6]byte, srcIP, targetIP [4]byte) []byte {
	return appendARP(dst, BroadcastMAC, ARPFields{Op: ARPRequest, SHA: srcMAC, SPA: srcIP, TPA: targetIP})
}

// AppendARPReply appends a unicast ARP reply telling dstMAC/dstIP (the
// requester) that srcIP is at srcMAC.
func AppendARPReply(dst []byte, srcMAC [6]byte, srcIP [4]byte, dstMAC [6]byte, dstIP [4]byte) []byte {
	return appendARP(dst, dstMAC, ARPFields{Op: ARPReply, SHA: srcMAC, SPA: srcIP, THA: dstMAC, TPA: dstIP})
}

// AppendGratuitousARP appends a broadcast gratuitous ARP announcing that ip
// is at mac: a request whose sender and target protocol addresses are both
// ip (RFC 5227 ARP announcement).
func AppendGratuitousARP(dst []byte, mac [6]byte, ip [4]byte) []byte {
	return appendARP(dst, BroadcastMAC, ARPFields{Op: ARPRequest, SHA: mac, SPA: ip, TPA: ip})
}

// appendL2 appends an Ethernet header (with p's VLAN tag, if any) with the
// given addresses and ethertype IPv4.
func appendL2(dst []byte, p *Parsed, ethSrc, ethDst [6]byte) []byte {
	dst = append(dst, ethDst[:]...)
	dst = append(dst, ethSrc[:]...)
	if p.HasVLAN {
		dst = binary.BigEndian.AppendUint16(dst, EtherTypeVLAN)
		dst = binary.BigEndian.AppendUint16(dst, p.VLANTCI)
	}
	return binary.BigEndian.AppendUint16(dst, EtherTypeIPv4)
}

// AppendICMPEchoReply appends the echo reply to the decoded echo request
// req: addresses swapped at both layers, any VLAN tag kept, a fresh IPv4
// header without options and TTL DefaultTTL, and the request's identifier,
// sequence number and data. It reports false, appending nothing, if req is
// not a complete, unfragmented ICMPv4 echo request.
func AppendICMPEchoReply(dst []byte, req *Parsed) ([]byte, bool) {
	icmp := req.ICMPv4()
	if icmp == nil || req.ICMPType != ICMPEchoRequest || req.Frag != FragNone {
		return dst, false
	}
	dst = appendL2(dst, req, req.EthDst, req.EthSrc)
	dst, b := grow(dst, IPv4MinHeaderLen+len(icmp))
	IPv4(b).Encode(IPv4Fields{TotalLen: uint16(len(b)), TTL: DefaultTTL, Protocol: IPProtoICMP,
		Src: req.Dst.As4(), Dst: req.Src.As4(), TOS: req.TOS})
	c := ICMPv4(b[IPv4MinHeaderLen:])
	copy(c, icmp)
	c[0], c[1] = ICMPEchoReply, 0
	c.SetChecksum(0)
	c.SetChecksum(Checksum(c, 0))
	return dst, true
}

// ICMPErrorFields says who sends an ICMP error: the router port's MAC and
// IPv4 address, the next hop's MAC (usually the offending frame's source
// MAC), and the TTL (DefaultTTL when zero).
type ICMPErrorFields struct {
	EthSrc, EthDst [6]byte
	Src            [4]byte
	TTL            uint8
}

// AppendICMPUnreachable appends a destination-unreachable message with
// code (ICMPCodeNetUnreachable, ICMPCodeHostUnreachable,
// ICMPCodePortUnreachable, ICMPCodeAdminProhibited, or ICMPCodeFragNeeded
// with the next-hop mtu; mtu is ignored for other codes) about the decoded
// datagram orig. See AppendICMPError for what is quoted and when no message
// may be sent.
func AppendICMPUnreachable(dst []byte, orig *Parsed, f ICMPErrorFields, code uint8, mtu uint16) ([]byte, bool) {
	if code != ICMPCodeFragNeeded {
		mtu = 0
	}
	return AppendICMPError(dst, orig, f, ICMPDestUnreachable, code, uint32(mtu))
}

// AppendICMPTimeExceeded appends a time-exceeded (TTL exceeded in transit)
// message about the decoded datagram orig; see AppendICMPError.
func AppendICMPTimeExceeded(dst []byte, orig *Parsed, f ICMPErrorFields) ([]byte, bool) {
	return AppendICMPError(dst, orig, f, ICMPTimeExceeded, ICMPCodeTTLExceeded, 0)
}

// AppendICMPError appends an ICMPv4 error of type typ and code to orig's
// sender: its 4-byte "rest of header" is rest (the next-hop MTU in the low
// 16 bits for fragmentation needed), followed by orig's IPv4 header,
// options included, and the first 8 bytes of its payload (fewer if it has
// fewer). Any VLAN tag of orig is kept.
//
// Following RFC 1122 section 3.2.2, it reports false and appends nothing
// when orig is not IPv4, is itself an ICMP error, is a later fragment, was
// sent to an Ethernet group (multicast or broadcast) address, or was sent
// from or to an unspecified, limited-broadcast or multicast IPv4 address.
// Subnet broadcasts depend on the topology: the caller checks those.
func AppendICMPError(dst []byte, orig *Parsed, f ICMPErrorFields, typ, code uint8, rest uint32) ([]byte, bool) {
	ip := orig.IPv4()
	if ip == nil || orig.Frag == FragLater || orig.EthDst[0]&1 != 0 {
		return dst, false
	}
	if orig.IPProto == IPProtoICMP {
		if c := orig.ICMPv4(); c == nil || c.IsError() {
			return dst, false // an error, or a truncated message that might be one
		}
	}
	src, origDst := ip.Src(), ip.Dst()
	if !isUnicast4(src) || !isUnicast4(origDst) {
		return dst, false
	}
	quoteLen := min(orig.IPHeaderLen+8, len(ip))
	ttl := f.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	dst = appendL2(dst, orig, f.EthSrc, f.EthDst)
	total := IPv4MinHeaderLen + ICMPv4HeaderLen + quoteLen
	dst, b := grow(dst, total)
	IPv4(b).Encode(IPv4Fields{TotalLen: uint16(total), TTL: ttl, Protocol: IPProtoICMP, Src: f.Src, Dst: src})
	c := ICMPv4(b[IPv4MinHeaderLen:])
	c[0], c[1] = typ, code
	binary.BigEndian.PutUint32(c[4:], rest)
	copy(c[ICMPv4HeaderLen:], ip[:quoteLen])
	c.SetChecksum(0)
	c.SetChecksum(Checksum(c, 0))
	return dst, true
}

// isUnicast4 reports whether a is usable as a unicast IPv4 address: not
// unspecified, limited broadcast, or multicast (224.0.0.0/4).
func isUnicast4(a [4]byte) bool {
	return a != [4]byte{} && a != [4]byte{255, 255, 255, 255} && a[0]&0xf0 != 0xe0
}

// UDP4Fields describes the outer Ethernet, IPv4 and UDP headers that
// AppendIPv4UDP and the VXLAN encapsulators write. The IPv4 header has no
// options; TTL DefaultTTL is used when zero.
type UDP4Fields struct {
	EthSrc, EthDst   [6]byte
	Src, Dst         [4]byte
	TOS, TTL         uint8
	ID               uint16
	DontFragment     bool
	SrcPort, DstPort uint16
	// Checksum asks for a UDP checksum; otherwise the field is zero, as
	// RFC 7348 recommends for VXLAN over IPv4.
	Checksum bool
}

// UDP4HeadersLen is the length of the Ethernet, IPv4 and UDP headers written
// by AppendIPv4UDP.
const UDP4HeadersLen = EthernetHeaderLen + IPv4MinHeaderLen + UDPHeaderLen

// AppendIPv4UDP appends an Ethernet/IPv4/UDP frame carrying payload, with
// correct lengths and checksums.
func AppendIPv4UDP(dst []byte, f UDP4Fields, payload []byte) []byte {
	dst, b := grow(dst, UDP4HeadersLen+len(payload))
	copy(b[UDP4HeadersLen:], payload)
	writeUDP4Headers(b, f)
	return dst
}

// writeUDP4Headers writes the headers into the first UDP4HeadersLen bytes of
// frame, whose remainder is the UDP payload, already in place.
func writeUDP4Headers(frame []byte, f UDP4Fields) {
	Ethernet(frame).Encode(EthernetFields{Dst: f.EthDst, Src: f.EthSrc, EtherType: EtherTypeIPv4})
	ttl := f.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	var flags uint16
	if f.DontFragment {
		flags = IPv4FlagDontFragment
	}
	ipLen := len(frame) - EthernetHeaderLen
	IPv4(frame[EthernetHeaderLen:]).Encode(IPv4Fields{TOS: f.TOS, TotalLen: uint16(ipLen), ID: f.ID, Flags: flags,
		TTL: ttl, Protocol: IPProtoUDP, Src: f.Src, Dst: f.Dst})
	u := UDP(frame[EthernetHeaderLen+IPv4MinHeaderLen:])
	udpLen := uint16(len(u))
	u.Encode(UDPFields{SrcPort: f.SrcPort, DstPort: f.DstPort, Length: udpLen})
	if f.Checksum {
		c := Checksum(u, PseudoHeaderSum4(f.Src, f.Dst, IPProtoUDP, udpLen))
		if c == 0 {
			c = 0xffff
		}
		u.SetChecksum(c)
	}
}

// VXLANEncapLen is the number of bytes VXLAN encapsulation adds in front of
// an inner frame: outer Ethernet, IPv4, UDP and VXLAN headers.
const VXLANEncapLen = UDP4HeadersLen + VXLANHeaderLen

// VXLANSourcePort maps a flow hash (such as FlowKey.Hash of the inner frame)
// to a UDP source port in the dynamic range 49152-65535, so that each inner
// flow keeps one outer port and ECMP in the underlay spreads flows (RFC 7348
// section 5). f.DstPort 0 in the encapsulators means VXLANPort.
func VXLANSourcePort(hash uint32) uint16 {
	h := hash ^ hash>>16
	return 0xc000 | uint16(h)&0x3fff
}

// AppendVXLAN appends inner, an Ethernet frame, encapsulated in outer
// Ethernet/IPv4/UDP/VXLAN headers with network identifier vni. f.DstPort
// 0 means VXLANPort; f.SrcPort is normally VXLANSourcePort of a flow hash.
func AppendVXLAN(dst []byte, f UDP4Fields, vni uint32, inner []byte) []byte {
	dst, b := grow(dst, VXLANEncapLen+len(inner))
	copy(b[VXLANEncapLen:], inner)
	writeVXLAN(b, f, vni)
	return dst
}

// EncapVXLANHeadroom encapsulates the inner frame buf[start:] in place,
// writing the VXLAN, UDP, IPv4 and Ethernet headers into the VXLANEncapLen
// bytes of headroom before start, and returns the outer frame,
// buf[start-VXLANEncapLen:]. It reports false, changing nothing, when the
// headroom is too small. The buffer stays the caller's.
func EncapVXLANHeadroom(buf []byte, start int, f UDP4Fields, vni uint32) ([]byte, bool) {
	if start < VXLANEncapLen || start > len(buf) {
		return nil, false
	}
	b := buf[start-VXLANEncapLen:]
	writeVXLAN(b, f, vni)
	return b, true
}

func writeVXLAN(frame []byte, f UDP4Fields, vni uint32) {
	if f.DstPort == 0 {
		f.DstPort = VXLANPort
	}
	VXLAN(frame[UDP4HeadersLen:]).Encode(vni)
	writeUDP4Headers(frame, f)
}

// Hash returns a hash of the flow's addresses, protocol and ports (plus
// the MAC addresses, which tell non-IP flows apart), for choosing a VXLAN
// source port or an ECMP path. It does not allocate. The hash is not
// symmetric: the two directions of a connection usually differ.
func (k *FlowKey) Hash() uint32 {
	// FNV-1a over the fields, inlined to stay allocation-free.
	h := uint32(2166136261)
	mix := func(b byte) { h = (h ^ uint32(b)) * 16777619 }
	for _, b := range k.EthSrc {
		mix(b)
	}
	for _, b := range k.EthDst {
		mix(b)
	}
	for _, b := range k.NwSrc {
		mix(b)
	}
	for _, b := range k.NwDst {
		mix(b)
	}
	for _, b := range k.IPv6Src {
		mix(b)
	}
	for _, b := range k.IPv6Dst {
		mix(b)
	}
	mix(k.NwProto)
	mix(byte(k.TpSrc >> 8))
	mix(byte(k.TpSrc))
	mix(byte(k.TpDst >> 8))
	mix(byte(k.TpDst))
	return h
}
