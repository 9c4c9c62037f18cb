package agent

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/topology"
)

// readFrame waits for a frame on a port whose destination MAC is dst.
func readFrame(t testing.TB, a *testAgent, port datapath.PortNo, dst [6]byte) *packet.Parsed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for {
		f, err := a.dp.Read(ctx, port)
		if err != nil {
			t.Fatalf("no frame to %x on port %d: %v", dst, port, err)
		}
		var p packet.Parsed
		p.Decode(f.Data)
		if p.EthDst == dst {
			return &p
		}
	}
}

// A mirror on a port copies what matches its condition to a port on
// another host, through the overlay; what does not match stays uncopied.
func TestMirrorCopiesAcrossHosts(t *testing.T) {
	c := newCloud(t)
	h1, h2 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2")
	bridge, taps, mirror := topology.NewID(), topology.NewID(), topology.NewID()
	c.update(func(tx topology.Store) error {
		if err := tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}); err != nil {
			return err
		}
		return tx.Create(&topology.Bridge{ID: taps, AdminStateUp: true})
	})
	p1, p2 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h1, "vm2")
	tap := c.bridgePort(taps, h2, "tap")
	dp1, dp2, dpTap := h1.dpPort(t, "vm1", p1), h1.dpPort(t, "vm2", p2), h2.dpPort(t, "tap", tap)
	h1.waitActive(t, tap)
	udp := 17
	c.update(func(tx topology.Store) error {
		if err := tx.Create(&topology.Mirror{ID: mirror, ToPortID: &tap,
			Conditions: []topology.MirrorCondition{{Condition: topology.Condition{NwProto: &udp, TpDst: &topology.PortRange{Start: 53, End: 53}}}}}); err != nil {
			return err
		}
		var p topology.Port
		if err := tx.Get(topology.KindPort, p1.String(), &p); err != nil {
			return err
		}
		p.InboundMirrorIDs = []topology.ID{mirror}
		return tx.Put(&p)
	})
	c.settle()
	// The bridge must know vm2's MAC, or the frame floods to the tap too.
	h1.dp.Inject(dp2, udpFrame(mac(2), mac(1), "10.0.0.2", "10.0.0.1", 1, 1))
	readFrame(t, h1, dp1, mac(1))
	c.settle()
	for range 3 {
		h1.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 53))
		readFrame(t, h1, dp2, mac(2))
		if got := readFrame(t, h2, dpTap, mac(2)); got.DstPort != 53 {
			t.Errorf("the tap got a copy to port %d, want 53", got.DstPort)
		}
	}
	h1.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 54))
	readFrame(t, h1, dp2, mac(2))
	expectNoFrame(t, h2, dpTap, 300*time.Millisecond)
}

// A port's QoS policy marks DSCP on what the VM sends (keeping ECN), and
// its bandwidth limit polices the port in the datapath; the bridge's
// policy applies to ports without their own, and removing the policy
// removes both.
func TestQoSPolicyOnAPort(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgent("h1", "10.9.0.1")
	bridge, policy, bw := topology.NewID(), topology.NewID(), topology.NewID()
	c.update(func(tx topology.Store) error {
		if err := tx.Create(&topology.QOSPolicy{ID: policy, Name: topology.Str("gold")}); err != nil {
			return err
		}
		if err := tx.Create(&topology.QOSDSCPRule{ID: topology.NewID(), DSCPMark: 46, PolicyID: &policy}); err != nil {
			return err
		}
		burst := 24 // kilobits: two 1.5 KB frames
		if err := tx.Create(&topology.QOSBWLimitRule{ID: bw, MaxKbps: 8, MaxBurstKb: &burst, PolicyID: &policy}); err != nil {
			return err
		}
		return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true, QOSPolicyID: &policy})
	})
	p1, p2 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h1, "vm2")
	dp1, dp2 := h1.dpPort(t, "vm1", p1), h1.dpPort(t, "vm2", p2)
	c.settle()
	// 1 KB datagrams: the 3 KB burst passes three.
	frame := packet.AppendIPv4UDP(nil, packet.UDP4Fields{EthSrc: mac(1), EthDst: mac(2),
		Src: netip.MustParseAddr("10.0.0.1").As4(), Dst: netip.MustParseAddr("10.0.0.2").As4(), TTL: 64,
		SrcPort: 1000, DstPort: 2000, TOS: 0x01, Checksum: true}, make([]byte, 1000)) // ECN ECT(1)
	h1.dp.Inject(dp1, frame)
	if got := readFrame(t, h1, dp2, mac(2)); got.TOS != 46<<2|1 {
		t.Errorf("TOS %#x, want DSCP 46 with the ECN bits kept (%#x)", got.TOS, 46<<2|1)
	}
	limited := func() uint64 {
		for _, p := range h1.dp.Ports() {
			if p.No == dp1 {
				return p.Stats.RxLimited
			}
		}
		return 0
	}
	for range 20 {
		h1.dp.Inject(dp1, frame)
	}
	if n := limited(); n < 15 {
		t.Errorf("%d of 20 frames over an 8 kbit/s limit with a 3 KB burst were dropped; want most", n)
	}
	// The port's own policy, without rules, wins over the bridge's.
	empty := topology.NewID()
	c.update(func(tx topology.Store) error {
		if err := tx.Create(&topology.QOSPolicy{ID: empty}); err != nil {
			return err
		}
		var p topology.Port
		if err := tx.Get(topology.KindPort, p1.String(), &p); err != nil {
			return err
		}
		p.QOSPolicyID = &empty
		return tx.Put(&p)
	})
	c.settle()
	before := limited()
	if !poll.Until(func() bool {
		h1.dp.Inject(dp1, frame)
		got := readFrame(t, h1, dp2, mac(2))
		return got.TOS == 1
	}, 3*time.Second) {
		t.Error("the bridge's DSCP mark still applies to a port with a policy of its own")
	}
	// The port's rate limit is applied to the datapath just after the
	// snapshot the mark comes from: a frame in between may meet the old
	// limiter, but from then on none does.
	var n uint64
	if !poll.Until(func() bool {
		before = limited()
		for range 20 {
			h1.dp.Inject(dp1, frame)
		}
		n = limited() - before
		return n == 0
	}, 3*time.Second) {
		t.Errorf("%d of 20 frames limited after the port got a policy without a limit", n)
	}
}

// A flow simulated before the flow state it depends on arrived goes when
// the state arrives: here a reply a security group dropped as not (yet)
// part of a connection, then the connection's state from the other host.
func TestArrivingFlowStateInvalidatesStaleFlows(t *testing.T) {
	c := newCloud(t)
	h1, h2 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2")
	bridge, track, returns := topology.NewID(), topology.NewID(), topology.NewID()
	c.update(func(tx topology.Store) error {
		if err := tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}); err != nil {
			return err
		}
		for _, ch := range []topology.ID{track, returns} {
			if err := tx.Create(&topology.Chain{ID: ch}); err != nil {
				return err
			}
		}
		return nil
	})
	c.appendRule(track, topology.Rule{ID: topology.NewID(), Type: topology.RuleAccept, ChainID: track,
		Condition: topology.Condition{MatchForwardFlow: true}})
	c.appendRule(returns, topology.Rule{ID: topology.NewID(), Type: topology.RuleAccept, ChainID: returns,
		Condition: topology.Condition{MatchReturnFlow: true}})
	c.appendRule(returns, topology.Rule{ID: topology.NewID(), Type: topology.RuleDrop, ChainID: returns})
	p1 := c.createPort(topology.Port{Type: topology.PortTypeBridge, DeviceID: bridge, InboundFilterID: &track}, h1, "vm1")
	p2 := c.createPort(topology.Port{Type: topology.PortTypeBridge, DeviceID: bridge, InboundFilterID: &returns}, h2, "vm2")
	dp1, dp2 := h1.dpPort(t, "vm1", p1), h2.dpPort(t, "vm2", p2)
	h1.waitActive(t, p2)
	h2.waitActive(t, p1)
	c.settle()
	reply := udpFrame(mac(2), mac(1), "10.0.0.2", "10.0.0.1", 2000, 1000)
	// Before any connection, vm2's datagram is no reply: dropped, with a
	// flow.
	h2.dp.Inject(dp2, reply)
	if !poll.Until(func() bool { return h2.Flows() > 0 }, 3*time.Second) {
		t.Fatal("no drop flow on h2")
	}
	// vm1 opens the connection: its state reaches h2 with the datagram.
	h1.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 2000))
	readFrame(t, h2, dp2, mac(2))
	// The reply now passes: the drop flow went with the state's arrival.
	h2.dp.Inject(dp2, reply)
	readFrame(t, h1, dp1, mac(1))
}
