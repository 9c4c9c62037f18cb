package agent

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/memstore"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/topology"
)

var natIP = netip.MustParseAddr("203.0.113.1")

func decode(frame []byte) *packet.Parsed {
	var p packet.Parsed
	p.Decode(frame)
	return &p
}

// addVM binds another VM of a SNATed network on a's host as iface, its MAC
// known to the bridge and to the router.
func (c *cloud) addVM(n *snatNet, a *testAgent, iface, ip string, m [6]byte) topology.ID {
	c.t.Helper()
	p := c.bridgePort(n.bridge, a, iface)
	ctx := context.Background()
	if err := c.store.PutState(ctx, nsdb.RouterARPKey(n.router.String(), netip.MustParseAddr(ip)), []byte(topology.FormatMAC(m))); err != nil {
		c.t.Fatal(err)
	}
	c.seedMAC(ctx, n.bridge.String(), 0, m, p.String())
	return p
}

// blockHolders reads which host holds each leased block of the network's
// SNAT address.
func (c *cloud) blockHolders(n *snatNet) map[uint16]string {
	c.t.Helper()
	entries, _, err := c.store.ListState(context.Background(), nsdb.NATBlockPrefix(n.router.String(), natIP))
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[uint16]string{}
	for _, e := range entries {
		if _, _, b, ok := nsdb.ParseNATBlockKey(e.Key); ok {
			out[b] = string(e.Value)
		}
	}
	return out
}

// vmClient is a VM that opens UDP "connections" through the SNAT.
type vmClient struct {
	a   *testAgent
	dp  datapath.PortNo
	mac [6]byte
	ip  string
}

// send sends a packet of a new connection (source port sport) to
// 8.8.8.8:53.
func (v vmClient) send(n *snatNet, sport uint16) {
	v.a.dp.Inject(v.dp, udpFrame(v.mac, n.rpMAC, v.ip, "8.8.8.8", sport, 53))
}

func (c *cloud) waitAllActive(t *testing.T, ports ...topology.ID) {
	t.Helper()
	for _, a := range c.agents {
		for _, p := range ports {
			a.waitActive(t, p)
		}
	}
	c.settle()
}

// TestSNATPortsLeasedDisjointAcrossHosts opens 300 connections from a VM on
// each of two hosts through one SNAT address to one server port, the
// uplink on a third host: every translated port is distinct, lies in a
// block the sending host leased, and the reply to each reaches its VM.
func TestSNATPortsLeasedDisjointAcrossHosts(t *testing.T) {
	c := newCloud(t)
	h1, h2, h3 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2"), c.addAgent("h3", "10.9.0.3")
	n := c.snatNet(h1, h3)
	vm2MAC := mac(20)
	vm2 := c.addVM(n, h2, "vm2", "10.0.0.11", vm2MAC)
	clients := []vmClient{
		{h1, h1.dpPort(t, "vm", n.vm), n.vmMAC, "10.0.0.10"},
		{h2, h2.dpPort(t, "vm2", vm2), vm2MAC, "10.0.0.11"},
	}
	dpUp := h3.dpPort(t, "up1", n.up)
	c.waitAllActive(t, n.vm, vm2, n.up)

	const perHost = 300
	sender := map[uint16]int{} // translated port -> client
	for i := range perHost {
		for ci, cl := range clients {
			sport := uint16(10000 + i)
			cl.send(n, sport)
			f := readIPv4(t, h3, dpUp)
			if f.Src != natIP || f.DstPort != 53 {
				t.Fatalf("%s's connection %d left as %v:%d -> port %d, want from %v", cl.ip, i, f.Src, f.SrcPort, f.DstPort, natIP)
			}
			if prev, dup := sender[f.SrcPort]; dup {
				t.Fatalf("SNAT port %d given to %s and to %s", f.SrcPort, clients[prev].ip, cl.ip)
			}
			sender[f.SrcPort] = ci
			// The packet left by the overlay delivery flow, maybe before
			// h3's agent imported the state sent ahead of it; a real
			// reply comes a round trip later.
			rev := flowstate.NATKey{Type: flowstate.RevSNAT, Src: netip.MustParseAddr("8.8.8.8"), SrcPort: 53,
				Dst: natIP, DstPort: f.SrcPort, Proto: packet.IPProtoUDP, Device: n.router}
			if !poll.Until(func() bool { _, ok := h3.state.View(0).NAT(rev); return ok }, 3*time.Second) {
				t.Fatalf("h3 never imported the NAT key of %s's connection %d", cl.ip, i)
			}
			h3.dp.Inject(dpUp, udpFrame(n.gwMAC, n.upMAC, "8.8.8.8", natIP.String(), 53, f.SrcPort))
			back := readIPv4(t, cl.a, cl.dp)
			if back.Dst.String() != cl.ip || back.DstPort != sport {
				t.Fatalf("reply to %v:%d reached %s as %v:%d", natIP, f.SrcPort, cl.ip, back.Dst, back.DstPort)
			}
		}
	}
	holders := c.blockHolders(n)
	blocks := map[string]int{}
	for port, ci := range sender {
		want := clients[ci].a.HostID().String()
		if got := holders[flowstate.Block(port)]; got != want {
			t.Fatalf("port %d (from %s) lies in block %d, held by %q, not by its host %s", port, clients[ci].ip,
				flowstate.Block(port), got, want)
		}
	}
	for _, h := range holders {
		blocks[h]++
	}
	t.Logf("%d connections, %d distinct ports; blocks held per host: %v", 2*perHost, len(sender), blocks)
}

// TestSNATBlocksOfADeadHostAreLeasedAgain gives a SNAT two blocks of ports:
// one host takes both, another host's connection is refused (dropped and
// counted, no port given), and once the first host dies the second leases
// its blocks.
func TestSNATBlocksOfADeadHostAreLeasedAgain(t *testing.T) {
	c := newCloud(t)
	h1, h2, h3 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2"), c.addAgent("h3", "10.9.0.3")
	n := c.snatNetPorts(h1, h3, 1024, 1151) // blocks 16 and 17
	vm2MAC := mac(20)
	vm2 := c.addVM(n, h2, "vm2", "10.0.0.11", vm2MAC)
	v1 := vmClient{h1, h1.dpPort(t, "vm", n.vm), n.vmMAC, "10.0.0.10"}
	v2 := vmClient{h2, h2.dpPort(t, "vm2", vm2), vm2MAC, "10.0.0.11"}
	dpUp := h3.dpPort(t, "up1", n.up)
	c.waitAllActive(t, n.vm, vm2, n.up)

	// Each of h1's workers gives out only its share of a block's ports
	// (sim.SNATPortSharer): 64 connections make h1 lease both blocks.
	for i := range 64 {
		v1.send(n, uint16(10000+i))
		if f := readIPv4(t, h3, dpUp); f.SrcPort < 1024 || f.SrcPort > 1151 {
			t.Fatalf("port %d outside the rule's range", f.SrcPort)
		}
	}
	if hs := c.blockHolders(n); len(hs) != 2 || hs[16] != h1.HostID().String() || hs[17] != h1.HostID().String() {
		t.Fatalf("blocks held %v, want 16 and 17 by h1 %s", hs, h1.HostID())
	}
	v2.send(n, 20000)
	refused := h2.metrics.drops.WithLabelValues("nat-exhausted")
	if !poll.Until(func() bool { return counterValue(refused) == 1 }, 5*time.Second) {
		t.Fatalf("h2's connection with every block taken: %v drops counted, want 1", counterValue(refused))
	}
	expectNoFrame(t, h3, dpUp, 100*time.Millisecond)

	h1.stop()
	var port uint16
	if !poll.Until(func() bool {
		v2.send(n, uint16(20001+port%1000))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		f, err := h3.dp.Read(ctx, dpUp)
		if err != nil {
			port++
			return false
		}
		port = decode(f.Data).SrcPort
		return true
	}, 10*time.Second) {
		t.Fatal("h2 never leased a block of the dead host")
	}
	if b := flowstate.Block(port); c.blockHolders(n)[b] != h2.HostID().String() {
		t.Fatalf("h2's port %d lies in block %d, held by %q", port, b, c.blockHolders(n)[b])
	}
}

// flakyStore is a store that can be made unreachable for the state the
// leases live in (the topology stays readable).
type flakyStore struct {
	Store
	down atomic.Bool
}

var errLeaseStoreDown = errors.New("store unreachable (test)")

func (s *flakyStore) ListState(ctx context.Context, prefix string) ([]nsdb.StateEntry, int64, error) {
	if s.down.Load() {
		return nil, 0, errLeaseStoreDown
	}
	return s.Store.ListState(ctx, prefix)
}

func (s *flakyStore) PutState(ctx context.Context, key string, value []byte) error {
	if s.down.Load() {
		return errLeaseStoreDown
	}
	return s.Store.PutState(ctx, key, value)
}

func (s *flakyStore) NewSession(ctx context.Context, ttl time.Duration) (nsdb.StateSession, error) {
	se, err := s.Store.NewSession(ctx, ttl)
	if err != nil {
		return nil, err
	}
	return flakySession{se, s}, nil
}

type flakySession struct {
	nsdb.StateSession
	s *flakyStore
}

func (f flakySession) ClaimState(ctx context.Context, key string, value []byte) (bool, error) {
	if f.s.down.Load() {
		return false, errLeaseStoreDown
	}
	return f.StateSession.ClaimState(ctx, key, value)
}

func (f flakySession) DeleteState(ctx context.Context, key string) error {
	if f.s.down.Load() {
		return errLeaseStoreDown
	}
	return f.StateSession.DeleteState(ctx, key)
}

// TestSNATWithoutTheStoreKeepsItsBlocks makes the store unreachable after a
// host leased one block: the host fills that block, refuses the
// connections beyond it (dropped and counted, never a port outside its
// blocks), and leases again once the store is back.
func TestSNATWithoutTheStoreKeepsItsBlocks(t *testing.T) {
	fs := &flakyStore{Store: memstore.New()}
	c := newCloudWith(t, fs, func() {})
	h1 := c.addAgent("h1", "10.9.0.1")
	n := c.snatNet(h1, h1)
	v := vmClient{h1, h1.dpPort(t, "vm", n.vm), n.vmMAC, "10.0.0.10"}
	dpUp := h1.dpPort(t, "up1", n.up)
	c.waitAllActive(t, n.vm, n.up)

	v.send(n, 10000)
	first := readIPv4(t, h1, dpUp).SrcPort
	held := flowstate.Block(first)
	fs.down.Store(true)
	for i := 1; i < 70; i++ {
		v.send(n, uint16(10000+i))
	}
	got := 1
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		f, err := h1.dp.Read(ctx, dpUp)
		cancel()
		if err != nil {
			break
		}
		p := decode(f.Data)
		if p.EthType != packet.EtherTypeIPv4 {
			continue
		}
		if flowstate.Block(p.SrcPort) != held {
			t.Fatalf("port %d given with the store away, outside the held block %d", p.SrcPort, held)
		}
		got++
	}
	unavailable := h1.metrics.drops.WithLabelValues("nat-lease-unavailable")
	timedOut := h1.metrics.drops.WithLabelValues("nat-lease-timeout")
	if !poll.Until(func() bool { return counterValue(unavailable)+counterValue(timedOut) == 6 }, 5*time.Second) || got != 64 {
		t.Fatalf("with the store away: %d of 70 connections forwarded, %v+%v dropped; want the block's 64 and 6 dropped",
			got, counterValue(unavailable), counterValue(timedOut))
	}

	fs.down.Store(false)
	var port uint16
	if !poll.Until(func() bool {
		v.send(n, uint16(20000+port%1000))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		f, err := h1.dp.Read(ctx, dpUp)
		if err != nil {
			port++
			return false
		}
		port = decode(f.Data).SrcPort
		return true
	}, 10*time.Second) {
		t.Fatal("no connection forwarded once the store was back")
	}
	if b := flowstate.Block(port); b == held || c.blockHolders(n)[b] != h1.HostID().String() {
		t.Fatalf("port %d once the store was back: block %d, held by %q; want a new block of h1", port, b, c.blockHolders(n)[b])
	}
}

// TestSNATBlockReleasedWhenItsLastKeyExpires lets a connection's flow and
// NAT keys expire (on a clock the test moves): the host then gives its
// block back to the store.
func TestSNATBlockReleasedWhenItsLastKeyExpires(t *testing.T) {
	var skew atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	c := newCloud(t)
	h1 := c.addAgentWith("h1", "10.9.0.1", func(cfg *Config) { cfg.Now = clock })
	n := c.snatNet(h1, h1)
	v := vmClient{h1, h1.dpPort(t, "vm", n.vm), n.vmMAC, "10.0.0.10"}
	dpUp := h1.dpPort(t, "up1", n.up)
	c.waitAllActive(t, n.vm, n.up)
	v.send(n, 10000)
	b := flowstate.Block(readIPv4(t, h1, dpUp).SrcPort)
	if c.blockHolders(n)[b] != h1.HostID().String() {
		t.Fatalf("block %d not held by h1", b)
	}
	// A second a millisecond: the flow's 30 s, the keys' 60 s and the
	// block's idle time pass within a few of the agent's ticks.
	if !poll.Until(func() bool {
		skew.Add(int64(time.Second))
		_, held := c.blockHolders(n)[b]
		return !held
	}, 20*time.Second) {
		t.Fatalf("block %d still held %s after its connection ended", b, time.Duration(skew.Load()))
	}
	if r := counterValue(h1.metrics.natBlocksReleased); r != 1 {
		t.Fatalf("%v blocks released, want 1", r)
	}
}

// TestSNATBlocksClaimedAgainAfterRestart restarts a host whose connections
// hold a block: the block goes with the old run's session, and the new run,
// restoring the connections, claims it again.
func TestSNATBlocksClaimedAgainAfterRestart(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgent("h1", "10.9.0.1")
	n := c.snatNet(h1, h1)
	v := vmClient{h1, h1.dpPort(t, "vm", n.vm), n.vmMAC, "10.0.0.10"}
	dpUp := h1.dpPort(t, "up1", n.up)
	c.waitAllActive(t, n.vm, n.up)
	v.send(n, 10000)
	b := flowstate.Block(readIPv4(t, h1, dpUp).SrcPort)
	h1.stop()
	if _, held := c.blockHolders(n)[b]; held {
		t.Fatalf("block %d still held after its host stopped", b)
	}
	h1 = c.restart(h1)
	if !poll.Until(func() bool { return c.blockHolders(n)[b] == h1.HostID().String() }, 5*time.Second) {
		t.Fatalf("block %d of the restored connection not claimed again: holders %v", b, c.blockHolders(n))
	}
}

// TestLeaseCountGrowsWithTheAddress: an address holding more blocks claims
// more at once, a quarter more up to natLeaseMax, so that a busy address
// reads its leases from the store a logarithmic number of times.
func TestLeaseCountGrowsWithTheAddress(t *testing.T) {
	for _, tc := range []struct{ held, want int }{
		{0, 1}, {1, 1}, {3, 1}, {4, 2}, {8, 3}, {40, 11}, {60, 16}, {500, 16},
	} {
		if got := leaseCount(tc.held); got != tc.want {
			t.Errorf("leaseCount(%d) = %d, want %d", tc.held, got, tc.want)
		}
	}
	// From one block to the 157 that 10,000 connections need: rounds.
	rounds := 0
	for held := 1; held < 10000/flowstate.BlockPorts; held += leaseCount(held) {
		rounds++
	}
	if rounds > 25 {
		t.Errorf("%d lease rounds to hold 157 blocks, want at most 25 (one block a round took 156)", rounds)
	}
}
