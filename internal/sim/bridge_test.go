package sim

import (
	"testing"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

// bridgeTopo is one bridge with three VM ports and a router port linked to
// it; vm2's MAC is learned.
func bridgeTopo(t testing.TB) (*topo, map[string]ID) {
	tp := newTopo(t)
	ids := map[string]ID{}
	ids["br"] = tp.bridge("br")
	ids["rtr"] = tp.router("rtr")
	for _, n := range []string{"vm1", "vm2", "vm3"} {
		ids[n] = tp.vmPort(ids["br"], n)
	}
	ids["br-rtr"] = tp.bridgePort(ids["br"], "br-rtr")
	ids["rtr-br"] = tp.routerPort(ids["rtr"], "rtr-br", "10.0.0.1/24", "ac:ca:ba:00:00:01", false)
	tp.link(ids["br-rtr"], ids["rtr-br"])
	tp.learn(ids["br"], "02:00:00:00:00:02", ids["vm2"])
	tp.in.IPMACTable = append(tp.in.IPMACTable, IPMACEntry{Bridge: ids["br"], IP: ip("10.0.0.3"), MAC: mac("02:00:00:00:00:03")})
	return tp, ids
}

func TestBridgeForwarding(t *testing.T) {
	tp, ids := bridgeTopo(t)
	snap := tp.snapshot()
	const vm1, vm2, unknown = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:99"
	tests := []struct {
		name    string
		in      string
		spec    PacketSpec
		kind    Kind
		reason  DropReason
		egress  []string
		wantTag Tag
	}{
		{name: "known unicast goes to the learned port", in: "vm1", spec: udp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1, 2),
			kind: Forward, egress: []string{"vm2"}, wantTag: MACTag(ids["br"], 0, mac(vm2), ids["vm2"])},
		{name: "unknown unicast floods to exterior ports but the ingress", in: "vm1", spec: udp(vm1, unknown, "10.0.0.11", "10.0.0.99", 1, 2),
			kind: Forward, egress: []string{"vm2", "vm3"}, wantTag: FloodTag(ids["br"], 0, mac(unknown))},
		{name: "broadcast floods", in: "vm1", spec: udp(vm1, "ff:ff:ff:ff:ff:ff", "10.0.0.11", "10.0.0.255", 1, 2),
			kind: Forward, egress: []string{"vm2", "vm3"}, wantTag: BroadcastTag(ids["br"])},
		{name: "unicast back to the ingress port drops briefly", in: "vm2", spec: udp(unknown, vm2, "10.0.0.11", "10.0.0.12", 1, 2),
			kind: TemporaryDrop, reason: ReasonSameInOutPort},
		{name: "multicast source drops", in: "vm1", spec: udp("01:00:5e:00:00:01", vm2, "10.0.0.11", "10.0.0.12", 1, 2),
			kind: Drop, reason: ReasonMulticastSource},
		{name: "router port MAC goes to the router", in: "vm1", spec: udp(vm1, "ac:ca:ba:00:00:01", "10.0.0.11", "8.8.8.8", 1, 2),
			kind: TemporaryDrop, reason: ReasonNoRoute},
		{name: "unknown port", in: "nope", spec: udp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1, 2),
			kind: TemporaryDrop, reason: ReasonUnknownPort},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, snap, nil, id(tc.in), tc.spec)
			if r.Kind != tc.kind || r.Reason != tc.reason {
				t.Fatalf("result %v %v, want %v %v", r.Kind, r.Reason, tc.kind, tc.reason)
			}
			var want []ID
			for _, n := range tc.egress {
				want = append(want, ids[n])
			}
			if !sameIDs(egressPorts(r), want) {
				t.Errorf("egress %v, want %v", egressPorts(r), want)
			}
			if tc.wantTag != 0 && !hasTag(r, tc.wantTag) {
				t.Errorf("missing tag")
			}
			if r.Kind == Forward {
				if !hasTag(r, DeviceTag(ids["br"])) || !hasTag(r, DeviceTag(id(tc.in))) {
					t.Errorf("missing device tags")
				}
				if r.HardTimeout != FlowTimeout {
					t.Errorf("hard timeout %v", r.HardTimeout)
				}
				// Bridged flows match only in_port, MACs, VLAN and ethertype.
				if r.Mask.NwSrc != ([4]byte{}) || r.Mask.TpDst != 0 || r.Mask.NwTTL != 0 {
					t.Errorf("bridged flow mask too wide: %+v", r.Mask)
				}
				if r.Mask.EthDst != broadcastMAC || r.Mask.InPort != ^uint32(0) {
					t.Errorf("bridged flow mask misses eth_dst or in_port: %+v", r.Mask)
				}
				if len(r.Egress) > 0 && r.Egress[0].Set != 0 {
					t.Errorf("bridging rewrote %v", r.Egress[0].Set)
				}
			}
		})
	}
}

func TestBridgeLearnsSourceMAC(t *testing.T) {
	tp, ids := bridgeTopo(t)
	snap := tp.snapshot()
	r := run(t, snap, nil, ids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 2))
	want := MACLearning{Bridge: ids["br"], MAC: mac("02:00:00:00:00:01"), Port: ids["vm1"]}
	if len(r.LearnedMACs) != 1 || r.LearnedMACs[0] != want {
		t.Fatalf("learned %+v, want %+v", r.LearnedMACs, want)
	}
	if !hasTag(r, MACTag(ids["br"], 0, want.MAC, ids["vm1"])) {
		t.Error("flow not tagged with its source MAC entry (a MAC move must invalidate it)")
	}
}

func TestBridgeLearnsEvenWhenInboundChainDrops(t *testing.T) {
	tp, ids := bridgeTopo(t)
	tp.in.Bridges[0].InboundFilterID = topology.IDPtr(tp.chain("drop-all", topology.Rule{Type: topology.RuleDrop}))
	r := run(t, tp.snapshot(), nil, ids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 2))
	if r.Kind != Drop || r.Reason != ReasonChain {
		t.Fatalf("result %v %v, want drop by chain", r.Kind, r.Reason)
	}
	if len(r.LearnedMACs) != 1 {
		t.Fatalf("learned %v, want the source MAC", r.LearnedMACs)
	}
	if !hasTag(r, DeviceTag(id("drop-all"))) {
		t.Error("drop flow not tagged with the chain")
	}
}

func TestBridgeARP(t *testing.T) {
	tp, ids := bridgeTopo(t)
	snap := tp.snapshot()
	tests := []struct {
		name      string
		spec      PacketSpec
		kind      Kind
		replyMAC  string // generated reply's sender MAC, if any
		egress    []string
		learnedIP string
	}{
		{name: "request for a router port address is answered by the bridge", spec: arpReq("02:00:00:00:00:01", "10.0.0.11", "10.0.0.1"),
			kind: Consumed, replyMAC: "ac:ca:ba:00:00:01"},
		{name: "request for a seeded address is answered by the bridge", spec: arpReq("02:00:00:00:00:01", "10.0.0.11", "10.0.0.3"),
			kind: Consumed, replyMAC: "02:00:00:00:00:03"},
		{name: "request for an unknown address floods", spec: arpReq("02:00:00:00:00:01", "10.0.0.11", "10.0.0.77"),
			kind: Forward, egress: []string{"vm2", "vm3"}},
		{name: "gratuitous ARP floods, is learned and stays in userspace", spec: arpReq("02:00:00:00:00:01", "10.0.0.11", "10.0.0.11"),
			kind: UserspaceOnly, egress: []string{"vm2", "vm3"}, learnedIP: "10.0.0.11"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, snap, nil, ids["vm1"], tc.spec)
			if r.Kind != tc.kind {
				t.Fatalf("kind %v (%v), want %v", r.Kind, r.Reason, tc.kind)
			}
			if tc.replyMAC != "" {
				if len(r.Generated) != 1 || r.Generated[0].Port != ids["vm1"] {
					t.Fatalf("generated %+v, want one reply out of vm1", r.Generated)
				}
				var p packet.Parsed
				p.Decode(r.Generated[0].Frame)
				if p.ARPOp != arpOpReply || p.ARPSHA != mac(tc.replyMAC) || p.ARPSPA != tc.spec.Dst.As4() ||
					p.ARPTPA != tc.spec.Src.As4() || p.EthDst != tc.spec.EthSrc || p.ARPTHA != tc.spec.EthSrc {
					t.Errorf("bad reply %+v", p)
				}
			}
			var want []ID
			for _, n := range tc.egress {
				want = append(want, ids[n])
			}
			if !sameIDs(egressPorts(r), want) {
				t.Errorf("egress %v, want %v", egressPorts(r), want)
			}
			// The bridge learns a gratuitous ARP's address first (the router
			// on the bridge too: TestGratuitousARPReachesRouters).
			if tc.learnedIP != "" && (len(r.LearnedARP) == 0 || r.LearnedARP[0].IP != ip(tc.learnedIP) ||
				r.LearnedARP[0].Device != ids["br"]) {
				t.Errorf("learned ARP %+v", r.LearnedARP)
			}
		})
	}
}

func TestBridgeChainsAndPortChains(t *testing.T) {
	tp, ids := bridgeTopo(t)
	deny := tp.chain("deny-udp-9", topology.Rule{Type: topology.RuleDrop, Condition: topology.Condition{
		NwProto: ptr(17), TpDst: &topology.PortRange{Start: 9, End: 9}}})
	tp.port(ids["vm2"]).OutboundFilterID = topology.IDPtr(deny)
	snap := tp.snapshot()
	r := run(t, snap, nil, ids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 9))
	if r.Kind != Drop || r.Reason != ReasonChain {
		t.Fatalf("to port 9: %v %v, want drop", r.Kind, r.Reason)
	}
	if r.Mask.TpDst != 0xffff || r.Mask.NwProto != 0xff {
		t.Errorf("drop flow mask lacks the fields the rule read: %+v", r.Mask)
	}
	r = run(t, snap, nil, ids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 10))
	if r.Kind != Forward {
		t.Fatalf("to port 10: %v %v, want forward", r.Kind, r.Reason)
	}
	// Flooded, only the port with the chain drops: the flood still forwards.
	r = run(t, snap, nil, ids["vm1"], udp("02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", "10.0.0.11", "10.0.0.12", 1, 9))
	if r.Kind != Forward || !sameIDs(egressPorts(r), []ID{ids["vm3"]}) {
		t.Fatalf("flood: %v %v, want vm3 only", r.Kind, egressPorts(r))
	}
}

func TestBridgeAdminDownAndUnpluggedPorts(t *testing.T) {
	tp, ids := bridgeTopo(t)
	tp.port(ids["vm2"]).AdminStateUp = false
	unplugged := tp.bridgePort(ids["br"], "unplugged")
	tp.learn(ids["br"], "02:00:00:00:00:55", unplugged)
	snap := tp.snapshot()
	r := run(t, snap, nil, ids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 2))
	if r.Kind != Drop || r.Reason != ReasonPortAdminDown {
		t.Errorf("to admin-down port: %v %v", r.Kind, r.Reason)
	}
	r = run(t, snap, nil, ids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:55", "10.0.0.11", "10.0.0.12", 1, 2))
	if r.Kind != TemporaryDrop || r.Reason != ReasonUnplugged || len(r.Tags) != 0 {
		t.Errorf("to unplugged port: %v %v tags %d", r.Kind, r.Reason, len(r.Tags))
	}
}

func ptr[T any](v T) *T { return &v }

func TestBridge8023FramesMatchMACsExactly(t *testing.T) {
	tp, ids := bridgeTopo(t)
	pkt := &Packet{Port: ids["vm1"], Match: Match{FlowKey: packet.FlowKey{EthSrc: mac("02:00:00:00:00:01"), EthDst: mac("02:00:00:00:00:02"), EthType: 0x05dc}}}
	r := NewSimulator(1).Simulate(tp.snapshot(), nil, pkt, testNow)
	if r.Kind != Forward || r.Mask.EthSrc != broadcastMAC || r.Mask.EthDst != broadcastMAC || r.Mask.EthType != 0xffff {
		t.Fatalf("%v mask %+v", r.Kind, r.Mask)
	}
}

func TestBridgePortDSCPMarking(t *testing.T) {
	tp, ids := bridgeTopo(t)
	pol, netPol := id("policy"), id("net-policy")
	tp.port(ids["vm1"]).QOSPolicyID = topology.IDPtr(pol)
	tp.in.Bridges[0].QOSPolicyID = topology.IDPtr(netPol)
	tp.in.DSCPRules = []topology.QOSDSCPRule{{ID: id("d1"), DSCPMark: 46, PolicyID: &pol}, {ID: id("d2"), DSCPMark: 10, PolicyID: &netPol}}
	snap := tp.snapshot()
	pkt := mkPacket(t, ids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 2))
	pkt.Match.NwTOS = 0x03 // ECN bits survive the marking
	r := NewSimulator(1).Simulate(snap, nil, pkt, testNow)
	if r.Kind != Forward || r.Egress[0].Set&FieldNwTOS == 0 || r.Egress[0].Values.NwTOS != 46<<2|3 {
		t.Fatalf("port policy: %v set %v tos %#x", r.Kind, r.Egress[0].Set, r.Egress[0].Values.NwTOS)
	}
	// vm3 has no policy of its own: the bridge's applies.
	r = run(t, snap, nil, ids["vm3"], udp("02:00:00:00:00:03", "02:00:00:00:00:02", "10.0.0.13", "10.0.0.12", 1, 2))
	if r.Egress[0].Values.NwTOS != 10<<2 {
		t.Fatalf("bridge policy: tos %#x", r.Egress[0].Values.NwTOS)
	}
	// ARP is not IP: nothing to mark.
	if r := run(t, snap, nil, ids["vm1"], arpReq("02:00:00:00:00:01", "10.0.0.11", "10.0.0.77")); r.Egress[0].Set&FieldNwTOS != 0 {
		t.Fatal("marked an ARP frame")
	}
}

// TestRouterPortDSCPMarking: a router port's QoS policy marks the IPv4 the
// router takes in through it (MidoNet marked at bridge ports only, so a
// policy on a router port did nothing there); other ports are untouched.
func TestRouterPortDSCPMarking(t *testing.T) {
	tp, ids := routerTopo(t)
	pol := id("uplink-policy")
	tp.port(ids["up"]).QOSPolicyID = topology.IDPtr(pol)
	tp.in.DSCPRules = []topology.QOSDSCPRule{{ID: id("d"), DSCPMark: 26, PolicyID: &pol}}
	tp.in.Bridges[0].QOSPolicyID = topology.IDPtr(pol) // a bridge's policy is not its router's
	tp.learn(ids["br"], vmMAC, ids["vm1"])
	tp.arp(ids["rtr"], vmIP, vmMAC)
	snap := tp.snapshot()
	in := run(t, snap, nil, ids["up"], udp(gwMAC, upMAC, "8.8.8.8", vmIP, 53, 4000))
	if in.Kind != Forward || in.Egress[0].Set&FieldNwTOS == 0 || in.Egress[0].Values.NwTOS != 26<<2 {
		t.Fatalf("into the uplink: %v %v set %v tos %#x", in.Kind, in.Reason, in.Egress[0].Set, in.Egress[0].Values.NwTOS)
	}
	// From vm1 the bridge's policy marks at vm1's port; the router port
	// towards the bridge has no policy and leaves the mark as it is.
	tp.in.Bridges[0].QOSPolicyID = nil
	out := run(t, tp.snapshot(), nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 4000, 53))
	if out.Kind != Forward || out.Egress[0].Set&FieldNwTOS != 0 {
		t.Fatalf("out of the uplink: %v set %v", out.Kind, out.Egress[0].Set)
	}
}
