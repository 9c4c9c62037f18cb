package agent

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/mem"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/topology"
)

// statefulBridge creates a bridge whose inbound chain tracks connections,
// so that every new 5-tuple is a miss (the megaflow covers the L4 ports),
// as in MidoNet's flow-setup harness.
func statefulBridge(c *cloud) topology.ID {
	bridge, chain := topology.NewID(), topology.NewID()
	rules := []topology.Rule{
		{ID: topology.NewID(), Type: topology.RuleAccept, ChainID: chain},
		{ID: topology.NewID(), Type: topology.RuleAccept, ChainID: chain},
	}
	rules[0].MatchReturnFlow = true
	rules[1].MatchForwardFlow = true
	c.update(func(tx topology.Store) error {
		ch := topology.Chain{ID: chain, RuleIDs: []topology.ID{rules[0].ID, rules[1].ID}}
		if err := tx.Create(&ch); err != nil {
			return err
		}
		for i := range rules {
			rules[i].Validate()
			if err := tx.Create(&rules[i]); err != nil {
				return err
			}
		}
		return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true, InboundFilterID: topology.IDPtr(chain)})
	})
	return bridge
}

// BenchmarkNewFlows measures flow setups per second through one agent on
// the mem datapath, with 1 and 2 simulation workers: UDP packets to random
// destination ports, every one a miss that is simulated (bridge with
// conntrack), installed and executed. One injector goroutine plays the
// datapath's receiver: it injects (and so runs the upcall delivery and
// the agent's dispatch); a semaphore keeps fewer misses in flight than the
// queues hold, so none is lost (MidoNet's harness measures the rate with
// zero loss). Besides flows/s it reports the cores the injector used
// (inj-cores: its CPU time over wall time) and the cores the rest of the
// process used (agent-cores: the workers, the flow table, the harness's
// reader of vm2's output).
func BenchmarkNewFlows(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) { benchNewFlows(b, workers) })
	}
}

func benchNewFlows(b *testing.B, workers int) {
	h1, dp1, out, frames := newFlowsRig(b, workers)
	// The injector keeps at most inFlight misses outstanding and injects
	// in bursts of injectBurst once that many have left, reading its
	// thread's CPU clock around each burst. A burst that ends on another
	// thread than it began on (the goroutine blocked and moved) is not
	// measured; the injector's CPU time is extrapolated from the others.
	// (Locking the injector to its thread instead made each of its waits
	// a thread hand-off, and halved the rate it measured.)
	const injectBurst = 32
	var outstanding atomic.Int64
	room := make(chan struct{}, 1)
	var received atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		// One timer for the stall, armed only when no frame is waiting:
		// a timer per frame was three of the allocations per flow
		// the benchmark reports.
		stall := time.NewTimer(time.Hour)
		defer stall.Stop()
		for range b.N {
			select {
			case <-out:
			default:
				stall.Reset(5 * time.Second)
				select {
				case <-out:
				case <-stall.C:
					return
				}
			}
			received.Add(1)
			if outstanding.Add(-1) <= inFlight-injectBurst {
				select {
				case room <- struct{}{}:
				default:
				}
			}
		}
	}()
	injected := make(chan time.Duration, 1)
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	go func() {
		var cpu time.Duration
		measured := 0
		defer func() { injected <- time.Duration(float64(cpu) * float64(len(frames)) / float64(max(measured, 1))) }()
		for i := 0; i < len(frames); {
			for outstanding.Load() > inFlight-injectBurst {
				select {
				case <-room:
				case <-done:
					return
				}
			}
			tid, t0, first := unix.Gettid(), threadCPU(), i
			for end := min(i+injectBurst, len(frames)); i < end; i++ {
				outstanding.Add(1)
				h1.dp.Inject(dp1, frames[i])
			}
			if t1 := threadCPU(); unix.Gettid() == tid {
				cpu += t1 - t0
				measured += i - first
			}
		}
	}()
	injCPU := <-injected
	<-done
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	b.StopTimer()
	n := received.Load()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "flows/s")
	b.ReportMetric(injCPU.Seconds()/elapsed.Seconds(), "inj-cores")
	b.ReportMetric((cpu-injCPU).Seconds()/elapsed.Seconds(), "agent-cores")
	st := h1.dp.Stats()
	if n < int64(b.N) {
		b.Errorf("lost %d of %d packets (datapath upcall drops %d, agent queue drops %v)", int64(b.N)-n, b.N,
			st.UpcallDropped, counterValue(h1.metrics.upcallQueueDrops))
	}
}

// threadCPU returns the CPU time the calling thread has used.
func threadCPU() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// processCPU returns the CPU time the process has used.
func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkFirstPacketLatency measures, one miss at a time, the time from a
// new connection's first packet entering the datapath to its leaving the
// egress port: upcall, simulation through a conntrack'd bridge, flow
// install and execution. It reports the median and 99th percentile.
func BenchmarkFirstPacketLatency(b *testing.B) {
	h1, dp1, out, frames := newFlowsRig(b, 2)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		h1.dp.Inject(dp1, frames[i])
		select {
		case <-out:
			lat = append(lat, time.Since(start))
		case <-time.After(5 * time.Second):
			b.Fatalf("packet %d of a new connection was not forwarded", i)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// newFlowsRig is one agent with the given number of workers on the mem
// datapath with two VMs on a bridge with conntrack, vm2's MAC known, and a
// packet already through: it returns the agent, vm1's datapath port, vm2's
// output and b.N frames from vm1 to vm2, each of a new connection (distinct
// UDP ports).
func newFlowsRig(b *testing.B, workers int) (*testAgent, datapath.PortNo, <-chan mem.Frame, [][]byte) {
	c := newCloud(b)
	h1 := c.addAgentWith("h1", "10.9.0.1", func(cfg *Config) { cfg.Workers = workers })
	bridge := statefulBridge(c)
	p1, p2 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h1, "vm2")
	dp1, dp2 := h1.dpPort(b, "vm1", p1), h1.dpPort(b, "vm2", p2)
	// Seed vm2's MAC so frames are unicast, not flooded.
	c.seedMAC(context.Background(), bridge.String(), 0, mac(2), p2.String())
	out, _ := h1.dp.Output(dp2)
	// Warm up: one packet through proves the pipeline is ready.
	h1.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 1))
	select {
	case <-out:
	case <-time.After(5 * time.Second):
		b.Fatal("warm-up packet not forwarded")
	}
	frames := make([][]byte, b.N)
	for i := range frames {
		frames[i] = udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", uint16(1024+i/60000), uint16(1+i%60000))
	}
	return h1, dp1, out, frames
}

// hasFlowFrom reports whether the agent's datapath has a flow for packets
// from port in (overlay delivery flows to other ports do not count).
func hasFlowFrom(a *testAgent, in datapath.PortNo) bool {
	found := false
	a.dp.DumpFlows(func(f *datapath.Flow) bool {
		found = f.Key.InPort == uint32(in)
		return !found
	})
	return found
}

// inFlight bounds the misses a flow-setup benchmark keeps outstanding.
const inFlight = 128

// TestMemoryAt100kFlows installs 100,000 flows through one agent on the mem
// datapath and reports the memory they take (heap growth, since the test
// process also runs the store). Set MIDONET_MEMORY=1 to run it.
func TestMemoryAt100kFlows(t *testing.T) {
	if os.Getenv("MIDONET_MEMORY") == "" {
		t.Skip("set MIDONET_MEMORY=1 to measure the agent's memory at 100k flows")
	}
	const flows = 100_000
	c := newCloud(t)
	h1 := c.addAgent("h1", "10.9.0.1")
	bridge := statefulBridge(c)
	p1, p2 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h1, "vm2")
	dp1, dp2 := h1.dpPort(t, "vm1", p1), h1.dpPort(t, "vm2", p2)
	c.seedMAC(context.Background(), bridge.String(), 0, mac(2), p2.String())
	out, _ := h1.dp.Output(dp2)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sem := make(chan struct{}, inFlight)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range flows {
			select {
			case <-out:
				<-sem
			case <-time.After(5 * time.Second):
				return
			}
		}
	}()
	for i := range flows {
		sem <- struct{}{}
		h1.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", uint16(1024+i/60000), uint16(1+i%60000)))
	}
	<-done
	poll.Until(func() bool { return h1.Flows() >= flows }, 5*time.Second) // the last flows follow their packets
	if n := h1.Flows(); n < flows {
		t.Fatalf("%d flows installed, want %d", n, flows)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	rss, _ := os.ReadFile("/proc/self/status")
	var vmRSS string
	for _, line := range strings.Split(string(rss), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			vmRSS = strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:"))
		}
	}
	t.Logf("%d flows: heap in use grew by %d MB (%d bytes/flow, agent and mem datapath together); process RSS %s (store included)",
		h1.Flows(), (after.HeapInuse-before.HeapInuse)>>20, (after.HeapInuse-before.HeapInuse)/uint64(flows), vmRSS)
	// What a periodic flow-state save costs at this size.
	start := time.Now()
	keys, _ := h1.saveState()
	t.Logf("flow-state save: %d keys in %v", keys, time.Since(start).Round(time.Microsecond))
}
