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
// simulation reads, kept current by the NSDB watch, and the builder that
// compiles them into snapshots change by change: a write costs the agent
// what it changes, not a compilation of the whole topology. Only
// followTopology touches it.
type topoCache struct {
	b    *sim.Builder
	host topology.ID // this host: its ports are plugged by reconcileBindings
	// local holds the ports bound to this host's interfaces.
	local map[topology.ID]struct{}
	// zonesChanged and localChanged say that tunnels and bindings need
	// reconciling: a tunnel zone, or a port bound here (before or after
	// the change), changed since the last reconciliation.
	zonesChanged, localChanged bool

	// The objects, shared with the builder: an event decodes a new one,
	// never changes one in place.
	bridges  map[string]*topology.Bridge
	routers  map[string]*topology.Router
	ports    map[string]*topology.Port
	routes   map[string]*topology.Route
	chains   map[string]*topology.Chain
	rules    map[string]*topology.Rule
	pgroups  map[string]*topology.PortGroup
	ipgroups map[string]*topology.IPAddrGroup
	zones    map[string]*topology.TunnelZone

	macs   map[string]sim.MACEntry   // by state key
	ipmacs map[string]sim.IPMACEntry // by state key
	arps   map[string]sim.ARPEntry   // by state key
	active map[topology.ID]topology.ID

	// bgpPeers decide which uplink traffic goes to a BGP speaker.
	bgpPeers map[string]*topology.BGPPeer
	// learned holds the routes learned by BGP, by state key; the routers'
	// tables change route by route (learned.go).
	learned learnedRoutes
}

func newTopoCache(host topology.ID) *topoCache {
	c := &topoCache{}
	c.reset(host)
	return c
}

func (c *topoCache) reset(host topology.ID) {
	*c = topoCache{
		b: sim.NewBuilder(true), host: host, local: map[topology.ID]struct{}{}, zonesChanged: true, localChanged: true,
		bridges: map[string]*topology.Bridge{}, routers: map[string]*topology.Router{},
		ports: map[string]*topology.Port{}, routes: map[string]*topology.Route{},
		chains: map[string]*topology.Chain{}, rules: map[string]*topology.Rule{},
		pgroups: map[string]*topology.PortGroup{}, ipgroups: map[string]*topology.IPAddrGroup{},
		zones: map[string]*topology.TunnelZone{},
		macs:  map[string]sim.MACEntry{}, ipmacs: map[string]sim.IPMACEntry{}, arps: map[string]sim.ARPEntry{},
		active:   map[topology.ID]topology.ID{},
		bgpPeers: map[string]*topology.BGPPeer{},
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
	uid, err := topology.ParseID(id)
	if err != nil {
		return nil
	}
	switch kind {
	case topology.KindBridge:
		apply(c.bridges, id, value)
		toBuilder(c.b, c.bridges, kind, uid)
		devTag(id)
	case topology.KindRouter:
		apply(c.routers, id, value)
		toBuilder(c.b, c.routers, kind, uid)
		devTag(id)
	case topology.KindPort:
		if old, ok := c.ports[id]; ok && c.isLocal(old) {
			c.localChanged = true
		}
		tags = applyOwned(c.ports, id, value, tags, func(p *topology.Port) topology.ID { return p.DeviceID })
		toBuilder(c.b, c.ports, kind, uid)
		devTag(id)
		delete(c.local, uid)
		if p, ok := c.ports[id]; ok && c.isLocal(p) {
			c.local[uid] = struct{}{}
			c.localChanged = true
		}
		c.bind(uid)
	case topology.KindRoute:
		tags = applyOwned(c.routes, id, value, tags, func(r *topology.Route) topology.ID { return r.RouterID })
		toBuilder(c.b, c.routes, kind, uid)
	case topology.KindChain:
		apply(c.chains, id, value)
		toBuilder(c.b, c.chains, kind, uid)
		devTag(id)
	case topology.KindRule:
		tags = applyOwned(c.rules, id, value, tags, func(r *topology.Rule) topology.ID { return r.ChainID })
		toBuilder(c.b, c.rules, kind, uid)
	case topology.KindPortGroup:
		apply(c.pgroups, id, value)
		toBuilder(c.b, c.pgroups, kind, uid)
		devTag(id)
	case topology.KindIPAddrGroup:
		apply(c.ipgroups, id, value)
		toBuilder(c.b, c.ipgroups, kind, uid)
		devTag(id)
	case topology.KindTunnelZone:
		apply(c.zones, id, value)
		c.zonesChanged = true
	case topology.KindBGPPeer:
		tags = applyOwned(c.bgpPeers, id, value, tags, func(p *topology.BGPPeer) topology.ID { return p.RouterID })
		toBuilder(c.b, c.bgpPeers, kind, uid)
	}
	return tags
}

// isLocal reports whether p is bound to an interface of this host.
func (c *topoCache) isLocal(p *topology.Port) bool {
	return p.HostID != nil && *p.HostID == c.host && p.InterfaceName != nil
}

// toBuilder hands m's object id, or its absence, to the builder.
func toBuilder[T any, P interface {
	*T
	topology.Object
}](b *sim.Builder, m map[string]*T, kind string, id topology.ID) {
	key := id.String()
	if v, ok := m[key]; ok {
		b.Put(P(v))
	} else {
		b.Delete(kind, id)
	}
}

// bind tells the builder whether a port is active: bound to an interface
// on a host whose agent reports it active.
func (c *topoCache) bind(id topology.ID) {
	p, ok := c.ports[id.String()]
	host, active := c.active[id]
	if ok && active && p.HostID != nil && p.InterfaceName != nil && host == *p.HostID {
		c.b.SetBinding(sim.PortBinding{Port: id, Host: host, TunnelKey: uint32(p.TunnelKey)})
		return
	}
	c.b.DeleteBinding(id)
}

// setActive records a port active on host (this one, when it plugs it).
func (c *topoCache) setActive(id, host topology.ID) {
	c.active[id] = host
	c.bind(id)
}

// clearActive records a port inactive, if it was active on host.
func (c *topoCache) clearActive(id, host topology.ID) {
	if c.active[id] == host {
		delete(c.active, id)
		c.bind(id)
	}
}

// applyOwned is apply for an object that belongs to a device (a port's
// bridge or router, a route's router, a rule's chain): it appends to tags
// the device it belonged to before the change and the one it belongs to
// after.
func applyOwned[T any](m map[string]*T, id string, value []byte, tags []sim.Tag, owner func(*T) topology.ID) []sim.Tag {
	if old, ok := m[id]; ok {
		tags = append(tags, sim.DeviceTag(owner(old)))
	}
	apply(m, id, value)
	if v, ok := m[id]; ok {
		tags = append(tags, sim.DeviceTag(owner(v)))
	}
	return tags
}

// apply decodes value into a new m[id], or deletes m[id] for a nil value.
func apply[T any](m map[string]*T, id string, value []byte) {
	if value == nil {
		delete(m, id)
		return
	}
	v := new(T)
	if err := json.Unmarshal(value, v); err != nil {
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
			c.b.DeleteMAC(old.Bridge, old.VLAN, old.MAC)
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
		c.b.SetMAC(c.macs[key])
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
			if _, had := c.ipmacs[key]; had {
				delete(c.ipmacs, key)
				c.b.DeleteIPMAC(bid, ip)
			}
			return nil
		}
		if mac, ok := nsdb.ParseMAC(string(value)); ok {
			c.ipmacs[key] = sim.IPMACEntry{Bridge: bid, IP: ip, MAC: mac}
			c.b.SetIPMAC(c.ipmacs[key])
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
			c.b.DeleteARP(rid, ip)
			return tags
		}
		if mac, ok := nsdb.ParseMAC(string(value)); ok {
			c.arps[key] = sim.ARPEntry{Router: rid, IP: ip, MAC: mac}
			c.b.SetARP(c.arps[key])
		}
		return tags
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
		c.bind(pid)
		return []sim.Tag{sim.DeviceTag(pid)}
	}
	return nil
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
	c := newTopoCache(a.hostID)
	for _, o := range objs {
		c.applyObject(o.Kind, o.ID, o.Value)
	}
	for _, prefix := range []string{"/state/bridges/", "/state/routers/", "/state/ports/", nsdb.LearnedRoutesPrefix} {
		entries, _, err := a.store.ListState(ctx, prefix)
		if err != nil {
			return 0, err
		}
		for _, e := range entries {
			c.applyState(e.Key, e.Value)
		}
	}
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
		return a.topo.applyObject(ev.Kind, ev.ID, value), true
	case strings.HasPrefix(ev.Key, "/state/bridges/"), strings.HasPrefix(ev.Key, "/state/routers/"),
		strings.HasPrefix(ev.Key, "/state/ports/"), strings.HasPrefix(ev.Key, nsdb.LearnedRoutesPrefix):
		return a.topo.applyState(ev.Key, value), true
	case strings.HasPrefix(ev.Key, "/state/nat/"):
		a.nat.observe(ev)
	}
	return nil, false
}

// rebuild compiles a new snapshot, publishes it, reconciles the tunnels and
// bindings of this host if a zone or a port bound here changed, and
// invalidates the flows the change affects.
func (a *Agent) rebuild(ctx context.Context, tags []sim.Tag) {
	if !a.publishSnapshot() {
		return
	}
	if a.topo.zonesChanged {
		a.topo.zonesChanged = false
		a.reconcileTunnels(ctx)
	}
	if a.topo.localChanged {
		a.topo.localChanged = false
		a.reconcileBindings(ctx)
	}
	if len(tags) > 0 {
		n := a.flows.Invalidate(tags)
		if n > 0 {
			a.log.Debug("flows invalidated", "flows", n, "tags", len(tags))
		}
	}
}

// publishSnapshot compiles what changed in the cached topology into the
// snapshot the workers read. It reports false, keeping the previous
// snapshot, when the topology does not compile.
func (a *Agent) publishSnapshot() bool {
	start := time.Now()
	a.topo.learned.flush(a.topo.b)
	objects := a.topo.b.Dirty()
	snap, err := a.topo.b.Build()
	if err != nil {
		a.log.Error("topology does not compile; keeping the previous snapshot", "err", err)
		return false
	}
	a.snap.Store(snap)
	a.metrics.snapshotBuild.Observe(time.Since(start).Seconds())
	a.metrics.snapshotObjects.Observe(float64(objects))
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
	for id := range a.topo.local {
		if _, ok := a.bound[id]; !ok {
			return true
		}
	}
	return false
}
