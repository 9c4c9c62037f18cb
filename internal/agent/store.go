package agent

import (
	"context"
	"time"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// Store is the NSDB as the agent uses it: the verbs it calls, and no more.
// NSDB gives an nsdb.Store this shape; package memstore implements it in
// memory, so the agent's tests and scale runs need no etcd.
type Store interface {
	// Update runs fn in a transaction on the topology and commits its
	// writes atomically; it may run fn again on a conflict. View runs fn
	// on a consistent read-only view.
	Update(ctx context.Context, fn func(tx topology.Store) error) error
	View(ctx context.Context, fn func(tx topology.Store) error) error
	// Snapshot reads every topology object at one revision; Watch then
	// delivers every change under prefix after a revision, in order.
	Snapshot(ctx context.Context) (rev int64, objs []nsdb.RawObject, err error)
	Watch(ctx context.Context, prefix string, afterRev int64) <-chan nsdb.Event
	// ListState, GetState and PutState read and write state keys (built
	// with the nsdb key functions); GetState returns nsdb.ErrNotFound for
	// an absent key.
	ListState(ctx context.Context, prefix string) ([]nsdb.StateEntry, int64, error)
	GetState(ctx context.Context, key string) (nsdb.StateEntry, error)
	PutState(ctx context.Context, key string, value []byte) error
	// NewSession opens a session: keys written through it vanish ttl after
	// the agent stops keeping it alive (it died or lost the store).
	NewSession(ctx context.Context, ttl time.Duration) (nsdb.StateSession, error)
}

// NSDB adapts an nsdb.Store to Store.
func NSDB(s *nsdb.Store) Store { return nsdbStore{s} }

type nsdbStore struct{ *nsdb.Store }

func (s nsdbStore) Update(ctx context.Context, fn func(tx topology.Store) error) error {
	return s.Store.Update(ctx, func(tx *nsdb.Tx) error { return fn(tx) })
}

func (s nsdbStore) View(ctx context.Context, fn func(tx topology.Store) error) error {
	return s.Store.View(ctx, func(tx *nsdb.Tx) error { return fn(tx) })
}

func (s nsdbStore) NewSession(ctx context.Context, ttl time.Duration) (nsdb.StateSession, error) {
	se, err := s.Store.NewSession(ctx, nsdb.SessionConfig{TTL: ttl})
	if err != nil {
		return nil, err
	}
	return se, nil
}
