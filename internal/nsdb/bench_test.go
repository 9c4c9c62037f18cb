package nsdb

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
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
	setups := []struct {
		name string
		// stores returns the writer's and the watcher's endpoints.
		stores func(b *testing.B) (writer, watcher []string)
	}{
		{"members=1/fsync=false", func(b *testing.B) ([]string, []string) {
			ep := []string{benchMember(b, false).ClientURL}
			return ep, ep
		}},
		{"members=1/fsync=true", func(b *testing.B) ([]string, []string) {
			ep := []string{benchMember(b, true).ClientURL}
			return ep, ep
		}},
		{"members=3/fsync=false", func(b *testing.B) ([]string, []string) {
			// Writer and watcher on different members.
			eps := startCluster(b).endpoints()
			return eps[:1], eps[1:2]
		}},
	}
	for _, setup := range setups {
		b.Run(setup.name, func(b *testing.B) {
			weps, reps := setup.stores(b)
			writer := openStore(b, weps...)
			watcher := openStore(b, reps...)
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

// BenchmarkWatchFanout measures the store's fan-out of one write to many
// watchers of the topology, as a cloud's agents each follow it: the time
// from the start of the transaction to the last watcher's having the event
// (p50 and p99 over the writes), and the CPU the store and the clients
// spend per watcher and event. Watchers share the clients of a process, a
// hundred to a connection, as agents in one test process do.
func BenchmarkWatchFanout(b *testing.B) {
	for _, watchers := range []int{100, 1000} {
		for _, members := range []int{1, 3} {
			b.Run(fmt.Sprintf("watchers=%d/members=%d", watchers, members), func(b *testing.B) {
				var eps []string
				if members == 1 {
					eps = []string{benchMember(b, false).ClientURL}
				} else {
					eps = startCluster(b).endpoints()
				}
				writer := openStore(b, eps[0])
				ctx := b.Context()
				rev, err := writer.Revision(ctx)
				if err != nil {
					b.Fatal(err)
				}
				var clients []*Store
				chans := make([]<-chan Event, watchers)
				for i := range chans {
					if i%100 == 0 {
						clients = append(clients, openStore(b, eps[(i/100)%len(eps)]))
					}
					chans[i] = clients[len(clients)-1].Watch(ctx, TopologyWatchPrefix, rev)
				}
				var lat []time.Duration
				var cpu time.Duration
				i := 0
				for b.Loop() {
					i++
					c0 := processCPU()
					start := time.Now()
					if err := writer.Update(ctx, func(tx *Tx) error { return tx.Put(widget{ID: "w", N: i}) }); err != nil {
						b.Fatal(err)
					}
					for _, ch := range chans {
						if ev := <-ch; ev.ID != "w" {
							b.Fatalf("event %+v", ev)
						}
					}
					lat = append(lat, time.Since(start))
					cpu += processCPU() - c0
				}
				slices.Sort(lat)
				ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
				b.ReportMetric(ms(lat[len(lat)/2]), "last-watcher-p50-ms")
				b.ReportMetric(ms(lat[len(lat)*99/100]), "last-watcher-p99-ms")
				b.ReportMetric(float64(cpu.Microseconds())/float64(len(lat)*watchers), "cpu-µs/delivery")
			})
		}
	}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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

// BenchmarkUpdateReadMostly runs transactions shaped like an API update:
// four reads of referenced objects, one list, one write.
func BenchmarkUpdateReadMostly(b *testing.B) {
	s := openStore(b, benchMember(b, false).ClientURL)
	ctx := context.Background()
	for i := range 4 {
		mustUpdate(b, s, func(tx *Tx) error { return tx.Create(widget{ID: strconv.Itoa(i)}) })
	}
	var next atomic.Int64
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			err := s.Update(ctx, func(tx *Tx) error {
				for i := range 4 {
					if _, err := Get[widget](tx, strconv.Itoa(i)); err != nil {
						return err
					}
				}
				if _, err := tx.ListRaw("others"); err != nil {
					return err
				}
				return tx.Put(widget{ID: "x" + strconv.FormatInt(n, 10)})
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txns/s")
}
