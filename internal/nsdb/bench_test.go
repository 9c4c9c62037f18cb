package nsdb

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/nsdb/embedded"
)

// benchMember starts a member; fsync selects a durable one (real disk
// syncs, production heartbeats) rather than the test one.
func benchMember(b *testing.B, fsync bool) *embedded.Server {
	b.Helper()
	srv, err := embedded.Start(embedded.Config{
		DataDir:   b.TempDir(),
		ClientURL: "http://127.0.0.1:0",
		Fast:      !fsync,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkWatchLatency measures the time from the start of a one-object
// transaction to its event reaching a watcher on another connection, as an
// agent would follow the API's writes.
func BenchmarkWatchLatency(b *testing.B) {
	for _, fsync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			srv := benchMember(b, fsync)
			writer := openStore(b, srv.ClientURL)
			watcher := openStore(b, srv.ClientURL)
			ctx := b.Context()
			rev, err := watcher.Revision(ctx)
			if err != nil {
				b.Fatal(err)
			}
			ch := watcher.Watch(ctx, TopologyWatchPrefix, rev)
			var lat, commit []time.Duration
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				start := time.Now()
				err := writer.Update(ctx, func(tx *Tx) error { return tx.Put(widget{ID: "w", N: i}) })
				if err != nil {
					b.Fatal(err)
				}
				acked := time.Now()
				ev := <-ch
				seen := time.Now()
				if ev.ID != "w" {
					b.Fatalf("event %+v", ev)
				}
				commit = append(commit, acked.Sub(start))
				lat = append(lat, seen.Sub(start))
			}
			slices.Sort(lat)
			slices.Sort(commit)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(lat[len(lat)/2]), "watch-p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "watch-p99-ms")
			b.ReportMetric(ms(commit[len(commit)/2]), "commit-p50-ms")
		})
	}
}

// BenchmarkCreateParallel creates objects through Update from parallel
// writers, each object in its own transaction.
func BenchmarkCreateParallel(b *testing.B) {
	for _, fsync := range []bool{false, true} {
		b.Run(fmt.Sprintf("fsync=%v", fsync), func(b *testing.B) {
			s := openStore(b, benchMember(b, fsync).ClientURL)
			var next atomic.Int64
			b.SetParallelism(8) // writers per CPU: they mostly wait on the store
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := strconv.FormatInt(next.Add(1), 10)
					err := s.Update(context.Background(), func(tx *Tx) error { return tx.Create(widget{ID: id}) })
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}
