package api_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
)

// TestAPISurvivesStoreMemberDeath runs the API on a three-member etcd
// cluster, kills one member while clients create bridges, and checks that
// the API keeps answering and that every acknowledged create is there.
func TestAPISurvivesStoreMemberDeath(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-member etcd cluster")
	}
	members, err := embedded.StartLocalCluster([]string{t.TempDir(), t.TempDir(), t.TempDir()}, true)
	if err != nil {
		t.Fatal(err)
	}
	// The test kills the first member itself; the cleanup kills it too
	// when the test stops before that.
	killFirst := sync.OnceFunc(members[0].Kill)
	t.Cleanup(func() {
		killFirst()
		for _, m := range members[1:] {
			m.Kill()
		}
	})
	var urls []string
	for _, m := range members {
		urls = append(urls, m.ClientURL)
	}
	store, err := nsdb.Open(context.Background(), nsdb.Config{Endpoints: urls, Prefix: "/api-cluster-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s := httptest.NewServer(api.New(api.Config{Store: store}))
	t.Cleanup(s.Close)
	var acked []string
	create := func(i int) {
		r := do(t, "POST", s.URL+"/midonet-api/bridges", map[string]any{"name": fmt.Sprintf("b%d", i)})
		switch r.status {
		case 201:
			acked = append(acked, r.header.Get("Location"))
		case 503:
			// The store is electing a leader: the client may retry.
		default:
			t.Errorf("create during a member's death: %d %s", r.status, r.body)
		}
	}
	for i := range 20 {
		create(i)
	}
	killFirst()
	failures := 0
	for i := 20; i < 80; i++ {
		n := len(acked)
		create(i)
		if len(acked) == n {
			failures++
		}
	}
	// A request may fail while a new leader is elected; then the API works.
	if failures > 10 {
		t.Fatalf("%d of 60 creates failed after a member died", failures)
	}
	for _, loc := range acked {
		expect(t, do(t, "GET", loc, nil), 200)
	}
	// A create that failed with an unknown outcome may have been stored;
	// an acknowledged one must be.
	if n := len(expect(t, do(t, "GET", s.URL+"/midonet-api/bridges", nil), 200).list(t)); n < len(acked) {
		t.Fatalf("%d bridges listed, %d creates acknowledged", n, len(acked))
	}
	t.Logf("%d creates acknowledged, %d failed during the election, none lost", len(acked), failures)
}
