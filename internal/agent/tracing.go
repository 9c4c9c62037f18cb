package agent

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// Trace requests (MidoNet's §2.19): the simulation reports the enabled
// requests whose condition a packet matched at their device; a request
// under its limit on this host has the packet simulated again with a
// trace, and the agent acts on that traced result. Each traced packet is
// logged (one record with the request ids and the device-by-device trace),
// counted, and kept among the last few of its request, which the agent
// publishes in the store (nsdb.TracedPacketsKey) for the API to show. As in
// MidoNet, the limit counts simulations per host and resets when the
// request changes; the flow installed for a traced packet is an ordinary
// one, so a flow's later packets are not traced. A change to a request
// invalidates the flows through its device, so that flows installed before
// it was enabled do not bypass it.

// tracedKeep is how many traced packets of each request an agent keeps and
// publishes.
const tracedKeep = 16

// tracePublishEvery is how often the agent publishes what it traced since
// the last time: a burst of traced packets costs one store write per
// request. traceRetryAfter is how long it waits after the store refused.
const (
	tracePublishEvery = 250 * time.Millisecond
	traceRetryAfter   = 5 * time.Second
)

// tracer counts, keeps and publishes the packets traced for trace requests.
type tracer struct {
	a *Agent

	mu sync.Mutex
	// limits are the enabled requests' counters, by request; a request's
	// entry is replaced when it changes, which resets its count.
	limits map[topology.ID]*traceLimit
	// recent are the last packets traced for each request; dirty the
	// requests whose recent packets are not published yet, gone the
	// deleted requests whose published packets must be removed.
	recent map[topology.ID][]topology.TracedPacket
	dirty  map[topology.ID]bool
	gone   map[topology.ID]bool
	kick   chan struct{}
}

// traceLimit counts the packets traced for one request on this host.
type traceLimit struct {
	limit int64
	hits  atomic.Int64
}

func newTracer(a *Agent) *tracer {
	return &tracer{a: a, limits: map[topology.ID]*traceLimit{}, recent: map[topology.ID][]topology.TracedPacket{},
		dirty: map[topology.ID]bool{}, gone: map[topology.ID]bool{}, kick: make(chan struct{}, 1)}
}

// update follows a change of a trace request (nil: deleted). Any change
// resets the request's count; a disabled request keeps its traced packets
// for the operator to read, a deleted one loses them.
func (t *tracer) update(id topology.ID, req *topology.TraceRequest) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.limits, id)
	if req == nil {
		delete(t.recent, id)
		delete(t.dirty, id)
		t.gone[id] = true
		t.a.metrics.traced.DeleteLabelValues(id.String())
		return
	}
	if req.Enabled {
		t.limits[id] = &traceLimit{limit: req.Limit}
	}
}

// sync follows a reload of the whole topology: requests that disappeared
// are deleted, changed ones updated; unchanged ones keep their counts.
func (t *tracer) sync(reqs map[string]topology.TraceRequest, old map[string]topology.TraceRequest) {
	for k, o := range old {
		if _, ok := reqs[k]; !ok {
			t.update(o.ID, nil)
		}
	}
	for k, r := range reqs {
		if o, ok := old[k]; ok && sameTraceRequest(&o, &r) {
			continue
		}
		t.update(r.ID, &r)
	}
}

func sameTraceRequest(a, b *topology.TraceRequest) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// admit returns the requests among matched that may trace one more packet
// on this host, counting the packet against each; nil when none may.
func (t *tracer) admit(matched []topology.ID) []topology.ID {
	var out []topology.ID
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range matched {
		l, ok := t.limits[id]
		if !ok || l.hits.Load() >= l.limit {
			continue
		}
		if l.hits.Add(1) <= l.limit {
			out = append(out, id)
		}
	}
	return out
}

// record logs, counts and keeps a traced packet.
func (t *tracer) record(p topology.TracedPacket) {
	ids := make([]string, len(p.TraceRequestIDs))
	for i, id := range p.TraceRequestIDs {
		ids[i] = id.String()
	}
	steps := make([]string, len(p.Trace))
	for i, s := range p.Trace {
		steps[i] = sim.TraceEvent(s).String()
	}
	t.a.log.Info("packet traced", "trace_request_ids", strings.Join(ids, ","), "port_id", p.PortID.String(),
		"packet", p.Packet, "result", p.Result, "reason", p.Reason, "trace", steps)
	t.mu.Lock()
	for _, id := range p.TraceRequestIDs {
		if _, enabled := t.limits[id]; !enabled {
			continue // disabled or deleted meanwhile
		}
		t.a.metrics.traced.WithLabelValues(id.String()).Inc()
		r := append(t.recent[id], p)
		if len(r) > tracedKeep {
			r = append(r[:0:0], r[len(r)-tracedKeep:]...)
		}
		t.recent[id] = r
		t.dirty[id] = true
	}
	t.mu.Unlock()
	t.wake()
}

// wake has run publish soon.
func (t *tracer) wake() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// run publishes what was traced, at most every tracePublishEvery, until ctx
// ends. What the store refuses is tried again traceRetryAfter later.
func (t *tracer) run(ctx context.Context) {
	tick := time.NewTicker(tracePublishEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.kick:
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C: // let a burst gather
		}
		if t.publish(ctx) {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(traceRetryAfter):
		}
		t.wake()
	}
}

// publish writes the recent packets of the requests that traced some since
// the last time, and removes those of deleted requests. It reports false
// when the store refused some, which stay to be published.
func (t *tracer) publish(ctx context.Context) bool {
	host := t.a.hostID.String()
	type write struct {
		id    topology.ID
		value []byte // nil: delete
	}
	var writes []write
	t.mu.Lock()
	for id := range t.dirty {
		b, err := json.Marshal(t.recent[id])
		if err != nil {
			continue
		}
		writes = append(writes, write{id, b})
	}
	for id := range t.gone {
		writes = append(writes, write{id: id})
	}
	clear(t.dirty)
	clear(t.gone)
	t.mu.Unlock()
	var failed int
	var lastErr error
	for _, w := range writes {
		key := nsdb.TracedPacketsKey(w.id.String(), host)
		var err error
		if w.value == nil {
			err = t.a.session.DeleteState(ctx, key)
		} else {
			err = t.a.session.SetState(ctx, key, w.value)
		}
		if err == nil || ctx.Err() != nil {
			continue
		}
		failed, lastErr = failed+1, err
		t.mu.Lock()
		if w.value == nil {
			t.gone[w.id] = true
		} else if _, ok := t.recent[w.id]; ok {
			t.dirty[w.id] = true
		}
		t.mu.Unlock()
	}
	if failed > 0 {
		t.a.log.Warn("traced packets not published; will retry", "trace_requests", failed, "retry_in", traceRetryAfter, "err", lastErr)
	}
	return failed == 0
}

// traceAgain simulates a packet again with a trace when it matched trace
// requests still under their limit, and returns the result to act on: the
// traced one, or res unchanged. A packet parked for ARP was admitted when
// it first matched (u.traced) and is traced again on each retry without
// counting again; it is recorded once its fate is known.
func (w *worker) traceAgain(u *upcall, pkt *sim.Packet, res *sim.Result, snap *sim.Snapshot, now time.Time) *sim.Result {
	ids := u.traced
	if ids == nil {
		if len(res.TraceRequests) == 0 {
			return res
		}
		if ids = w.a.tracer.admit(res.TraceRequests); ids == nil {
			return res
		}
	}
	pkt.Trace = true
	res = w.sim.Simulate(snap, w.view, pkt, now)
	pkt.Trace = false
	if res.Kind == sim.ARPNeeded || res.Kind == sim.NATLeaseNeeded {
		// Traced when it is simulated again, once the MAC or the SNAT
		// port block is there.
		u.traced = ids
		return res
	}
	u.traced = nil
	p := topology.TracedPacket{Time: now, HostID: w.a.hostID, PortID: pkt.Port, TraceRequestIDs: ids,
		Packet: pkt.Match.String(), Result: res.Kind.String(), Trace: make([]topology.TraceStep, len(res.Trace))}
	if res.Reason != sim.ReasonNone {
		p.Reason = res.Reason.String()
	}
	for i, e := range res.Trace {
		p.Trace[i] = topology.TraceStep(e)
	}
	w.a.tracer.record(p)
	return res
}

// traceRequestChanged tells the tracer about a trace request the topology
// follower just applied.
func (a *Agent) traceRequestChanged(id string) {
	uid, err := topology.ParseID(id)
	if err != nil {
		return
	}
	if t, ok := a.topo.traces[id]; ok {
		a.tracer.update(uid, &t)
		return
	}
	a.tracer.update(uid, nil)
}
