package agent

import (
	"context"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/nsdb/embedded"
	"github.com/midonet/midonet/internal/topology"
)

// startStoreCluster starts a three-member etcd cluster on loopback and
// returns its members and client URLs.
func startStoreCluster(t *testing.T) ([]*embedded.Server, []string) {
	t.Helper()
	members, err := embedded.StartLocalCluster([]string{t.TempDir(), t.TempDir(), t.TempDir()}, true)
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, m := range members {
		urls = append(urls, m.ClientURL)
	}
	return members, urls
}

// TestForwardingContinuesWhenAStoreMemberDies kills one member of a
// three-member store: new flows keep being simulated and forwarded, and
// topology changes keep reaching the agents through the other members.
func TestForwardingContinuesWhenAStoreMemberDies(t *testing.T) {
	members, urls := startStoreCluster(t)
	killed := make([]bool, len(members))
	defer func() {
		for i, m := range members {
			if !killed[i] {
				m.Kill()
			}
		}
	}()
	c := newCloudOn(t, urls)
	h1, h2 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2")
	bridge, chain := topology.NewID(), topology.NewID()
	c.update(func(tx topology.Store) error {
		if err := tx.Create(&topology.Chain{ID: chain}); err != nil {
			return err
		}
		return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true, InboundFilterID: &chain})
	})
	p1, p2 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h2, "vm2")
	dp1, dp2 := h1.dpPort(t, "vm1", p1), h2.dpPort(t, "vm2", p2)
	h1.waitActive(t, p2)
	c.seedMAC(context.Background(), bridge.String(), 0, mac(2), p2.String())
	send := func(port uint16) {
		h1.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, port))
	}
	send(1)
	expectFrame(t, h2, dp2, mac(2))

	// Kill the member the agents' store client is most likely using.
	members[0].Kill()
	killed[0] = true
	start := time.Now()
	for port := uint16(2); port < 50; port++ {
		send(port) // each a new flow: simulated from the agent's snapshot
		expectFrame(t, h2, dp2, mac(2))
	}
	t.Logf("48 new flows forwarded in %s after the member died", time.Since(start))

	// A change made now still reaches the agents: a drop rule blocks the
	// traffic once h1 sees it.
	rule := topology.Rule{ID: topology.NewID(), Type: topology.RuleDrop, ChainID: chain}
	rule.Validate()
	c.appendRule(chain, rule)
	deadline := time.Now().Add(10 * time.Second)
	for port := uint16(100); ; port++ {
		send(port)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := h2.dp.Read(ctx, dp2)
		cancel()
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rule made after the member died never reached the agent")
		}
	}
}
