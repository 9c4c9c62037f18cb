package nsdb

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/midonet/midonet/internal/nsdb/embedded"
)

var testMAC = [6]byte{0x02, 0x00, 0x5e, 0x10, 0xab, 0xcd}

func TestStateKeysRoundTrip(t *testing.T) {
	ip4 := netip.MustParseAddr("10.0.0.7")
	ip6 := netip.MustParseAddr("2001:db8::7")
	if got, want := BridgeMACKey("b1", 10, testMAC), "/state/bridges/b1/vlans/10/mac/02:00:5e:10:ab:cd"; got != want {
		t.Errorf("BridgeMACKey = %q, want %q", got, want)
	}
	if id, vlan, mac, ok := ParseBridgeMACKey(BridgeMACKey("b1", 4095, testMAC)); !ok || id != "b1" || vlan != 4095 || mac != testMAC {
		t.Errorf("ParseBridgeMACKey: %q %d %v %v", id, vlan, mac, ok)
	}
	for _, ip := range []netip.Addr{ip4, ip6} {
		if id, got, ok := ParseBridgeARPKey(BridgeARPKey("b2", ip)); !ok || id != "b2" || got != ip {
			t.Errorf("ParseBridgeARPKey(%v): %q %v %v", ip, id, got, ok)
		}
		if id, got, ok := ParseRouterARPKey(RouterARPKey("r1", ip)); !ok || id != "r1" || got != ip {
			t.Errorf("ParseRouterARPKey(%v): %q %v %v", ip, id, got, ok)
		}
	}
	if id, ok := ParseHostAliveKey(HostAliveKey("h1")); !ok || id != "h1" {
		t.Errorf("ParseHostAliveKey: %q %v", id, ok)
	}
	if id, name, ok := ParseHostInterfaceKey(HostInterfaceKey("h1", "eth0")); !ok || id != "h1" || name != "eth0" {
		t.Errorf("ParseHostInterfaceKey: %q %q %v", id, name, ok)
	}
	if id, ok := ParsePortActiveKey(PortActiveKey("p1")); !ok || id != "p1" {
		t.Errorf("ParsePortActiveKey: %q %v", id, ok)
	}
	if id, rid, ok := ParsePortRouteKey(PortRouteKey("p1", "r7")); !ok || id != "p1" || rid != "r7" {
		t.Errorf("ParsePortRouteKey: %q %q %v", id, rid, ok)
	}
	if id, ok := ParsePortBGPKey(PortBGPKey("p1")); !ok || id != "p1" {
		t.Errorf("ParsePortBGPKey: %q %v", id, ok)
	}
	if id, ok := ParseBGPPeerStatusKey(BGPPeerStatusKey("g1")); !ok || id != "g1" {
		t.Errorf("ParseBGPPeerStatusKey: %q %v", id, ok)
	}
}

func TestStateKeyParsersRefuseMalformedKeys(t *testing.T) {
	tests := []struct {
		name  string
		key   string
		parse func(string) bool
	}{
		{"mac: uppercase", "/state/bridges/b/vlans/0/mac/02:00:5E:10:AB:CD", macOK},
		{"mac: dashes", "/state/bridges/b/vlans/0/mac/02-00-5e-10-ab-cd", macOK},
		{"mac: too long", "/state/bridges/b/vlans/0/mac/02:00:5e:10:ab:cd:ef:01", macOK},
		{"mac: vlan above 16 bits", "/state/bridges/b/vlans/65536/mac/02:00:5e:10:ab:cd", macOK},
		{"mac: vlan with leading zero", "/state/bridges/b/vlans/010/mac/02:00:5e:10:ab:cd", macOK},
		{"mac: no bridge id", "/state/bridges//vlans/0/mac/02:00:5e:10:ab:cd", macOK},
		{"mac: arp key", "/state/bridges/b/arp/10.0.0.1", macOK},
		{"mac: empty", "", macOK},
		{"arp: leading zeros", "/state/bridges/b/arp/010.0.0.1", bridgeARPOK},
		{"arp: zone", "/state/bridges/b/arp/fe80::1%eth0", bridgeARPOK},
		{"arp: long ipv6", "/state/routers/r/arp/2001:db8:0:0:0:0:0:1", routerARPOK},
		{"arp: router key as bridge key", "/state/routers/r/arp/10.0.0.1", bridgeARPOK},
		{"arp: not an address", "/state/routers/r/arp/router", routerARPOK},
		{"alive: trailing part", "/state/hosts/h/alive/x", aliveOK},
		{"interface: no name", "/state/hosts/h/interfaces/", interfaceOK},
		{"interface: nested name", "/state/hosts/h/interfaces/a/b", interfaceOK},
		{"active: host key", "/state/hosts/p/active", activeOK},
		{"active: route key", "/state/port_routes/p/active", activeOK},
		{"route: no id", "/state/port_routes/p/", routeOK},
		{"route: nested id", "/state/port_routes/p/r/x", routeOK},
		{"route: active key", "/state/ports/p/active", routeOK},
		{"bgp: route key", "/state/port_routes/p/bgp", portBGPOK},
		{"peer status: trailing part", "/state/bgp_peers/g/status/x", peerStatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.parse(tc.key) {
				t.Errorf("%q accepted", tc.key)
			}
		})
	}
}

func macOK(k string) bool       { _, _, _, ok := ParseBridgeMACKey(k); return ok }
func bridgeARPOK(k string) bool { _, _, ok := ParseBridgeARPKey(k); return ok }
func routerARPOK(k string) bool { _, _, ok := ParseRouterARPKey(k); return ok }
func aliveOK(k string) bool     { _, ok := ParseHostAliveKey(k); return ok }
func interfaceOK(k string) bool { _, _, ok := ParseHostInterfaceKey(k); return ok }
func activeOK(k string) bool    { _, ok := ParsePortActiveKey(k); return ok }
func routeOK(k string) bool     { _, _, ok := ParsePortRouteKey(k); return ok }
func portBGPOK(k string) bool   { _, ok := ParsePortBGPKey(k); return ok }
func peerStatusOK(k string) bool {
	_, ok := ParseBGPPeerStatusKey(k)
	return ok
}

// FuzzParseStateKeys checks that every key a parser accepts is the key its
// builder makes of the parts: one spelling per entry.
func FuzzParseStateKeys(f *testing.F) {
	f.Add(BridgeMACKey("b", 0, testMAC))
	f.Add("/state/bridges/b/vlans/7/mac/02:00:5E:10:AB:CD")
	f.Add(BridgeARPKey("b", netip.MustParseAddr("10.1.2.3")))
	f.Add(RouterARPKey("r", netip.MustParseAddr("::ffff:10.1.2.3")))
	f.Add(HostInterfaceKey("h", "eth0"))
	f.Add(HostAliveKey("h"))
	f.Add(PortActiveKey("p"))
	f.Add(PortRouteKey("p", "r"))
	f.Add(BGPPeerStatusKey("g"))
	f.Add("/state/bridges/b/vlans/-1/mac/x")
	f.Add(NATBlockKey("r", netip.MustParseAddr("203.0.113.1"), 17))
	f.Add(NATBlockUsedKey("r", netip.MustParseAddr("203.0.113.1"), 17))
	f.Fuzz(func(t *testing.T, key string) {
		if id, ip, b, ok := ParseNATBlockKey(key); ok && NATBlockKey(id, ip, b) != key && NATBlockUsedKey(id, ip, b) != key {
			t.Errorf("nat block key %q parsed to %q %v %d", key, id, ip, b)
		}
		if id, vlan, mac, ok := ParseBridgeMACKey(key); ok && BridgeMACKey(id, vlan, mac) != key {
			t.Errorf("mac key %q parsed to %q %d %v", key, id, vlan, mac)
		}
		if id, ip, ok := ParseBridgeARPKey(key); ok && BridgeARPKey(id, ip) != key {
			t.Errorf("bridge arp key %q parsed to %q %v", key, id, ip)
		}
		if id, ip, ok := ParseRouterARPKey(key); ok && RouterARPKey(id, ip) != key {
			t.Errorf("router arp key %q parsed to %q %v", key, id, ip)
		}
		if id, name, ok := ParseHostInterfaceKey(key); ok && HostInterfaceKey(id, name) != key {
			t.Errorf("interface key %q parsed to %q %q", key, id, name)
		}
		if id, ok := ParseHostAliveKey(key); ok && HostAliveKey(id) != key {
			t.Errorf("alive key %q parsed to %q", key, id)
		}
		if id, ok := ParsePortActiveKey(key); ok && PortActiveKey(id) != key {
			t.Errorf("active key %q parsed to %q", key, id)
		}
		if id, rid, ok := ParsePortRouteKey(key); ok && PortRouteKey(id, rid) != key {
			t.Errorf("route key %q parsed to %q %q", key, id, rid)
		}
		if id, ok := ParsePortBGPKey(key); ok && PortBGPKey(id) != key {
			t.Errorf("port bgp key %q parsed to %q", key, id)
		}
		if id, ok := ParseBGPPeerStatusKey(key); ok && BGPPeerStatusKey(id) != key {
			t.Errorf("peer status key %q parsed to %q", key, id)
		}
	})
}

// newSession opens a session closed at the end of the test.
func newSession(t *testing.T, s *Store, ttl time.Duration) *Session {
	t.Helper()
	se, err := s.NewSession(context.Background(), SessionConfig{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { se.Close() })
	return se
}

func stateKeys(t *testing.T, s *Store, prefix string) []string {
	t.Helper()
	entries, _, err := s.ListState(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range entries {
		keys = append(keys, e.Key)
	}
	return keys
}

func TestSessionKeysVanishOnClose(t *testing.T) {
	srv := startMember(t)
	agent := openStore(t, srv.ClientURL)
	api := openStore(t, srv.ClientURL)
	ctx := context.Background()
	se, err := agent.NewSession(ctx, SessionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ttl, err := agent.Client().TimeToLive(ctx, clientv3.LeaseID(se.Lease()))
	if err != nil || ttl.GrantedTTL != 5 {
		t.Errorf("default lease TTL %v, %v; want 5s", ttl, err)
	}
	ip := netip.MustParseAddr("10.0.0.2")
	steps := []error{
		se.SetState(ctx, HostAliveKey("h1"), nil),
		se.SetState(ctx, HostInterfaceKey("h1", "eth0"), []byte(`{"mtu":1500}`)),
		se.SetPortActive(ctx, "p1", "h1"),
		se.SetRouterARP(ctx, "r1", ip, testMAC),
		api.SeedMAC(ctx, "b1", 0, [6]byte{2, 0, 0, 0, 0, 1}, "p9"),
	}
	learned, err := se.LearnMAC(ctx, "b1", 0, testMAC, "p1")
	steps = append(steps, err)
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if !learned {
		t.Error("LearnMAC of a new entry did not write")
	}
	e, err := api.GetState(ctx, PortActiveKey("p1"))
	if err != nil || string(e.Value) != "h1" || !e.Leased {
		t.Errorf("port active: %+v, %v; want h1, leased", e, err)
	}
	all := stateKeys(t, api, StatePrefix)
	if len(all) != 6 {
		t.Fatalf("state keys %v, want 6", all)
	}
	if err := se.Close(); err != nil {
		t.Fatal(err)
	}
	// Revocation deletes the keys at once.
	if got, want := stateKeys(t, api, StatePrefix), []string{BridgeMACKey("b1", 0, [6]byte{2, 0, 0, 0, 0, 1})}; !slices.Equal(got, want) {
		t.Errorf("after Close: %v, want only the seeded %v", got, want)
	}
	if err := se.SetState(ctx, HostAliveKey("h1"), nil); !errors.Is(err, ErrSessionClosed) {
		t.Errorf("SetState after Close: %v, want ErrSessionClosed", err)
	}
}

func TestSessionKeysVanishWhenLeaseExpires(t *testing.T) {
	srv := startMember(t)
	api := openStore(t, srv.ClientURL)
	agent, err := Open(context.Background(), Config{Endpoints: []string{srv.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	ctx := context.Background()
	se, err := agent.NewSession(ctx, SessionConfig{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := se.SetState(ctx, HostAliveKey("h1"), []byte("up")); err != nil {
		t.Fatal(err)
	}
	_, rev, err := api.ListState(ctx, "/state/hosts/")
	if err != nil {
		t.Fatal(err)
	}
	ch := api.Watch(t.Context(), "/state/hosts/", rev)
	// The agent dies: nothing keeps the lease alive, nobody revokes it.
	start := time.Now()
	agent.Close()
	ev := nextEvent(t, ch)
	if ev.Type != EventDelete || ev.Key != HostAliveKey("h1") {
		t.Fatalf("event %+v, want the delete of %s", ev, HostAliveKey("h1"))
	}
	t.Logf("alive key expired %v after the agent died", time.Since(start).Round(time.Millisecond))
	closeStart := time.Now()
	se.Close() // only stops the session; its client is gone
	t.Logf("session closed in %v", time.Since(closeStart))
}

func TestSessionRenewsALostLease(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	se := newSession(t, s, time.Second)
	if err := se.SetState(ctx, HostAliveKey("h1"), []byte("up")); err != nil {
		t.Fatal(err)
	}
	if _, err := se.LearnMAC(ctx, "b1", 3, testMAC, "p1"); err != nil {
		t.Fatal(err)
	}
	old := se.Lease()
	// The lease is lost as it would be after a long partition.
	if _, err := s.Client().Revoke(ctx, clientv3.LeaseID(old)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the keys written again under a new lease", 10*time.Second, func() bool {
		return len(stateKeys(t, s, StatePrefix)) == 2 && se.Lease() != old
	})
	e, err := s.GetState(ctx, BridgeMACKey("b1", 3, testMAC))
	if err != nil || string(e.Value) != "p1" || !e.Leased {
		t.Errorf("MAC entry after renewal: %+v, %v", e, err)
	}
	// A write made after the loss but before the session noticed it
	// renews the lease itself.
	if _, err := s.Client().Revoke(ctx, clientv3.LeaseID(se.Lease())); err != nil {
		t.Fatal(err)
	}
	if err := se.SetPortActive(ctx, "p1", "h1"); err != nil {
		t.Fatalf("write after the lease was lost: %v", err)
	}
	waitFor(t, "all three keys", 10*time.Second, func() bool { return len(stateKeys(t, s, StatePrefix)) == 3 })
}

// TestSessionBatches: many keys written and deleted in batches are bound to
// the session like single ones: they vanish with it and are written again
// under a new lease.
func TestSessionBatches(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	se := newSession(t, s, time.Second)
	var entries []StateEntry
	for i := range 3*stateBatchLarge + 5 {
		entries = append(entries, StateEntry{Key: PortRouteKey("p1", strconv.Itoa(i)), Value: []byte("r")})
	}
	if err := se.SetStates(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if got := len(stateKeys(t, s, PortRoutesPrefix("p1"))); got != len(entries) {
		t.Fatalf("%d keys written, want %d", got, len(entries))
	}
	var del []string
	for _, e := range entries[:stateBatchLarge+1] {
		del = append(del, e.Key)
	}
	if err := se.DeleteStates(ctx, del); err != nil {
		t.Fatal(err)
	}
	want := len(entries) - len(del)
	if got := len(stateKeys(t, s, PortRoutesPrefix("p1"))); got != want {
		t.Fatalf("%d keys after deleting %d, want %d", got, len(del), want)
	}
	e, err := s.GetState(ctx, entries[len(entries)-1].Key)
	if err != nil || !e.Leased {
		t.Fatalf("a batched key: %+v, %v; want it leased", e, err)
	}
	// The lease is lost: the batch is written again, without the deleted
	// keys.
	old := se.Lease()
	if _, err := s.Client().Revoke(ctx, clientv3.LeaseID(old)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the batched keys written again under a new lease", 10*time.Second, func() bool {
		return len(stateKeys(t, s, PortRoutesPrefix("p1"))) == want && se.Lease() != old
	})
	if err := se.Close(); err != nil {
		t.Fatal(err)
	}
	if got := stateKeys(t, s, StatePrefix); len(got) != 0 {
		t.Fatalf("%d keys left after Close", len(got))
	}
	if err := se.SetStates(ctx, entries[:1]); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("SetStates after Close: %v, want ErrSessionClosed", err)
	}
}

// TestSessionBatchesOnAStrictStore: a store that takes only etcd's
// default 128 operations a transaction gets every key all the same, the
// session falling back to small batches.
func TestSessionBatchesOnAStrictStore(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:0", Fast: true, MaxTxnOps: 128})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	s := openStore(t, srv.ClientURL)
	se := newSession(t, s, time.Second)
	ctx := context.Background()
	var entries []StateEntry
	var keys []string
	for i := range 2*stateBatchLarge + 3 {
		k := PortRouteKey("p1", strconv.Itoa(i))
		entries, keys = append(entries, StateEntry{Key: k, Value: []byte("r")}), append(keys, k)
	}
	if err := se.SetStates(ctx, entries); err != nil {
		t.Fatal(err)
	}
	if got := len(stateKeys(t, s, PortRoutesPrefix("p1"))); got != len(entries) {
		t.Fatalf("%d keys written, want %d", got, len(entries))
	}
	if err := se.DeleteStates(ctx, keys); err != nil {
		t.Fatal(err)
	}
	if got := len(stateKeys(t, s, PortRoutesPrefix("p1"))); got != 0 {
		t.Fatalf("%d keys left, want 0", got)
	}
}

func TestLearnedEntriesYieldToSeededOnes(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	se := newSession(t, s, time.Second)
	ip := netip.MustParseAddr("10.0.0.9")
	seededMAC := [6]byte{2, 0, 0, 0, 0, 0x99}
	if err := s.SeedBridgeARP(ctx, "b1", ip, seededMAC); err != nil {
		t.Fatal(err)
	}
	if learned, err := se.LearnBridgeARP(ctx, "b1", ip, testMAC); err != nil || learned {
		t.Errorf("learning over a seeded entry: %v, %v; want no write", learned, err)
	}
	if err := se.DeleteState(ctx, BridgeARPKey("b1", ip)); err != nil {
		t.Fatal(err)
	}
	e, err := s.GetState(ctx, BridgeARPKey("b1", ip))
	if err != nil || e.Leased || string(e.Value) != FormatMAC(seededMAC) {
		t.Fatalf("seeded entry after a learn and a session delete: %+v, %v", e, err)
	}
	// A learned entry is replaced by a seeded one, which outlives the
	// session.
	if learned, err := se.LearnMAC(ctx, "b1", 0, testMAC, "p1"); err != nil || !learned {
		t.Fatalf("learn: %v, %v", learned, err)
	}
	if err := s.SeedMAC(ctx, "b1", 0, testMAC, "p2"); err != nil {
		t.Fatal(err)
	}
	if err := se.Close(); err != nil {
		t.Fatal(err)
	}
	e, err = s.GetState(ctx, BridgeMACKey("b1", 0, testMAC))
	if err != nil || e.Leased || string(e.Value) != "p2" {
		t.Fatalf("seeded MAC entry after the session closed: %+v, %v", e, err)
	}
	if err := s.DeleteState(ctx, BridgeMACKey("b1", 0, testMAC)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetState(ctx, BridgeMACKey("b1", 0, testMAC)); !errors.Is(err, ErrNotFound) {
		t.Errorf("after the operator's delete: %v, want ErrNotFound", err)
	}
}

func TestStateRefusesOtherKeys(t *testing.T) {
	s := newStore(t)
	se := newSession(t, s, time.Second)
	ctx := context.Background()
	for _, key := range []string{"/topology/bridges/b1", "state/hosts/h/alive", "/state/hosts/", ""} {
		if err := se.SetState(ctx, key, nil); err == nil || !strings.Contains(err.Error(), "not a state key") {
			t.Errorf("SetState(%q): %v", key, err)
		}
		if err := s.PutState(ctx, key, nil); err == nil {
			t.Errorf("PutState(%q) accepted", key)
		}
	}
	if _, _, err := s.ListState(ctx, "/topology/"); err == nil {
		t.Error("ListState of the topology accepted")
	}
}

// TestClaimedKeysHaveOneHolder: of two sessions claiming a SNAT block, one
// holds it; the other gets it once the first ends; a later session with
// the same value (the same host, restarted) takes its own claim back; and
// a session whose lease was lost while another claimed the key does not
// write it again.
func TestClaimedKeysHaveOneHolder(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	key := NATBlockKey("r1", netip.MustParseAddr("203.0.113.1"), 20)
	h1, h2 := newSession(t, s, time.Second), newSession(t, s, time.Second)
	claim := func(se *Session, host string) bool {
		t.Helper()
		ok, err := se.ClaimState(ctx, key, []byte(host))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	holder := func() string {
		t.Helper()
		e, err := s.GetState(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(e.Value)
	}
	if !claim(h1, "h1") || claim(h2, "h2") || holder() != "h1" {
		t.Fatalf("first claim by h1, then h2: holder %q", holder())
	}
	if !claim(h1, "h1") {
		t.Fatal("the holder's own claim again refused")
	}
	h1.Close()
	if !claim(h2, "h2") || holder() != "h2" {
		t.Fatalf("h2's claim once h1 ended: holder %q", holder())
	}
	// h2's host restarts: its new session takes the key back at once.
	h2again := newSession(t, s, time.Second)
	if !claim(h2again, "h2") {
		t.Fatal("the same host's new session could not take its claim back")
	}
	lease := h2again.Lease()
	e, _ := s.GetState(ctx, key)
	if resp, err := s.Client().Get(ctx, s.prefix+key); err != nil || resp.Kvs[0].Lease != lease {
		t.Fatalf("the claim is not bound to the new session's lease: %v %v (entry %+v)", resp, err, e)
	}
	// The new session's lease is lost, and another host claims the key
	// meanwhile: the session, renewing, does not write it again.
	if _, err := s.Client().Revoke(ctx, clientv3.LeaseID(lease)); err != nil {
		t.Fatal(err)
	}
	h3 := newSession(t, s, time.Second)
	if !claim(h3, "h3") {
		t.Fatal("h3 could not claim the key after the holder's lease was lost")
	}
	waitFor(t, "the session's new lease", 10*time.Second, func() bool { return h2again.Lease() != lease })
	if got := holder(); got != "h3" {
		t.Fatalf("after the old holder renewed its lease, the key holds %q, want h3", got)
	}
}

func TestNATBlockKeysRoundTrip(t *testing.T) {
	ip := netip.MustParseAddr("203.0.113.1")
	for _, key := range []string{NATBlockKey("r1", ip, 1023), NATBlockUsedKey("r1", ip, 1023)} {
		if dev, got, b, ok := ParseNATBlockKey(key); !ok || dev != "r1" || got != ip || b != 1023 {
			t.Errorf("ParseNATBlockKey(%q) = %q %v %d %v", key, dev, got, b, ok)
		}
	}
	for _, bad := range []string{"/state/nat/r1/203.0.113.1/1024", "/state/nat/r1/203.0.113.1/01", "/state/nat/r1/x/1",
		"/state/nat/r1/203.0.113.1", "/state/ports/p/active"} {
		if _, _, _, ok := ParseNATBlockKey(bad); ok {
			t.Errorf("ParseNATBlockKey(%q) accepted", bad)
		}
	}
}
