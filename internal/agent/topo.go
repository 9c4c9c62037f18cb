package agent

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"time"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// topoCache is the agent's copy of the topology and of the state tables the
// simulation reads, kept current by the NSDB watch. Only followTopology
// touches it.
type topoCache struct {
	bridges  map[string]topology.Bridge
	routers  map[string]topology.Router
	ports    map[string]topology.Port
	routes   map[string]topology.Route
	chains   map[string]topology.Chain
	rules    map[string]topology.Rule
	pgroups  map[string]topology.PortGroup
	ipgroups map[string]topology.IPAddrGroup
	zones    map[string]topology.TunnelZone
	dhcp     dhcpCache
	traces   map[string]topology.TraceRequest

	ageing arpAgeing
	svc    serviceCache // load balancers, mirrors, QoS and L2 insertions

	macs   map[string]sim.MACEntry   // by state key
	ipmacs map[string]sim.IPMACEntry // by state key
	arps   map[string]sim.ARPEntry   // by state key
	active map[topology.ID]topology.ID

	// bgpPeers decide which uplink traffic goes to a BGP speaker.
	bgpPeers map[string]topology.BGPPeer
	// learned holds the routes learned by BGP, by state key; the routers'
	// tables change route by route (learned.go).
	learned learnedRoutes
}

func newTopoCache() *topoCache {
	c := &topoCache{}
	c.reset()
	return c
}

func (c *topoCache) reset() {
	*c = topoCache{
		bridges: map[string]topology.Bridge{}, routers: map[string]topology.Router{},
		ports: map[string]topology.Port{}, routes: map[string]topology.Route{},
		chains: map[string]topology.Chain{}, rules: map[string]topology.Rule{},
		pgroups: map[string]topology.PortGroup{}, ipgroups: map[string]topology.IPAddrGroup{},
		zones: map[string]topology.TunnelZone{}, dhcp: newDHCPCache(), traces: map[string]topology.TraceRequest{},
		svc:  newServiceCache(),
		macs: map[string]sim.MACEntry{}, ipmacs: map[string]sim.IPMACEntry{}, arps: map[string]sim.ARPEntry{},
		active:   map[topology.ID]topology.ID{},
		bgpPeers: map[string]topology.BGPPeer{},
		learned:  newLearnedRoutes(),
	}
}

// applyObject applies a put (value non-nil) or delete of a topology object
// and returns the tags of the flows the change may affect.
func (c *topoCache) applyObject(kind, id string, value []byte) []sim.Tag {
	var tags []sim.Tag
	devTag := func(s string) {
		if uid, err := topology.ParseID(s); err == nil {
			tags = append(tags, sim.DeviceTag(uid))
		}
	}
	switch kind {
	case topology.KindBridge:
		apply(c.bridges, id, value)
		devTag(id)
	case topology.KindRouter:
		apply(c.routers, id, value)
		devTag(id)
	case topology.KindPort:
		tags = applyOwned(c.ports, id, value, tags, func(p topology.Port) topology.ID { return p.DeviceID })
		devTag(id)
	case topology.KindRoute:
		tags = applyOwned(c.routes, id, value, tags, func(r topology.Route) topology.ID { return r.RouterID })
	case topology.KindChain:
		apply(c.chains, id, value)
		devTag(id)
	case topology.KindRule:
		tags = applyOwned(c.rules, id, value, tags, func(r topology.Rule) topology.ID { return r.ChainID })
	case topology.KindPortGroup:
		apply(c.pgroups, id, value)
		devTag(id)
	case topology.KindIPAddrGroup:
		apply(c.ipgroups, id, value)
		devTag(id)
	case topology.KindTunnelZone:
		apply(c.zones, id, value)
	case topology.KindBGPPeer:
		tags = applyOwned(c.bgpPeers, id, value, tags, func(p topology.BGPPeer) topology.ID { return p.RouterID })
	case topology.KindDHCPSubnet, topology.KindDHCPSubnetV6:
		tags = c.dhcp.applyObject(kind, id, value, tags)
	case topology.KindTrace:
		// Flows through the device, installed without the request or
		// with its old condition, must be simulated again.
		tags = applyOwned(c.traces, id, value, tags, func(t topology.TraceRequest) topology.ID {
			if t.DeviceID == nil {
				return topology.ID{}
			}
			return *t.DeviceID
		})
	default:
		tags, _ = c.svc.apply(kind, id, value, c)
	}
	return tags
}

// applyOwned is apply for an object that belongs to a device (a port's
// bridge or router, a route's router, a rule's chain): it appends to tags
// the device it belonged to before the change and the one it belongs to
// after.
func applyOwned[T any](m map[string]T, id string, value []byte, tags []sim.Tag, owner func(T) topology.ID) []sim.Tag {
	if old, ok := m[id]; ok {
		tags = append(tags, sim.DeviceTag(owner(old)))
	}
	apply(m, id, value)
	if v, ok := m[id]; ok {
		tags = append(tags, sim.DeviceTag(owner(v)))
	}
	return tags
}

// apply decodes value into m[id], or deletes m[id] for a nil value.
func apply[T any](m map[string]T, id string, value []byte) {
	if value == nil {
		delete(m, id)
		return
	}
	var v T
	if err := json.Unmarshal(value, &v); err != nil {
		return
	}
	m[id] = v
}

// applyState applies a state key change and returns the tags it affects.
func (c *topoCache) applyState(key string, value []byte) []sim.Tag {
	switch {
	case strings.HasPrefix(key, nsdb.LearnedRoutesPrefix):
		return c.learned.apply(key, value)
	case strings.HasPrefix(key, "/state/bridges/") && strings.Contains(key, "/mac/"):
		bridge, vlan, mac, ok := nsdb.ParseBridgeMACKey(key)
		if !ok {
			return nil
		}
		bid, err := topology.ParseID(bridge)
		if err != nil {
			return nil
		}
		old, had := c.macs[key]
		if value == nil {
			if !had {
				return nil
			}
			delete(c.macs, key)
			return []sim.Tag{sim.MACTag(old.Bridge, old.VLAN, old.MAC, old.Port)}
		}
		port, err := topology.ParseID(string(value))
		if err != nil {
			return nil
		}
		if had && old.Port == port {
			return nil // relearned where it was: nothing changes
		}
		c.macs[key] = sim.MACEntry{Bridge: bid, VLAN: vlan, MAC: mac, Port: port}
		tags := []sim.Tag{sim.FloodTag(bid, vlan, mac)}
		if had {
			tags = append(tags, sim.MACTag(old.Bridge, old.VLAN, old.MAC, old.Port))
		}
		return tags
	case strings.HasPrefix(key, "/state/bridges/") && strings.Contains(key, "/arp/"):
		bridge, ip, ok := nsdb.ParseBridgeARPKey(key)
		bid, err := topology.ParseID(bridge)
		if !ok || err != nil {
			return nil
		}
		if value == nil {
			delete(c.ipmacs, key)
			return nil
		}
		if mac, ok := nsdb.ParseMAC(string(value)); ok {
			c.ipmacs[key] = sim.IPMACEntry{Bridge: bid, IP: ip, MAC: mac}
		}
		return nil
	case strings.HasPrefix(key, "/state/routers/"):
		router, ip, ok := nsdb.ParseRouterARPKey(key)
		rid, err := topology.ParseID(router)
		if !ok || err != nil {
			return nil
		}
		tags := []sim.Tag{sim.ARPTag(rid, ip)}
		if value == nil {
			delete(c.arps, key)
			return tags
		}
		if mac, ok := nsdb.ParseMAC(string(value)); ok {
			old, had := c.arps[key]
			c.arps[key] = c.ageing.arpEntry(rid, ip, mac)
			if had && old.MAC == mac {
				return nil // refreshed: the flows through it stay right
			}
		}
		return tags
	case strings.HasPrefix(key, "/state/hosts/"):
		c.dhcp.applyInterface(key, value)
		return nil
	case strings.HasPrefix(key, "/state/ports/"):
		port, ok := nsdb.ParsePortActiveKey(key)
		pid, err := topology.ParseID(port)
		if !ok || err != nil {
			return nil
		}
		old, had := c.active[pid]
		if value == nil {
			if !had {
				return nil
			}
			delete(c.active, pid)
		} else if host, err := topology.ParseID(string(value)); err == nil {
			if had && old == host {
				// This agent's own activation, which it applied when it
				// plugged the port: flows built since then stay valid.
				return nil
			}
			c.active[pid] = host
		}
		return []sim.Tag{sim.DeviceTag(pid)}
	}
	return nil
}

// input assembles the simulation's input from the cache.
func (c *topoCache) input() sim.SnapshotInput {
	in := sim.SnapshotInput{
		Bridges: values(c.bridges), Routers: values(c.routers), Ports: values(c.ports),
		Routes: values(c.routes), Chains: values(c.chains), Rules: values(c.rules),
		PortGroups: values(c.pgroups), IPAddrGroups: values(c.ipgroups),
		MACTable: values(c.macs), IPMACTable: values(c.ipmacs), ARPTable: values(c.arps),
		BridgeARP: true, BGPPeers: values(c.bgpPeers), Learned: c.learned.tables(),
		TraceRequests: values(c.traces),
	}
	c.dhcp.fill(&in, c.zones)
	c.svc.fill(&in)
	for i := range in.Ports {
		p := &in.Ports[i]
		if p.HostID == nil || p.InterfaceName == nil {
			continue
		}
		// A bound port is usable once its host's agent reports it active.
		if host, ok := c.active[p.ID]; ok && host == *p.HostID {
			in.PortBinding = append(in.PortBinding, sim.PortBinding{Port: p.ID, Host: host, TunnelKey: uint32(p.TunnelKey)})
		}
	}
	return in
}

func values[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// followTopology loads the topology and state, then follows every change,
// rebuilding the snapshot after each batch of events. When the store is
// unreachable the last snapshot stays in use; a lost history reloads.
func (a *Agent) followTopology(ctx context.Context) {
	first := true
	for ctx.Err() == nil {
		rev, err := a.load(ctx)
		if err != nil {
			a.log.Warn("topology load failed; forwarding with the last snapshot", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		a.rebuild(ctx, nil)
		if first {
			close(a.ready)
			first = false
		}
		events := a.store.Watch(ctx, "/", rev)
		if !a.follow(ctx, events) {
			return
		}
		a.log.Warn("topology history lost; reloading")
	}
}

// load reads the whole topology and the state tables into a fresh cache.
func (a *Agent) load(ctx context.Context) (int64, error) {
	rev, objs, err := a.store.Snapshot(ctx)
	if err != nil {
		return 0, err
	}
	c := newTopoCache()
	c.ageing = arpAgeing{now: a.now, stale: a.cfg.ARPStale, expire: a.cfg.ARPExpire}
	for _, o := range objs {
		c.applyObject(o.Kind, o.ID, o.Value)
	}
	for _, prefix := range []string{"/state/bridges/", "/state/routers/", "/state/ports/", nsdb.LearnedRoutesPrefix, "/state/hosts/"} {
		entries, _, err := a.store.ListState(ctx, prefix)
		if err != nil {
			return 0, err
		}
		for _, e := range entries {
			c.applyState(e.Key, e.Value)
		}
	}
	a.tracer.sync(c.traces, a.topo.traces)
	a.topo = c
	return rev, nil
}

// coalesceWindow is how long the topology follower waits for more events
// before rebuilding the snapshot.
const coalesceWindow = 2 * time.Millisecond

// follow applies watch events in batches. It returns false when ctx ended,
// true when the history was lost and the topology must be reloaded.
func (a *Agent) follow(ctx context.Context, events <-chan nsdb.Event) bool {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	coalesce := time.NewTimer(coalesceWindow)
	defer coalesce.Stop()
	for {
		var ev nsdb.Event
		var ok bool
		select {
		case <-ctx.Done():
			return false
		case <-a.topoKick:
			a.reconcileBindings(ctx)
			continue
		case <-retry.C:
			// Bound interfaces that did not exist yet may have appeared.
			if a.pendingBindings() {
				a.reconcileBindings(ctx)
			}
			continue
		case ev, ok = <-events:
		}
		if !ok {
			return ctx.Err() == nil
		}
		var tags []sim.Tag
		changed := false
		for {
			if ev.Type == nsdb.EventResync {
				return true
			}
			t, c := a.applyEvent(ev)
			tags = append(tags, t...)
			changed = changed || c
			// Fold what is queued, and what arrives within a moment, into
			// the same rebuild: a storm of learned MACs then costs a few
			// rebuilds, not one per entry.
			select {
			case ev, ok = <-events:
				if ok {
					continue
				}
			default:
				coalesce.Reset(coalesceWindow)
				select {
				case ev, ok = <-events:
					if ok {
						continue
					}
				case <-coalesce.C:
				}
			}
			break
		}
		if changed {
			a.rebuild(ctx, tags)
		}
		if !ok {
			return ctx.Err() == nil
		}
	}
}

// applyEvent applies one event; changed reports whether the simulation's
// input changed.
func (a *Agent) applyEvent(ev nsdb.Event) (tags []sim.Tag, changed bool) {
	var value []byte
	if ev.Type == nsdb.EventPut {
		value = ev.Value
	}
	switch {
	case ev.Kind != "":
		tags = a.topo.applyObject(ev.Kind, ev.ID, value)
		if ev.Kind == topology.KindTrace {
			a.traceRequestChanged(ev.ID)
		}
		return tags, true
	case strings.HasPrefix(ev.Key, "/state/bridges/"), strings.HasPrefix(ev.Key, "/state/routers/"),
		strings.HasPrefix(ev.Key, "/state/ports/"), strings.HasPrefix(ev.Key, nsdb.LearnedRoutesPrefix),
		strings.HasPrefix(ev.Key, "/state/hosts/"):
		return a.topo.applyState(ev.Key, value), true
	case strings.HasPrefix(ev.Key, "/state/nat/"):
		a.nat.observe(ev)
	}
	return nil, false
}

// rebuild compiles a new snapshot, publishes it, reconciles the bindings
// and tunnels of this host, and invalidates the flows the change affects.
func (a *Agent) rebuild(ctx context.Context, tags []sim.Tag) {
	if !a.publishSnapshot() {
		return
	}
	a.reconcileTunnels(ctx)
	// Invalidate at once: flows simulated on the old snapshot go, and few
	// simulated on the new one (already valid) are taken with them. The
	// bindings below publish again and invalidate their own ports.
	if len(tags) > 0 {
		n := a.flows.Invalidate(tags)
		if n > 0 {
			a.log.Debug("flows invalidated", "flows", n, "tags", len(tags))
		}
	}
	a.reconcileBindings(ctx)
	a.applyRateLimits()
}

// publishSnapshot compiles the cached topology into the snapshot the
// workers read. It reports false, keeping the previous snapshot, when the
// topology does not compile.
func (a *Agent) publishSnapshot() bool {
	start := time.Now()
	snap, err := sim.NewSnapshot(a.topo.input())
	if err != nil {
		a.log.Error("topology does not compile; keeping the previous snapshot", "err", err)
		return false
	}
	a.snap.Store(snap)
	routers := make(map[topology.ID]bool, len(a.topo.routers))
	for _, r := range a.topo.routers {
		routers[r.ID] = true
	}
	a.routerSet.Store(&routers)
	a.metrics.snapshotBuild.Observe(time.Since(start).Seconds())
	return true
}

// localZoneAddr returns this host's address in its first tunnel zone.
func (a *Agent) localZoneAddr() (netip.Addr, bool) {
	for _, z := range a.topo.zones {
		if m, ok := z.Member(a.hostID); ok {
			if addr, err := netip.ParseAddr(m.IPAddress); err == nil {
				return addr, true
			}
		}
	}
	return netip.Addr{}, false
}

// pendingBindings reports whether a port bound to this host is not plugged.
func (a *Agent) pendingBindings() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.topo.ports {
		if p.HostID != nil && *p.HostID == a.hostID && p.InterfaceName != nil {
			if _, ok := a.bound[p.ID]; !ok {
				return true
			}
		}
	}
	return false
}
