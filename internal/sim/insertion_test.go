package sim

import (
	"testing"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

const (
	insVM1 = "02:00:00:00:00:01" // the protected VM
	insVM2 = "02:00:00:00:00:02"
)

// insertionTopo is bridgeTopo with service ports svc1 and svc2 on a
// bridge of their own, and the given insertions on vm1.
func insertionTopo(t *testing.T, ins ...topology.L2Insertion) (*topo, map[string]ID) {
	tp, ids := bridgeTopo(t)
	svcNet := tp.bridge("svc-net")
	ids["svc1"] = tp.vmPort(svcNet, "svc1")
	ids["svc2"] = tp.vmPort(svcNet, "svc2")
	tp.learn(ids["br"], insVM1, ids["vm1"])
	for i := range ins {
		ins[i].ID = id("ins" + itoa(i))
		ins[i].PortID = topology.IDPtr(ids["vm1"])
		ins[i].MAC = topology.Str(insVM1)
	}
	tp.in.L2Insertions = ins
	return tp, ids
}

func insertion(srv ID, position, vlan int, failOpen bool) topology.L2Insertion {
	return topology.L2Insertion{SrvPortID: topology.IDPtr(srv), Position: position, VLAN: vlan, FailOpen: failOpen}
}

// hop is one simulation of a walk through insertions: a packet entering
// port in (with the tag the previous hop left on it) and where it leaves.
type hop struct {
	in      string
	tci     uint16 // the frame's tag as it enters (priority and VLAN id)
	kind    Kind
	reason  DropReason
	out     string // the one egress port, for Forward
	wantTCI uint16 // the tag it leaves with (0: untagged)
}

func TestL2Insertion(t *testing.T) {
	toVM2 := udp(insVM1, insVM2, "10.0.0.11", "10.0.0.12", 1000, 53)
	toVM1 := udp(insVM2, insVM1, "10.0.0.12", "10.0.0.11", 53, 1000)
	tests := []struct {
		name  string
		ins   func(ids map[string]ID) []topology.L2Insertion
		down  []string // ports not active (their host's agent lost them)
		spec  PacketSpec
		walk  []hop
		state []string // StatePorts of the first hop
	}{
		{"from the protected port: to the service, then on to the bridge", func(ids map[string]ID) []topology.L2Insertion {
			return []topology.L2Insertion{insertion(ids["svc1"], 1, 0, false)}
		}, nil, toVM2, []hop{
			{in: "vm1", kind: Forward, out: "svc1"},
			{in: "svc1", kind: Forward, out: "vm2"},
		}, []string{"vm1", "svc1"}},
		{"to the protected port: to the service, then out of the port", func(ids map[string]ID) []topology.L2Insertion {
			return []topology.L2Insertion{insertion(ids["svc1"], 1, 0, false)}
		}, nil, toVM1, []hop{
			{in: "vm2", kind: Forward, out: "svc1"},
			{in: "svc1", kind: Forward, out: "vm1"},
		}, []string{"vm1", "svc1"}},
		{"a VLAN marks the direction towards the service", func(ids map[string]ID) []topology.L2Insertion {
			return []topology.L2Insertion{insertion(ids["svc1"], 1, 10, false)}
		}, nil, toVM2, []hop{
			{in: "vm1", kind: Forward, out: "svc1", wantTCI: 10 | pcpIn},
			{in: "svc1", tci: 10 | pcpIn, kind: Forward, out: "vm2"},
		}, nil},
		{"the other direction's mark", func(ids map[string]ID) []topology.L2Insertion {
			return []topology.L2Insertion{insertion(ids["svc1"], 1, 10, false)}
		}, nil, toVM1, []hop{
			{in: "vm2", kind: Forward, out: "svc1", wantTCI: 10 | pcpOut},
			{in: "svc1", tci: 10 | pcpOut, kind: Forward, out: "vm1"},
		}, nil},
		{"two services in order of position", func(ids map[string]ID) []topology.L2Insertion {
			return []topology.L2Insertion{insertion(ids["svc2"], 2, 20, false), insertion(ids["svc1"], 1, 10, false)}
		}, nil, toVM2, []hop{
			{in: "vm1", kind: Forward, out: "svc1", wantTCI: 10 | pcpIn},
			{in: "svc1", tci: 10 | pcpIn, kind: Forward, out: "svc2", wantTCI: 20 | pcpIn},
			{in: "svc2", tci: 20 | pcpIn, kind: Forward, out: "vm2"},
		}, []string{"vm1", "svc1", "svc2"}},
		{"a service port that is down drops the traffic", func(ids map[string]ID) []topology.L2Insertion {
			return []topology.L2Insertion{insertion(ids["svc1"], 1, 0, false)}
		}, []string{"svc1"}, toVM2, []hop{
			{in: "vm1", kind: Drop, reason: ReasonServicePortDown},
		}, nil},
		{"fail open: a service port that is down is skipped", func(ids map[string]ID) []topology.L2Insertion {
			return []topology.L2Insertion{insertion(ids["svc1"], 1, 10, true)}
		}, []string{"svc1"}, toVM2, []hop{
			{in: "vm1", kind: Forward, out: "vm2"},
		}, nil},
		{"fail open skips only the service that is down", func(ids map[string]ID) []topology.L2Insertion {
			return []topology.L2Insertion{insertion(ids["svc1"], 1, 0, true), insertion(ids["svc2"], 2, 0, false)}
		}, []string{"svc1"}, toVM1, []hop{
			{in: "vm2", kind: Forward, out: "svc2"},
			{in: "svc2", kind: Forward, out: "vm1"},
		}, nil},
		{"a service port takes nothing that was not redirected to it", func(ids map[string]ID) []topology.L2Insertion {
			return []topology.L2Insertion{insertion(ids["svc1"], 1, 0, false)}
		}, nil, udp(insVM2, "02:00:00:00:00:99", "10.0.0.12", "10.0.0.99", 1, 2), []hop{
			// vm2 floods an unknown destination: vm1 and vm3, not the service.
			{in: "vm2", kind: Forward, out: "vm1,vm3"},
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, ids := insertionTopo(t)
			tp.in.L2Insertions = tc.ins(ids)
			for i := range tp.in.L2Insertions {
				x := &tp.in.L2Insertions[i]
				x.ID, x.PortID, x.MAC = id("ins"+itoa(i)), topology.IDPtr(ids["vm1"]), topology.Str(insVM1)
			}
			for _, n := range tc.down {
				tp.port(ids[n]).Active = false
			}
			snap := tp.snapshot()
			for i, h := range tc.walk {
				spec := tc.spec
				spec.VLAN = h.tci
				r := run(t, snap, nil, ids[h.in], spec)
				if r.Kind != h.kind || (h.kind != Forward && r.Reason != h.reason) {
					t.Fatalf("hop %d (into %s): %v %v, want %v %v", i, h.in, r.Kind, r.Reason, h.kind, h.reason)
				}
				if h.kind != Forward {
					continue
				}
				var want []ID
				for _, n := range splitNames(h.out) {
					want = append(want, ids[n])
				}
				if !sameIDs(egressPorts(r), want) {
					t.Fatalf("hop %d (into %s): egress %v, want %s", i, h.in, egressPorts(r), h.out)
				}
				e := r.Egress[0]
				tci := spec.VLAN
				if e.Set&FieldVLAN != 0 {
					tci = e.Values.VLAN &^ packet.VLANPresent
				}
				if tci != h.wantTCI {
					t.Errorf("hop %d (into %s): leaves %s with tag %#x, want %#x", i, h.in, h.out, tci, h.wantTCI)
				}
				if i == 0 && tc.state != nil {
					var want []ID
					for _, n := range tc.state {
						want = append(want, ids[n])
					}
					if !sameIDs(r.StatePorts, want) {
						t.Errorf("state ports %v, want %v", r.StatePorts, tc.state)
					}
				}
			}
		})
	}
}

func splitNames(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func TestL2TransformRules(t *testing.T) {
	toVM2 := udp(insVM1, insVM2, "10.0.0.11", "10.0.0.12", 1000, 53)
	redirect := func(target ID, ingress, failOpen bool, push int, pop bool) topology.Rule {
		return topology.Rule{Type: topology.RuleL2Transform, FlowAction: topology.Str(topology.FlowRedirect),
			TargetPortID: topology.IDPtr(target), Ingress: ingress, FailOpen: failOpen, PushVLAN: push, PopVLAN: pop}
	}
	transform := func(push int, pop bool) topology.Rule {
		return topology.Rule{Type: topology.RuleL2Transform, FlowAction: topology.Str(topology.FlowAccept), PushVLAN: push, PopVLAN: pop}
	}
	tests := []struct {
		name    string
		rules   func(ids map[string]ID) []topology.Rule
		vlan    uint16
		kind    Kind
		reason  DropReason
		out     string
		wantTCI uint16
	}{
		// VLAN 7's MAC table is empty: the bridge floods it.
		{"push a VLAN and accept", func(map[string]ID) []topology.Rule { return []topology.Rule{transform(7, false), dropAll()} },
			0, Forward, 0, "vm2,vm3", 7},
		{"pop the VLAN", func(map[string]ID) []topology.Rule { return []topology.Rule{transform(0, true)} },
			7, Forward, 0, "vm2", 0},
		{"a transform that changes nothing does not fire", func(map[string]ID) []topology.Rule {
			return []topology.Rule{transform(0, false), dropAll()}
		}, 0, Drop, ReasonChain, "", 0},
		{"pushing onto a tagged frame would stack tags: dropped", func(map[string]ID) []topology.Rule {
			return []topology.Rule{transform(7, false)}
		}, 5, Drop, ReasonVLANStack, "", 0},
		{"redirect out of a port, skipping its chains", func(ids map[string]ID) []topology.Rule {
			return []topology.Rule{redirect(ids["vm3"], false, false, 0, false)}
		}, 0, Forward, 0, "vm3", 0},
		{"redirect into a port: its bridge forwards", func(ids map[string]ID) []topology.Rule {
			return []topology.Rule{redirect(ids["other-in"], true, false, 0, false)}
		}, 0, Forward, 0, "other-vm", 0},
		{"redirect to a port that does not exist", func(ids map[string]ID) []topology.Rule {
			return []topology.Rule{redirect(id("nowhere"), false, false, 0, false)}
		}, 0, TemporaryDrop, ReasonUnknownPort, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, ids := bridgeTopo(t)
			other := tp.bridge("other")
			ids["other-in"] = tp.vmPort(other, "other-in")
			ids["other-vm"] = tp.vmPort(other, "other-vm")
			tp.learn(other, insVM2, ids["other-vm"])
			tp.port(ids["vm1"]).InboundFilterID = topology.IDPtr(tp.chain("l2", tc.rules(ids)...))
			spec := toVM2
			spec.VLAN = tc.vlan
			r := run(t, tp.snapshot(), nil, ids["vm1"], spec)
			if r.Kind != tc.kind || r.Reason != tc.reason {
				t.Fatalf("%v %v, want %v %v", r.Kind, r.Reason, tc.kind, tc.reason)
			}
			if tc.kind != Forward {
				return
			}
			var want []ID
			for _, n := range splitNames(tc.out) {
				want = append(want, ids[n])
			}
			if !sameIDs(egressPorts(r), want) {
				t.Fatalf("egress %v, want %s", egressPorts(r), tc.out)
			}
			tci := tc.vlan
			if e := r.Egress[0]; e.Set&FieldVLAN != 0 {
				tci = e.Values.VLAN &^ packet.VLANPresent
			}
			if tci != tc.wantTCI {
				t.Errorf("leaves with tag %#x, want %#x", tci, tc.wantTCI)
			}
		})
	}
}
