// Package agent is MidoNet's per-host agent: it registers its host in the
// NSDB, keeps a compiled snapshot of the virtual topology, plugs the
// interfaces bound to virtual ports into the host's datapath, and for each
// packet the datapath cannot match simulates the virtual network, installs
// a megaflow and executes the packet. Traffic to ports on other hosts
// leaves through the VXLAN overlay with the egress port's tunnel key; the
// receiving agent delivers it by key without simulating. Connection-tracking
// and NAT state goes to the peers that may see return traffic before the
// packet.
//
// # The packet path
//
//		datapath ──miss──▶ dispatch.go ──▶ worker.go ──────────▶ package translate ──▶ datapath
//		                   input, pick     simulate (package sim),  result → actions     execute the packet;
//		                   a worker        act on the result                             install (package flows)
//
//	 1. Input (dispatch.go): the datapath delivers a miss. Flow-state
//	    messages from peers are imported there, before any packet queued
//	    after them is simulated.
//	 2. Dispatch (dispatch.go): a worker is chosen by connection hash, so
//	    both directions of a connection meet on one worker, which owns its
//	    simulator scratch space and its flow-state shard.
//	 3. Simulate (worker.go): the packet's match (its datapath flow key,
//	    decoded once by the datapath) goes through the snapshot; the result
//	    says forward, drop, wait for ARP or answer.
//	 4. Translate (package translate): the egress ports and header rewrites
//	    become datapath actions, a pure function of the result.
//	 5. Output (worker.go, state.go): flow state goes to the peers first,
//	    then the packet is executed, then its flow installed (package flows
//	    keeps the index).
//	 6. Invalidate (topo.go, bindings.go, state.go, arrivals.go): a
//	    topology change, a binding change, a state key that expires or
//	    newly arrives removes exactly the flows tagged with it; flows also
//	    expire by hard timeout.
//
// Around the path: topo.go follows the store into snapshots (servicecache.go
// adds load balancers, mirrors, QoS marks and L2 insertions, and sets the
// bandwidth limits of the ports bound here), bindings.go
// plugs ports and opens the overlay, writer.go writes learned state to the
// store off the packet path, persist.go and journal.go keep the flow state
// across restarts, migrate.go pulls it for a port that moved here,
// natlease.go leases the SNAT port blocks the simulation allocates from
// (a packet whose SNAT needs a new block waits for it, as one that needs
// ARP does), and tracing.go traces the packets that match enabled trace
// requests (logs, counts and publishes them).
//
// # In parallel
//
// No lock is held across workers on the path. The datapath delivers a
// port's misses one at a time and different ports' at once, and never under
// a datapath-wide lock (datapath.UpcallHandler). dispatch only imports
// peers' flow state or picks a worker; on a quiet host it handles a miss
// inline, holding only that worker's lock, when the worker has nothing
// queued. Workers simulate at once, each with its own scratch space and
// flow-state shard; the flow table's lock guards only its indexes, and the
// datapath's flow puts and deletes are made outside it, in order, in
// batches where the backend takes them (datapath.FlowBatcher).
//
// # Services
//
// Jobs beside the packet path (a BGP speaker per uplink port, health
// monitors, a metadata proxy) are Services (services.go), given in
// Config.Services: the agent runs each for its host once the topology is
// loaded, restarts it if it fails, and tells the ones that implement
// PortWatcher when ports are bound here and unbound, and offers every miss
// first to the ones that implement PacketTaker (take.go). A ServiceHost
// gives them the snapshot, the datapath, the flow table and the store
// session.
// DHCP needs no service: it is answered inside the simulation, as ARP is,
// with generated packets the worker already sends.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flows"
	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
	"github.com/midonet/midonet/internal/translate"
)

// Defaults of the agent's configuration.
const (
	DefaultStateDir          = "/var/lib/midonet"
	DefaultFlowLimit         = 1 << 20
	DefaultSessionTTL        = 5 * time.Second
	DefaultStateSaveInterval = 2 * time.Second
	// StateVNI is the overlay key of flow-state messages (MidoNet's).
	StateVNI = 0xFFFFFF
	// stateEtherType marks the inner frame of a flow-state message.
	stateEtherType = 0x88b5
)

// Config configures an agent. Zero fields take their defaults (NewConfig
// shows them); Validate says what is wrong with the rest.
type Config struct {
	// HostName names the host in the NSDB. Required.
	HostName string
	// StateDir keeps the host id and the flow state across restarts, in a
	// directory per host name: agents of several simulated hosts can share
	// one state directory without sharing an identity.
	StateDir string
	// Store is the NSDB (NSDB wraps an nsdb.Store). Required.
	Store Store
	// Datapath is the host's datapath. Required. The agent uses it until
	// Run returns; the caller closes it.
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
	// the agent runs; a journal holds what changes between.
	StateSaveInterval time.Duration
	// PublishInterfaces publishes the host's interfaces to the NSDB
	// (disabled in scale tests that run many agents in one namespace).
	PublishInterfaces bool
	// MetricsAddress, when set, is published as the host's metrics
	// address (nsdb.HostMetricsKey) for as long as the agent runs.
	MetricsAddress string
	// Services run beside the packet path (see Service).
	Services []Service
	Logger   *slog.Logger
	// Now returns the time; tests may drive it.
	Now func() time.Time
	// MACExpire, ARPRetry, ARPStale and ARPExpire age the learned tables
	// (ageing.go); defaults MidoNet's 15 s, 10 s, 60 s and 90 s.
	MACExpire, ARPRetry, ARPStale, ARPExpire time.Duration
	// FlowTimeout caps the hard timeout of installed flows (default, and
	// at most, MidoNet's 60 s; stateful flows get 30 s): with a shorter
	// one, the flows of a MAC that went silent leave sooner, and its
	// mapping MACExpire later.
	FlowTimeout time.Duration
	// InterfaceMTU reads a host interface's MTU, which MSS clamping
	// compares with the overlay's (default: the kernel's; tests stub it).
	InterfaceMTU func(name string) (int, error)
	// NoReplyFlows turns off installing a stateful connection's reply
	// flow with its forward flow (reply.go): each reply is then simulated
	// when it arrives, as before; for comparisons.
	NoReplyFlows bool
}

// NewConfig returns a configuration with every default filled in, for the
// host named name on store and dp.
func NewConfig(name string, store Store, dp datapath.Datapath) Config {
	c := Config{HostName: name, Store: store, Datapath: dp}
	c.fillDefaults()
	return c
}

// fillDefaults gives zero fields their defaults.
func (c *Config) fillDefaults() {
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.Workers == 0 {
		c.Workers = runtime.NumCPU()
	}
	if c.TunnelPort == 0 {
		c.TunnelPort = datapath.DefaultVXLANPort
	}
	if c.FlowLimit == 0 {
		c.FlowLimit = DefaultFlowLimit
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.StateSaveInterval == 0 {
		c.StateSaveInterval = DefaultStateSaveInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.InterfaceMTU == nil {
		c.InterfaceMTU = interfaceMTU
	}
	c.fillAgeingDefaults()
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports what is wrong with the configuration, naming the field
// and what it accepts. Zero fields are valid: they take their defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.HostName == "" {
		errs = append(errs, errors.New("agent: HostName is empty; name the host (--host)"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("agent: no Store; give the NSDB the agent follows"))
	}
	if c.Datapath == nil {
		errs = append(errs, errors.New("agent: no Datapath; open one (userspace, ovs or mem)"))
	}
	if c.Workers < 0 {
		errs = append(errs, fmt.Errorf("agent: Workers is %d; give at least 1, or 0 for one per core", c.Workers))
	}
	if c.FlowLimit < 0 {
		errs = append(errs, fmt.Errorf("agent: FlowLimit is %d; give at least 1, or 0 for %d", c.FlowLimit, DefaultFlowLimit))
	}
	if c.SessionTTL < 0 || c.SessionTTL > 0 && c.SessionTTL < time.Second {
		errs = append(errs, fmt.Errorf("agent: SessionTTL is %v; give at least 1s (the store counts whole seconds), or 0 for %v",
			c.SessionTTL, DefaultSessionTTL))
	}
	errs = append(errs, c.validateAgeing()...)
	if c.StateSaveInterval < 0 {
		errs = append(errs, fmt.Errorf("agent: StateSaveInterval is %v; give a positive interval, or 0 for %v",
			c.StateSaveInterval, DefaultStateSaveInterval))
	}
	names := map[string]bool{}
	for i, s := range c.Services {
		switch {
		case s == nil:
			errs = append(errs, fmt.Errorf("agent: Services[%d] is nil", i))
		case names[s.Name()]:
			errs = append(errs, fmt.Errorf("agent: two services are named %q; names must be unique", s.Name()))
		default:
			names[s.Name()] = true
		}
	}
	return errors.Join(errs...)
}

// Agent is a host's agent. New prepares it, Run runs it.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	store Store
	dp    datapath.Datapath
	now   func() time.Time
	debug bool // log a trace of every simulation
	// replyFlows: install stateful replies' flows ahead (reply.go).
	replyFlows bool

	// hostID and session are set by Run before the workers start (and
	// before Ready is closed); only Run's goroutines read them.
	hostID  topology.ID
	session nsdb.StateSession

	// snap is the compiled topology the workers read without locks.
	snap atomic.Pointer[sim.Snapshot]
	topo *topoCache

	// mu guards the binding and tunnel state below.
	mu        sync.Mutex
	bound     map[topology.ID]*boundPort // virtual port -> datapath port
	byDP      map[datapath.PortNo]topology.ID
	byKey     map[uint32]topology.ID // tunnel key -> local virtual port
	vxlanPort datapath.PortNo
	vxlanAddr netip.Addr
	peers     map[topology.ID]netip.Addr   // host -> underlay address
	svcPorts  map[topology.ID]*servicePort // services' own ports (ServiceHost.AttachPort)
	// limits are the bandwidth limits set on bound ports' datapath ports.
	limits map[datapath.PortNo]datapath.RateLimit
	// ports is the immutable view of the maps above the workers read.
	ports atomic.Pointer[portTables]

	// topoKick asks the topology goroutine to reconcile bindings again.
	topoKick chan struct{}

	// importMu guards importMsg, the decoding scratch of importState.
	importMu  sync.Mutex
	importMsg flowstate.Message
	// epoch and lastMiss (nanoseconds since epoch, monotonic) tell
	// dispatch whether misses are sparse.
	epoch    time.Time
	lastMiss atomic.Int64
	// journal appends the flow state committed or imported between two
	// saves.
	journal *stateJournal
	// pulls are the flow-state requests to migrated ports' previous hosts
	// that wait for an answer.
	pulls pullWaits
	// macAges and arpRefresh age the learned tables (ageing.go).
	macAges    *macAges
	arpRefresh arpRefresher

	flows   *flows.Table
	state   *flowstate.Tables
	nat     *natLeaser
	workers []*worker
	// handle is what a worker does with a miss: (*worker).handle; the
	// model test of dispatch records instead.
	handle   func(w *worker, u *upcall)
	metrics  *Metrics
	writer   *stateWriter
	services *serviceRunner
	tracer   *tracer

	wg    sync.WaitGroup
	ready chan struct{}
	ran   atomic.Bool
}

// boundPort is a virtual port plugged into the datapath here.
type boundPort struct {
	port      topology.ID
	iface     string
	dp        datapath.PortNo
	tunnelKey uint32
	up        bool
}

// portTables is an immutable view of the bindings for the workers: where
// ports and hosts are reached (translate.Ports), and which virtual port a
// datapath port or tunnel key delivers to.
type portTables struct {
	translate.Ports
	byDP  map[datapath.PortNo]topology.ID
	byKey map[uint32]datapath.PortNo
	// services hands the misses of services' ports to them.
	services map[datapath.PortNo]PortHandler
}

// New prepares an agent from cfg, filling in defaults. It validates the
// configuration and builds the agent's tables, and does no I/O: Run reads
// the host's identity, registers it and starts everything.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fillDefaults()
	cfg.StateDir = HostStateDir(cfg.StateDir, cfg.HostName)
	a := &Agent{
		cfg: cfg, store: cfg.Store, dp: cfg.Datapath, now: cfg.Now,
		log:   cfg.Logger.With("host", cfg.HostName),
		bound: map[topology.ID]*boundPort{}, byDP: map[datapath.PortNo]topology.ID{},
		byKey: map[uint32]topology.ID{}, peers: map[topology.ID]netip.Addr{}, svcPorts: map[topology.ID]*servicePort{},
		ready: make(chan struct{}), topoKick: make(chan struct{}, 1), epoch: time.Now(),
	}
	a.debug = cfg.Logger.Enabled(context.Background(), slog.LevelDebug)
	a.replyFlows = !cfg.NoReplyFlows
	a.handle = (*worker).handle
	a.flows = flows.New(a.dp, cfg.FlowLimit)
	a.macAges = newMACAges(a.now)
	a.metrics = newMetrics(a.flows)
	a.metrics.registry.MustRegister(newPortCollector(cfg.Datapath))
	a.state = flowstate.NewTables(cfg.Workers+1, flowstate.DefaultIdleTTL)
	a.nat = newNATLeaser(a)
	a.state.TrackSNAT(a.nat.leases)
	a.topo = newTopoCache(a.hostID)
	a.tracer = newTracer(a)
	a.services = newServiceRunner(a, cfg.Services)
	a.publishPorts()
	return a, nil
}

// HostID is the host's stable id, known once Ready is closed.
func (a *Agent) HostID() topology.ID {
	select {
	case <-a.ready:
		return a.hostID
	default:
		return topology.ID{}
	}
}

// Metrics returns the agent's Prometheus collectors.
func (a *Agent) Metrics() *Metrics { return a.metrics }

// Ready is closed once the agent has registered its host, loaded the
// topology and bound its ports.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Flows returns the number of flows the agent has installed.
func (a *Agent) Flows() int { return a.flows.Len() }

// ErrRunTwice is returned by a second call of Run.
var ErrRunTwice = errors.New("agent: Run called twice; make a new Agent")

// Run runs the agent until ctx ends, and returns nil then. It returns an
// error, having undone what it started, if the agent cannot start: the
// host id in the state directory is unreadable, or the store refuses the
// host's registration or session.
func (a *Agent) Run(ctx context.Context) (err error) {
	if !a.ran.CompareAndSwap(false, true) {
		return ErrRunTwice
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := a.register(ctx); err != nil {
		return err
	}
	defer a.session.Close()
	a.log.Info("agent starting", "workers", a.cfg.Workers)
	a.loadState(ctx)
	a.journal = newStateJournal(a.cfg.StateDir, a.log, a.metrics)
	defer a.journal.close()
	a.writer = newStateWriter(a)
	a.workers = make([]*worker, a.cfg.Workers)
	for i := range a.workers {
		a.workers[i] = newWorker(a, i)
	}
	a.dp.SetPortEventHandler(datapath.PortEventHandlerFunc(a.handlePortEvent))
	a.dp.SetUpcallHandler(datapath.UpcallHandlerFunc(a.dispatch))
	a.goRun(func() { a.journal.run(ctx) })
	a.goRun(func() { a.nat.run(ctx) })
	a.goRun(func() { a.writer.run(ctx) })
	a.goRun(func() { a.tracer.run(ctx) })
	for _, w := range a.workers {
		a.goRun(func() { w.run(ctx) })
	}
	a.goRun(func() { a.expireLoop(ctx) })
	a.goRun(func() { a.ageLoop(ctx) })
	a.goRun(func() { a.saveStateLoop(ctx) })
	a.goRun(func() { a.followTopology(ctx) })
	if a.cfg.PublishInterfaces {
		a.goRun(func() { a.publishInterfacesLoop(ctx) })
	}
	a.goRun(func() { a.services.run(ctx) })
	<-ctx.Done()
	a.log.Info("agent stopping")
	// The front doors first: no more upcalls or port events, then wait for
	// every goroutine, then save what they left.
	a.dp.SetUpcallHandler(nil)
	a.dp.SetPortEventHandler(nil)
	a.wg.Wait()
	if n, ok := a.saveState(); ok && n > 0 {
		a.log.Info("flow state saved", "file", a.stateFile(), "keys", n)
	}
	a.log.Info("agent stopped")
	return nil
}

// goRun runs f on a goroutine Run waits for.
func (a *Agent) goRun(f func()) {
	a.wg.Add(1)
	go func() { defer a.wg.Done(); f() }()
}
