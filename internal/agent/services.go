package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flows"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
	"github.com/midonet/midonet/internal/translate"
)

// Service is a job an agent runs for its host beside the packet path: a
// BGP speaker per uplink port, health monitors, a metadata proxy. Each
// lives in its own file or package and is given to the agent in
// Config.Services; the worker loop knows nothing of them.
type Service interface {
	// Name names the service in logs and metrics; unique in an agent.
	Name() string
	// Run runs the service until ctx ends, then returns nil. The agent
	// calls it once the host is registered and the topology loaded. An
	// error before ctx ends is logged and counted, and Run is called
	// again after a pause (1 s, doubling up to 30 s): a failing service
	// never stops the agent from forwarding.
	Run(ctx context.Context, host *ServiceHost) error
}

// PortWatcher is implemented by services that follow the ports bound to
// this host (a BGP speaker per uplink port). The agent calls PortBound when
// it has plugged a port into the datapath and PortUnbound when the port
// left it, from the agent's start on (before Run, and between runs of a
// failed service), one call at a time and in order. Both must return
// quickly: start work on a goroutine of the service's own.
type PortWatcher interface {
	PortBound(p BoundPort)
	PortUnbound(p BoundPort)
}

// BoundPort is a virtual port plugged into the datapath here.
type BoundPort struct {
	ID           topology.ID
	Interface    string
	DatapathPort datapath.PortNo
}

// ServiceHost is what a service may use of its agent.
type ServiceHost struct {
	// ID and Name are the host's.
	ID   topology.ID
	Name string
	// Log carries the host's and the service's name.
	Log *slog.Logger
	// Store is the NSDB; Session binds the keys the service writes to the
	// agent's life.
	Store   Store
	Session nsdb.StateSession
	// Datapath is the host's datapath: a service may add ports of its own
	// and execute packets. Flows installed through Flows are tracked as
	// the agent's own (invalidated by tag, expired, evicted).
	Datapath datapath.Datapath
	Flows    *flows.Table
	// Metrics registers the service's collectors with the agent's, served
	// on its metrics address (register once: Run may be called again).
	Metrics prometheus.Registerer

	a *Agent
}

// PortHandler takes the misses of a datapath port a service attached. It
// runs on the datapath's upcall goroutine: it must be quick, and u's
// packet is valid only during the call.
type PortHandler func(u *datapath.Upcall)

// AttachPort plugs a host interface into the datapath as the service's
// port id: a simulation's egress to id goes out of it (the id is not a
// topology object; the simulation names it, e.g. sim.BGPHelperPort), and
// what comes in from it goes to handle instead of the simulation. A port
// already attached as id is replaced.
func (h *ServiceHost) AttachPort(id topology.ID, ifname string, handle PortHandler) (datapath.PortNo, error) {
	a := h.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if old, ok := a.svcPorts[id]; ok {
		a.dp.RemovePort(old.dp)
		delete(a.svcPorts, id)
	}
	no, err := a.dp.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: ifname})
	if err != nil {
		return 0, err
	}
	a.svcPorts[id] = &servicePort{ifname: ifname, dp: no, handle: handle}
	a.publishPortsLocked()
	return no, nil
}

// DetachPort unplugs the service's port id, if attached.
func (h *ServiceHost) DetachPort(id topology.ID) {
	a := h.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.svcPorts[id]; ok {
		if err := a.dp.RemovePort(p.dp); err != nil && !errors.Is(err, datapath.ErrPortNotFound) {
			h.Log.Warn("service port removal failed", "interface", p.ifname, "err", err)
		}
		delete(a.svcPorts, id)
		a.publishPortsLocked()
	}
}

// servicePort is an interface a service plugged into the datapath.
type servicePort struct {
	ifname string
	dp     datapath.PortNo
	handle PortHandler
}

// Snapshot returns the current compiled topology (never nil once Run is
// called). It is immutable: read it freely, fetch it again for news.
func (h *ServiceHost) Snapshot() *sim.Snapshot { return h.a.snap.Load() }

// Ports returns where this host reaches ports and other hosts (immutable).
func (h *ServiceHost) Ports() *translate.Ports { return &h.a.ports.Load().Ports }

// Restart pauses of a failing service.
const (
	serviceRestartMin = time.Second
	serviceRestartMax = 30 * time.Second
)

// serviceRunner runs an agent's services and tells them of bindings.
type serviceRunner struct {
	a        *Agent
	services []Service
	takers   []PacketTaker // the services that take packets (take.go)

	mu sync.Mutex // serializes port events
}

func newServiceRunner(a *Agent, services []Service) *serviceRunner {
	r := &serviceRunner{a: a, services: services}
	for _, s := range services {
		if t, ok := s.(PacketTaker); ok {
			r.takers = append(r.takers, t)
		}
	}
	return r
}

// run runs every service, once the agent is ready, until ctx ends.
func (r *serviceRunner) run(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-r.a.ready:
	}
	var wg sync.WaitGroup
	for _, s := range r.services {
		wg.Add(1)
		go func() { defer wg.Done(); r.supervise(ctx, s) }()
	}
	wg.Wait()
}

// supervise runs s until ctx ends, again after each failure.
func (r *serviceRunner) supervise(ctx context.Context, s Service) {
	a := r.a
	host := &ServiceHost{ID: a.hostID, Name: a.cfg.HostName, Log: a.log.With("service", s.Name()), Store: a.store,
		Session: a.session, Datapath: a.dp, Flows: a.flows, Metrics: a.metrics.registry, a: a}
	pause := serviceRestartMin
	for {
		host.Log.Info("service starting")
		err := s.Run(ctx, host)
		if ctx.Err() != nil {
			host.Log.Info("service stopped")
			return
		}
		a.metrics.serviceFailures.WithLabelValues(s.Name()).Inc()
		host.Log.Error("service failed; restarting it", "err", err, "restart_in", pause)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, serviceRestartMax)
	}
}

func (r *serviceRunner) portBound(p BoundPort)   { r.tell(func(w PortWatcher) { w.PortBound(p) }) }
func (r *serviceRunner) portUnbound(p BoundPort) { r.tell(func(w PortWatcher) { w.PortUnbound(p) }) }

// tell calls f for each service that watches ports, one event at a time.
func (r *serviceRunner) tell(f func(PortWatcher)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.services {
		if w, ok := s.(PortWatcher); ok {
			f(w)
		}
	}
}
