package sim

import (
	"slices"
	"sync/atomic"
)

// Compiled objects refer to each other by handles, indices into a
// snapshot's tables, rather than by pointer: an object recompiled after a
// change takes its place in the next snapshot's table and every object
// that refers to it sees it there, without being recompiled itself. That
// is what lets a Builder make the next snapshot at the cost of what
// changed. A handle is stable for an id's whole life in a Builder (it is
// given when the id is first seen, as an object or as a reference), and 0
// is no object.

// handle is an index into a table of T, or 0.
type handle[T any] uint32

const (
	chunkBits = 8
	chunkLen  = 1 << chunkBits
)

type chunk[T any] [chunkLen]*T

// table maps handles to compiled objects. It is immutable once its
// snapshot is published; a tableWriter makes the next one, sharing the
// chunks it does not change.
type table[T any] struct {
	chunks []*chunk[T]
}

// at returns the object of h, or nil (no object, or not in this snapshot).
func (t *table[T]) at(h handle[T]) *T {
	c := uint32(h) >> chunkBits
	if c >= uint32(len(t.chunks)) {
		return nil
	}
	return t.chunks[c][uint32(h)&(chunkLen-1)]
}

// each calls fn for each object of the table.
func (t *table[T]) each(fn func(*T)) {
	for _, c := range t.chunks {
		for _, x := range c {
			if x != nil {
				fn(x)
			}
		}
	}
}

// tableWriter changes a copy of a table for the next snapshot: the chunk
// list and each chunk written are copied once, the rest is shared.
type tableWriter[T any] struct {
	t         *table[T]
	ownChunks bool
	own       map[*chunk[T]]bool
}

func newTableWriter[T any](t *table[T]) *tableWriter[T] {
	return &tableWriter[T]{t: t, own: map[*chunk[T]]bool{}}
}

func (w *tableWriter[T]) set(h handle[T], v *T) {
	c := int(uint32(h) >> chunkBits)
	if !w.ownChunks {
		w.t.chunks = slices.Clone(w.t.chunks)
		w.ownChunks = true
	}
	for len(w.t.chunks) <= c {
		if v == nil {
			return // nothing to clear beyond the end
		}
		n := new(chunk[T])
		w.own[n] = true
		w.t.chunks = append(w.t.chunks, n)
	}
	ch := w.t.chunks[c]
	if !w.own[ch] {
		cp := *ch
		ch = &cp
		w.own[ch] = true
		w.t.chunks[c] = ch
	}
	ch[uint32(h)&(chunkLen-1)] = v
}

const indexShards = 64

// idIndex gives the handles of ids. It grows only: the handle of an id
// never changes. Readers (simulations) look ids up without locks; the
// builder adds ids to private copies of the shards it changes and
// publishes them once its snapshot is complete.
type idIndex[T any] struct {
	shards  [indexShards]atomic.Pointer[map[ID]handle[T]]
	pending [indexShards]map[ID]handle[T] // builder only: shards changed, not yet published
	next    uint32                        // builder only: the last handle given
}

func shardOf16(id ID) int { return int(id[15]) % indexShards }

// get returns the handle of id, or 0.
func (x *idIndex[T]) get(id ID) handle[T] {
	m := x.shards[shardOf16(id)].Load()
	if m == nil {
		return 0
	}
	return (*m)[id]
}

// lookup is get for the builder, which also sees what it has not
// published yet.
func (x *idIndex[T]) lookup(id ID) handle[T] {
	if p := x.pending[shardOf16(id)]; p != nil {
		return p[id]
	}
	return x.get(id)
}

// of returns the handle of id, giving it one if it has none.
func (x *idIndex[T]) of(id ID) handle[T] {
	if h := x.lookup(id); h != 0 {
		return h
	}
	i := shardOf16(id)
	p := x.pending[i]
	if p == nil {
		p = map[ID]handle[T]{}
		if m := x.shards[i].Load(); m != nil {
			for k, v := range *m {
				p[k] = v
			}
		}
		x.pending[i] = p
	}
	x.next++
	h := handle[T](x.next)
	p[id] = h
	return h
}

// publish makes the handles given since the last publish visible to
// readers.
func (x *idIndex[T]) publish() {
	for i, p := range x.pending {
		if p != nil {
			x.shards[i].Store(&p)
			x.pending[i] = nil
		}
	}
}
