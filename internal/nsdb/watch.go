package nsdb

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EventType says what happened to a watched key.
type EventType uint8

const (
	// EventPut: the key was created or changed.
	EventPut EventType = iota + 1
	// EventDelete: the key was deleted, or its lease expired.
	EventDelete
	// EventResync: the history after the last delivered revision was
	// compacted away, so changes were missed. The watch ends after this
	// event; reload (Snapshot, ListState) and watch again from the
	// revision of what was loaded.
	EventResync
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventResync:
		return "resync required"
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// Event is one change under a watched prefix.
type Event struct {
	Type EventType
	// Key is relative to the store prefix, e.g. "/topology/bridges/<id>"
	// or "/state/hosts/<id>/alive".
	Key string
	// Kind and ID name the object when Key is a topology object's key;
	// they are empty otherwise.
	Kind, ID string
	// Value is the new value of a put, nil for a delete. The receiver
	// owns it.
	Value []byte
	// Leased reports whether a put key is bound to a lease (learned
	// state) rather than persistent.
	Leased bool
	// ModRevision is the store revision of the change. Events of one
	// transaction share it. For EventResync it is the oldest revision
	// still available.
	ModRevision int64
}

// RawObject is a topology object as stored.
type RawObject struct {
	Kind, ID string
	// Value is the object's JSON.
	Value          []byte
	CreateRevision int64
	ModRevision    int64
}

// Snapshot reads every topology object at one revision, in creation order.
// Watch the topology from rev to follow it without missing a change.
func (s *Store) Snapshot(ctx context.Context) (rev int64, objs []RawObject, err error) {
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.TopologyPrefix(), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return 0, nil, fmt.Errorf("nsdb: snapshot of the topology: %w", err)
	}
	objs = make([]RawObject, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kind, id, ok := s.ParseObjectKey(string(kv.Key))
		if !ok || strings.Contains(id, "/") {
			continue
		}
		objs = append(objs, RawObject{Kind: kind, ID: id, Value: kv.Value,
			CreateRevision: kv.CreateRevision, ModRevision: kv.ModRevision})
	}
	return resp.Header.Revision, objs, nil
}

// Revision returns the current revision of the store.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+"/ping", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("nsdb: read the revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// TopologyWatchPrefix is the Watch prefix of every topology object.
const TopologyWatchPrefix = "/topology/"

// watchBuffer lets the watch run ahead of a slow receiver a little.
const watchBuffer = 128

// Watch delivers every change of the keys under prefix made after revision
// afterRev, in revision order, each exactly once, until ctx ends or the
// store is closed; then it closes the channel. prefix is relative to the
// store prefix (TopologyWatchPrefix, "/state/hosts/", ...); a full key
// prefix such as TopologyPrefix() is accepted too. afterRev 0 means from
// the revision current when the watch first reaches the store, so changes
// made while Watch is starting may or may not be seen: pass the revision of
// a Snapshot or ListState to be exact.
//
// The watch survives the loss of a member or of a connection: it resumes
// from the last delivered revision on another endpoint. It refuses members
// cut off from the cluster leader, which could serve a stale history
// forever. If the history it needs was compacted, it delivers EventResync
// and ends.
func (s *Store) Watch(ctx context.Context, prefix string, afterRev int64) <-chan Event {
	if !strings.HasPrefix(prefix, s.prefix+"/") {
		prefix = s.prefix + prefix
	}
	out := make(chan Event, watchBuffer)
	go s.watch(ctx, prefix, afterRev, out)
	return out
}

func (s *Store) watch(ctx context.Context, prefix string, last int64, out chan<- Event) {
	defer close(out)
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-s.cli.Ctx().Done():
			return false
		case <-t.C:
			return true
		}
	}
	backoff := backoffStart
	for last == 0 {
		rev, err := s.Revision(ctx)
		if err == nil {
			last = rev
			break
		}
		s.log.Warn("watch cannot read the revision", "prefix", prefix, "err", err)
		if !wait(backoff) {
			return
		}
		backoff = min(2*backoff, backoffMax)
	}
	backoff = backoffStart
	for ctx.Err() == nil && s.cli.Ctx().Err() == nil {
		delivered := last
		var resync bool
		last, resync = s.watchOnce(ctx, prefix, last, out)
		if resync || ctx.Err() != nil {
			return
		}
		if last > delivered {
			backoff = backoffStart
		}
		if !wait(backoff) {
			return
		}
		backoff = min(2*backoff, backoffMax)
	}
}

const (
	backoffStart = 20 * time.Millisecond
	backoffMax   = time.Second
)

// watchOnce runs one etcd watch from last+1 until it fails, and returns the
// last revision delivered and whether a resync was reported.
func (s *Store) watchOnce(ctx context.Context, prefix string, last int64, out chan<- Event) (int64, bool) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(last+1),
		clientv3.WithProgressNotify())
	for resp := range wch {
		if resp.CompactRevision != 0 {
			s.log.Warn("watch history compacted", "prefix", prefix, "last_rev", last, "compact_rev", resp.CompactRevision)
			select {
			case out <- Event{Type: EventResync, ModRevision: resp.CompactRevision}:
			case <-ctx.Done():
			}
			return last, true
		}
		if err := resp.Err(); err != nil {
			s.log.Info("watch interrupted", "prefix", prefix, "last_rev", last, "err", err)
			return last, false
		}
		if resp.IsProgressNotify() {
			// Everything up to this revision has been delivered.
			last = max(last, resp.Header.Revision)
			continue
		}
		// A revision's events all come in one response, so events at
		// or below the last delivered revision are repeats.
		from := last
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision <= from {
				continue
			}
			e := s.event(ev)
			select {
			case out <- e:
			case <-ctx.Done():
				return last, false
			}
			last = max(last, ev.Kv.ModRevision)
		}
	}
	return last, false
}

func (s *Store) event(ev *clientv3.Event) Event {
	key := string(ev.Kv.Key)
	e := Event{
		Key:         strings.TrimPrefix(key, s.prefix),
		Value:       ev.Kv.Value,
		ModRevision: ev.Kv.ModRevision,
	}
	if kind, id, ok := s.ParseObjectKey(key); ok && !strings.Contains(id, "/") {
		e.Kind, e.ID = kind, id
	}
	switch ev.Type {
	case mvccpb.PUT:
		e.Type = EventPut
		e.Leased = ev.Kv.Lease != 0
	case mvccpb.DELETE:
		e.Type = EventDelete
		e.Value = nil
	}
	return e
}
