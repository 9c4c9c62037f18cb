package sim

import (
	"github.com/midonet/midonet/internal/packet"
)

// ConnectionHash hashes the packet's connection so that both directions of
// a connection get the same value: the agent picks a packet's worker with
// it, so that a connection's forward and return packets share flow state
// without crossing workers. An ICMP error hashes as the connection of the
// datagram it quotes; an echo uses its identifier as both ports. Non-IPv4
// packets hash their MAC addresses, also symmetrically.
func ConnectionHash(m *Match) uint32 {
	if m.EthType != packet.EtherTypeIPv4 {
		return symmetric(m.EthSrc[:], m.EthDst[:], 0, 0, 0)
	}
	src, dst, sp, dp, proto := m.NwSrc, m.NwDst, uint16(0), uint16(0), m.NwProto
	switch {
	case m.NwFrag == packet.FragLater:
	case proto == packet.IPProtoTCP || proto == packet.IPProtoUDP:
		sp, dp = m.TpSrc, m.TpDst
	case proto == packet.IPProtoICMP && m.ICMPData.Valid:
		d := &m.ICMPData
		src, dst, sp, dp, proto = d.Src, d.Dst, d.SrcPort, d.DstPort, d.Proto
	case proto == packet.IPProtoICMP:
		sp, dp = m.ICMPID, m.ICMPID
	}
	return symmetric(src[:], dst[:], sp, dp, proto)
}

// symmetric hashes two endpoints in a canonical order.
func symmetric(a, b []byte, pa, pb uint16, proto uint8) uint32 {
	if string(a) > string(b) || (string(a) == string(b) && pa > pb) {
		a, b, pa, pb = b, a, pb, pa
	}
	h := uint32(2166136261)
	for _, x := range a {
		h = (h ^ uint32(x)) * 16777619
	}
	for _, x := range b {
		h = (h ^ uint32(x)) * 16777619
	}
	for _, x := range [5]byte{byte(pa >> 8), byte(pa), byte(pb >> 8), byte(pb), proto} {
		h = (h ^ uint32(x)) * 16777619
	}
	return h ^ h>>16
}
