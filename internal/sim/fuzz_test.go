package sim

import (
	"testing"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

// FuzzSimulate feeds arbitrary frames, on any port of the reference
// topology, as received or as generated packets. The simulation must not
// panic or loop, and its result must be coherent.
func FuzzSimulate(f *testing.F) {
	seeds := []PacketSpec{
		tcp(gwMAC, upMAC, "8.8.8.8", vipIP, 5000, 80),
		tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443),
		udp(vmMAC, "02:00:00:00:00:02", vmIP, "10.0.0.12", 1, 2),
		icmpEcho(vmMAC, rtrMAC, vmIP, rtrIP, 1),
		arpReq(vmMAC, vmIP, rtrIP),
		arpReq(gwMAC, "203.0.113.254", "203.0.113.1"),
		tcp(gwMAC, "ac:ca:ba:00:01:03", "8.8.8.8", "192.0.2.10", 443, 1024),
	}
	for i, s := range seeds {
		b, err := s.Frame()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(i), false)
		f.Add(b, uint8(128+i), false)
		f.Add(b[:len(b)/2], uint8(i), false) // truncated
	}
	icmpErr, _ := (&PacketSpec{EthSrc: mac(gwMAC), EthDst: mac("ac:ca:ba:00:01:03"), Src: ip("8.8.8.8"), Dst: ip("192.0.2.10"),
		Proto: packet.IPProtoICMP, SrcPort: 3, DstPort: 3, Payload: make([]byte, 28)}).Frame()
	f.Add(icmpErr, uint8(5), false)
	f.Add([]byte{}, uint8(0), true)

	// Two worlds: the reference path, and a router with a load balancer,
	// NAT and a mirror on its bridge.
	tp, ids := referenceTopo(f)
	ref := tp.snapshot()
	refPorts := []ID{ids["vm1"], ids["vm2"], ids["uplink"], ids["net-t"], ids["t-p"], ids["p-t"], id("nowhere")}
	ltp, lids := lbTopo(f, false, nil)
	tap := ltp.vmPort(ltp.bridge("taps"), "tap")
	ltp.in.Mirrors = []topology.Mirror{mirrorOf("m", tap, topology.Condition{NwProto: ptr(6)})}
	ltp.in.Bridges[0].InboundMirrorIDs = []ID{id("m")}
	lb := ltp.snapshot()
	lbPorts := []ID{lids["vm1"], lids["vm2"], lids["up"], lids["br-rtr"], lids["rtr-br"], tap}
	tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
	sim := NewSimulator(1)
	f.Fuzz(func(t *testing.T, frame []byte, port uint8, generated bool) {
		m, ok := MatchFromFrame(frame)
		if !ok {
			return // the agent counts and drops frames shorter than Ethernet
		}
		snap, ports := ref, refPorts
		if port >= 128 {
			snap, ports = lb, lbPorts
		}
		pkt := &Packet{Port: ports[int(port)%len(ports)], Match: m, Frame: frame, Generated: generated}
		r := sim.Simulate(snap, tables.View(0), pkt, testNow)
		if r.Kind > ARPNeeded {
			t.Fatalf("unknown kind %v", r.Kind)
		}
		if r.Mask.InPort != ^uint32(0) {
			t.Fatal("mask does not match the input port exactly")
		}
		for _, e := range r.Egress {
			pi, ok := snap.Port(e.Port)
			if !ok || !pi.Exterior {
				t.Fatalf("egress to %v, not an exterior port", e.Port)
			}
		}
		switch {
		case r.Kind == Forward && len(r.Egress) == 0,
			r.Kind != Forward && r.Kind != UserspaceOnly && len(r.Egress) > 0,
			r.Kind == UserspaceOnly && len(r.Egress) == 0 && r.Reason == ReasonNone:
			t.Fatalf("kind %v (reason %v) with %d egress ports", r.Kind, r.Reason, len(r.Egress))
		}
		for _, g := range r.Generated {
			var p packet.Parsed
			if p.Decode(g.Frame); p.Layer < packet.Layer3 {
				t.Fatalf("generated an undecodable frame %x", g.Frame)
			}
		}
		tables.Shard(0).Commit(r.Conntrack, r.NAT)
	})
}
