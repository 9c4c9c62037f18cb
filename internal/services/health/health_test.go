package health

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/topology"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("go.etcd.io/etcd/client/v3.(*watchGRPCStream).run"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"), goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// loopback is Plumbing whose probers reach members on loopback: a member
// at any address is the listener on 127.0.0.1 at the member's port. It
// counts the dials of its host.
type loopback struct {
	dials    atomic.Int64
	mu       sync.Mutex
	attached map[topology.ID]bool
	forgot   map[topology.ID]bool
}

func newLoopback() *loopback {
	return &loopback{attached: map[topology.ID]bool{}, forgot: map[topology.ID]bool{}}
}

func (l *loopback) Attach(ctx context.Context, router topology.ID) (Prober, error) {
	l.mu.Lock()
	l.attached[router] = true
	l.mu.Unlock()
	return l, nil
}

func (l *loopback) Detach(ctx context.Context, router topology.ID, forget bool) error {
	l.mu.Lock()
	delete(l.attached, router)
	if forget {
		l.forgot[router] = true
	}
	l.mu.Unlock()
	return nil
}

func (l *loopback) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	l.dials.Add(1)
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(int(ap.Port())))
}

// newStore starts an etcd member for the test and opens n clients to it.
func newStores(t *testing.T, n int) []*nsdb.Store {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:0", Fast: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	var out []*nsdb.Store
	for range n {
		s, err := nsdb.Open(context.Background(), nsdb.Config{Endpoints: []string{srv.ClientURL}, RequestTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out = append(out, s)
	}
	return out
}

// server is a member's listener on loopback that can be stopped and
// started again on the same port.
type server struct {
	t    *testing.T
	port int
	http bool
	code int
	mu   sync.Mutex
	ln   net.Listener
	srv  *http.Server
}

func newServer(t *testing.T, httpCode int) *server {
	s := &server{t: t, http: httpCode != 0, code: httpCode}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *server) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(s.port))
	if err != nil {
		s.t.Fatal(err)
	}
	s.ln, s.port = ln, ln.Addr().(*net.TCPAddr).Port
	if s.http {
		code := s.code
		s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) })}
		go s.srv.Serve(ln)
		return
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func (s *server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
}

// lbFixture stores a router with a load balancer, a pool monitored by hm,
// and one member per server; it returns the member ids.
func lbFixture(t *testing.T, s *nsdb.Store, hm topology.HealthMonitor, servers ...*server) (router topology.ID, members []topology.ID) {
	t.Helper()
	router, lb, pool := topology.NewID(), topology.NewID(), topology.NewID()
	hm.ID = topology.NewID()
	hm.AdminStateUp = true
	err := s.Update(t.Context(), func(tx *nsdb.Tx) error {
		members = members[:0]
		for _, o := range []nsdb.Object{
			&topology.Router{ID: router, AdminStateUp: true, LoadBalancerID: &lb},
			&topology.LoadBalancer{ID: lb, RouterID: &router, AdminStateUp: true},
			&hm,
			&topology.Pool{ID: pool, LoadBalancerID: &lb, HealthMonitorID: &hm.ID, AdminStateUp: true, Protocol: "TCP", Status: "ACTIVE"},
		} {
			if err := tx.Put(o); err != nil {
				return err
			}
		}
		for i, sv := range servers {
			m := topology.PoolMember{ID: topology.NewID(), PoolID: &pool, Address: topology.Str(fmt.Sprintf("10.9.0.%d", i+10)),
				ProtocolPort: sv.port, Weight: 1, AdminStateUp: true, Status: StatusActive}
			members = append(members, m.ID)
			if err := tx.Put(&m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return router, members
}

func status(t *testing.T, s *nsdb.Store, member topology.ID) string {
	t.Helper()
	var st string
	err := s.View(context.Background(), func(tx *nsdb.Tx) error {
		m, err := topology.GetOf[topology.PoolMember](tx, member.String())
		st = m.Status
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// startMonitor runs a monitor until the test ends (or stop is called).
func startMonitor(t *testing.T, s *nsdb.Store, p Plumbing) (m *Monitor, stop func()) {
	t.Helper()
	m, err := New(Config{Store: s, HostID: topology.NewID(), Plumbing: p, LeaseTTL: 2 * time.Second,
		PollInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return m, stop
}

func waitStatus(t *testing.T, s *nsdb.Store, member topology.ID, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if !poll.Until(func() bool { return status(t, s, member) == want }, timeout) {
		t.Fatalf("member %s is %s after %s; want %s", member, status(t, s, member), timeout, want)
	}
	return time.Since(start)
}

func TestTCPMonitorMarksDeadMemberInactiveAndBack(t *testing.T) {
	t.Parallel()
	s := newStores(t, 1)[0]
	a, b := newServer(t, 0), newServer(t, 0)
	// delay 1 s, 2 retries: a dead member is out within 3 s.
	_, members := lbFixture(t, s, topology.HealthMonitor{Type: topology.Str("TCP"), Delay: 1, Timeout: 1, MaxRetries: 2}, a, b)
	startMonitor(t, s, newLoopback())
	time.Sleep(1500 * time.Millisecond) // a few checks pass
	if status(t, s, members[0]) != StatusActive || status(t, s, members[1]) != StatusActive {
		t.Fatal("a live member was marked inactive")
	}
	a.stop()
	took := waitStatus(t, s, members[0], StatusInactive, 3*time.Second+time.Second)
	t.Logf("dead member inactive after %s (delay × (retries+1) = 3s)", took)
	if status(t, s, members[1]) != StatusActive {
		t.Error("the live member was marked inactive")
	}
	a.start()
	took = waitStatus(t, s, members[0], StatusActive, 3*time.Second)
	t.Logf("member active again after %s", took)
}

func TestHTTPMonitorChecksStatusCodes(t *testing.T) {
	t.Parallel()
	s := newStores(t, 1)[0]
	ok, teapot, redirect := newServer(t, 200), newServer(t, 418), newServer(t, 302)
	_, members := lbFixture(t, s, topology.HealthMonitor{Type: topology.Str("HTTP"), Delay: 1, Timeout: 1, MaxRetries: 1,
		ExpectedCodes: topology.Str("200-299,302"), URLPath: topology.Str("/health")}, ok, teapot, redirect)
	startMonitor(t, s, newLoopback())
	waitStatus(t, s, members[1], StatusInactive, 3*time.Second)
	if status(t, s, members[0]) != StatusActive || status(t, s, members[2]) != StatusActive {
		t.Errorf("members answering an expected code: %s, %s; want ACTIVE", status(t, s, members[0]), status(t, s, members[2]))
	}
}

// Two agents campaign; one runs the checks. When it dies without resigning
// (its store connection gone), the other takes over within the lease, and
// at no sampled instant do both run the monitors.
func TestOneMonitorAtATimeAndTakeover(t *testing.T) {
	t.Parallel()
	stores := newStores(t, 2)
	srv := newServer(t, 0)
	router, members := lbFixture(t, stores[0], topology.HealthMonitor{Type: topology.Str("TCP"), Delay: 1, Timeout: 1, MaxRetries: 1}, srv)
	pa, pb := newLoopback(), newLoopback()
	ma, _ := startMonitor(t, stores[0], pa)
	mb, _ := startMonitor(t, stores[1], pb)
	var both atomic.Bool
	sampling, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			if ma.Leading() && mb.Leading() {
				both.Store(true)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { stopSampling(); <-sampled }()
	if !poll.Until(func() bool { return ma.Leading() || mb.Leading() }, 5*time.Second) {
		t.Fatal("no monitor took the lead")
	}
	leader, leaderPlumbing, leaderStore, other, otherPlumbing, otherStore := ma, pa, stores[0], mb, pb, stores[1]
	if mb.Leading() {
		leader, leaderPlumbing, leaderStore, other, otherPlumbing, otherStore = mb, pb, stores[1], ma, pa, stores[0]
	}
	time.Sleep(1500 * time.Millisecond)
	if otherPlumbing.dials.Load() != 0 || leaderPlumbing.dials.Load() == 0 {
		t.Fatalf("dials: leader %d, other %d; want only the leader probing", leaderPlumbing.dials.Load(), otherPlumbing.dials.Load())
	}
	pa.mu.Lock()
	pb.mu.Lock()
	attached := pa.attached[router] != pb.attached[router]
	pb.mu.Unlock()
	pa.mu.Unlock()
	if !attached {
		t.Error("want the router's prober attached on exactly one host")
	}
	// The leader's agent dies: its store connection goes, nothing resigns.
	died := time.Now()
	leaderStore.Close()
	if !poll.Until(other.Leading, 6*time.Second) {
		t.Fatal("no takeover after the leader died")
	}
	t.Logf("takeover %s after the leader died (lease TTL 2s)", time.Since(died))
	if !poll.Until(func() bool { return !leader.Leading() }, 3*time.Second) {
		t.Error("the dead leader still believes it leads")
	}
	// The new leader's checks work: the member goes down with its server.
	srv.stop()
	waitStatus(t, otherStore, members[0], StatusInactive, 4*time.Second)
	if both.Load() {
		t.Error("both monitors led at once")
	}
}

// A pool whose monitor is removed gets its inactive members back to ACTIVE,
// and the router's probe plumbing is removed.
func TestUnmonitoredMembersReturnActive(t *testing.T) {
	t.Parallel()
	s := newStores(t, 1)[0]
	srv := newServer(t, 0)
	router, members := lbFixture(t, s, topology.HealthMonitor{Type: topology.Str("TCP"), Delay: 1, Timeout: 1, MaxRetries: 1}, srv)
	p := newLoopback()
	startMonitor(t, s, p)
	srv.stop()
	waitStatus(t, s, members[0], StatusInactive, 3*time.Second)
	err := s.Update(t.Context(), func(tx *nsdb.Tx) error {
		pools, err := topology.ListOf[topology.Pool](tx)
		if err != nil {
			return err
		}
		for _, pl := range pools {
			pl.HealthMonitorID = nil
			if err := tx.Put(&pl); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, members[0], StatusActive, 2*time.Second)
	if !poll.Until(func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.forgot[router] }, 2*time.Second) {
		t.Error("the router's probe plumbing was not removed")
	}
}
