package flowstate

import (
	"sync"
	"sync/atomic"
	"time"
)

type entry[V any] struct {
	value V
	refs  int32
	// expires is the Unix time in nanoseconds after which an entry with no
	// references is removed; it is meaningless while refs > 0.
	expires int64
}

// pending is an entry that started idling: Expire looks at it after at.
type pending[K comparable] struct {
	k  K
	at int64
}

// Table is a map of flow-state keys with reference counts and an idle TTL.
// It is safe for concurrent use: its owner writes, other workers read.
//
// Entries that start idling are queued in time order (the TTL is the same
// for all and callers pass non-decreasing times), so Expire costs what it
// removes, not the size of the table. A key refreshed while queued stays in
// the queue and is checked against its current expiry when its turn comes.
type Table[K comparable, V any] struct {
	ttl time.Duration

	mu    sync.RWMutex
	m     map[K]entry[V] // guarded by mu
	queue []pending[K]   // guarded by mu; idle entries by expiry time
	head  int            // guarded by mu; first unexamined queue slot
	// changes counts the keys added and removed, written under mu.
	changes atomic.Uint64
	// observe, if set, is told of every key added (true) or removed
	// (false), under mu: it must not call back into the table.
	observe func(K, bool)
}

// Observe has fn told of every key added to the table (true) or removed
// from it (false), with the table locked: fn must be quick and must not
// call back into the table. Set it before the table is used.
func (t *Table[K, V]) Observe(fn func(k K, added bool)) { t.observe = fn }

// NewTable returns an empty table whose unreferenced entries live for ttl.
func NewTable[K comparable, V any](ttl time.Duration) *Table[K, V] {
	return &Table[K, V]{ttl: ttl, m: make(map[K]entry[V])}
}

// Get returns the value stored under k. It does not allocate.
func (t *Table[K, V]) Get(k K) (V, bool) {
	t.mu.RLock()
	e, ok := t.m[k]
	t.mu.RUnlock()
	return e.value, ok
}

// Ref stores v under k and takes a reference on it, on behalf of a flow
// that created or used the key.
func (t *Table[K, V]) Ref(k K, v V) {
	t.mu.Lock()
	e, ok := t.m[k]
	e.value = v
	e.refs++
	t.m[k] = e
	if !ok {
		t.added(k)
	}
	t.mu.Unlock()
}

// Touch stores v under k without taking a reference, as for keys imported
// from peers: an unreferenced entry's idle time restarts at now.
func (t *Table[K, V]) Touch(k K, v V, now time.Time) {
	t.mu.Lock()
	e, ok := t.m[k]
	if !ok {
		t.added(k)
	}
	e.value = v
	if e.refs <= 0 {
		e.expires = now.Add(t.ttl).UnixNano()
		t.queue = append(t.queue, pending[K]{k, e.expires})
	}
	t.m[k] = e
	t.mu.Unlock()
}

// Unref releases a reference taken by Ref; when the last one goes the entry
// starts idling at now. Releasing an absent key does nothing.
func (t *Table[K, V]) Unref(k K, now time.Time) {
	t.mu.Lock()
	if e, ok := t.m[k]; ok {
		if e.refs > 0 {
			e.refs--
		}
		if e.refs == 0 {
			e.expires = now.Add(t.ttl).UnixNano()
			t.queue = append(t.queue, pending[K]{k, e.expires})
		}
		t.m[k] = e
	}
	t.mu.Unlock()
}

// replace stores v under k if k is present, keeping its references and
// expiry.
func (t *Table[K, V]) replace(k K, v V) {
	t.mu.Lock()
	if e, ok := t.m[k]; ok {
		e.value = v
		t.m[k] = e
	}
	t.mu.Unlock()
}

// Delete removes k whatever its references.
func (t *Table[K, V]) Delete(k K) {
	t.mu.Lock()
	if _, ok := t.m[k]; ok {
		delete(t.m, k)
		t.changes.Add(1)
		if t.observe != nil {
			t.observe(k, false)
		}
	}
	t.mu.Unlock()
}

// added accounts for a new key; mu is held.
func (t *Table[K, V]) added(k K) {
	t.changes.Add(1)
	if t.observe != nil {
		t.observe(k, true)
	}
}

// Refs returns the number of references held on k.
func (t *Table[K, V]) Refs(k K) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return int(t.m[k].refs)
}

// Changes returns how many keys were added to or removed from the table so
// far: a saver that saw the same count has nothing new to save.
func (t *Table[K, V]) Changes() uint64 { return t.changes.Load() }

// Len returns the number of entries.
func (t *Table[K, V]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

// Expire removes the unreferenced entries whose idle time has passed at now
// and calls expired (if not nil) for each, after the table is unlocked, so
// that the caller can invalidate flows tagged with the key or release a NAT
// port. It returns the number of entries removed.
func (t *Table[K, V]) Expire(now time.Time, expired func(K, V)) int {
	type kv struct {
		k K
		v V
	}
	var gone []kv
	removed := 0
	deadline := now.UnixNano()
	t.mu.Lock()
	for t.head < len(t.queue) && t.queue[t.head].at <= deadline {
		k := t.queue[t.head].k
		t.queue[t.head] = pending[K]{}
		t.head++
		if e, ok := t.m[k]; ok && e.refs <= 0 && e.expires <= deadline {
			delete(t.m, k)
			removed++
			if t.observe != nil {
				t.observe(k, false)
			}
			if expired != nil {
				gone = append(gone, kv{k, e.value})
			}
		}
	}
	if t.head > len(t.queue)/2 {
		t.queue = t.queue[:copy(t.queue, t.queue[t.head:])]
		t.head = 0
	}
	t.changes.Add(uint64(removed))
	t.mu.Unlock()
	for _, x := range gone {
		expired(x.k, x.v)
	}
	return removed
}
