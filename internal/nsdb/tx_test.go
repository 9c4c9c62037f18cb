package nsdb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/midonet/midonet/internal/nsdb/embedded"
)

func TestCRUD(t *testing.T) {
	s := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(widget{ID: "w1", Name: "first"}) })
	w, err := getWidget(t, s, "w1")
	if err != nil || w.Name != "first" {
		t.Fatalf("after create: got %+v, %v; want name first", w, err)
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.Put(widget{ID: "w1", Name: "renamed"}) })
	if w, err := getWidget(t, s, "w1"); err != nil || w.Name != "renamed" {
		t.Fatalf("after put: got %+v, %v; want name renamed", w, err)
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.Delete("widgets", "w1") })
	if _, err := getWidget(t, s, "w1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: err %v, want ErrNotFound", err)
	}
	// Deleting what is not there is not an error.
	mustUpdate(t, s, func(tx *Tx) error { return tx.Delete("widgets", "w1") })
	// Put creates.
	mustUpdate(t, s, func(tx *Tx) error { return tx.Put(widget{ID: "w2"}) })
	err = s.View(context.Background(), func(tx *Tx) error {
		ok, err := tx.Exists("widgets", "w2")
		if err == nil && !ok {
			err = errors.New("w2 does not exist after Put")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestErrorsWrapSentinels(t *testing.T) {
	s := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(widget{ID: "dup"}) })
	tests := []struct {
		name     string
		fn       func(*Tx) error
		sentinel error
		mentions string
	}{
		{"create of a taken id", func(tx *Tx) error { return tx.Create(widget{ID: "dup"}) }, ErrExists, "widget dup"},
		{"get of a missing id", func(tx *Tx) error { _, err := Get[widget](tx, "nope"); return err }, ErrNotFound, "widget nope"},
		{"get raw of a missing id", func(tx *Tx) error { _, err := tx.GetRaw("bridges", "b9"); return err }, ErrNotFound, "bridge b9"},
		{"get of a missing policy", func(tx *Tx) error { var v widget; return tx.Get("policies", "p1", &v) }, ErrNotFound, "policy p1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Update(context.Background(), tc.fn)
			if !errors.Is(err, tc.sentinel) {
				t.Fatalf("err %v, want %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("error %q does not name %q", err, tc.mentions)
			}
		})
	}
}

func TestReadYourWrites(t *testing.T) {
	s := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(widget{ID: "old", N: 1}) })
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.Create(widget{ID: "new", N: 2}); err != nil {
			return err
		}
		if w, err := Get[widget](tx, "new"); err != nil || w.N != 2 {
			return fmt.Errorf("created object reads as %+v, %v", w, err)
		}
		if err := tx.Put(widget{ID: "old", N: 3}); err != nil {
			return err
		}
		if w, err := Get[widget](tx, "old"); err != nil || w.N != 3 {
			return fmt.Errorf("replaced object reads as %+v, %v", w, err)
		}
		if err := tx.Delete("widgets", "old"); err != nil {
			return err
		}
		if _, err := Get[widget](tx, "old"); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("deleted object: err %v, want ErrNotFound", err)
		}
		if ok, err := tx.Exists("widgets", "old"); err != nil || ok {
			return fmt.Errorf("deleted object exists: %v, %v", ok, err)
		}
		return nil
	})
	if _, err := getWidget(t, s, "old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old after commit: %v, want ErrNotFound", err)
	}
	if w, err := getWidget(t, s, "new"); err != nil || w.N != 2 {
		t.Errorf("new after commit: %+v, %v", w, err)
	}
}

func widgetIDs(ws []widget) []string {
	var ids []string
	for _, w := range ws {
		ids = append(ids, w.ID)
	}
	return ids
}

func TestListInCreationOrder(t *testing.T) {
	s := newStore(t)
	// Creation order differs from key order.
	for _, id := range []string{"c", "a", "d", "b"} {
		mustUpdate(t, s, func(tx *Tx) error { return tx.Create(widget{ID: id}) })
	}
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.Create(widget{ID: "e"}); err != nil {
			return err
		}
		if err := tx.Delete("widgets", "a"); err != nil {
			return err
		}
		if err := tx.Put(widget{ID: "d", N: 7}); err != nil {
			return err
		}
		// Deleted and created again: stays in its place, once.
		if err := tx.Delete("widgets", "b"); err != nil {
			return err
		}
		if err := tx.Create(widget{ID: "b", N: 9}); err != nil {
			return err
		}
		ws, err := List[widget](tx)
		if err != nil {
			return err
		}
		if got, want := widgetIDs(ws), []string{"c", "d", "b", "e"}; !slices.Equal(got, want) {
			return fmt.Errorf("list inside tx: %v, want %v", got, want)
		}
		if ws[1].N != 7 || ws[2].N != 9 {
			return fmt.Errorf("list inside tx shows stale values: %+v", ws)
		}
		return nil
	})
	var ws []widget
	err := s.View(context.Background(), func(tx *Tx) error {
		var err error
		ws, err = List[widget](tx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Deleting and creating b again in one tx commits as one put: b
	// keeps its place, as the tx itself saw.
	if got, want := widgetIDs(ws), []string{"c", "d", "b", "e"}; !slices.Equal(got, want) {
		t.Errorf("list after commit: %v, want %v", got, want)
	}
}

func TestListIgnoresOtherKinds(t *testing.T) {
	s := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.Create(widget{ID: "w"}); err != nil {
			return err
		}
		_, err := tx.NextSequence("widgets")
		return err
	})
	// A kind whose name extends another's must not leak into its list.
	if _, err := s.Client().Put(context.Background(), s.TopologyPrefix()+"widgetsx/z", `{"id":"z"}`); err != nil {
		t.Fatal(err)
	}
	err := s.View(context.Background(), func(tx *Tx) error {
		ws, err := List[widget](tx)
		if err == nil && !slices.Equal(widgetIDs(ws), []string{"w"}) {
			err = fmt.Errorf("list: %v, want [w]", widgetIDs(ws))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNextSequence(t *testing.T) {
	s := newStore(t)
	var got []int64
	for range 2 {
		mustUpdate(t, s, func(tx *Tx) error {
			for range 2 {
				n, err := tx.NextSequence("tunnel-keys")
				if err != nil {
					return err
				}
				got = append(got, n)
			}
			return nil
		})
	}
	mustUpdate(t, s, func(tx *Tx) error {
		n, err := tx.NextSequence("other")
		got = append(got, n)
		return err
	})
	if want := []int64{1, 2, 3, 4, 1}; !slices.Equal(got, want) {
		t.Errorf("sequences: %v, want %v", got, want)
	}
}

func TestConcurrentUpdatesLoseNothing(t *testing.T) {
	s := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(widget{ID: "counter"}) })
	const writers, perWriter = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	seqs := make(chan int64, writers*perWriter)
	for range writers {
		wg.Go(func() {
			for range perWriter {
				var seq int64
				err := s.Update(context.Background(), func(tx *Tx) error {
					w, err := Get[widget](tx, "counter")
					if err != nil {
						return err
					}
					w.N++
					if seq, err = tx.NextSequence("ids"); err != nil {
						return err
					}
					return tx.Put(w)
				})
				if err != nil {
					errs <- err
					return
				}
				seqs <- seq
			}
		})
	}
	wg.Wait()
	close(errs)
	close(seqs)
	for err := range errs {
		t.Fatalf("update: %v", err)
	}
	w, err := getWidget(t, s, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if w.N != writers*perWriter {
		t.Errorf("counter = %d, want %d", w.N, writers*perWriter)
	}
	seen := map[int64]bool{}
	for n := range seqs {
		if seen[n] || n < 1 || n > writers*perWriter {
			t.Errorf("sequence value %d repeated or out of range", n)
		}
		seen[n] = true
	}
}

// TestCommitGuards checks which reads make a transaction conflict with a
// concurrent write made between its read and its commit.
func TestCommitGuards(t *testing.T) {
	tests := []struct {
		name string
		// read reads in the tx before the concurrent write of "x".
		read func(*Tx) error
		// write is the tx's own write.
		write        func(*Tx) error
		wantAttempts int
	}{
		{
			name:         "get guards the commit",
			read:         func(tx *Tx) error { _, err := Get[widget](tx, "x"); return err },
			write:        func(tx *Tx) error { return tx.Put(widget{ID: "y", N: 1}) },
			wantAttempts: 2,
		},
		{
			name:         "list alone does not guard",
			read:         func(tx *Tx) error { _, err := List[widget](tx); return err },
			write:        func(tx *Tx) error { return tx.Put(widget{ID: "y", N: 1}) },
			wantAttempts: 1,
		},
		{
			name:         "write of a listed object is guarded by its listed revision",
			read:         func(tx *Tx) error { _, err := List[widget](tx); return err },
			write:        func(tx *Tx) error { return tx.Put(widget{ID: "x", N: 100}) },
			wantAttempts: 2,
		},
		{
			name:         "get of a listed object guards the commit",
			read:         func(tx *Tx) error { _, err := List[widget](tx); return err },
			write:        func(tx *Tx) error { _, err := Get[widget](tx, "x"); return err },
			wantAttempts: 1, // read-only: nothing to commit
		},
		{
			name: "get of a listed object guards a write of another",
			read: func(tx *Tx) error { _, err := List[widget](tx); return err },
			write: func(tx *Tx) error {
				if _, err := Get[widget](tx, "x"); err != nil {
					return err
				}
				return tx.Put(widget{ID: "y", N: 1})
			},
			wantAttempts: 2,
		},
		{
			name:         "delete of a listed object is guarded",
			read:         func(tx *Tx) error { _, err := List[widget](tx); return err },
			write:        func(tx *Tx) error { return tx.Delete("widgets", "x") },
			wantAttempts: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			mustUpdate(t, s, func(tx *Tx) error {
				if err := tx.Create(widget{ID: "x"}); err != nil {
					return err
				}
				return tx.Create(widget{ID: "y"})
			})
			attempts := 0
			mustUpdate(t, s, func(tx *Tx) error {
				attempts++
				if err := tc.read(tx); err != nil {
					return err
				}
				if attempts == 1 {
					// A concurrent writer changes x.
					mustUpdate(t, s, func(tx2 *Tx) error {
						w, err := Get[widget](tx2, "x")
						w.N++
						if err != nil {
							return err
						}
						return tx2.Put(w)
					})
				}
				return tc.write(tx)
			})
			if attempts != tc.wantAttempts {
				t.Errorf("fn ran %d times, want %d", attempts, tc.wantAttempts)
			}
		})
	}
}

func TestFailedFnWritesNothing(t *testing.T) {
	s := newStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(widget{ID: "keep", N: 1}) })
	errBoom := errors.New("boom")
	err := s.Update(context.Background(), func(tx *Tx) error {
		if err := tx.Create(widget{ID: "new"}); err != nil {
			return err
		}
		if err := tx.Put(widget{ID: "keep", N: 2}); err != nil {
			return err
		}
		if _, err := tx.NextSequence("s"); err != nil {
			return err
		}
		return errBoom
	})
	if err != errBoom {
		t.Fatalf("Update returned %v, want the fn's error unchanged", err)
	}
	if _, err := getWidget(t, s, "new"); !errors.Is(err, ErrNotFound) {
		t.Errorf("new: %v, want ErrNotFound", err)
	}
	if w, _ := getWidget(t, s, "keep"); w.N != 1 {
		t.Errorf("keep.N = %d, want 1", w.N)
	}
	resp, err := s.Client().Get(context.Background(), s.Prefix()+"/seq/s")
	if err != nil || len(resp.Kvs) != 0 {
		t.Errorf("sequence written by a failed tx: %v, %v", resp, err)
	}
}

func TestViewRefusesWrites(t *testing.T) {
	s := newStore(t)
	err := s.View(context.Background(), func(tx *Tx) error { return tx.Create(widget{ID: "v"}) })
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("View with a write: %v, want ErrReadOnly", err)
	}
	if _, err := getWidget(t, s, "v"); !errors.Is(err, ErrNotFound) {
		t.Errorf("object written through View: %v", err)
	}
}

func TestParseObjectKey(t *testing.T) {
	s := &Store{prefix: DefaultPrefix}
	tests := []struct {
		key, kind, id string
		ok            bool
	}{
		{DefaultPrefix + "/topology/bridges/b1", "bridges", "b1", true},
		{DefaultPrefix + "/topology/bridges/", "", "", false},
		{DefaultPrefix + "/topology/bridges", "", "", false},
		{DefaultPrefix + "/state/hosts/h1/alive", "", "", false},
		{"/other/topology/bridges/b1", "", "", false},
	}
	for _, tc := range tests {
		kind, id, ok := s.ParseObjectKey(tc.key)
		if ok != tc.ok || (ok && (kind != tc.kind || id != tc.id)) {
			t.Errorf("ParseObjectKey(%q) = %q, %q, %v; want %q, %q, %v", tc.key, kind, id, ok, tc.kind, tc.id, tc.ok)
		}
	}
}

func TestConcurrentCreatesOfOneID(t *testing.T) {
	s := newStore(t)
	const writers = 8
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			errs <- s.Update(context.Background(), func(tx *Tx) error { return tx.Create(widget{ID: "one", N: i}) })
		})
	}
	wg.Wait()
	close(errs)
	created := 0
	for err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, ErrExists):
			t.Errorf("create: %v, want nil or ErrExists", err)
		}
	}
	if created != 1 {
		t.Errorf("%d creates of one id succeeded, want 1", created)
	}
}

func TestReadAtAFutureRevisionFails(t *testing.T) {
	s := newStore(t)
	rev, err := s.Revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tx := s.newTx(context.Background())
	tx.rev = rev + 1000
	if _, err := tx.GetRaw("widgets", "w"); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Errorf("read at a future revision: %v, want ErrFutureRev", err)
	}
}

// TestStatePrefixDeleteCommitsWithTheObjects checks that a transaction
// deletes a device's state keys and its objects in one commit: a failed
// transaction deletes neither, a committed one both, and a View refuses it.
func TestStatePrefixDeleteCommitsWithTheObjects(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	mustUpdate(t, s, func(tx *Tx) error { return tx.Create(widget{ID: "dev"}) })
	mac := [6]byte{2, 0, 0, 0, 0, 1}
	if err := s.SeedMAC(ctx, "dev", 0, mac, "p1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SeedMAC(ctx, "other", 0, mac, "p2"); err != nil {
		t.Fatal(err)
	}
	entries := func(bridge string) int {
		t.Helper()
		l, _, err := s.ListState(ctx, BridgeMACsPrefix(bridge))
		if err != nil {
			t.Fatal(err)
		}
		return len(l)
	}
	errBoom := errors.New("boom")
	err := s.Update(ctx, func(tx *Tx) error {
		if err := tx.Delete("widgets", "dev"); err != nil {
			return err
		}
		if err := tx.DeleteStatePrefix(BridgeMACsPrefix("dev")); err != nil {
			return err
		}
		return errBoom
	})
	if err != errBoom {
		t.Fatalf("Update returned %v, want the fn's error", err)
	}
	if _, err := getWidget(t, s, "dev"); err != nil || entries("dev") != 1 {
		t.Fatalf("a failed transaction deleted something: object %v, %d MAC entries left of 1", err, entries("dev"))
	}
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.Delete("widgets", "dev"); err != nil {
			return err
		}
		return tx.DeleteStatePrefix(BridgeMACsPrefix("dev"))
	})
	if _, err := getWidget(t, s, "dev"); !errors.Is(err, ErrNotFound) || entries("dev") != 0 {
		t.Fatalf("after the commit: object %v (want ErrNotFound), %d MAC entries (want 0)", err, entries("dev"))
	}
	if entries("other") != 1 {
		t.Fatal("another bridge's MAC table was deleted")
	}
	if err := s.View(ctx, func(tx *Tx) error { return tx.DeleteStatePrefix(BridgeMACsPrefix("other")) }); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("View with a state delete: %v, want ErrReadOnly", err)
	}
	for _, p := range []string{"/topology/widgets/", "/state/bridges/x", ""} {
		if err := s.Update(ctx, func(tx *Tx) error { return tx.DeleteStatePrefix(p) }); err == nil {
			t.Errorf("DeleteStatePrefix(%q) accepted", p)
		}
	}
}

// TestStateCallsReportAnUnreachableStore checks that state reads and
// writes against a dead store fail with ErrUnavailable, the error the API
// answers 503 for.
func TestStateCallsReportAnUnreachableStore(t *testing.T) {
	member, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:0", Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), Config{Endpoints: []string{member.ClientURL}, RequestTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	member.Kill()
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	key := BridgeMACKey("b", 0, [6]byte{2, 0, 0, 0, 0, 1})
	calls := map[string]error{
		"PutState":          s.PutState(ctx, key, []byte("p")),
		"DeleteState":       s.DeleteState(ctx, key),
		"DeleteStatePrefix": s.DeleteStatePrefix(ctx, BridgeMACsPrefix("b")),
	}
	_, calls["GetState"] = s.GetState(ctx, key)
	_, _, calls["ListState"] = s.ListState(ctx, BridgeMACsPrefix("b"))
	_, calls["DeleteStateIf"] = s.DeleteStateIf(ctx, key, []byte("p"))
	for name, err := range calls {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s on a dead store: %v, want ErrUnavailable", name, err)
		}
	}
}
