// Package health runs the health monitors of L4 load balancer pools. One
// agent at a time runs them: it holds a leased leader key in the NSDB, and
// another takes over within the lease's TTL when it dies; it stands down
// before the store can let another take the key, and every status it writes
// is guarded by the key, so two monitors never act at once. The leader
// probes each member of each monitored pool from the side of the pool's
// router, through the virtual network as a client's connection would go
// (Plumbing gives it a Prober per router), and writes the member's status,
// ACTIVE or INACTIVE, into the member object, where the API shows it and
// the agents' simulations stop sending new connections to an inactive one.
//
// A member goes INACTIVE after MaxRetries failed checks in a row (a check
// every Delay seconds, each given Timeout seconds), so it stops receiving
// new connections within Delay × (MaxRetries + 1); it is ACTIVE again after
// two checks in a row pass, as haproxy's default rise, which MidoNet's
// monitor used.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// Member statuses, as the API shows them.
const (
	StatusActive   = "ACTIVE"
	StatusInactive = "INACTIVE"
)

// Defaults of Config.
const (
	DefaultLeaseTTL     = 3 * time.Second
	DefaultPollInterval = time.Second
	// rise is how many checks in a row must pass to bring an inactive
	// member back (haproxy's default, which MidoNet's monitor used).
	rise = 2
)

// leaderJob names the leader key of the health monitors.
const leaderJob = "health-monitor"

// Prober opens connections from one router's side of the virtual network.
type Prober interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Plumbing gives the leader a Prober per router whose pools it monitors.
type Plumbing interface {
	// Attach readies a prober for router and returns it once checks can
	// reach the router's networks.
	Attach(ctx context.Context, router topology.ID) (Prober, error)
	// Detach releases what Attach made on this host. forget also removes
	// what it put in the store: the router has nothing left to monitor
	// (rather than this host having lost the lead, in which case the
	// next leader takes the store's part over).
	Detach(ctx context.Context, router topology.ID, forget bool) error
}

// Config configures a Monitor.
type Config struct {
	Store *nsdb.Store
	// HostID identifies this host in the leader key.
	HostID   topology.ID
	Plumbing Plumbing
	// LeaseTTL bounds how long the monitors stay unrun after their leader
	// dies (default DefaultLeaseTTL).
	LeaseTTL time.Duration
	// PollInterval is how often the leader reads the pools again
	// (default DefaultPollInterval).
	PollInterval time.Duration
	Logger       *slog.Logger
	// Registerer receives the monitor's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Monitor runs the health monitors when this host holds the lead.
type Monitor struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	leading bool // guarded by mu
}

type metrics struct {
	checks  *prometheus.CounterVec
	changes *prometheus.CounterVec
	leader  prometheus.Gauge
}

// New checks cfg and returns a Monitor; Run runs it.
func New(cfg Config) (*Monitor, error) {
	if cfg.Store == nil || cfg.Plumbing == nil {
		return nil, errors.New("health: a store and plumbing are required")
	}
	if cfg.HostID == (topology.ID{}) {
		return nil, errors.New("health: a host id is required")
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{cfg: cfg, log: cfg.Logger.With("service", "health-monitor"), metrics: &metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "midonet_health_checks_total",
			Help: "Health checks of pool members run by this host, by result."}, []string{"result"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "midonet_health_status_changes_total",
			Help: "Member statuses this host wrote, by new status."}, []string{"status"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "midonet_health_leader",
			Help: "1 while this host runs the health monitors."}),
	}}
	if cfg.Registerer != nil {
		// A monitor made again (a restarted service) counts on where the
		// last one left off.
		var are prometheus.AlreadyRegisteredError
		if err := cfg.Registerer.Register(m.metrics.checks); errors.As(err, &are) {
			m.metrics.checks = are.ExistingCollector.(*prometheus.CounterVec)
		} else if err != nil {
			return nil, fmt.Errorf("health: register metrics: %w", err)
		}
		if err := cfg.Registerer.Register(m.metrics.changes); errors.As(err, &are) {
			m.metrics.changes = are.ExistingCollector.(*prometheus.CounterVec)
		} else if err != nil {
			return nil, fmt.Errorf("health: register metrics: %w", err)
		}
		if err := cfg.Registerer.Register(m.metrics.leader); errors.As(err, &are) {
			m.metrics.leader = are.ExistingCollector.(prometheus.Gauge)
		} else if err != nil {
			return nil, fmt.Errorf("health: register metrics: %w", err)
		}
	}
	return m, nil
}

// Leading reports whether this host runs the health monitors now.
func (m *Monitor) Leading() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leading
}

func (m *Monitor) setLeading(on bool) {
	m.mu.Lock()
	m.leading = on
	m.mu.Unlock()
	v := 0.0
	if on {
		v = 1
	}
	m.metrics.leader.Set(v)
}

// Run campaigns for the lead and runs the monitors while it holds it,
// until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	key := nsdb.LeaderKey(leaderJob)
	for ctx.Err() == nil {
		l, err := m.cfg.Store.Campaign(ctx, key, []byte(m.cfg.HostID.String()), m.cfg.LeaseTTL)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("health monitor campaign failed; retrying", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		m.log.Info("health monitors started on this host")
		m.setLeading(true)
		m.lead(ctx, l)
		m.setLeading(false)
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		l.Resign(rctx)
		cancel()
		m.log.Info("health monitors stopped on this host")
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// target is one member checked by one monitor from one router.
type target struct {
	member topology.ID
	addr   netip.AddrPort
	router topology.ID
	spec   spec
}

// spec is what a health monitor checks, and how often.
type spec struct {
	http    bool
	path    string
	codes   string // as configured; parsed by the checker
	delay   time.Duration
	timeout time.Duration
	fall    int
}

// config is the part of the topology the leader acts on.
type config struct {
	targets map[topology.ID]target // by member
	// unmonitored are the members of pools without a running monitor
	// that are INACTIVE: their status goes back to ACTIVE.
	unmonitored []topology.ID
	status      map[topology.ID]string // stored status of every member
}

// readConfig reads the monitored members from the store.
func (m *Monitor) readConfig(ctx context.Context) (config, error) {
	c := config{targets: map[topology.ID]target{}, status: map[topology.ID]string{}}
	err := m.cfg.Store.View(ctx, func(tx *nsdb.Tx) error {
		lbs, err := topology.ListOf[topology.LoadBalancer](tx)
		if err != nil {
			return err
		}
		routers, err := topology.ListOf[topology.Router](tx)
		if err != nil {
			return err
		}
		pools, err := topology.ListOf[topology.Pool](tx)
		if err != nil {
			return err
		}
		members, err := topology.ListOf[topology.PoolMember](tx)
		if err != nil {
			return err
		}
		hms, err := topology.ListOf[topology.HealthMonitor](tx)
		if err != nil {
			return err
		}
		lbRouter := map[topology.ID]topology.ID{}
		for _, l := range lbs {
			if l.RouterID != nil {
				lbRouter[l.ID] = *l.RouterID
			}
		}
		for _, r := range routers {
			if r.LoadBalancerID != nil {
				lbRouter[*r.LoadBalancerID] = r.ID
			}
		}
		specs := map[topology.ID]spec{}
		for _, h := range hms {
			if !h.AdminStateUp || h.Type == nil {
				continue
			}
			s := spec{http: *h.Type == topology.HealthMonitorHTTP, path: "/", codes: "200",
				delay: time.Duration(max(h.Delay, 1)) * time.Second, timeout: time.Duration(max(h.Timeout, 1)) * time.Second,
				fall: max(h.MaxRetries, 1)}
			if h.URLPath != nil {
				s.path = *h.URLPath
			}
			if h.ExpectedCodes != nil {
				s.codes = *h.ExpectedCodes
			}
			specs[h.ID] = s
		}
		type poolMon struct {
			router topology.ID
			spec   spec
		}
		monitored := map[topology.ID]poolMon{}
		for _, p := range pools {
			if p.HealthMonitorID == nil || p.LoadBalancerID == nil {
				continue
			}
			s, ok := specs[*p.HealthMonitorID]
			r, rok := lbRouter[*p.LoadBalancerID]
			if ok && rok {
				monitored[p.ID] = poolMon{router: r, spec: s}
			}
		}
		for _, mb := range members {
			c.status[mb.ID] = mb.Status
			pm, ok := monitored[derefID(mb.PoolID)]
			addr, aok := topology.ParseIPv4(deref(mb.Address))
			if !ok || !aok {
				if strings.EqualFold(mb.Status, StatusInactive) {
					c.unmonitored = append(c.unmonitored, mb.ID)
				}
				continue
			}
			c.targets[mb.ID] = target{member: mb.ID, addr: netip.AddrPortFrom(addr, uint16(mb.ProtocolPort)),
				router: pm.router, spec: pm.spec}
		}
		return nil
	})
	return c, err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefID(id *topology.ID) topology.ID {
	if id == nil {
		return topology.ID{}
	}
	return *id
}

// running is a checker goroutine and what it checks.
type running struct {
	t      target
	cancel context.CancelFunc
	done   chan struct{}
}

// lead runs the monitors until the lead is lost or ctx ends.
func (m *Monitor) lead(ctx context.Context, l *nsdb.Leadership) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.Lost():
			m.log.Warn("health monitor lead lost")
			cancel()
		case <-ctx.Done():
		}
	}()
	checkers := map[topology.ID]*running{}
	probers := map[topology.ID]Prober{}
	defer func() {
		for _, r := range checkers {
			r.cancel()
			<-r.done
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer dcancel()
		for router := range probers {
			if err := m.cfg.Plumbing.Detach(dctx, router, false); err != nil {
				m.log.Warn("health monitor plumbing not released", "router_id", router, "err", err)
			}
		}
	}()
	tick := time.NewTicker(m.cfg.PollInterval)
	defer tick.Stop()
	for {
		c, err := m.readConfig(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log.Warn("health monitor cannot read the pools; keeping the checks running", "err", err)
		} else {
			m.reconcile(ctx, l, c, checkers, probers)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// reconcile starts and stops checkers and probers to match c.
func (m *Monitor) reconcile(ctx context.Context, l *nsdb.Leadership, c config, checkers map[topology.ID]*running, probers map[topology.ID]Prober) {
	for id, r := range checkers {
		if t, ok := c.targets[id]; !ok || t != r.t {
			r.cancel()
			<-r.done
			delete(checkers, id)
		}
	}
	need := map[topology.ID]bool{}
	for _, t := range c.targets {
		need[t.router] = true
	}
	for router := range probers {
		if !need[router] {
			if err := m.cfg.Plumbing.Detach(ctx, router, true); err != nil {
				m.log.Warn("health monitor plumbing not removed", "router_id", router, "err", err)
			}
			delete(probers, router)
		}
	}
	for router := range need {
		if _, ok := probers[router]; ok {
			continue
		}
		p, err := m.cfg.Plumbing.Attach(ctx, router)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("health monitor cannot probe from router; retrying", "router_id", router, "err", err)
			}
			continue
		}
		m.log.Info("health monitor probing from router", "router_id", router)
		probers[router] = p
	}
	for id, t := range c.targets {
		p, ok := probers[t.router]
		if _, running := checkers[id]; running || !ok {
			continue
		}
		rctx, cancel := context.WithCancel(ctx)
		r := &running{t: t, cancel: cancel, done: make(chan struct{})}
		checkers[id] = r
		status := c.status[id]
		go func() {
			defer close(r.done)
			m.check(rctx, l, p, t, status)
		}()
	}
	for _, id := range c.unmonitored {
		m.writeStatus(ctx, l, id, StatusActive)
	}
}

// check probes one member every delay and writes its status when it
// changes.
func (m *Monitor) check(ctx context.Context, l *nsdb.Leadership, p Prober, t target, status string) {
	active := !strings.EqualFold(status, StatusInactive)
	codes, _ := topology.ParseExpectedCodes(t.spec.codes)
	fails, passes := 0, 0
	tick := time.NewTicker(t.spec.delay)
	defer tick.Stop()
	for {
		err := probe(ctx, p, t, codes)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			m.metrics.checks.WithLabelValues("fail").Inc()
			fails, passes = fails+1, 0
			if active && fails >= t.spec.fall {
				m.log.Info("pool member down", "member_id", t.member, "address", t.addr.String(), "err", err)
				if m.writeStatus(ctx, l, t.member, StatusInactive) {
					active = false
				}
			}
		} else {
			m.metrics.checks.WithLabelValues("pass").Inc()
			fails, passes = 0, passes+1
			if !active && passes >= rise {
				m.log.Info("pool member up", "member_id", t.member, "address", t.addr.String())
				if m.writeStatus(ctx, l, t.member, StatusActive) {
					active = true
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// writeStatus writes a member's status, only while this host leads. It
// reports whether the member now has that status.
func (m *Monitor) writeStatus(ctx context.Context, l *nsdb.Leadership, member topology.ID, status string) bool {
	changed := false
	err := m.cfg.Store.Update(ctx, func(tx *nsdb.Tx) error {
		changed = false
		if err := tx.RequireLeader(l); err != nil {
			return err
		}
		mb, err := topology.GetOf[topology.PoolMember](tx, member.String())
		if err != nil {
			return err
		}
		if mb.Status == status {
			return nil
		}
		mb.Status = status
		changed = true
		return tx.Put(&mb)
	})
	switch {
	case err == nil:
		if changed {
			m.metrics.changes.WithLabelValues(status).Inc()
		}
		return true
	case errors.Is(err, topology.ErrNotFound), ctx.Err() != nil:
	case errors.Is(err, nsdb.ErrNotLeader):
		m.log.Warn("member status not written: the lead is lost", "member_id", member)
	default:
		m.log.Warn("member status not written", "member_id", member, "status", status, "err", err)
	}
	return false
}
