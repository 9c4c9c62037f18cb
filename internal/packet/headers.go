package packet

import (
	"encoding/binary"
	"net/netip"
)

// EtherType values the virtual network handles.
const (
	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeARP  uint16 = 0x0806
	EtherTypeVLAN uint16 = 0x8100 // 802.1Q tag
	EtherTypeQinQ uint16 = 0x88a8 // 802.1ad service tag (an outer tag)
	EtherTypeIPv6 uint16 = 0x86dd
)

// IP protocol numbers the virtual network handles.
const (
	IPProtoICMP   uint8 = 1
	IPProtoTCP    uint8 = 6
	IPProtoUDP    uint8 = 17
	IPProtoICMPv6 uint8 = 58
)

// Header lengths in bytes.
const (
	EthernetHeaderLen = 14
	VLANTagLen        = 4
	ARPIPv4Len        = 28 // an Ethernet/IPv4 ARP packet
	IPv4MinHeaderLen  = 20
	IPv4MaxHeaderLen  = 60
	IPv6HeaderLen     = 40
	ICMPv4HeaderLen   = 8
	TCPMinHeaderLen   = 20
	UDPHeaderLen      = 8
	VXLANHeaderLen    = 8
)

// VXLANPort is the IANA-assigned VXLAN UDP port. MidoNet overlays also use
// other ports, so decoding VXLAN takes the port as an argument.
const VXLANPort uint16 = 4789

// Ethernet is a view of an Ethernet II header: the first EthernetHeaderLen
// bytes of a frame. Accessors panic if the slice is shorter; check the
// length (or use Parsed) first.
type Ethernet []byte

// Dst returns the destination MAC address.
func (e Ethernet) Dst() [6]byte { return [6]byte(e[0:6]) }

// Src returns the source MAC address.
func (e Ethernet) Src() [6]byte { return [6]byte(e[6:12]) }

// EtherType returns the ethertype field at offset 12 (0x8100 for a tagged
// frame; the inner type then follows the tag).
func (e Ethernet) EtherType() uint16 { return binary.BigEndian.Uint16(e[12:]) }

// SetDst sets the destination MAC address.
func (e Ethernet) SetDst(mac [6]byte) { copy(e[0:6], mac[:]) }

// SetSrc sets the source MAC address.
func (e Ethernet) SetSrc(mac [6]byte) { copy(e[6:12], mac[:]) }

// SetEtherType sets the ethertype field at offset 12.
func (e Ethernet) SetEtherType(t uint16) { binary.BigEndian.PutUint16(e[12:], t) }

// EthernetFields is the input of Ethernet.Encode.
type EthernetFields struct {
	Dst, Src  [6]byte
	EtherType uint16
}

// Encode writes f into the first EthernetHeaderLen bytes of e.
func (e Ethernet) Encode(f EthernetFields) {
	e.SetDst(f.Dst)
	e.SetSrc(f.Src)
	e.SetEtherType(f.EtherType)
}

// VLANTag is a view of the 4 bytes that follow an 802.1Q TPID (0x8100, in
// the Ethernet ethertype position): the TCI, then the inner ethertype.
type VLANTag []byte

// TCI returns the tag control information: PCP (3 bits), DEI (1), VID (12).
func (v VLANTag) TCI() uint16 { return binary.BigEndian.Uint16(v[0:]) }

// VID returns the 12-bit VLAN identifier.
func (v VLANTag) VID() uint16 { return v.TCI() & 0x0fff }

// PCP returns the 3-bit priority code point.
func (v VLANTag) PCP() uint8 { return uint8(v.TCI() >> 13) }

// EtherType returns the ethertype that follows the tag.
func (v VLANTag) EtherType() uint16 { return binary.BigEndian.Uint16(v[2:]) }

// ARP operation codes.
const (
	ARPRequest uint16 = 1
	ARPReply   uint16 = 2
)

// ARP is a view of an Ethernet/IPv4 ARP packet (ARPIPv4Len bytes).
type ARP []byte

// IsValid reports whether a holds a complete Ethernet/IPv4 ARP packet.
func (a ARP) IsValid() bool {
	return len(a) >= ARPIPv4Len &&
		binary.BigEndian.Uint16(a[0:]) == 1 && // hardware type Ethernet
		binary.BigEndian.Uint16(a[2:]) == EtherTypeIPv4 &&
		a[4] == 6 && a[5] == 4
}

// Op returns the operation code (ARPRequest, ARPReply).
func (a ARP) Op() uint16 { return binary.BigEndian.Uint16(a[6:]) }

// SHA returns the sender hardware address.
func (a ARP) SHA() [6]byte { return [6]byte(a[8:14]) }

// SPA returns the sender protocol address.
func (a ARP) SPA() [4]byte { return [4]byte(a[14:18]) }

// THA returns the target hardware address.
func (a ARP) THA() [6]byte { return [6]byte(a[18:24]) }

// TPA returns the target protocol address.
func (a ARP) TPA() [4]byte { return [4]byte(a[24:28]) }

// ARPFields is the input of ARP.Encode.
type ARPFields struct {
	Op       uint16
	SHA, THA [6]byte
	SPA, TPA [4]byte
}

// Encode writes an Ethernet/IPv4 ARP packet with f into the first ARPIPv4Len
// bytes of a.
func (a ARP) Encode(f ARPFields) {
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], EtherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], f.Op)
	copy(a[8:14], f.SHA[:])
	copy(a[14:18], f.SPA[:])
	copy(a[18:24], f.THA[:])
	copy(a[24:28], f.TPA[:])
}

// IPv4 flag bits in the 16-bit flags/fragment-offset field.
const (
	IPv4FlagDontFragment  uint16 = 0x4000
	IPv4FlagMoreFragments uint16 = 0x2000
	ipv4FragOffsetMask    uint16 = 0x1fff
)

// IPv4 is a view of an IPv4 header (and what follows it). Use IsValid before
// the accessors: they assume a header of at least IPv4MinHeaderLen bytes.
type IPv4 []byte

// IsValid reports whether b starts with a well-formed IPv4 header: version 4,
// header length between 20 and 60 bytes and within b, and a total length
// that covers the header. The total length may exceed len(b) (a truncated
// capture); Payload clips to the slice.
func (b IPv4) IsValid() bool {
	if len(b) < IPv4MinHeaderLen || b[0]>>4 != 4 {
		return false
	}
	hl := b.HeaderLen()
	return hl >= IPv4MinHeaderLen && hl <= len(b) && int(b.TotalLen()) >= hl
}

// Version returns the IP version field.
func (b IPv4) Version() uint8 { return b[0] >> 4 }

// HeaderLen returns the header length in bytes (IHL × 4).
func (b IPv4) HeaderLen() int { return int(b[0]&0x0f) * 4 }

// TOS returns the type-of-service (DSCP and ECN) byte.
func (b IPv4) TOS() uint8 { return b[1] }

// TotalLen returns the total length field (header plus payload).
func (b IPv4) TotalLen() uint16 { return binary.BigEndian.Uint16(b[2:]) }

// ID returns the identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[4:]) }

// Flags returns the flag bits (IPv4FlagDontFragment, IPv4FlagMoreFragments).
func (b IPv4) Flags() uint16 { return binary.BigEndian.Uint16(b[6:]) &^ ipv4FragOffsetMask }

// FragmentOffset returns the fragment offset in bytes.
func (b IPv4) FragmentOffset() int {
	return int(binary.BigEndian.Uint16(b[6:])&ipv4FragOffsetMask) * 8
}

// MoreFragments reports whether the MF flag is set.
func (b IPv4) MoreFragments() bool { return b.Flags()&IPv4FlagMoreFragments != 0 }

// DontFragment reports whether the DF flag is set.
func (b IPv4) DontFragment() bool { return b.Flags()&IPv4FlagDontFragment != 0 }

// FragType classifies the packet for FlowKey.NwFrag: FragNone, FragFirst
// (offset 0 with MF) or FragLater (offset > 0).
func (b IPv4) FragType() uint8 {
	switch {
	case b.FragmentOffset() != 0:
		return FragLater
	case b.MoreFragments():
		return FragFirst
	}
	return FragNone
}

// TTL returns the time to live.
func (b IPv4) TTL() uint8 { return b[8] }

// Protocol returns the protocol of the payload.
func (b IPv4) Protocol() uint8 { return b[9] }

// Checksum returns the header checksum field.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[10:]) }

// Src returns the source address.
func (b IPv4) Src() [4]byte { return [4]byte(b[12:16]) }

// Dst returns the destination address.
func (b IPv4) Dst() [4]byte { return [4]byte(b[16:20]) }

// SrcAddr returns the source address as a netip.Addr.
func (b IPv4) SrcAddr() netip.Addr { return netip.AddrFrom4(b.Src()) }

// DstAddr returns the destination address as a netip.Addr.
func (b IPv4) DstAddr() netip.Addr { return netip.AddrFrom4(b.Dst()) }

// Options returns the options bytes (empty for a 20-byte header), a
// sub-slice of b.
func (b IPv4) Options() []byte { return b[IPv4MinHeaderLen:b.HeaderLen()] }

// Payload returns the bytes after the header up to the total length, clipped
// to the slice (trailing Ethernet padding is excluded).
func (b IPv4) Payload() []byte {
	end := min(int(b.TotalLen()), len(b))
	return b[b.HeaderLen():end]
}

// IsChecksumValid reports whether the header checksum verifies.
func (b IPv4) IsChecksumValid() bool { return Checksum(b[:b.HeaderLen()], 0) == 0 }

// CalculateChecksum returns the header checksum computed with the checksum
// field taken as zero.
func (b IPv4) CalculateChecksum() uint16 {
	hl := b.HeaderLen()
	s := ChecksumCombine(0, b[:10])
	return Checksum(b[12:hl], s)
}

// SetChecksum sets the header checksum field.
func (b IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[10:], c) }

// IPv4Fields is the input of IPv4.Encode. Options must be a multiple of 4
// bytes and at most 40.
type IPv4Fields struct {
	TOS      uint8
	TotalLen uint16
	ID       uint16
	Flags    uint16 // IPv4FlagDontFragment, IPv4FlagMoreFragments
	FragOff  int    // fragment offset in bytes, a multiple of 8
	TTL      uint8
	Protocol uint8
	Src, Dst [4]byte
	Options  []byte
}

// Encode writes the header described by f, options and checksum included,
// at the start of b, which must hold 20+len(f.Options) bytes.
func (b IPv4) Encode(f IPv4Fields) {
	hl := IPv4MinHeaderLen + len(f.Options)
	b[0] = 0x40 | uint8(hl/4)
	b[1] = f.TOS
	binary.BigEndian.PutUint16(b[2:], f.TotalLen)
	binary.BigEndian.PutUint16(b[4:], f.ID)
	binary.BigEndian.PutUint16(b[6:], f.Flags&^ipv4FragOffsetMask|uint16(f.FragOff/8)&ipv4FragOffsetMask)
	b[8] = f.TTL
	b[9] = f.Protocol
	b[10], b[11] = 0, 0
	copy(b[12:16], f.Src[:])
	copy(b[16:20], f.Dst[:])
	copy(b[20:hl], f.Options)
	b.SetChecksum(Checksum(b[:hl], 0))
}

// IPv6 is a view of an IPv6 fixed header. Use IsValid first.
type IPv6 []byte

// IsValid reports whether b holds a fixed header with version 6.
func (b IPv6) IsValid() bool { return len(b) >= IPv6HeaderLen && b[0]>>4 == 6 }

// TrafficClass returns the traffic class byte.
func (b IPv6) TrafficClass() uint8 { return uint8(binary.BigEndian.Uint16(b[0:]) >> 4) }

// FlowLabel returns the 20-bit flow label.
func (b IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(b[0:]) & 0xfffff }

// PayloadLen returns the payload length field.
func (b IPv6) PayloadLen() uint16 { return binary.BigEndian.Uint16(b[4:]) }

// NextHeader returns the next header field.
func (b IPv6) NextHeader() uint8 { return b[6] }

// HopLimit returns the hop limit.
func (b IPv6) HopLimit() uint8 { return b[7] }

// Src returns the source address.
func (b IPv6) Src() [16]byte { return [16]byte(b[8:24]) }

// Dst returns the destination address.
func (b IPv6) Dst() [16]byte { return [16]byte(b[24:40]) }

// ICMPv4 types and destination-unreachable codes used by the virtual network.
const (
	ICMPEchoReply        uint8 = 0
	ICMPDestUnreachable  uint8 = 3
	ICMPEchoRequest      uint8 = 8
	ICMPTimeExceeded     uint8 = 11
	ICMPParameterProblem uint8 = 12

	ICMPCodeNetUnreachable   uint8 = 0
	ICMPCodeHostUnreachable  uint8 = 1
	ICMPCodePortUnreachable  uint8 = 3
	ICMPCodeFragNeeded       uint8 = 4
	ICMPCodeAdminProhibited  uint8 = 13
	ICMPCodeTTLExceeded      uint8 = 0 // with ICMPTimeExceeded
	ICMPCodeReassemblyExceed uint8 = 1 // with ICMPTimeExceeded
)

// ICMPv4 is a view of an ICMPv4 message (at least ICMPv4HeaderLen bytes).
type ICMPv4 []byte

// Type returns the message type.
func (c ICMPv4) Type() uint8 { return c[0] }

// Code returns the message code.
func (c ICMPv4) Code() uint8 { return c[1] }

// Checksum returns the checksum field.
func (c ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(c[2:]) }

// SetChecksum sets the checksum field.
func (c ICMPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(c[2:], v) }

// Ident returns the identifier of an echo request or reply.
func (c ICMPv4) Ident() uint16 { return binary.BigEndian.Uint16(c[4:]) }

// Seq returns the sequence number of an echo request or reply.
func (c ICMPv4) Seq() uint16 { return binary.BigEndian.Uint16(c[6:]) }

// MTU returns the next-hop MTU of a fragmentation-needed message (RFC 1191).
func (c ICMPv4) MTU() uint16 { return binary.BigEndian.Uint16(c[6:]) }

// IsError reports whether the type is an error message that quotes the
// offending datagram (destination unreachable, time exceeded, parameter
// problem).
func (c ICMPv4) IsError() bool {
	t := c.Type()
	return t == ICMPDestUnreachable || t == ICMPTimeExceeded || t == ICMPParameterProblem
}

// Quoted returns the quoted original datagram of an error message (its IPv4
// header and at least 8 bytes of payload, as sent), a sub-slice of c.
func (c ICMPv4) Quoted() IPv4 { return IPv4(c[ICMPv4HeaderLen:]) }

// IsChecksumValid reports whether the checksum over the whole message
// verifies.
func (c ICMPv4) IsChecksumValid() bool { return Checksum(c, 0) == 0 }

// TCP flag bits.
const (
	TCPFlagFIN uint8 = 0x01
	TCPFlagSYN uint8 = 0x02
	TCPFlagRST uint8 = 0x04
	TCPFlagPSH uint8 = 0x08
	TCPFlagACK uint8 = 0x10
	TCPFlagURG uint8 = 0x20
)

// TCP is a view of a TCP header (at least TCPMinHeaderLen bytes).
type TCP []byte

// SrcPort returns the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t[0:]) }

// DstPort returns the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t[2:]) }

// Seq returns the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t[4:]) }

// Ack returns the acknowledgement number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t[8:]) }

// DataOffset returns the header length in bytes.
func (t TCP) DataOffset() int { return int(t[12]>>4) * 4 }

// Flags returns the flag bits (TCPFlagSYN and friends).
func (t TCP) Flags() uint8 { return t[13] }

// Window returns the window field.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t[14:]) }

// Checksum returns the checksum field.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[16:]) }

// SetChecksum sets the checksum field.
func (t TCP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(t[16:], v) }

// Options returns the TCP options, a sub-slice of t; t must hold
// DataOffset bytes.
func (t TCP) Options() []byte { return t[TCPMinHeaderLen:t.DataOffset()] }

// TCPFields is the input of TCP.Encode. Options must be a multiple of 4
// bytes and at most 40.
type TCPFields struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	Checksum         uint16
	Urgent           uint16
	Options          []byte
}

// Encode writes the header described by f, options included, at the start
// of t, which must hold 20+len(f.Options) bytes. The checksum is written as
// given: it covers the payload and pseudo header, which t may not hold yet.
func (t TCP) Encode(f TCPFields) {
	hl := TCPMinHeaderLen + len(f.Options)
	binary.BigEndian.PutUint16(t[0:], f.SrcPort)
	binary.BigEndian.PutUint16(t[2:], f.DstPort)
	binary.BigEndian.PutUint32(t[4:], f.Seq)
	binary.BigEndian.PutUint32(t[8:], f.Ack)
	t[12] = uint8(hl/4) << 4
	t[13] = f.Flags
	binary.BigEndian.PutUint16(t[14:], f.Window)
	binary.BigEndian.PutUint16(t[16:], f.Checksum)
	binary.BigEndian.PutUint16(t[18:], f.Urgent)
	copy(t[TCPMinHeaderLen:hl], f.Options)
}

// Urgent returns the urgent pointer.
func (t TCP) Urgent() uint16 { return binary.BigEndian.Uint16(t[18:]) }

// UDP is a view of a UDP header (UDPHeaderLen bytes).
type UDP []byte

// SrcPort returns the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u[0:]) }

// DstPort returns the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u[2:]) }

// Length returns the length field (header plus payload).
func (u UDP) Length() uint16 { return binary.BigEndian.Uint16(u[4:]) }

// Checksum returns the checksum field; 0 means no checksum was computed.
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[6:]) }

// SetChecksum sets the checksum field.
func (u UDP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(u[6:], v) }

// UDPFields is the input of UDP.Encode.
type UDPFields struct {
	SrcPort, DstPort uint16
	Length           uint16
	Checksum         uint16
}

// Encode writes f into the first UDPHeaderLen bytes of u.
func (u UDP) Encode(f UDPFields) {
	binary.BigEndian.PutUint16(u[0:], f.SrcPort)
	binary.BigEndian.PutUint16(u[2:], f.DstPort)
	binary.BigEndian.PutUint16(u[4:], f.Length)
	binary.BigEndian.PutUint16(u[6:], f.Checksum)
}

// VXLAN is a view of a VXLAN header (VXLANHeaderLen bytes, RFC 7348).
type VXLAN []byte

// vxlanFlagVNI is the I flag: the VNI field is valid.
const vxlanFlagVNI = 0x08

// IsValid reports whether v holds a VXLAN header with the I (valid VNI)
// flag set.
func (v VXLAN) IsValid() bool { return len(v) >= VXLANHeaderLen && v[0]&vxlanFlagVNI != 0 }

// VNI returns the 24-bit VXLAN network identifier.
func (v VXLAN) VNI() uint32 { return binary.BigEndian.Uint32(v[4:]) >> 8 }

// Encode writes a VXLAN header with the I flag and vni.
func (v VXLAN) Encode(vni uint32) {
	binary.BigEndian.PutUint32(v[0:], uint32(vxlanFlagVNI)<<24)
	binary.BigEndian.PutUint32(v[4:], vni<<8)
}
