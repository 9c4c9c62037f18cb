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

type subtable[V any] struct {
	mask  packet.FlowKey
	flows map[packet.FlowKey]*Entry[V]
}

// Table is a tuple-space classifier.
type Table[V any] struct {
	mu sync.RWMutex
	// subtables is replaced, never modified in place, so a reader may keep
	// iterating the slice it loaded under the read lock.
	subtables []*subtable[V]                  // guarded by mu
	byMask    map[packet.FlowKey]*subtable[V] // guarded by mu
	n         int                             // guarded by mu
}

// New returns an empty table.
func New[V any]() *Table[V] {
	return &Table[V]{byMask: make(map[packet.FlowKey]*subtable[V])}
}

// Lookup returns the entry matching key, or nil. It does not allocate.
func (t *Table[V]) Lookup(key *packet.FlowKey) *Entry[V] {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, st := range t.subtables {
		if e, ok := st.flows[maskKey(key, &st.mask)]; ok {
			return e
		}
	}
	return nil
}

// Get returns the entry with exactly this mask and masked key, or nil.
func (t *Table[V]) Get(key, mask *packet.FlowKey) *Entry[V] {
	t.mu.RLock()
	defer t.mu.RUnlock()
	st := t.byMask[*mask]
	if st == nil {
		return nil
	}
	return st.flows[maskKey(key, mask)]
}

// Insert installs a flow under (key masked by mask, mask), with its value
// set by init (which may be nil) before any reader can see it. It fails
// with ErrExists if that flow is already installed.
func (t *Table[V]) Insert(key, mask *packet.FlowKey, init func(v *V)) (*Entry[V], error) {
	e := newEntry(key, mask, init)
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.subtableLocked(mask)
	if _, ok := st.flows[e.Key]; ok {
		return nil, ErrExists
	}
	st.flows[e.Key] = e
	t.n++
	return e, nil
}

// Replace installs a flow as Insert does, replacing and killing any entry
// there, which it returns (nil if none).
func (t *Table[V]) Replace(key, mask *packet.FlowKey, init func(v *V)) (added, old *Entry[V]) {
	e := newEntry(key, mask, init)
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.subtableLocked(mask)
	old = st.flows[e.Key]
	if old != nil {
		old.dead.Store(true)
	} else {
		t.n++
	}
	st.flows[e.Key] = e
	return e, old
}

func newEntry[V any](key, mask *packet.FlowKey, init func(v *V)) *Entry[V] {
	e := &Entry[V]{Key: maskKey(key, mask), Mask: *mask}
	if init != nil {
		init(&e.Value)
	}
	return e
}

func (t *Table[V]) subtableLocked(mask *packet.FlowKey) *subtable[V] {
	st := t.byMask[*mask]
	if st == nil {
		st = &subtable[V]{mask: *mask, flows: make(map[packet.FlowKey]*Entry[V])}
		t.byMask[*mask] = st
		subs := make([]*subtable[V], len(t.subtables), len(t.subtables)+1)
		copy(subs, t.subtables)
		t.subtables = append(subs, st)
	}
	return st
}

// Delete removes the entry with this mask and masked key and returns it, or
// nil if there is none. The entry is dead from then on.
func (t *Table[V]) Delete(key, mask *packet.FlowKey) *Entry[V] {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.byMask[*mask]
	if st == nil {
		return nil
	}
	mk := maskKey(key, mask)
	e := st.flows[mk]
	if e == nil {
		return nil
	}
	e.dead.Store(true)
	delete(st.flows, mk)
	t.n--
	if len(st.flows) == 0 {
		delete(t.byMask, *mask)
		subs := make([]*subtable[V], 0, len(t.subtables))
		for _, s := range t.subtables {
			if s != st {
				subs = append(subs, s)
			}
		}
		t.subtables = subs
	}
	return e
}

// Len returns the number of installed entries.
func (t *Table[V]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Masks returns the number of distinct masks (subtables).
func (t *Table[V]) Masks() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.subtables)
}

// Entries returns a snapshot of the installed entries.
func (t *Table[V]) Entries() []*Entry[V] {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]*Entry[V], 0, t.n)
	for _, st := range t.subtables {
		for _, e := range st.flows {
			out = append(out, e)
		}
	}
	return out
}

// Clear removes every entry.
func (t *Table[V]) Clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, st := range t.subtables {
		for _, e := range st.flows {
			e.dead.Store(true)
		}
	}
	t.subtables = nil
	t.byMask = make(map[packet.FlowKey]*subtable[V])
	t.n = 0
}
