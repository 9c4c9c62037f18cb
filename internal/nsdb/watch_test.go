package nsdb

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// nextEvent returns the next event of ch, failing the test if none comes.
func nextEvent(t testing.TB, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return Event{}
}

func TestWatchDeliversChangesInOrder(t *testing.T) {
	s := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(widget{ID: "before"}) })
	rev, objs, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 || objs[0].Kind != "widgets" || objs[0].ID != "before" || objs[0].ModRevision > rev {
		t.Fatalf("snapshot at %d: %+v", rev, objs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Watch(ctx, TopologyWatchPrefix, rev)

	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(widget{ID: "a", N: 1}) })
	mustUpdate(t, s, func(tx *Tx) error { return tx.Put(widget{ID: "a", N: 2}) })
	mustUpdate(t, s, func(tx *Tx) error {
		// Two objects in one transaction: two events, one revision.
		if err := tx.Create(widget{ID: "b"}); err != nil {
			return err
		}
		return tx.Delete("widgets", "before")
	})
	// Keys outside the prefix are not delivered.
	if _, err := s.Client().Put(context.Background(), s.Prefix()+"/state/x", "1"); err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.Delete("widgets", "a") })

	want := []struct {
		typ   EventType
		id    string
		value string
	}{
		{EventPut, "a", `{"id":"a","n":1}`},
		{EventPut, "a", `{"id":"a","n":2}`},
		{EventPut, "b", `{"id":"b","n":0}`},
		{EventDelete, "before", ""},
		{EventDelete, "a", ""},
	}
	var revs []int64
	for i, w := range want {
		ev := nextEvent(t, ch)
		if ev.Type != w.typ || ev.Kind != "widgets" || ev.ID != w.id || string(ev.Value) != w.value ||
			ev.Key != "/topology/widgets/"+w.id || ev.Leased {
			t.Errorf("event %d: %+v (value %s), want %s of %s %s", i, ev, ev.Value, w.typ, w.id, w.value)
		}
		revs = append(revs, ev.ModRevision)
	}
	if revs[0] <= rev || revs[1] <= revs[0] || revs[2] <= revs[1] || revs[3] != revs[2] || revs[4] <= revs[3] {
		t.Errorf("revisions %v after snapshot %d: want increasing, the 3rd and 4th equal", revs, rev)
	}
	cancel()
	for ev := range ch {
		t.Errorf("unexpected event %+v", ev)
	}
}

func TestWatchFromNow(t *testing.T) {
	s := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(widget{ID: "old"}) })
	ch := s.Watch(t.Context(), "/topology/widgets/", 0)
	// Write until the watch has started: the first event is a new one.
	for i := 0; ; i++ {
		mustUpdate(t, s, func(tx *Tx) error { return tx.Put(widget{ID: "new", N: i}) })
		select {
		case ev := <-ch:
			if ev.ID != "new" {
				t.Fatalf("first event %+v, want one of new", ev)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestWatchReportsCompaction(t *testing.T) {
	s := newStore(t)
	first, err := s.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustUpdate(t, s, func(tx *Tx) error { return tx.Put(widget{ID: "w", N: i}) })
	}
	now, err := s.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Compact(context.Background(), now); err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(t.Context(), TopologyWatchPrefix, first)
	ev := nextEvent(t, ch)
	if ev.Type != EventResync || ev.ModRevision != now {
		t.Fatalf("event %+v, want resync at %d", ev, now)
	}
	if ev, ok := <-ch; ok {
		t.Fatalf("event %+v after a resync, want the channel closed", ev)
	}
}

func TestWatchEndsWhenStoreCloses(t *testing.T) {
	srv := startMember(t)
	s, err := Open(context.Background(), Config{Endpoints: []string{srv.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(context.Background(), TopologyWatchPrefix, 0)
	s.Close()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch still open 10s after Close")
	}
}

// TestWatchSurvivesMemberKills kills each member of a three-member cluster
// in turn, and restarts it, while a writer keeps writing: the watcher must
// see every acknowledged write, in order, once.
func TestWatchSurvivesMemberKills(t *testing.T) {
	c := startCluster(t)
	writer := openStore(t, c.endpoints()...)
	watcher := openStore(t, c.endpoints()...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := watchFromNow(ctx, t, watcher)

	var (
		mu    sync.Mutex
		acked []string
		seen  []Event
	)
	var watched sync.WaitGroup
	watched.Go(func() {
		for ev := range ch {
			mu.Lock()
			seen = append(seen, ev)
			mu.Unlock()
		}
	})
	var nacked atomic.Int64
	stop := make(chan struct{})
	var wrote sync.WaitGroup
	wrote.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("w%05d", i)
			wctx, wcancel := context.WithTimeout(ctx, 3*time.Second)
			err := writer.Update(wctx, func(tx *Tx) error { return tx.Create(widget{ID: id}) })
			wcancel()
			if err == nil {
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
				nacked.Add(1)
			}
		}
	})
	start := time.Now()
	progress := func(what string) {
		defer func() { t.Logf("%v: %s", time.Since(start).Round(time.Millisecond), what) }()
		n := nacked.Load()
		waitFor(t, what, 10*time.Second, func() bool { return nacked.Load() >= n+20 })
	}
	progress("first writes")
	for i := range 3 {
		c.kill(i)
		t.Logf("%v: member %d killed", time.Since(start).Round(time.Millisecond), i)
		progress(fmt.Sprintf("writes with member %d dead", i))
		if err := c.start(i); err != nil {
			t.Fatalf("restart member %d: %v", i, err)
		}
		progress(fmt.Sprintf("writes with member %d back", i))
	}
	close(stop)
	wrote.Wait()
	mu.Lock()
	last := acked[len(acked)-1]
	mu.Unlock()
	waitFor(t, "the watcher to see the last write", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1].ID >= last
	})
	cancel()
	watched.Wait()

	var ids []string
	for i, ev := range seen {
		if ev.Type != EventPut {
			t.Fatalf("event %d: %+v, want only puts", i, ev)
		}
		if i > 0 && ev.ModRevision <= seen[i-1].ModRevision {
			t.Fatalf("event %d at revision %d after %d: out of order or repeated", i, ev.ModRevision, seen[i-1].ModRevision)
		}
		ids = append(ids, ev.ID)
	}
	// Writes that failed may have committed all the same; every
	// acknowledged one must be there.
	for _, id := range acked {
		if _, found := slices.BinarySearch(ids, id); !found {
			t.Errorf("acknowledged write %s not delivered", id)
		}
	}
	t.Logf("%d writes acknowledged, %d events delivered", len(acked), len(seen))
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestWatchResumesAfterQuorumLoss leaves the watcher's only member without
// a leader: the member cancels the watch, and the watch must come back
// from where it was once the quorum is back, losing nothing.
func TestWatchResumesAfterQuorumLoss(t *testing.T) {
	c := startCluster(t)
	var logs syncBuffer
	watcher, err := Open(context.Background(), Config{
		Endpoints: c.endpoints()[:1],
		Logger:    slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watcher.Close() })
	writer := openStore(t, c.endpoints()...)
	ch := watchFromNow(t.Context(), t, watcher)
	write := func(id string) {
		t.Helper()
		mustUpdate(t, writer, func(tx *Tx) error { return tx.Create(widget{ID: id}) })
	}
	write("a")
	write("b")
	if ev := nextEvent(t, ch); ev.ID != "a" {
		t.Fatalf("first event %+v", ev)
	}
	c.kill(1)
	c.kill(2)
	waitFor(t, "the leaderless member to cancel the watch", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "watch interrupted")
	})
	for i := 1; i <= 2; i++ {
		if err := c.start(i); err != nil {
			t.Fatalf("restart member %d: %v", i, err)
		}
	}
	write("c")
	for _, want := range []string{"b", "c"} {
		if ev := nextEvent(t, ch); ev.ID != want || ev.Type != EventPut {
			t.Fatalf("event %+v, want the put of %s", ev, want)
		}
	}
}

// watchFromNow watches the topology from the store's current revision
// until ctx ends.
func watchFromNow(ctx context.Context, t *testing.T, s *Store) <-chan Event {
	t.Helper()
	rev, err := s.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.Watch(ctx, TopologyWatchPrefix, rev)
}
