package agent

import (
	"container/heap"
	"container/list"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
)

// flowEntry is a flow the agent installed, with what it depends on.
type flowEntry struct {
	key, mask packet.FlowKey // key is masked on add
	actions   []datapath.Action
	tags      []sim.Tag
	expires   time.Time
	// since is the flow table's invalidation count when the decision to
	// install the flow began (flowTable.generation), before the snapshot
	// and port tables it used were read.
	since uint64
	// The flow state the flow holds references on, released with it.
	shard *flowstate.Shard
	conns []flowstate.ConnKey
	nats  []flowstate.NATEntry

	elem *list.Element // in the insertion order, for eviction
	at   int           // index in the expiry heap while installed
	dead bool          // removed: tag sets drop it lazily
}

// expiryHeap orders installed flows by hard timeout, the earliest first,
// so that expiring them costs what expires, not a walk of every flow under
// the lock installs need (at 300k flows, four walks a second took a third
// of the new-flow rate).
type expiryHeap []*flowEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*flowEntry)
	e.at = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.at = -1
	return e
}

// tagSet lists the flows that carry a tag. Flows are appended and removed
// lazily (marked dead, skipped, and compacted away once they are the
// majority): a tag every flow of a busy device carries would otherwise make
// each install pay for a hash set's growth.
type tagSet struct {
	flows []*flowEntry
	dead  int
}

func (s *tagSet) compact() {
	live := s.flows[:0]
	for _, e := range s.flows {
		if !e.dead {
			live = append(live, e)
		}
	}
	clear(s.flows[len(live):])
	s.flows, s.dead = live, 0
}

type flowID struct{ key, mask packet.FlowKey }

// flowTable is the agent's index of installed flows: by tag for
// invalidation, by age for eviction at the flow limit, by expiry for hard
// timeouts. It mirrors the datapath's flow table.
type flowTable struct {
	dp      datapath.Datapath
	limit   int
	metrics *Metrics

	mu      sync.Mutex
	flows   map[flowID]*flowEntry
	byTag   map[sim.Tag]*tagSet
	order   *list.List
	expiry  expiryHeap
	history invalidationLog // guarded by mu
	gen     atomic.Uint64   // invalidate calls so far; written under mu
}

// invalidationHistory is how many recent tag invalidations the flow table
// remembers to refuse flows simulated before them.
const invalidationHistory = 4096

// invalidationLog is a ring of the most recent tag invalidations. A flow
// simulated while one of its tags was invalidated must not be installed:
// it was computed from what the invalidation replaced, and nothing would
// remove it afterwards (MidoNet keeps the same history).
type invalidationLog struct {
	n     uint64 // entries written
	floor uint64 // entries of invalidations up to this one were overwritten
	tags  [invalidationHistory]sim.Tag
	seqs  [invalidationHistory]uint64
}

// record logs the tags of invalidation number seq.
func (l *invalidationLog) record(seq uint64, tags []sim.Tag) {
	for _, tag := range tags {
		i := l.n % invalidationHistory
		if l.n >= invalidationHistory {
			l.floor = l.seqs[i]
		}
		l.tags[i], l.seqs[i] = tag, seq
		l.n++
	}
}

// invalidatedSince reports whether one of tags was invalidated after
// invalidation number seq, up to number now, or may have been (the ring no
// longer reaches back that far).
func (l *invalidationLog) invalidatedSince(seq, now uint64, tags []sim.Tag) bool {
	switch {
	case seq == now:
		return false
	case seq < l.floor:
		return true
	}
	for k := l.n; k > 0 && l.n-k < invalidationHistory; k-- {
		i := (k - 1) % invalidationHistory
		if l.seqs[i] <= seq {
			break
		}
		if slices.Contains(tags, l.tags[i]) {
			return true
		}
	}
	return false
}

// generation returns the number of invalidations so far; a flow entry
// records it before its simulation reads the topology (flowEntry.since).
func (t *flowTable) generation() uint64 { return t.gen.Load() }

func newFlowTable(dp datapath.Datapath, limit int, m *Metrics) *flowTable {
	return &flowTable{dp: dp, limit: limit, metrics: m, flows: map[flowID]*flowEntry{},
		byTag: map[sim.Tag]*tagSet{}, order: list.New()}
}

// add installs a flow, replacing one with the same key and mask.
func (t *flowTable) add(e *flowEntry) {
	e.key = e.key.Masked(&e.mask)
	id := flowID{e.key, e.mask}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.history.invalidatedSince(e.since, t.gen.Load(), e.tags) {
		// Its packet went out; the next one is simulated afresh.
		t.metrics.flowsInvalidated.Inc()
		e.release()
		return
	}
	if old, ok := t.flows[id]; ok {
		t.forgetLocked(old)
	}
	for len(t.flows) >= t.limit && t.order.Len() > 0 {
		oldest := t.order.Front().Value.(*flowEntry)
		t.removeLocked(oldest)
		t.metrics.flowsEvicted.Inc()
	}
	if err := t.dp.PutFlow(&e.key, &e.mask, e.actions, datapath.FlowCreate|datapath.FlowModify); err != nil {
		t.metrics.flowPutErrors.Inc()
		e.release()
		return
	}
	t.flows[id] = e
	for _, tag := range e.tags {
		s := t.byTag[tag]
		if s == nil {
			s = &tagSet{}
			t.byTag[tag] = s
		}
		s.flows = append(s.flows, e)
	}
	e.elem = t.order.PushBack(e)
	heap.Push(&t.expiry, e)
	t.metrics.flowsInstalled.Inc()
	t.metrics.flowsCurrent.Set(float64(len(t.flows)))
}

// forgetLocked drops an entry from the indexes without touching the
// datapath (it is being replaced there).
func (t *flowTable) forgetLocked(e *flowEntry) {
	delete(t.flows, flowID{e.key, e.mask})
	e.dead = true
	for _, tag := range e.tags {
		if s := t.byTag[tag]; s != nil {
			s.dead++
			switch {
			case s.dead == len(s.flows):
				delete(t.byTag, tag)
			case s.dead > 16 && s.dead > len(s.flows)/2:
				s.compact()
			}
		}
	}
	if e.elem != nil {
		t.order.Remove(e.elem)
		e.elem = nil
		heap.Remove(&t.expiry, e.at)
	}
	e.release()
}

// removeLocked removes a flow from the datapath and the indexes.
func (t *flowTable) removeLocked(e *flowEntry) {
	if _, err := t.dp.DeleteFlow(&e.key, &e.mask); err != nil && !errors.Is(err, datapath.ErrFlowNotFound) {
		t.metrics.flowPutErrors.Inc()
	}
	t.forgetLocked(e)
	t.metrics.flowsRemoved.Inc()
	t.metrics.flowsCurrent.Set(float64(len(t.flows)))
}

// release drops the flow's references on flow state.
func (e *flowEntry) release() {
	if e.shard != nil && (len(e.conns) > 0 || len(e.nats) > 0) {
		e.shard.Release(e.conns, e.nats, time.Now())
		e.shard = nil
	}
}

// invalidate removes every flow carrying one of tags and returns how many.
func (t *flowTable) invalidate(tags []sim.Tag) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.history.record(t.gen.Add(1), tags)
	n := 0
	for _, tag := range tags {
		s := t.byTag[tag]
		if s == nil {
			continue
		}
		// removeLocked may compact s while we walk it: walk a copy.
		for _, e := range slices.Clone(s.flows) {
			if !e.dead {
				t.removeLocked(e)
				n++
			}
		}
	}
	t.metrics.flowsInvalidated.Add(float64(n))
	return n
}

// expire removes the flows whose hard timeout passed.
func (t *flowTable) expire(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for len(t.expiry) > 0 && now.After(t.expiry[0].expires) {
		t.removeLocked(t.expiry[0])
		n++
	}
	return n
}

// len returns the number of installed flows.
func (t *flowTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.flows)
}

// expireLoop enforces hard timeouts and expires idle flow state, each
// expired key invalidating the flows that depend on it.
func (a *Agent) expireLoop(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := a.now()
		a.flows.expire(now)
		var tags []sim.Tag
		for i := range a.state.Len() {
			s := a.state.Shard(i)
			s.Conntrack.Expire(now, func(k flowstate.ConnKey, _ struct{}) { tags = append(tags, sim.ConnTag(k)) })
			s.NAT.Expire(now, func(k flowstate.NATKey, _ flowstate.NATBinding) { tags = append(tags, sim.NATTag(k)) })
		}
		if len(tags) > 0 {
			a.flows.invalidate(tags)
		}
		a.metrics.datapathStats(a.dp.Stats())
	}
}
