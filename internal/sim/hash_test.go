package sim

import (
	"math/rand/v2"
	"testing"

	"github.com/midonet/midonet/internal/packet"
)

func TestConnectionHashIsSymmetric(t *testing.T) {
	r := rand.New(rand.NewPCG(*simSeed, 7))
	for range 2000 {
		var m Match
		m.EthType = packet.EtherTypeIPv4
		if r.IntN(10) == 0 {
			m.EthType = packet.EtherTypeARP
		}
		m.EthSrc, m.EthDst = [6]byte{2, 0, 0, 0, 0, byte(r.IntN(4))}, [6]byte{2, 0, 0, 0, 0, byte(r.IntN(4))}
		m.NwSrc, m.NwDst = [4]byte{10, 0, 0, byte(r.IntN(4))}, [4]byte{10, 0, 0, byte(r.IntN(4))}
		m.NwProto = []uint8{packet.IPProtoTCP, packet.IPProtoUDP, packet.IPProtoICMP}[r.IntN(3)]
		m.TpSrc, m.TpDst = uint16(r.IntN(3)), uint16(r.IntN(3))
		m.ICMPID = uint16(r.IntN(3))
		rev := m
		rev.EthSrc, rev.EthDst, rev.NwSrc, rev.NwDst, rev.TpSrc, rev.TpDst = m.EthDst, m.EthSrc, m.NwDst, m.NwSrc, m.TpDst, m.TpSrc
		if ConnectionHash(&m) != ConnectionHash(&rev) {
			t.Fatalf("directions hash differently: %+v", m)
		}
		if m.EthType == packet.EtherTypeIPv4 && m.NwProto != packet.IPProtoICMP {
			// An ICMP error about the reverse packet belongs to the same worker.
			e := Match{FlowKey: packet.FlowKey{EthType: packet.EtherTypeIPv4, NwSrc: [4]byte{192, 0, 2, 1}, NwDst: m.NwSrc,
				NwProto: packet.IPProtoICMP, TpSrc: uint16(packet.ICMPDestUnreachable)}, ICMPData: ICMPData{Valid: true, Src: rev.NwSrc, Dst: rev.NwDst,
				Proto: m.NwProto, SrcPort: rev.TpSrc, DstPort: rev.TpDst}}
			if ConnectionHash(&e) != ConnectionHash(&m) {
				t.Fatalf("ICMP error about %+v hashes elsewhere", rev)
			}
		}
	}
}
