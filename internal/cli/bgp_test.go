package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// TestRouterBGP: a router's BGP configured through the CLI, and what agents
// report of it (written here as an agent would) shown by it.
func TestRouterBGP(t *testing.T) {
	t.Parallel()
	name := unique("bgp")
	r := object(t, "router", "create", "--name", name, "--as-number", "65000")
	if format(r["asNumber"]) != "65000" {
		t.Fatalf("router AS %v", r["asNumber"])
	}
	port := object(t, "port", "create", "--router", name, "--address", "10.1.0.2/24")
	peer := object(t, "router", "bgp", "add-peer", "--router", name, "--address", "10.1.0.1", "--as", "65001",
		"--keepalive", "5", "--hold-time", "15", "--password", "s3cret")
	checkFields(t, "peer", peer, map[string]string{"address": "10.1.0.1", "asNumber": "65001", "keepAlive": "5",
		"holdTime": "15", "connectRetry": "-", "password": "s3cret", "status": "-"})
	if _, err := run(t, "router", "bgp", "add-peer", "--router", name, "--address", "10.1.0.1", "--as", "65001"); err == nil {
		t.Error("a second peer with the same address and AS was accepted")
	}
	if _, err := run(t, "router", "bgp", "add-peer", "--router", name, "--address", "10.1.0.9"); err == nil {
		t.Error("a peer without --as was accepted")
	}
	up := object(t, "router", "bgp", "update-peer", "--peer", peer.Str("id"), "--connect-retry", "5", "--password", "")
	checkFields(t, "updated peer", up, map[string]string{"address": "10.1.0.1", "keepAlive": "5", "connectRetry": "5", "password": "-"})
	n := object(t, "router", "bgp", "add-network", "--router", name, "--network", "203.0.113.7/24")
	checkFields(t, "network", n, map[string]string{"subnetAddress": "203.0.113.0", "subnetLength": "24"})
	object(t, "router", "bgp", "add-network", "--router", name, "--network", "198.18.0.0/15")
	if got := objects(t, "router", "bgp", "networks", "--router", name); len(got) != 2 {
		t.Fatalf("%d networks, want 2", len(got))
	}
	must(t, "router", "bgp", "remove-network", "--router", name, "--network", "198.18.0.0/15")
	if _, err := run(t, "router", "bgp", "remove-network", "--router", name, "--network", "198.18.0.0/15"); err == nil ||
		!strings.Contains(err.Error(), "announces no network") {
		t.Errorf("removing an absent network: %v", err)
	}

	// An agent reports the session and a learned route.
	ctx := context.Background()
	se, err := testStore.NewSession(ctx, nsdb.SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer se.Close()
	pid, _ := topology.ParseID(port.Str("id"))
	rid, _ := topology.ParseID(r.Str("id"))
	learned := topology.Route{ID: topology.NewID(), Type: topology.RouteNormal, SrcNetworkAddr: topology.Str("0.0.0.0"),
		DstNetworkAddr: topology.Str("0.0.0.0"), NextHopPort: &pid, NextHopGateway: topology.Str("10.1.0.1"),
		Weight: 20, RouterID: rid, Learned: true}
	rb, _ := json.Marshal(learned)
	sb, _ := json.Marshal(topology.BGPSessionStatus{State: "Established", PortID: pid, Routes: 1})
	if err := se.SetStates(ctx, []nsdb.StateEntry{
		{Key: nsdb.PortRouteKey(pid.String(), learned.ID.String()), Value: rb},
		{Key: nsdb.BGPPeerStatusKey(peer.Str("id")), Value: sb},
	}); err != nil {
		t.Fatal(err)
	}
	peers := objects(t, "router", "bgp", "peers", "--router", name)
	if len(peers) != 1 || status(peers[0], "state") != "Established" || status(peers[0], "routes") != "1" {
		t.Fatalf("peers %v", peers)
	}
	routes := objects(t, "router", "bgp", "routes", "--router", name)
	if len(routes) != 1 || routes[0].Str("id") != learned.ID.String() {
		t.Fatalf("learned routes %v, want only the learned one", routes)
	}
	table := must(t, "router", "bgp", "show", "--router", name)
	for _, want := range []string{"AS 65000", "10.1.0.1", "65001", "Established", "203.0.113.0/24", "Learned routes (1)",
		"0.0.0.0/0", port.Str("id")} {
		if !strings.Contains(table, want) {
			t.Errorf("bgp show lacks %q:\n%s", want, table)
		}
	}
	var all map[string]any
	if err := json.Unmarshal([]byte(must(t, "router", "bgp", "show", "--router", name, "-o", "json")), &all); err != nil {
		t.Fatal(err)
	}
	if len(all["peers"].([]any)) != 1 || len(all["networks"].([]any)) != 1 || len(all["learnedRoutes"].([]any)) != 1 {
		t.Errorf("bgp show -o json: %v", all)
	}

	must(t, "router", "bgp", "remove-peer", "--router", name, "--address", "10.1.0.1")
	if got := objects(t, "router", "bgp", "peers", "--router", name); len(got) != 0 {
		t.Errorf("peers after remove-peer: %v", got)
	}
}
