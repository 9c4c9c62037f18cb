// Package flows is the agent's index of the flows it installed in a
// datapath: by tag, to remove exactly the flows a change invalidates; by
// age, to evict the oldest at a flow limit; and by hard timeout, to expire
// them. It mirrors the datapath's flow table, which never removes a flow
// on its own.
//
// It also remembers the most recent invalidations, so that a flow whose
// simulation overlapped the invalidation of one of its tags is refused: it
// was computed from what the invalidation replaced, and nothing would
// remove it afterwards (MidoNet keeps the same history). A simulation
// reads Generation before it reads the topology, and its Entry carries it.
//
// The table's lock guards its indexes only. The datapath's flows are put
// and deleted outside it: each change to the indexes queues the datapath
// operation it implies, and the goroutine that made the change then makes
// the queued operations, in order, unless another is already making them
// (it takes over the rest). Consecutive installs go to the datapath in one
// batch where the backend allows (datapath.FlowBatcher). Workers so never
// wait for each other's datapath calls, and a flow's put and delete reach
// the datapath in the order the indexes saw them.
package flows

import (
	"container/heap"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
)

// Holder is what a flow holds while it is installed, released when it
// leaves the table (references on flow-state keys).
type Holder interface {
	Release()
}

// Entry is a flow to install, with what it depends on. The table owns it
// once added.
type Entry struct {
	Key, Mask packet.FlowKey // Key is masked on Add
	Actions   []datapath.Action
	Tags      []sim.Tag
	Expires   time.Time
	// Since is the table's Generation when the decision to install the
	// flow began, before the snapshot and port tables it used were read.
	Since uint64
	// Held, if not nil, is released when the flow leaves the table, or
	// at once if it never enters.
	Held Holder

	// prev and next link the installed flows in insertion order, for
	// eviction; linked in the entry itself, so adding allocates nothing
	// under the table's lock.
	prev, next *Entry
	at         int  // index in the expiry heap while installed
	installed  bool // in the indexes
	dead       bool // removed: tag sets drop it lazily
}

func (e *Entry) release() {
	if e.Held != nil {
		e.Held.Release()
		e.Held = nil
	}
}

// Stats counts what the table did.
type Stats struct {
	Installed   uint64 // flows installed in the datapath
	Removed     uint64 // flows removed from the datapath (expired, invalidated, evicted)
	Invalidated uint64 // flows removed, or refused, because something they depended on changed
	Evicted     uint64 // flows removed at the flow limit
	Errors      uint64 // installations or removals the datapath refused
	Current     int    // flows in the table now
}

// Table is the index of installed flows. Its methods are safe for
// concurrent use.
type Table struct {
	dp      datapath.FlowTable
	batcher datapath.FlowBatcher // dp's, if it batches
	limit   int

	mu      sync.Mutex
	flows   map[flowID]*Entry // guarded by mu
	byTag   map[sim.Tag]*tagSet
	oldest  *Entry // the insertion order, oldest first, newest last
	newest  *Entry
	expiry  expiryHeap
	history invalidationLog
	gen     atomic.Uint64 // Invalidate calls so far; written under mu
	// ops are the datapath operations the indexes' changes imply, not yet
	// made, in order; spare is an emptied buffer for the next ones.
	ops, spare []op // guarded by mu

	// dpMu is held by the goroutine making the queued operations; the
	// batch buffers are its.
	dpMu  sync.Mutex
	puts  []datapath.FlowPut
	putOf []*Entry
	errs  []error

	installed, removed, invalidated, evicted, errors atomic.Uint64
}

// op is a datapath operation: install e, or delete it.
type op struct {
	e      *Entry
	delete bool
}

type flowID struct{ key, mask packet.FlowKey }

// New returns an empty table that installs flows in dp, at most limit of
// them.
func New(dp datapath.FlowTable, limit int) *Table {
	t := &Table{dp: dp, limit: limit, flows: map[flowID]*Entry{}, byTag: map[sim.Tag]*tagSet{}}
	t.batcher, _ = dp.(datapath.FlowBatcher)
	return t
}

// Generation returns the number of invalidations so far; a flow records it
// before its simulation reads the topology (Entry.Since).
func (t *Table) Generation() uint64 { return t.gen.Load() }

// Add installs a flow, replacing one with the same key and mask. A flow one
// of whose tags was invalidated since e.Since is refused (its packet went
// out; the next one is simulated afresh). It reports whether the flow
// entered the table.
func (t *Table) Add(e *Entry) bool {
	ok := t.add(e)
	t.flush()
	return ok
}

func (t *Table) add(e *Entry) bool {
	e.Key = e.Key.Masked(&e.Mask)
	id := flowID{e.Key, e.Mask}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.history.invalidatedSince(e.Since, t.gen.Load(), e.Tags) {
		t.invalidated.Add(1)
		e.release()
		return false
	}
	if old, ok := t.flows[id]; ok {
		t.forgetLocked(old) // the put below replaces it in the datapath
	}
	for len(t.flows) >= t.limit && t.oldest != nil {
		t.removeLocked(t.oldest)
		t.evicted.Add(1)
	}
	t.ops = append(t.ops, op{e: e})
	t.flows[id] = e
	for _, tag := range e.Tags {
		s := t.byTag[tag]
		if s == nil {
			s = &tagSet{}
			s.flows = s.first[:0]
			t.byTag[tag] = s
		}
		s.flows = append(s.flows, e)
	}
	t.link(e)
	heap.Push(&t.expiry, e)
	return true
}

// link appends e to the insertion order.
func (t *Table) link(e *Entry) {
	e.installed, e.prev, e.next = true, t.newest, nil
	if t.newest != nil {
		t.newest.next = e
	} else {
		t.oldest = e
	}
	t.newest = e
}

// unlink takes e out of the insertion order.
func (t *Table) unlink(e *Entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		t.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		t.newest = e.prev
	}
	e.installed, e.prev, e.next = false, nil, nil
}

// forgetLocked drops an entry from the indexes without touching the
// datapath (it is being replaced there, or was removed).
func (t *Table) forgetLocked(e *Entry) {
	delete(t.flows, flowID{e.Key, e.Mask})
	e.dead = true
	for _, tag := range e.Tags {
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
	if e.installed {
		t.unlink(e)
		heap.Remove(&t.expiry, e.at)
	}
	e.release()
}

// removeLocked removes a flow from the indexes and queues its deletion
// from the datapath.
func (t *Table) removeLocked(e *Entry) {
	t.ops = append(t.ops, op{e: e, delete: true})
	t.forgetLocked(e)
	t.removed.Add(1)
}

// flush makes the queued datapath operations, in order, unless another
// goroutine is making them: that one makes ours too (it looks again after
// it lets go). Whoever queues an operation calls flush afterwards.
func (t *Table) flush() {
	for t.dpMu.TryLock() {
		t.mu.Lock()
		for len(t.ops) > 0 {
			ops := t.ops
			t.ops, t.spare = t.spare[:0], nil
			t.mu.Unlock()
			t.apply(ops)
			clear(ops)
			t.mu.Lock()
			t.spare = ops[:0]
		}
		t.mu.Unlock()
		t.dpMu.Unlock()
		// An operation queued after the look above whose flush found
		// dpMu held is ours to make.
		t.mu.Lock()
		more := len(t.ops) > 0
		t.mu.Unlock()
		if !more {
			return
		}
	}
}

// apply makes ops in the datapath, consecutive puts in batches when the
// backend takes them. Called with dpMu held.
func (t *Table) apply(ops []op) {
	for i := 0; i < len(ops); {
		o := &ops[i]
		switch {
		case o.delete:
			if _, err := t.dp.DeleteFlow(&o.e.Key, &o.e.Mask); err != nil && !errors.Is(err, datapath.ErrFlowNotFound) {
				t.errors.Add(1)
			}
			i++
		case t.batcher != nil:
			t.puts, t.putOf = t.puts[:0], t.putOf[:0]
			for ; i < len(ops) && !ops[i].delete; i++ {
				e := ops[i].e
				t.puts = append(t.puts, datapath.FlowPut{Key: &e.Key, Mask: &e.Mask, Actions: e.Actions,
					Flags: datapath.FlowCreate | datapath.FlowModify})
				t.putOf = append(t.putOf, e)
			}
			if cap(t.errs) < len(t.puts) {
				t.errs = make([]error, len(t.puts))
			}
			errs := t.errs[:len(t.puts)]
			t.batcher.PutFlows(t.puts, errs)
			for k, err := range errs {
				t.put(t.putOf[k], err)
			}
			clear(t.putOf)
		default:
			t.put(o.e, t.dp.PutFlow(&o.e.Key, &o.e.Mask, o.e.Actions, datapath.FlowCreate|datapath.FlowModify))
			i++
		}
	}
}

// put counts the outcome of installing e; a flow the datapath refused
// leaves the indexes, unless it was replaced or removed meanwhile.
func (t *Table) put(e *Entry, err error) {
	if err == nil {
		t.installed.Add(1)
		return
	}
	t.errors.Add(1)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.flows[flowID{e.Key, e.Mask}] == e {
		t.forgetLocked(e)
	}
}

// Invalidate removes every flow carrying one of tags and returns how many.
func (t *Table) Invalidate(tags []sim.Tag) int {
	n := t.invalidate(tags)
	if n > 0 {
		t.flush() // the deletions it queued
	}
	return n
}

func (t *Table) invalidate(tags []sim.Tag) int {
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
	t.invalidated.Add(uint64(n))
	return n
}

// Expire removes the flows whose hard timeout passed and returns how many.
func (t *Table) Expire(now time.Time) int {
	defer t.flush()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for len(t.expiry) > 0 && now.After(t.expiry[0].Expires) {
		t.removeLocked(t.expiry[0])
		n++
	}
	return n
}

// Len returns the number of installed flows.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.flows)
}

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	return Stats{Installed: t.installed.Load(), Removed: t.removed.Load(), Invalidated: t.invalidated.Load(),
		Evicted: t.evicted.Load(), Errors: t.errors.Load(), Current: t.Len()}
}

// expiryHeap orders installed flows by hard timeout, the earliest first,
// so that expiring them costs what expires, not a walk of every flow under
// the lock installs need (at 300k flows, four walks a second took a third
// of the new-flow rate).
type expiryHeap []*Entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].Expires.Before(h[j].Expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*Entry)
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
	flows []*Entry
	dead  int
	// first backs flows while it holds one flow: many tags (a
	// connection's) only ever have one, and the set then costs one
	// allocation.
	first [1]*Entry
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

// invalidationHistory is how many recent tag invalidations the table
// remembers to refuse flows simulated before them.
const invalidationHistory = 4096

// invalidationLog is a ring of the most recent tag invalidations.
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
