package nsdb

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// leaderIndex returns the index of the cluster's leader.
func leaderIndex(t *testing.T, s *Store, endpoints []string) int {
	t.Helper()
	for i, ep := range endpoints {
		st, err := s.Client().Status(context.Background(), ep)
		if err == nil && st.Header.MemberId == st.Leader {
			return i
		}
	}
	t.Fatal("no member says it leads")
	return -1
}

// TestClusterWritesSurviveLeaderKill writes through a store connected to
// three members while the leader is killed: writes go on, and every
// acknowledged one can be read back.
func TestClusterWritesSurviveLeaderKill(t *testing.T) {
	c := startCluster(t)
	eps := c.endpoints()
	s := openStore(t, eps...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const writers = 4
	var (
		mu     sync.Mutex
		acked  []string
		failed int
	)
	var nacked atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("w%d-%05d", w, i)
				wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
				err := s.Update(wctx, func(tx *Tx) error { return tx.Create(widget{ID: id, N: i}) })
				wcancel()
				mu.Lock()
				if err == nil {
					acked = append(acked, id)
					nacked.Add(1)
				} else if ctx.Err() == nil {
					failed++
				}
				mu.Unlock()
			}
		})
	}
	waitFor(t, "writes before the kill", 10*time.Second, func() bool { return nacked.Load() >= 50 })
	leader := leaderIndex(t, s, eps)
	killed := time.Now()
	c.kill(leader)
	before := nacked.Load()
	waitFor(t, "writes after the leader was killed", 10*time.Second, func() bool { return nacked.Load() >= before+100 })
	t.Logf("100 writes acknowledged %v after member %d (the leader) was killed", time.Since(killed).Round(time.Millisecond), leader)
	cancel()
	wg.Wait()

	present := map[string]bool{}
	err := s.View(context.Background(), func(tx *Tx) error {
		ws, err := List[widget](tx)
		for _, w := range ws {
			present[w.ID] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range acked {
		if !present[id] {
			t.Errorf("acknowledged write %s lost", id)
		}
	}
	t.Logf("%d writes acknowledged, %d failed (during the election), %d objects stored", len(acked), failed, len(present))
}
