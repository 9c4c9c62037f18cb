package ovs

import (
	"encoding/binary"

	"github.com/midonet/midonet/internal/packet"
)

// A flow match goes to the kernel as two attribute lists of the same shape:
// the key (OVS_FLOW_ATTR_KEY) and the mask (OVS_FLOW_ATTR_MASK). The shape
// follows the key: an 802.1Q key nests its inner headers in ENCAP, an IPv4
// key carries IPV4 and, unless it is a later fragment, the L4 attribute of
// its protocol. The kernel rejects a key missing an attribute its
// ethertype or protocol implies, and a mask attribute for a field whose
// parent is not matched exactly (an IPv4 mask needs an exact ethertype, an
// L4 mask an exact protocol), so the mask is cut to what is allowed.
//
// The key sent is the masked key (see matchKey), so that the kernel's flow
// identity — the key as it was given — is the same for every packet of a
// megaflow, and DeleteFlow finds the flow from any key inside the mask.

// placeholderTunDst is the tunnel destination put in a key whose mask
// ignores the destination: the kernel requires a non-zero one.
var placeholderTunDst = [4]byte{255, 255, 255, 255}

// matchKey returns key masked by mask, in the form the kernel accepts: the
// VLAN-present bit of a tagged key is kept (the kernel matches it always),
// and a matched tunnel gets a placeholder destination and TTL where the mask
// leaves them free.
func matchKey(key, mask *packet.FlowKey) packet.FlowKey {
	k := key.Masked(mask)
	k.VLAN |= key.VLAN & packet.VLANPresent
	if hasTunnel(&k) || hasTunnel(mask) {
		if mask.TunDst == ([4]byte{}) {
			k.TunDst = placeholderTunDst
		}
		if k.TunTTL == 0 && mask.TunTTL == 0 {
			k.TunTTL = tunnelDefTTL
		}
	}
	return k
}

func hasTunnel(k *packet.FlowKey) bool {
	return k.TunID != 0 || k.TunDst != [4]byte{} || k.TunSrc != [4]byte{}
}

// appendKey appends the OVS_KEY_ATTR_* list of key k.
func appendKey(e *encoder, k *packet.FlowKey) { appendMatch(e, k, k, false) }

// appendMask appends the OVS_KEY_ATTR_* list of mask m for key k.
func appendMask(e *encoder, k, m *packet.FlowKey) { appendMatch(e, k, m, true) }

// appendMatch encodes the values of v in the shape of key s.
func appendMatch(e *encoder, s, v *packet.FlowKey, isMask bool) {
	if isMask {
		if v.InPort != 0 {
			e.u32(keyAttrInPort, ^uint32(0)) // the kernel matches in_port exactly or not at all
		}
	} else if s.InPort != 0 {
		e.u32(keyAttrInPort, s.InPort)
	}
	if hasTunnel(s) {
		appendTunnel(e, keyAttrTunnel, v.TunID, v.TunSrc, v.TunDst, v.TunTOS, v.TunTTL, isMask)
	}
	eth := e.fixed(keyAttrEthernet, 12)
	copy(eth[0:6], v.EthSrc[:]) // ovs_key_ethernet: source first
	copy(eth[6:12], v.EthDst[:])
	if s.VLAN&packet.VLANPresent != 0 {
		if isMask {
			e.be16(keyAttrEthertype, 0xffff)
			e.be16(keyAttrVLAN, v.VLAN|vlanCFI)
		} else {
			e.be16(keyAttrEthertype, ethTypeVLAN)
			e.be16(keyAttrVLAN, v.VLAN|vlanCFI)
		}
		off := e.begin(keyAttrEncap)
		appendL3(e, s, v, isMask)
		e.end(off)
		return
	}
	appendL3(e, s, v, isMask)
}

// appendL3 encodes the ethertype and what it implies.
func appendL3(e *encoder, s, v *packet.FlowKey, isMask bool) {
	if isMask {
		if v.EthType == 0 {
			return // the ethertype is free, and so is everything under it
		}
		e.be16(keyAttrEthertype, 0xffff) // the kernel matches the ethertype exactly
		if v.EthType != 0xffff {
			return
		}
	} else if s.EthType >= ethTypeMin {
		e.be16(keyAttrEthertype, s.EthType)
	} // an 802.3 key omits the ethertype

	switch s.EthType {
	case ethTypeIPv4:
		b := e.fixed(keyAttrIPv4, 12)
		copy(b[0:4], v.NwSrc[:])
		copy(b[4:8], v.NwDst[:])
		b[8], b[9], b[10], b[11] = v.NwProto, v.NwTOS, v.NwTTL, v.NwFrag
		appendL4(e, s, v, isMask, protoICMP, keyAttrICMP)
	case ethTypeIPv6:
		b := e.fixed(keyAttrIPv6, 40)
		copy(b[0:16], v.IPv6Src[:])
		copy(b[16:32], v.IPv6Dst[:])
		// b[32:36] is the flow label, which FlowKey does not carry.
		b[36], b[37], b[38], b[39] = v.NwProto, v.NwTOS, v.NwTTL, v.NwFrag
		appendL4(e, s, v, isMask, protoICMPv6, keyAttrICMPv6)
		if s.NwProto == protoICMPv6 && s.NwFrag != packet.FragLater &&
			(s.TpSrc == 135 || s.TpSrc == 136) && s.TpDst == 0 &&
			(!isMask || uint8(v.TpSrc) == 0xff && v.NwProto == 0xff) {
			e.fixed(keyAttrND, 28) // neighbour discovery fields: FlowKey has none, so wildcard
		}
	case ethTypeARP, ethTypeRARP:
		b := e.fixed(keyAttrARP, 24)
		copy(b[0:4], v.NwSrc[:])
		copy(b[4:8], v.NwDst[:])
		binary.BigEndian.PutUint16(b[8:10], uint16(v.NwProto))
		copy(b[10:16], v.ARPSHA[:])
		copy(b[16:22], v.ARPTHA[:])
	}
}

// appendL4 encodes the transport attribute implied by the protocol.
func appendL4(e *encoder, s, v *packet.FlowKey, isMask bool, icmpProto uint8, icmpAttr uint16) {
	if s.NwFrag == packet.FragLater || isMask && v.NwProto != 0xff {
		return
	}
	var attr uint16
	switch s.NwProto {
	case protoTCP:
		attr = keyAttrTCP
	case protoUDP:
		attr = keyAttrUDP
	case protoSCTP:
		attr = keyAttrSCTP
	case icmpProto:
		b := e.fixed(icmpAttr, 2)
		b[0], b[1] = uint8(v.TpSrc), uint8(v.TpDst)
		return
	default:
		return
	}
	b := e.fixed(attr, 4)
	binary.BigEndian.PutUint16(b[0:2], v.TpSrc)
	binary.BigEndian.PutUint16(b[2:4], v.TpDst)
	if attr == keyAttrTCP {
		// The kernel expects TCP flags with every TCP key; FlowKey has
		// none, so the mask leaves them free.
		e.be16(keyAttrTCPFlags, 0)
	}
}

// appendTunnel encodes an OVS_KEY_ATTR_TUNNEL nest. A key (not a mask)
// always carries the destination and TTL, which the kernel requires.
func appendTunnel(e *encoder, typ uint16, id uint32, src, dst [4]byte, tos, ttl uint8, isMask bool) {
	off := e.begin(typ)
	if id != 0 || !isMask {
		e.be64(tunAttrID, uint64(id))
	}
	if src != [4]byte{} {
		e.bytes(tunAttrIPv4Src, src[:])
	}
	if dst != [4]byte{} || !isMask {
		e.bytes(tunAttrIPv4Dst, dst[:])
	}
	if tos != 0 {
		e.u8(tunAttrTOS, tos)
	}
	if ttl != 0 || !isMask {
		e.u8(tunAttrTTL, ttl)
	}
	e.end(off)
}

// decodeKey fills k from an OVS_KEY_ATTR_* list (a key or a mask; isMask
// says which, for the in_port convention). Unknown attributes are skipped;
// it reports false on a malformed list.
func decodeKey(b []byte, k *packet.FlowKey, isMask bool) bool {
	a := attrs{b: b}
	for a.next() {
		switch a.typ {
		case keyAttrInPort:
			v := a.u32()
			if isMask {
				if v&0xffff == 0xffff {
					k.InPort = ^uint32(0)
				} else {
					k.InPort = v & 0xffff
				}
			} else if v != dpMaxPorts {
				k.InPort = v
			}
		case keyAttrTunnel:
			if !decodeTunnel(a.val, k) {
				return false
			}
		case keyAttrEthernet:
			if p := a.want(12); p != nil {
				copy(k.EthSrc[:], p[0:6])
				copy(k.EthDst[:], p[6:12])
			}
		case keyAttrVLAN:
			k.VLAN = a.be16()
		case keyAttrEthertype:
			k.EthType = a.be16()
		case keyAttrEncap:
			// The outer ethertype was the tag's; the inner one follows,
			// and an inner list without one is an 802.3 frame.
			k.EthType = 0
			if !decodeKey(a.val, k, isMask) {
				return false
			}
		case keyAttrIPv4:
			if p := a.want(12); p != nil {
				copy(k.NwSrc[:], p[0:4])
				copy(k.NwDst[:], p[4:8])
				k.NwProto, k.NwTOS, k.NwTTL, k.NwFrag = p[8], p[9], p[10], p[11]
			}
		case keyAttrIPv6:
			if p := a.want(40); p != nil {
				copy(k.IPv6Src[:], p[0:16])
				copy(k.IPv6Dst[:], p[16:32])
				k.NwProto, k.NwTOS, k.NwTTL, k.NwFrag = p[36], p[37], p[38], p[39]
			}
		case keyAttrTCP, keyAttrUDP, keyAttrSCTP:
			if p := a.want(4); p != nil {
				k.TpSrc = binary.BigEndian.Uint16(p[0:2])
				k.TpDst = binary.BigEndian.Uint16(p[2:4])
			}
		case keyAttrICMP, keyAttrICMPv6:
			if p := a.want(2); p != nil {
				k.TpSrc, k.TpDst = uint16(p[0]), uint16(p[1])
			}
		case keyAttrARP:
			if p := a.want(24); p != nil {
				copy(k.NwSrc[:], p[0:4])
				copy(k.NwDst[:], p[4:8])
				k.NwProto = uint8(binary.BigEndian.Uint16(p[8:10]))
				copy(k.ARPSHA[:], p[10:16])
				copy(k.ARPTHA[:], p[16:22])
			}
		}
		if a.bad {
			return false
		}
	}
	return !a.bad
}

func decodeTunnel(b []byte, k *packet.FlowKey) bool {
	var t tunnelFields
	if !t.decode(b) {
		return false
	}
	k.TunID, k.TunSrc, k.TunDst, k.TunTOS, k.TunTTL = t.id, t.src, t.dst, t.tos, t.ttl
	return true
}
