package agent

import (
	"testing"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/mem"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
)

// A flow whose simulation overlapped the invalidation of one of its tags
// is not installed: it was computed from what the invalidation replaced,
// and nothing would remove it later.
func TestFlowSimulatedAcrossAnInvalidationIsNotInstalled(t *testing.T) {
	tagA, tagB := sim.Tag(1), sim.Tag(2)
	for _, tc := range []struct {
		name        string
		invalidated [][]sim.Tag // invalidate calls between since and add
		tags        []sim.Tag   // the flow's
		installed   bool
	}{
		{"nothing invalidated", nil, []sim.Tag{tagA}, true},
		{"its tag invalidated", [][]sim.Tag{{tagA}}, []sim.Tag{tagA, tagB}, false},
		{"another tag invalidated", [][]sim.Tag{{tagB}}, []sim.Tag{tagA}, true},
		{"its tag among many", [][]sim.Tag{{3, 4}, {5, tagB, 6}}, []sim.Tag{tagB}, false},
		{"history overrun", [][]sim.Tag{make([]sim.Tag, invalidationHistory+1)}, []sim.Tag{tagA}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dp := mem.New(mem.Config{})
			defer dp.Close()
			ft := newFlowTable(dp, 100, newMetrics())
			ft.invalidate([]sim.Tag{99}) // some history before
			since := ft.generation()
			for _, tags := range tc.invalidated {
				for i := range tags {
					if tags[i] == 0 {
						tags[i] = sim.Tag(1000 + i) // filler, none of the flow's
					}
				}
				ft.invalidate(tags)
			}
			var key, mask packet.FlowKey
			key.InPort, mask.InPort = 1, ^uint32(0)
			ft.add(&flowEntry{key: key, mask: mask, actions: []datapath.Action{datapath.Output(2)}, tags: tc.tags, since: since})
			if got := ft.len() == 1; got != tc.installed {
				t.Errorf("installed %v, want %v", got, tc.installed)
			}
			n := 0
			dp.DumpFlows(func(*datapath.Flow) bool { n++; return true })
			if (n == 1) != tc.installed {
				t.Errorf("%d flows in the datapath, want installed=%v", n, tc.installed)
			}
		})
	}
}
