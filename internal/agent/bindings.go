package agent

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"sync"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// reconcileTunnels opens the overlay port on this host's tunnel-zone
// address and refreshes the peer table from the zones it belongs to.
func (a *Agent) reconcileTunnels(ctx context.Context) {
	addr, ok := a.localZoneAddr()
	peers := map[topology.ID]netip.Addr{}
	if ok {
		for _, z := range a.topo.zones {
			if _, member := z.Member(a.hostID); !member {
				continue
			}
			for _, m := range z.Members {
				if m.HostID == a.hostID {
					continue
				}
				if ip, err := netip.ParseAddr(m.IPAddress); err == nil {
					peers[m.HostID] = ip
				}
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.vxlanPort != 0 && (!ok || addr != a.vxlanAddr) {
		if err := a.dp.RemovePort(a.vxlanPort); err != nil {
			a.log.Warn("overlay port removal failed", "err", err)
		}
		a.log.Info("overlay closed", "addr", a.vxlanAddr)
		a.vxlanPort, a.vxlanAddr = 0, netip.Addr{}
	}
	if ok && a.vxlanPort == 0 {
		no, err := a.dp.AddPort(datapath.PortSpec{Kind: datapath.PortVXLAN, Name: "midonet-vxlan",
			LocalAddr: addr, UDPPort: a.cfg.TunnelPort})
		if err != nil {
			a.log.Error("overlay port cannot open; check the tunnel-zone address is on this host", "addr", addr, "err", err)
		} else {
			a.vxlanPort, a.vxlanAddr = no, addr
			a.log.Info("overlay open", "addr", addr, "udp_port", a.cfg.TunnelPort)
		}
	}
	if !maps.Equal(peers, a.peers) {
		a.peers = peers
		a.log.Info("tunnel peers", "peers", len(peers))
	}
	a.publishPortsLocked()
}

// reconcileBindings plugs into the datapath the interfaces bound to ports
// on this host, unplugs the ones unbound, and publishes each bound port as
// active.
func (a *Agent) reconcileBindings(ctx context.Context) {
	want := map[topology.ID]topology.Port{}
	for _, p := range a.topo.ports {
		if p.HostID != nil && *p.HostID == a.hostID && p.InterfaceName != nil {
			want[p.ID] = p
		}
	}
	a.mu.Lock()
	var activate, deactivate []topology.ID
	for id, b := range a.bound {
		p, ok := want[id]
		if ok && *p.InterfaceName == b.iface {
			if uint32(p.TunnelKey) != b.tunnelKey {
				delete(a.byKey, b.tunnelKey)
				b.tunnelKey = uint32(p.TunnelKey)
				a.byKey[b.tunnelKey] = id
			}
			continue
		}
		if err := a.dp.RemovePort(b.dp); err != nil && !errors.Is(err, datapath.ErrPortNotFound) {
			a.log.Warn("port unplug failed", "port_id", id, "interface", b.iface, "err", err)
		}
		delete(a.bound, id)
		delete(a.byDP, b.dp)
		delete(a.byKey, b.tunnelKey)
		deactivate = append(deactivate, id)
		a.log.Info("port unbound", "port_id", id, "interface", b.iface)
		if _, exists := a.topo.ports[id.String()]; exists {
			a.writer.recordLastHost(id) // the port may be bound elsewhere next
		}
	}
	for id, p := range want {
		if _, ok := a.bound[id]; ok {
			continue
		}
		no, err := a.dp.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: *p.InterfaceName})
		if err != nil {
			// The interface may not exist yet; the port event or the
			// interface scan retries when it appears.
			a.log.Warn("interface cannot be plugged yet", "port_id", id, "interface", *p.InterfaceName, "err", err)
			continue
		}
		b := &boundPort{port: id, iface: *p.InterfaceName, dp: no, tunnelKey: uint32(p.TunnelKey), up: true}
		a.bound[id], a.byDP[no], a.byKey[b.tunnelKey] = b, id, id
		activate = append(activate, id)
		a.log.Info("port bound", "port_id", id, "interface", b.iface, "dp_port", no)
	}
	a.publishPortsLocked()
	a.mu.Unlock()
	if len(activate)+len(deactivate) > 0 {
		// The simulation counts this host's ports as active at once, not
		// when the store echoes the keys written below: a flow simulated
		// in between would be invalidated by the echo.
		for _, id := range activate {
			a.topo.active[id] = a.hostID
		}
		for _, id := range deactivate {
			if a.topo.active[id] == a.hostID {
				delete(a.topo.active, id)
			}
		}
		a.publishSnapshot()
	}
	for _, id := range activate {
		a.writer.setActive(id, true)
		a.flows.invalidate([]sim.Tag{sim.DeviceTag(id)})
		a.wg.Add(1)
		go func() { defer a.wg.Done(); a.pullState(ctx, id) }()
	}
	for _, id := range deactivate {
		a.writer.setActive(id, false)
		a.flows.invalidate([]sim.Tag{sim.DeviceTag(id)})
	}
}

// retryBindings is called when interfaces may have appeared.
func (a *Agent) retryBindings() {
	select {
	case a.topoKick <- struct{}{}:
	default:
	}
}

// handlePortEvent follows interfaces going down, up or away.
func (a *Agent) handlePortEvent(ev datapath.PortEvent) {
	a.mu.Lock()
	id, ok := a.byDP[ev.Port]
	var b *boundPort
	if ok {
		b = a.bound[id]
	}
	switch {
	case !ok:
	case ev.Kind == datapath.PortRemoved:
		delete(a.bound, id)
		delete(a.byDP, ev.Port)
		delete(a.byKey, b.tunnelKey)
		a.publishPortsLocked()
	case ev.Kind == datapath.PortDown:
		b.up = false
	case ev.Kind == datapath.PortUp:
		b.up = true
	}
	a.mu.Unlock()
	if !ok {
		return
	}
	a.log.Info("interface "+ev.Kind.String(), "port_id", id, "interface", ev.Name)
	a.writer.setActive(id, ev.Kind == datapath.PortUp)
	a.flows.invalidate([]sim.Tag{sim.DeviceTag(id)})
	if ev.Kind == datapath.PortRemoved {
		a.retryBindings()
	}
}

// publishPorts copies the binding maps for the workers.
func (a *Agent) publishPorts() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.publishPortsLocked()
}

func (a *Agent) publishPortsLocked() {
	t := &portTables{
		byPort: map[topology.ID]datapath.PortNo{}, byDP: maps.Clone(a.byDP),
		byKey: map[uint32]datapath.PortNo{}, peers: maps.Clone(a.peers),
		vxlan: a.vxlanPort, localIP: a.vxlanAddr,
	}
	for id, b := range a.bound {
		t.byPort[id] = b.dp
		t.byKey[b.tunnelKey] = b.dp
	}
	a.dpPortsView.Store(t)
}

// stateWriter writes what workers learn (MACs, ARP entries, port
// activity) to the NSDB from its own goroutine, so that a slow or absent
// store never blocks the packet path.
type stateWriter struct {
	a  *Agent
	ch chan func(ctx context.Context) error

	mu   sync.Mutex
	macs map[sim.MACLearning]time.Time // recently written MAC mappings
}

func newStateWriter(a *Agent) *stateWriter {
	return &stateWriter{a: a, ch: make(chan func(ctx context.Context) error, 4096)}
}

func (w *stateWriter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-w.ch:
			if err := f(ctx); err != nil && ctx.Err() == nil {
				w.a.log.Warn("state write failed", "err", err)
			}
		}
	}
}

// submit queues a write; when the queue is full the write is dropped and
// counted (learning happens again on the next packet).
func (w *stateWriter) submit(f func(ctx context.Context) error) {
	select {
	case w.ch <- f:
	default:
		w.a.metrics.stateWritesDropped.Inc()
	}
}

func (w *stateWriter) setActive(port topology.ID, active bool) {
	host := w.a.hostID.String()
	w.submit(func(ctx context.Context) error {
		if active {
			return w.a.session.SetPortActive(ctx, port.String(), host)
		}
		return w.a.session.DeleteState(ctx, nsdb.PortActiveKey(port.String()))
	})
}

func (w *stateWriter) learnMAC(l sim.MACLearning) {
	// Packets keep reporting a MAC until the snapshot has it: write each
	// mapping once.
	w.mu.Lock()
	if w.macs == nil || len(w.macs) > 1<<16 {
		w.macs = map[sim.MACLearning]time.Time{}
	}
	key := l
	if last, ok := w.macs[key]; ok && time.Since(last) < learnRewriteAfter {
		w.mu.Unlock()
		return
	}
	w.macs[key] = time.Now()
	w.mu.Unlock()
	w.submit(func(ctx context.Context) error {
		_, err := w.a.session.LearnMAC(ctx, l.Bridge.String(), l.VLAN, l.MAC, l.Port.String())
		return err
	})
}

// learnRewriteAfter is how long the same learned MAC mapping is not
// written again.
const learnRewriteAfter = 5 * time.Second

func (w *stateWriter) learnARP(l sim.ARPLearning, router bool) {
	w.submit(func(ctx context.Context) error {
		if router {
			return w.a.session.SetRouterARP(ctx, l.Device.String(), l.IP, l.MAC)
		}
		_, err := w.a.session.LearnBridgeARP(ctx, l.Device.String(), l.IP, l.MAC)
		return err
	})
}
