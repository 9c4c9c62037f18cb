// Package agent is MidoNet's per-host agent: it registers its host in the
// NSDB, keeps a compiled snapshot of the virtual topology, plugs the
// interfaces bound to virtual ports into the host's datapath, and for each
// packet the datapath cannot match simulates the virtual network, installs a
// megaflow and executes the packet. Traffic to ports on other hosts leaves
// through the VXLAN overlay with the egress port's tunnel key; the receiving
// agent delivers it by key without simulating. Connection-tracking and NAT
// state goes to the peers that may see return traffic before the packet.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// Defaults of the agent's configuration.
const (
	DefaultStateDir   = "/var/lib/midonet"
	DefaultFlowLimit  = 1 << 20
	DefaultSessionTTL = 5 * time.Second
	// StateVNI is the overlay key of flow-state messages (MidoNet's).
	StateVNI = 0xFFFFFF
	// stateEtherType marks the inner frame of a flow-state message.
	stateEtherType = 0x88b5
)

// Config configures an agent.
type Config struct {
	// HostName names the host in the NSDB.
	HostName string
	// StateDir keeps the host id and the flow state across restarts, in a
	// directory per host name: agents of several simulated hosts can share
	// one state directory without sharing an identity.
	StateDir string
	// Store is the NSDB connection.
	Store *nsdb.Store
	// Datapath is the host's datapath; the agent owns it and closes it.
	Datapath datapath.Datapath
	// Workers is the number of simulation workers; default the number of
	// cores.
	Workers int
	// TunnelPort is the overlay's UDP port (default 6677).
	TunnelPort uint16
	// FlowLimit bounds installed flows; the oldest are evicted beyond it.
	FlowLimit int
	// SessionTTL is the lease of the host's liveness and learned state.
	SessionTTL time.Duration
	// StateSaveInterval is how often the flow state is saved whole while
	// the agent runs (default 2 s); a journal holds what changes between.
	StateSaveInterval time.Duration
	// PublishInterfaces publishes the host's interfaces to the NSDB
	// (disabled in scale tests that run many agents in one namespace).
	PublishInterfaces bool
	// MetricsAddress, when set, is published as the host's metrics
	// address (nsdb.HostMetricsKey) for as long as the agent runs.
	MetricsAddress string
	Logger         *slog.Logger
	// Now returns the time; tests may drive it.
	Now func() time.Time
}

// Agent is a running agent.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	store  *nsdb.Store
	dp     datapath.Datapath
	hostID topology.ID
	now    func() time.Time
	debug  bool // log a trace of every simulation
	// freshID: the id was made at this start, so an operator's host
	// object of the same name may be adopted instead.
	freshID bool

	session *nsdb.Session

	// snap is the compiled topology the workers read without locks.
	snap atomic.Pointer[sim.Snapshot]
	topo *topoCache

	// mu guards the binding and tunnel state below.
	mu          sync.Mutex
	bound       map[topology.ID]*boundPort // virtual port -> datapath port
	byDP        map[datapath.PortNo]topology.ID
	byKey       map[uint32]topology.ID // tunnel key -> local virtual port
	vxlanPort   datapath.PortNo
	vxlanAddr   netip.Addr
	peers       map[topology.ID]netip.Addr // host -> underlay address
	dpPortsView atomic.Pointer[portTables]

	// topoKick asks the topology goroutine to reconcile bindings again.
	topoKick  chan struct{}
	routerSet atomic.Pointer[map[topology.ID]bool]

	// importMsg is the decoding scratch of importState, which runs on the
	// one datapath goroutine that delivers upcalls.
	importMsg flowstate.Message
	// journal appends the flow state committed or imported between two
	// saves (Run creates it before the workers).
	journal *stateJournal
	// pulls are the flow-state requests to migrated ports' previous hosts
	// that wait for an answer.
	pulls pullWaits

	flows   *flowTable
	state   *flowstate.Tables
	workers []*worker
	metrics *Metrics
	writer  *stateWriter

	wg     sync.WaitGroup
	cancel context.CancelFunc
	ready  chan struct{}
}

// boundPort is a virtual port plugged into the datapath here.
type boundPort struct {
	port      topology.ID
	iface     string
	dp        datapath.PortNo
	tunnelKey uint32
	up        bool
}

// portTables is an immutable copy of the binding maps for workers.
type portTables struct {
	byPort  map[topology.ID]datapath.PortNo
	byDP    map[datapath.PortNo]topology.ID
	byKey   map[uint32]datapath.PortNo
	peers   map[topology.ID]netip.Addr
	vxlan   datapath.PortNo
	localIP netip.Addr
}

// New prepares an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if cfg.Store == nil || cfg.Datapath == nil {
		return nil, errors.New("agent: a store and a datapath are required")
	}
	if cfg.HostName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent: no --host given and the hostname is unknown: %w", err)
		}
		cfg.HostName = h
	}
	if cfg.StateDir == "" {
		cfg.StateDir = DefaultStateDir
	}
	cfg.StateDir = HostStateDir(cfg.StateDir, cfg.HostName)
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.NumCPU()
	}
	if cfg.TunnelPort == 0 {
		cfg.TunnelPort = datapath.DefaultVXLANPort
	}
	if cfg.FlowLimit <= 0 {
		cfg.FlowLimit = DefaultFlowLimit
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.StateSaveInterval <= 0 {
		cfg.StateSaveInterval = defaultStateSaveInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	id, fresh, err := loadHostID(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg: cfg, store: cfg.Store, dp: cfg.Datapath, hostID: id, freshID: fresh, now: cfg.Now,
		log:   cfg.Logger.With("host_id", id.String(), "host", cfg.HostName),
		bound: map[topology.ID]*boundPort{}, byDP: map[datapath.PortNo]topology.ID{},
		byKey: map[uint32]topology.ID{}, peers: map[topology.ID]netip.Addr{},
		ready: make(chan struct{}), topoKick: make(chan struct{}, 1),
	}
	a.debug = cfg.Logger.Enabled(context.Background(), slog.LevelDebug)
	a.metrics = newMetrics()
	a.metrics.registry.MustRegister(newPortCollector(cfg.Datapath))
	a.flows = newFlowTable(a.dp, cfg.FlowLimit, a.metrics)
	a.state = flowstate.NewTables(cfg.Workers+1, flowstate.DefaultIdleTTL)
	a.topo = newTopoCache()
	a.publishPorts()
	return a, nil
}

// HostID is the host's stable id.
func (a *Agent) HostID() topology.ID { return a.hostID }

// Metrics returns the agent's Prometheus collectors.
func (a *Agent) Metrics() *Metrics { return a.metrics }

// Ready is closed once the agent has loaded the topology and bound its ports.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// safeName turns a host name into a directory name.
func safeName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') || (c == '.' && i == 0) {
			b[i] = '_'
		}
	}
	return string(b)
}

// loadHostID reads the host id kept in the state directory, creating it on
// first start so the host keeps its identity across restarts.
func loadHostID(dir string) (id topology.ID, fresh bool, err error) {
	path := filepath.Join(dir, "host_id")
	if b, err := os.ReadFile(path); err == nil {
		id, err := topology.ParseID(strings.TrimSpace(string(b)))
		if err != nil {
			return id, false, fmt.Errorf("agent: %s holds %q, not a host id; remove it to get a new one", path, b)
		}
		return id, false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return topology.ID{}, false, fmt.Errorf("agent: read host id: %w", err)
	}
	id = topology.NewID()
	return id, true, saveHostID(dir, id)
}

func saveHostID(dir string, id topology.ID) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("agent: state directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "host_id"), []byte(id.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("agent: write host id: %w", err)
	}
	return nil
}

// Run runs the agent until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	ctx, a.cancel = context.WithCancel(ctx)
	defer a.cancel()
	if err := a.register(ctx); err != nil {
		return err
	}
	a.log.Info("agent starting", "workers", a.cfg.Workers)
	a.loadState()
	a.journal = newStateJournal(a.cfg.StateDir, a.log, a.metrics)
	a.writer = newStateWriter(a)
	a.workers = make([]*worker, a.cfg.Workers)
	for i := range a.workers {
		a.workers[i] = newWorker(a, i)
	}
	a.dp.SetPortEventHandler(datapath.PortEventHandlerFunc(a.handlePortEvent))
	a.dp.SetUpcallHandler(datapath.UpcallHandlerFunc(a.dispatch))
	for _, w := range a.workers {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); w.run(ctx) }()
	}
	a.wg.Add(5)
	go func() { defer a.wg.Done(); a.journal.run(ctx) }()
	go func() { defer a.wg.Done(); a.writer.run(ctx) }()
	go func() { defer a.wg.Done(); a.expireLoop(ctx) }()
	go func() { defer a.wg.Done(); a.followTopology(ctx) }()
	go func() { defer a.wg.Done(); a.saveStateLoop(ctx) }()
	if a.cfg.PublishInterfaces {
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.publishInterfacesLoop(ctx) }()
	}
	<-ctx.Done()
	a.log.Info("agent stopping")
	a.dp.SetUpcallHandler(nil)
	a.wg.Wait()
	if n, ok := a.saveState(); ok && n > 0 {
		a.log.Info("flow state saved", "file", a.stateFile(), "keys", n)
	}
	a.journal.close()
	if a.session != nil {
		a.session.Close()
	}
	a.log.Info("agent stopped")
	return nil
}

// register makes sure the host object exists with its name and starts the
// session that keeps the host alive.
func (a *Agent) register(ctx context.Context) error {
	if a.freshID {
		if err := a.adoptHost(ctx); err != nil {
			return err
		}
	}
	err := a.store.Update(ctx, func(tx *nsdb.Tx) error {
		var h topology.Host
		err := tx.Get(topology.KindHost, a.hostID.String(), &h)
		switch {
		case errors.Is(err, topology.ErrNotFound):
			h = topology.Host{ID: a.hostID, FloodingProxyWeight: 1, ContainerWeight: 1, ContainerLimit: -1}
		case err != nil:
			return err
		}
		if h.Name != nil && *h.Name == a.cfg.HostName {
			return nil
		}
		h.Name = topology.Str(a.cfg.HostName)
		return tx.Put(&h)
	})
	if err != nil {
		return fmt.Errorf("agent: register host %s: %w", a.hostID, err)
	}
	a.session, err = a.store.NewSession(ctx, nsdb.SessionConfig{TTL: a.cfg.SessionTTL})
	if err != nil {
		return fmt.Errorf("agent: open a session: %w", err)
	}
	if err := a.session.SetState(ctx, nsdb.HostAliveKey(a.hostID.String()), []byte(a.cfg.HostName)); err != nil {
		return fmt.Errorf("agent: mark host alive: %w", err)
	}
	if a.cfg.MetricsAddress != "" {
		if err := a.session.SetState(ctx, nsdb.HostMetricsKey(a.hostID.String()), []byte(a.cfg.MetricsAddress)); err != nil {
			return fmt.Errorf("agent: publish the metrics address: %w", err)
		}
	}
	a.log.Info("host registered", "name", a.cfg.HostName)
	return nil
}

// adoptHost takes over the id of a host object an operator created with
// this agent's name (POST /hosts before the agent first ran, to bind
// ports in advance), unless an agent already keeps that host alive.
func (a *Agent) adoptHost(ctx context.Context) error {
	var match []topology.Host
	err := a.store.View(ctx, func(tx *nsdb.Tx) error {
		hosts, err := topology.ListOf[topology.Host](tx)
		for _, h := range hosts {
			if h.Name != nil && *h.Name == a.cfg.HostName && h.ID != a.hostID {
				match = append(match, h)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("agent: look up host %s: %w", a.cfg.HostName, err)
	}
	if len(match) != 1 {
		return nil
	}
	if _, err := a.store.GetState(ctx, nsdb.HostAliveKey(match[0].ID.String())); err == nil {
		return nil // another agent runs as this host
	}
	if err := saveHostID(a.cfg.StateDir, match[0].ID); err != nil {
		return err
	}
	a.hostID = match[0].ID
	a.log = a.cfg.Logger.With("host_id", a.hostID.String(), "host", a.cfg.HostName)
	a.log.Info("host adopted: an operator created it with this name")
	return nil
}

// Flows returns the number of flows the agent has installed.
func (a *Agent) Flows() int { return a.flows.len() }
