package agent

import (
	"net/netip"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/mem"
	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/sim"
)

// flowsIn returns the datapath flows matching packets from port in.
func flowsIn(t *testing.T, a *testAgent, in datapath.PortNo) []datapath.Flow {
	t.Helper()
	var out []datapath.Flow
	if err := a.dp.DumpFlows(func(f *datapath.Flow) bool {
		if f.Key.InPort == uint32(in) {
			out = append(out, datapath.Flow{Key: f.Key, Mask: f.Mask, Actions: append([]datapath.Action(nil), f.Actions...)})
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSNATReplyFlowInstalledWithForward opens a TCP connection through
// SNAT out of an uplink on the VM's host: the forward simulation installs
// the reply's flow too, so the reply crosses without a miss; that flow is
// the one simulating the reply installs, and it goes with the forward flow.
func TestSNATReplyFlowInstalledWithForward(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgent("h1", "10.9.0.1")
	n, dpVM, dpUp := c.snatOnOneHost(t, h1)

	vmIP, extIP, natIP := netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("203.0.113.1")
	inject := func(in datapath.PortNo, spec sim.PacketSpec) {
		t.Helper()
		fr, err := spec.Frame()
		if err != nil {
			t.Fatal(err)
		}
		if err := h1.dp.Inject(in, fr); err != nil {
			t.Fatal(err)
		}
	}
	inject(dpVM, sim.PacketSpec{EthSrc: n.vmMAC, EthDst: n.rpMAC, Src: vmIP, Dst: extIP, Proto: packet.IPProtoTCP, SrcPort: 5000, DstPort: 80})
	out := readIPv4(t, h1, dpUp)
	if out.Src != natIP || out.EthDst != n.gwMAC {
		t.Fatalf("SYN out: src %v eth dst %x, want %v to the gateway", out.Src, out.EthDst, natIP)
	}
	natPort := out.SrcPort
	if !poll.Until(func() bool { return h1.Flows() >= 2 && counterValue(h1.metrics.repliesInstalled) == 1 }, 5*time.Second) {
		t.Fatalf("%d flows, %v reply flows installed after the SYN; want the forward and the reply flow", h1.Flows(),
			counterValue(h1.metrics.repliesInstalled))
	}
	pre := flowsIn(t, h1, dpUp)
	if len(pre) != 1 {
		t.Fatalf("%d flows from the uplink, want the reply's: %+v", len(pre), pre)
	}
	k, m := pre[0].Key, pre[0].Mask
	if k.NwSrc != extIP.As4() || k.NwDst != natIP.As4() || k.TpSrc != 80 || k.TpDst != natPort || m.TpDst != 0xffff ||
		m.NwDst != [4]byte{255, 255, 255, 255} || m.TpSrc != 0xffff || k.NwProto != packet.IPProtoTCP {
		t.Errorf("reply flow key %+v mask %+v: want 8.8.8.8:80 -> %v:%d exactly", k, m, natIP, natPort)
	}
	if last := pre[0].Actions[len(pre[0].Actions)-1]; !reflect.DeepEqual(last, datapath.Output(dpVM)) {
		t.Errorf("reply flow ends with %v, want output to the VM's port %d", last, dpVM)
	}

	// The reply, as the server sends it: no miss, translated back.
	misses := h1.dp.Stats().Misses
	reply := sim.PacketSpec{EthSrc: n.gwMAC, EthDst: n.upMAC, Src: extIP, Dst: natIP, Proto: packet.IPProtoTCP, SrcPort: 80, DstPort: natPort}
	inject(dpUp, reply)
	back := readIPv4(t, h1, dpVM)
	if back.Dst != vmIP || back.DstPort != 5000 || back.EthDst != n.vmMAC || back.EthSrc != n.rpMAC || back.Src != extIP {
		t.Fatalf("reply at the VM: %v:%d -> %v:%d eth %x, want 8.8.8.8:80 -> 10.0.0.10:5000 to the VM's MAC",
			back.Src, back.SrcPort, back.Dst, back.DstPort, back.EthDst)
	}
	if got := h1.dp.Stats().Misses; got != misses {
		t.Fatalf("the reply missed %d times, want 0 (its flow went in with the forward one)", got-misses)
	}

	// A reply the guess did not foresee (from another MAC) is simulated
	// when it arrives, and installs what was installed ahead: same mask,
	// same actions.
	other := mac(15)
	reply.EthSrc = other
	inject(dpUp, reply)
	readIPv4(t, h1, dpVM)
	if got := h1.dp.Stats().Misses; got != misses+1 {
		t.Fatalf("a reply from another MAC missed %d times, want 1", got-misses)
	}
	var real *datapath.Flow
	if !poll.Until(func() bool {
		for _, f := range flowsIn(t, h1, dpUp) {
			if f.Key.EthSrc == other {
				real = &f
				return true
			}
		}
		return false
	}, 5*time.Second) {
		t.Fatal("no flow installed for the reply from another MAC")
	}
	want := pre[0]
	want.Key.EthSrc = other
	if real.Key != want.Key || real.Mask != want.Mask || !reflect.DeepEqual(real.Actions, want.Actions) {
		t.Errorf("simulated reply's flow\n %+v\ndiffers from the one installed ahead (source MAC aside)\n %+v", *real, pre[0])
	}

	// Invalidating what only the forward flow depends on (its forward NAT
	// key) removes the reply flow installed with it, not the other.
	fwd := flowstate.NATKey{Type: flowstate.FwdSNAT, Src: vmIP, Dst: extIP, SrcPort: 5000, DstPort: 80, Proto: packet.IPProtoTCP, Device: n.router}
	if got := h1.flows.Invalidate([]sim.Tag{sim.NATTag(fwd)}); got != 2 {
		t.Errorf("invalidating the forward NAT key removed %d flows, want 2 (forward and its reply)", got)
	}
	left := flowsIn(t, h1, dpUp)
	if len(left) != 1 || left[0].Key.EthSrc != other {
		t.Errorf("flows from the uplink after the invalidation: %+v, want only the simulated reply's", left)
	}
	if f := flowsIn(t, h1, dpVM); len(f) != 0 {
		t.Errorf("forward flows left after the invalidation: %+v", f)
	}
}

// TestNoReplyFlowForARemoteEgress: a connection SNATed out of an uplink on
// another host installs no reply flow on the VM's host (the reply arrives
// over there), and the reply still returns through the uplink's host.
func TestNoReplyFlowForARemoteEgress(t *testing.T) {
	c := newCloud(t)
	h1, h2 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2")
	n := c.snatNet(h1, h2)
	dpVM, dpUp := h1.dpPort(t, "vm", n.vm), h2.dpPort(t, "up1", n.up)
	for _, a := range []*testAgent{h1, h2} {
		a.waitActive(t, n.vm)
		a.waitActive(t, n.up)
	}
	c.settle()
	h1.dp.Inject(dpVM, udpFrame(n.vmMAC, n.rpMAC, "10.0.0.10", "8.8.8.8", 5000, 53))
	f := readIPv4(t, h2, dpUp)
	if !poll.Until(func() bool { return counterValue(h2.metrics.stateReceived) > 0 }, 3*time.Second) {
		t.Fatal("the uplink's host received no flow state")
	}
	h2.dp.Inject(dpUp, udpFrame(n.gwMAC, n.upMAC, "8.8.8.8", "203.0.113.1", 53, f.SrcPort))
	back := readIPv4(t, h1, dpVM)
	if back.Dst != netip.MustParseAddr("10.0.0.10") || back.DstPort != 5000 {
		t.Fatalf("reply at the VM: %v:%d, want 10.0.0.10:5000", back.Dst, back.DstPort)
	}
	if got := counterValue(h1.metrics.repliesInstalled) + counterValue(h2.metrics.repliesInstalled); got != 0 {
		t.Errorf("%v reply flows installed, want none: the egress is not on the VM's host", got)
	}
}

// TestReplyFlowsOff: with Config.NoReplyFlows (--reply-flows=false) the
// reply is simulated when it arrives, one miss, as before.
func TestReplyFlowsOff(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgentWith("h1", "10.9.0.1", func(cfg *Config) { cfg.NoReplyFlows = true })
	n, dpVM, dpUp := c.snatOnOneHost(t, h1)
	h1.dp.Inject(dpVM, udpFrame(n.vmMAC, n.rpMAC, "10.0.0.10", "8.8.8.8", 5000, 53))
	out := readIPv4(t, h1, dpUp)
	if !poll.Until(func() bool { return h1.Flows() >= 1 }, 5*time.Second) {
		t.Fatal("no forward flow installed")
	}
	misses := h1.dp.Stats().Misses
	h1.dp.Inject(dpUp, udpFrame(n.gwMAC, n.upMAC, "8.8.8.8", "203.0.113.1", 53, out.SrcPort))
	if back := readIPv4(t, h1, dpVM); back.DstPort != 5000 {
		t.Fatalf("reply at the VM to port %d, want 5000", back.DstPort)
	}
	if got := h1.dp.Stats().Misses - misses; got != 1 {
		t.Errorf("the reply missed %d times, want 1 (simulated on arrival)", got)
	}
	if got := counterValue(h1.metrics.repliesInstalled); got != 0 {
		t.Errorf("%v reply flows installed with NoReplyFlows", got)
	}
}

// executeSpy is a mem datapath that, when a frame from port from is
// executed, records the flows installed for packets from port of then.
type executeSpy struct {
	*mem.Datapath
	from, of atomic.Uint32 // datapath.PortNo; 0: not yet known
	mu       sync.Mutex
	seen     [][]datapath.Flow // guarded by mu
}

func (s *executeSpy) Execute(frame []byte, acts []datapath.Action, in datapath.PortNo) error {
	if from := s.from.Load(); from != 0 && uint32(in) == from {
		var fs []datapath.Flow
		s.Datapath.DumpFlows(func(f *datapath.Flow) bool {
			if f.Key.InPort == s.of.Load() {
				fs = append(fs, *f)
			}
			return true
		})
		s.mu.Lock()
		s.seen = append(s.seen, fs)
		s.mu.Unlock()
	}
	return s.Datapath.Execute(frame, acts, in)
}

// TestReplyFlowInBeforeTheForwardPacketLeaves: the reply's flow must be in
// the datapath when the forward packet is sent, since the peer may answer
// before the worker is done with the forward packet (on the userspace
// datapath the reply then came up to userspace, 60 µs instead of 3).
func TestReplyFlowInBeforeTheForwardPacketLeaves(t *testing.T) {
	c := newCloud(t)
	var spy *executeSpy
	h1 := c.addAgentWith("h1", "10.9.0.1", func(cfg *Config) {
		spy = &executeSpy{Datapath: cfg.Datapath.(*mem.Datapath)}
		cfg.Datapath = spy
	})
	n, dpVM, dpUp := c.snatOnOneHost(t, h1)
	spy.of.Store(uint32(dpUp))
	spy.from.Store(uint32(dpVM))

	syn := sim.PacketSpec{EthSrc: n.vmMAC, EthDst: n.rpMAC, Src: netip.MustParseAddr("10.0.0.10"),
		Dst: netip.MustParseAddr("8.8.8.8"), Proto: packet.IPProtoTCP, SrcPort: 5001, DstPort: 80}
	fr, err := syn.Frame()
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.dp.Inject(dpVM, fr); err != nil {
		t.Fatal(err)
	}
	readIPv4(t, h1, dpUp)
	spy.mu.Lock()
	defer spy.mu.Unlock()
	if len(spy.seen) != 1 {
		t.Fatalf("the SYN was executed %d times, want once", len(spy.seen))
	}
	if got := spy.seen[0]; len(got) != 1 || got[0].Key.TpSrc != 80 {
		t.Fatalf("flows from the uplink when the SYN left: %+v, want the reply's", got)
	}
}
