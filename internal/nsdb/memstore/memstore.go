// Package memstore is an in-memory stand-in for the NSDB, for tests and
// scale runs of agents: topology objects written in transactions through
// topology.Store, state keys (persistent, or bound to a session until it
// is closed), and watches that deliver every change after a revision, in
// order, as nsdb.Store's do. Key names, revisions, events and errors
// follow package nsdb.
//
// It keeps the whole history in memory and serializes every write behind
// one lock: it is a rig, not a database. Sessions never expire on their
// own; Close one (or Expire, as a dead agent's lease would) to make its
// keys vanish.
package memstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// Store is an in-memory NSDB. Its methods are safe for concurrent use.
type Store struct {
	mu       sync.Mutex
	rev      int64                 // guarded by mu: the last revision written
	objects  map[string]*object    // guarded by mu: by key, "/topology/<kind>/<id>"
	state    map[string]*stateKey  // guarded by mu: by key, "/state/..."
	seqs     map[string]int64      // guarded by mu: NextSequence counters
	history  []nsdb.Event          // guarded by mu: every change, in revision order
	watchers map[*watcher]struct{} // guarded by mu
	sessions int64                 // guarded by mu: sessions opened so far
}

type object struct {
	kind, id    string
	value       []byte
	create, mod int64
}

type stateKey struct {
	value   []byte
	session int64 // 0: persistent
	mod     int64
}

// New returns an empty store at revision 1.
func New() *Store {
	return &Store{rev: 1, objects: map[string]*object{}, state: map[string]*stateKey{}, seqs: map[string]int64{},
		watchers: map[*watcher]struct{}{}}
}

func objectKey(kind, id string) string { return nsdb.TopologyWatchPrefix + kind + "/" + id }

// commitLocked writes a batch of changes at the next revision and hands
// their events to the watchers.
func (s *Store) commitLocked(evs []nsdb.Event) {
	if len(evs) == 0 {
		return
	}
	s.rev++
	for i := range evs {
		evs[i].ModRevision = s.rev
	}
	s.history = append(s.history, evs...)
	for w := range s.watchers {
		w.offer(evs)
	}
}

// Update runs fn in a transaction and commits its writes atomically at one
// revision. fn runs under the store's lock: it must use only tx.
func (s *Store) Update(ctx context.Context, fn func(tx topology.Store) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.runLocked(ctx, fn)
	if err != nil {
		return err
	}
	var evs []nsdb.Event
	for _, k := range tx.order {
		o := tx.writes[k]
		if o.value == nil {
			old, ok := s.objects[k]
			if !ok {
				continue // created and deleted by this transaction
			}
			delete(s.objects, k)
			evs = append(evs, nsdb.Event{Type: nsdb.EventDelete, Key: k, Kind: old.kind, ID: old.id})
			continue
		}
		if old, ok := s.objects[k]; ok {
			o.create = old.create
		} else {
			o.create = s.rev + 1
		}
		o.mod = s.rev + 1
		s.objects[k] = o
		evs = append(evs, nsdb.Event{Type: nsdb.EventPut, Key: k, Kind: o.kind, ID: o.id, Value: o.value})
	}
	for name, v := range tx.seqs {
		s.seqs[name] = v
	}
	s.commitLocked(evs)
	return nil
}

// View runs fn on the store; writes fn makes are refused with
// nsdb.ErrReadOnly.
func (s *Store) View(ctx context.Context, fn func(tx topology.Store) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.runLocked(ctx, fn)
	if err != nil {
		return err
	}
	if len(t.order) > 0 {
		return fmt.Errorf("memstore: %d writes inside View (first %s); use Update: %w", len(t.order), t.order[0], nsdb.ErrReadOnly)
	}
	return nil
}

// runLocked runs fn on a new transaction and returns it, uncommitted.
func (s *Store) runLocked(ctx context.Context, fn func(tx topology.Store) error) (*tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t := &tx{s: s, writes: map[string]*object{}}
	return t, fn(t)
}

// tx is a transaction: reads see the store and the transaction's own
// writes, which Update commits once fn returns. It implements
// topology.Store.
type tx struct {
	s      *Store
	writes map[string]*object // nil value: deleted
	order  []string
	seqs   map[string]int64
}

var _ topology.Store = (*tx)(nil)

func (t *tx) lookup(kind, id string) *object {
	k := objectKey(kind, id)
	if o, ok := t.writes[k]; ok {
		if o.value == nil {
			return nil
		}
		return o
	}
	return t.s.objects[k]
}

func (t *tx) write(kind, id string, value []byte) {
	k := objectKey(kind, id)
	if _, ok := t.writes[k]; !ok {
		t.order = append(t.order, k)
	}
	t.writes[k] = &object{kind: kind, id: id, value: value}
}

func (t *tx) Get(kind, id string, out any) error {
	o := t.lookup(kind, id)
	if o == nil {
		return topology.Errorf(topology.ErrNotFound, "%s %s does not exist", topology.Singular(kind), id)
	}
	return json.Unmarshal(o.value, out)
}

func (t *tx) Exists(kind, id string) (bool, error) { return t.lookup(kind, id) != nil, nil }

func (t *tx) Create(o topology.Object) error {
	if t.lookup(o.Kind(), o.ObjectID()) != nil {
		return topology.Errorf(topology.ErrExists, "%s %s already exists", topology.Singular(o.Kind()), o.ObjectID())
	}
	return t.Put(o)
}

func (t *tx) Put(o topology.Object) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("memstore: encode %s %s: %w", topology.Singular(o.Kind()), o.ObjectID(), err)
	}
	t.write(o.Kind(), o.ObjectID(), b)
	return nil
}

func (t *tx) Delete(kind, id string) error {
	if t.lookup(kind, id) == nil {
		return topology.Errorf(topology.ErrNotFound, "%s %s does not exist", topology.Singular(kind), id)
	}
	t.write(kind, id, nil)
	return nil
}

func (t *tx) ListRaw(kind string) ([][]byte, error) {
	prefix := nsdb.TopologyWatchPrefix + kind + "/"
	var keys []string
	for k := range t.s.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	for k, o := range t.writes {
		if strings.HasPrefix(k, prefix) && o.value != nil && t.s.objects[k] == nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out [][]byte
	for _, k := range keys {
		kind, id, _ := strings.Cut(strings.TrimPrefix(k, nsdb.TopologyWatchPrefix), "/")
		if o := t.lookup(kind, id); o != nil {
			out = append(out, o.value)
		}
	}
	return out, nil
}

func (t *tx) NextSequence(name string) (int64, error) {
	if t.seqs == nil {
		t.seqs = map[string]int64{}
	}
	v, ok := t.seqs[name]
	if !ok {
		v = t.s.seqs[name]
	}
	v++
	t.seqs[name] = v
	return v, nil
}

// Snapshot returns every topology object at the current revision, in
// creation order.
func (s *Store) Snapshot(ctx context.Context) (int64, []nsdb.RawObject, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]nsdb.RawObject, 0, len(s.objects))
	for _, o := range s.objects {
		out = append(out, nsdb.RawObject{Kind: o.kind, ID: o.id, Value: o.value, CreateRevision: o.create, ModRevision: o.mod})
	}
	slices.SortFunc(out, func(a, b nsdb.RawObject) int { return int(a.CreateRevision - b.CreateRevision) })
	return s.rev, out, nil
}

func checkStateKey(key string) error {
	if !strings.HasPrefix(key, nsdb.StatePrefix) || strings.HasSuffix(key, "/") {
		return fmt.Errorf("memstore: %q is not a state key; build keys with the nsdb key functions", key)
	}
	return nil
}

// setStateLocked writes a state key for session (0: persistent).
func (s *Store) setStateLocked(key string, value []byte, session int64) {
	s.state[key] = &stateKey{value: value, session: session, mod: s.rev + 1}
	s.commitLocked([]nsdb.Event{{Type: nsdb.EventPut, Key: key, Value: value, Leased: session != 0}})
}

func (s *Store) deleteStateLocked(key string) {
	if _, ok := s.state[key]; !ok {
		return
	}
	delete(s.state, key)
	s.commitLocked([]nsdb.Event{{Type: nsdb.EventDelete, Key: key}})
}

// PutState writes a persistent state key, replacing a learned one.
func (s *Store) PutState(ctx context.Context, key string, value []byte) error {
	if err := checkStateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setStateLocked(key, value, 0)
	return nil
}

// DeleteState deletes a state key, persistent or not; an absent key is
// not an error.
func (s *Store) DeleteState(ctx context.Context, key string) error {
	if err := checkStateKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteStateLocked(key)
	return nil
}

// GetState reads a state key, or returns an error wrapping
// nsdb.ErrNotFound.
func (s *Store) GetState(ctx context.Context, key string) (nsdb.StateEntry, error) {
	if err := checkStateKey(key); err != nil {
		return nsdb.StateEntry{}, err
	}
	if err := ctx.Err(); err != nil {
		return nsdb.StateEntry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.state[key]
	if !ok {
		return nsdb.StateEntry{}, fmt.Errorf("state %s: %w", key, nsdb.ErrNotFound)
	}
	return nsdb.StateEntry{Key: key, Value: e.value, Leased: e.session != 0, ModRevision: e.mod}, nil
}

// ListState returns every state key under prefix, in key order, and the
// revision they were read at.
func (s *Store) ListState(ctx context.Context, prefix string) ([]nsdb.StateEntry, int64, error) {
	if !strings.HasPrefix(prefix, nsdb.StatePrefix) {
		return nil, 0, fmt.Errorf("memstore: %q is not a state prefix; build prefixes with the nsdb key functions", prefix)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []nsdb.StateEntry
	for k, e := range s.state {
		if strings.HasPrefix(k, prefix) {
			out = append(out, nsdb.StateEntry{Key: k, Value: e.value, Leased: e.session != 0, ModRevision: e.mod})
		}
	}
	slices.SortFunc(out, func(a, b nsdb.StateEntry) int { return strings.Compare(a.Key, b.Key) })
	return out, s.rev, nil
}

// Session binds state keys to its life: they vanish when it is closed or
// expired.
type Session struct {
	s      *Store
	id     int64
	closed bool // guarded by s.mu
}

var _ nsdb.StateSession = (*Session)(nil)

// NewSession opens a session. ttl is accepted for the signature's sake:
// sessions here last until closed.
func (s *Store) NewSession(ctx context.Context, ttl time.Duration) (nsdb.StateSession, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions++
	return &Session{s: s, id: s.sessions}, nil
}

// SetState writes key, bound to the session.
func (se *Session) SetState(ctx context.Context, key string, value []byte) error {
	_, err := se.set(ctx, key, value, false, false)
	return err
}

// LearnState writes key bound to the session unless a persistent entry
// holds it, and reports whether it wrote.
func (se *Session) LearnState(ctx context.Context, key string, value []byte) (bool, error) {
	return se.set(ctx, key, value, true, false)
}

// ClaimState writes key bound to the session if it is absent or already
// holds value, and reports whether the session holds it now.
func (se *Session) ClaimState(ctx context.Context, key string, value []byte) (bool, error) {
	return se.set(ctx, key, value, false, true)
}

func (se *Session) set(ctx context.Context, key string, value []byte, unlessPersistent, claim bool) (bool, error) {
	if err := checkStateKey(key); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s := se.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if se.closed {
		return false, nsdb.ErrSessionClosed
	}
	if e, ok := s.state[key]; ok && unlessPersistent && e.session == 0 {
		return false, nil
	}
	if e, ok := s.state[key]; ok && claim && !slices.Equal(e.value, value) {
		return false, nil
	}
	s.setStateLocked(key, value, se.id)
	return true, nil
}

// DeleteState deletes key if the session holds it.
func (se *Session) DeleteState(ctx context.Context, key string) error {
	if err := checkStateKey(key); err != nil {
		return err
	}
	s := se.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if se.closed {
		return nsdb.ErrSessionClosed
	}
	if e, ok := s.state[key]; ok && e.session == se.id {
		s.deleteStateLocked(key)
	}
	return nil
}

// SetStates writes many keys bound to the session.
func (se *Session) SetStates(ctx context.Context, entries []nsdb.StateEntry) error {
	for _, e := range entries {
		if err := checkStateKey(e.Key); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s := se.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if se.closed {
		return nsdb.ErrSessionClosed
	}
	for _, e := range entries {
		s.setStateLocked(e.Key, e.Value, se.id)
	}
	return nil
}

// DeleteStates deletes many keys, whichever session holds them.
func (se *Session) DeleteStates(ctx context.Context, keys []string) error {
	for _, k := range keys {
		if err := checkStateKey(k); err != nil {
			return err
		}
	}
	s := se.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if se.closed {
		return nsdb.ErrSessionClosed
	}
	for _, k := range keys {
		s.deleteStateLocked(k)
	}
	return nil
}

// Close ends the session: its keys vanish.
func (se *Session) Close() error {
	s := se.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if se.closed {
		return nil
	}
	se.closed = true
	var keys []string
	for k, e := range s.state {
		if e.session == se.id {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		s.deleteStateLocked(k)
	}
	return nil
}

// Watch delivers every change under prefix (relative to the store, as
// nsdb.TopologyWatchPrefix or nsdb.StatePrefix; "/" for all) made after
// revision afterRev, in order, until ctx ends; then it closes the
// channel. afterRev 0 means from now.
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64) <-chan nsdb.Event {
	w := &watcher{prefix: prefix, out: make(chan nsdb.Event, 128), kick: make(chan struct{}, 1)}
	s.mu.Lock()
	if afterRev > 0 {
		i, _ := slices.BinarySearchFunc(s.history, afterRev+1, func(e nsdb.Event, rev int64) int { return int(e.ModRevision - rev) })
		w.offer(s.history[i:])
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	go func() {
		defer close(w.out)
		defer func() {
			s.mu.Lock()
			delete(s.watchers, w)
			s.mu.Unlock()
		}()
		w.run(ctx)
	}()
	return w.out
}

// watcher queues the events of one watch without bounds, so that writers
// never wait for a slow reader.
type watcher struct {
	prefix string
	out    chan nsdb.Event
	kick   chan struct{}

	mu      sync.Mutex
	pending []nsdb.Event // guarded by mu
}

// offer queues the events under the watcher's prefix. The store's lock is
// held, so events are queued in revision order.
func (w *watcher) offer(evs []nsdb.Event) {
	w.mu.Lock()
	n := len(w.pending)
	for _, e := range evs {
		if strings.HasPrefix(e.Key, w.prefix) {
			w.pending = append(w.pending, e)
		}
	}
	queued := len(w.pending) > n
	w.mu.Unlock()
	if queued {
		select {
		case w.kick <- struct{}{}:
		default:
		}
	}
}

func (w *watcher) run(ctx context.Context) {
	for {
		w.mu.Lock()
		evs := w.pending
		w.pending = nil
		w.mu.Unlock()
		for _, e := range evs {
			if e.Value != nil {
				e.Value = slices.Clone(e.Value) // the receiver owns it
			}
			select {
			case w.out <- e:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-w.kick:
		case <-ctx.Done():
			return
		}
	}
}
