package sim

import (
	"testing"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

func accept(c topology.Condition) topology.Rule {
	return topology.Rule{Type: topology.RuleAccept, Condition: c}
}
func dropIf(c topology.Condition) topology.Rule {
	return topology.Rule{Type: topology.RuleDrop, Condition: c}
}
func dropAll() topology.Rule { return dropIf(topology.Condition{}) }
func returnIf(c topology.Condition) topology.Rule {
	return topology.Rule{Type: topology.RuleReturn, Condition: c}
}
func jump(to ID) topology.Rule {
	return topology.Rule{Type: topology.RuleJump, JumpChainID: topology.IDPtr(to)}
}

func TestChainEvaluation(t *testing.T) {
	const vm1, vm2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
	base := udp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1000, 53)
	tests := []struct {
		name string
		// chains builds the bridge's inbound chain and returns its id.
		chains func(tp *topo, ids map[string]ID) ID
		spec   PacketSpec
		want   Kind
	}{
		{"empty chain accepts", func(tp *topo, _ map[string]ID) ID { return tp.chain("c") }, base, Forward},
		{"drop rule drops", func(tp *topo, _ map[string]ID) ID { return tp.chain("c", dropAll()) }, base, Drop},
		{"first matching rule decides", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", accept(topology.Condition{}), dropAll())
		}, base, Forward},
		{"return at top level accepts", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", returnIf(topology.Condition{}), dropAll())
		}, base, Forward},
		{"jump then return continues in the caller", func(tp *topo, _ map[string]ID) ID {
			sub := tp.chain("sub", returnIf(topology.Condition{}), accept(topology.Condition{}))
			return tp.chain("c", jump(sub), dropAll())
		}, base, Drop},
		{"decision in a jumped-to chain ends evaluation", func(tp *topo, _ map[string]ID) ID {
			sub := tp.chain("sub", dropAll())
			return tp.chain("c", jump(sub), accept(topology.Condition{}))
		}, base, Drop},
		{"jump to a missing chain is ignored", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", jump(id("nowhere")), accept(topology.Condition{}), dropAll())
		}, base, Forward},
		{"jump loop is ignored", func(tp *topo, _ map[string]ID) ID {
			// a → b → a: the second jump to a is skipped; b then drops.
			tp.chain("b", jump(id("a")), dropAll())
			return tp.chain("a", jump(id("b")), accept(topology.Condition{}))
		}, base, Drop},
		{"nw_proto and tp_dst range", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{NwProto: ptr(17), TpDst: &topology.PortRange{Start: 50, End: 60}}))
		}, base, Drop},
		{"tp_dst outside range", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{TpDst: &topology.PortRange{Start: 54, End: 60}}))
		}, base, Forward},
		{"inverted field", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{NwSrcAddress: topology.Str("10.0.0.0"), NwSrcLength: 24, InvNwSrc: true}))
		}, base, Forward},
		{"inverted field matches others", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{NwSrcAddress: topology.Str("10.1.0.0"), NwSrcLength: 16, InvNwSrc: true}))
		}, base, Drop},
		{"inverted conjunction", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{CondInvert: true, NwDstAddress: topology.Str("10.0.0.12"), NwDstLength: 32}))
		}, base, Forward},
		{"MAC with mask", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{DlSrc: topology.Str("02:00:00:ff:ff:ff"), DlSrcMask: topology.Str("ffff.ff00.0000")}))
		}, base, Drop},
		{"dl_type", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{DlType: ptr(0x0806)}))
		}, base, Forward},
		{"nw_tos", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{NwTos: ptr(0)}))
		}, base, Drop},
		{"in ports", func(tp *topo, ids map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{InPorts: []ID{ids["vm1"]}}))
		}, base, Drop},
		{"in ports inverted", func(tp *topo, ids map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{InPorts: []ID{ids["vm1"]}, InvInPorts: true}))
		}, base, Forward},
		{"in port group", func(tp *topo, ids map[string]ID) ID {
			tp.in.PortGroups = append(tp.in.PortGroups, topology.PortGroup{ID: id("pg"), PortIDs: []ID{ids["vm1"]}})
			return tp.chain("c", dropIf(topology.Condition{InPortGroup: topology.IDPtr(id("pg"))}))
		}, base, Drop},
		{"ingress port group", func(tp *topo, ids map[string]ID) ID {
			tp.in.PortGroups = append(tp.in.PortGroups, topology.PortGroup{ID: id("pg"), PortIDs: []ID{ids["vm3"]}})
			return tp.chain("c", dropIf(topology.Condition{PortGroup: topology.IDPtr(id("pg"))}))
		}, base, Forward},
		{"IP address group", func(tp *topo, _ map[string]ID) ID {
			tp.in.IPAddrGroups = append(tp.in.IPAddrGroups, topology.IPAddrGroup{ID: id("ipg"),
				IPAddrPorts: []topology.IPAddrPort{{IPAddress: "10.0.0.11"}}})
			return tp.chain("c", dropIf(topology.Condition{IPAddrGroupSrc: topology.IDPtr(id("ipg"))}))
		}, base, Drop},
		{"traversed device", func(tp *topo, ids map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{TraversedDevice: topology.IDPtr(ids["br"])}))
		}, base, Drop},
		{"fragment policy nonheader skips whole packets", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{FragmentPolicy: topology.Str(topology.FragNonheader)}))
		}, base, Forward},
		{"fragment policy is outside the inversion", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{CondInvert: true, NwProto: ptr(6),
				FragmentPolicy: topology.Str(topology.FragNonheader)}))
		}, base, Forward},
		{"ARP has no nw_proto", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{NwProto: ptr(1)}))
		}, arpReq(vm1, "10.0.0.11", "10.0.0.77"), Forward},
		{"dst rewritten is false without NAT", func(tp *topo, _ map[string]ID) ID {
			return tp.chain("c", dropIf(topology.Condition{MatchNwDstRewritten: true}))
		}, base, Forward},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, ids := bridgeTopo(t)
			tp.in.Bridges[0].InboundFilterID = topology.IDPtr(tc.chains(tp, ids))
			r := run(t, tp.snapshot(), nil, ids["vm1"], tc.spec)
			got := r.Kind
			if got == UserspaceOnly && len(r.Egress) == 0 {
				got = userspaceDrop
			}
			if got != tc.want {
				t.Fatalf("kind %v (%v), want %v", got, r.Reason, tc.want)
			}
		})
	}
}

func TestChainTagsEveryChainTraversed(t *testing.T) {
	tp, ids := bridgeTopo(t)
	sub := tp.chain("sub", returnIf(topology.Condition{}))
	top := tp.chain("top", jump(sub))
	second := tp.chain("second")
	tp.in.Bridges[0].InboundFilterID = topology.IDPtr(top)
	tp.port(ids["vm1"]).InboundFilterID = topology.IDPtr(second)
	r := run(t, tp.snapshot(), nil, ids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 2))
	for _, c := range []ID{sub, top, second} {
		if !hasTag(r, DeviceTag(c)) {
			t.Errorf("flow not tagged with chain %s: editing it would not invalidate the flow", c)
		}
	}
}

func TestPortChainsApplyInOrder(t *testing.T) {
	tp, ids := routerTopo(t)
	tp.in.Routers[0].LocalRedirectChainID = topology.IDPtr(tp.chain("first", accept(topology.Condition{})))
	tp.in.Routers[0].InboundFilterID = topology.IDPtr(tp.chain("second", dropAll()))
	r := run(t, tp.snapshot(), nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2))
	if r.Kind != Drop {
		t.Fatalf("accept in the first chain must not skip the second: %v", r.Kind)
	}
}

func TestConntrack(t *testing.T) {
	tp, ids := bridgeTopo(t)
	// Traffic to vm2 and to vm1 is allowed only as return traffic, or to
	// port 22 of vm2.
	toVM2 := tp.chain("to-vm2", accept(topology.Condition{MatchReturnFlow: true}),
		accept(topology.Condition{NwProto: ptr(6), TpDst: &topology.PortRange{Start: 22, End: 22}}), dropAll())
	toVM1 := tp.chain("to-vm1", accept(topology.Condition{MatchReturnFlow: true}), dropAll())
	tp.port(ids["vm2"]).OutboundFilterID = topology.IDPtr(toVM2)
	tp.port(ids["vm1"]).OutboundFilterID = topology.IDPtr(toVM1)
	tp.learn(ids["br"], "02:00:00:00:00:01", ids["vm1"])
	snap := tp.snapshot()
	tables := flowstate.NewTables(2, flowstate.DefaultIdleTTL)

	reply := tcp("02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.12", "10.0.0.11", 22, 40000)
	if r := run(t, snap, tables.View(1), ids["vm2"], reply); r.Kind != Drop {
		t.Fatalf("unsolicited reply: %v, want drop", r.Kind)
	}
	fwd := run(t, snap, tables.View(0), ids["vm1"], tcp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 40000, 22))
	if fwd.Kind != Forward || fwd.HardTimeout != StatefulFlowTimeout {
		t.Fatalf("forward: %v %v timeout %v", fwd.Kind, fwd.Reason, fwd.HardTimeout)
	}
	want := flowstate.ConnKey{Src: ip("10.0.0.12"), Dst: ip("10.0.0.11"), SrcPort: 22, DstPort: 40000, Proto: 6, Device: ids["br"]}
	if len(fwd.Conntrack) != 1 || fwd.Conntrack[0] != want {
		t.Fatalf("conntrack keys %+v, want %+v", fwd.Conntrack, want)
	}
	commit(tables.Shard(0), fwd)
	back := run(t, snap, tables.View(1), ids["vm2"], reply)
	if back.Kind != Forward || len(back.Conntrack) != 0 {
		t.Fatalf("reply after the forward flow: %v %v, %d keys", back.Kind, back.Reason, len(back.Conntrack))
	}
	if !hasTag(back, ConnTag(want)) {
		t.Error("return flow not tagged with the key it found")
	}
	if back.HardTimeout != FlowTimeout {
		t.Errorf("return flow timeout %v: return flows hold no state", back.HardTimeout)
	}
	// A forward packet's flow is tagged with the key it did not find, so
	// the key's arrival invalidates it.
	denied := run(t, snap, tables.View(1), ids["vm2"], tcp("02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.12", "10.0.0.11", 23, 40000))
	missing := flowstate.ConnKey{Src: ip("10.0.0.12"), Dst: ip("10.0.0.11"), SrcPort: 23, DstPort: 40000, Proto: 6, Device: ids["br"]}
	if denied.Kind != Drop || !hasTag(denied, ConnTag(missing)) {
		t.Errorf("denied: %v tagged %v", denied.Kind, hasTag(denied, ConnTag(missing)))
	}
}

func TestConntrackGeneratedPacketsAreReturnTraffic(t *testing.T) {
	tp, ids := bridgeTopo(t)
	tp.port(ids["vm1"]).OutboundFilterID = topology.IDPtr(tp.chain("to-vm1", accept(topology.Condition{MatchReturnFlow: true}), dropAll()))
	snap := tp.snapshot()
	pkt := mkPacket(t, ids["vm1"], udp("ac:ca:ba:00:00:01", "02:00:00:00:00:01", "10.0.0.1", "10.0.0.11", 1, 2))
	pkt.Generated = true
	if r := NewSimulator(1).Simulate(snap, nil, pkt, testNow); r.Kind != Forward || !sameIDs(egressPorts(r), []ID{ids["vm1"]}) {
		t.Fatalf("generated packet: %v %v %v", r.Kind, r.Reason, egressPorts(r))
	}
}

func TestConntrackOfICMPIsUserspaceOnly(t *testing.T) {
	tp, ids := bridgeTopo(t)
	tp.port(ids["vm2"]).OutboundFilterID = topology.IDPtr(tp.chain("to-vm2", accept(topology.Condition{MatchForwardFlow: true})))
	r := run(t, tp.snapshot(), nil, ids["vm1"], icmpEcho("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 9))
	if r.Kind != UserspaceOnly || len(r.Conntrack) != 1 || r.Conntrack[0].SrcPort != 9 {
		t.Fatalf("ICMP conntrack: %v keys %+v", r.Kind, r.Conntrack)
	}
	if r.Mask.TpSrc != 0xffff || r.Mask.NwProto != 0xff {
		t.Errorf("mask %+v", r.Mask)
	}
	_ = packet.IPProtoICMP
}

func TestConntrackICMPErrorIsRelatedReturnTraffic(t *testing.T) {
	tp, ids := bridgeTopo(t)
	tp.port(ids["vm1"]).OutboundFilterID = topology.IDPtr(tp.chain("to-vm1", accept(topology.Condition{MatchReturnFlow: true}), dropAll()))
	tp.port(ids["vm2"]).OutboundFilterID = topology.IDPtr(tp.chain("to-vm2", accept(topology.Condition{MatchForwardFlow: true})))
	tp.learn(ids["br"], "02:00:00:00:00:01", ids["vm1"])
	snap := tp.snapshot()
	tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
	conn := udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 5000, 9)
	errSpec := icmpError(t, "02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.12", "10.0.0.11", conn)
	if r := run(t, snap, tables.View(0), ids["vm2"], errSpec); r.Kind != UserspaceOnly || len(r.Egress) != 0 || r.Reason == ReasonNone {
		// A drop flow could not tell this error from one quoting a
		// tracked connection: it is dropped without one.
		t.Fatalf("error about an unknown connection: %v (%v) to %d ports, want dropped in userspace", r.Kind, r.Reason, len(r.Egress))
	}
	commit(tables.Shard(0), run(t, snap, tables.View(0), ids["vm1"], conn))
	r := run(t, snap, tables.View(0), ids["vm2"], errSpec)
	if r.Kind != UserspaceOnly || !sameIDs(egressPorts(r), []ID{ids["vm1"]}) {
		t.Fatalf("error about a tracked connection: %v %v, want it delivered (in userspace)", r.Kind, r.Reason)
	}
}

// userspaceDrop stands for a UserspaceOnly result without egress: a drop
// decided by a field no flow can match, so no drop flow is installed.
const userspaceDrop Kind = 100

func TestMoreConditionFields(t *testing.T) {
	const vm1, vm2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
	tagged := udp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1, 2)
	tagged.VLAN = 5
	quoted := udp(vm2, vm1, "10.0.0.12", "192.168.7.7", 9, 9)
	icmpErr := icmpError(t, vm1, vm2, "10.0.0.11", "10.0.0.12", quoted)
	tests := []struct {
		name  string
		where string // "port-in" (vm1's inbound), "port-out" (vm2's outbound)
		rule  topology.Rule
		spec  PacketSpec
		want  Kind
	}{
		{"vlan id", "port-in", dropIf(topology.Condition{VLAN: ptr(5)}), tagged, Drop},
		{"other vlan id", "port-in", dropIf(topology.Condition{VLAN: ptr(6)}), tagged, Forward},
		{"no vlan on a tagged frame", "port-in", dropIf(topology.Condition{NoVLAN: true}), tagged, Forward},
		{"out ports", "port-out", dropIf(topology.Condition{OutPorts: []ID{id("vm2")}}), udp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1, 2), Drop},
		{"out ports of another port", "port-out", dropIf(topology.Condition{OutPorts: []ID{id("vm3")}}), udp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1, 2), Forward},
		{"ICMP data source", "port-in", dropIf(topology.Condition{IcmpDataSrcIPAddress: topology.Str("10.0.0.12"), IcmpDataSrcIPLength: 32}), icmpErr, userspaceDrop},
		{"ICMP data destination", "port-in", dropIf(topology.Condition{IcmpDataDstIPAddress: topology.Str("192.168.0.0"), IcmpDataDstIPLength: 16}), icmpErr, userspaceDrop},
		{"ICMP data destination elsewhere", "port-in", dropIf(topology.Condition{IcmpDataDstIPAddress: topology.Str("10.0.0.0"), IcmpDataDstIPLength: 8}), icmpErr, UserspaceOnly},
		{"ICMP data on a non-error", "port-in", dropIf(topology.Condition{IcmpDataSrcIPAddress: topology.Str("0.0.0.0"), IcmpDataSrcIPLength: 0}),
			udp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1, 2), Forward},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, ids := bridgeTopo(t)
			c := topology.IDPtr(tp.chain("c", tc.rule))
			if tc.where == "port-in" {
				tp.port(ids["vm1"]).InboundFilterID = c
			} else {
				tp.port(ids["vm2"]).OutboundFilterID = c
			}
			tp.in.MACTable = append(tp.in.MACTable, MACEntry{Bridge: ids["br"], VLAN: 5, MAC: mac(vm2), Port: ids["vm2"]})
			r := run(t, tp.snapshot(), nil, ids["vm1"], tc.spec)
			got := r.Kind
			if got == UserspaceOnly && len(r.Egress) == 0 {
				got = userspaceDrop
			}
			if got != tc.want {
				t.Fatalf("kind %v (%v), want %v", got, r.Reason, tc.want)
			}
		})
	}
}

func TestMatchNwDstRewritten(t *testing.T) {
	// A router that DNATs a floating IP and then, in the same inbound
	// chain, accepts only what it rewrote.
	tp, ids := routerTopo(t)
	tp.arp(ids["rtr"], vmIP, vmMAC)
	tp.in.Routers[0].InboundFilterID = topology.IDPtr(tp.chain("in",
		topology.Rule{Type: topology.RuleDNAT, FlowAction: topology.Str(topology.FlowContinue),
			Condition:  topology.Condition{NwDstAddress: topology.Str(fipIP), NwDstLength: 32},
			NatTargets: []topology.NatTarget{target(vmIP, vmIP, 0, 0)}},
		accept(topology.Condition{MatchNwDstRewritten: true}),
		dropAll()))
	snap := tp.snapshot()
	if r := run(t, snap, nil, ids["up"], udp(gwMAC, upMAC, "8.8.8.8", fipIP, 1, 2)); r.Kind != Forward {
		t.Errorf("to the floating IP: %v %v", r.Kind, r.Reason)
	}
	if r := run(t, snap, nil, ids["up"], udp(gwMAC, upMAC, "8.8.8.8", vmIP, 1, 2)); r.Kind != Drop {
		t.Errorf("straight to the VM: %v", r.Kind)
	}
}
