package nsdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// LeaderKey is held by the one process that runs a cluster-wide job (the
// health monitors): it holds the process's identity, bound to its lease.
func LeaderKey(job string) string { return "/state/leaders/" + job }

// ErrNotLeader is returned by Tx.RequireLeader when the leadership is lost
// or the key is held by another.
var ErrNotLeader = errors.New("nsdb: not the leader")

// Leadership is one process's hold on a leader key. At most one process
// holds a key at a time: the holder considers itself leader only until a
// deadline that ends before the store can let the key expire (the lease's
// TTL counted from before its last renewal was sent, less a margin), so
// that when its process stalls or loses the store, it knows it has lost the
// lead before another process can take it.
type Leadership struct {
	s     *Store
	key   string // full key
	value []byte
	lease clientv3.LeaseID
	ttl   time.Duration

	mu       sync.Mutex
	deadline time.Time // guarded by mu
	lost     chan struct{}
	lose     sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// leaderMargin is how long before the store could expire the lease the
// holder stops considering itself leader.
func leaderMargin(ttl time.Duration) time.Duration { return max(ttl/4, 100*time.Millisecond) }

// Campaign waits until this process holds key (a LeaderKey) with value,
// keeps it until Resign or until the lease is lost, and returns the hold.
// ttl bounds how long the key outlives a holder that died or lost the
// store (etcd counts it in whole seconds, with a floor of its own).
func (s *Store) Campaign(ctx context.Context, key string, value []byte, ttl time.Duration) (*Leadership, error) {
	full, err := s.stateKey(key)
	if err != nil {
		return nil, err
	}
	secs := max(int64((ttl+time.Second-1)/time.Second), 1)
	for {
		l, rev, err := s.tryLead(ctx, full, value, secs)
		if err != nil || l != nil {
			return l, err
		}
		if err := s.waitVacant(ctx, full, rev, time.Duration(secs)*time.Second); err != nil {
			return nil, err
		}
	}
}

// tryLead takes a lease and the key if nobody holds it. It returns the
// hold, or the revision at which the key was found held.
func (s *Store) tryLead(ctx context.Context, full string, value []byte, secs int64) (*Leadership, int64, error) {
	rctx, cancel := s.reqCtx(ctx)
	defer cancel()
	sent := time.Now()
	g, err := s.cli.Grant(rctx, secs)
	if err != nil {
		return nil, 0, fmt.Errorf("nsdb: take a lease for %s: %w: %w", full[len(s.prefix):], ErrUnavailable, err)
	}
	resp, err := s.cli.Txn(rctx).If(clientv3.Compare(clientv3.CreateRevision(full), "=", 0)).
		Then(clientv3.OpPut(full, string(value), clientv3.WithLease(g.ID))).Commit()
	if err != nil || !resp.Succeeded {
		s.cli.Revoke(rctx, g.ID)
		if err != nil {
			return nil, 0, fmt.Errorf("nsdb: campaign for %s: %w: %w", full[len(s.prefix):], ErrUnavailable, err)
		}
		return nil, resp.Header.Revision, nil
	}
	ttl := time.Duration(g.TTL) * time.Second
	runCtx, stop := context.WithCancel(context.Background())
	l := &Leadership{s: s, key: full, value: bytes.Clone(value), lease: g.ID, ttl: ttl,
		deadline: sent.Add(ttl - leaderMargin(ttl)), lost: make(chan struct{}), cancel: stop, done: make(chan struct{})}
	go l.run(runCtx)
	return l, 0, nil
}

// waitVacant returns when the key was deleted after rev, or after wait (the
// holder's lease may have expired unseen), or when ctx ends.
func (s *Store) waitVacant(ctx context.Context, full string, rev int64, wait time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for resp := range s.cli.Watch(clientv3.WithRequireLeader(wctx), full, clientv3.WithRev(rev+1)) {
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return nil
			}
		}
	}
	return ctx.Err()
}

// run renews the lease three times per TTL and declares the lead lost when
// the deadline passes without a renewal, when the lease is gone, or when
// the key was taken away.
func (l *Leadership) run(ctx context.Context) {
	defer close(l.done)
	renew := time.NewTicker(l.ttl / 3)
	defer renew.Stop()
	watch := l.s.cli.Watch(ctx, l.key)
	for {
		l.mu.Lock()
		left := time.Until(l.deadline)
		l.mu.Unlock()
		if left <= 0 {
			l.markLost()
			return
		}
		expire := time.NewTimer(left)
		select {
		case <-ctx.Done():
			expire.Stop()
			return
		case <-expire.C:
			continue
		case resp, ok := <-watch:
			expire.Stop()
			if !ok {
				watch = nil // the deadline still guards the lead
				continue
			}
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete || ev.Kv.Lease != int64(l.lease) {
					l.markLost()
					return
				}
			}
		case <-renew.C:
			expire.Stop()
			sent := time.Now()
			rctx, cancel := context.WithTimeout(ctx, l.ttl/3)
			resp, err := l.s.cli.KeepAliveOnce(rctx, l.lease)
			cancel()
			switch {
			case errors.Is(err, rpctypes.ErrLeaseNotFound):
				l.markLost()
				return
			case err == nil && resp.TTL > 0:
				ttl := time.Duration(resp.TTL) * time.Second
				l.mu.Lock()
				l.deadline = sent.Add(ttl - leaderMargin(ttl))
				l.mu.Unlock()
			}
		}
	}
}

func (l *Leadership) markLost() { l.lose.Do(func() { close(l.lost) }) }

// Lost is closed when this process no longer holds the lead (or may not:
// it could not renew its lease in time). Stop the job at once.
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// Held reports whether the lead is still held now.
func (l *Leadership) Held() bool {
	select {
	case <-l.lost:
		return false
	default:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Now().Before(l.deadline)
}

// Resign gives up the lead: the key is deleted so that another process can
// take it at once. It is safe to call more than once.
func (l *Leadership) Resign(ctx context.Context) error {
	l.markLost()
	l.cancel()
	<-l.done
	rctx, cancel := l.s.reqCtx(ctx)
	defer cancel()
	if _, err := l.s.cli.Revoke(rctx, l.lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("nsdb: resign %s: %w", l.key[len(l.s.prefix):], err)
	}
	return nil
}

// RequireLeader makes the transaction commit only while l holds its key:
// it fails with ErrNotLeader if the lead is lost, and a change of the key
// before the commit (another process taking it) makes the commit conflict.
func (tx *Tx) RequireLeader(l *Leadership) error {
	if !l.Held() {
		return ErrNotLeader
	}
	v, err := tx.readKey(l.key)
	if err != nil {
		return err
	}
	if !bytes.Equal(v, l.value) {
		return ErrNotLeader
	}
	return nil
}
