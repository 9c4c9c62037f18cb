package sim

import (
	"fmt"

	"github.com/midonet/midonet/internal/topology"
)

// traceReq is an enabled trace request compiled onto its device: MidoNet's
// trace rule at the head of the device's inbound filters (reference §2.19).
type traceReq struct {
	id   ID
	cond cond
}

// compileTraceRequests puts each enabled trace request on its port, bridge
// or router. A request on a device the snapshot lacks is left out: it
// matches nothing, as a chain on a missing device does.
func (s *Snapshot) compileTraceRequests(reqs []topology.TraceRequest, ipg map[ID]map[[4]byte]struct{}) error {
	for i := range reqs {
		t := &reqs[i]
		if !t.Enabled || t.DeviceType == nil || t.DeviceID == nil {
			continue
		}
		tr := &traceReq{id: t.ID}
		if t.Condition != nil {
			if err := s.compileCond(&tr.cond, &t.Condition.Condition, ipg); err != nil {
				return fmt.Errorf("%w: trace request %s: condition: %w", ErrTopology, t.ID, err)
			}
		}
		if t.Name != nil && *t.Name != "" {
			s.names[t.ID] = *t.Name
		}
		dev := *t.DeviceID
		switch *t.DeviceType {
		case topology.TracePort:
			if p, ok := s.ports[dev]; ok {
				p.traces = append(p.traces, tr)
			}
		case topology.TraceBridge:
			if b, ok := s.bridges[dev]; ok {
				b.traces = append(b.traces, tr)
			}
		case topology.TraceRouter:
			if r, ok := s.routers[dev]; ok {
				r.traces = append(r.traces, tr)
			}
		}
	}
	return nil
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
