package packet

// FlowKey is the match of a flow: the header fields a datapath can key on,
// modelled on the Open vSwitch datapath's flow key attributes. It is a
// comparable value of fixed-size fields, so it can be a map key and be
// compared with ==. The same type serves as a mask: a field whose mask bits
// are set is significant, a zero mask field is a wildcard.
//
// Field conventions follow the OVS datapath: for ARP, NwSrc/NwDst hold the
// sender and target protocol addresses and NwProto the low byte of the ARP
// opcode; for ICMP, TpSrc holds the type and TpDst the code.
type FlowKey struct {
	InPort uint32 // datapath port number

	// Tunnel metadata: set on packets received from the overlay, and by a
	// set-tunnel action before output to the overlay port.
	TunID  uint32 // VXLAN VNI (24 bits)
	TunSrc [4]byte
	TunDst [4]byte
	TunTOS uint8
	TunTTL uint8

	EthSrc  [6]byte
	EthDst  [6]byte
	VLAN    uint16 // 802.1Q TCI with VLANPresent set when a tag exists; 0 if untagged
	EthType uint16 // ethertype after any VLAN tag

	NwSrc   [4]byte // IPv4 source, or ARP sender protocol address
	NwDst   [4]byte // IPv4 destination, or ARP target protocol address
	IPv6Src [16]byte
	IPv6Dst [16]byte
	NwProto uint8 // IP protocol, or ARP opcode (low byte)
	NwTOS   uint8
	NwTTL   uint8
	NwFrag  uint8 // FragNone, FragFirst or FragLater

	TpSrc uint16 // TCP/UDP source port, or ICMP type
	TpDst uint16 // TCP/UDP destination port, or ICMP code
	// ICMPID is the identifier of an ICMPv4 echo request or reply, which
	// NAT and conntrack use as the ping's "port". The Open vSwitch kernel
	// datapath has no such key field: only backends reporting
	// datapath.Features.ICMPEchoID match it.
	ICMPID uint16

	ARPSHA [6]byte
	ARPTHA [6]byte
}

// VLANPresent is the bit of FlowKey.VLAN that says a tag is present (the CFI
// bit position, as in the OVS datapath).
const VLANPresent uint16 = 0x1000

// Fragment types for FlowKey.NwFrag.
const (
	FragNone  uint8 = 0 // not a fragment
	FragFirst uint8 = 1 // first fragment (offset 0, more fragments)
	FragLater uint8 = 2 // a later fragment (offset > 0): no L4 header
)

// Masked returns k with every bit not set in mask cleared.
func (k *FlowKey) Masked(mask *FlowKey) FlowKey {
	var r FlowKey
	r.InPort = k.InPort & mask.InPort
	r.TunID = k.TunID & mask.TunID
	r.TunSrc = and4(k.TunSrc, mask.TunSrc)
	r.TunDst = and4(k.TunDst, mask.TunDst)
	r.TunTOS = k.TunTOS & mask.TunTOS
	r.TunTTL = k.TunTTL & mask.TunTTL
	r.EthSrc = and6(k.EthSrc, mask.EthSrc)
	r.EthDst = and6(k.EthDst, mask.EthDst)
	r.VLAN = k.VLAN & mask.VLAN
	r.EthType = k.EthType & mask.EthType
	r.NwSrc = and4(k.NwSrc, mask.NwSrc)
	r.NwDst = and4(k.NwDst, mask.NwDst)
	r.IPv6Src = and16(k.IPv6Src, mask.IPv6Src)
	r.IPv6Dst = and16(k.IPv6Dst, mask.IPv6Dst)
	r.NwProto = k.NwProto & mask.NwProto
	r.NwTOS = k.NwTOS & mask.NwTOS
	r.NwTTL = k.NwTTL & mask.NwTTL
	r.NwFrag = k.NwFrag & mask.NwFrag
	r.TpSrc = k.TpSrc & mask.TpSrc
	r.TpDst = k.TpDst & mask.TpDst
	r.ICMPID = k.ICMPID & mask.ICMPID
	r.ARPSHA = and6(k.ARPSHA, mask.ARPSHA)
	r.ARPTHA = and6(k.ARPTHA, mask.ARPTHA)
	return r
}

func and4(a, b [4]byte) [4]byte {
	return [4]byte{a[0] & b[0], a[1] & b[1], a[2] & b[2], a[3] & b[3]}
}

func and6(a, b [6]byte) [6]byte {
	return [6]byte{a[0] & b[0], a[1] & b[1], a[2] & b[2], a[3] & b[3], a[4] & b[4], a[5] & b[5]}
}

func and16(a, b [16]byte) [16]byte {
	var r [16]byte
	for i := range r {
		r[i] = a[i] & b[i]
	}
	return r
}
