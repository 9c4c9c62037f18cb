package agent

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/mem"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
	"github.com/midonet/midonet/internal/nsdb/memstore"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// etcd is one embedded store member for the tests that need a real store
// (its watch fan-out, its failures), started by the first of them.
var etcd struct {
	once   sync.Once
	member *embedded.Server
	dir    string
	err    error
}

// etcdURL returns the client URL of the tests' embedded etcd member.
func etcdURL(t testing.TB) string {
	t.Helper()
	etcd.once.Do(func() {
		if etcd.dir, etcd.err = os.MkdirTemp("", "agent-test"); etcd.err != nil {
			return
		}
		etcd.member, etcd.err = embedded.Start(embedded.Config{DataDir: etcd.dir, ClientURL: "http://127.0.0.1:0", Fast: true})
	})
	if etcd.err != nil {
		t.Fatal(etcd.err)
	}
	return etcd.member.ClientURL
}

func TestMain(m *testing.M) {
	code := m.Run()
	if etcd.member != nil {
		etcd.member.Close()
	}
	if etcd.dir != "" {
		os.RemoveAll(etcd.dir)
	}
	os.Exit(code)
}

var prefixSeq atomic.Int64

// cloud is a store of its own (in memory, or a namespace of an etcd
// cluster) with agents on mem datapaths joined by one in-memory underlay.
type cloud struct {
	t      testing.TB
	store  Store
	fabric *mem.Fabric
	agents []*testAgent
	dir    string // the agents' state directories; removed after they stop
	zone   topology.ID
	// settleWithin bounds settle's wait for each agent (5 s if zero).
	settleWithin time.Duration

	closeStore func()
}

type testAgent struct {
	*Agent
	dp       *mem.Datapath
	addr     netip.Addr
	cancel   context.CancelFunc
	done     chan struct{}
	stopOnce sync.Once
}

// newCloud builds a cloud on an in-memory store.
func newCloud(t testing.TB) *cloud { return newCloudWith(t, memstore.New(), func() {}) }

// newCloudOn builds a cloud on the etcd cluster at endpoints, in a prefix
// of its own.
func newCloudOn(t testing.TB, endpoints []string) *cloud {
	t.Helper()
	prefix := fmt.Sprintf("/agent-test/%d-%d", os.Getpid(), prefixSeq.Add(1))
	store, err := nsdb.Open(context.Background(), nsdb.Config{Endpoints: endpoints, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return newCloudWith(t, NSDB(store), func() { store.Close() })
}

func newCloudWith(t testing.TB, store Store, closeStore func()) *cloud {
	t.Helper()
	// The directory is made before close is registered, so that it is
	// removed after the agents have stopped (and saved their state).
	c := &cloud{t: t, store: store, closeStore: closeStore, fabric: mem.NewFabric(), zone: topology.NewID(), dir: t.TempDir()}
	c.update(func(tx topology.Store) error {
		return tx.Create(&topology.TunnelZone{ID: c.zone, Name: topology.Str("tz"), Type: topology.Str("vxlan")})
	})
	t.Cleanup(c.close)
	return c
}

func (c *cloud) update(fn func(tx topology.Store) error) {
	c.t.Helper()
	if err := c.store.Update(context.Background(), fn); err != nil {
		c.t.Fatal(err)
	}
}

// addAgent starts an agent whose host is in the tunnel zone at addr.
func (c *cloud) addAgent(name, addr string) *testAgent {
	c.t.Helper()
	return c.addAgentWith(name, addr, nil)
}

// addAgentWith is addAgent with tune, if not nil, adjusting its config.
func (c *cloud) addAgentWith(name, addr string, tune func(*Config)) *testAgent {
	c.t.Helper()
	dp := mem.New(mem.Config{Fabric: c.fabric})
	dir, err := os.MkdirTemp(c.dir, safeName(name)+"-")
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := Config{HostName: name, StateDir: dir, Store: c.store, Datapath: dp, Workers: 2, Logger: testLogger,
		SessionTTL: 2 * time.Second}
	if tune != nil {
		tune(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, dp: dp, addr: netip.MustParseAddr(addr), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ta.done)
		if err := a.Run(ctx); err != nil {
			c.t.Errorf("agent %s: %v", name, err)
		}
	}()
	select {
	case <-a.Ready():
	case <-time.After(10 * time.Second):
		c.t.Fatalf("agent %s not ready", name)
	}
	c.update(func(tx topology.Store) error {
		var z topology.TunnelZone
		if err := tx.Get(topology.KindTunnelZone, c.zone.String(), &z); err != nil {
			return err
		}
		if _, member := z.Member(a.HostID()); member {
			return nil // a restarted host
		}
		z.Members = append(z.Members, topology.TunnelZoneMember{HostID: a.HostID(), IPAddress: addr})
		return tx.Put(&z)
	})
	c.agents = append(c.agents, ta)
	return ta
}

func (c *cloud) close() {
	for _, a := range c.agents {
		a.stop()
	}
	c.closeStore()
}

// seedMAC stores an operator's MAC table entry.
func (c *cloud) seedMAC(ctx context.Context, bridge string, vlan uint16, m [6]byte, port string) {
	c.t.Helper()
	if err := c.store.PutState(ctx, nsdb.BridgeMACKey(bridge, vlan, m), []byte(port)); err != nil {
		c.t.Fatal(err)
	}
}

// stop stops the agent (it saves its flow state on the way out) and
// closes its datapath, once.
func (a *testAgent) stop() {
	a.stopOnce.Do(func() {
		a.cancel()
		<-a.done
		a.dp.Close()
	})
}

// restart stops a and starts its host's agent again on the same state
// directory (the same host id and saved flow state).
func (c *cloud) restart(a *testAgent) *testAgent {
	c.t.Helper()
	a.stop()
	base := filepath.Dir(filepath.Dir(a.cfg.StateDir)) // StateDir is base/hosts/NAME
	return c.addAgentWith(a.cfg.HostName, a.addr.String(), func(cfg *Config) { cfg.StateDir = base })
}

// appendRule adds a rule at the end of a chain.
func (c *cloud) appendRule(chain topology.ID, rule topology.Rule) {
	c.t.Helper()
	c.update(func(tx topology.Store) error {
		var ch topology.Chain
		if err := tx.Get(topology.KindChain, chain.String(), &ch); err != nil {
			return err
		}
		ch.RuleIDs = append(ch.RuleIDs, rule.ID)
		if err := tx.Put(&ch); err != nil {
			return err
		}
		return tx.Create(&rule)
	})
}

// bridgePort creates a port on bridge and binds it to iface on a's host
// (an unbound, interior port when a is nil).
func (c *cloud) bridgePort(bridge topology.ID, a *testAgent, iface string) topology.ID {
	c.t.Helper()
	return c.createPort(topology.Port{Type: topology.PortTypeBridge, DeviceID: bridge}, a, iface)
}

// createPort stores p (up, with a new id and a tunnel key), bound to iface
// on a's host when a is not nil, and returns its id.
func (c *cloud) createPort(p topology.Port, a *testAgent, iface string) topology.ID {
	c.t.Helper()
	p.ID, p.AdminStateUp = topology.NewID(), true
	if a != nil {
		p.HostID, p.InterfaceName = topology.IDPtr(a.HostID()), topology.Str(iface)
	}
	c.update(func(tx topology.Store) error {
		if err := topology.AllocateTunnelKey(tx, &p, func(n int64) int64 { return time.Now().UnixNano() % n }); err != nil {
			return err
		}
		return tx.Create(&p)
	})
	return p.ID
}

// dpPort waits until the agent has plugged iface and the whole cloud sees
// the port active, and returns its datapath port.
func (a *testAgent) dpPort(t testing.TB, iface string, port topology.ID) datapath.PortNo {
	t.Helper()
	var no datapath.PortNo
	plugged := poll.Until(func() bool {
		for _, p := range a.dp.Ports() {
			if p.Spec.Name == iface {
				if _, err := a.store.GetState(context.Background(), nsdb.PortActiveKey(port.String())); err == nil {
					no = p.No
					return true
				}
			}
		}
		return false
	}, 10*time.Second)
	if !plugged {
		t.Fatalf("interface %s not plugged and active", iface)
	}
	return no
}

// waitActive waits until the agent's snapshot shows port active.
func (a *testAgent) waitActive(t testing.TB, port topology.ID) {
	t.Helper()
	if !poll.Until(func() bool {
		snap := a.snap.Load()
		if snap == nil {
			return false
		}
		info, ok := snap.Port(port)
		return ok && info.Active
	}, 5*time.Second) {
		t.Fatalf("port %s never active in the agent's view", port)
	}
}

// settle waits until every agent has applied every write made so far:
// events arrive in order, so an agent that sees a new write has seen the
// earlier ones. The write is a port on a bridge of its own, which changes
// no flow.
func (c *cloud) settle() {
	c.t.Helper()
	bridge := topology.NewID()
	c.update(func(tx topology.Store) error { return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}) })
	marker := c.bridgePort(bridge, nil, "")
	for _, a := range c.agents {
		if !poll.Until(func() bool {
			snap := a.snap.Load()
			if snap == nil {
				return false
			}
			_, ok := snap.Port(marker)
			return ok
		}, cmp.Or(c.settleWithin, 5*time.Second)) {
			c.t.Fatalf("agent %s never applied the latest write", a.cfg.HostName)
		}
	}
}

func mac(last byte) [6]byte { return [6]byte{2, 0, 0, 0, 0, last} }

func udpFrame(src, dst [6]byte, srcIP, dstIP string, sport, dport uint16) []byte {
	return packet.AppendIPv4UDP(nil, packet.UDP4Fields{EthSrc: src, EthDst: dst,
		Src: netip.MustParseAddr(srcIP).As4(), Dst: netip.MustParseAddr(dstIP).As4(), TTL: 64,
		SrcPort: sport, DstPort: dport, Checksum: true}, []byte("hello"))
}

// expectFrame waits for a frame on a port and checks its destination MAC.
func expectFrame(t testing.TB, a *testAgent, port datapath.PortNo, dst [6]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for {
		f, err := a.dp.Read(ctx, port)
		if err != nil {
			t.Fatalf("no frame to %x on port %d: %v", dst, port, err)
		}
		var p packet.Parsed
		p.Decode(f.Data)
		if p.EthDst == dst {
			return
		}
	}
}

// expectNoFrame checks that nothing reaches a port for a while.
func expectNoFrame(t testing.TB, a *testAgent, port datapath.PortNo, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if f, err := a.dp.Read(ctx, port); err == nil {
		t.Fatalf("unexpected frame on port %d: %x", port, f.Data)
	}
}

func TestBridgeAcrossHostsFloodsThenLearns(t *testing.T) {
	c := newCloud(t)
	h1, h2 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2")
	bridge := topology.NewID()
	c.update(func(tx topology.Store) error { return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}) })
	p1, p2 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h2, "vm2")
	dp1, dp2 := h1.dpPort(t, "vm1", p1), h2.dpPort(t, "vm2", p2)
	// The remote port must be active in h1's view before it can flood there.
	h1.waitActive(t, p2)

	// Unknown destination: flooded across the overlay to vm2.
	if err := h1.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 2000)); err != nil {
		t.Fatal(err)
	}
	expectFrame(t, h2, dp2, mac(2))
	// The reply is unicast to the MAC h2 learned from the flood... through
	// the shared MAC table. A flow is installed after its packet leaves, and
	// a reply simulated before the MAC reached h2 floods with a flow the
	// learning invalidates: resend until both hosts hold a flow.
	installed := func() bool { return h1.Flows() > 0 && h2.Flows() > 0 }
	for range 5 {
		if err := h2.dp.Inject(dp2, udpFrame(mac(2), mac(1), "10.0.0.2", "10.0.0.1", 2000, 1000)); err != nil {
			t.Fatal(err)
		}
		expectFrame(t, h1, dp1, mac(1))
		if poll.Until(installed, time.Second) {
			break
		}
	}
	if !installed() {
		t.Errorf("flows installed: h1 %d, h2 %d", h1.Flows(), h2.Flows())
	}
}

func TestRuleChangeInvalidatesInstalledFlows(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgent("h1", "10.9.0.1")
	bridge, chain := topology.NewID(), topology.NewID()
	c.update(func(tx topology.Store) error {
		if err := tx.Create(&topology.Chain{ID: chain}); err != nil {
			return err
		}
		return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true, InboundFilterID: topology.IDPtr(chain)})
	})
	p1, p2 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h1, "vm2")
	dp1, dp2 := h1.dpPort(t, "vm1", p1), h1.dpPort(t, "vm2", p2)
	frame := udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 2000)
	h1.dp.Inject(dp1, frame)
	expectFrame(t, h1, dp2, mac(2))
	// The flow is installed: the next packet is forwarded by the datapath.
	h1.dp.Inject(dp1, frame)
	expectFrame(t, h1, dp2, mac(2))
	before := h1.dp.Stats().Hits

	rule := topology.Rule{ID: topology.NewID(), Type: topology.RuleDrop, ChainID: chain}
	rule.NwProto = new(int)
	*rule.NwProto = 17
	rule.Validate()
	start := time.Now()
	c.appendRule(chain, rule)
	// Within a second the installed flow is gone and packets are dropped
	// by the new rule instead of forwarded by the datapath.
	for {
		h1.dp.Inject(dp1, frame)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := h1.dp.Read(ctx, dp2)
		cancel()
		if err != nil {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("still forwarded %s after the rule change", time.Since(start))
		}
	}
	t.Logf("dropped %s after the rule change", time.Since(start))
	expectNoFrame(t, h1, dp2, 200*time.Millisecond)
	drops := false
	h1.dp.DumpFlows(func(f *datapath.Flow) bool {
		drops = len(f.Actions) == 0 && f.Key.InPort == uint32(dp1)
		return !drops
	})
	if !drops {
		h1.dp.DumpFlows(func(f *datapath.Flow) bool {
			t.Logf("flow in_port=%d actions=%v", f.Key.InPort, f.Actions)
			return true
		})
		for k, c := range h1.metrics.byKind {
			t.Logf("sim %v: %v", sim.Kind(k), counterValue(c))
		}
		t.Logf("flows: %+v", h1.flows.Stats())
		t.Error("no drop flow installed for the blocked packets")
	}
	if h1.dp.Stats().Hits < before {
		t.Fatal("stats went backwards")
	}
}

func TestInterfaceDownDeactivatesPort(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgent("h1", "10.9.0.1")
	bridge := topology.NewID()
	c.update(func(tx topology.Store) error { return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}) })
	p1 := c.bridgePort(bridge, h1, "vm1")
	dp1 := h1.dpPort(t, "vm1", p1)
	h1.dp.SetLinkState(dp1, false)
	if !poll.Until(func() bool {
		_, err := c.store.GetState(context.Background(), nsdb.PortActiveKey(p1.String()))
		return err != nil
	}, 3*time.Second) {
		t.Fatal("port still active after its interface went down")
	}
	h1.dp.SetLinkState(dp1, true)
	h1.dpPort(t, "vm1", p1) // active again
}

// TestOwnActivationNeedsNoEcho checks that an agent counts a port it plugs
// as active in its own snapshot before it stores the port's active key, and
// that the store's echo of that key invalidates nothing: a flow installed
// before the echo arrives stays installed.
func TestOwnActivationNeedsNoEcho(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgent("h1", "10.9.0.1")
	bridge := topology.NewID()
	c.update(func(tx topology.Store) error { return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}) })
	p1, p2 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h1, "vm2")
	dp1, dp2 := h1.dpPort(t, "vm1", p1), h1.dpPort(t, "vm2", p2)
	for _, p := range []topology.ID{p1, p2} {
		if info, ok := h1.snap.Load().Port(p); !ok || !info.Active {
			t.Errorf("port %s is active in the store but not in its own agent's snapshot", p)
		}
	}
	if err := h1.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 2000)); err != nil {
		t.Fatal(err)
	}
	expectFrame(t, h1, dp2, mac(2))
	if !poll.Until(func() bool { return h1.Flows() > 0 }, 3*time.Second) {
		t.Fatal("no flow installed for the first frame")
	}
	c.settle() // the agent has seen the echo of both active keys
	if n := float64(h1.flows.Stats().Invalidated); n != 0 || h1.Flows() == 0 {
		t.Errorf("after the store echoed the active keys: %v flows invalidated, %d installed; want 0 and the flow kept", n, h1.Flows())
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

var testLogger = func() *slog.Logger {
	if os.Getenv("AGENT_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}()

// TestMACMoveInvalidatesFlows moves a MAC from a port on host1 to a port on
// host2: host1's flow towards the old port must go within a second and the
// traffic follow the MAC.
func TestMACMoveInvalidatesFlows(t *testing.T) {
	c := newCloud(t)
	h1, h2 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2")
	bridge := topology.NewID()
	c.update(func(tx topology.Store) error { return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}) })
	p1, p2, p3 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h1, "vm2"), c.bridgePort(bridge, h2, "vm3")
	dp1, dp2, dp3 := h1.dpPort(t, "vm1", p1), h1.dpPort(t, "vm2", p2), h2.dpPort(t, "vm3", p3)
	h1.waitActive(t, p3)
	h2.waitActive(t, p1)
	moving := mac(7)
	// vm1 sends from the moving MAC: it is learned on p1.
	h1.dp.Inject(dp1, udpFrame(moving, mac(2), "10.0.0.7", "10.0.0.2", 1, 2))
	expectFrame(t, h1, dp2, mac(2))
	toMoving := udpFrame(mac(2), moving, "10.0.0.2", "10.0.0.7", 2, 1)
	deadline := time.Now().Add(3 * time.Second)
	for {
		h1.dp.Inject(dp2, toMoving)
		if readTo(h1, dp1, moving, 100*time.Millisecond) && !readTo(h2, dp3, moving, 20*time.Millisecond) {
			break // unicast to p1 only: the MAC is known there
		}
		if time.Now().After(deadline) {
			t.Fatal("the MAC was never learned on p1")
		}
	}
	// The MAC shows up behind vm3 on host2.
	h2.dp.Inject(dp3, udpFrame(moving, mac(2), "10.0.0.7", "10.0.0.2", 1, 2))
	start := time.Now()
	for {
		h1.dp.Inject(dp2, toMoving)
		if readTo(h2, dp3, moving, 100*time.Millisecond) {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("traffic still goes to the old port %s after the move", time.Since(start))
		}
	}
	t.Logf("traffic followed the MAC after %s", time.Since(start))
}

// readTo reports whether a frame to dst leaves port within d.
func readTo(a *testAgent, port datapath.PortNo, dst [6]byte, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		f, err := a.dp.Read(ctx, port)
		if err != nil {
			return false
		}
		var p packet.Parsed
		p.Decode(f.Data)
		if p.EthDst == dst {
			return true
		}
	}
}

// TestHostIdentity checks that an agent keeps its host id across restarts,
// and that agents of different hosts sharing a state directory do not
// share an identity.
func TestHostIdentity(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgent("h1", "10.9.0.1")
	first := h1.HostID()
	if again := c.restart(h1).HostID(); again != first {
		t.Errorf("host id changed across restarts: %s then %s", first, again)
	}
	base := func(cfg *Config) { cfg.StateDir = c.dir } // one directory for both
	a, b := c.addAgentWith("h2", "10.9.0.2", base), c.addAgentWith("../etc", "10.9.0.3", base)
	if a.HostID() == b.HostID() || a.HostID() == first {
		t.Errorf("hosts sharing a state directory share an id: %s %s %s", first, a.HostID(), b.HostID())
	}
	if dir := HostStateDir(c.dir, "../etc"); filepath.Dir(filepath.Dir(dir)) != c.dir {
		t.Errorf("odd host name %q escapes the state directory: %s", "../etc", dir)
	}
}

// TestAgentAdoptsHostCreatedByOperator: an operator creates the host (POST
// /hosts) and binds ports to it before the agent ever ran; the agent started
// with that name takes the host over and plugs the ports.
func TestAgentAdoptsHostCreatedByOperator(t *testing.T) {
	c := newCloud(t)
	host, bridge := topology.NewID(), topology.NewID()
	c.update(func(tx topology.Store) error {
		if err := tx.Create(&topology.Host{ID: host, Name: topology.Str("pre")}); err != nil {
			return err
		}
		return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true})
	})
	p := topology.Port{ID: topology.NewID(), Type: topology.PortTypeBridge, DeviceID: bridge, AdminStateUp: true,
		HostID: &host, InterfaceName: topology.Str("vm1")}
	c.update(func(tx topology.Store) error { return tx.Create(&p) })
	a := c.addAgent("pre", "10.9.0.1")
	if a.HostID() != host {
		t.Fatalf("agent runs as host %s, want the operator's %s", a.HostID(), host)
	}
	a.dpPort(t, "vm1", p.ID)
}
