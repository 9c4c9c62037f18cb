package fastpath

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/sim/simtest"
	"github.com/midonet/midonet/internal/testenv"
	"github.com/midonet/midonet/internal/topology"
	xlate "github.com/midonet/midonet/internal/translate" // the agent's; translate here is the kernel layout's
)

// kernelRig runs the fast path's programs on one frame in the kernel with
// BPF_PROG_TEST_RUN, as an interface's receive path would: the classifier
// (loaded as a tc program for the run, so that it sees the frame from its
// Ethernet header as a packet socket's filter does) leaves its verdict in
// this processor's hand-over entry, and the forwarder applies it. Both
// runs happen on one processor, as in the kernel.
type kernelRig struct {
	f        *FastPath
	classify *ebpf.Program
}

func newKernelRig(t *testing.T) *kernelRig {
	t.Helper()
	testenv.RequireRoot(t)
	f, err := New()
	if err != nil {
		t.Fatalf("load the fast path (it needs Linux 6.6 or later): %v", err)
	}
	t.Cleanup(func() { f.Close() })
	c, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "mn_classify_tc", Type: ebpf.SchedCLS, License: "Apache-2.0",
		Instructions: classifier(f.masks.FD(), f.flows.FD(), f.handover.FD(), f.counters.FD(), f.ports.FD())})
	if err != nil {
		t.Fatalf("load the classifier for test runs: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &kernelRig{f: f, classify: c}
}

// tcActRedirect is TC_ACT_REDIRECT, what the forwarder returns once it
// has rewritten a frame for an interface.
const tcActRedirect = 7

// run runs the frame through the programs on interface 1 (the loopback,
// where test runs receive) and returns the frame the forwarder would send,
// or nil if the kernel did not take it.
func (r *kernelRig) run(t *testing.T, frame []byte) []byte {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	for cpu := range 1024 {
		if old.IsSet(cpu) {
			one.Set(cpu)
			break
		}
	}
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	defer unix.SchedSetaffinity(0, &old)
	verdict, err := r.classify.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("classifier test run: %v", err)
	}
	if verdict != 0 {
		return nil // to the socket: the agent's
	}
	opts := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	ret, err := r.f.forward.Run(opts) // cuts DataOut to the frame's length
	if err != nil {
		t.Fatalf("forwarder test run: %v", err)
	}
	if int32(ret) != tcActRedirect {
		t.Fatalf("the forwarder returned %d for a frame the classifier took", int32(ret))
	}
	return opts.DataOut
}

// kernelFields are the rewrites a flow the kernel runs can carry.
const kernelFields = sim.FieldEthSrc | sim.FieldEthDst | sim.FieldNwSrc | sim.FieldNwDst | sim.FieldNwTOS | sim.FieldNwTTL |
	sim.FieldTpSrc | sim.FieldTpDst

// lookupOnly is a PortDirectory with no port elsewhere.
type lookupOnly struct{}

func (lookupOnly) Port(topology.ID) (sim.PortInfo, bool) { return sim.PortInfo{}, false }

// For every rewrite the translation can produce into a flow the kernel
// runs, the in-kernel fast path and the userspace engine send the same
// bytes: the flow is installed in both, the frame run through both.
func TestFastPathAndEngineAgree(t *testing.T) {
	r := newKernelRig(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))

	e := engine.New(engine.Config{})
	defer e.Close()
	in, err := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "in"}, &simtest.Port{})
	if err != nil {
		t.Fatal(err)
	}
	outCap := &simtest.Port{}
	out, err := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "out"}, outCap)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel's in-port is the loopback (where test runs receive), its
	// out-port any interface: the run does not send.
	kernelPorts := func(no datapath.PortNo) (Port, bool) {
		switch no {
		case in.No:
			return Port{Ifindex: 1}, true
		case out.No:
			return Port{Ifindex: 2}, true
		}
		return Port{}, false
	}
	egressPort := topology.NewID()
	where := &xlate.Ports{Local: map[topology.ID]datapath.PortNo{egressPort: out.No}}
	mask := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwProto: 0xff, NwSrc: [4]byte{255, 255, 255, 255},
		NwDst: [4]byte{255, 255, 255, 255}, TpSrc: 0xffff, TpDst: 0xffff, ICMPID: 0xffff}
	compared := 0
	for i := range 1000 {
		// The kinds of frames the kernel takes: untagged IPv4 without
		// options, TCP, UDP or an ICMP echo.
		kinds := []simtest.Kind{simtest.TCP, simtest.UDP, simtest.UDPNoChecksum, simtest.ICMPEcho}
		frame := simtest.Frame(rng, kinds[rng.IntN(len(kinds))], false)
		orig, _ := sim.MatchFromFrame(frame)
		eg := simtest.Egress(rng, &orig, egressPort, kernelFields)
		acts, _ := xlate.Flow(nil, &orig, []sim.Egress{eg}, where, lookupOnly{})
		var key packet.FlowKey
		packet.ExtractFlowKey(frame, uint32(in.No), &key)
		if !r.f.Put(&key, &mask, acts, kernelPorts, true) {
			t.Fatalf("seed %d case %d: the kernel refused the flow %v", seed, i, acts)
		}
		kernel := r.run(t, frame)
		if _, ok := r.f.Delete(&key, &mask); !ok {
			t.Fatalf("seed %d case %d: the kernel lost the flow", seed, i)
		}
		if kernel == nil {
			t.Fatalf("seed %d case %d: the kernel did not take %x", seed, i, frame)
		}
		if err := e.Execute(frame, acts, in.No); err != nil {
			t.Fatal(err)
		}
		sent := outCap.Take()
		if len(sent) != 1 {
			t.Fatalf("seed %d case %d: the engine sent %d frames", seed, i, len(sent))
		}
		if user := sent[0]; !bytes.Equal(kernel, user) {
			t.Fatalf("seed %d case %d: actions %v on %x\n kernel %x\n engine %x", seed, i, acts, frame, kernel, user)
		}
		compared++
	}
	t.Logf("%d rewrites compared byte for byte", compared)
}
