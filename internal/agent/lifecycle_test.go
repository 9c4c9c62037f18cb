package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/mem"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/memstore"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/topology"
)

var _ Store = (*memstore.Store)(nil)

// untouchable panics on any call: New must make none.
type untouchable struct {
	datapath.Datapath
	Store
}

func TestConfigValidate(t *testing.T) {
	ok := func() Config { return Config{HostName: "h1", Store: memstore.New(), Datapath: untouchable{}} }
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string // in the error; "" for valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no host name", func(c *Config) { c.HostName = "" }, "HostName"},
		{"no store", func(c *Config) { c.Store = nil }, "Store"},
		{"no datapath", func(c *Config) { c.Datapath = nil }, "Datapath"},
		{"negative workers", func(c *Config) { c.Workers = -1 }, "Workers is -1"},
		{"negative flow limit", func(c *Config) { c.FlowLimit = -5 }, "FlowLimit is -5"},
		{"session below a second", func(c *Config) { c.SessionTTL = 10 * time.Millisecond }, "SessionTTL is 10ms"},
		{"negative save interval", func(c *Config) { c.StateSaveInterval = -time.Second }, "StateSaveInterval"},
		{"two services of one name", func(c *Config) { c.Services = []Service{&recorder{name: "x"}, &recorder{name: "x"}} }, `named "x"`},
		{"a nil service", func(c *Config) { c.Services = []Service{nil} }, "Services[0] is nil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
			if _, nerr := New(c); (nerr == nil) != (err == nil) {
				t.Fatalf("New returned %v where Validate returned %v", nerr, err)
			}
		})
	}
	c := NewConfig("h1", memstore.New(), untouchable{})
	if c.FlowLimit != DefaultFlowLimit || c.SessionTTL != DefaultSessionTTL || c.StateDir != DefaultStateDir ||
		c.TunnelPort != datapath.DefaultVXLANPort || c.Workers < 1 || c.Validate() != nil {
		t.Errorf("NewConfig defaults: %+v", c)
	}
}

// New touches neither the disk, nor the datapath, nor the store.
func TestNewDoesNoIO(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	a, err := New(Config{HostName: "h1", StateDir: dir, Store: untouchable{}, Datapath: untouchable{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New created the state directory (stat: %v)", err)
	}
	if a.HostID() != (topology.ID{}) {
		t.Error("a host id is known before Run")
	}
}

// failingStore refuses every transaction.
type failingStore struct{ *memstore.Store }

var errStoreDown = errors.New("store down")

func (failingStore) Update(context.Context, func(topology.Store) error) error { return errStoreDown }

// Run returns what keeps the agent from starting, having started nothing;
// a second Run is refused.
func TestRunReturnsStartErrors(t *testing.T) {
	dp := mem.New(mem.Config{})
	defer dp.Close()
	a, err := New(Config{HostName: "h1", StateDir: t.TempDir(), Store: failingStore{memstore.New()}, Datapath: dp})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = a.Run(ctx)
	if !errors.Is(err, errStoreDown) || !strings.Contains(err.Error(), "register host") {
		t.Fatalf("Run returned %v, want the registration's failure", err)
	}
	if len(dp.Ports()) != 0 {
		t.Errorf("a failed start left %d datapath ports", len(dp.Ports()))
	}
	if err := a.Run(ctx); !errors.Is(err, ErrRunTwice) {
		t.Errorf("second Run: %v, want ErrRunTwice", err)
	}

	// A host id that cannot be read stops the start too, naming the file.
	dir := t.TempDir()
	os.MkdirAll(HostStateDir(dir, "h2"), 0o755)
	os.WriteFile(filepath.Join(HostStateDir(dir, "h2"), "host_id"), []byte("not an id"), 0o644)
	b, _ := New(Config{HostName: "h2", StateDir: dir, Store: memstore.New(), Datapath: dp})
	if err := b.Run(ctx); err == nil || !strings.Contains(err.Error(), "host_id") {
		t.Fatalf("Run with a corrupt host id: %v", err)
	}
}

// recorder is a service that records what the agent tells it, and fails
// its first run if told to.
type recorder struct {
	name     string
	failOnce bool

	mu      sync.Mutex
	runs    int
	host    *ServiceHost
	bound   map[topology.ID]BoundPort
	unbound []topology.ID
}

func (r *recorder) Name() string { return r.name }

func (r *recorder) Run(ctx context.Context, h *ServiceHost) error {
	r.mu.Lock()
	r.runs++
	r.host = h
	first := r.runs == 1
	r.mu.Unlock()
	if first && r.failOnce {
		return errors.New("first run fails")
	}
	// A service writes what it owns through the agent's session.
	if err := h.Session.SetState(ctx, nsdb.HostInterfaceKey(h.ID.String(), "svc-"+r.name), []byte("up")); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func (r *recorder) PortBound(p BoundPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bound == nil {
		r.bound = map[topology.ID]BoundPort{}
	}
	r.bound[p.ID] = p
}

func (r *recorder) PortUnbound(p BoundPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.bound, p.ID)
	r.unbound = append(r.unbound, p.ID)
}

func (r *recorder) state() (runs int, host *ServiceHost, bound map[topology.ID]BoundPort, unbound []topology.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := map[topology.ID]BoundPort{}
	for k, v := range r.bound {
		b[k] = v
	}
	return r.runs, r.host, b, append([]topology.ID(nil), r.unbound...)
}

// A service runs once the agent is ready, is restarted after a failure,
// sees the snapshot and the session, and is told of ports as they are
// bound and unbound.
func TestServicesRunAndFollowBindings(t *testing.T) {
	c := newCloud(t)
	svc := &recorder{name: "probe", failOnce: true}
	h1 := c.addAgentWith("h1", "10.9.0.1", func(cfg *Config) { cfg.Services = []Service{svc} })
	if !poll.Until(func() bool { runs, _, _, _ := svc.state(); return runs >= 2 }, 5*time.Second) {
		t.Fatal("the service was not restarted after its first run failed")
	}
	if counterValue(h1.metrics.serviceFailures.WithLabelValues("probe")) != 1 {
		t.Error("the failure was not counted")
	}
	_, host, _, _ := svc.state()
	if host.ID != h1.HostID() || host.Snapshot() == nil || host.Ports() == nil || host.Flows != h1.flows {
		t.Fatalf("service host %+v: want the agent's id, snapshot, ports and flows", host)
	}
	if !poll.Until(func() bool {
		_, err := c.store.GetState(context.Background(), nsdb.HostInterfaceKey(h1.HostID().String(), "svc-probe"))
		return err == nil
	}, 5*time.Second) {
		t.Error("the service's session key never appeared")
	}

	bridge := topology.NewID()
	c.update(func(tx topology.Store) error { return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}) })
	p1 := c.bridgePort(bridge, h1, "vm1")
	dp1 := h1.dpPort(t, "vm1", p1)
	if !poll.Until(func() bool { _, _, b, _ := svc.state(); return b[p1].DatapathPort == dp1 }, 5*time.Second) {
		_, _, b, _ := svc.state()
		t.Fatalf("bound ports %v, want %s on datapath port %d", b, p1, dp1)
	}
	c.update(func(tx topology.Store) error {
		var p topology.Port
		if err := tx.Get(topology.KindPort, p1.String(), &p); err != nil {
			return err
		}
		p.HostID, p.InterfaceName = nil, nil
		return tx.Put(&p)
	})
	if !poll.Until(func() bool { _, _, b, u := svc.state(); return len(b) == 0 && len(u) == 1 && u[0] == p1 }, 5*time.Second) {
		_, _, b, u := svc.state()
		t.Fatalf("after the unbinding: bound %v, unbound %v", b, u)
	}
	h1.stop()
	if _, err := c.store.GetState(context.Background(), nsdb.HostInterfaceKey(h1.HostID().String(), "svc-probe")); err == nil {
		t.Error("the service's session key outlived the agent")
	}
}
