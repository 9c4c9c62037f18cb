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
// touches it. Every change goes to its Builder as well, which compiles the
// next snapshot at the cost of what changed.
type topoCache struct {
	hostID topology.ID
	b      *sim.Builder
	// local are the ports bound to an interface of this host.
	local map[topology.ID]struct{}
	// zonesChanged: a tunnel zone changed since the tunnels were last
	// reconciled. mtuChanged: a zone or an interface changed since the
	// underlay MTU was last computed. dhcpChanged: the bridges whose DHCP
	// subnets changed since the builder last had them.
	zonesChanged, mtuChanged bool
	dhcpChanged              map[topology.ID]struct{}

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

func newTopoCache(hostID topology.ID) *topoCache {
	c := &topoCache{}
	c.reset(hostID)
	return c
}

func (c *topoCache) reset(hostID topology.ID) {
	*c = topoCache{
		hostID: hostID, b: sim.NewBuilder(true), local: map[topology.ID]struct{}{},
		zonesChanged: true, mtuChanged: true, dhcpChanged: map[topology.ID]struct{}{},
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
	tags := c.applyCached(kind, id, value)
	c.feed(kind, id)
	return tags
}

// applyCached applies the change to the cache's maps.
func (c *topoCache) applyCached(kind, id string, value []byte) []sim.Tag {
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
		c.zonesChanged, c.mtuChanged = true, true
	case topology.KindBGPPeer:
		tags = applyOwned(c.bgpPeers, id, value, tags, func(p topology.BGPPeer) topology.ID { return p.RouterID })
	case topology.KindDHCPSubnet, topology.KindDHCPSubnetV6:
		if br, ok := c.dhcp.bridgeOf(kind, id); ok {
			c.dhcpChanged[br] = struct{}{}
		}
		tags = c.dhcp.applyObject(kind, id, value, tags)
		if br, ok := c.dhcp.bridgeOf(kind, id); ok {
			c.dhcpChanged[br] = struct{}{}
		}
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

// feed gives the builder the object kind/id as the cache now holds it.
func (c *topoCache) feed(kind, id string) {
	uid, err := topology.ParseID(id)
	if err != nil {
		return // DHCP subnets (by bridge, at flush) and malformed ids
	}
	switch kind {
	case topology.KindBridge:
		feedObject(c.b, c.bridges, kind, id, uid)
	case topology.KindRouter:
		feedObject(c.b, c.routers, kind, id, uid)
	case topology.KindPort:
		feedObject(c.b, c.ports, kind, id, uid)
		c.syncPort(uid)
	case topology.KindRoute:
		feedObject(c.b, c.routes, kind, id, uid)
	case topology.KindChain:
		feedObject(c.b, c.chains, kind, id, uid)
	case topology.KindRule:
		feedObject(c.b, c.rules, kind, id, uid)
	case topology.KindPortGroup:
		feedObject(c.b, c.pgroups, kind, id, uid)
	case topology.KindIPAddrGroup:
		feedObject(c.b, c.ipgroups, kind, id, uid)
	case topology.KindBGPPeer:
		feedObject(c.b, c.bgpPeers, kind, id, uid)
	case topology.KindTrace:
		feedObject(c.b, c.traces, kind, id, uid)
	case topology.KindLoadBalancer:
		feedObject(c.b, c.svc.lbs, kind, id, uid)
	case topology.KindPool:
		feedObject(c.b, c.svc.pools, kind, id, uid)
	case topology.KindPoolMember:
		feedObject(c.b, c.svc.members, kind, id, uid)
	case topology.KindVIP:
		feedObject(c.b, c.svc.vips, kind, id, uid)
	case topology.KindMirror:
		feedObject(c.b, c.svc.mirrors, kind, id, uid)
	case topology.KindQOSDSCPRule:
		feedObject(c.b, c.svc.dscpRules, kind, id, uid)
	case topology.KindL2Insertion:
		feedObject(c.b, c.svc.insertions, kind, id, uid)
	}
}

// feedObject puts m[id] into the builder, or deletes it there when m does
// not hold it.
func feedObject[T any, PT interface {
	*T
	topology.Object
}](b *sim.Builder, m map[string]T, kind, id string, uid topology.ID) {
	if v, ok := m[id]; ok {
		b.Put(PT(&v))
		return
	}
	b.Delete(kind, uid)
}

// syncPort brings the builder's binding of port id and the local index up
// to date with the cached port and its active key: a bound port is usable
// once its host's agent reports it active.
func (c *topoCache) syncPort(id topology.ID) {
	p, ok := c.ports[id.String()]
	bound := ok && p.HostID != nil && p.InterfaceName != nil
	if bound && *p.HostID == c.hostID {
		c.local[id] = struct{}{}
	} else {
		delete(c.local, id)
	}
	if host, active := c.active[id]; bound && active && host == *p.HostID {
		c.b.SetBinding(sim.PortBinding{Port: id, Host: host, TunnelKey: uint32(p.TunnelKey)})
	} else {
		c.b.DeleteBinding(id)
	}
}

// setActive and clearActive record this host's own activation of a port.
func (c *topoCache) setActive(id, host topology.ID) {
	c.active[id] = host
	c.syncPort(id)
}

func (c *topoCache) clearActive(id, host topology.ID) {
	if c.active[id] == host {
		delete(c.active, id)
		c.syncPort(id)
	}
}

// flush gives the builder what it takes in batches: the routers' learned
// routes, the DHCP subnets of the bridges whose subnets changed, the
// underlay MTU.
func (c *topoCache) flush() {
	c.learned.flush(c.b)
	for br := range c.dhcpChanged {
		v4, v6 := c.dhcp.ofBridge(br)
		c.b.SetDHCP(br, v4, v6)
	}
	clear(c.dhcpChanged)
	if c.mtuChanged {
		c.b.SetUnderlayMTU(topology.UnderlayMTU(values(c.zones), values(c.dhcp.ifaces)))
		c.mtuChanged = false
	}
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
			old, had := c.arps[key]
			c.arps[key] = c.ageing.arpEntry(rid, ip, mac)
			c.b.SetARP(c.arps[key])
			if had && old.MAC == mac {
				return nil // refreshed: the flows through it stay right
			}
		}
		return tags
	case strings.HasPrefix(key, "/state/hosts/"):
		if c.dhcp.applyInterface(key, value) {
			c.mtuChanged = true
		}
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
		c.syncPort(pid)
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
	c := newTopoCache(a.hostID)
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
	// The tunnels change with the zones only; an overlay that could not
	// open is tried again.
	if a.topo.zonesChanged || a.overlayClosed() {
		a.topo.zonesChanged = false
		a.reconcileTunnels(ctx)
	}
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

// publishSnapshot builds the snapshot the workers read from the changes
// the builder has had since the last one. It reports false, keeping the
// previous snapshot, when the topology does not compile (the changes stay
// pending, and the next build tries them again with what came since).
func (a *Agent) publishSnapshot() bool {
	start := time.Now()
	a.topo.flush()
	snap, err := a.topo.b.Build()
	if err != nil {
		a.log.Error("topology does not compile; keeping the previous snapshot", "err", err)
		return false
	}
	a.snap.Store(snap)
	a.metrics.snapshotBuild.Observe(time.Since(start).Seconds())
	a.metrics.snapshotObjects.Observe(float64(a.topo.b.Compiled()))
	return true
}

// overlayClosed reports whether this host has no overlay port open.
func (a *Agent) overlayClosed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.vxlanPort == 0
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
