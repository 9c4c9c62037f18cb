package bgp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// Plumbing connects a port's namespace to the datapath; the agent
// implements it.
type Plumbing interface {
	// Attach plugs the namespace's outer interface ifname into the
	// datapath and carries between it and the port the port's BGP
	// sessions with spec's peers and the ARP they need. It is called
	// again, with the new spec, when the peers change.
	Attach(spec PortSpec, ifname string) error
	// Detach undoes Attach.
	Detach(port topology.ID)
}

// States writes state keys bound to the agent's liveness (an
// *nsdb.Session): learned routes and statuses vanish with the agent.
type States interface {
	SetStates(ctx context.Context, entries []nsdb.StateEntry) error
	DeleteStates(ctx context.Context, keys []string) error
}

// Config configures a Manager.
type Config struct {
	// Host is this agent's host.
	Host     topology.ID
	States   States
	Plumbing Plumbing
	// Command starts a speaker process (default DefaultSpeakerCommand).
	Command []string
	// InterfacePrefix names the outer ends of the ports' veth pairs,
	// followed by 8 hex digits of the port id (default "mnbgp").
	InterfacePrefix string
	// RetryInterval is how often failed store writes and failed speakers
	// are tried again (default 1 s).
	RetryInterval time.Duration
	Logger        *slog.Logger
}

// Manager runs the BGP of the uplinks bound to this host: for each, a
// namespace, a speaker process in it, and the translation of what the
// speaker learns into the router's learned routes in the store. Update
// tells it which uplinks to serve; it follows every change live.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	ctx     context.Context // set by Start
	ports   map[topology.ID]*runner
	orphans []string // keys of stopped runners whose deletion failed; guarded by mu
	wg      sync.WaitGroup
}

// New returns a manager; Start starts it.
func New(cfg Config) (*Manager, error) {
	if cfg.States == nil || cfg.Plumbing == nil {
		return nil, errors.New("bgp: a manager needs States and Plumbing")
	}
	if len(cfg.Command) == 0 {
		c, err := DefaultSpeakerCommand()
		if err != nil {
			return nil, err
		}
		cfg.Command = c
	}
	if cfg.InterfacePrefix == "" {
		cfg.InterfacePrefix = "mnbgp"
	}
	if len(cfg.InterfacePrefix) > 7 {
		return nil, fmt.Errorf("bgp: interface prefix %q is longer than 7 characters", cfg.InterfacePrefix)
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: cfg.Logger, metrics: newMetrics(), ports: map[topology.ID]*runner{}}, nil
}

// Collectors are the manager's Prometheus collectors.
func (m *Manager) Collectors() []prometheus.Collector { return m.metrics.all() }

// Start starts the manager; it runs until ctx ends, then stops every
// speaker and deletes what it wrote (Wait waits for that).
func (m *Manager) Start(ctx context.Context) {
	m.mu.Lock()
	m.ctx = ctx
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(m.cfg.RetryInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				m.Update(nil)
				return
			case <-t.C:
				m.retryOrphans(ctx)
			}
		}
	}()
}

// Wait waits until the manager stopped after its context ended.
func (m *Manager) Wait() { m.wg.Wait() }

// Update sets the uplinks to serve (Plan's answer): new ones start, gone
// ones stop, changed ones follow the change. It does not block.
func (m *Manager) Update(specs []PortSpec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ctx == nil {
		return
	}
	want := make(map[topology.ID]PortSpec, len(specs))
	for _, s := range specs {
		want[s.Port] = s
	}
	for id, r := range m.ports {
		if _, ok := want[id]; !ok || m.ctx.Err() != nil {
			r.cancel()
			delete(m.ports, id)
		}
	}
	if m.ctx.Err() != nil {
		return
	}
	for id, s := range want {
		if r, ok := m.ports[id]; ok {
			if !r.last.Equal(&s) {
				r.last = s
				r.update(s)
			}
			continue
		}
		r := m.newRunner(s)
		m.ports[id] = r
		m.wg.Add(1)
		go func() { defer m.wg.Done(); r.run() }()
	}
}

// retryOrphans deletes again the keys stopped runners could not.
func (m *Manager) retryOrphans(ctx context.Context) {
	m.mu.Lock()
	keys := m.orphans
	m.orphans = nil
	m.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	if err := m.cfg.States.DeleteStates(ctx, keys); err != nil {
		m.metrics.storeErrors.Inc()
		m.mu.Lock()
		m.orphans = append(m.orphans, keys...)
		m.mu.Unlock()
	}
}

// runner serves one uplink.
type runner struct {
	m      *Manager
	log    *slog.Logger
	port   topology.ID
	ifname string
	ctx    context.Context
	cancel context.CancelFunc
	next   chan PortSpec // the latest spec, capacity 1
	last   PortSpec      // the last spec handed over; guarded by Manager.mu

	// Owned by the runner's goroutine.
	spec    PortSpec
	rib     *RIB
	peers   map[netip.Addr]PeerStatus
	pending map[topology.ID]*topology.Route // nil: delete
	stored  map[topology.ID]bool            // route keys in the store
	status  bool                            // the status keys need writing
	peerIDs map[topology.ID]bool            // peers whose status key exists
	offWhy  string                          // why no speaker runs now, if none does
	cfgErr  string                          // what the speaker refused of its last configuration
	pid     int
}

func (m *Manager) newRunner(s PortSpec) *runner {
	ctx, cancel := context.WithCancel(m.ctx)
	hex := strings.ReplaceAll(s.Port.String(), "-", "")
	return &runner{
		m: m, log: m.log.With("port_id", s.Port.String()), port: s.Port,
		ifname: m.cfg.InterfacePrefix + hex[:8],
		ctx:    ctx, cancel: cancel, next: make(chan PortSpec, 1), spec: s, last: s,
		rib: NewRIB(s.Uplink), peers: map[netip.Addr]PeerStatus{},
		pending: map[topology.ID]*topology.Route{}, stored: map[topology.ID]bool{}, peerIDs: map[topology.ID]bool{},
	}
}

// update hands the runner a new spec, replacing one it has not taken yet.
func (r *runner) update(s PortSpec) {
	select {
	case <-r.next:
	default:
	}
	r.next <- s
}

// errRestart ends a speaker whose port changed in a way only a new speaker
// follows.
var errRestart = errors.New("restart")

// needsRestart reports whether going from a to b needs a new namespace and
// speaker: the port's address or MAC, the router's AS, or on/off changed.
func needsRestart(a, b PortSpec) bool {
	return a.Subnet != b.Subnet || a.MAC != b.MAC || a.Speaker.RouterID != b.Speaker.RouterID ||
		a.Speaker.LocalAS != b.Speaker.LocalAS || (a.Off == "") != (b.Off == "")
}

func (r *runner) run() {
	defer r.stop()
	backoff := r.m.cfg.RetryInterval
	for r.ctx.Err() == nil {
		var err error
		if r.spec.Off != "" {
			err = r.off()
		} else {
			err = r.serve()
		}
		r.pid = 0
		r.forgetRoutes()
		if errors.Is(err, errRestart) {
			backoff = r.m.cfg.RetryInterval
			continue
		}
		if err == nil || r.ctx.Err() != nil {
			return
		}
		r.log.Warn("bgp speaker failed; starting it again", "err", err, "in", backoff)
		r.offWhy = "the speaker failed (" + err.Error() + "); starting it again"
		r.status = true
		r.flush()
		if !r.wait(backoff) {
			return
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// wait waits for d, flushing what is pending and taking spec updates; it
// returns false when the runner is stopped.
func (r *runner) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	retry := time.NewTicker(r.m.cfg.RetryInterval)
	defer retry.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return false
		case s := <-r.next:
			r.spec = s
			return true
		case <-t.C:
			return true
		case <-retry.C:
			r.flush()
		}
	}
}

// off holds the port's status while no speaker may run, until the spec
// changes.
func (r *runner) off() error {
	r.offWhy = r.spec.Off
	r.status = true
	retry := time.NewTicker(r.m.cfg.RetryInterval)
	defer retry.Stop()
	for {
		r.flush()
		select {
		case <-r.ctx.Done():
			return nil
		case s := <-r.next:
			restart := needsRestart(r.spec, s)
			r.spec = s
			r.status = true
			if restart {
				return errRestart
			}
			r.offWhy = s.Off
		case <-retry.C:
		}
	}
}

// serve runs one speaker until the runner stops (nil), the spec needs a
// new speaker (errRestart), or something fails.
func (r *runner) serve() error {
	spec := r.spec
	ns, err := NewNamespace(r.ifname, spec.Subnet, spec.MAC)
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := r.m.cfg.Plumbing.Attach(spec, r.ifname); err != nil {
		return fmt.Errorf("bgp: attach %s to the datapath: %w", r.ifname, err)
	}
	defer r.m.cfg.Plumbing.Detach(r.port)
	proc, err := StartProcess(ns, r.m.cfg.Command, r.log)
	if err != nil {
		return err
	}
	defer proc.Stop()
	r.m.metrics.speakerStarts.Inc()
	r.pid = proc.Pid()
	r.log.Info("bgp speaker started", "pid", r.pid, "interface", r.ifname, "address", spec.Subnet,
		"as", spec.Speaker.LocalAS, "peers", len(spec.Speaker.Peers), "networks", len(spec.Speaker.Networks))
	if err := proc.Send(spec.Speaker); err != nil {
		return err
	}
	r.offWhy, r.cfgErr = "", ""
	r.peers = map[netip.Addr]PeerStatus{}
	for _, p := range spec.Speaker.Peers {
		r.peers[p.Address] = PeerStatus{Address: p.Address, AS: p.AS, State: StateIdle, Since: time.Now().UTC()}
	}
	r.status = true
	retry := time.NewTicker(r.m.cfg.RetryInterval)
	defer retry.Stop()
	for {
		r.flush()
		select {
		case <-r.ctx.Done():
			return nil
		case s := <-r.next:
			if needsRestart(r.spec, s) {
				r.spec = s
				return errRestart
			}
			if err := r.reconfigure(proc, s); err != nil {
				return err
			}
		case e, ok := <-proc.Events():
			if !ok {
				<-proc.Done()
				return fmt.Errorf("bgp: speaker %d exited: %v", proc.Pid(), proc.Err())
			}
			r.handle(e)
			// Take what else is queued before writing: a feed is written
			// in big batches.
		drain:
			for range 64 {
				select {
				case e, ok := <-proc.Events():
					if !ok {
						break drain
					}
					r.handle(e)
				default:
					break drain
				}
			}
		case <-retry.C:
		}
	}
}

// reconfigure follows a change of peers or networks.
func (r *runner) reconfigure(proc *Process, s PortSpec) error {
	old := r.spec
	r.spec = s
	if err := proc.Send(s.Speaker); err != nil {
		return err
	}
	if !slices.Equal(old.Peers(), s.Peers()) {
		if err := r.m.cfg.Plumbing.Attach(s, r.ifname); err != nil {
			return fmt.Errorf("bgp: attach %s to the datapath: %w", r.ifname, err)
		}
	}
	for addr := range r.peers {
		if !slices.Contains(s.Peers(), addr) {
			delete(r.peers, addr)
			r.apply(r.rib.DropPeer(addr))
		}
	}
	for _, p := range s.Speaker.Peers {
		st, ok := r.peers[p.Address]
		if !ok {
			r.peers[p.Address] = PeerStatus{Address: p.Address, AS: p.AS, State: StateIdle, Since: time.Now().UTC()}
		} else if st.AS != p.AS {
			st.AS = p.AS
			r.peers[p.Address] = st
		}
	}
	r.status = true
	return nil
}

// handle takes one event from the speaker.
func (r *runner) handle(e Event) {
	if e.Ready && e.Error != r.cfgErr {
		if e.Error != "" {
			r.log.Warn("bgp speaker refused part of its configuration", "err", e.Error)
		}
		r.cfgErr = e.Error
		r.status = true
	}
	if p := e.Peer; p != nil {
		if _, ok := r.peers[p.Address]; ok {
			old := r.peers[p.Address]
			r.peers[p.Address] = *p
			r.status = true
			if p.State != old.State {
				r.log.Info("bgp session", "peer", p.Address, "state", p.State, "was", old.State, "reason", p.Reason)
			}
			if p.State != StateEstablished {
				// The speaker withdraws the peer's paths too; not waiting
				// for that takes the routes out at once.
				r.apply(r.rib.DropPeer(p.Address))
			}
		}
	}
	if len(e.Paths) > 0 {
		var ps []Path
		for _, p := range e.Paths {
			if st, ok := r.peers[p.Peer]; ok && (st.State == StateEstablished || p.Withdraw) {
				ps = append(ps, p)
			}
		}
		r.apply(r.rib.Apply(ps))
	}
}

// apply queues route changes for the store.
func (r *runner) apply(put []topology.Route, del []topology.ID) {
	for i := range put {
		r.pending[put[i].ID] = &put[i]
	}
	for _, id := range del {
		r.pending[id] = nil
	}
	if len(put)+len(del) > 0 {
		r.status = true // route counts changed
	}
}

// forgetRoutes queues the deletion of every learned route: the speaker is
// gone.
func (r *runner) forgetRoutes() {
	r.apply(nil, r.rib.Clear())
	for a, st := range r.peers {
		st.State = StateIdle
		r.peers[a] = st
	}
	r.status = true
}

// flush writes what is pending: route changes, then statuses. What fails
// stays pending for the next call.
func (r *runner) flush() {
	ctx := r.ctx
	if len(r.pending) > 0 {
		var puts []nsdb.StateEntry
		var dels []string
		var putIDs, delIDs []topology.ID
		for id, rt := range r.pending {
			key := nsdb.PortRouteKey(r.port.String(), id.String())
			if rt == nil {
				if r.stored[id] {
					dels = append(dels, key)
					delIDs = append(delIDs, id)
				}
				continue
			}
			b, _ := json.Marshal(rt)
			puts = append(puts, nsdb.StateEntry{Key: key, Value: b})
			putIDs = append(putIDs, id)
		}
		err := r.m.cfg.States.SetStates(ctx, puts)
		if err == nil {
			err = r.m.cfg.States.DeleteStates(ctx, dels)
		}
		if err != nil {
			r.m.metrics.storeErrors.Inc()
			r.log.Warn("bgp: learned routes not written; trying again", "routes", len(puts)+len(dels), "err", err)
			return
		}
		before := len(r.stored)
		for _, id := range putIDs {
			r.stored[id] = true
		}
		for _, id := range delIDs {
			delete(r.stored, id)
		}
		r.m.metrics.routes.Add(float64(len(r.stored) - before))
		r.m.metrics.routeWrites.Add(float64(len(puts)))
		r.m.metrics.routeDeletes.Add(float64(len(dels)))
		clear(r.pending)
	}
	if !r.status {
		return
	}
	entries := []nsdb.StateEntry{{Key: nsdb.PortBGPKey(r.port.String()), Value: []byte(r.statusText())}}
	ids := map[topology.ID]bool{}
	for _, p := range r.spec.Speaker.Peers {
		st := topology.BGPSessionStatus{State: "Off", Reason: r.offWhy, PortID: r.port, HostID: r.m.cfg.Host}
		if ps, ok := r.peers[p.Address]; ok && r.offWhy == "" {
			st.State, st.Since, st.Reason = string(ps.State), ps.Since, ps.Reason
			st.Routes = r.rib.PeerPrefixes(p.Address)
		}
		b, _ := json.Marshal(st)
		entries = append(entries, nsdb.StateEntry{Key: nsdb.BGPPeerStatusKey(p.ID.String()), Value: b})
		ids[p.ID] = true
	}
	var gone []string
	for id := range r.peerIDs {
		if !ids[id] {
			gone = append(gone, nsdb.BGPPeerStatusKey(id.String()))
		}
	}
	err := r.m.cfg.States.SetStates(ctx, entries)
	if err == nil {
		err = r.m.cfg.States.DeleteStates(ctx, gone)
	}
	if err != nil {
		r.m.metrics.storeErrors.Inc()
		return
	}
	r.peerIDs = ids
	r.status = false
	established := 0
	for _, p := range r.peers {
		if p.State == StateEstablished {
			established++
		}
	}
	r.m.metrics.setEstablished(r.port, established)
}

// statusText is the port's bgpStatus: the speaker, then a line a peer.
func (r *runner) statusText() string {
	var b strings.Builder
	if r.offWhy != "" {
		fmt.Fprintf(&b, "BGP off: %s\n", r.offWhy)
	} else {
		fmt.Fprintf(&b, "BGP AS %d, router id %s, speaker pid %d, %d learned routes\n",
			r.spec.Speaker.LocalAS, r.spec.Speaker.RouterID, r.pid, r.rib.Len())
		if r.cfgErr != "" {
			fmt.Fprintf(&b, "configuration refused: %s\n", r.cfgErr)
		}
	}
	for _, p := range r.spec.Speaker.Peers {
		st, ok := r.peers[p.Address]
		if !ok || r.offWhy != "" {
			fmt.Fprintf(&b, "peer %s AS %d: Off\n", p.Address, p.AS)
			continue
		}
		fmt.Fprintf(&b, "peer %s AS %d: %s since %s, %d prefixes", p.Address, p.AS, st.State,
			st.Since.Format(time.RFC3339), r.rib.PeerPrefixes(p.Address))
		if st.Reason != "" && st.State != StateEstablished {
			fmt.Fprintf(&b, " (%s)", st.Reason)
		}
		b.WriteByte('\n')
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// stop deletes what the runner wrote, handing to the manager what the
// store does not take now.
func (r *runner) stop() {
	keys := []string{nsdb.PortBGPKey(r.port.String())}
	for id := range r.stored {
		keys = append(keys, nsdb.PortRouteKey(r.port.String(), id.String()))
	}
	for id := range r.peerIDs {
		keys = append(keys, nsdb.BGPPeerStatusKey(id.String()))
	}
	r.m.metrics.routes.Sub(float64(len(r.stored)))
	r.m.metrics.setEstablished(r.port, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.m.cfg.States.DeleteStates(ctx, keys); err != nil && !errors.Is(err, nsdb.ErrSessionClosed) {
		r.m.mu.Lock()
		r.m.orphans = append(r.m.orphans, keys...)
		r.m.mu.Unlock()
	}
	r.log.Info("bgp stopped on the port")
}

// metrics are the manager's Prometheus collectors.
type metrics struct {
	routes        prometheus.Gauge
	routeWrites   prometheus.Counter
	routeDeletes  prometheus.Counter
	storeErrors   prometheus.Counter
	speakerStarts prometheus.Counter
	established   *prometheus.GaugeVec
}

func newMetrics() *metrics {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "midonet", Subsystem: "bgp", Name: name, Help: help}
	}
	return &metrics{
		routes:        prometheus.NewGauge(prometheus.GaugeOpts(opts("learned_routes", "Routes this agent learned by BGP and holds in the store."))),
		routeWrites:   prometheus.NewCounter(prometheus.CounterOpts(opts("route_writes_total", "Learned routes written to the store."))),
		routeDeletes:  prometheus.NewCounter(prometheus.CounterOpts(opts("route_deletes_total", "Learned routes deleted from the store."))),
		storeErrors:   prometheus.NewCounter(prometheus.CounterOpts(opts("store_errors_total", "Failed writes of learned routes or statuses (tried again)."))),
		speakerStarts: prometheus.NewCounter(prometheus.CounterOpts(opts("speaker_starts_total", "Speaker processes started."))),
		established: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("sessions_established", "Established BGP sessions, by uplink port.")),
			[]string{"port"}),
	}
}

func (m *metrics) all() []prometheus.Collector {
	return []prometheus.Collector{m.routes, m.routeWrites, m.routeDeletes, m.storeErrors, m.speakerStarts, m.established}
}

func (m *metrics) setEstablished(port topology.ID, n int) {
	if n == 0 {
		m.established.DeleteLabelValues(port.String())
		return
	}
	m.established.WithLabelValues(port.String()).Set(float64(n))
}
