package speaker_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/services/bgp"
	"github.com/midonet/midonet/internal/services/bgp/bgptest"
	"github.com/midonet/midonet/internal/services/bgp/bird"
	"github.com/midonet/midonet/internal/services/bgp/speaker"
)

func TestMain(m *testing.M) {
	bgptest.RunSpeakerIfChild(func() error {
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		return speaker.Main(context.Background(), os.Stdin, os.Stdout, log)
	})
	os.Exit(m.Run())
}

var (
	portAddr = netip.MustParsePrefix("10.1.0.2/24")
	ispAddr  = netip.MustParsePrefix("10.1.0.1/24")
	portMAC  = [6]byte{0xac, 0xca, 0xba, 0, 0, 2}
)

const (
	localAS = 65000
	ispAS   = 65001
)

// rig is one speaker process in a port namespace, cabled to an ISP
// namespace running BIRD.
type rig struct {
	t    *testing.T
	isp  *bgptest.NS
	bird *bird.Daemon
	proc *bgp.Process
	pns  *bgp.Namespace

	mu     sync.Mutex
	states map[netip.Addr]bgp.SessionState
	paths  map[string]bgp.Path // prefix|peer → path
	errs   []string
	ready  int
}

func newRig(t *testing.T, birdCfg bird.Config) *rig {
	bgptest.Require(t)
	r := &rig{t: t, states: map[netip.Addr]bgp.SessionState{}, paths: map[string]bgp.Path{}}
	r.isp = bgptest.NewNS(t, bgptest.Name("tbgpi"))
	outer := bgptest.Name("tbgpo")
	pns, err := bgp.NewNamespace(outer, portAddr, portMAC)
	if err != nil {
		t.Fatal(err)
	}
	r.pns = pns
	t.Cleanup(func() { pns.Close() })
	r.isp.Adopt(t, outer, ispAddr)
	r.bird = r.isp.Bird(t, birdCfg)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	proc, err := bgp.StartProcess(pns, bgptest.SpeakerCommand(), log)
	if err != nil {
		t.Fatal(err)
	}
	r.proc = proc
	t.Cleanup(proc.Stop)
	go func() {
		for e := range proc.Events() {
			r.mu.Lock()
			if e.Ready {
				r.ready++
				if e.Error != "" {
					r.errs = append(r.errs, e.Error)
				}
			}
			if e.Peer != nil {
				r.states[e.Peer.Address] = e.Peer.State
			}
			for _, p := range e.Paths {
				k := p.Prefix.String() + "|" + p.Peer.String()
				if p.Withdraw {
					delete(r.paths, k)
				} else {
					r.paths[k] = p
				}
			}
			r.mu.Unlock()
		}
	}()
	return r
}

// send configures the speaker and waits for it to say it applied it.
func (r *rig) send(cfg bgp.SpeakerConfig) {
	r.t.Helper()
	r.mu.Lock()
	n := r.ready
	r.mu.Unlock()
	if err := r.proc.Send(cfg); err != nil {
		r.t.Fatal(err)
	}
	bgptest.Eventually(r.t, 10*time.Second, "the speaker applies its configuration", func() (bool, string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.ready > n, fmt.Sprintf("errors %q", r.errs)
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		r.t.Fatalf("speaker refused its configuration: %q", r.errs)
	}
}

func (r *rig) state(peer netip.Addr) bgp.SessionState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.states[peer]
}

// learned lists the paths the speaker reported, as "prefix via nexthop".
func (r *rig) learned() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.paths {
		out = append(out, p.Prefix.String()+" via "+p.NextHop.String())
	}
	slices.Sort(out)
	return out
}

// birdLearned lists what BIRD learned, as "prefix [AS path]".
func (r *rig) birdLearned() []string {
	rs, err := r.bird.Routes()
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, x := range rs {
		out = append(out, x.Prefix.String()+" ["+x.OriginAS+"]")
	}
	slices.Sort(out)
	return out
}

func ispConfig(password string) bird.Config {
	return bird.Config{
		RouterID: ispAddr.Addr(), AS: ispAS,
		Announce: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("198.51.100.1/32")},
		Neighbors: []bird.Neighbor{{
			Name: "uplink", Address: portAddr.Addr(), AS: localAS, Local: ispAddr.Addr(), Password: password,
			HoldTime: 9 * time.Second, KeepAlive: 3 * time.Second, ConnectRetry: 1 * time.Second,
		}},
	}
}

func speakerConfig(password string, networks ...string) bgp.SpeakerConfig {
	c := bgp.SpeakerConfig{RouterID: portAddr.Addr(), LocalAS: localAS, Peers: []bgp.PeerConfig{{
		Address: ispAddr.Addr(), AS: ispAS, KeepAlive: 3 * time.Second, HoldTime: 9 * time.Second,
		ConnectRetry: time.Second, Password: password,
	}}}
	for _, n := range networks {
		c.Networks = append(c.Networks, netip.MustParsePrefix(n))
	}
	return c
}

// TestSpeakerAgainstBIRD: the speaker, in a port namespace, peers with a
// real BIRD; it learns BIRD's routes, BIRD learns the router's networks
// with the router's AS in the path, and networks added and removed live
// are announced and withdrawn there.
func TestSpeakerAgainstBIRD(t *testing.T) {
	r := newRig(t, ispConfig(""))
	r.send(speakerConfig("", "203.0.113.0/24"))
	peer := ispAddr.Addr()
	bgptest.Eventually(t, 20*time.Second, "session established", func() (bool, string) {
		st, _ := r.bird.State("uplink")
		return r.state(peer) == bgp.StateEstablished && st == "Established", fmt.Sprintf("speaker %q, BIRD %q", r.state(peer), st)
	})
	want := []string{"0.0.0.0/0 via 10.1.0.1", "198.51.100.1/32 via 10.1.0.1"}
	bgptest.Eventually(t, 10*time.Second, "the speaker learns BIRD's routes", func() (bool, string) {
		return slices.Equal(r.learned(), want), fmt.Sprintf("%q", r.learned())
	})
	bgptest.Eventually(t, 10*time.Second, "BIRD learns the network with the router's AS", func() (bool, string) {
		got := r.birdLearned()
		return slices.Equal(got, []string{"203.0.113.0/24 [65000]"}), fmt.Sprintf("%q", got)
	})

	r.send(speakerConfig("", "203.0.113.0/24", "198.18.0.0/24"))
	bgptest.Eventually(t, 10*time.Second, "a network added live is announced", func() (bool, string) {
		got := r.birdLearned()
		return slices.Equal(got, []string{"198.18.0.0/24 [65000]", "203.0.113.0/24 [65000]"}), fmt.Sprintf("%q", got)
	})
	r.send(speakerConfig("", "198.18.0.0/24"))
	bgptest.Eventually(t, 10*time.Second, "a network removed live is withdrawn", func() (bool, string) {
		got := r.birdLearned()
		return slices.Equal(got, []string{"198.18.0.0/24 [65000]"}), fmt.Sprintf("%q", got)
	})
	if r.state(peer) != bgp.StateEstablished {
		t.Fatalf("changing networks disturbed the session: %s", r.state(peer))
	}

	// BIRD withdraws a route: so does the speaker.
	cfg := ispConfig("")
	cfg.Announce = cfg.Announce[:1]
	if err := r.bird.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	bgptest.Eventually(t, 10*time.Second, "a route BIRD withdraws is withdrawn", func() (bool, string) {
		return slices.Equal(r.learned(), want[:1]), fmt.Sprintf("%q", r.learned())
	})

	// Removing the peer ends its session and forgets its routes.
	r.send(bgp.SpeakerConfig{RouterID: portAddr.Addr(), LocalAS: localAS})
	bgptest.Eventually(t, 10*time.Second, "a removed peer's routes are withdrawn", func() (bool, string) {
		st, _ := r.bird.State("uplink")
		return len(r.learned()) == 0 && st != "Established", fmt.Sprintf("learned %q, BIRD %q", r.learned(), st)
	})
}

// TestSpeakerDoesNotTransit: what one peer teaches is not announced to
// another (MidoNet's "filter-list ^$ out"), only the router's networks.
func TestSpeakerDoesNotTransit(t *testing.T) {
	cfg := ispConfig("")
	r := newRig(t, cfg)
	// A second BGP session from the same BIRD, as another AS, from
	// another address on the same link.
	second := netip.MustParsePrefix("10.1.0.3/24")
	r.isp.Run(t, "ip", "addr", "add", second.String(), "dev", r.pns.Outer)
	b2 := r.isp.Bird(t, bird.Config{RouterID: second.Addr(), AS: 65002, Neighbors: []bird.Neighbor{{
		Name: "uplink", Address: portAddr.Addr(), AS: localAS, Local: second.Addr(),
		HoldTime: 9 * time.Second, KeepAlive: 3 * time.Second, ConnectRetry: time.Second,
	}}})
	// The router learns the first ISP's routes before it announces its
	// network: the second ISP hears the network after any leak would
	// have been sent.
	sc := speakerConfig("")
	sc.Peers = append(sc.Peers, bgp.PeerConfig{Address: second.Addr(), AS: 65002, KeepAlive: 3 * time.Second,
		HoldTime: 9 * time.Second, ConnectRetry: time.Second})
	r.send(sc)
	bgptest.Eventually(t, 20*time.Second, "both sessions established, the first ISP's routes learned", func() (bool, string) {
		return r.state(ispAddr.Addr()) == bgp.StateEstablished && r.state(second.Addr()) == bgp.StateEstablished &&
				len(r.learned()) == 2,
			fmt.Sprintf("%q %q, learned %q", r.state(ispAddr.Addr()), r.state(second.Addr()), r.learned())
	})
	sc.Networks = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	r.send(sc)
	bgptest.Eventually(t, 10*time.Second, "the second ISP learns the network", func() (bool, string) {
		rs, _ := b2.Routes()
		return slices.ContainsFunc(rs, func(x bird.Route) bool { return x.Prefix.String() == "203.0.113.0/24" }), fmt.Sprintf("%v", rs)
	})
	rs, err := b2.Routes()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range rs {
		if x.Prefix.String() != "203.0.113.0/24" {
			t.Errorf("the second ISP learned %s [%s] from the router: transit", x.Prefix, x.OriginAS)
		}
	}
}

// TestSpeakerMD5: a wrong TCP MD5 password keeps the session down; the
// right one, set live, brings it up.
func TestSpeakerMD5(t *testing.T) {
	r := newRig(t, ispConfig("s3cret"))
	r.send(speakerConfig("wrong", "203.0.113.0/24"))
	peer := ispAddr.Addr()
	// Several connect retries on both sides (1 s each) must all fail.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if st := r.state(peer); st == bgp.StateEstablished || st == bgp.StateOpenConfirm {
			t.Fatalf("session reached %s with a wrong password", st)
		}
		if st, _ := r.bird.State("uplink"); st == "Established" {
			t.Fatal("BIRD established a session with a wrong password")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := r.learned(); len(got) != 0 {
		t.Fatalf("learned %q with a wrong password", got)
	}
	r.send(speakerConfig("s3cret", "203.0.113.0/24"))
	bgptest.Eventually(t, 20*time.Second, "the right password brings the session up", func() (bool, string) {
		return r.state(peer) == bgp.StateEstablished && len(r.learned()) == 2, fmt.Sprintf("%q, learned %q", r.state(peer), r.learned())
	})
}

// TestSpeakerPeerFailure: a peer that goes silent is declared down when
// the hold time passes, and its routes are withdrawn; a peer that dies
// closes its session at once.
func TestSpeakerPeerFailure(t *testing.T) {
	r := newRig(t, ispConfig(""))
	r.send(speakerConfig("", "203.0.113.0/24"))
	peer := ispAddr.Addr()
	bgptest.Eventually(t, 20*time.Second, "session established", func() (bool, string) {
		return r.state(peer) == bgp.StateEstablished && len(r.learned()) == 2, fmt.Sprintf("%q %q", r.state(peer), r.learned())
	})
	if err := r.bird.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	bgptest.Eventually(t, 20*time.Second, "the hold timer ends the session of a silent peer", func() (bool, string) {
		return r.state(peer) != bgp.StateEstablished && len(r.learned()) == 0, fmt.Sprintf("%q %q", r.state(peer), r.learned())
	})
	if d := time.Since(frozen); d < 6*time.Second {
		t.Errorf("session dropped %v after the peer froze, before the hold time (9 s) could have passed since its last keepalive", d)
	}
	r.bird.Signal(syscall.SIGCONT)
	bgptest.Eventually(t, 30*time.Second, "the peer recovers and its routes come back", func() (bool, string) {
		return r.state(peer) == bgp.StateEstablished && len(r.learned()) == 2, fmt.Sprintf("%q %q", r.state(peer), r.learned())
	})
	r.bird.Kill()
	start := time.Now()
	bgptest.Eventually(t, 5*time.Second, "a killed peer's session ends", func() (bool, string) {
		return r.state(peer) != bgp.StateEstablished && len(r.learned()) == 0, fmt.Sprintf("%q %q", r.state(peer), r.learned())
	})
	t.Logf("killed peer's routes withdrawn in %v", time.Since(start))
}
