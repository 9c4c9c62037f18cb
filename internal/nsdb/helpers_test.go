package nsdb

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/midonet/midonet/internal/nsdb/embedded"
	"github.com/midonet/midonet/internal/poll"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		// A member's peer connections end only when their read
		// timeout (5s) passes after the member closes: allow that.
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := goleak.Find()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
				code = 1
				break
			}
		}
	}
	os.Exit(code)
}

// widget is the object type of these tests.
type widget struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	N    int    `json:"n"`
}

func (widget) Kind() string       { return "widgets" }
func (w widget) ObjectID() string { return w.ID }

// startMember starts a single-member etcd in its own directory, stopped at
// the end of the test (after the stores registered later are closed).
func startMember(t testing.TB) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{
		DataDir:   t.TempDir(),
		ClientURL: "http://127.0.0.1:0",
		Fast:      true,
	})
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// openStore opens a store on endpoints, closed at the end of the test.
func openStore(t testing.TB, endpoints ...string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newStore starts a member and opens a store on it.
func newStore(t testing.TB) *Store {
	t.Helper()
	return openStore(t, startMember(t).ClientURL)
}

func mustUpdate(t testing.TB, s *Store, fn func(*Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("update: %v", err)
	}
}

func getWidget(t testing.TB, s *Store, id string) (widget, error) {
	t.Helper()
	var w widget
	err := s.View(context.Background(), func(tx *Tx) error {
		var err error
		w, err = Get[widget](tx, id)
		return err
	})
	return w, err
}

// cluster is three etcd members on loopback in this process. Clients
// reach each member through a proxy, which cuts their connections when the
// member is killed, as a crashed host's kernel would.
type cluster struct {
	t       testing.TB
	cfgs    []embedded.Config
	proxies []*tcpProxy
	mu      sync.Mutex
	members []*embedded.Server // nil: stopped
}

// startCluster starts a three-member cluster with ports picked beforehand.
func startCluster(t testing.TB) *cluster {
	t.Helper()
	c := &cluster{t: t, members: make([]*embedded.Server, 3)}
	cfgs, err := embedded.LocalClusterConfigs([]string{t.TempDir(), t.TempDir(), t.TempDir()}, true)
	if err != nil {
		t.Fatal(err)
	}
	c.cfgs = cfgs
	for range cfgs {
		c.proxies = append(c.proxies, newTCPProxy(t))
	}
	t.Cleanup(func() {
		// Killing is quicker than a graceful stop, which moves
		// the leadership first; the data is thrown away anyway.
		for i := range c.members {
			c.kill(i)
		}
	})
	// A member is ready only once a quorum is up: start them together.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Go(func() { errs[i] = c.start(i) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	return c
}

func (c *cluster) start(i int) error {
	srv, err := embedded.Start(c.cfgs[i])
	if err != nil {
		return err
	}
	c.proxies[i].setTarget(strings.TrimPrefix(srv.ClientURL, "http://"))
	c.mu.Lock()
	c.members[i] = srv
	c.mu.Unlock()
	return nil
}

// kill stops member i as a crash would.
func (c *cluster) kill(i int) {
	c.proxies[i].cut()
	if srv := c.take(i); srv != nil {
		srv.Kill()
	}
}

func (c *cluster) take(i int) *embedded.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	srv := c.members[i]
	c.members[i] = nil
	return srv
}

func (c *cluster) endpoints() []string {
	var eps []string
	for _, p := range c.proxies {
		eps = append(eps, "http://"+p.l.Addr().String())
	}
	return eps
}

// tcpProxy forwards connections to a target that can be cut.
type tcpProxy struct {
	l  net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	target string // "": refuse connections
	conns  map[net.Conn]bool
}

// newTCPProxy listens on a free loopback port until the test ends.
func newTCPProxy(t testing.TB) *tcpProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{l: l, conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		l.Close()
		p.cut()
		p.wg.Wait()
	})
	p.wg.Go(p.serve)
	return p
}

func (p *tcpProxy) serve() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		out, err := net.Dial("tcp", target)
		if target == "" || err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(out, in) })
		p.wg.Go(func() { pipe(in, out) })
	}
}

func (p *tcpProxy) setTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

// cut closes every connection and refuses new ones until setTarget.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = ""
	for c := range p.conns {
		c.Close()
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	if !poll.Until(cond, timeout) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}
