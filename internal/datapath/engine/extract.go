package engine

import (
	"encoding/binary"

	"github.com/midonet/midonet/internal/packet"
)

// TODO(datapath): switch to packet.ExtractFlowKey once internal/packet has
// it; this is a minimal stand-in with the same contract.
//
// extractFlowKey fills key from an Ethernet frame received on inPort and
// reports whether the frame was long enough for its Ethernet header. Deeper
// headers that are truncated leave their fields zero.
func extractFlowKey(frame []byte, inPort uint32, key *packet.FlowKey) bool {
	*key = packet.FlowKey{InPort: inPort}
	if len(frame) < 14 {
		return false
	}
	copy(key.EthDst[:], frame[0:6])
	copy(key.EthSrc[:], frame[6:12])
	et := binary.BigEndian.Uint16(frame[12:])
	off := 14
	if et == 0x8100 || et == 0x88a8 {
		if len(frame) < 18 {
			return true
		}
		key.VLAN = binary.BigEndian.Uint16(frame[14:]) | packet.VLANPresent
		et = binary.BigEndian.Uint16(frame[16:])
		off = 18
	}
	key.EthType = et
	b := frame[off:]
	switch et {
	case 0x0806:
		if len(b) < 28 || binary.BigEndian.Uint16(b[0:]) != 1 || binary.BigEndian.Uint16(b[2:]) != 0x0800 || b[4] != 6 || b[5] != 4 {
			return true
		}
		if op := binary.BigEndian.Uint16(b[6:]); op <= 0xff {
			key.NwProto = uint8(op)
		}
		copy(key.ArpSHA[:], b[8:14])
		copy(key.NwSrc[:], b[14:18])
		copy(key.ArpTHA[:], b[18:24])
		copy(key.NwDst[:], b[24:28])
	case 0x0800:
		if len(b) < 20 || b[0]>>4 != 4 {
			return true
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl {
			return true
		}
		key.NwTOS = b[1]
		key.NwTTL = b[8]
		key.NwProto = b[9]
		copy(key.NwSrc[:], b[12:16])
		copy(key.NwDst[:], b[16:20])
		frag := binary.BigEndian.Uint16(b[6:])
		switch {
		case frag&0x1fff != 0:
			key.NwFrag = packet.FragLater
			return true
		case frag&0x2000 != 0:
			key.NwFrag = packet.FragFirst
		}
		extractL4(b[ihl:], key.NwProto, key, 1)
	case 0x86dd:
		if len(b) < 40 || b[0]>>4 != 6 {
			return true
		}
		key.NwTOS = uint8(binary.BigEndian.Uint16(b[0:]) >> 4)
		key.NwProto = b[6]
		key.NwTTL = b[7]
		copy(key.IPv6Src[:], b[8:24])
		copy(key.IPv6Dst[:], b[24:40])
		extractL4(b[40:], key.NwProto, key, 58)
	}
	return true
}

func extractL4(l4 []byte, proto uint8, key *packet.FlowKey, icmpProto uint8) {
	switch proto {
	case 6, 17:
		if len(l4) >= 4 {
			key.TpSrc = binary.BigEndian.Uint16(l4[0:])
			key.TpDst = binary.BigEndian.Uint16(l4[2:])
		}
	case icmpProto:
		if len(l4) >= 2 {
			key.TpSrc = uint16(l4[0])
			key.TpDst = uint16(l4[1])
		}
	}
}
