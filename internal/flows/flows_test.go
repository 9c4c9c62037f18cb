package flows

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

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
			ft := New(dp, 100)
			ft.Invalidate([]sim.Tag{99}) // some history before
			since := ft.Generation()
			for _, tags := range tc.invalidated {
				for i := range tags {
					if tags[i] == 0 {
						tags[i] = sim.Tag(1000 + i) // filler, none of the flow's
					}
				}
				ft.Invalidate(tags)
			}
			var key, mask packet.FlowKey
			key.InPort, mask.InPort = 1, ^uint32(0)
			ft.Add(&Entry{Key: key, Mask: mask, Actions: []datapath.Action{datapath.Output(2)}, Tags: tc.tags, Since: since})
			if got := ft.Len() == 1; got != tc.installed {
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

// Hard timeouts remove exactly the flows whose time passed, whatever the
// order they were installed, replaced, invalidated or evicted in: checked
// against a plain map of what should be left, and against the datapath.
func TestFlowsExpireByHardTimeout(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		dp := mem.New(mem.Config{})
		ft := New(dp, 48)
		now := time.Unix(1_800_000_000, 0)
		want := map[uint32]time.Time{} // in_port -> expiry of the live flow
		var order []uint32             // installs, oldest first, for eviction
		for step := range 400 {
			port := uint32(rng.IntN(64)) + 1
			switch rng.IntN(10) {
			case 0, 1: // time passes and flows expire
				now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
				ft.Expire(now)
				for p, exp := range want {
					if now.After(exp) {
						delete(want, p)
					}
				}
			case 2: // a tag invalidation removes the port's flow
				ft.Invalidate([]sim.Tag{sim.Tag(port)})
				delete(want, port)
			default: // install, replacing the port's flow if it has one
				exp := now.Add(time.Duration(rng.IntN(5000)) * time.Millisecond)
				var key, mask packet.FlowKey
				key.InPort, mask.InPort = port, ^uint32(0)
				ft.Add(&Entry{Key: key, Mask: mask, Actions: []datapath.Action{datapath.Output(2)},
					Tags: []sim.Tag{sim.Tag(port)}, Expires: exp, Since: ft.Generation()})
				if _, ok := want[port]; !ok && len(want) >= 48 {
					// At the limit the oldest live install is evicted.
					for i, p := range order {
						if _, live := want[p]; live {
							delete(want, p)
							order = order[i+1:]
							break
						}
					}
				}
				order = slices.DeleteFunc(order, func(p uint32) bool { return p == port })
				order = append(order, port)
				want[port] = exp
			}
			if got := ft.Len(); got != len(want) {
				t.Fatalf("seed %d step %d: %d flows, want %d", seed, step, got, len(want))
			}
			if len(ft.expiry) != len(want) {
				t.Fatalf("seed %d step %d: %d flows by expiry, want %d", seed, step, len(ft.expiry), len(want))
			}
		}
		live := map[uint32]bool{}
		dp.DumpFlows(func(f *datapath.Flow) bool { live[f.Key.InPort] = true; return true })
		for p := range want {
			if !live[p] {
				t.Errorf("seed %d: port %d's flow missing from the datapath", seed, p)
			}
		}
		if len(live) != len(want) {
			t.Errorf("seed %d: %d flows in the datapath, want %d", seed, len(live), len(want))
		}
		dp.Close()
	}
}

// counted is a Holder that counts its releases.
type counted struct{ n *int }

func (c counted) Release() { *c.n++ }

// What a flow holds is released exactly once, whichever way it leaves:
// refused, replaced, invalidated, expired or evicted.
func TestHeldIsReleasedOnce(t *testing.T) {
	dp := mem.New(mem.Config{})
	defer dp.Close()
	ft := New(dp, 2)
	now := time.Unix(1_800_000_000, 0)
	add := func(port uint32, tag sim.Tag, expires time.Time, since uint64) *int {
		n := new(int)
		var key, mask packet.FlowKey
		key.InPort, mask.InPort = port, ^uint32(0)
		ft.Add(&Entry{Key: key, Mask: mask, Tags: []sim.Tag{tag}, Expires: expires, Since: since, Held: counted{n}})
		return n
	}
	since := ft.Generation()
	ft.Invalidate([]sim.Tag{1})
	refused := add(1, 1, now.Add(time.Hour), since)
	replaced := add(2, 2, now.Add(time.Hour), ft.Generation())
	replacing := add(2, 2, now.Add(time.Hour), ft.Generation())
	invalidated := add(3, 3, now.Add(time.Hour), ft.Generation()) // evicts nothing: port 2's flow is one
	ft.Invalidate([]sim.Tag{3})
	expired := add(4, 4, now.Add(time.Second), ft.Generation())
	ft.Expire(now.Add(2 * time.Second))
	evicted := add(5, 5, now.Add(time.Hour), ft.Generation()) // with port 2's: the limit
	kept := add(6, 6, now.Add(time.Hour), ft.Generation())    // evicts the oldest: port 2's
	for name, c := range map[string]struct {
		n    *int
		want int
	}{"refused": {refused, 1}, "replaced": {replaced, 1}, "replacing, then evicted": {replacing, 1},
		"invalidated": {invalidated, 1}, "expired": {expired, 1}, "installed": {evicted, 0}, "kept": {kept, 0}} {
		if *c.n != c.want {
			t.Errorf("%s flow: released %d times, want %d", name, *c.n, c.want)
		}
	}
	if s := ft.Stats(); s.Current != 2 || s.Evicted != 1 || s.Invalidated != 2 {
		t.Errorf("stats %+v: want 2 flows, 1 eviction, 2 invalidations (one refused)", s)
	}
}

// Workers add, invalidate and expire flows at once: when they are done,
// the datapath holds exactly the flows of the index, though the datapath
// calls were made outside the table's lock by whichever worker got there.
func TestConcurrentChangesKeepTheDatapathInStep(t *testing.T) {
	dp := mem.New(mem.Config{})
	defer dp.Close()
	ft := New(dp, 300)
	now := time.Unix(1_800_000_000, 0)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 3000 {
				port := uint32(rng.IntN(400)) + 1
				switch rng.IntN(20) {
				case 0:
					ft.Invalidate([]sim.Tag{sim.Tag(rng.IntN(8))})
				case 1:
					ft.Expire(now.Add(time.Duration(rng.IntN(1000)) * time.Millisecond))
				default:
					var key, mask packet.FlowKey
					key.InPort, mask.InPort = port, ^uint32(0)
					ft.Add(&Entry{Key: key, Mask: mask, Actions: []datapath.Action{datapath.Output(datapath.PortNo(g + 1))},
						Tags: []sim.Tag{sim.Tag(port % 8)}, Expires: now.Add(time.Duration(rng.IntN(2000)) * time.Millisecond),
						Since: ft.Generation()})
				}
			}
		}()
	}
	wg.Wait()
	indexed := map[uint32]datapath.PortNo{}
	ft.mu.Lock()
	for id, e := range ft.flows {
		indexed[id.key.InPort] = e.Actions[0].Port
	}
	pending := len(ft.ops)
	ft.mu.Unlock()
	if pending != 0 {
		t.Fatalf("%d datapath operations left queued", pending)
	}
	inDP := map[uint32]datapath.PortNo{}
	dp.DumpFlows(func(f *datapath.Flow) bool { inDP[f.Key.InPort] = f.Actions[0].Port; return true })
	if !maps.Equal(indexed, inDP) {
		t.Fatalf("%d flows indexed, %d in the datapath; they differ", len(indexed), len(inDP))
	}
	if s := ft.Stats(); s.Errors != 0 || s.Current != len(indexed) {
		t.Errorf("stats %+v", s)
	}
}

// batchingDP records what a batching backend is asked to do.
type batchingDP struct {
	datapath.FlowTable
	calls  []string
	refuse uint32 // in-port whose flow is refused
}

func (d *batchingDP) PutFlows(puts []datapath.FlowPut, errs []error) int {
	d.calls = append(d.calls, "batch "+strconv.Itoa(len(puts)))
	failed := 0
	for i, p := range puts {
		errs[i] = nil
		if p.Key.InPort == d.refuse {
			errs[i], failed = datapath.ErrBadAction, failed+1
		}
	}
	return failed
}

func (d *batchingDP) PutFlow(key, mask *packet.FlowKey, actions []datapath.Action, flags datapath.FlowFlags) error {
	d.calls = append(d.calls, "put")
	return nil
}

func (d *batchingDP) DeleteFlow(key, mask *packet.FlowKey) (datapath.FlowStats, error) {
	d.calls = append(d.calls, "delete "+strconv.Itoa(int(key.InPort)))
	return datapath.FlowStats{}, nil
}

// Installs queued while another goroutine makes the datapath's changes go
// in one batch, in order with the deletes between them; a flow the backend
// refuses leaves the table.
func TestQueuedInstallsGoInBatches(t *testing.T) {
	dp := &batchingDP{refuse: 3}
	ft := New(dp, 100)
	add := func(port uint32) {
		var key, mask packet.FlowKey
		key.InPort, mask.InPort = port, ^uint32(0)
		ft.add(&Entry{Key: key, Mask: mask, Tags: []sim.Tag{sim.Tag(port)}, Since: ft.Generation()})
	}
	ft.dpMu.Lock() // another goroutine is making the datapath's changes
	add(1)
	add(2)
	ft.Invalidate([]sim.Tag{1}) // its flush finds the datapath busy
	add(3)
	add(4)
	ft.dpMu.Unlock()
	ft.flush()
	if want := []string{"batch 2", "delete 1", "batch 2"}; !slices.Equal(dp.calls, want) {
		t.Errorf("datapath calls %v, want %v", dp.calls, want)
	}
	if s := ft.Stats(); s.Current != 2 || s.Installed != 3 || s.Errors != 1 {
		t.Errorf("stats %+v: want flows 2 and 4 (3 was refused)", s)
	}
}
