// Package classifier finds the masked flow (megaflow) that matches a packet's
// flow key: a tuple-space search, with one hash table per distinct mask,
// fronted by per-reader exact-match caches keyed by the full flow key.
//
// Flows in a datapath do not overlap by contract (the agent guarantees it, as
// with the Open vSwitch datapath), so there are no priorities: the first
// subtable that matches wins.
//
// A Table is safe for concurrent use. An EMC belongs to one reader goroutine
// and is validated on every hit against the entry's liveness, so deleting
// or replacing a flow needs no cache walk: the dead entry simply stops
// hitting.
package classifier

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/midonet/midonet/internal/packet"
)

// ErrExists is returned by Insert when a flow with the same mask and masked
// key is already installed.
var ErrExists = errors.New("classifier: flow exists")

// Entry is an installed flow. Key is stored masked. Value lives in the
// entry (one allocation per flow, one pointer less on a hit); it is
// initialized before the entry is published, and must be changed only
// through atomics inside V afterwards.
type Entry[V any] struct {
	Key   packet.FlowKey
	Mask  packet.FlowKey
	Value V
	dead  atomic.Bool
}

// Alive reports whether the entry is still installed.
func (e *Entry[V]) Alive() bool { return !e.dead.Load() }

// stripes is the number of independently locked parts of a subtable. A
// flow lives in the stripe its masked key hashes to, so installing a flow
// blocks only the lookups and installs that hash to the same stripe, and a
// map's growth copies a sixteenth of the subtable at a time.
const stripes = 16

type subtable[V any] struct {
	mask    packet.FlowKey
	n       atomic.Int64 // entries in all stripes
	stripes [stripes]stripe[V]
}

type stripe[V any] struct {
	mu    sync.RWMutex
	flows map[packet.FlowKey]*Entry[V] // guarded by mu
	_     [32]byte                     // 64 bytes in all: a cache line each
}

func newSubtable[V any](mask *packet.FlowKey) *subtable[V] {
	st := &subtable[V]{mask: *mask}
	for i := range st.stripes {
		st.stripes[i].flows = make(map[packet.FlowKey]*Entry[V])
	}
	return st
}

// stripe returns the stripe of masked key mk.
func (st *subtable[V]) stripe(mk *packet.FlowKey) *stripe[V] {
	return &st.stripes[stripeOf(mk)]
}

func (st *subtable[V]) get(mk *packet.FlowKey) *Entry[V] {
	s := st.stripe(mk)
	s.mu.RLock()
	e := s.flows[*mk]
	s.mu.RUnlock()
	return e
}

// Table is a tuple-space classifier. Lookups take no table-wide lock: they
// read the list of subtables atomically and lock one stripe per subtable
// for reading.
type Table[V any] struct {
	// mu is held for reading by every change to a subtable's flows and for
	// writing to add or remove a subtable, so a subtable is removed only
	// when it is empty and no change to it is under way.
	mu sync.RWMutex
	// subtables is replaced, never modified in place (under mu, for
	// writing), so a reader may keep iterating the slice it loaded.
	subtables atomic.Pointer[[]*subtable[V]]
	byMask    map[packet.FlowKey]*subtable[V] // guarded by mu
	n         atomic.Int64
}

// New returns an empty table.
func New[V any]() *Table[V] {
	t := &Table[V]{byMask: make(map[packet.FlowKey]*subtable[V])}
	t.subtables.Store(new([]*subtable[V]))
	return t
}

// Lookup returns the entry matching key, or nil. It does not allocate.
func (t *Table[V]) Lookup(key *packet.FlowKey) *Entry[V] {
	for _, st := range *t.subtables.Load() {
		mk := maskKey(key, &st.mask)
		if e := st.get(&mk); e != nil {
			return e
		}
	}
	return nil
}

// Get returns the entry with exactly this mask and masked key, or nil.
func (t *Table[V]) Get(key, mask *packet.FlowKey) *Entry[V] {
	t.mu.RLock()
	st := t.byMask[*mask]
	t.mu.RUnlock()
	if st == nil {
		return nil
	}
	mk := maskKey(key, mask)
	return st.get(&mk)
}

// Insert installs a flow under (key masked by mask, mask), with its value
// set by init (which may be nil) before any reader can see it. It fails
// with ErrExists if that flow is already installed.
func (t *Table[V]) Insert(key, mask *packet.FlowKey, init func(v *V)) (*Entry[V], error) {
	e := newEntry(key, mask, init)
	st := t.rlockSubtable(mask)
	defer t.mu.RUnlock()
	s := st.stripe(&e.Key)
	s.mu.Lock()
	if _, ok := s.flows[e.Key]; ok {
		s.mu.Unlock()
		return nil, ErrExists
	}
	s.flows[e.Key] = e
	s.mu.Unlock()
	st.n.Add(1)
	t.n.Add(1)
	return e, nil
}

// Replace installs a flow as Insert does, replacing and killing any entry
// there, which it returns (nil if none).
func (t *Table[V]) Replace(key, mask *packet.FlowKey, init func(v *V)) (added, old *Entry[V]) {
	e := newEntry(key, mask, init)
	st := t.rlockSubtable(mask)
	defer t.mu.RUnlock()
	s := st.stripe(&e.Key)
	s.mu.Lock()
	old = s.flows[e.Key]
	s.flows[e.Key] = e
	s.mu.Unlock()
	if old != nil {
		old.dead.Store(true)
	} else {
		st.n.Add(1)
		t.n.Add(1)
	}
	return e, old
}

func newEntry[V any](key, mask *packet.FlowKey, init func(v *V)) *Entry[V] {
	e := &Entry[V]{Key: maskKey(key, mask), Mask: *mask}
	if init != nil {
		init(&e.Value)
	}
	return e
}

// rlockSubtable returns mask's subtable, creating it if needed, with mu
// held for reading; the caller releases it.
func (t *Table[V]) rlockSubtable(mask *packet.FlowKey) *subtable[V] {
	t.mu.RLock()
	if st := t.byMask[*mask]; st != nil {
		return st
	}
	t.mu.RUnlock()
	t.mu.Lock()
	st := t.byMask[*mask]
	if st == nil {
		st = newSubtable[V](mask)
		t.byMask[*mask] = st
		old := *t.subtables.Load()
		subs := make([]*subtable[V], len(old), len(old)+1)
		copy(subs, old)
		subs = append(subs, st)
		t.subtables.Store(&subs)
	}
	// Downgrade: st can be removed only once empty, under mu for writing,
	// and it may go away between the two; look again.
	t.mu.Unlock()
	return t.rlockSubtable(mask)
}

// Delete removes the entry with this mask and masked key and returns it, or
// nil if there is none. The entry is dead from then on.
func (t *Table[V]) Delete(key, mask *packet.FlowKey) *Entry[V] {
	t.mu.RLock()
	st := t.byMask[*mask]
	if st == nil {
		t.mu.RUnlock()
		return nil
	}
	mk := maskKey(key, mask)
	s := st.stripe(&mk)
	s.mu.Lock()
	e := s.flows[mk]
	if e != nil {
		delete(s.flows, mk)
	}
	s.mu.Unlock()
	if e == nil {
		t.mu.RUnlock()
		return nil
	}
	e.dead.Store(true)
	t.n.Add(-1)
	empty := st.n.Add(-1) == 0
	t.mu.RUnlock()
	if empty {
		t.removeIfEmpty(st)
	}
	return e
}

// removeIfEmpty removes subtable st if it is still in the table and empty.
func (t *Table[V]) removeIfEmpty(st *subtable[V]) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byMask[st.mask] != st || st.n.Load() != 0 {
		return
	}
	delete(t.byMask, st.mask)
	old := *t.subtables.Load()
	subs := make([]*subtable[V], 0, len(old))
	for _, s := range old {
		if s != st {
			subs = append(subs, s)
		}
	}
	t.subtables.Store(&subs)
}

// Len returns the number of installed entries.
func (t *Table[V]) Len() int { return int(t.n.Load()) }

// Masks returns the number of distinct masks (subtables).
func (t *Table[V]) Masks() int { return len(*t.subtables.Load()) }

// Entries returns a snapshot of the installed entries.
func (t *Table[V]) Entries() []*Entry[V] {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]*Entry[V], 0, t.n.Load())
	for _, st := range *t.subtables.Load() {
		for i := range st.stripes {
			s := &st.stripes[i]
			s.mu.RLock()
			for _, e := range s.flows {
				out = append(out, e)
			}
			s.mu.RUnlock()
		}
	}
	return out
}

// Clear removes every entry.
func (t *Table[V]) Clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, st := range *t.subtables.Load() {
		for i := range st.stripes {
			for _, e := range st.stripes[i].flows {
				e.dead.Store(true)
			}
		}
	}
	t.subtables.Store(new([]*subtable[V]))
	t.byMask = make(map[packet.FlowKey]*subtable[V])
	t.n.Store(0)
}
