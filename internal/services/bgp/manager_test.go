package bgp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
	"github.com/midonet/midonet/internal/services/bgp"
	"github.com/midonet/midonet/internal/services/bgp/bgptest"
	"github.com/midonet/midonet/internal/services/bgp/bird"
	"github.com/midonet/midonet/internal/services/bgp/speaker"
	"github.com/midonet/midonet/internal/topology"
)

var storeURL string

func TestMain(m *testing.M) {
	bgptest.RunSpeakerIfChild(func() error {
		return speaker.Main(context.Background(), os.Stdin, os.Stdout, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	})
	dir, err := os.MkdirTemp("", "bgp-test")
	if err != nil {
		panic(err)
	}
	member, err := embedded.Start(embedded.Config{DataDir: dir, ClientURL: "http://127.0.0.1:0", Fast: true})
	if err != nil {
		panic(err)
	}
	storeURL = member.ClientURL
	code := m.Run()
	member.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// wire stands in for the agent's datapath: it moves the port namespace's
// outer interface into the ISP namespace, so the port and the ISP share a
// link.
type wire struct {
	isp  *bgptest.NS
	addr netip.Prefix

	mu       sync.Mutex
	attached map[topology.ID][]netip.Addr
}

func (w *wire) Attach(spec bgp.PortSpec, ifname string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.attached[spec.Port]; !ok {
		if out, err := runIP("link", "set", ifname, "netns", w.isp.Name); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if out, err := runIP("-n", w.isp.Name, "addr", "add", w.addr.String(), "dev", ifname); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if out, err := runIP("-n", w.isp.Name, "link", "set", ifname, "up"); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
	}
	w.attached[spec.Port] = spec.Peers()
	return nil
}

// Detach deletes the outer interface, as the agent's namespace close does
// in its own namespace.
func (w *wire) Detach(port topology.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.attached, port)
	hex := strings.ReplaceAll(port.String(), "-", "")
	runIP("-n", w.isp.Name, "link", "del", "tbgm"+hex[:8])
}

func (w *wire) peers(port topology.ID) ([]netip.Addr, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.attached[port]
	return p, ok
}

// managerRig is a Manager serving one uplink against BIRD, writing to a
// store of its own.
type managerRig struct {
	t     *testing.T
	store *nsdb.Store
	mgr   *bgp.Manager
	wire  *wire
	bird  *bird.Daemon
	host  topology.ID
	topo  bgp.Topology
	// peerID is the peer's, kept when the test removes it.
	peerID topology.ID
}

var (
	portSubnet = netip.MustParsePrefix("10.1.0.2/24")
	ispSubnet  = netip.MustParsePrefix("10.1.0.1/24")
)

func newManagerRig(t *testing.T) *managerRig {
	bgptest.Require(t)
	store, err := nsdb.Open(context.Background(), nsdb.Config{Endpoints: []string{storeURL},
		Prefix: fmt.Sprintf("/bgp-test/%d/%s", os.Getpid(), t.Name())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	se, err := store.NewSession(context.Background(), nsdb.SessionConfig{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { se.Close() })
	isp := bgptest.NewNS(t, bgptest.Name("tbgmi"))
	r := &managerRig{t: t, store: store, host: topology.NewID(), wire: &wire{isp: isp, addr: ispSubnet, attached: map[topology.ID][]netip.Addr{}}}
	r.bird = isp.Bird(t, bird.Config{
		RouterID: ispSubnet.Addr(), AS: 65001,
		Announce: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("198.51.100.1/32")},
		Neighbors: []bird.Neighbor{{Name: "uplink", Address: portSubnet.Addr(), AS: 65000, Local: ispSubnet.Addr(),
			HoldTime: 9 * time.Second, KeepAlive: 3 * time.Second, ConnectRetry: time.Second}},
	})
	r.mgr, err = bgp.New(bgp.Config{Host: r.host, States: se, Plumbing: r.wire, Command: bgptest.SpeakerCommand(),
		InterfacePrefix: "tbgm", RetryInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.mgr.Start(ctx)
	t.Cleanup(func() { cancel(); r.mgr.Wait() })

	router := topology.Router{ID: topology.NewID(), AdminStateUp: true, ASNumber: 65000}
	h := r.host
	port := topology.Port{ID: topology.NewID(), Type: topology.PortTypeRouter, DeviceID: router.ID, AdminStateUp: true,
		HostID: &h, InterfaceName: topology.Str("up0"), PortSubnet: []string{portSubnet.String()},
		PortMAC: topology.Str("ac:ca:ba:00:01:02")}
	three, nine, one := 3, 9, 5
	peer := topology.BGPPeer{ID: topology.NewID(), RouterID: router.ID, Address: topology.Str(ispSubnet.Addr().String()),
		ASNumber: 65001, KeepAlive: &three, HoldTime: &nine, ConnectRetry: &one}
	r.peerID = peer.ID
	r.topo = bgp.Topology{Routers: []topology.Router{router}, Ports: []topology.Port{port}, Peers: []topology.BGPPeer{peer},
		Networks: []topology.BGPNetwork{{ID: topology.NewID(), RouterID: router.ID, SubnetAddress: topology.Str("203.0.113.0"), SubnetLength: 24}}}
	return r
}

func (r *managerRig) port() topology.Port { return r.topo.Ports[0] }

// plan hands the manager the rig's topology, as the agent does on every
// change.
func (r *managerRig) plan() { r.mgr.Update(bgp.Plan(r.host, r.topo)) }

// storedRoutes lists the learned routes in the store as "dst via gw".
func (r *managerRig) storedRoutes() []string {
	es, _, err := r.store.ListState(context.Background(), nsdb.PortRoutesPrefix(r.port().ID.String()))
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		var rt topology.Route
		if err := json.Unmarshal(e.Value, &rt); err != nil {
			r.t.Fatalf("route %s: %v", e.Key, err)
		}
		if !rt.Learned || *rt.NextHopPort != r.port().ID || rt.RouterID != r.port().DeviceID || !e.Leased {
			r.t.Fatalf("route %s: %+v (leased %v), want a leased learned route of the router via the port", e.Key, rt, e.Leased)
		}
		out = append(out, rt.DstPrefix().String()+" via "+*rt.NextHopGateway)
	}
	slices.Sort(out)
	return out
}

func (r *managerRig) peerStatus() (topology.BGPSessionStatus, bool) {
	e, err := r.store.GetState(context.Background(), nsdb.BGPPeerStatusKey(r.peerID.String()))
	if err != nil {
		return topology.BGPSessionStatus{}, false
	}
	var st topology.BGPSessionStatus
	if err := json.Unmarshal(e.Value, &st); err != nil {
		r.t.Fatal(err)
	}
	return st, true
}

func (r *managerRig) portStatus() string {
	e, err := r.store.GetState(context.Background(), nsdb.PortBGPKey(r.port().ID.String()))
	if err != nil {
		return ""
	}
	return string(e.Value)
}

func (r *managerRig) birdLearned() []string {
	rs, err := r.bird.Routes()
	if err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for _, x := range rs {
		out = append(out, x.Prefix.String())
	}
	slices.Sort(out)
	return out
}

var ispRoutes = []string{"0.0.0.0/0 via 10.1.0.1", "198.51.100.1/32 via 10.1.0.1"}

// TestManagerLearnsIntoTheStore: the manager's speaker peers with BIRD;
// what it learns becomes the router's learned routes in the store, with
// the session's state; the router's networks, peers and AS follow live;
// stopping removes everything it wrote.
func TestManagerLearnsIntoTheStore(t *testing.T) {
	r := newManagerRig(t)
	r.plan()
	bgptest.Eventually(t, 20*time.Second, "the learned routes in the store", func() (bool, string) {
		return slices.Equal(r.storedRoutes(), ispRoutes), fmt.Sprintf("%q", r.storedRoutes())
	})
	if peers, ok := r.wire.peers(r.port().ID); !ok || !slices.Equal(peers, []netip.Addr{ispSubnet.Addr()}) {
		t.Fatalf("the datapath was asked to carry the sessions of %v (attached %v), want the peer's", peers, ok)
	}
	bgptest.Eventually(t, 5*time.Second, "the peer's status", func() (bool, string) {
		st, _ := r.peerStatus()
		return st.State == "Established" && st.Routes == 2 && st.PortID == r.port().ID && st.HostID == r.host,
			fmt.Sprintf("%+v", st)
	})
	if s := r.portStatus(); !strings.Contains(s, "peer 10.1.0.1 AS 65001: Established") || !strings.Contains(s, "2 learned routes") {
		t.Errorf("port status %q", s)
	}
	bgptest.Eventually(t, 10*time.Second, "BIRD learns the network", func() (bool, string) {
		return slices.Equal(r.birdLearned(), []string{"203.0.113.0/24"}), fmt.Sprintf("%q", r.birdLearned())
	})

	// Networks follow the topology.
	r.topo.Networks = append(r.topo.Networks, topology.BGPNetwork{ID: topology.NewID(), RouterID: r.port().DeviceID,
		SubnetAddress: topology.Str("198.18.0.0"), SubnetLength: 24})
	r.plan()
	bgptest.Eventually(t, 10*time.Second, "a network added is announced", func() (bool, string) {
		return slices.Equal(r.birdLearned(), []string{"198.18.0.0/24", "203.0.113.0/24"}), fmt.Sprintf("%q", r.birdLearned())
	})
	r.topo.Networks = r.topo.Networks[1:]
	r.plan()
	bgptest.Eventually(t, 10*time.Second, "a network removed is withdrawn", func() (bool, string) {
		return slices.Equal(r.birdLearned(), []string{"198.18.0.0/24"}), fmt.Sprintf("%q", r.birdLearned())
	})

	// BIRD withdraws: so does the store.
	if _, err := r.bird.Birdc("disable", "announced"); err != nil {
		t.Fatal(err)
	}
	bgptest.Eventually(t, 10*time.Second, "withdrawn routes leave the store", func() (bool, string) {
		return len(r.storedRoutes()) == 0, fmt.Sprintf("%q", r.storedRoutes())
	})
	if _, err := r.bird.Birdc("enable", "announced"); err != nil {
		t.Fatal(err)
	}
	bgptest.Eventually(t, 10*time.Second, "announced again", func() (bool, string) {
		return slices.Equal(r.storedRoutes(), ispRoutes), fmt.Sprintf("%q", r.storedRoutes())
	})

	// A new local AS the peer does not expect: a new speaker, the session
	// refused, the routes gone; back to the old one, all back.
	r.topo.Routers[0].ASNumber = 65010
	r.plan()
	bgptest.Eventually(t, 10*time.Second, "a refused AS takes the routes out", func() (bool, string) {
		st, _ := r.peerStatus()
		return len(r.storedRoutes()) == 0 && st.State != "Established" && strings.Contains(r.portStatus(), "BGP AS 65010"),
			fmt.Sprintf("%q %+v %q", r.storedRoutes(), st, r.portStatus())
	})
	r.topo.Routers[0].ASNumber = 65000
	r.plan()
	bgptest.Eventually(t, 20*time.Second, "the right AS brings them back", func() (bool, string) {
		return slices.Equal(r.storedRoutes(), ispRoutes), fmt.Sprintf("%q", r.storedRoutes())
	})

	// The peer's timers change live; its session restarts and comes back.
	five := 5
	r.topo.Peers[0].KeepAlive = &five
	r.plan()
	bgptest.Eventually(t, 20*time.Second, "the session with changed timers", func() (bool, string) {
		st, _ := r.peerStatus()
		return st.State == "Established" && slices.Equal(r.storedRoutes(), ispRoutes), fmt.Sprintf("%+v %q", st, r.storedRoutes())
	})

	// Without an AS the router speaks no BGP, and says so.
	r.topo.Routers[0].ASNumber = 0
	r.plan()
	bgptest.Eventually(t, 10*time.Second, "BGP off without an AS", func() (bool, string) {
		st, _ := r.peerStatus()
		return len(r.storedRoutes()) == 0 && st.State == "Off" && strings.Contains(r.portStatus(), "no AS number"),
			fmt.Sprintf("%q %+v %q", r.storedRoutes(), st, r.portStatus())
	})
	if _, ok := r.wire.peers(r.port().ID); ok {
		t.Error("the namespace is still attached to the datapath with BGP off")
	}
	r.topo.Routers[0].ASNumber = 65000
	r.plan()
	bgptest.Eventually(t, 20*time.Second, "BGP on again", func() (bool, string) {
		return slices.Equal(r.storedRoutes(), ispRoutes), fmt.Sprintf("%q", r.storedRoutes())
	})

	// The peer removed: its routes and status go.
	r.topo.Peers = nil
	r.plan()
	bgptest.Eventually(t, 10*time.Second, "a removed peer's routes and statuses leave the store", func() (bool, string) {
		_, ok := r.peerStatus()
		return len(r.storedRoutes()) == 0 && !ok && r.portStatus() == "", fmt.Sprintf("%q %v %q", r.storedRoutes(), ok, r.portStatus())
	})
}

// TestManagerSpeakerCrash: a speaker that dies takes its routes out of the
// store, and a new one brings them back.
func TestManagerSpeakerCrash(t *testing.T) {
	r := newManagerRig(t)
	r.plan()
	bgptest.Eventually(t, 20*time.Second, "the learned routes in the store", func() (bool, string) {
		return slices.Equal(r.storedRoutes(), ispRoutes), fmt.Sprintf("%q", r.storedRoutes())
	})
	pid := speakerPid(t, r.portStatus())
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	bgptest.Eventually(t, 20*time.Second, "a new speaker and the routes again", func() (bool, string) {
		s := r.portStatus()
		return strings.Contains(s, "Established") && !strings.Contains(s, fmt.Sprintf("pid %d,", pid)) &&
			slices.Equal(r.storedRoutes(), ispRoutes), fmt.Sprintf("%q %q", s, r.storedRoutes())
	})
}

func speakerPid(t *testing.T, status string) int {
	t.Helper()
	var pid int
	i := strings.Index(status, "speaker pid ")
	if i < 0 {
		t.Fatalf("no speaker pid in %q", status)
	}
	fmt.Sscanf(status[i+len("speaker pid "):], "%d", &pid)
	if pid == 0 {
		t.Fatalf("no speaker pid in %q", status)
	}
	return pid
}

func runIP(args ...string) (string, error) {
	out, err := execCommand("ip", args...)
	return out, err
}

func execCommand(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestFullTableFeed measures how fast a full table reaches the store: BIRD
// announces MIDONET_BGP_FEED prefixes (e.g. 100000) and the test times
// them from the session's establishment to the last key written, then
// their withdrawal. Run by hand:
//
//	MIDONET_BGP_FEED=100000 go test -run TestFullTableFeed -v ./internal/services/bgp
func TestFullTableFeed(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MIDONET_BGP_FEED"))
	if n <= 0 {
		t.Skip("set MIDONET_BGP_FEED to the number of prefixes to feed")
	}
	r := newManagerRig(t)
	cfg := bird.Config{
		RouterID: ispSubnet.Addr(), AS: 65001,
		Neighbors: []bird.Neighbor{{Name: "uplink", Address: portSubnet.Addr(), AS: 65000, Local: ispSubnet.Addr(),
			HoldTime: 9 * time.Second, KeepAlive: 3 * time.Second, ConnectRetry: time.Second}},
	}
	for i := range n {
		cfg.Announce = append(cfg.Announce, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(11 + i>>16), byte(i >> 8), byte(i), 0}), 24))
	}
	if err := r.bird.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		es, _, err := r.store.ListState(context.Background(), nsdb.PortRoutesPrefix(r.port().ID.String()))
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r.plan()
	bgptest.Eventually(t, 30*time.Second, "session established", func() (bool, string) {
		st, _ := r.peerStatus()
		return st.State == "Established", st.State
	})
	start := time.Now()
	bgptest.Eventually(t, 10*time.Minute, "every prefix in the store", func() (bool, string) {
		c := count()
		return c == n, strconv.Itoa(c)
	})
	d := time.Since(start)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	t.Logf("%d learned routes in the store in %v: %.0f routes/s; the test process's heap grew by %d MiB after GC "+
		"(the embedded store's copy, the manager's RIB, the session's copy for lease renewals)",
		n, d.Round(time.Millisecond), float64(n)/d.Seconds(), (int64(ms.HeapAlloc)-int64(before.HeapAlloc))>>20)
	if _, err := r.bird.Birdc("disable", "announced"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	bgptest.Eventually(t, 10*time.Minute, "every prefix withdrawn", func() (bool, string) {
		c := count()
		return c == 0, strconv.Itoa(c)
	})
	d = time.Since(start)
	t.Logf("%d withdrawn in %v: %.0f routes/s", n, d.Round(time.Millisecond), float64(n)/d.Seconds())
}
