package memstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

func next(t *testing.T, ch <-chan nsdb.Event) nsdb.Event {
	t.Helper()
	select {
	case e, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return nsdb.Event{}
}

// A watch from a revision replays what came after it, then follows; a
// transaction's writes share a revision; objects and state keys carry what
// nsdb's events carry.
func TestWatchFollowsTransactionsAndState(t *testing.T) {
	ctx := t.Context()
	s := New()
	b1, b2 := topology.NewID(), topology.NewID()
	if err := s.Update(ctx, func(tx topology.Store) error {
		if err := tx.Create(&topology.Bridge{ID: b1}); err != nil {
			return err
		}
		return tx.Create(&topology.Bridge{ID: b2})
	}); err != nil {
		t.Fatal(err)
	}
	rev, objs, err := s.Snapshot(ctx)
	if err != nil || len(objs) != 2 {
		t.Fatalf("snapshot: %d objects, %v", len(objs), err)
	}
	ch := s.Watch(ctx, "/", rev-1) // replays the transaction
	e1, e2 := next(t, ch), next(t, ch)
	if e1.ModRevision != rev || e2.ModRevision != rev || e1.Kind != topology.KindBridge || e1.ID != b1.String() || e2.ID != b2.String() {
		t.Fatalf("replayed %+v and %+v, want both bridges at revision %d", e1, e2, rev)
	}
	if err := s.Update(ctx, func(tx topology.Store) error { return tx.Delete(topology.KindBridge, b1.String()) }); err != nil {
		t.Fatal(err)
	}
	if e := next(t, ch); e.Type != nsdb.EventDelete || e.ID != b1.String() || e.ModRevision != rev+1 {
		t.Fatalf("after the delete: %+v", e)
	}
	key := nsdb.PortActiveKey(b2.String())
	se, err := s.NewSession(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := se.SetState(ctx, key, []byte("h1")); err != nil {
		t.Fatal(err)
	}
	if e := next(t, ch); e.Type != nsdb.EventPut || e.Key != key || !e.Leased || string(e.Value) != "h1" {
		t.Fatalf("session key: %+v", e)
	}
	se.Close()
	if e := next(t, ch); e.Type != nsdb.EventDelete || e.Key != key {
		t.Fatalf("after the session closed: %+v", e)
	}
	if _, err := s.GetState(ctx, key); !errors.Is(err, nsdb.ErrNotFound) {
		t.Fatalf("a closed session's key: %v, want not found", err)
	}
	if err := se.SetState(ctx, key, nil); !errors.Is(err, nsdb.ErrSessionClosed) {
		t.Fatalf("writing through a closed session: %v", err)
	}
}

// A failed transaction writes nothing; learned state never replaces an
// operator's.
func TestUpdateIsAtomicAndLearningYieldsToSeeds(t *testing.T) {
	ctx := t.Context()
	s := New()
	b := topology.NewID()
	boom := errors.New("boom")
	err := s.Update(ctx, func(tx topology.Store) error {
		tx.Create(&topology.Bridge{ID: b})
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v", err)
	}
	if _, objs, _ := s.Snapshot(ctx); len(objs) != 0 {
		t.Fatalf("a failed transaction left %d objects", len(objs))
	}
	if err := s.View(ctx, func(tx topology.Store) error { return tx.Create(&topology.Bridge{ID: b}) }); !errors.Is(err, nsdb.ErrReadOnly) {
		t.Fatalf("a write in View: %v", err)
	}
	key := nsdb.BridgeMACKey(b.String(), 0, [6]byte{2, 0, 0, 0, 0, 1})
	s.PutState(ctx, key, []byte("seeded"))
	se, _ := s.NewSession(ctx, 0)
	if wrote, err := se.LearnState(ctx, key, []byte("learned")); wrote || err != nil {
		t.Fatalf("learning over a seeded entry: wrote %v, %v", wrote, err)
	}
	if e, _ := s.GetState(ctx, key); string(e.Value) != "seeded" || e.Leased {
		t.Fatalf("entry %+v, want the seeded one", e)
	}
}

// A watch ends when its context does.
func TestWatchEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	ch := New().Watch(ctx, "/", 0)
	cancel()
	for range ch {
	}
}

// A claimed key has one holder: another session's claim fails until the
// holder's session ends, and a session claiming with the holder's value
// takes it over (a restarted host).
func TestClaimedKeysHaveOneHolder(t *testing.T) {
	ctx := t.Context()
	s := New()
	key := "/state/nat/r1/203.0.113.1/20"
	a, _ := s.NewSession(ctx, 0)
	b, _ := s.NewSession(ctx, 0)
	if ok, err := a.ClaimState(ctx, key, []byte("h1")); !ok || err != nil {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	if ok, _ := b.ClaimState(ctx, key, []byte("h2")); ok {
		t.Fatal("a second holder's claim succeeded")
	}
	again, _ := s.NewSession(ctx, 0)
	if ok, _ := again.ClaimState(ctx, key, []byte("h1")); !ok {
		t.Fatal("the holder's new session could not take its claim back")
	}
	a.Close() // the old session's end no longer removes the key
	if e, err := s.GetState(ctx, key); err != nil || string(e.Value) != "h1" {
		t.Fatalf("after the old session closed: %+v %v", e, err)
	}
	again.Close()
	if ok, _ := b.ClaimState(ctx, key, []byte("h2")); !ok {
		t.Fatal("claim refused after the holder's session ended")
	}
}
