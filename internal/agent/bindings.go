package agent

import (
	"context"
	"errors"
	"maps"
	"net/netip"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
	"github.com/midonet/midonet/internal/translate"
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
	want := make(map[topology.ID]topology.Port, len(a.topo.local))
	for id := range a.topo.local {
		want[id] = a.topo.ports[id.String()]
	}
	a.mu.Lock()
	var activate, deactivate []topology.ID
	var plugged, unplugged []BoundPort
	rekeyed := false
	for id, b := range a.bound {
		p, ok := want[id]
		if ok && *p.InterfaceName == b.iface {
			if uint32(p.TunnelKey) != b.tunnelKey {
				delete(a.byKey, b.tunnelKey)
				b.tunnelKey = uint32(p.TunnelKey)
				a.byKey[b.tunnelKey] = id
				rekeyed = true
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
		unplugged = append(unplugged, b.public())
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
		plugged = append(plugged, b.public())
		a.log.Info("port bound", "port_id", id, "interface", b.iface, "dp_port", no)
	}
	if rekeyed || len(activate)+len(deactivate) > 0 {
		a.publishPortsLocked()
	}
	a.mu.Unlock()
	if len(activate)+len(deactivate) > 0 {
		// The simulation counts this host's ports as active at once, not
		// when the store echoes the keys written below: a flow simulated
		// in between would be invalidated by the echo.
		for _, id := range activate {
			a.topo.setActive(id, a.hostID)
		}
		for _, id := range deactivate {
			a.topo.clearActive(id, a.hostID)
		}
		a.publishSnapshot()
	}
	// Invalidate before the keys are written: once the cloud sees a port
	// active, the flows this host builds through it are there to stay.
	for _, id := range activate {
		a.flows.Invalidate([]sim.Tag{sim.DeviceTag(id)})
		a.writer.setActive(id, true)
		a.goRun(func() { a.pullState(ctx, id) })
	}
	for _, id := range deactivate {
		a.flows.Invalidate([]sim.Tag{sim.DeviceTag(id)})
		a.writer.setActive(id, false)
	}
	for _, p := range unplugged {
		a.services.portUnbound(p)
	}
	for _, p := range plugged {
		a.services.portBound(p)
	}
}

// public describes the binding to services.
func (b *boundPort) public() BoundPort {
	return BoundPort{ID: b.port, Interface: b.iface, DatapathPort: b.dp}
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
	var gone BoundPort
	switch {
	case !ok:
	case ev.Kind == datapath.PortRemoved:
		gone = b.public()
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
	a.flows.Invalidate([]sim.Tag{sim.DeviceTag(id)})
	if ev.Kind == datapath.PortRemoved {
		a.services.portUnbound(gone)
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
		Ports: translate.Ports{Local: map[topology.ID]datapath.PortNo{}, Peers: maps.Clone(a.peers),
			Overlay: a.vxlanPort, LocalIP: a.vxlanAddr},
		byDP: maps.Clone(a.byDP), byKey: map[uint32]datapath.PortNo{},
	}
	for id, b := range a.bound {
		t.Local[id] = b.dp
		t.byKey[b.tunnelKey] = b.dp
	}
	if len(a.svcPorts) > 0 {
		t.services = make(map[datapath.PortNo]PortHandler, len(a.svcPorts))
		for id, p := range a.svcPorts {
			t.Local[id] = p.dp
			t.services[p.dp] = p.handle
		}
	}
	a.ports.Store(t)
}
