package ovs

import (
	"encoding/hex"
	"testing"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/userspace"
	"github.com/midonet/midonet/internal/packet"
)

// Benchmarks of the kernel datapath through netlink, next to the same
// operations on the userspace backend in the same place (the VM, where
// only ratios mean something: TCG makes absolute numbers 10-50x slow).
// Run them with: BENCH=1 scripts/kvm-ovs-test.sh -test.run=^$
// (bench/ovs/run.sh). On the host only the codec benchmarks run.

// backend is what the flow and execute benchmarks need from a datapath.
type backend interface {
	datapath.FlowTable
	datapath.Executor
}

type benchRig struct {
	dp      backend
	in, out datapath.PortNo
}

func kernelRig(b *testing.B) benchRig {
	requireKernel(b)
	ns := newNetNS(b)
	vethPair(b, ns, "bk0")
	d := openDP(b, ns, Config{})
	in := addPort(b, ns, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "bk0"})
	return benchRig{dp: d, in: in, out: in}
}

func userspaceRig(b *testing.B) benchRig {
	requireKernel(b) // same place as the kernel figures: the VM
	ns := newNetNS(b)
	vethPair(b, ns, "bu0")
	var (
		d   *userspace.Datapath
		err error
		no  datapath.PortNo
	)
	ns.do(b, func() {
		if d, err = userspace.New(userspace.Config{}); err != nil {
			return
		}
		no, err = d.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "bu0"})
	})
	if err != nil {
		b.Fatalf("userspace datapath: %v", err)
	}
	b.Cleanup(func() { d.Close() })
	return benchRig{dp: d, in: no, out: no}
}

var rigs = []struct {
	name string
	make func(b *testing.B) benchRig
}{{"kernel", kernelRig}, {"userspace", userspaceRig}}

// benchKeys returns n distinct exact-match UDP keys on port in.
func benchKeys(n int, in datapath.PortNo) []packet.FlowKey {
	keys := make([]packet.FlowKey, n)
	for i := range keys {
		packet.ExtractFlowKey(udpFrame(uint16(i%60000+1), uint16(i/60000+1), "k"), uint32(in), &keys[i])
	}
	return keys
}

// BenchmarkFlowPut creates flows, one request (and ack) each.
func BenchmarkFlowPut(b *testing.B) {
	for _, r := range rigs {
		b.Run(r.name, func(b *testing.B) {
			rig := r.make(b)
			keys := benchKeys(b.N, rig.in)
			acts := []datapath.Action{datapath.Output(rig.out)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := rig.dp.PutFlow(&keys[i], &exactMask, acts, datapath.FlowCreate); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFlowDelete deletes flows, reading back their counters.
func BenchmarkFlowDelete(b *testing.B) {
	for _, r := range rigs {
		b.Run(r.name, func(b *testing.B) {
			rig := r.make(b)
			keys := benchKeys(b.N, rig.in)
			acts := []datapath.Action{datapath.Output(rig.out)}
			for i := range keys {
				if err := rig.dp.PutFlow(&keys[i], &exactMask, acts, datapath.FlowCreate); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := rig.dp.DeleteFlow(&keys[i], &exactMask); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFlowPutBatch creates flows with PutFlows, 64 per datagram.
func BenchmarkFlowPutBatch(b *testing.B) {
	rig := kernelRig(b)
	d := rig.dp.(*Datapath)
	keys := benchKeys(b.N, rig.in)
	acts := []datapath.Action{datapath.Output(rig.out)}
	puts := make([]FlowPut, b.N)
	for i := range puts {
		puts[i] = FlowPut{Key: &keys[i], Mask: &exactMask, Actions: acts, Flags: datapath.FlowCreate}
	}
	errs := make([]error, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 256 {
		j := min(i+256, b.N)
		if n := d.PutFlows(puts[i:j], errs[i:j]); n != 0 {
			b.Fatalf("%d failures, first %v", n, firstErr(errs[i:j]))
		}
	}
}

func firstErr(errs []error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// BenchmarkExecute sends a 64-byte frame out of a port.
func BenchmarkExecute(b *testing.B) {
	for _, r := range rigs {
		b.Run(r.name, func(b *testing.B) {
			rig := r.make(b)
			frame := udpFrame(1, 2, "execute-bench-payload")
			acts := []datapath.Action{datapath.SetIPv4(datapath.IPv4Set{TTL: 9, Fields: datapath.SetTTL}), datapath.Output(rig.out)}
			b.ReportAllocs()
			for b.Loop() {
				if err := rig.dp.Execute(frame, acts, rig.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeFlowPut is the codec cost of one put: key, mask, actions.
func BenchmarkEncodeFlowPut(b *testing.B) {
	var key packet.FlowKey
	packet.ExtractFlowKey(tcpFrame(1, 2, "x"), 3, &key)
	mask := packet.FlowKey{InPort: ^uint32(0), EthDst: exactMask.EthDst, VLAN: 0xffff, EthType: 0xffff,
		NwDst: [4]byte{255, 255, 255, 0}, NwProto: 0xff, TpDst: 0xffff}
	acts := []datapath.Action{datapath.SetEthernet(datapath.EthernetSet{Dst: macB, Fields: datapath.SetDst}),
		datapath.SetIPv4(datapath.IPv4Set{TTL: 63, Fields: datapath.SetTTL}), datapath.Output(4)}
	var e encoder
	b.ReportAllocs()
	for b.Loop() {
		e.b = e.b[:0]
		k := matchKey(&key, &mask)
		appendKey(&e, &k)
		appendMask(&e, &k, &mask)
		appendActions(&e, acts, 1, [4]byte{})
	}
}

// BenchmarkDecodeUpcall is the codec cost of one miss.
func BenchmarkDecodeUpcall(b *testing.B) {
	m, _ := hex.DecodeString(recordedMiss)
	var u datapath.Upcall
	b.ReportAllocs()
	for b.Loop() {
		if !decodeUpcall(m[0], m[8:], &u) {
			b.Fatal("decode failed")
		}
	}
}

func TestCodecDoesNotAllocate(t *testing.T) {
	var key packet.FlowKey
	packet.ExtractFlowKey(tcpFrame(1, 2, "x"), 3, &key)
	acts := []datapath.Action{datapath.Output(4), datapath.Userspace(1)}
	var e encoder
	e.b = make([]byte, 0, 4096)
	n := testing.AllocsPerRun(100, func() {
		e.b = e.b[:0]
		k := matchKey(&key, &exactMask)
		appendKey(&e, &k)
		appendMask(&e, &k, &exactMask)
		appendActions(&e, acts, 1, [4]byte{})
	})
	if n != 0 {
		t.Errorf("encoding a flow put allocates %v times", n)
	}
}
