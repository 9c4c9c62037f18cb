package bgp

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/midonet/midonet/internal/agent"
	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flows"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// ServiceConfig configures the agent service.
type ServiceConfig struct {
	// Command starts a speaker process (default DefaultSpeakerCommand).
	Command []string
	// InterfacePrefix names the speakers' veth ends (default "mnbgp").
	InterfacePrefix string
}

// Service is BGP as an agent service (agent.Config.Services): it follows
// the routers, ports, BGP peers and networks in the store, and runs a
// Manager for the uplinks bound to the agent's host, writing under the
// agent's session and plugging the speakers' namespaces into its datapath.
type Service struct {
	cfg     ServiceConfig
	metrics *metrics
	once    sync.Once
}

var _ agent.Service = (*Service)(nil)

// NewService returns the BGP service.
func NewService(cfg ServiceConfig) *Service { return &Service{cfg: cfg, metrics: newMetrics()} }

// Name implements agent.Service.
func (s *Service) Name() string { return "bgp" }

// helperFlowTimeout is the hard timeout of the flows from a speaker's
// namespace to its uplink.
const helperFlowTimeout = 5 * time.Minute

// Run implements agent.Service.
func (s *Service) Run(ctx context.Context, host *agent.ServiceHost) error {
	s.once.Do(func() {
		for _, c := range s.metrics.all() {
			if err := host.Metrics.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
				host.Log.Warn("bgp metrics not registered", "err", err)
			}
		}
	})
	m, err := New(Config{Host: host.ID, States: host.Session, Plumbing: &hostPlumbing{host: host, attached: map[topology.ID]string{}},
		Command: s.cfg.Command, InterfacePrefix: s.cfg.InterfacePrefix, Logger: host.Log})
	if err != nil {
		return err
	}
	m.metrics = s.metrics
	m.Start(ctx)
	defer m.Wait()
	for ctx.Err() == nil {
		if err := follow(ctx, host, m); err != nil {
			host.Log.Warn("bgp: topology unreadable; the speakers keep their configuration", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// follow loads the objects BGP reads and hands the manager this host's
// uplinks after each batch of changes, until ctx ends (nil) or the watch
// loses its history (nil: load again) or the load fails.
func follow(ctx context.Context, host *agent.ServiceHost, m *Manager) error {
	rev, objs, err := host.Store.Snapshot(ctx)
	if err != nil {
		return err
	}
	v := newView()
	for _, o := range objs {
		v.apply(o.Kind, o.ID, o.Value)
	}
	m.Update(Plan(host.ID, v.topology()))
	events := host.Store.Watch(ctx, nsdb.TopologyWatchPrefix, rev)
	for {
		ev, ok := <-events
		if !ok || ev.Type == nsdb.EventResync {
			return nil
		}
		changed := v.applyEvent(ev)
	batch:
		for {
			select {
			case ev, ok = <-events:
				if !ok || ev.Type == nsdb.EventResync {
					return nil
				}
				changed = v.applyEvent(ev) || changed
			default:
				break batch
			}
		}
		if changed {
			m.Update(Plan(host.ID, v.topology()))
		}
	}
}

// view is the service's copy of the objects BGP reads.
type view struct {
	routers  map[string]topology.Router
	ports    map[string]topology.Port
	peers    map[string]topology.BGPPeer
	networks map[string]topology.BGPNetwork
}

func newView() *view {
	return &view{routers: map[string]topology.Router{}, ports: map[string]topology.Port{},
		peers: map[string]topology.BGPPeer{}, networks: map[string]topology.BGPNetwork{}}
}

func (v *view) applyEvent(ev nsdb.Event) bool {
	var value []byte
	if ev.Type == nsdb.EventPut {
		value = ev.Value
	}
	return v.apply(ev.Kind, ev.ID, value)
}

// apply applies a put (value non-nil) or delete, and reports whether it
// was of a kind BGP reads.
func (v *view) apply(kind, id string, value []byte) bool {
	switch kind {
	case topology.KindRouter:
		put(v.routers, id, value)
	case topology.KindPort:
		put(v.ports, id, value)
	case topology.KindBGPPeer:
		put(v.peers, id, value)
	case topology.KindBGPNetwork:
		put(v.networks, id, value)
	default:
		return false
	}
	return true
}

func put[T any](m map[string]T, id string, value []byte) {
	if value == nil {
		delete(m, id)
		return
	}
	var x T
	if json.Unmarshal(value, &x) == nil {
		m[id] = x
	}
}

func (v *view) topology() Topology {
	return Topology{Routers: values(v.routers), Ports: values(v.ports), Peers: values(v.peers), Networks: values(v.networks)}
}

func values[V any](m map[string]V) []V {
	out := make([]V, 0, len(m))
	for _, x := range m {
		out = append(out, x)
	}
	return out
}

// hostPlumbing plugs speakers' namespaces into the agent's datapath: the
// simulation sends an uplink's sessions to its helper port
// (sim.BGPHelperPort), and what the namespace sends goes out of the uplink
// untouched.
type hostPlumbing struct {
	host *agent.ServiceHost

	mu       sync.Mutex
	attached map[topology.ID]string // uplink → interface; guarded by mu
}

func (p *hostPlumbing) Attach(spec PortSpec, ifname string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.attached[spec.Port] == ifname {
		return nil // the peers changed: the simulation follows them
	}
	uplink := spec.Port
	helper := sim.BGPHelperPort(uplink)
	if _, err := p.host.AttachPort(helper, ifname, func(u *datapath.Upcall) { p.fromHelper(uplink, u) }); err != nil {
		return err
	}
	p.attached[uplink] = ifname
	// Flows from the uplink decided before may shadow its sessions.
	p.host.Flows.Invalidate([]sim.Tag{sim.DeviceTag(uplink)})
	return nil
}

func (p *hostPlumbing) Detach(port topology.ID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.attached[port]; !ok {
		return
	}
	delete(p.attached, port)
	helper := sim.BGPHelperPort(port)
	p.host.DetachPort(helper)
	p.host.Flows.Invalidate([]sim.Tag{sim.DeviceTag(port), sim.DeviceTag(helper)})
}

// fromHelper sends what a speaker's namespace emits out of its uplink, and
// installs the flow that does the same for what follows.
func (p *hostPlumbing) fromHelper(uplink topology.ID, u *datapath.Upcall) {
	since := p.host.Flows.Generation() // before the ports are read
	dp, ok := p.host.Ports().Local[uplink]
	if !ok {
		return // the uplink is not plugged in (yet): BGP retries
	}
	var mask packet.FlowKey
	mask.InPort = ^uint32(0)
	acts := []datapath.Action{datapath.Output(dp)}
	p.host.Flows.Add(&flows.Entry{Key: u.Key, Mask: mask, Actions: acts,
		Tags:    []sim.Tag{sim.DeviceTag(uplink), sim.DeviceTag(sim.BGPHelperPort(uplink))},
		Expires: time.Now().Add(helperFlowTimeout), Since: since})
	p.host.Datapath.Execute(u.Packet, acts, u.InPort)
}
