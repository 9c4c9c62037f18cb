package sim

import (
	"testing"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/topology"
)

// referenceTopo is the benchmark's reference path, a typical OpenStack
// tenant: VMs on a network whose ports carry security-group chains with
// conntrack, a tenant router that SNATs to its gateway address, a provider
// router, and the provider's uplink.
//
//	vm1, vm2 ── net ── tenant (10.0.0.1) ══ provider ── uplink (203.0.113.1)
//	                    SNAT → 192.0.2.10     192.0.2.10/32 → tenant
func referenceTopo(t testing.TB) (*topo, map[string]ID) {
	tp := newTopo(t)
	ids := map[string]ID{}
	ids["net"] = tp.bridge("net")
	ids["tenant"] = tp.router("tenant")
	ids["provider"] = tp.router("provider")
	ids["vm1"] = tp.vmPort(ids["net"], "vm1")
	ids["vm2"] = tp.vmPort(ids["net"], "vm2")
	ids["net-t"] = tp.bridgePort(ids["net"], "net-t")
	ids["t-net"] = tp.routerPort(ids["tenant"], "t-net", "10.0.0.1/24", rtrMAC, false)
	tp.link(ids["net-t"], ids["t-net"])
	tp.providerUplink(ids, ids["tenant"], ids["provider"])
	tp.route(ids["provider"], "p-snat", "192.0.2.10/32", ids["p-t"], "169.254.0.1", 0)
	tp.arp(ids["tenant"], vmIP, vmMAC)
	tp.arp(ids["tenant"], "10.0.0.12", "02:00:00:00:00:02")
	tp.learn(ids["net"], vmMAC, ids["vm1"])
	tp.learn(ids["net"], "02:00:00:00:00:02", ids["vm2"])

	// Security groups, as MidoNet's Neutron translation lays them out.
	sgEgress := tp.chain("sg-egress", accept(topology.Condition{}))
	sgIngress := tp.chain("sg-ingress",
		accept(topology.Condition{NwProto: ptr(6), TpDst: &topology.PortRange{Start: 22, End: 22}}),
		accept(topology.Condition{NwProto: ptr(1)}))
	for _, vm := range []string{"vm1", "vm2"} {
		vmAddr := map[string]string{"vm1": vmIP, "vm2": "10.0.0.12"}[vm]
		in := tp.chain(vm+"-in",
			accept(topology.Condition{MatchReturnFlow: true}),
			dropIf(topology.Condition{DlType: ptr(0x0800), NwSrcAddress: topology.Str(vmAddr), NwSrcLength: 32, InvNwSrc: true}),
			jump(sgEgress), dropIf(topology.Condition{DlType: ptr(0x0806), InvDlType: true}))
		out := tp.chain(vm+"-out",
			accept(topology.Condition{MatchReturnFlow: true}),
			jump(sgIngress), dropIf(topology.Condition{DlType: ptr(0x0806), InvDlType: true}))
		tp.port(ids[vm]).InboundFilterID = topology.IDPtr(in)
		tp.port(ids[vm]).OutboundFilterID = topology.IDPtr(out)
	}
	tIn := tp.chain("tenant-in", natRule(topology.RuleRevSNAT, topology.Condition{InPorts: []ID{ids["t-p"]},
		NwDstAddress: topology.Str("192.0.2.10"), NwDstLength: 32}))
	tOut := tp.chain("tenant-out", natRule(topology.RuleSNAT, topology.Condition{OutPorts: []ID{ids["t-p"]},
		NwSrcAddress: topology.Str("10.0.0.0"), NwSrcLength: 24}, target("192.0.2.10", "192.0.2.10", 1024, 65535)))
	tp.in.Routers[0].InboundFilterID = topology.IDPtr(tIn)
	tp.in.Routers[0].OutboundFilterID = topology.IDPtr(tOut)
	return tp, ids
}

func TestReferencePath(t *testing.T) {
	tp, ids := referenceTopo(t)
	snap := tp.snapshot()
	tables := flowstate.NewTables(2, flowstate.DefaultIdleTTL)
	out := run(t, snap, tables.View(0), ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443))
	if out.Kind != Forward || !sameIDs(egressPorts(out), []ID{ids["uplink"]}) {
		t.Fatalf("out: %v %v %v", out.Kind, out.Reason, egressPorts(out))
	}
	v := out.Egress[0].Values
	if v.NwSrc != ip("192.0.2.10").As4() || v.NwTTL != 62 || v.EthDst != mac(gwMAC) {
		t.Fatalf("out rewrite: %+v", v)
	}
	if len(out.Conntrack) != 1 || len(out.NAT) != 2 || out.HardTimeout != StatefulFlowTimeout {
		t.Fatalf("state: %d conntrack, %d NAT, timeout %v", len(out.Conntrack), len(out.NAT), out.HardTimeout)
	}
	tables.Shard(0).Commit(out.Conntrack, out.NAT)
	// The reply enters the uplink, is routed to the tenant, un-SNATed, and
	// passes vm1's outbound chain as return traffic; it may be handled by
	// another worker.
	back := run(t, snap, tables.View(1), ids["uplink"], tcp(gwMAC, "ac:ca:ba:00:01:03", "8.8.8.8", "192.0.2.10", 443, v.TpSrc))
	if back.Kind != Forward || !sameIDs(egressPorts(back), []ID{ids["vm1"]}) {
		t.Fatalf("back: %v %v %v", back.Kind, back.Reason, egressPorts(back))
	}
	if bv := back.Egress[0].Values; bv.NwDst != ip(vmIP).As4() || bv.TpDst != 40000 || bv.EthDst != mac(vmMAC) {
		t.Fatalf("back rewrite: %+v", bv)
	}
	// A new connection from outside is refused by vm1's security group.
	in := run(t, snap, tables.View(1), ids["uplink"], tcp(gwMAC, "ac:ca:ba:00:01:03", "8.8.8.8", "192.0.2.10", 443, 9))
	if in.Kind == Forward {
		t.Fatal("unsolicited traffic reached the VM")
	}
	// Spoofed sources are dropped at the VM's port.
	if r := run(t, snap, tables.View(0), ids["vm1"], tcp(vmMAC, rtrMAC, "10.0.0.99", "8.8.8.8", 1, 2)); r.Kind != Drop {
		t.Fatalf("spoofed: %v", r.Kind)
	}
}
