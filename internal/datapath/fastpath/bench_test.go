package fastpath

import (
	"encoding/binary"
	"testing"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

// BenchmarkPutDelete measures mirroring one new NAT-style flow (exact
// 5-tuple, address and port rewrites, output) into the kernel and removing
// it: the fast path's share of a flow setup.
func BenchmarkPutDelete(b *testing.B) {
	needRoot(b)
	f, err := New()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ports := func(no datapath.PortNo) (Port, bool) { return Port{Ifindex: uint32(no) + 100}, no == 1 || no == 2 }
	mask := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwProto: 0xff, NwTTL: 0xff,
		NwSrc: [4]byte{255, 255, 255, 255}, NwDst: [4]byte{255, 255, 255, 255}, TpSrc: 0xffff, TpDst: 0xffff}
	key := packet.FlowKey{InPort: 1, EthType: 0x0800, NwProto: 6, NwTTL: 64, NwSrc: [4]byte{10, 0, 0, 1}, NwDst: [4]byte{192, 0, 2, 1}, TpDst: 80}
	acts := []datapath.Action{
		datapath.SetEthernet(datapath.EthernetSet{Src: [6]byte{2, 0, 0, 0, 0, 1}, Dst: [6]byte{2, 0, 0, 0, 0, 2}, Fields: datapath.SetSrc | datapath.SetDst}),
		datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{203, 0, 113, 1}, TTL: 63, Fields: datapath.SetSrc | datapath.SetTTL}),
		datapath.SetTCP(datapath.L4Set{Src: 40000, Fields: datapath.SetSrc}),
		datapath.Output(2),
	}
	// Another flow keeps the mask in use, as traffic does.
	if !f.Put(&key, &mask, acts, ports, false) {
		b.Fatal("flow not mirrored")
	}
	b.ReportAllocs()
	for i := 1; b.Loop(); i++ {
		k := key
		k.TpDst = 8080 // never the kept flow's, however many turns
		k.TpSrc = uint16(i)
		binary.BigEndian.PutUint16(k.NwSrc[2:], uint16(i>>16))
		if !f.Put(&k, &mask, acts, ports, false) {
			b.Fatal("flow not mirrored")
		}
		if _, ok := f.Delete(&k, &mask); !ok {
			b.Fatal("flow not found")
		}
	}
}
