package flowstate

import (
	"net/netip"
	"time"

	"github.com/google/uuid"
)

// Shard is one worker's conntrack and NAT tables. The conntrack table holds
// return-flow keys only, so its values are empty.
type Shard struct {
	Conntrack *Table[ConnKey, struct{}]
	NAT       *Table[NATKey, NATBinding]
}

// NewShard returns empty tables whose unreferenced entries live for ttl.
func NewShard(ttl time.Duration) *Shard {
	return &Shard{Conntrack: NewTable[ConnKey, struct{}](ttl), NAT: NewTable[NATKey, NATBinding](ttl)}
}

// Commit takes a reference on every key a forward flow created or used; the
// flow's removal must Release the same keys.
func (s *Shard) Commit(conns []ConnKey, nats []NATEntry) {
	for _, k := range conns {
		s.Conntrack.Ref(k, struct{}{})
	}
	for _, e := range nats {
		s.NAT.Ref(e.Key, e.Binding)
	}
}

// Release drops the references Commit took, at time now.
func (s *Shard) Release(conns []ConnKey, nats []NATEntry, now time.Time) {
	for _, k := range conns {
		s.Conntrack.Unref(k, now)
	}
	for _, e := range nats {
		s.NAT.Unref(e.Key, now)
	}
}

// Touch stores the keys a simulation created or used without taking
// references, for packets forwarded without a flow: the keys live for their
// idle TTL unless a later packet or a flow refreshes them.
func (s *Shard) Touch(conns []ConnKey, nats []NATEntry, now time.Time) {
	for _, k := range conns {
		s.Conntrack.Touch(k, struct{}{}, now)
	}
	for _, e := range nats {
		s.NAT.Touch(e.Key, e.Binding, now)
	}
}

// Import touches every key of a replication message: the keys live for
// their idle TTL unless a later message or a local flow refreshes them.
func (s *Shard) Import(m *Message, now time.Time) { s.Touch(m.Conntrack, m.NAT, now) }

// Tables is the set of per-worker shards of one agent.
type Tables struct {
	shards []*Shard
	views  []View
	leases *SNATLeases
}

// TrackSNAT makes l count the reverse SNAT keys of every shard, and the
// views offer l's blocks to the simulation, which then allocates SNAT
// ports only inside them. Call it before the tables are used.
func (t *Tables) TrackSNAT(l *SNATLeases) {
	t.leases = l
	for _, s := range t.shards {
		s.NAT.Observe(l.keyChanged)
	}
}

// NewTables returns n shards (at least one) with the given idle TTL.
func NewTables(n int, ttl time.Duration) *Tables {
	n = max(n, 1)
	t := &Tables{shards: make([]*Shard, n), views: make([]View, n)}
	for i := range t.shards {
		t.shards[i] = NewShard(ttl)
	}
	for i := range t.views {
		t.views[i] = View{t: t, own: i}
	}
	return t
}

// Len returns the number of shards.
func (t *Tables) Len() int { return len(t.shards) }

// Shard returns worker i's shard.
func (t *Tables) Shard(i int) *Shard { return t.shards[i] }

// View returns worker i's read view: its own shard first, then the others.
// The pointer is stable, so handing it to an interface does not allocate.
func (t *Tables) View(i int) *View { return &t.views[i] }

// View reads flow state the way a worker does. It implements the simulation's
// state reader and does not allocate.
type View struct {
	t   *Tables
	own int
}

// HasConn reports whether any shard holds the conntrack key.
func (v *View) HasConn(k ConnKey) bool {
	if _, ok := v.t.shards[v.own].Conntrack.Get(k); ok {
		return true
	}
	for i, s := range v.t.shards {
		if i == v.own {
			continue
		}
		if _, ok := s.Conntrack.Get(k); ok {
			return true
		}
	}
	return false
}

// NATStale reports whether committing the binding b under k changes what
// some simulation may have read: no shard holds k yet, or one holds it with
// another binding.
func (v *View) NATStale(k NATKey, b NATBinding) bool {
	held := false
	for _, s := range v.t.shards {
		if old, ok := s.NAT.Get(k); ok {
			if old != b {
				return true
			}
			held = true
		}
	}
	return !held
}

// Rebind gives every shard that holds one of the keys its entry's binding.
// A key's binding is the one set last, wherever: a connection's 5-tuple
// re-used through another VIP meets its older key in another worker's
// shard (or among the imported keys), and a lookup must not find the older.
func (t *Tables) Rebind(nats []NATEntry) {
	for _, e := range nats {
		for _, s := range t.shards {
			s.NAT.replace(e.Key, e.Binding)
		}
	}
}

// NAT returns the binding of a NAT key from any shard.
func (v *View) NAT(k NATKey) (NATBinding, bool) {
	if b, ok := v.t.shards[v.own].NAT.Get(k); ok {
		return b, true
	}
	for i, s := range v.t.shards {
		if i == v.own {
			continue
		}
		if b, ok := s.NAT.Get(k); ok {
			return b, true
		}
	}
	return NATBinding{}, false
}

// SNATPortShare says which ports of a held SNAT block this view's worker
// may give out: those p with p%n == i, n being the number of workers (every
// shard but the last, which holds imported state). Each worker records the
// keys it allocates in its own shard only after its simulation: without the
// share, two workers probing the same free port at once would both take it.
func (v *View) SNATPortShare() (i, n int) {
	n = len(v.t.shards) - 1
	if n < 1 {
		return 0, 1
	}
	return v.own % n, n
}

// SNATBlocks returns the SNAT port blocks this host may allocate from for
// a NAT address, or nil; leasing is false when the tables track no leases
// (then any port may be allocated). It does not allocate.
func (v *View) SNATBlocks(device uuid.UUID, ip netip.Addr) (blocks HeldBlocks, leasing bool) {
	if v.t.leases == nil {
		return HeldBlocks{}, false
	}
	return v.t.leases.held(NATAddr{Device: device, IP: ip}), true
}
