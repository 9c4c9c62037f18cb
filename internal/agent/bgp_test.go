package agent

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/topology"
)

// learnedRouteEntries are the state keys of routes learned through port
// of router to the given prefixes via gw, as a BGP speaker's agent writes
// them (package bgp's RIB builds them so; it cannot be imported here).
func learnedRouteEntries(router, port topology.ID, gw string, prefixes ...netip.Prefix) []nsdb.StateEntry {
	out := make([]nsdb.StateEntry, len(prefixes))
	for i, p := range prefixes {
		rt := topology.Route{ID: topology.NewID(), Type: topology.RouteNormal, SrcNetworkAddr: topology.Str("0.0.0.0"),
			DstNetworkAddr: topology.Str(p.Addr().String()), DstNetworkLength: p.Bits(), NextHopPort: &port,
			NextHopGateway: topology.Str(gw), Weight: 20, RouterID: router, Learned: true}
		b, _ := json.Marshal(rt)
		out[i] = nsdb.StateEntry{Key: nsdb.PortRouteKey(port.String(), rt.ID.String()), Value: b}
	}
	return out
}

// TestLearnedRoutesRouteTraffic: routes another agent learned by BGP (state
// keys under its session) route every agent's traffic: a learned /24 wins
// over the static default route and sends the VM's packets out of the
// second uplink; withdrawn, or gone with the session that learned it,
// traffic goes back to the default route.
func TestLearnedRoutesRouteTraffic(t *testing.T) {
	c := newCloud(t)
	h1, h2, h3 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2"), c.addAgent("h3", "10.9.0.3")
	n := c.snatNet(h1, h2)
	up2MAC, gw2MAC := mac(13), mac(15)
	up2 := c.routerPort(n.router, "198.51.100.2/24", up2MAC, h3, "up2")
	ctx := context.Background()
	c.store.PutState(ctx, nsdb.RouterARPKey(n.router.String(), netip.MustParseAddr("198.51.100.1")), []byte(topology.FormatMAC(gw2MAC)))
	dpVM, dpUp1, dpUp2 := h1.dpPort(t, "vm", n.vm), h2.dpPort(t, "up1", n.up), h3.dpPort(t, "up2", up2)
	h1.waitActive(t, up2)
	h1.waitActive(t, n.up)
	c.settle()

	speaker, err := c.store.NewSession(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer speaker.Close()
	entries := learnedRouteEntries(n.router, up2, "198.51.100.1", netip.MustParsePrefix("8.8.8.0/24"))
	if err := speaker.SetStates(ctx, entries); err != nil {
		t.Fatal(err)
	}
	for _, a := range c.agents {
		if !poll.Until(func() bool { return a.snap.Load().LearnedRoutes(n.router) == 1 }, 5*time.Second) {
			t.Fatalf("agent %s never took the learned route", a.cfg.HostName)
		}
	}
	send := func(sport uint16) {
		h1.dp.Inject(dpVM, udpFrame(n.vmMAC, n.rpMAC, "10.0.0.10", "8.8.8.8", sport, 53))
	}
	send(5000)
	if f := readIPv4(t, h3, dpUp2); f.EthDst != gw2MAC || f.Src != netip.MustParseAddr("203.0.113.1") {
		t.Fatalf("through the learned route: eth dst %x src %v, want the second gateway, SNATed", f.EthDst, f.Src)
	}
	// Withdrawn: the flow that used it is invalidated, the default route
	// takes the traffic.
	if err := speaker.DeleteStates(ctx, []string{entries[0].Key}); err != nil {
		t.Fatal(err)
	}
	if !poll.Until(func() bool { return h1.snap.Load().LearnedRoutes(n.router) == 0 }, 5*time.Second) {
		t.Fatal("the withdrawn route stayed in h1's snapshot")
	}
	send(5000)
	if f := readIPv4(t, h2, dpUp1); f.EthDst != n.gwMAC {
		t.Fatalf("after the withdrawal: eth dst %x, want the default gateway", f.EthDst)
	}
	// Learned again, then the session that learned it dies.
	if err := speaker.SetStates(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if !poll.Until(func() bool { return h1.snap.Load().LearnedRoutes(n.router) == 1 }, 5*time.Second) {
		t.Fatal("the route learned again never reached h1")
	}
	send(5001)
	readIPv4(t, h3, dpUp2)
	speaker.Close()
	if !poll.Until(func() bool { return h1.snap.Load().LearnedRoutes(n.router) == 0 }, 5*time.Second) {
		t.Fatal("the routes of a closed session stayed in h1's snapshot")
	}
	send(5001)
	readIPv4(t, h2, dpUp1)
}

// TestFullTableIntoSnapshots measures how fast a full table reaches every
// agent's snapshot: MIDONET_BGP_FEED learned routes (e.g. 100000) are
// written to the store in the speaker's batches, and the test times them
// until three agents hold them all, then their withdrawal. Run by hand:
//
//	MIDONET_BGP_FEED=100000 go test -run TestFullTableIntoSnapshots -v ./internal/agent
func TestFullTableIntoSnapshots(t *testing.T) {
	total, _ := strconv.Atoi(os.Getenv("MIDONET_BGP_FEED"))
	if total <= 0 {
		t.Skip("set MIDONET_BGP_FEED to the number of routes to feed")
	}
	c := newCloudOn(t, []string{etcdURL(t)})
	h1, h2, h3 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2"), c.addAgent("h3", "10.9.0.3")
	n := c.snatNet(h1, h2)
	h3.waitActive(t, n.up)
	c.settle()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	prefixes := make([]netip.Prefix, total)
	for i := range prefixes {
		prefixes[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0}), 24)
	}
	entries := learnedRouteEntries(n.router, n.up, "192.0.2.1", prefixes...)
	// What one agent holds for the table: its cache of the keys and the
	// router's learned table, measured apart from the store and the others.
	{
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		cache := newTopoCache(topology.ID{})
		for _, e := range entries {
			cache.applyState(e.Key, e.Value)
		}
		tables := cache.learned.tables()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		t.Logf("one agent's cache of %d learned routes (keys and table): %d MiB of heap (%d B a route)",
			tables[n.router].Len(), (m1.HeapAlloc-m0.HeapAlloc)>>20, (m1.HeapAlloc-m0.HeapAlloc)/uint64(total))
		runtime.KeepAlive(cache)
	}
	ctx := context.Background()
	speaker, err := c.store.NewSession(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer speaker.Close()
	start := time.Now()
	for i := 0; i < len(entries); i += 4096 {
		if err := speaker.SetStates(ctx, entries[i:min(i+4096, len(entries))]); err != nil {
			t.Fatal(err)
		}
	}
	written := time.Since(start)
	all := func(want int) []time.Duration {
		var at []time.Duration
		for _, a := range []*testAgent{h1, h2, h3} {
			if !poll.Until(func() bool { return a.snap.Load().LearnedRoutes(n.router) == want }, 10*time.Minute) {
				t.Fatalf("agent %s holds %d learned routes, want %d", a.cfg.HostName, a.snap.Load().LearnedRoutes(n.router), want)
			}
			at = append(at, time.Since(start))
		}
		return at
	}
	at := all(total)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	last := at[len(at)-1]
	t.Logf("%d routes: written to the store in %v (%.0f/s); in all 3 agents' snapshots after %v (%.0f/s); per agent %v",
		total, written.Round(time.Millisecond), float64(total)/written.Seconds(), last.Round(time.Millisecond),
		float64(total)/last.Seconds(), at)
	t.Logf("heap of this process (3 agents, the store's client, the test's copy of the routes) grew by %d MiB after GC",
		(int64(after.HeapAlloc)-int64(before.HeapAlloc))>>20)
	// A packet still routes at once with the table in place.
	dpVM, dpUp := h1.dpPort(t, "vm", n.vm), h2.dpPort(t, "up1", n.up)
	h1.dp.Inject(dpVM, udpFrame(n.vmMAC, n.rpMAC, "10.0.0.10", "11.0.7.1", 5000, 53))
	readIPv4(t, h2, dpUp)
	start = time.Now()
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.Key
	}
	if err := speaker.DeleteStates(ctx, keys); err != nil {
		t.Fatal(err)
	}
	at = all(0)
	t.Logf("withdrawn from all 3 agents' snapshots after %v", at[len(at)-1].Round(time.Millisecond))
}
