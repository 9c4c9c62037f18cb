package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
	"github.com/midonet/midonet/internal/datapath/mem"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/memstore"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// Scale measurements: convergence with hundreds or a thousand agents, the
// cost of a write to an agent, and an agent's topology memory. They are
// measurements, not tests of behaviour, and run only when asked.

// envInt reads a positive integer from the environment, or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// startAgents starts n agents (names h0..), without joining them to the
// tunnel zone, and waits until all are ready.
func (c *cloud) startAgents(n int) []*testAgent {
	c.t.Helper()
	out := make([]*testAgent, n)
	for i := range n {
		// Short queues: the rig's datapaths carry one packet at a time,
		// and a thousand of them at the default sizes take a gigabyte.
		dp := mem.New(mem.Config{Fabric: c.fabric, OutputQueueLen: 16, Engine: engine.Config{UpcallQueueLen: 16, EMCSize: 16}})
		name := fmt.Sprintf("h%d", i)
		dir, err := os.MkdirTemp(c.dir, name+"-")
		if err != nil {
			c.t.Fatal(err)
		}
		a, err := New(Config{HostName: name, StateDir: dir, Store: c.store, Datapath: dp, Workers: 1, Logger: testLogger,
			SessionTTL: 5 * time.Second, StateSaveInterval: time.Minute})
		if err != nil {
			c.t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ta := &testAgent{Agent: a, dp: dp, addr: scaleAddr(i), cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(ta.done)
			if err := a.Run(ctx); err != nil {
				c.t.Errorf("agent %s: %v", name, err)
			}
		}()
		out[i] = ta
		c.agents = append(c.agents, ta)
	}
	for _, a := range out {
		select {
		case <-a.Ready():
		case <-time.After(5 * time.Minute):
			c.t.Fatalf("agent %s not ready", a.cfg.HostName)
		}
	}
	return out
}

func scaleAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 9, byte(i / 250), byte(1 + i%250)})
}

// joinZone puts agents in the tunnel zone in one write.
func (c *cloud) joinZone(agents []*testAgent) {
	c.t.Helper()
	c.update(func(tx topology.Store) error {
		var z topology.TunnelZone
		if err := tx.Get(topology.KindTunnelZone, c.zone.String(), &z); err != nil {
			return err
		}
		for _, a := range agents {
			z.Members = append(z.Members, topology.TunnelZoneMember{HostID: a.HostID(), IPAddress: a.addr.String()})
		}
		return tx.Put(&z)
	})
}

// scaleStore opens the store MIDONET_CONVERGENCE_STORE names: mem (in
// memory), etcd (one member, the default) or etcd3 (a three-member
// cluster).
func scaleStore(t *testing.T) *cloud {
	switch os.Getenv("MIDONET_CONVERGENCE_STORE") {
	case "mem":
		return newCloudWith(t, memstore.New(), func() {})
	case "etcd3":
		_, urls := startStoreCluster(t)
		return newCloudOn(t, urls)
	default:
		return newCloudOn(t, []string{etcdURL(t)})
	}
}

// histogram reads a histogram's sample count and sum.
func histogram(h prometheus.Histogram) (uint64, float64) {
	var m dto.Metric
	h.Write(&m)
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// samplesAbove reads how many of a histogram's samples exceed le, one of
// its bucket bounds.
func samplesAbove(h prometheus.Histogram, le float64) uint64 {
	var m dto.Metric
	h.Write(&m)
	for _, b := range m.GetHistogram().GetBucket() {
		if b.GetUpperBound() == le {
			return m.GetHistogram().GetSampleCount() - b.GetCumulativeCount()
		}
	}
	panic("no bucket bound " + strconv.FormatFloat(le, 'g', -1, 64))
}

// TestConvergence measures, with many agents on one store, the time from a
// committed topology change (a rule appended to a chain every agent's
// bridge uses) to the last agent having invalidated the flow it affects;
// then what a write that concerns no agent costs each of them, and the
// heap the agents take. MIDONET_CONVERGENCE=1 runs it; knobs:
// MIDONET_CONVERGENCE_AGENTS (default 100), MIDONET_CONVERGENCE_PORTS
// (unbound ports beside the agents' own, default 0),
// MIDONET_CONVERGENCE_STORE (etcd, etcd3 or mem), MIDONET_CONVERGENCE_ROUNDS
// (default 20).
func TestConvergence(t *testing.T) {
	if os.Getenv("MIDONET_CONVERGENCE") == "" {
		t.Skip("set MIDONET_CONVERGENCE=1 to run the convergence measurement")
	}
	agents := envInt("MIDONET_CONVERGENCE_AGENTS", 100)
	extra := envInt("MIDONET_CONVERGENCE_PORTS", 0)
	rounds := envInt("MIDONET_CONVERGENCE_ROUNDS", 20)
	c := scaleStore(t)
	// A thousand agents on two cores take seconds to drain what a burst
	// of writes (their ports going active) sent them.
	c.settleWithin = 2 * time.Minute
	start := time.Now()
	as := c.startAgents(agents)
	c.joinZone(as)
	t.Logf("%d agents started in %s", agents, time.Since(start).Round(time.Millisecond))

	// Each agent's VMs on a bridge of its own; every bridge filtered by one
	// chain, as a security group shared by a tenant's networks.
	chain := topology.NewID()
	type vm struct {
		a          *testAgent
		in, out    topology.ID
		dpIn       datapath.PortNo
		frame      []byte
		background bool
	}
	vms := make([]vm, agents)
	start = time.Now()
	c.update(func(tx topology.Store) error { return tx.Create(&topology.Chain{ID: chain}) })
	rnd := rand.New(rand.NewPCG(1, 2))
	// In batches of 200 agents: a transaction must fit etcd's 2 MB request.
	for first := 0; first < agents; first += 200 {
		c.update(func(tx topology.Store) error {
			for i := first; i < min(first+200, agents); i++ {
				a := as[i]
				b := topology.Bridge{ID: topology.NewID(), AdminStateUp: true, InboundFilterID: topology.IDPtr(chain)}
				if err := tx.Create(&b); err != nil {
					return err
				}
				for j, iface := range []string{"in", "out"} {
					p := topology.Port{ID: topology.NewID(), Type: topology.PortTypeBridge, DeviceID: b.ID, AdminStateUp: true,
						HostID: topology.IDPtr(a.HostID()), InterfaceName: topology.Str(iface)}
					if err := topology.AllocateTunnelKey(tx, &p, rnd.Int64N); err != nil {
						return err
					}
					if err := tx.Create(&p); err != nil {
						return err
					}
					if j == 0 {
						vms[i].in = p.ID
					} else {
						vms[i].out = p.ID
					}
				}
				vms[i].a = a
				vms[i].frame = udpFrame([6]byte{2, 2, 0, 0, byte(i >> 8), byte(i)}, [6]byte{2, 1, 0, 0, byte(i >> 8), byte(i)},
					"10.0.0.1", "10.0.0.2", 1, 2)
			}
			return nil
		})
	}
	// Ports beside the agents' own (other tenants' networks on hosts not
	// simulated here), a hundred to a bridge.
	var background topology.ID
	for made := 0; made < extra; {
		c.update(func(tx topology.Store) error {
			for k := 0; k < 1000 && made < extra; k += 100 {
				b := topology.Bridge{ID: topology.NewID(), AdminStateUp: true}
				if err := tx.Create(&b); err != nil {
					return err
				}
				background = b.ID
				for range 100 {
					if err := tx.Create(&topology.Port{ID: topology.NewID(), Type: topology.PortTypeBridge, DeviceID: b.ID, AdminStateUp: true}); err != nil {
						return err
					}
					made++
				}
			}
			return nil
		})
	}
	// Every agent plugs its two ports and reports them active.
	if !poll.Until(func() bool {
		entries, _, err := c.store.ListState(context.Background(), "/state/ports/")
		return err == nil && len(entries) >= 2*agents
	}, 10*time.Minute) {
		t.Fatal("the agents' ports never all went active")
	}
	t.Logf("%d ports plugged and active %s after the topology was written", 2*agents, time.Since(start).Round(time.Millisecond))
	for i := range vms {
		vms[i].dpIn = vms[i].a.dpPort(t, "in", vms[i].in)
	}
	c.settle()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if f := os.Getenv("MIDONET_CONVERGENCE_HEAPPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil {
			pprof.WriteHeapProfile(out)
			out.Close()
		}
	}
	t.Logf("topology of %d ports (%d the agents', %d beside) loaded by every agent in %s; heap in use %d MB (%d KB an agent, store included)",
		2*agents+extra, 2*agents, extra, time.Since(start).Round(time.Millisecond), ms.HeapInuse>>20, ms.HeapInuse>>10/uint64(agents))

	var lat []time.Duration
	for r := range rounds {
		for _, v := range vms {
			installed := false
			for try := 0; try < 25 && !installed; try++ {
				v.a.dp.Inject(v.dpIn, v.frame)
				installed = poll.Until(func() bool { return hasFlowFrom(v.a, v.dpIn) }, 200*time.Millisecond)
			}
			if !installed {
				t.Fatalf("round %d: agent %s installed no flow", r, v.a.cfg.HostName)
			}
		}
		// The first round's packets taught the bridges their MACs: a
		// thousand writes every agent applies. Measure from quiet agents.
		c.settle()
		start := time.Now()
		rule := topology.Rule{ID: topology.NewID(), Type: topology.RuleAccept, ChainID: chain}
		rule.Validate()
		c.appendRule(chain, rule)
		committed := time.Since(start)
		for _, v := range vms {
			if !poll.Until(func() bool { return !hasFlowFrom(v.a, v.dpIn) }, 30*time.Second) {
				t.Fatalf("round %d: agent %s kept its flow", r, v.a.cfg.HostName)
			}
		}
		lat = append(lat, time.Since(start))
		t.Logf("round %d: commit %s, last agent invalidated after %s", r, committed.Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	}
	slices.Sort(lat)
	t.Logf("convergence over %d agents (%d ports), %d rounds: p50 %s p99 %s (store %s)", agents, 2*agents+extra, rounds,
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), storeName())

	// A write no agent's ports depend on: a bridge of its own with a
	// port. Each agent builds its next snapshot from it, compiling the
	// two objects it adds (and what else changed meanwhile: a MAC learned
	// or aged on its own bridge), never the whole topology.
	const resync = 16 // a bucket bound of snapshot_objects
	before := make([][4]float64, len(as))
	for i, a := range as {
		n, sum := histogram(a.metrics.snapshotBuild)
		_, objects := histogram(a.metrics.snapshotObjects)
		before[i] = [4]float64{float64(n), sum, objects, float64(samplesAbove(a.metrics.snapshotObjects, resync))}
	}
	c.update(func(tx topology.Store) error {
		b := topology.Bridge{ID: topology.NewID(), AdminStateUp: true}
		if err := tx.Create(&b); err != nil {
			return err
		}
		return tx.Create(&topology.Port{ID: topology.NewID(), Type: topology.PortTypeBridge, DeviceID: b.ID, AdminStateUp: true})
	})
	c.settle()
	var builds []time.Duration
	most, big := 0.0, 0.0
	for i, a := range as {
		n, sum := histogram(a.metrics.snapshotBuild)
		if dn := float64(n) - before[i][0]; dn > 0 {
			builds = append(builds, time.Duration((sum-before[i][1])/dn*1e9))
		}
		_, objects := histogram(a.metrics.snapshotObjects)
		most = max(most, objects-before[i][2])
		big += float64(samplesAbove(a.metrics.snapshotObjects, resync)) - before[i][3]
	}
	if len(builds) == 0 {
		t.Fatal("no agent built a snapshot for the unrelated write")
	}
	slices.Sort(builds)
	t.Logf("an unrelated write (a bridge and a port on it): %d agents built a snapshot, compiling at most %.0f objects each (in all their builds meanwhile) of the %d-port topology; build p50 %s p99 %s",
		len(builds), most, 2*agents+extra+1, builds[len(builds)/2], builds[len(builds)*99/100])
	if big > 0 {
		t.Errorf("%.0f builds compiled more than %d objects meanwhile: an agent recompiled more than what changed", big, resync)
	}
	_ = background
}

func storeName() string {
	if s := os.Getenv("MIDONET_CONVERGENCE_STORE"); s != "" {
		return s
	}
	return "etcd"
}

// tenantTopology writes a cloud of n ports the way Neutron lays one out: per
// tenant a router, a network of 20 VM ports behind it with a security
// group (a chain pair of four rules each), all tenants' routers linked to
// one provider router; the objects come back as the store would hold them
// (JSON), in creation order.
func tenantTopology(n int) []nsdb.RawObject {
	var objs []nsdb.RawObject
	add := func(o topology.Object) {
		b, err := json.Marshal(o)
		if err != nil {
			panic(err)
		}
		objs = append(objs, nsdb.RawObject{Kind: o.Kind(), ID: o.ObjectID(), Value: b})
	}
	host := topology.NewID()
	provider := topology.Router{ID: topology.NewID(), AdminStateUp: true, Name: topology.Str("provider")}
	add(provider)
	for t := 0; t*22 < n; t++ {
		r := topology.Router{ID: topology.NewID(), AdminStateUp: true, Name: topology.Str("tenant-" + strconv.Itoa(t))}
		add(r)
		b := topology.Bridge{ID: topology.NewID(), AdminStateUp: true, Name: topology.Str("net-" + strconv.Itoa(t))}
		add(b)
		in, out := topology.Chain{ID: topology.NewID()}, topology.Chain{ID: topology.NewID()}
		for _, c := range []*topology.Chain{&in, &out} {
			for k := range 4 {
				rule := topology.Rule{ID: topology.NewID(), Type: topology.RuleAccept, ChainID: c.ID}
				switch k {
				case 0:
					rule.MatchReturnFlow = true
				case 1:
					rule.NwProto = new(6)
					rule.TpDst = &topology.PortRange{Start: 22, End: 22}
				case 2:
					rule.NwProto = new(1)
				case 3:
					rule.Type = topology.RuleDrop
				}
				rule.Validate()
				c.RuleIDs = append(c.RuleIDs, rule.ID)
				add(rule)
			}
			add(*c)
		}
		rp := topology.Port{ID: topology.NewID(), Type: topology.PortTypeRouter, DeviceID: r.ID, AdminStateUp: true,
			PortSubnet: []string{fmt.Sprintf("10.%d.%d.1/24", t/250, t%250)}, PortMAC: topology.Str(fmt.Sprintf("ac:ca:ba:%02x:%02x:01", t/256, t%256))}
		bp := topology.Port{ID: topology.NewID(), Type: topology.PortTypeBridge, DeviceID: b.ID, AdminStateUp: true}
		rp.PeerID, bp.PeerID = &bp.ID, &rp.ID
		up := topology.Port{ID: topology.NewID(), Type: topology.PortTypeRouter, DeviceID: r.ID, AdminStateUp: true,
			PortSubnet: []string{fmt.Sprintf("169.254.%d.%d/30", t/64, (t%64)*4+2)}}
		pp := topology.Port{ID: topology.NewID(), Type: topology.PortTypeRouter, DeviceID: provider.ID, AdminStateUp: true,
			PortSubnet: []string{fmt.Sprintf("169.254.%d.%d/30", t/64, (t%64)*4+1)}}
		up.PeerID, pp.PeerID = &pp.ID, &up.ID
		for _, p := range []topology.Port{rp, bp, up, pp} {
			add(p)
		}
		for v := range 18 {
			p := topology.Port{ID: topology.NewID(), Type: topology.PortTypeBridge, DeviceID: b.ID, AdminStateUp: true,
				HostID: &host, InterfaceName: topology.Str("tap" + strconv.Itoa(v)), InboundFilterID: &out.ID, OutboundFilterID: &in.ID}
			add(p)
		}
		add(topology.Route{ID: topology.NewID(), Type: topology.RouteNormal, RouterID: r.ID, SrcNetworkAddr: topology.Str("0.0.0.0"),
			DstNetworkAddr: topology.Str("0.0.0.0"), NextHopPort: &up.ID})
	}
	return objs
}

// TestTopologyMemory10kPorts loads a 10,000-port cloud into an agent's
// topology cache, builds its snapshot, and reports the heap the cache, its
// builder and the snapshot take, and how long the first build takes.
// MIDONET_MEMORY=1 runs it.
func TestTopologyMemory10kPorts(t *testing.T) {
	if os.Getenv("MIDONET_MEMORY") == "" {
		t.Skip("set MIDONET_MEMORY=1 to measure an agent's topology memory at 10k ports")
	}
	objs := tenantTopology(10_000)
	ports := 0
	for _, o := range objs {
		if o.Kind == topology.KindPort {
			ports++
		}
	}
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	c := newTopoCacheFrom(objs)
	start := time.Now()
	c.flush()
	snap, err := c.b.Build()
	if err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&m1)
	grew := m1.HeapInuse - m0.HeapInuse
	t.Logf("%d ports, %d objects: the cache, its builder and its snapshot take %d MB of heap (%d B a port); the first build takes %s",
		ports, len(objs), grew>>20, grew/uint64(ports), first.Round(time.Microsecond))
	runtime.KeepAlive(snap)
	runtime.KeepAlive(c)
}

// newTopoCacheFrom is a cache holding objs.
func newTopoCacheFrom(objs []nsdb.RawObject) *topoCache {
	c := newTopoCache(topology.ID{})
	for _, o := range objs {
		c.applyObject(o.Kind, o.ID, o.Value)
	}
	return c
}

// BenchmarkWrite10kPorts measures what a write costs an agent holding a
// 10,000-port cloud: applying one event (a rule, a port of another host, a
// learned MAC) and making the next snapshot, side by side compiled whole
// from the cache (whole/, as the agent did before the Builder) and built
// change by change (builder/, as the agent does).
func BenchmarkWrite10kPorts(b *testing.B) {
	objs := tenantTopology(10_000)
	var rule topology.Rule
	var port topology.Port
	var bridge topology.ID
	for _, o := range objs {
		switch o.Kind {
		case topology.KindRule:
			json.Unmarshal(o.Value, &rule)
		case topology.KindPort:
			json.Unmarshal(o.Value, &port)
			if port.Type == topology.PortTypeBridge && port.HostID != nil {
				bridge = port.DeviceID
			}
		}
	}
	for _, how := range []string{"whole", "builder"} {
		c := newTopoCacheFrom(objs)
		build := func(b *testing.B) {
			var err error
			if how == "whole" {
				_, err = sim.NewSnapshot(c.input())
			} else {
				c.flush()
				_, err = c.b.Build()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		build(b)
		b.Run(how+"/rule", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				rule.Type = []string{topology.RuleAccept, topology.RuleDrop}[i%2]
				v, _ := json.Marshal(rule)
				c.applyObject(topology.KindRule, rule.ID.String(), v)
				build(b)
			}
		})
		b.Run(how+"/port-elsewhere", func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				port.AdminStateUp = i%2 == 0
				v, _ := json.Marshal(port)
				c.applyObject(topology.KindPort, port.ID.String(), v)
				build(b)
			}
		})
		b.Run(how+"/mac-learned", func(b *testing.B) {
			// A MAC of the bridge's 20 moves to another port.
			other := topology.NewID()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				key := nsdb.BridgeMACKey(bridge.String(), 0, [6]byte{2, 0, 0, 0, 0, byte(i % 20)})
				to := port.ID
				if i/20%2 == 1 {
					to = other
				}
				c.applyState(key, []byte(to.String()))
				build(b)
			}
		})
	}
}
