package agent

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/topology"
)

func shortAgeing(cfg *Config) {
	cfg.MACExpire, cfg.FlowTimeout = 300*time.Millisecond, time.Second
	cfg.ARPStale, cfg.ARPExpire, cfg.ARPRetry = 400*time.Millisecond, 2500*time.Millisecond, 200*time.Millisecond
}

func stateExists(c *cloud, key string) bool {
	_, err := c.store.GetState(context.Background(), key)
	return err == nil
}

// TestMACAgeing: a MAC the agent learned stays while a flow from it is
// installed, and goes MACExpire after the last one left; on a bridge with
// connection tracking too, whose flows also hold flow-state keys.
func TestMACAgeing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bridge func(c *cloud) topology.ID
	}{
		{"plain bridge", func(c *cloud) topology.ID {
			bridge := topology.NewID()
			c.update(func(tx topology.Store) error { return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}) })
			return bridge
		}},
		{"conntrack'd bridge", statefulBridge},
	} {
		t.Run(tc.name, func(t *testing.T) { testMACAgeing(t, tc.bridge) })
	}
}

func testMACAgeing(t *testing.T, newBridge func(c *cloud) topology.ID) {
	c := newCloud(t)
	h1 := c.addAgentWith("h1", "10.0.0.1", shortAgeing)
	bridge := newBridge(c)
	p1, p2 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h1, "vm2")
	dp1 := h1.dpPort(t, "vm1", p1)
	h1.dpPort(t, "vm2", p2)
	key := nsdb.BridgeMACKey(bridge.String(), 0, mac(1))

	start := time.Now()
	h1.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 2))
	if !poll.Until(func() bool { return stateExists(c, key) }, 3*time.Second) {
		t.Fatal("the VM's MAC was not learned")
	}
	// The flood flow from the MAC (1 s hard timeout) holds it past
	// MACExpire.
	time.Sleep(600 * time.Millisecond)
	if !stateExists(c, key) {
		t.Fatalf("the MAC went %v after its packet, while its flow was installed", time.Since(start))
	}
	if !poll.Until(func() bool { return !stateExists(c, key) }, 5*time.Second) {
		t.Fatal("the MAC never went once its flow had")
	}
	took := time.Since(start)
	if took < time.Second {
		t.Errorf("the MAC went after %v, before its flow's hard timeout", took)
	}
	if got := counterValue(h1.metrics.macsExpired); got != 1 {
		t.Errorf("expired MACs counted %v, want 1", got)
	}
	// Learned again by the next packet.
	h1.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1, 3))
	if !poll.Until(func() bool { return stateExists(c, key) }, 3*time.Second) {
		t.Fatal("the MAC was not learned again")
	}
}

// readARPRequest waits for an ARP request for target out of port.
func readARPRequest(t *testing.T, a *testAgent, port datapath.PortNo, target string, within time.Duration) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		f, err := a.dp.Read(ctx, port)
		if err != nil {
			return false
		}
		var p packet.Parsed
		p.Decode(f.Data)
		if p.EthType == packet.EtherTypeARP && p.ARPOp == packet.ARPRequest && p.ARPTPA == netip.MustParseAddr(target).As4() {
			return true
		}
	}
}

// TestRouterARPAgeing: a router's ARP entry in use is asked for again once
// stale (at most every ARPRetry), is ignored once expired (the router asks
// and waits), and one the agent learned is deleted ARPExpire after it was
// written.
func TestRouterARPAgeing(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgentWith("h1", "10.9.0.1", shortAgeing)
	n := c.snatNet(h1, h1)
	dpVM, dpUp := h1.dpPort(t, "vm", n.vm), h1.dpPort(t, "up1", n.up)
	c.settle()
	seen := time.Now() // the agent has seen the gateway's entry written
	key := nsdb.RouterARPKey(n.router.String(), netip.MustParseAddr("192.0.2.1"))
	send := func(sport uint16) {
		h1.dp.Inject(dpVM, udpFrame(n.vmMAC, n.rpMAC, "10.0.0.10", "8.8.8.8", sport, 53))
	}
	forwarded := func(within time.Duration) bool {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		for {
			f, err := h1.dp.Read(ctx, dpUp)
			if err != nil {
				return false
			}
			var p packet.Parsed
			p.Decode(f.Data)
			if p.EthType == packet.EtherTypeIPv4 && p.EthDst == n.gwMAC {
				return true
			}
		}
	}
	send(1000)
	if !forwarded(2 * time.Second) {
		t.Fatal("the first packet did not reach the gateway")
	}
	// Stale: a new connection still goes to the gateway, and the router
	// asks for it again.
	time.Sleep(500 * time.Millisecond)
	before := counterValue(h1.metrics.arpRefreshes)
	send(1001)
	if !readARPRequest(t, h1, dpUp, "192.0.2.1", 2*time.Second) {
		t.Fatal("no ARP request refreshing the stale entry")
	}
	if counterValue(h1.metrics.arpRefreshes) != before+1 {
		t.Errorf("refreshes counted %v, want %v", counterValue(h1.metrics.arpRefreshes), before+1)
	}
	// Expired (2.5 s after the agent saw it written): the router asks
	// and the packet waits for the answer.
	time.Sleep(time.Until(seen.Add(2600 * time.Millisecond)))
	send(1002)
	if !readARPRequest(t, h1, dpUp, "192.0.2.1", 2*time.Second) {
		t.Fatal("no ARP request for the expired entry")
	}
	reply := packet.AppendARPReply(nil, n.gwMAC, netip.MustParseAddr("192.0.2.1").As4(), n.upMAC,
		netip.MustParseAddr("192.0.2.2").As4())
	h1.dp.Inject(dpUp, reply)
	if !forwarded(3 * time.Second) {
		t.Fatal("the waiting packet did not go once the gateway answered")
	}
	// The entry the agent learned from the reply is deleted ARPExpire
	// after it was written.
	start := time.Now()
	if !poll.Until(func() bool { return !stateExists(c, key) }, 5*time.Second) {
		t.Fatal("the learned ARP entry was never deleted")
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("the learned entry went %v after it was written, before ARPExpire", took)
	}
	if counterValue(h1.metrics.arpsExpired) < 1 {
		t.Error("no expired ARP entry counted")
	}
}

func TestAgeingConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		tune func(*Config)
	}{
		{"negative", func(c *Config) { c.MACExpire = -time.Second }},
		{"stale after expiry", func(c *Config) { c.ARPStale, c.ARPExpire = 2*time.Second, time.Second }},
		{"flow timeout above MidoNet's", func(c *Config) { c.FlowTimeout = 2 * time.Minute }},
	} {
		cfg := NewConfig("h", nil, nil)
		tc.tune(&cfg)
		if errs := cfg.validateAgeing(); len(errs) == 0 {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}
