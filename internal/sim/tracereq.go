package sim

import (
	"fmt"
	"slices"
)

// traceReq is an enabled trace request compiled onto its device: MidoNet's
// trace rule at the head of the device's inbound filters (reference §2.19).
type traceReq struct {
	id   ID
	cond cond
}

// compileTraces compiles the enabled trace requests on device id of type
// devType (topology.TracePort, TraceBridge or TraceRouter), in id order. A
// request on a device the snapshot lacks matches nothing, as a chain on a
// missing device does.
func (b *Builder) compileTraces(devType string, id ID) ([]*traceReq, error) {
	var out []*traceReq
	for tid := range b.tracesByDev[id] {
		t := b.traces[tid]
		if t == nil || !t.Enabled || t.DeviceType == nil || *t.DeviceType != devType {
			continue
		}
		tr := &traceReq{id: t.ID}
		if t.Condition != nil {
			if err := b.compileCond(&tr.cond, &t.Condition.Condition, b.ipgroups); err != nil {
				return nil, fmt.Errorf("%w: trace request %s: condition: %w", ErrTopology, t.ID, err)
			}
		}
		out = append(out, tr)
	}
	slices.SortFunc(out, func(x, y *traceReq) int { return slices.Compare(x.id[:], y.id[:]) })
	return out, nil
}

// checkTraces evaluates the trace requests at the entry of a port or
// device: each one whose condition matches the packet as it is here joins
// Result.TraceRequests. The simulation does not change course: the agent
// decides, from each request's limit, whether to simulate the packet again
// with a trace (MidoNet's TraceRule restarting the simulation).
func (s *Simulator) checkTraces(reqs []*traceReq) {
	for _, t := range reqs {
		if !s.condMatches(&t.cond) {
			continue
		}
		if s.tracing {
			s.trace("trace-request", t.id, "matched", "")
		}
		if !hasID(s.res.TraceRequests, t.id) {
			s.res.TraceRequests = append(s.res.TraceRequests, t.id)
		}
	}
}
