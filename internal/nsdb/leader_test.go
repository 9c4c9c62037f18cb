package nsdb

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCampaignOneLeaderAndHandOverOnResign(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	key := LeaderKey("test-resign")
	a, err := s.Campaign(ctx, key, []byte("a"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Leadership, 1)
	go func() {
		b, err := s.Campaign(ctx, key, []byte("b"), 2*time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- b
	}()
	select {
	case <-got:
		t.Fatal("a second process took the lead while the first held it")
	case <-time.After(500 * time.Millisecond):
	}
	if !a.Held() {
		t.Fatal("the leader lost its lead while renewing")
	}
	start := time.Now()
	if err := a.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	var b *Leadership
	select {
	case b = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no takeover after the leader resigned")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("takeover after a resignation took %s; want it at once", d)
	}
	if a.Held() || !b.Held() {
		t.Errorf("after the handover: a held %v, b held %v", a.Held(), b.Held())
	}
	select {
	case <-a.Lost():
	default:
		t.Error("a's Lost is not closed after Resign")
	}
	e, err := s.GetState(ctx, key)
	if err != nil || string(e.Value) != "b" {
		t.Errorf("leader key %q, %v; want b", e.Value, err)
	}
	b.Resign(ctx)
	a.Resign(ctx) // twice is harmless
}

// A leader cut off from the store knows it lost the lead before another
// process can take it: never two leaders at once.
func TestCampaignLeaderCutOffLosesBeforeTakeover(t *testing.T) {
	srv := startMember(t)
	proxy := newTCPProxy(t)
	proxy.setTarget(strings.TrimPrefix(srv.ClientURL, "http://"))
	cut, err := Open(context.Background(), Config{Endpoints: []string{"http://" + proxy.l.Addr().String()},
		DialTimeout: 2 * time.Second, RequestTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cut.Close() })
	other := openStore(t, srv.ClientURL)
	ctx := t.Context()
	key := LeaderKey("test-cut")
	a, err := cut.Campaign(ctx, key, []byte("a"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Resign(context.Background())
	took := make(chan time.Time, 1)
	var b *Leadership
	go func() {
		var err error
		b, err = other.Campaign(ctx, key, []byte("b"), 2*time.Second)
		if err != nil {
			t.Error(err)
		}
		took <- time.Now()
	}()
	time.Sleep(100 * time.Millisecond) // b is waiting
	cutAt := time.Now()
	proxy.cut()
	var lostAt time.Time
	select {
	case <-a.Lost():
		lostAt = time.Now()
	case <-time.After(5 * time.Second):
		t.Fatal("the cut-off leader never noticed it lost the lead")
	}
	var tookAt time.Time
	select {
	case tookAt = <-took:
	case <-time.After(10 * time.Second):
		t.Fatal("no takeover after the leader was cut off")
	}
	defer b.Resign(context.Background())
	if !lostAt.Before(tookAt) {
		t.Errorf("two leaders at once: the old one lost its lead %s after the new one took it", lostAt.Sub(tookAt))
	}
	if d := tookAt.Sub(cutAt); d > 4*time.Second {
		t.Errorf("takeover %s after the leader was cut off; want within the TTL and a little", d)
	}
	t.Logf("cut at 0, old leader stood down at %s, new leader at %s", lostAt.Sub(cutAt), tookAt.Sub(cutAt))

	// A write guarded by the lost lead is refused; by the new one it lands.
	err = other.Update(ctx, func(tx *Tx) error {
		if err := tx.RequireLeader(a); err != nil {
			return err
		}
		return tx.Put(widget{ID: "w1"})
	})
	if !errors.Is(err, ErrNotLeader) {
		t.Errorf("write guarded by a lost lead: %v; want ErrNotLeader", err)
	}
	mustUpdate(t, other, func(tx *Tx) error {
		if err := tx.RequireLeader(b); err != nil {
			return err
		}
		return tx.Put(widget{ID: "w1"})
	})
}

func TestCampaignEndsWithItsContext(t *testing.T) {
	s := newStore(t)
	key := LeaderKey("test-ctx")
	a, err := s.Campaign(t.Context(), key, []byte("a"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Resign(context.Background())
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := s.Campaign(ctx, key, []byte("b"), 2*time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("campaign while held, until its context ends: %v", err)
	}
}
