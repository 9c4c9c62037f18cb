package sim

import (
	"testing"

	"github.com/midonet/midonet/internal/topology"
)

func mirrorOf(name string, to ID, conds ...topology.Condition) topology.Mirror {
	m := topology.Mirror{ID: id(name), ToPortID: topology.IDPtr(to)}
	for _, c := range conds {
		m.Conditions = append(m.Conditions, topology.MirrorCondition{Condition: c})
	}
	return m
}

func TestMirrors(t *testing.T) {
	const vm1, vm2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
	tcpOnly := topology.Condition{NwProto: ptr(6)}
	tests := []struct {
		name   string
		setup  func(tp *topo, ids map[string]ID)
		spec   PacketSpec
		kind   Kind
		egress []string
	}{
		{"bridge inbound mirror copies matching packets", func(tp *topo, ids map[string]ID) {
			tp.in.Mirrors = []topology.Mirror{mirrorOf("m", ids["tap"], tcpOnly)}
			tp.in.Bridges[0].InboundMirrorIDs = []ID{id("m")}
		}, tcp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1, 2), Forward, []string{"vm2", "tap"}},
		{"a mirror whose conditions do not match copies nothing", func(tp *topo, ids map[string]ID) {
			tp.in.Mirrors = []topology.Mirror{mirrorOf("m", ids["tap"], tcpOnly)}
			tp.in.Bridges[0].InboundMirrorIDs = []ID{id("m")}
		}, udp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1, 2), Forward, []string{"vm2"}},
		{"port pre-filter mirror copies what the port's chain then drops", func(tp *topo, ids map[string]ID) {
			tp.in.Mirrors = []topology.Mirror{mirrorOf("m", ids["tap"], topology.Condition{})}
			tp.port(ids["vm1"]).InboundMirrorIDs = []ID{id("m")}
			tp.port(ids["vm1"]).InboundFilterID = topology.IDPtr(tp.chain("drop", dropAll()))
		}, tcp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1, 2), Forward, []string{"tap"}},
		{"port post-filter mirror sees only what the chain let through", func(tp *topo, ids map[string]ID) {
			tp.in.Mirrors = []topology.Mirror{mirrorOf("m", ids["tap"], topology.Condition{})}
			tp.port(ids["vm1"]).PostInFilterMirrorIDs = []ID{id("m")}
			tp.port(ids["vm1"]).InboundFilterID = topology.IDPtr(tp.chain("drop", dropAll()))
		}, tcp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1, 2), Drop, nil},
		{"egress port mirror", func(tp *topo, ids map[string]ID) {
			tp.in.Mirrors = []topology.Mirror{mirrorOf("m", ids["tap"], topology.Condition{})}
			tp.port(ids["vm2"]).OutboundMirrorIDs = []ID{id("m")}
		}, tcp(vm1, vm2, "10.0.0.11", "10.0.0.12", 1, 2), Forward, []string{"vm2", "tap"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, ids := bridgeTopo(t)
			ids["tap"] = tp.vmPort(tp.bridge("taps"), "tap")
			tc.setup(tp, ids)
			r := run(t, tp.snapshot(), nil, ids["vm1"], tc.spec)
			if r.Kind != tc.kind {
				t.Fatalf("kind %v (%v), want %v", r.Kind, r.Reason, tc.kind)
			}
			var want []ID
			for _, n := range tc.egress {
				want = append(want, ids[n])
			}
			if !sameIDs(egressPorts(r), want) {
				t.Errorf("egress %v, want %v", egressPorts(r), want)
			}
			if len(tp.in.Mirrors) > 0 && !hasTag(r, DeviceTag(id("m"))) && r.Kind != Drop {
				t.Error("flow not tagged with the mirror")
			}
		})
	}
}

func TestRouterOutboundMirrorSeesRoutedPacket(t *testing.T) {
	tp, ids := routerTopo(t)
	tap := tp.vmPort(tp.bridge("taps"), "tap")
	tp.in.Mirrors = []topology.Mirror{mirrorOf("m", tap, topology.Condition{})}
	tp.in.Routers[0].OutboundMirrorIDs = []ID{id("m")}
	r := run(t, tp.snapshot(), nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2))
	if r.Kind != Forward || !sameIDs(egressPorts(r), []ID{ids["up"], tap}) {
		t.Fatalf("%v %v %v", r.Kind, r.Reason, egressPorts(r))
	}
	for _, e := range r.Egress {
		if e.Values.NwTTL != 63 || e.Values.EthDst != mac(gwMAC) {
			t.Errorf("copy to %v not the routed packet: %+v", e.Port, e.Values)
		}
	}
}
