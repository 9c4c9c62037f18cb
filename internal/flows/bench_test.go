package flows

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
)

// nopDP is a datapath whose flow calls cost nothing, so that a benchmark
// of the table measures the table.
type nopDP struct{}

func (nopDP) PutFlow(key, mask *packet.FlowKey, actions []datapath.Action, flags datapath.FlowFlags) error {
	return nil
}

func (nopDP) DeleteFlow(key, mask *packet.FlowKey) (datapath.FlowStats, error) {
	return datapath.FlowStats{}, nil
}

func (nopDP) DumpFlows(fn func(f *datapath.Flow) bool) error { return nil }

// BenchmarkAdd measures adding a flow to a full table (each add evicts the
// oldest flow), from 1 goroutine and from every core at once: the table's
// lock is what the parallel figure shares, and so what bounds flow setups
// on a host with many cores.
func BenchmarkAdd(b *testing.B) {
	const limit = 1 << 16
	for _, parallel := range []bool{false, true} {
		b.Run(fmt.Sprintf("parallel=%v", parallel), func(b *testing.B) {
			ft := New(nopDP{}, limit)
			var next atomic.Uint64
			add := func(n uint64) {
				var key, mask packet.FlowKey
				key.TpSrc, key.TpDst = uint16(n), uint16(n>>16)
				key.InPort = uint32(n >> 32)
				mask.TpSrc, mask.TpDst, mask.InPort = ^uint16(0), ^uint16(0), ^uint32(0)
				ft.Add(&Entry{Key: key, Mask: mask, Actions: []datapath.Action{datapath.Output(2)},
					Tags: []sim.Tag{sim.Tag(n % 64), sim.Tag(1000 + n%7)}, Expires: time.Unix(1_800_000_000+int64(n), 0),
					Since: ft.Generation()})
			}
			for range limit {
				add(next.Add(1))
			}
			b.ReportAllocs()
			b.ResetTimer()
			if !parallel {
				for range b.N {
					add(next.Add(1))
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					add(next.Add(1))
				}
			})
		})
	}
}
