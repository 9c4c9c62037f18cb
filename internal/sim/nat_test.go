package sim

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

const (
	fipIP = "192.0.2.50"
	vipIP = "192.0.2.80"
)

func natRule(typ string, cond topology.Condition, targets ...topology.NatTarget) topology.Rule {
	return topology.Rule{Type: typ, FlowAction: topology.Str(topology.FlowAccept), Condition: cond, NatTargets: targets}
}

func target(from, to string, pFrom, pTo int) topology.NatTarget {
	return topology.NatTarget{AddressFrom: topology.Str(from), AddressTo: topology.Str(to), PortFrom: pFrom, PortTo: pTo}
}

// natTopo is routerTopo with Neutron-style NAT on the tenant router:
// inbound [FIP DNAT, dynamic DNAT of a VIP, reverse SNAT], outbound
// [FIP SNAT, reverse DNAT, default SNAT to the uplink address].
func natTopo(t testing.TB, portFrom, portTo int) (*topo, map[string]ID) {
	tp, ids := routerTopo(t)
	tp.arp(ids["rtr"], vmIP, vmMAC)
	up := []ID{ids["up"]}
	in := tp.chain("rtr-in",
		natRule(topology.RuleDNAT, topology.Condition{NwDstAddress: topology.Str(fipIP), NwDstLength: 32}, target(vmIP, vmIP, 0, 0)),
		natRule(topology.RuleDNAT, topology.Condition{NwDstAddress: topology.Str(vipIP), NwDstLength: 32, NwProto: ptr(6)},
			target(vmIP, vmIP, 8080, 8080)),
		natRule(topology.RuleRevSNAT, topology.Condition{InPorts: up, NwDstAddress: topology.Str(upIP), NwDstLength: 32}),
	)
	out := tp.chain("rtr-out",
		natRule(topology.RuleSNAT, topology.Condition{OutPorts: up, NwSrcAddress: topology.Str("10.0.0.12"), NwSrcLength: 32},
			target(fipIP, fipIP, 0, 0)),
		natRule(topology.RuleRevDNAT, topology.Condition{OutPorts: up}),
		natRule(topology.RuleSNAT, topology.Condition{OutPorts: up, NwSrcAddress: topology.Str("10.0.0.0"), NwSrcLength: 24},
			target(upIP, upIP, portFrom, portTo)),
	)
	tp.in.Routers[0].InboundFilterID = topology.IDPtr(in)
	tp.in.Routers[0].OutboundFilterID = topology.IDPtr(out)
	return tp, ids
}

func natEntry(r *Result, typ flowstate.NATKeyType) (flowstate.NATEntry, bool) {
	for _, e := range r.NAT {
		if e.Key.Type == typ {
			return e, true
		}
	}
	return flowstate.NATEntry{}, false
}

func TestDynamicSNATAndReturn(t *testing.T) {
	tp, ids := natTopo(t, 1024, 65535)
	snap := tp.snapshot()
	tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
	view := tables.View(0)

	fwd := run(t, snap, view, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443))
	if fwd.Kind != Forward || !sameIDs(egressPorts(fwd), []ID{ids["up"]}) {
		t.Fatalf("forward: %v %v %v", fwd.Kind, fwd.Reason, egressPorts(fwd))
	}
	v := fwd.Egress[0].Values
	if v.NwSrc != ip(upIP).As4() || v.TpSrc < 1024 || fwd.Egress[0].Set&(FieldNwSrc|FieldTpSrc) != FieldNwSrc|FieldTpSrc {
		t.Fatalf("SNAT rewrite: src %v:%d set %v", addr4(v.NwSrc), v.TpSrc, fwd.Egress[0].Set)
	}
	if fwd.HardTimeout != StatefulFlowTimeout || len(fwd.NAT) != 2 {
		t.Fatalf("stateful flow: timeout %v, %d NAT entries", fwd.HardTimeout, len(fwd.NAT))
	}
	rev, ok := natEntry(fwd, flowstate.RevSNAT)
	wantRev := flowstate.NATKey{Type: flowstate.RevSNAT, Src: ip("8.8.8.8"), Dst: ip(upIP), SrcPort: 443, DstPort: v.TpSrc, Proto: 6, Device: ids["rtr"]}
	if !ok || rev.Key != wantRev || rev.Binding != (flowstate.NATBinding{IP: ip(vmIP), Port: 40000}) {
		t.Fatalf("reverse entry %+v, want key %+v", rev, wantRev)
	}
	if fwd.Mask.NwSrc != [4]byte{255, 255, 255, 255} || fwd.Mask.TpSrc != 0xffff || fwd.Mask.TpDst != 0xffff {
		t.Errorf("SNAT flow must match the whole 5-tuple: %+v", fwd.Mask)
	}
	natPort := v.TpSrc

	// Without the state, the reply is addressed to the router itself.
	reply := tcp(gwMAC, upMAC, "8.8.8.8", upIP, 443, natPort)
	if r := run(t, snap, view, ids["up"], reply); r.Kind != TemporaryDrop || r.Reason != ReasonLocalRoute {
		t.Fatalf("reply before commit: %v %v", r.Kind, r.Reason)
	}
	commit(tables.Shard(0), fwd)
	back := run(t, snap, view, ids["up"], reply)
	if back.Kind != Forward || !sameIDs(egressPorts(back), []ID{ids["vm1"]}) {
		t.Fatalf("reply: %v %v %v", back.Kind, back.Reason, egressPorts(back))
	}
	if bv := back.Egress[0].Values; bv.NwDst != ip(vmIP).As4() || bv.TpDst != 40000 {
		t.Errorf("reverse SNAT: dst %v:%d", addr4(bv.NwDst), bv.TpDst)
	}
	if len(back.NAT) != 0 || !hasTag(back, NATTag(wantRev)) {
		t.Errorf("return flow: %d NAT entries (want 0), tagged with the key: %v", len(back.NAT), hasTag(back, NATTag(wantRev)))
	}

	// The same connection simulated again keeps its binding.
	again := run(t, snap, view, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443))
	if again.Egress[0].Values.TpSrc != natPort {
		t.Errorf("re-simulation changed the NAT port %d → %d", natPort, again.Egress[0].Values.TpSrc)
	}
}

func TestSNATNeverReusesPortTowardsSameDestination(t *testing.T) {
	tp, ids := natTopo(t, 5000, 5001)
	snap := tp.snapshot()
	tables := flowstate.NewTables(2, flowstate.DefaultIdleTTL)
	sim := NewSimulator(7)
	used := map[uint16]bool{}
	for i, sp := range []uint16{1000, 1001} {
		r := sim.Simulate(snap, tables.View(i%2), mkPacket(t, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", sp, 443)), testNow)
		if r.Kind != Forward {
			t.Fatalf("connection %d: %v %v", i, r.Kind, r.Reason)
		}
		p := r.Egress[0].Values.TpSrc
		if used[p] {
			t.Fatalf("port %d allocated twice towards 8.8.8.8:443", p)
		}
		used[p] = true
		tables.Shard(i%2).Commit(r.Conntrack, r.NAT)
	}
	r := sim.Simulate(snap, tables.View(0), mkPacket(t, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1002, 443)), testNow)
	if r.Kind != Drop || r.Reason != ReasonNATExhausted {
		t.Fatalf("third connection: %v %v, want nat-exhausted drop", r.Kind, r.Reason)
	}
	r = sim.Simulate(snap, tables.View(0), mkPacket(t, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.4.4", 1002, 443)), testNow)
	if r.Kind != Forward {
		t.Fatalf("another destination may reuse the ports: %v %v", r.Kind, r.Reason)
	}
}

func TestSNATOfICMPEchoKeepsIdentifier(t *testing.T) {
	for _, tc := range []struct {
		matchICMPID bool
		want        Kind
	}{
		{false, UserspaceOnly}, // MidoNet's datapath has no identifier to match
		{true, Forward},
	} {
		t.Run(fmt.Sprint("icmp-id=", tc.matchICMPID), func(t *testing.T) {
			tp, ids := natTopo(t, 1024, 65535)
			snap := tp.snapshot()
			tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
			sim := NewSimulator(1)
			sim.MatchICMPID(tc.matchICMPID)
			fwd := sim.Simulate(snap, tables.View(0), mkPacket(t, ids["vm1"], icmpEcho(vmMAC, rtrMAC, vmIP, "8.8.8.8", 4242)), testNow)
			if fwd.Kind != tc.want {
				t.Fatalf("ICMP through dynamic NAT: %v %v, want %v", fwd.Kind, fwd.Reason, tc.want)
			}
			if v := fwd.Egress[0].Values; v.NwSrc != ip(upIP).As4() || v.ICMPID != 4242 || fwd.Egress[0].Set&(FieldTpSrc|FieldICMPID) != 0 {
				t.Fatalf("ICMP SNAT: %+v set %v", v, fwd.Egress[0].Set)
			}
			if tc.matchICMPID && (fwd.Mask.ICMPID != 0xffff || fwd.Mask.TpSrc != 0xffff || fwd.Mask.NwProto != 0xff) {
				t.Fatalf("flow of a NATed echo must match its identifier, type and protocol: mask %+v", fwd.Mask)
			}
			commit(tables.Shard(0), fwd)
			reply := PacketSpec{EthSrc: mac(gwMAC), EthDst: mac(upMAC), Src: ip("8.8.8.8"), Dst: ip(upIP), Proto: packet.IPProtoICMP,
				SrcPort: uint16(packet.ICMPEchoReply), ICMPID: 4242}
			back := sim.Simulate(snap, tables.View(0), mkPacket(t, ids["up"], reply), testNow)
			if back.Kind != fwd.Kind || back.Egress[0].Values.NwDst != ip(vmIP).As4() {
				t.Fatalf("echo reply: %v %v %+v", back.Kind, back.Reason, back.Egress)
			}
			// Another ping's reply to the NAT address has no binding: with
			// the identifier in the flow key it cannot ride the first one's flow.
			reply.ICMPID = 4243
			other := sim.Simulate(snap, tables.View(0), mkPacket(t, ids["up"], reply), testNow)
			if len(other.Egress) != 0 && other.Egress[0].Port == ids["vm1"] {
				t.Fatalf("reply without a binding reached vm1: %v %+v", other.Kind, other.Egress)
			}
			if tc.matchICMPID {
				k, m := reply, back.Mask
				k.ICMPID = 4242
				a, b := mkPacket(t, ids["up"], k).Match.FlowKey, mkPacket(t, ids["up"], reply).Match.FlowKey
				if a.Masked(&m) == b.Masked(&m) {
					t.Fatal("the reply flow's mask does not tell two echo identifiers apart")
				}
			}
		})
	}
}

// snatUDPFlow builds natTopo and commits the state of vm1's UDP flow
// 5353 → 8.8.8.8:53 through its SNAT; natPort is the translated source port.
func snatUDPFlow(t *testing.T) (snap *Snapshot, tables *flowstate.Tables, ids map[string]ID, natPort uint16) {
	t.Helper()
	tp, ids := natTopo(t, 1024, 65535)
	snap = tp.snapshot()
	tables = flowstate.NewTables(1, flowstate.DefaultIdleTTL)
	fwd := run(t, snap, tables.View(0), ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 5353, 53))
	commit(tables.Shard(0), fwd)
	return snap, tables, ids, fwd.Egress[0].Values.TpSrc
}

func TestICMPErrorIsReverseNATed(t *testing.T) {
	snap, tables, ids, natPort := snatUDPFlow(t)
	// 8.8.8.8 answers "port unreachable", quoting the translated datagram.
	errSpec := icmpError(t, gwMAC, upMAC, "8.8.8.8", upIP, udp(upMAC, gwMAC, upIP, "8.8.8.8", natPort, 53))
	r := run(t, snap, tables.View(0), ids["up"], errSpec)
	// ICMPID of the spec lands in the unused field; irrelevant for errors.
	if r.Kind != UserspaceOnly || !sameIDs(egressPorts(r), []ID{ids["vm1"]}) {
		t.Fatalf("ICMP error: %v %v %v", r.Kind, r.Reason, egressPorts(r))
	}
	e := r.Egress[0]
	d := e.Values.ICMPData
	if e.Values.NwDst != ip(vmIP).As4() || e.Set&FieldICMPData == 0 || d.Src != ip(vmIP).As4() || d.SrcPort != 5353 || d.Dst != ip("8.8.8.8").As4() {
		t.Fatalf("ICMP error translation: dst %v quoted %+v set %v", addr4(e.Values.NwDst), d, e.Set)
	}
}

func TestStaticFloatingIP(t *testing.T) {
	tp, ids := natTopo(t, 1024, 65535)
	tp.arp(ids["rtr"], "10.0.0.12", "02:00:00:00:00:12")
	snap := tp.snapshot()
	in := run(t, snap, nil, ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", fipIP, 5555, 22))
	if in.Kind != Forward || in.Egress[0].Values.NwDst != ip(vmIP).As4() || len(in.NAT) != 0 || in.HardTimeout != FlowTimeout {
		t.Fatalf("FIP DNAT: %v %v %+v NAT %d timeout %v", in.Kind, in.Reason, in.Egress, len(in.NAT), in.HardTimeout)
	}
	out := run(t, snap, nil, ids["vm1"], tcp("02:00:00:00:00:12", rtrMAC, "10.0.0.12", "8.8.8.8", 22, 5555))
	if out.Kind != Forward || out.Egress[0].Values.NwSrc != ip(fipIP).As4() || out.Egress[0].Set&FieldTpSrc != 0 {
		t.Fatalf("FIP SNAT: %v %v %+v", out.Kind, out.Reason, out.Egress)
	}
}

func TestDynamicDNATAndReverse(t *testing.T) {
	tp, ids := natTopo(t, 1024, 65535)
	snap := tp.snapshot()
	tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
	in := run(t, snap, tables.View(0), ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", vipIP, 6000, 80))
	if in.Kind != Forward || in.Egress[0].Values.NwDst != ip(vmIP).As4() || in.Egress[0].Values.TpDst != 8080 {
		t.Fatalf("DNAT: %v %v %+v", in.Kind, in.Reason, in.Egress)
	}
	if e, ok := natEntry(in, flowstate.RevDNAT); !ok || e.Key.Src != ip(vmIP) || e.Key.SrcPort != 8080 || e.Binding.Port != 80 {
		t.Fatalf("reverse DNAT entry %+v", e)
	}
	commit(tables.Shard(0), in)
	out := run(t, snap, tables.View(0), ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 8080, 6000))
	if out.Kind != Forward {
		t.Fatalf("reply: %v %v", out.Kind, out.Reason)
	}
	if v := out.Egress[0].Values; v.NwSrc != ip(vipIP).As4() || v.TpSrc != 80 {
		t.Errorf("reverse DNAT: src %v:%d, want the VIP", addr4(v.NwSrc), v.TpSrc)
	}
}

func TestNATStateExpiresWithoutReferences(t *testing.T) {
	tp, ids := natTopo(t, 1024, 65535)
	snap := tp.snapshot()
	tables := flowstate.NewTables(1, time.Minute)
	fwd := run(t, snap, tables.View(0), ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443))
	sh := tables.Shard(0)
	sh.Commit(fwd.Conntrack, fwd.NAT)
	natPort := fwd.Egress[0].Values.TpSrc
	sh.Release(fwd.Conntrack, fwd.NAT, testNow)
	sh.NAT.Expire(testNow.Add(2*time.Minute), nil)
	r := run(t, snap, tables.View(0), ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", upIP, 443, natPort))
	if r.Kind == Forward {
		t.Fatal("reply still translated after the binding expired")
	}
}

func TestICMPErrorFromInsideIsForwardNATed(t *testing.T) {
	// vm1 talks to 8.8.8.8 through SNAT; 8.8.8.8's reply reaches vm1, which
	// answers "port unreachable": the error leaves with the NAT address
	// and the quoted reply's destination translated too.
	snap, tables, ids, natPort := snatUDPFlow(t)
	spec := icmpError(t, vmMAC, rtrMAC, vmIP, "8.8.8.8", udp(gwMAC, vmMAC, "8.8.8.8", vmIP, 53, 5353))
	r := run(t, snap, tables.View(0), ids["vm1"], spec)
	if r.Kind != UserspaceOnly || !sameIDs(egressPorts(r), []ID{ids["up"]}) {
		t.Fatalf("%v %v %v", r.Kind, r.Reason, egressPorts(r))
	}
	v := r.Egress[0].Values
	if v.NwSrc != ip(upIP).As4() || v.ICMPData.Dst != ip(upIP).As4() || v.ICMPData.DstPort != natPort || v.ICMPData.Src != ip("8.8.8.8").As4() {
		t.Fatalf("outer src %v, quoted %+v (NAT port %d)", addr4(v.NwSrc), v.ICMPData, natPort)
	}
	if len(r.NAT) != 0 {
		t.Errorf("an ICMP error created NAT state: %+v", r.NAT)
	}
}

func TestICMPFieldsComeFromTheFrame(t *testing.T) {
	// A datapath without ICMPEchoID delivers a flow key with no ICMP
	// identifier; MatchOf supplies it from the frame.
	tp, ids := natTopo(t, 1024, 65535)
	pkt := mkPacket(t, ids["vm1"], icmpEcho(vmMAC, rtrMAC, vmIP, "8.8.8.8", 4242))
	k := pkt.Match.FlowKey
	k.ICMPID = 0
	pkt.Match = MatchOf(&k, pkt.Frame)
	r := NewSimulator(1).Simulate(tp.snapshot(), nil, pkt, testNow)
	if r.Kind != UserspaceOnly || len(r.NAT) == 0 || r.NAT[0].Key.SrcPort != 4242 {
		t.Fatalf("%v NAT %+v", r.Kind, r.NAT)
	}
}

// leasedTables returns flow-state tables that track SNAT leases, with
// blocks granted for the uplink address of the router rtr.
func leasedTables(rtr ID, blocks ...uint16) (*flowstate.Tables, *flowstate.SNATLeases) {
	tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
	leases := flowstate.NewSNATLeases(nil)
	tables.TrackSNAT(leases)
	for _, b := range blocks {
		leases.Grant(flowstate.NATAddr{Device: rtr, IP: ip(upIP)}, b)
	}
	return tables, leases
}

// TestSNATAllocatesInsideLeasedBlocks: with leased blocks, a new
// connection's port comes from a block this host holds and inside the
// rule's range; when none has a free port towards the destination, the
// result asks for a block of the address instead, and another destination
// may still reuse the ports.
func TestSNATAllocatesInsideLeasedBlocks(t *testing.T) {
	for _, tc := range []struct {
		name             string
		from, to         int
		held             []uint16
		conns            int // connections to 8.8.8.8:443 before the checked one
		wantLease        bool
		wantLo, wantHi   uint16 // the port range the result must lie in, or ask for
		otherDestination bool   // the checked connection goes to 8.8.4.4 instead
	}{
		{name: "no block held", from: 1024, to: 65535, wantLease: true, wantLo: 1024, wantHi: 65535},
		{name: "one block", from: 1024, to: 65535, held: []uint16{20}, wantLo: 1280, wantHi: 1343},
		{name: "two blocks", from: 1024, to: 65535, held: []uint16{20, 21}, conns: 127, wantLo: 1280, wantHi: 1407},
		{name: "two blocks full", from: 1024, to: 65535, held: []uint16{20, 21}, conns: 128,
			wantLease: true, wantLo: 1024, wantHi: 65535},
		{name: "all held ports used towards the destination", from: 1024, to: 65535, held: []uint16{20}, conns: 64,
			wantLease: true, wantLo: 1024, wantHi: 65535},
		{name: "another destination reuses the ports", from: 1024, to: 65535, held: []uint16{20}, conns: 64,
			otherDestination: true, wantLo: 1280, wantHi: 1343},
		{name: "range inside a block", from: 1300, to: 1302, held: []uint16{20}, conns: 2, wantLo: 1300, wantHi: 1302},
		{name: "range inside a block, full", from: 1300, to: 1302, held: []uint16{20}, conns: 3,
			wantLease: true, wantLo: 1300, wantHi: 1302},
		{name: "held block outside the range", from: 1300, to: 1302, held: []uint16{30}, wantLease: true, wantLo: 1300, wantHi: 1302},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, ids := natTopo(t, tc.from, tc.to)
			snap := tp.snapshot()
			tables, _ := leasedTables(ids["rtr"], tc.held...)
			s := NewSimulator(3)
			for i := range tc.conns {
				r := s.Simulate(snap, tables.View(0), mkPacket(t, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", uint16(2000+i), 443)), testNow)
				if r.Kind != Forward {
					t.Fatalf("connection %d: %v %v", i, r.Kind, r.Reason)
				}
				tables.Shard(0).Commit(r.Conntrack, r.NAT)
			}
			dst := "8.8.8.8"
			if tc.otherDestination {
				dst = "8.8.4.4"
			}
			r := s.Simulate(snap, tables.View(0), mkPacket(t, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, dst, 9999, 443)), testNow)
			if tc.wantLease {
				want := NATLeaseRequest{Device: ids["rtr"], IP: ip(upIP), PortFrom: tc.wantLo, PortTo: tc.wantHi}
				if r.Kind != NATLeaseNeeded || r.NATLease != want {
					t.Fatalf("got %v %+v, want nat-lease-needed %+v", r.Kind, r.NATLease, want)
				}
				if len(r.Egress) != 0 || len(r.NAT) != 0 || len(r.Conntrack) != 0 {
					t.Fatalf("a packet waiting for a block keeps nothing: %d egress, %d NAT, %d conntrack",
						len(r.Egress), len(r.NAT), len(r.Conntrack))
				}
				return
			}
			if r.Kind != Forward {
				t.Fatalf("got %v %v, want forward", r.Kind, r.Reason)
			}
			if p := r.Egress[0].Values.TpSrc; p < tc.wantLo || p > tc.wantHi {
				t.Fatalf("port %d, want one in [%d, %d]", p, tc.wantLo, tc.wantHi)
			}
		})
	}
}

// TestSNATOfICMPNeedsNoLease: an echo keeps its identifier, so it needs no
// port block.
func TestSNATOfICMPNeedsNoLease(t *testing.T) {
	tp, ids := natTopo(t, 1024, 65535)
	tables, _ := leasedTables(ids["rtr"])
	r := NewSimulator(1).Simulate(tp.snapshot(), tables.View(0), mkPacket(t, ids["vm1"], icmpEcho(vmMAC, rtrMAC, vmIP, "8.8.8.8", 7)), testNow)
	if r.Kind != Forward && r.Kind != UserspaceOnly {
		t.Fatalf("echo through SNAT with no block: %v %v", r.Kind, r.Reason)
	}
}

// TestSNATLeasedAllocationDoesNotAllocate holds the allocation of a new
// connection's port inside leased blocks to zero allocations.
func TestSNATLeasedAllocationDoesNotAllocate(t *testing.T) {
	tp, ids := natTopo(t, 1024, 65535)
	snap := tp.snapshot()
	tables, _ := leasedTables(ids["rtr"], 20, 40)
	s := NewSimulator(1)
	pkt := mkPacket(t, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443))
	if r := s.Simulate(snap, tables.View(0), pkt, testNow); r.Kind != Forward {
		t.Fatalf("kind %v %v", r.Kind, r.Reason)
	}
	if a := testing.AllocsPerRun(100, func() { s.Simulate(snap, tables.View(0), pkt, testNow) }); a != 0 {
		t.Errorf("%v allocations per new SNAT connection, want 0", a)
	}
}

// TestSNATWorkersShareBlocksWithoutCollision: two workers of one host
// simulate new connections to one destination at the same time, each
// recording its keys only after its simulation, with simulators that make
// the same random picks: each gives out only its share of the held block's
// ports, so no port goes to two connections.
func TestSNATWorkersShareBlocksWithoutCollision(t *testing.T) {
	tp, ids := natTopo(t, 1024, 65535)
	snap := tp.snapshot()
	tables := flowstate.NewTables(3, flowstate.DefaultIdleTTL) // two workers and the imported state
	leases := flowstate.NewSNATLeases(nil)
	tables.TrackSNAT(leases)
	leases.Grant(flowstate.NATAddr{Device: ids["rtr"], IP: ip(upIP)}, 20)
	workers := []*Simulator{NewSimulator(7), NewSimulator(7)}
	given := map[uint16]int{}
	for i := range 32 {
		var results [2]Result
		for w, s := range workers {
			r := s.Simulate(snap, tables.View(w), mkPacket(t, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", uint16(2000+2*i+w), 443)), testNow)
			if r.Kind != Forward {
				t.Fatalf("worker %d, connection %d: %v %v", w, i, r.Kind, r.Reason)
			}
			results[w] = *r
			results[w].NAT = slices.Clone(r.NAT)
			results[w].Conntrack = slices.Clone(r.Conntrack)
			results[w].Egress = slices.Clone(r.Egress)
		}
		for w := range workers {
			p := results[w].Egress[0].Values.TpSrc
			if prev, dup := given[p]; dup {
				t.Fatalf("port %d given to worker %d's connection %d and to worker %d's", p, w, i, prev)
			}
			if p < 1280 || p > 1343 || int(p)%2 != w {
				t.Fatalf("worker %d gave port %d: want one of block 20 (1280-1343) with p%%2 == %d", w, p, w)
			}
			given[p] = w
			tables.Shard(w).Commit(results[w].Conntrack, results[w].NAT)
		}
	}
	r := workers[0].Simulate(snap, tables.View(0), mkPacket(t, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 9999, 443)), testNow)
	if r.Kind != NATLeaseNeeded {
		t.Fatalf("worker 0 with its share used: %v, want nat-lease-needed", r.Kind)
	}
}

// natCounter counts a view's NAT lookups.
type natCounter struct {
	*flowstate.View
	lookups int
}

func (c *natCounter) NAT(k flowstate.NATKey) (flowstate.NATBinding, bool) {
	c.lookups++
	return c.View.NAT(k)
}

// TestSNATProbesFullBlocksLast: a busy NAT address holds many blocks whose
// every port is in use; a new connection's port is found in the block with
// room without probing the ports of the full ones (it probed, from a random
// block, half of them on average: most of a SNAT connection's simulation
// on a busy uplink).
func TestSNATProbesFullBlocksLast(t *testing.T) {
	tp, ids := natTopo(t, 1024, 65535)
	snap := tp.snapshot()
	const first, n = 20, 100
	var held []uint16
	for b := uint16(first); b < first+n; b++ {
		held = append(held, b)
	}
	tables, _ := leasedTables(ids["rtr"], held...)
	// Every port of all blocks but the last in use towards 8.8.8.8:443.
	var used []flowstate.NATEntry
	for p := first * flowstate.BlockPorts; p < (first+n-1)*flowstate.BlockPorts; p++ {
		used = append(used, flowstate.NATEntry{
			Key: flowstate.NATKey{Type: flowstate.RevSNAT, Src: ip("8.8.8.8"), Dst: ip(upIP), SrcPort: 443, DstPort: uint16(p),
				Proto: packet.IPProtoTCP, Device: ids["rtr"]},
			Binding: flowstate.NATBinding{IP: ip(vmIP), Port: 1},
		})
	}
	tables.Shard(0).Commit(nil, used)
	for i := range 10 {
		view := &natCounter{View: tables.View(0)}
		r := NewSimulator(uint64(i)).Simulate(snap, view, mkPacket(t, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", uint16(3000+i), 443)), testNow)
		if r.Kind != Forward {
			t.Fatalf("connection %d: %v %v", i, r.Kind, r.Reason)
		}
		if p, last := r.Egress[0].Values.TpSrc, uint16(first+n-1); flowstate.Block(p) != last {
			t.Fatalf("connection %d got port %d (block %d), want one of the only block with room, %d", i, p, flowstate.Block(p), last)
		}
		if view.lookups > flowstate.BlockPorts+4 {
			t.Errorf("connection %d: %d NAT lookups, want at most a block's ports and the connection's own keys", i, view.lookups)
		}
		tables.Shard(0).Commit(r.Conntrack, r.NAT)
	}
}

// TestSNATHandsOutPortsRoundRobin: inside a leased block a simulator hands
// out its ports in turn, as MidoNet does, so that a new connection's port
// is found with one probe instead of a search from a random one.
func TestSNATHandsOutPortsRoundRobin(t *testing.T) {
	tp, ids := natTopo(t, 1024, 65535)
	snap := tp.snapshot()
	tables, _ := leasedTables(ids["rtr"], 20, 21)
	s := NewSimulator(5)
	var ports []uint16
	for i := range 40 {
		view := &natCounter{View: tables.View(0)}
		r := s.Simulate(snap, view, mkPacket(t, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", uint16(3000+i), 443)), testNow)
		if r.Kind != Forward {
			t.Fatalf("connection %d: %v %v", i, r.Kind, r.Reason)
		}
		p := r.Egress[0].Values.TpSrc
		if i > 0 && flowstate.Block(p) == flowstate.Block(ports[i-1]) && p != ports[i-1]+1 {
			t.Errorf("connection %d got port %d after %d in the same block, want the next one", i, p, ports[i-1])
		}
		// The forward key and the chosen port's reverse key: a few
		// lookups, not a search.
		if i > 0 && view.lookups > 3 {
			t.Errorf("connection %d: %d NAT lookups", i, view.lookups)
		}
		ports = append(ports, p)
		tables.Shard(0).Commit(r.Conntrack, r.NAT)
	}
	seen := map[uint16]bool{}
	for _, p := range ports {
		if seen[p] || p < 1280 || p > 1407 {
			t.Fatalf("ports %v: each once, inside blocks 20-21 (1280-1407)", ports)
		}
		seen[p] = true
	}
}
