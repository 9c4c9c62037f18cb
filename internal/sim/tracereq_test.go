package sim

import (
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/topology"
)

// traceRequest returns an enabled trace request on a device.
func traceRequest(name, devType string, dev ID, cond topology.Condition) topology.TraceRequest {
	return topology.TraceRequest{ID: id(name), Name: topology.Str(name), DeviceType: topology.Str(devType),
		DeviceID: topology.IDPtr(dev), Condition: &topology.MirrorCondition{Condition: cond}, Limit: 1 << 62, Enabled: true}
}

func TestTraceRequests(t *testing.T) {
	toWeb := tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 80)
	toDNS := udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 53)
	web := topology.Condition{NwProto: ptr(6), TpDst: &topology.PortRange{Start: 80, End: 80}}
	tests := []struct {
		name string
		reqs func(ids map[string]ID) []topology.TraceRequest
		spec PacketSpec
		want []string // matched requests, in path order
	}{
		{name: "a request on the ingress port matches", spec: toWeb, want: []string{"on-vm1"},
			reqs: func(ids map[string]ID) []topology.TraceRequest {
				return []topology.TraceRequest{traceRequest("on-vm1", topology.TracePort, ids["vm1"], web)}
			}},
		{name: "a packet outside the condition is not traced", spec: toDNS,
			reqs: func(ids map[string]ID) []topology.TraceRequest {
				return []topology.TraceRequest{traceRequest("on-vm1", topology.TracePort, ids["vm1"], web)}
			}},
		{name: "an empty condition matches everything", spec: toDNS, want: []string{"all"},
			reqs: func(ids map[string]ID) []topology.TraceRequest {
				return []topology.TraceRequest{traceRequest("all", topology.TraceBridge, ids["br"], topology.Condition{})}
			}},
		{name: "a disabled request matches nothing", spec: toWeb,
			reqs: func(ids map[string]ID) []topology.TraceRequest {
				r := traceRequest("off", topology.TraceRouter, ids["rtr"], web)
				r.Enabled = false
				return []topology.TraceRequest{r}
			}},
		{name: "requests on each device of the path match in order", spec: toWeb, want: []string{"port", "bridge", "router"},
			reqs: func(ids map[string]ID) []topology.TraceRequest {
				return []topology.TraceRequest{traceRequest("router", topology.TraceRouter, ids["rtr"], web),
					traceRequest("bridge", topology.TraceBridge, ids["br"], web),
					traceRequest("port", topology.TracePort, ids["vm1"], web)}
			}},
		{name: "a request on a device the packet does not cross does not match", spec: toWeb,
			reqs: func(ids map[string]ID) []topology.TraceRequest {
				return []topology.TraceRequest{traceRequest("up", topology.TracePort, ids["up"], topology.Condition{})}
			}},
		{name: "the router's request sees the packet as it enters the router", spec: toWeb, want: []string{"in-port"},
			reqs: func(ids map[string]ID) []topology.TraceRequest {
				return []topology.TraceRequest{traceRequest("in-port", topology.TraceRouter, ids["rtr"],
					topology.Condition{InPorts: []ID{ids["rtr-br"]}})}
			}},
		{name: "an inverted condition", spec: toDNS, want: []string{"not-web"},
			reqs: func(ids map[string]ID) []topology.TraceRequest {
				c := web
				c.CondInvert = true
				return []topology.TraceRequest{traceRequest("not-web", topology.TraceBridge, ids["br"], c)}
			}},
		{name: "an IP address group in the condition", spec: toWeb, want: []string{"group"},
			reqs: func(ids map[string]ID) []topology.TraceRequest {
				return []topology.TraceRequest{traceRequest("group", topology.TraceBridge, ids["br"],
					topology.Condition{IPAddrGroupSrc: topology.IDPtr(id("clients"))})}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, ids := routerTopo(t)
			tp.in.IPAddrGroups = append(tp.in.IPAddrGroups, topology.IPAddrGroup{ID: id("clients"),
				IPAddrPorts: []topology.IPAddrPort{{IPAddress: vmIP}}})
			tp.in.TraceRequests = tc.reqs(ids)
			snap := tp.snapshot()
			pkt := mkPacket(t, ids["vm1"], tc.spec)
			r := NewSimulator(1).Simulate(snap, nil, pkt, testNow)
			if r.Kind != Forward {
				t.Fatalf("%v %v, want forward: a trace request must not change the packet's course", r.Kind, r.Reason)
			}
			var want []ID
			for _, n := range tc.want {
				want = append(want, id(n))
			}
			if len(r.TraceRequests) != len(want) {
				t.Fatalf("matched %v, want %v", r.TraceRequests, want)
			}
			for i := range want {
				if r.TraceRequests[i] != want[i] {
					t.Fatalf("matched %v, want %v (in path order)", r.TraceRequests, want)
				}
			}
			// Traced, the packet takes the same path and the trace says
			// where each request matched.
			pkt.Trace = true
			traced := NewSimulator(1).Simulate(snap, nil, pkt, testNow)
			if traced.Kind != r.Kind || len(traced.Egress) != len(r.Egress) || len(traced.TraceRequests) != len(want) {
				t.Fatalf("traced %v %v %v, untraced %v %v %v", traced.Kind, traced.Egress, traced.TraceRequests,
					r.Kind, r.Egress, r.TraceRequests)
			}
			text := traced.Trace.String()
			for _, n := range tc.want {
				if !strings.Contains(text, "trace-request "+n+" ("+id(n).String()+"): matched") {
					t.Errorf("trace lacks request %s matching:\n%s", n, text)
				}
			}
		})
	}
}

// TestTraceRequestMask: a trace request's condition is evaluated on every
// packet through its device, so the flows installed meanwhile match what it
// read, and the ones installed without it carry the device's tag, which the
// agent invalidates when the request changes.
func TestTraceRequestMask(t *testing.T) {
	tp, ids := bridgeTopo(t)
	spec := udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 53)
	plain := NewSimulator(1).Simulate(tp.snapshot(), nil, mkPacket(t, ids["vm1"], spec), testNow)
	if plain.Seen&FieldTpDst != 0 {
		t.Fatalf("a bridged flow already reads the L4 port: the test needs another field")
	}
	if !hasTag(plain, DeviceTag(ids["br"])) {
		t.Fatalf("bridged flow lacks the bridge's tag")
	}
	tp.in.TraceRequests = []topology.TraceRequest{traceRequest("dns", topology.TraceBridge, ids["br"],
		topology.Condition{NwProto: ptr(17), TpDst: &topology.PortRange{Start: 53, End: 53}})}
	r := NewSimulator(1).Simulate(tp.snapshot(), nil, mkPacket(t, ids["vm1"], spec), testNow)
	if r.Seen&FieldTpDst == 0 || r.Mask.TpDst == 0 {
		t.Fatalf("the flow's mask ignores the field the trace condition read: seen %v", r.Seen)
	}
}

// TestMirrorIPGroup: a mirror's condition on an IP address group matches
// the group's members (the group used to be left empty for mirrors).
func TestMirrorIPGroup(t *testing.T) {
	tp, ids := bridgeTopo(t)
	tp.in.IPAddrGroups = []topology.IPAddrGroup{{ID: id("watched"), IPAddrPorts: []topology.IPAddrPort{{IPAddress: "10.0.0.11"}}}}
	tp.in.Mirrors = []topology.Mirror{{ID: id("m"), ToPortID: topology.IDPtr(ids["vm3"]),
		Conditions: []topology.MirrorCondition{{Condition: topology.Condition{IPAddrGroupSrc: topology.IDPtr(id("watched"))}}}}}
	tp.in.Bridges[0].InboundMirrorIDs = []ID{id("m")}
	snap := tp.snapshot()
	for _, tc := range []struct {
		src    string
		egress []ID
	}{{"10.0.0.11", []ID{ids["vm3"], ids["vm2"]}}, {"10.0.0.99", []ID{ids["vm2"]}}} {
		r := NewSimulator(1).Simulate(snap, nil, mkPacket(t, ids["vm1"],
			udp("02:00:00:00:00:01", "02:00:00:00:00:02", tc.src, "10.0.0.12", 1, 2)), testNow)
		if !sameIDs(egressPorts(r), tc.egress) {
			t.Errorf("from %s: egress %v, want %v", tc.src, egressPorts(r), tc.egress)
		}
	}
}

// TestTraceRequestNoAllocs: requests that do not match add no allocation
// to the bridge path.
func TestTraceRequestNoAllocs(t *testing.T) {
	tp, ids := bridgeTopo(t)
	tp.in.TraceRequests = []topology.TraceRequest{traceRequest("web", topology.TraceBridge, ids["br"],
		topology.Condition{NwProto: ptr(6)})}
	snap := tp.snapshot()
	pkt := mkPacket(t, ids["vm1"], udp("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.11", "10.0.0.12", 1, 2))
	s := NewSimulator(1)
	s.Simulate(snap, nil, pkt, testNow)
	if n := testing.AllocsPerRun(100, func() { s.Simulate(snap, nil, pkt, testNow) }); n != 0 {
		t.Fatalf("%v allocations per simulation", n)
	}
}
