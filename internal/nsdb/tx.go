package nsdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/midonet/midonet/internal/topology"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Object is a stored topology object: it names its collection (Kind, e.g.
// "bridges") and its id.
type Object = topology.Object

// A Tx is what the integrity rules of package topology run on.
var _ topology.Store = (*Tx)(nil)

// Tx is one optimistic transaction. Reads see the store at one revision plus
// the transaction's own writes; writes are buffered until commit. A Tx is
// used by one goroutine and only inside the function given to Update or View.
type Tx struct {
	s   *Store
	ctx context.Context
	rev int64 // the snapshot revision; 0 until the first read

	// seen holds the mod revision (0: absent) of every key read or
	// overwritten: the commit succeeds only if none has changed.
	seen map[string]int64
	// listed holds mod revisions of keys seen only through List; they
	// guard the commit only once the key is written or read by Get.
	listed map[string]int64
	// vals caches values read or listed and holds values written (nil:
	// absent or deleted).
	vals map[string][]byte
	// writes lists written keys in order; a key appears once, as etcd
	// refuses a transaction that names a key twice.
	writes  []string
	written map[string]bool
	// created keeps the order keys were created in by this tx.
	created []string
	// statePrefixes lists the state prefixes the commit deletes (the
	// tables of a deleted device), so that an object and its state go
	// in one etcd transaction.
	statePrefixes []string
	// attempt counts the runs of the Update before this one.
	attempt int
}

// maxAttempts bounds the retries of a conflicting transaction.
const maxAttempts = 64

// Update runs fn in a transaction and commits its writes atomically. On a
// conflict with a concurrent writer it runs fn again on fresh data, so fn
// must have no effect outside the Tx. An error from fn aborts the
// transaction and is returned unchanged.
func (s *Store) Update(ctx context.Context, fn func(*Tx) error) error {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		tx := s.newTx(ctx)
		tx.attempt = attempt
		if err := fn(tx); err != nil {
			return err
		}
		ok, err := tx.commit()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		// Back off a little, with jitter, so colliding writers spread out.
		d := time.Duration(rand.N(int64(attempt+1))) * time.Millisecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	return ErrConflict
}

// View runs fn on a consistent read-only view of the store. Writes made by
// fn are not committed: View returns ErrReadOnly if fn made any.
func (s *Store) View(ctx context.Context, fn func(*Tx) error) error {
	tx := s.newTx(ctx)
	if err := fn(tx); err != nil {
		return err
	}
	if len(tx.writes) > 0 {
		return fmt.Errorf("nsdb: %d writes inside View (first %s); use Update: %w", len(tx.writes), tx.writes[0], ErrReadOnly)
	}
	if len(tx.statePrefixes) > 0 {
		return fmt.Errorf("nsdb: state delete of %s inside View; use Update: %w", tx.statePrefixes[0], ErrReadOnly)
	}
	return nil
}

func (s *Store) newTx(ctx context.Context) *Tx {
	return &Tx{
		s:       s,
		ctx:     ctx,
		seen:    map[string]int64{},
		listed:  map[string]int64{},
		vals:    map[string][]byte{},
		written: map[string]bool{},
	}
}

// Revision is the store revision the transaction reads at (0 before the
// first read).
func (tx *Tx) Revision() int64 { return tx.rev }

// get reads at the transaction's revision, or at the current one (which
// becomes the transaction's) for the first read.
func (tx *Tx) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := tx.s.reqCtx(tx.ctx)
	defer cancel()
	if tx.rev == 0 {
		resp, err := tx.s.cli.Get(ctx, key, opts...)
		if err == nil {
			tx.rev = resp.Header.Revision
		}
		return resp, err
	}
	// The store at a past revision never changes, so any member that
	// has applied it can answer alone, without the round of the
	// leader a linearizable read costs. A member lagging behind says
	// so, and the leader answers.
	opts = append(opts, clientv3.WithRev(tx.rev))
	resp, err := tx.s.cli.Get(ctx, key, append(opts, clientv3.WithSerializable())...)
	if errors.Is(err, rpctypes.ErrFutureRev) {
		resp, err = tx.s.cli.Get(ctx, key, opts...)
	}
	return resp, err
}

// readKey returns the value of key, nil if absent.
func (tx *Tx) readKey(key string) ([]byte, error) {
	if v, ok := tx.vals[key]; ok {
		if _, ok := tx.seen[key]; !ok {
			// Cached by a List: reading it now makes it a guard.
			tx.seen[key] = tx.listed[key]
		}
		return v, nil
	}
	resp, err := tx.get(key)
	if err != nil {
		return nil, fmt.Errorf("nsdb: read %s: %w: %w", key, ErrUnavailable, err)
	}
	var v []byte
	var mod int64
	if len(resp.Kvs) > 0 {
		v, mod = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
	}
	tx.seen[key] = mod
	tx.vals[key] = v
	return v, nil
}

func (tx *Tx) writeKey(key string, val []byte) error {
	if _, ok := tx.seen[key]; !ok {
		if mod, ok := tx.listed[key]; ok {
			tx.seen[key] = mod
		} else if _, err := tx.readKey(key); err != nil {
			return err
		}
	}
	if !tx.written[key] {
		tx.written[key] = true
		tx.writes = append(tx.writes, key)
	}
	tx.vals[key] = val
	return nil
}

func (tx *Tx) commit() (bool, error) {
	if len(tx.writes) == 0 && len(tx.statePrefixes) == 0 {
		return true, nil
	}
	cmps := make([]clientv3.Cmp, 0, len(tx.seen))
	for k, mod := range tx.seen {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", mod))
	}
	ops := make([]clientv3.Op, 0, len(tx.writes))
	for _, k := range tx.writes {
		if v := tx.vals[k]; v == nil {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(v)))
		}
	}
	for _, p := range tx.statePrefixes {
		ops = append(ops, clientv3.OpDelete(tx.s.prefix+p, clientv3.WithPrefix()))
	}
	ctx, cancel := tx.s.reqCtx(tx.ctx)
	defer cancel()
	resp, err := tx.s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, fmt.Errorf("nsdb: commit of %d writes (outcome unknown): %w: %w", len(ops), ErrUnavailable, err)
	}
	return resp.Succeeded, nil
}

// DeleteStatePrefix deletes every state key under prefix when the
// transaction commits, atomically with its object writes: a deleted
// bridge's MAC and ARP tables go with the bridge, or neither goes. The
// keys are not read, so they do not guard the commit (an agent learning an
// entry meanwhile does not make the delete conflict; the entry goes too).
func (tx *Tx) DeleteStatePrefix(prefix string) error {
	if !strings.HasPrefix(prefix, StatePrefix) || !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("nsdb: %q is not a state prefix; build prefixes with the nsdb key functions", prefix)
	}
	if !slices.Contains(tx.statePrefixes, prefix) {
		tx.statePrefixes = append(tx.statePrefixes, prefix)
	}
	return nil
}

// GetRaw returns the JSON of an object, or ErrNotFound.
func (tx *Tx) GetRaw(kind, id string) ([]byte, error) {
	v, err := tx.readKey(tx.s.objectKey(kind, id))
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, fmt.Errorf("%s %s: %w", topology.Singular(kind), id, ErrNotFound)
	}
	return v, nil
}

// Exists reports whether an object exists. It counts as a read: the commit
// fails if the object appears or disappears meanwhile.
func (tx *Tx) Exists(kind, id string) (bool, error) {
	v, err := tx.readKey(tx.s.objectKey(kind, id))
	return v != nil, err
}

// Get decodes the object kind/id into out, or returns ErrNotFound.
func (tx *Tx) Get(kind, id string, out any) error {
	v, err := tx.GetRaw(kind, id)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(v, out); err != nil {
		return fmt.Errorf("nsdb: decode %s %s: %w", topology.Singular(kind), id, err)
	}
	return nil
}

// Create stores a new object; ErrExists if its id is taken.
func (tx *Tx) Create(o Object) error {
	key := tx.s.objectKey(o.Kind(), o.ObjectID())
	if _, known := tx.vals[key]; !known && tx.attempt == 0 {
		// Assume the id is free instead of reading it: the commit is
		// guarded by the key's absence, and if the id was taken the
		// next attempt reads it and reports ErrExists. This saves a
		// round trip per create.
		tx.seen[key] = 0
		tx.vals[key] = nil
	}
	v, err := tx.readKey(key)
	if err != nil {
		return err
	}
	if v != nil {
		return fmt.Errorf("%s %s: %w", topology.Singular(o.Kind()), o.ObjectID(), ErrExists)
	}
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("nsdb: encode %s %s: %w", topology.Singular(o.Kind()), o.ObjectID(), err)
	}
	tx.created = append(tx.created, key)
	return tx.writeKey(key, b)
}

// Put stores an object, created or replaced.
func (tx *Tx) Put(o Object) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("nsdb: encode %s %s: %w", topology.Singular(o.Kind()), o.ObjectID(), err)
	}
	key := tx.s.objectKey(o.Kind(), o.ObjectID())
	if v, err := tx.readKey(key); err != nil {
		return err
	} else if v == nil && !tx.written[key] {
		tx.created = append(tx.created, key)
	}
	return tx.writeKey(key, b)
}

// Delete removes an object; deleting an absent object is not an error.
func (tx *Tx) Delete(kind, id string) error {
	key := tx.s.objectKey(kind, id)
	v, err := tx.readKey(key)
	if err != nil || v == nil {
		return err
	}
	return tx.writeKey(key, nil)
}

// ListRaw returns the JSON of every object of a kind in creation order,
// including this transaction's writes. Objects seen only through a list do
// not guard the commit (see the package comment), but a later write of one
// of them is guarded by the revision listed.
func (tx *Tx) ListRaw(kind string) ([][]byte, error) {
	prefix := tx.s.objectPrefix(kind)
	resp, err := tx.get(prefix, clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("nsdb: list %s: %w: %w", kind, ErrUnavailable, err)
	}
	out := make([][]byte, 0, len(resp.Kvs))
	var inSnapshot map[string]bool // keys of this list that this tx also created
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if strings.Contains(k[len(prefix):], "/") {
			continue
		}
		if _, ok := tx.seen[k]; !ok {
			tx.listed[k] = kv.ModRevision
		}
		v, ok := tx.vals[k]
		if !ok {
			// Cache it: a later Get costs no round trip and still
			// guards the commit with the listed revision.
			v = kv.Value
			tx.vals[k] = v
		}
		if v != nil {
			out = append(out, v)
		}
		if len(tx.created) > 0 {
			if inSnapshot == nil {
				inSnapshot = map[string]bool{}
			}
			inSnapshot[k] = true
		}
	}
	for _, k := range tx.created {
		// A key deleted and created again in this tx was listed
		// above, in its original place.
		if strings.HasPrefix(k, prefix) && !inSnapshot[k] {
			if v := tx.vals[k]; v != nil {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

// Get decodes one object of type T.
func Get[T Object](tx *Tx, id string) (T, error) { return topology.GetOf[T](tx, id) }

// List decodes every object of type T, in creation order.
func List[T Object](tx *Tx) ([]T, error) { return topology.ListOf[T](tx) }

// NextSequence returns the next value of a named counter, starting at 1.
// Tunnel keys of ports come from one.
func (tx *Tx) NextSequence(name string) (int64, error) {
	key := tx.s.prefix + "/seq/" + name
	v, err := tx.readKey(key)
	if err != nil {
		return 0, err
	}
	var n int64
	if v != nil {
		if n, err = strconv.ParseInt(string(v), 10, 64); err != nil {
			return 0, fmt.Errorf("nsdb: sequence %s holds %q: %w", name, v, err)
		}
	}
	n++
	return n, tx.writeKey(key, []byte(strconv.FormatInt(n, 10)))
}

// GetState reads a state key (see the package comment) at the
// transaction's revision; nil when absent. It guards the commit like any
// other read.
func (tx *Tx) GetState(key string) ([]byte, error) {
	full, err := tx.s.stateKey(key)
	if err != nil {
		return nil, err
	}
	return tx.readKey(full)
}

// PutState writes a persistent state key (bound to no session) in the
// transaction, so that seeded MAC and ARP entries commit or fail together
// with the objects they belong to (a Neutron port and its bridge port).
func (tx *Tx) PutState(key string, value []byte) error {
	full, err := tx.s.stateKey(key)
	if err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	return tx.writeKey(full, value)
}

// DeleteState deletes a state key, persistent or leased, in the
// transaction; deleting an absent key is not an error.
func (tx *Tx) DeleteState(key string) error {
	full, err := tx.s.stateKey(key)
	if err != nil {
		return err
	}
	v, err := tx.readKey(full)
	if err != nil || v == nil {
		return err
	}
	return tx.writeKey(full, nil)
}
