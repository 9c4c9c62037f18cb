package sim

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/topology"
)

type benchCase struct {
	name  string
	snap  *Snapshot
	state StateReader
	pkt   *Packet
	want  Kind
}

// benchCases are the steady-state paths: a bridged unicast, a routed
// packet, and the reference path with its NAT binding already in place.
func benchCases(tb testing.TB) []benchCase {
	btp, bids := bridgeTopo(tb)
	rtp, rids := routerTopo(tb)
	ftp, fids := referenceTopo(tb)
	fsnap := ftp.snapshot()
	tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
	refPkt := mkPacket(tb, fids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443))
	first := NewSimulator(1).Simulate(fsnap, tables.View(0), refPkt, testNow)
	tables.Shard(0).Commit(first.Conntrack, first.NAT)
	// The bridge path with a mirror copying it to a tap port.
	mtp, mids := bridgeTopo(tb)
	mids["tap"] = mtp.vmPort(mtp.bridge("taps"), "tap")
	mtp.in.Mirrors = []topology.Mirror{mirrorOf("m", mids["tap"], topology.Condition{NwProto: ptr(17)})}
	mtp.port(mids["vm1"]).InboundMirrorIDs = []ID{id("m")}
	// A new connection to a VIP, balanced or sticky (no state: each
	// simulation picks a back end).
	ltp, lids := lbTopo(tb, false, nil)
	stp, sids := lbTopo(tb, true, nil)
	toVIP := tcp(gwMAC, upMAC, "8.8.8.8", vipIP, 5000, 80)
	// The protected port of an L2 insertion sending to its service.
	itp, iids := bridgeTopo(tb)
	iids["svc"] = itp.vmPort(itp.bridge("svc-net"), "svc")
	itp.in.L2Insertions = []topology.L2Insertion{{ID: id("ins"), PortID: topology.IDPtr(iids["vm1"]),
		SrvPortID: topology.IDPtr(iids["svc"]), MAC: topology.Str("02:00:00:00:00:01"), Position: 1}}
	return []benchCase{
		{"bridge", btp.snapshot(), nil, mkPacket(tb, bids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 2)), Forward},
		{"router", rtp.snapshot(), nil, mkPacket(tb, rids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443)), Forward},
		{"reference", fsnap, tables.View(0), refPkt, Forward},
		{"bridge-mirrored", mtp.snapshot(), nil, mkPacket(tb, mids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 2)), Forward},
		{"vip", ltp.snapshot(), nil, mkPacket(tb, lids["up"], toVIP), Forward},
		{"vip-sticky", stp.snapshot(), nil, mkPacket(tb, sids["up"], toVIP), Forward},
		{"l2-insertion", itp.snapshot(), nil, mkPacket(tb, iids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 2)), Forward},
	}
}

func BenchmarkSimulate(b *testing.B) {
	for _, bc := range benchCases(b) {
		b.Run(bc.name, func(b *testing.B) {
			s := NewSimulator(1)
			if r := s.Simulate(bc.snap, bc.state, bc.pkt, testNow); r.Kind != bc.want {
				b.Fatalf("kind %v %v", r.Kind, r.Reason)
			}
			b.ReportAllocs()
			for b.Loop() {
				s.Simulate(bc.snap, bc.state, bc.pkt, testNow)
			}
		})
	}
}

// TestSimulateDoesNotAllocate holds the hot paths to zero allocations once
// a simulator's scratch space has grown: the benchmark's paths, a flood, a
// bridge answering ARP, a router answering ping and a NAT reply.
func TestSimulateDoesNotAllocate(t *testing.T) {
	btp, bids := bridgeTopo(t)
	rtp, rids := routerTopo(t)
	ntp, nids := natTopo(t, 1024, 65535)
	nsnap := ntp.snapshot()
	tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
	fwd := NewSimulator(1).Simulate(nsnap, tables.View(0), mkPacket(t, nids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443)), testNow)
	tables.Shard(0).Commit(fwd.Conntrack, fwd.NAT)
	cases := append(benchCases(t),
		benchCase{"flood", btp.snapshot(), nil, mkPacket(t, bids["vm1"], udp(vmMAC, "ff:ff:ff:ff:ff:ff", vmIP, "10.0.0.255", 1, 2)), Forward},
		benchCase{"bridge-arp-reply", btp.snapshot(), nil, mkPacket(t, bids["vm1"], arpReq(vmMAC, vmIP, "10.0.0.1")), Consumed},
		benchCase{"router-echo-reply", rtp.snapshot(), nil, mkPacket(t, rids["vm1"], icmpEcho(vmMAC, rtrMAC, vmIP, rtrIP, 5)), Consumed},
		benchCase{"reverse-snat", nsnap, tables.View(0), mkPacket(t, nids["up"], tcp(gwMAC, upMAC, "8.8.8.8", upIP, 443, fwd.Egress[0].Values.TpSrc)), Forward},
	)
	for _, bc := range cases {
		t.Run(bc.name, func(t *testing.T) {
			s := NewSimulator(1)
			if r := s.Simulate(bc.snap, bc.state, bc.pkt, testNow); r.Kind != bc.want {
				t.Fatalf("kind %v %v", r.Kind, r.Reason)
			}
			if a := testing.AllocsPerRun(100, func() { s.Simulate(bc.snap, bc.state, bc.pkt, testNow) }); a != 0 {
				t.Errorf("%v allocations per simulation, want 0", a)
			}
		})
	}
}

// largeInput is a tenant-scale topology: 1000 VM ports over 50 bridges,
// each with a security-group chain pair, linked to 10 routers.
func largeInput(tb testing.TB) SnapshotInput {
	tp := newTopo(tb)
	sg := tp.chain("sg", accept(topology.Condition{MatchReturnFlow: true}),
		accept(topology.Condition{NwProto: ptr(6), TpDst: &topology.PortRange{Start: 22, End: 22}}), dropAll())
	for r := range 10 {
		rid := tp.router("r" + strconv.Itoa(r))
		for b := range 5 {
			n := strconv.Itoa(r*5 + b)
			bid := tp.bridge("b" + n)
			bp := tp.bridgePort(bid, "b"+n+"-r")
			rp := tp.routerPort(rid, "r-b"+n, "10."+n+".0.1/24", "ac:ca:ba:00:"+hex2(r)+":"+hex2(b), false)
			tp.link(bp, rp)
			for v := range 20 {
				vn := n + "-" + strconv.Itoa(v)
				pid := tp.vmPort(bid, "vm"+vn)
				tp.port(pid).OutboundFilterID = topology.IDPtr(sg)
				tp.in.MACTable = append(tp.in.MACTable, MACEntry{Bridge: bid, MAC: [6]byte{2, 0, byte(r), byte(b), byte(v)}, Port: pid})
			}
		}
	}
	return tp.in
}

func hex2(n int) string {
	const h = "0123456789abcdef"
	return string([]byte{h[n>>4&15], h[n&15]})
}

func BenchmarkNewSnapshot(b *testing.B) {
	in := largeInput(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewSnapshot(in); err != nil {
			b.Fatal(err)
		}
	}
}

// withLearnedRoutes adds n routes learned through an uplink of the first
// router of in, as a BGP full table fills it.
func withLearnedRoutes(tb testing.TB, in SnapshotInput, n int) SnapshotInput {
	rid := in.Routers[0].ID
	h := topology.NewID()
	up := topology.Port{ID: topology.NewID(), Type: topology.PortTypeRouter, DeviceID: rid, AdminStateUp: true,
		PortSubnet: []string{"192.0.2.2/24"}, PortMAC: topology.Str("ac:ca:ba:ff:00:01"), HostID: &h, InterfaceName: topology.Str("up")}
	in.Ports = append(slices.Clone(in.Ports), up)
	in.PortBinding = append(slices.Clone(in.PortBinding), PortBinding{Port: up.ID, Host: h, TunnelKey: 99})
	in.Routes = slices.Clone(in.Routes)
	for i := range n {
		a := netip.AddrFrom4([4]byte{byte(1 + i>>16), byte(i >> 8), byte(i), 0})
		in.Routes = append(in.Routes, topology.Route{ID: topology.NewID(), Type: topology.RouteNormal,
			SrcNetworkAddr: topology.Str("0.0.0.0"), DstNetworkAddr: topology.Str(a.String()), DstNetworkLength: 24,
			NextHopPort: &up.ID, NextHopGateway: topology.Str("192.0.2.1"), Weight: 20, RouterID: rid, Learned: true})
	}
	return in
}

// BenchmarkNewSnapshotFullTable compiles the large topology with a router
// holding a 100k-prefix learned table: what every route change costs an
// agent while snapshots are compiled whole.
func BenchmarkNewSnapshotFullTable(b *testing.B) {
	in := withLearnedRoutes(b, largeInput(b), 100_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewSnapshot(in); err != nil {
			b.Fatal(err)
		}
	}
}

// fullTable returns n learned /24 routes through port of router.
func fullTable(router, port ID, n int) []LearnedRoute {
	out := make([]LearnedRoute, n)
	for i := range out {
		a := netip.AddrFrom4([4]byte{byte(1 + i>>16), byte(i >> 8), byte(i), 0})
		out[i] = LearnedRoute{ID: topology.NewID(), Router: router, Port: port, Dst: netip.PrefixFrom(a, 24),
			Gateway: netip.MustParseAddr("192.0.2.1"), Weight: 20}
	}
	return out
}

// BenchmarkNewSnapshotLearnedTable compiles the same topology as
// BenchmarkNewSnapshotFullTable, the 100k routes held in a LearnedTable:
// the snapshot takes the table as it is.
func BenchmarkNewSnapshotLearnedTable(b *testing.B) {
	in := withLearnedRoutes(b, largeInput(b), 0)
	up := in.Ports[len(in.Ports)-1]
	in.Learned = map[ID]*LearnedTable{up.DeviceID: (*LearnedTable)(nil).With(fullTable(up.DeviceID, up.ID, 100_000), nil)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewSnapshot(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLearnedTableWith measures changes to a 100k-route table: one
// route, and a batch of 4096 (a speaker's message).
func BenchmarkLearnedTableWith(b *testing.B) {
	r, p := topology.NewID(), topology.NewID()
	routes := fullTable(r, p, 100_000)
	t := (*LearnedTable)(nil).With(routes, nil)
	more := fullTable(r, p, 100_000+4096)[100_000:]
	for i := range more {
		more[i].Dst = netip.PrefixFrom(netip.AddrFrom4([4]byte{200, byte(i >> 8), byte(i), 0}), 24)
	}
	b.Run("one", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t.With(more[:1], nil)
		}
	})
	b.Run("batch-4096", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t.With(more, nil)
		}
	})
	b.Run("fill-100k-by-4096", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var x *LearnedTable
			for i := 0; i < len(routes); i += 4096 {
				x = x.With(routes[i:min(i+4096, len(routes))], nil)
			}
		}
	})
}
