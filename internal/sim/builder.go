package sim

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/midonet/midonet/internal/topology"
)

// Builder keeps a compiled Snapshot up to date change by change: Put and
// Delete change topology objects, the Set and Delete methods of the state
// tables change MAC, ARP and binding entries, SetDHCP, SetUnderlayMTU and
// SetLearned give bridges and routers their DHCP subnets, the underlay MTU
// and learned routes, and Build makes the next snapshot, recompiling only
// the objects a change touched and those whose compiled form depends on it
// (a port's bridge and peer, a route's router, a rule's chains, a trace
// request's device...). Objects a cloud has few of are compiled as a group:
// the L2 insertions into one plan, a load balancer with its router. An agent keeps one for its whole life, so that a
// write anywhere in a large cloud costs it what the write changes, not a
// compilation of the whole topology.
//
// A Builder is not safe for concurrent use; the snapshots it returns are
// immutable and may be read by any number of goroutines.
type Builder struct {
	cur       *Snapshot // the last snapshot built
	ix        *indexes
	bridgeARP bool

	bridges  map[ID]*topology.Bridge
	routers  map[ID]*topology.Router
	ports    map[ID]*topology.Port
	routes   map[ID]*topology.Route
	chains   map[ID]*topology.Chain
	rules    map[ID]*topology.Rule
	pgroups  map[ID]*topology.PortGroup
	ipgroups map[ID]map[[4]byte]struct{} // IP address groups, compiled
	mirrors  map[ID]*topology.Mirror
	dscp     map[ID]*topology.QOSDSCPRule
	lbs      map[ID]*topology.LoadBalancer
	pools    map[ID]*topology.Pool
	members  map[ID]*topology.PoolMember
	vips     map[ID]*topology.VIP
	bgpPeers map[ID]*topology.BGPPeer
	// Insertions are few: any change compiles their plan again.
	insertions  map[ID]*topology.L2Insertion
	insPorts    idSet // the ports the insertions name
	plan        *insertionPlan
	traces      map[ID]*topology.TraceRequest
	tracesByDev map[ID]idSet                 // device → the trace requests on it
	dhcp4       map[ID][]topology.DHCPSubnet // by bridge
	dhcp6       map[ID][]topology.DHCPSubnetV6
	underlayMTU int

	macs     map[ID]map[macKey]ID // by bridge
	ipmacs   map[ID]map[[4]byte][6]byte
	arps     map[ID]map[[4]byte]arpEntry // by router
	bindings map[ID]PortBinding
	learned  map[ID]*LearnedTable

	// What depends on what, to know what a change makes stale.
	devPorts   map[ID]idSet // bridge or router → its ports
	peersOf    map[ID]idSet // port → the ports that name it their peer
	rtrRoutes  map[ID]idSet // router → its routes
	ruleChains map[ID]idSet // rule → the chains that list it
	portGroups map[ID]idSet // port → the groups that list it
	rtrPeers   map[ID]idSet // router → its BGP peers
	lbRouters  idSet        // routers that had a load balancer at the last build
	compiled   int          // objects the last Build compiled

	dirty struct {
		ports, bridges, routers, chains, groups, mirrors idSet
		lbs                                              bool // recompile the routers with load balancers
		insertions                                       bool // compile the insertion plan again
		traceNames                                       bool
	}
}

type idSet = map[ID]struct{}

func addTo(m map[ID]idSet, k, v ID) {
	s := m[k]
	if s == nil {
		s = idSet{}
		m[k] = s
	}
	s[v] = struct{}{}
}

func removeFrom(m map[ID]idSet, k, v ID) {
	if s := m[k]; s != nil {
		delete(s, v)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

// NewBuilder returns an empty builder. bridgeARP is SnapshotInput.BridgeARP.
func NewBuilder(bridgeARP bool) *Builder {
	b := &Builder{ix: &indexes{}, bridgeARP: bridgeARP,
		bridges: map[ID]*topology.Bridge{}, routers: map[ID]*topology.Router{}, ports: map[ID]*topology.Port{},
		routes: map[ID]*topology.Route{}, chains: map[ID]*topology.Chain{}, rules: map[ID]*topology.Rule{},
		pgroups: map[ID]*topology.PortGroup{}, ipgroups: map[ID]map[[4]byte]struct{}{}, mirrors: map[ID]*topology.Mirror{},
		dscp: map[ID]*topology.QOSDSCPRule{}, lbs: map[ID]*topology.LoadBalancer{}, pools: map[ID]*topology.Pool{},
		members: map[ID]*topology.PoolMember{}, vips: map[ID]*topology.VIP{}, bgpPeers: map[ID]*topology.BGPPeer{},
		macs: map[ID]map[macKey]ID{}, ipmacs: map[ID]map[[4]byte][6]byte{}, arps: map[ID]map[[4]byte]arpEntry{},
		bindings: map[ID]PortBinding{}, learned: map[ID]*LearnedTable{},
		devPorts: map[ID]idSet{}, peersOf: map[ID]idSet{}, rtrRoutes: map[ID]idSet{}, ruleChains: map[ID]idSet{},
		portGroups: map[ID]idSet{}, rtrPeers: map[ID]idSet{}, lbRouters: idSet{},
		insertions: map[ID]*topology.L2Insertion{}, insPorts: idSet{}, traces: map[ID]*topology.TraceRequest{},
		tracesByDev: map[ID]idSet{}, dhcp4: map[ID][]topology.DHCPSubnet{}, dhcp6: map[ID][]topology.DHCPSubnetV6{},
	}
	b.clearDirty()
	return b
}

func (b *Builder) clearDirty() {
	b.dirty.ports, b.dirty.bridges, b.dirty.routers = idSet{}, idSet{}, idSet{}
	b.dirty.chains, b.dirty.groups, b.dirty.mirrors = idSet{}, idSet{}, idSet{}
	b.dirty.lbs, b.dirty.insertions, b.dirty.traceNames = false, false, false
}

// putInput puts every object and entry of in.
func (b *Builder) putInput(in *SnapshotInput) {
	for i := range in.Bridges {
		b.Put(&in.Bridges[i])
	}
	for i := range in.Routers {
		b.Put(&in.Routers[i])
	}
	for i := range in.Ports {
		b.Put(&in.Ports[i])
	}
	for i := range in.Routes {
		b.Put(&in.Routes[i])
	}
	for i := range in.Chains {
		b.Put(&in.Chains[i])
	}
	for i := range in.Rules {
		b.Put(&in.Rules[i])
	}
	for i := range in.PortGroups {
		b.Put(&in.PortGroups[i])
	}
	for i := range in.IPAddrGroups {
		b.Put(&in.IPAddrGroups[i])
	}
	for i := range in.Mirrors {
		b.Put(&in.Mirrors[i])
	}
	for i := range in.DSCPRules {
		b.Put(&in.DSCPRules[i])
	}
	for i := range in.LoadBalancers {
		b.Put(&in.LoadBalancers[i])
	}
	for i := range in.Pools {
		b.Put(&in.Pools[i])
	}
	for i := range in.PoolMembers {
		b.Put(&in.PoolMembers[i])
	}
	for i := range in.VIPs {
		b.Put(&in.VIPs[i])
	}
	for i := range in.BGPPeers {
		b.Put(&in.BGPPeers[i])
	}
	for i := range in.L2Insertions {
		b.Put(&in.L2Insertions[i])
	}
	for i := range in.TraceRequests {
		b.Put(&in.TraceRequests[i])
	}
	v4 := map[ID][]topology.DHCPSubnet{}
	for _, d := range in.DHCPSubnets {
		v4[d.BridgeID] = append(v4[d.BridgeID], d)
	}
	v6 := map[ID][]topology.DHCPSubnetV6{}
	for _, d := range in.DHCPSubnetsV6 {
		v6[d.BridgeID] = append(v6[d.BridgeID], d)
	}
	for id, l := range v4 {
		b.SetDHCP(id, l, v6[id])
	}
	for id, l := range v6 {
		if _, ok := v4[id]; !ok {
			b.SetDHCP(id, nil, l)
		}
	}
	b.SetUnderlayMTU(in.UnderlayMTU)
	for id, t := range in.Learned {
		b.SetLearned(id, t)
	}
	for _, e := range in.MACTable {
		b.SetMAC(e)
	}
	for _, e := range in.IPMACTable {
		b.SetIPMAC(e)
	}
	for _, e := range in.ARPTable {
		b.SetARP(e)
	}
	for _, e := range in.PortBinding {
		b.SetBinding(e)
	}
}

// Put adds or replaces a topology object (a value or a pointer to one of
// the kinds SnapshotInput holds); other kinds are ignored. A value is
// copied; a pointer is kept as it is, so that a caller that keeps the
// objects too (the agent's cache) holds each once: it must not change the
// object afterwards (replace it with a new one, and Put that).
func (b *Builder) Put(o topology.Object) {
	switch v := o.(type) {
	case *topology.Bridge:
		b.putBridge(v.ID, v)
	case topology.Bridge:
		b.putBridge(v.ID, &v)
	case *topology.Router:
		b.putRouter(v.ID, v)
	case topology.Router:
		b.putRouter(v.ID, &v)
	case *topology.Port:
		b.putPort(v.ID, v)
	case topology.Port:
		b.putPort(v.ID, &v)
	case *topology.Route:
		b.putRoute(v.ID, v)
	case topology.Route:
		b.putRoute(v.ID, &v)
	case *topology.Chain:
		b.putChain(v.ID, v)
	case topology.Chain:
		b.putChain(v.ID, &v)
	case *topology.Rule:
		b.putRule(v.ID, v)
	case topology.Rule:
		b.putRule(v.ID, &v)
	case *topology.PortGroup:
		b.putGroup(v.ID, v)
	case topology.PortGroup:
		b.putGroup(v.ID, &v)
	case *topology.IPAddrGroup:
		b.putIPGroup(v.ID, v)
	case topology.IPAddrGroup:
		b.putIPGroup(v.ID, &v)
	case *topology.Mirror:
		b.putMirror(v.ID, v)
	case topology.Mirror:
		b.putMirror(v.ID, &v)
	case *topology.QOSDSCPRule:
		b.putDSCP(v.ID, v)
	case topology.QOSDSCPRule:
		b.putDSCP(v.ID, &v)
	case *topology.LoadBalancer:
		putLB(b, b.lbs, v.ID, v)
	case topology.LoadBalancer:
		putLB(b, b.lbs, v.ID, &v)
	case *topology.Pool:
		putLB(b, b.pools, v.ID, v)
	case topology.Pool:
		putLB(b, b.pools, v.ID, &v)
	case *topology.PoolMember:
		putLB(b, b.members, v.ID, v)
	case topology.PoolMember:
		putLB(b, b.members, v.ID, &v)
	case *topology.VIP:
		putLB(b, b.vips, v.ID, v)
	case topology.VIP:
		putLB(b, b.vips, v.ID, &v)
	case *topology.BGPPeer:
		b.putBGPPeer(v.ID, v)
	case topology.BGPPeer:
		b.putBGPPeer(v.ID, &v)
	case *topology.L2Insertion:
		b.putInsertion(v.ID, v)
	case topology.L2Insertion:
		b.putInsertion(v.ID, &v)
	case *topology.TraceRequest:
		b.putTrace(v.ID, v)
	case topology.TraceRequest:
		b.putTrace(v.ID, &v)
	}
}

// Delete removes a topology object of kind (topology.KindBridge...); an
// absent one is ignored.
func (b *Builder) Delete(kind string, id ID) {
	switch kind {
	case topology.KindBridge:
		b.putBridge(id, nil)
	case topology.KindRouter:
		b.putRouter(id, nil)
	case topology.KindPort:
		b.putPort(id, nil)
	case topology.KindRoute:
		b.putRoute(id, nil)
	case topology.KindChain:
		b.putChain(id, nil)
	case topology.KindRule:
		b.putRule(id, nil)
	case topology.KindPortGroup:
		b.putGroup(id, nil)
	case topology.KindIPAddrGroup:
		b.putIPGroup(id, nil)
	case topology.KindMirror:
		b.putMirror(id, nil)
	case topology.KindQOSDSCPRule:
		b.putDSCP(id, nil)
	case topology.KindLoadBalancer:
		putLB(b, b.lbs, id, nil)
	case topology.KindPool:
		putLB(b, b.pools, id, nil)
	case topology.KindPoolMember:
		putLB(b, b.members, id, nil)
	case topology.KindVIP:
		putLB(b, b.vips, id, nil)
	case topology.KindBGPPeer:
		b.putBGPPeer(id, nil)
	case topology.KindL2Insertion:
		b.putInsertion(id, nil)
	case topology.KindTrace:
		b.putTrace(id, nil)
	}
}

// set stores v under id in m, or deletes id for a nil v, and returns the
// previous value.
func set[T any](m map[ID]*T, id ID, v *T) *T {
	old := m[id]
	if v == nil {
		delete(m, id)
	} else {
		m[id] = v
	}
	return old
}

// device marks a bridge or router dirty.
func (b *Builder) device(id ID) {
	if _, ok := b.routers[id]; ok {
		b.dirty.routers[id] = struct{}{}
		return
	}
	b.dirty.bridges[id] = struct{}{}
}

// portAndDevice marks a port and its device dirty.
func (b *Builder) portAndDevice(id ID) {
	b.dirty.ports[id] = struct{}{}
	if p := b.ports[id]; p != nil {
		b.device(p.DeviceID)
	}
}

func (b *Builder) putBridge(id ID, v *topology.Bridge) {
	old := set(b.bridges, id, v)
	b.dirty.bridges[id] = struct{}{}
	// Its ports name it (and inherit its QoS policy): created, deleted or
	// with another policy, they are compiled again.
	if old == nil || v == nil || !equalIDPtr(old.QOSPolicyID, v.QOSPolicyID) {
		for p := range b.devPorts[id] {
			b.dirty.ports[p] = struct{}{}
		}
	}
}

func (b *Builder) putRouter(id ID, v *topology.Router) {
	old := set(b.routers, id, v)
	b.dirty.routers[id] = struct{}{}
	// Its ports name it, and its BGP ports read its AS number and state.
	if old == nil || v == nil || len(b.rtrPeers[id]) > 0 {
		for p := range b.devPorts[id] {
			b.dirty.ports[p] = struct{}{}
		}
	}
	if (old != nil && old.LoadBalancerID != nil) || (v != nil && v.LoadBalancerID != nil) {
		b.dirty.lbs = true
	}
}

func (b *Builder) putPort(id ID, v *topology.Port) {
	old := set(b.ports, id, v)
	b.dirty.ports[id] = struct{}{}
	if _, ok := b.insPorts[id]; ok {
		b.dirty.insertions = true
	}
	for _, p := range []*topology.Port{old, v} {
		if p == nil {
			continue
		}
		b.device(p.DeviceID)
		if p.PeerID != nil {
			// The peer's link and the tables of its device (a bridge
			// knows its routers' MACs) depend on this port.
			b.portAndDevice(*p.PeerID)
		}
	}
	// The ports that name this one their peer link to it only while it
	// exists.
	for q := range b.peersOf[id] {
		b.portAndDevice(q)
	}
	if old != nil {
		removeFrom(b.devPorts, old.DeviceID, id)
		if old.PeerID != nil {
			removeFrom(b.peersOf, *old.PeerID, id)
		}
	}
	if v != nil {
		addTo(b.devPorts, v.DeviceID, id)
		if v.PeerID != nil {
			addTo(b.peersOf, *v.PeerID, id)
		}
	}
}

func (b *Builder) putRoute(id ID, v *topology.Route) {
	old := set(b.routes, id, v)
	if old != nil {
		b.dirty.routers[old.RouterID] = struct{}{}
		removeFrom(b.rtrRoutes, old.RouterID, id)
	}
	if v != nil {
		b.dirty.routers[v.RouterID] = struct{}{}
		addTo(b.rtrRoutes, v.RouterID, id)
	}
}

func (b *Builder) putChain(id ID, v *topology.Chain) {
	old := set(b.chains, id, v)
	b.dirty.chains[id] = struct{}{}
	if old != nil {
		for _, r := range old.RuleIDs {
			removeFrom(b.ruleChains, r, id)
		}
	}
	if v != nil {
		for _, r := range v.RuleIDs {
			addTo(b.ruleChains, r, id)
		}
	}
}

func (b *Builder) putRule(id ID, v *topology.Rule) {
	set(b.rules, id, v)
	for c := range b.ruleChains[id] {
		b.dirty.chains[c] = struct{}{}
	}
}

func (b *Builder) putGroup(id ID, v *topology.PortGroup) {
	old := set(b.pgroups, id, v)
	b.dirty.groups[id] = struct{}{}
	for _, g := range []*topology.PortGroup{old, v} {
		if g == nil {
			continue
		}
		for _, p := range g.PortIDs {
			b.dirty.ports[p] = struct{}{}
		}
	}
	if old != nil {
		for _, p := range old.PortIDs {
			removeFrom(b.portGroups, p, id)
		}
	}
	if v != nil {
		for _, p := range v.PortIDs {
			addTo(b.portGroups, p, id)
		}
	}
}

func (b *Builder) putIPGroup(id ID, v *topology.IPAddrGroup) {
	if v == nil {
		delete(b.ipgroups, id)
	} else {
		m := map[[4]byte]struct{}{}
		for _, a := range v.IPAddrPorts {
			if x, err := netip.ParseAddr(a.IPAddress); err == nil && x.Is4() {
				m[x.As4()] = struct{}{}
			}
		}
		b.ipgroups[id] = m
	}
	// Mirrors and trace requests (few) may match on it: compiled again.
	for m := range b.mirrors {
		b.dirty.mirrors[m] = struct{}{}
	}
	for _, t := range b.traces {
		b.traceDevice(t)
	}
	// The chains whose rules match on the group hold its addresses.
	for rid, r := range b.rules {
		if equalIDPtr(r.IPAddrGroupSrc, &id) || equalIDPtr(r.IPAddrGroupDst, &id) {
			for c := range b.ruleChains[rid] {
				b.dirty.chains[c] = struct{}{}
			}
		}
	}
}

func (b *Builder) putMirror(id ID, v *topology.Mirror) {
	set(b.mirrors, id, v)
	b.dirty.mirrors[id] = struct{}{}
}

func (b *Builder) putDSCP(id ID, v *topology.QOSDSCPRule) {
	set(b.dscp, id, v)
	// Rare: every port's mark is compiled again.
	for p := range b.ports {
		b.dirty.ports[p] = struct{}{}
	}
}

func putLB[T any](b *Builder, m map[ID]*T, id ID, v *T) {
	set(m, id, v)
	b.dirty.lbs = true
}

func (b *Builder) putBGPPeer(id ID, v *topology.BGPPeer) {
	old := set(b.bgpPeers, id, v)
	for _, p := range []*topology.BGPPeer{old, v} {
		if p == nil {
			continue
		}
		for q := range b.devPorts[p.RouterID] {
			b.dirty.ports[q] = struct{}{}
		}
	}
	if old != nil {
		removeFrom(b.rtrPeers, old.RouterID, id)
	}
	if v != nil {
		addTo(b.rtrPeers, v.RouterID, id)
	}
}

func (b *Builder) putInsertion(id ID, v *topology.L2Insertion) {
	set(b.insertions, id, v)
	b.dirty.insertions = true
	b.insPorts = idSet{}
	for _, x := range b.insertions {
		for _, p := range []*ID{x.PortID, x.SrvPortID} {
			if p != nil {
				b.insPorts[*p] = struct{}{}
			}
		}
	}
}

func (b *Builder) putTrace(id ID, v *topology.TraceRequest) {
	old := set(b.traces, id, v)
	b.dirty.traceNames = true
	for _, t := range []*topology.TraceRequest{old, v} {
		if t != nil && t.DeviceID != nil {
			b.traceDevice(t)
		}
	}
	if old != nil && old.DeviceID != nil {
		removeFrom(b.tracesByDev, *old.DeviceID, id)
	}
	if v != nil && v.DeviceID != nil {
		addTo(b.tracesByDev, *v.DeviceID, id)
	}
}

// traceDevice marks the device of trace request t dirty.
func (b *Builder) traceDevice(t *topology.TraceRequest) {
	if t.DeviceID == nil || t.DeviceType == nil {
		return
	}
	switch *t.DeviceType {
	case topology.TracePort:
		b.dirty.ports[*t.DeviceID] = struct{}{}
	case topology.TraceBridge:
		b.dirty.bridges[*t.DeviceID] = struct{}{}
	case topology.TraceRouter:
		b.dirty.routers[*t.DeviceID] = struct{}{}
	}
}

// SetDHCP gives a bridge its DHCP and DHCPv6 subnets (nil: none).
func (b *Builder) SetDHCP(bridge ID, v4 []topology.DHCPSubnet, v6 []topology.DHCPSubnetV6) {
	if len(v4) == 0 {
		delete(b.dhcp4, bridge)
	} else {
		b.dhcp4[bridge] = v4
	}
	if len(v6) == 0 {
		delete(b.dhcp6, bridge)
	} else {
		b.dhcp6[bridge] = v6
	}
	b.dirty.bridges[bridge] = struct{}{}
}

// SetUnderlayMTU sets SnapshotInput.UnderlayMTU: the bridges with DHCP
// subnets offer an MTU derived from it.
func (b *Builder) SetUnderlayMTU(mtu int) {
	if mtu == b.underlayMTU {
		return
	}
	b.underlayMTU = mtu
	for id := range b.dhcp4 {
		b.dirty.bridges[id] = struct{}{}
	}
}

// SetMAC adds or replaces a bridge MAC table entry.
func (b *Builder) SetMAC(e MACEntry) {
	m := b.macs[e.Bridge]
	if m == nil {
		m = map[macKey]ID{}
		b.macs[e.Bridge] = m
	}
	m[macKey{e.VLAN, e.MAC}] = e.Port
	b.dirty.bridges[e.Bridge] = struct{}{}
}

// DeleteMAC removes a bridge MAC table entry.
func (b *Builder) DeleteMAC(bridge ID, vlan uint16, mac [6]byte) {
	if m := b.macs[bridge]; m != nil {
		delete(m, macKey{vlan, mac})
		b.dirty.bridges[bridge] = struct{}{}
	}
}

// SetIPMAC adds or replaces an entry of a bridge's ARP suppression table;
// addresses that are not IPv4 are ignored.
func (b *Builder) SetIPMAC(e IPMACEntry) {
	if !e.IP.Is4() {
		return
	}
	m := b.ipmacs[e.Bridge]
	if m == nil {
		m = map[[4]byte][6]byte{}
		b.ipmacs[e.Bridge] = m
	}
	m[e.IP.As4()] = e.MAC
	b.dirty.bridges[e.Bridge] = struct{}{}
}

// DeleteIPMAC removes an entry of a bridge's ARP suppression table.
func (b *Builder) DeleteIPMAC(bridge ID, ip netip.Addr) {
	if m := b.ipmacs[bridge]; m != nil && ip.Is4() {
		delete(m, ip.As4())
		b.dirty.bridges[bridge] = struct{}{}
	}
}

// SetARP adds or replaces a router ARP table entry; addresses that are not
// IPv4 are ignored.
func (b *Builder) SetARP(e ARPEntry) {
	if !e.IP.Is4() {
		return
	}
	m := b.arps[e.Router]
	if m == nil {
		m = map[[4]byte]arpEntry{}
		b.arps[e.Router] = m
	}
	var exp, stale int64
	if !e.Expiry.IsZero() {
		exp = e.Expiry.UnixNano()
	}
	if !e.Stale.IsZero() {
		stale = e.Stale.UnixNano()
	}
	m[e.IP.As4()] = arpEntry{mac: e.MAC, stale: stale, expiry: exp}
	b.dirty.routers[e.Router] = struct{}{}
}

// DeleteARP removes a router ARP table entry.
func (b *Builder) DeleteARP(router ID, ip netip.Addr) {
	if m := b.arps[router]; m != nil && ip.Is4() {
		delete(m, ip.As4())
		b.dirty.routers[router] = struct{}{}
	}
}

// SetBinding marks a port active on a host; a binding equal to the one in
// place changes nothing.
func (b *Builder) SetBinding(e PortBinding) {
	if old, ok := b.bindings[e.Port]; ok && old == e {
		return
	}
	b.bindings[e.Port] = e
	b.portAndDevice(e.Port)
}

// DeleteBinding marks a port inactive.
func (b *Builder) DeleteBinding(port ID) {
	if _, ok := b.bindings[port]; !ok {
		return
	}
	delete(b.bindings, port)
	b.portAndDevice(port)
}

// SetLearned gives a router its table of learned routes (nil: none).
func (b *Builder) SetLearned(router ID, t *LearnedTable) {
	if t.Len() == 0 {
		t = nil
	}
	if b.learned[router] == t {
		return
	}
	if t == nil {
		delete(b.learned, router)
	} else {
		b.learned[router] = t
	}
	b.dirty.routers[router] = struct{}{}
}

// Compiled reports how many objects the last Build compiled: ports,
// bridges, routers, chains, port groups and mirrors.
func (b *Builder) Compiled() int { return b.compiled }

// Dirty reports how many objects the next Build compiles.
func (b *Builder) Dirty() int {
	d := &b.dirty
	return len(d.ports) + len(d.bridges) + len(d.routers) + len(d.chains) + len(d.groups) + len(d.mirrors)
}

// build is one Build's work: the next snapshot and its table writers.
type build struct {
	*Builder
	s       *Snapshot
	ports   *tableWriter[port]
	bridges *tableWriter[bridge]
	routers *tableWriter[router]
	chains  *tableWriter[chain]
	groups  *tableWriter[portGroup]
	mirrors *tableWriter[mirror]
}

// Build compiles what changed since the last Build (everything, the first
// time) into a new snapshot. On error (a port whose device is missing, a
// rule that does not compile) the changes stay pending: the next Build
// tries them again with what came since.
func (b *Builder) Build() (*Snapshot, error) {
	s := &Snapshot{ix: b.ix}
	if b.cur != nil {
		*s = *b.cur
	} else {
		b.dirtyAll()
	}
	if b.dirty.lbs {
		for r := range b.lbRouters {
			b.dirty.routers[r] = struct{}{}
		}
		for r := range b.routersWithLB() {
			b.dirty.routers[r] = struct{}{}
		}
	}
	s.underlayMTU = b.underlayMTU
	if b.dirty.traceNames {
		s.traceNames = map[ID]string{}
		for id, t := range b.traces {
			if t.Enabled && t.Name != nil && *t.Name != "" {
				s.traceNames[id] = *t.Name
			}
		}
	}
	var plan *insertionPlan
	built := false
	if oldPlan := b.plan; b.dirty.insertions {
		defer func() {
			if !built { // the next Build compiles the plan again
				b.plan, b.dirty.insertions = oldPlan, true
			}
		}()
		plan = b.compileInsertions()
		for id := range b.plan.ports() {
			b.dirty.ports[id] = struct{}{}
		}
		for id := range plan.ports() {
			b.dirty.ports[id] = struct{}{}
		}
	}
	bd := &build{Builder: b, s: s, ports: newTableWriter(&s.ports), bridges: newTableWriter(&s.bridges),
		routers: newTableWriter(&s.routers), chains: newTableWriter(&s.chains), groups: newTableWriter(&s.groups),
		mirrors: newTableWriter(&s.mirrors)}
	for id := range b.dirty.groups {
		bd.groups.set(b.ix.groups.of(id), b.compileGroup(id))
	}
	for id := range b.dirty.chains {
		c, err := b.compileChain(id)
		if err != nil {
			return nil, err
		}
		bd.chains.set(b.ix.chains.of(id), c)
	}
	if plan != nil {
		if b.plan != nil {
			for id := range b.plan.chains {
				if _, ok := plan.chains[id]; !ok {
					bd.chains.set(b.ix.chains.of(id), b.compileChainOrNil(id))
				}
			}
		}
		for id, c := range plan.chains {
			bd.chains.set(b.ix.chains.of(id), c)
		}
		b.plan = plan
	}
	for id := range b.dirty.mirrors {
		m, err := b.compileMirror(id)
		if err != nil {
			return nil, err
		}
		bd.mirrors.set(b.ix.mirrors.of(id), m)
	}
	for id := range b.dirty.ports {
		p, err := b.compilePort(id)
		if err != nil {
			return nil, err
		}
		bd.ports.set(b.ix.ports.of(id), p)
	}
	// Devices last: they read their ports as compiled above.
	for id := range b.dirty.bridges {
		br, err := bd.compileBridge(id)
		if err != nil {
			return nil, err
		}
		bd.bridges.set(b.ix.bridges.of(id), br)
	}
	for id := range b.dirty.routers {
		r, err := bd.compileRouter(id)
		if err != nil {
			return nil, err
		}
		bd.routers.set(b.ix.routers.of(id), r)
	}
	b.lbRouters = b.routersWithLB()
	b.compiled = b.Dirty()
	built = true
	b.ix.publish()
	b.cur = s
	b.clearDirty()
	return s, nil
}

// dirtyAll marks every object for compilation.
func (b *Builder) dirtyAll() {
	for id := range b.ports {
		b.dirty.ports[id] = struct{}{}
	}
	for id := range b.bridges {
		b.dirty.bridges[id] = struct{}{}
	}
	for id := range b.routers {
		b.dirty.routers[id] = struct{}{}
	}
	for id := range b.chains {
		b.dirty.chains[id] = struct{}{}
	}
	for id := range b.pgroups {
		b.dirty.groups[id] = struct{}{}
	}
	b.dirty.insertions, b.dirty.traceNames = true, true
	for id := range b.mirrors {
		b.dirty.mirrors[id] = struct{}{}
	}
}

// compileChainOrNil compiles stored chain id, or returns nil when it is
// missing or does not compile (a generated chain that no longer is).
func (b *Builder) compileChainOrNil(id ID) *chain {
	c, err := b.compileChain(id)
	if err != nil {
		return nil
	}
	return c
}

func (b *Builder) compileGroup(id ID) *portGroup {
	g := b.pgroups[id]
	if g == nil {
		return nil
	}
	return &portGroup{id: id, stateful: g.Stateful, ports: slices.Clone(g.PortIDs)}
}

func (b *Builder) chainList(ids ...*ID) []handle[chain] {
	var out []handle[chain]
	for _, id := range ids {
		if id != nil {
			out = append(out, b.ix.chains.of(*id))
		}
	}
	return out
}

func (b *Builder) mirrorList(ids []ID) []handle[mirror] {
	var out []handle[mirror]
	for _, id := range ids {
		out = append(out, b.ix.mirrors.of(id))
	}
	return out
}

func (b *Builder) compileChain(id ID) (*chain, error) {
	c := b.chains[id]
	if c == nil {
		return nil, nil
	}
	ch := &chain{id: id, tag: DeviceTag(id), rules: make([]rule, 0, len(c.RuleIDs))}
	if c.Name != nil {
		ch.name = *c.Name
	}
	for _, rid := range c.RuleIDs {
		tr, ok := b.rules[rid]
		if !ok {
			continue
		}
		r, err := b.compileRule(tr, b.ipgroups)
		if err != nil {
			return nil, fmt.Errorf("%w: chain %s: rule %s: %w", ErrTopology, id, rid, err)
		}
		ch.rules = append(ch.rules, r)
	}
	return ch, nil
}

func (b *Builder) compileMirror(id ID) (*mirror, error) {
	m := b.mirrors[id]
	if m == nil {
		return nil, nil
	}
	cm := &mirror{id: id, tag: DeviceTag(id), conds: make([]cond, len(m.Conditions))}
	if m.ToPortID != nil {
		cm.toID = *m.ToPortID
		cm.to = b.ix.ports.of(cm.toID)
	}
	for j := range m.Conditions {
		if err := b.compileCond(&cm.conds[j], &m.Conditions[j].Condition, b.ipgroups); err != nil {
			return nil, fmt.Errorf("%w: mirror %s: condition %d: %w", ErrTopology, id, j, err)
		}
	}
	return cm, nil
}

// dscpOf returns the DSCP mark of a QoS policy, or -1.
func (b *Builder) dscpOf(policy *ID) int16 {
	if policy == nil {
		return -1
	}
	// Should a policy hold more than one DSCP rule, the one with the
	// lowest id decides.
	mark, markID := int16(-1), ID{}
	for id, r := range b.dscp {
		if r.PolicyID != nil && *r.PolicyID == *policy && r.DSCPMark >= 0 && r.DSCPMark < 64 &&
			(mark < 0 || slices.Compare(id[:], markID[:]) < 0) {
			mark, markID = int16(r.DSCPMark), id
		}
	}
	return mark
}

func (b *Builder) compilePort(id ID) (*port, error) {
	tp := b.ports[id]
	if tp == nil {
		return nil, nil
	}
	p := &port{dscp: -1, id: id, tag: DeviceTag(id), device: tp.DeviceID, adminUp: tp.AdminStateUp, active: tp.Active,
		vlan: tp.VLANID, inChains: b.chainList(tp.InboundFilterID), outChains: b.chainList(tp.OutboundFilterID),
		mirrorsIn: b.mirrorList(tp.InboundMirrorIDs), mirrorsPostIn: b.mirrorList(tp.PostInFilterMirrorIDs),
		mirrorsPreOut: b.mirrorList(tp.PreOutFilterMirrorIDs), mirrorsOut: b.mirrorList(tp.OutboundMirrorIDs)}
	if tp.HostID != nil {
		p.host = *tp.HostID
	}
	if tp.InterfaceName != nil {
		p.ifName = *tp.InterfaceName
	}
	p.exterior = tp.IsExterior() || tp.Type == topology.PortTypeVxlan
	p.tunnelKey = uint32(tp.TunnelKey)
	policy := tp.QOSPolicyID
	switch tp.Type {
	case topology.PortTypeRouter:
		r, ok := b.routers[tp.DeviceID]
		if !ok {
			return nil, fmt.Errorf("%w: port %s: router %s does not exist", ErrTopology, id, tp.DeviceID)
		}
		p.router = b.ix.routers.of(tp.DeviceID)
		if tp.PortMAC != nil {
			p.mac, _ = topology.ParseMAC(*tp.PortMAC)
		}
		for _, sub := range tp.PortSubnet {
			pfx, err := netip.ParsePrefix(sub)
			if err == nil && pfx.Addr().Is4() {
				p.addr, p.hasAddr, p.subnet = pfx.Addr().As4(), true, toPrefix4(pfx)
				break
			}
		}
		if !p.hasAddr && tp.PortAddress != nil {
			if a, ok := topology.ParseIPv4(*tp.PortAddress); ok {
				p.addr, p.hasAddr = a.As4(), true
				p.subnet = toPrefix4(netip.PrefixFrom(a, tp.NetworkLength))
			}
		}
		// BGP: the ports that speak it, with the peers they reach.
		if p.hasAddr && topology.BGPOff(r, tp) == "" {
			for pid := range b.rtrPeers[tp.DeviceID] {
				if a, ok := topology.BGPPeerOnPort(b.bgpPeers[pid], tp); ok {
					p.bgpPeers = append(p.bgpPeers, a.As4())
				}
			}
			if p.bgpPeers != nil {
				slices.SortFunc(p.bgpPeers, func(x, y [4]byte) int { return slices.Compare(x[:], y[:]) })
				p.bgpHelper = BGPHelperPort(id)
			}
		}
	default:
		br, ok := b.bridges[tp.DeviceID]
		if !ok {
			return nil, fmt.Errorf("%w: port %s: bridge %s does not exist", ErrTopology, id, tp.DeviceID)
		}
		p.bridge = b.ix.bridges.of(tp.DeviceID)
		// A port's QoS policy marks the IPv4 it takes in; a bridge port
		// without one has its bridge's.
		if policy == nil {
			policy = br.QOSPolicyID
		}
	}
	p.dscp = b.dscpOf(policy)
	if bnd, ok := b.bindings[id]; ok {
		p.active, p.host, p.tunnelKey = true, bnd.Host, bnd.TunnelKey
	}
	if tp.PeerID != nil {
		if _, ok := b.ports[*tp.PeerID]; ok {
			p.peer = b.ix.ports.of(*tp.PeerID)
			p.exterior = false
		}
	}
	for g := range b.portGroups[id] {
		if _, ok := b.pgroups[g]; ok {
			p.groups = append(p.groups, g)
		}
	}
	slices.SortFunc(p.groups, func(x, y ID) int { return slices.Compare(x[:], y[:]) })
	b.plan.apply(b.ix, p)
	traces, err := b.compileTraces(topology.TracePort, id)
	if err != nil {
		return nil, err
	}
	p.traces = traces
	return p, nil
}

func (bd *build) compileBridge(id ID) (*bridge, error) {
	b := bd.Builder
	tb := b.bridges[id]
	if tb == nil {
		return nil, nil
	}
	traces, err := b.compileTraces(topology.TraceBridge, id)
	if err != nil {
		return nil, err
	}
	br := &bridge{deviceBase: deviceBase{id: id, tag: DeviceTag(id), adminUp: tb.AdminStateUp,
		inChains: b.chainList(tb.InboundFilterID), outChains: b.chainList(tb.OutboundFilterID),
		mirrorsIn: b.mirrorList(tb.InboundMirrorIDs), mirrorsOut: b.mirrorList(tb.OutboundMirrorIDs),
		traces: traces}, ipMAC: maps.Clone(b.ipmacs[id]), answerARP: b.bridgeARP}
	compileDHCP(br, b.dhcp4[id], b.dhcp6[id], b.underlayMTU)
	// Maps are made only when they hold something: a thousand-port cloud
	// has thousands of small bridges (and nil maps read as empty).
	if tb.Name != nil {
		br.name = *tb.Name
	}
	self := b.ix.bridges.of(id)
	for pid := range b.devPorts[id] {
		h := b.ix.ports.of(pid)
		p := bd.s.port(h)
		if p == nil || p.bridge != self {
			continue
		}
		if p.exterior {
			br.flood = append(br.flood, h)
		}
		if p.peer != 0 && p.vlan != 0 {
			if br.vlanPorts == nil {
				br.vlanPorts = map[uint16]handle[port]{}
			}
			br.vlanPorts[p.vlan] = h
		}
		q := bd.s.port(p.peer)
		if q == nil {
			continue
		}
		if q.bridge != 0 && q.vlan != 0 {
			br.vabPeers = append(br.vabPeers, h)
		}
		if q.router != 0 {
			if br.rtrMACs == nil {
				br.rtrMACs, br.rtrIPs = map[[6]byte]handle[port]{}, map[[4]byte]rtrPort{}
			}
			br.rtrMACs[q.mac] = h
			if q.hasAddr {
				br.rtrIPs[q.addr] = rtrPort{port: h, mac: q.mac, subnet: q.subnet}
			}
		}
	}
	byID := func(x, y handle[port]) int {
		a, c := bd.s.port(x).id, bd.s.port(y).id
		return slices.Compare(a[:], c[:])
	}
	slices.SortFunc(br.flood, byID)
	slices.SortFunc(br.vabPeers, byID)
	if macs := b.macs[id]; len(macs) > 0 {
		br.macs = make(map[macKey]handle[port], len(macs))
		for k, pid := range macs {
			if _, ok := b.ports[pid]; ok {
				br.macs[k] = b.ix.ports.of(pid)
			}
		}
	}
	return br, nil
}

func (bd *build) compileRouter(id ID) (*router, error) {
	b := bd.Builder
	tr := b.routers[id]
	if tr == nil {
		return nil, nil
	}
	traces, err := b.compileTraces(topology.TraceRouter, id)
	if err != nil {
		return nil, err
	}
	r := &router{deviceBase: deviceBase{id: id, tag: DeviceTag(id), adminUp: tr.AdminStateUp,
		inChains:  b.chainList(tr.LocalRedirectChainID, tr.InboundFilterID),
		outChains: b.chainList(tr.ForwardChainID, tr.OutboundFilterID),
		mirrorsIn: b.mirrorList(tr.InboundMirrorIDs), mirrorsOut: b.mirrorList(tr.OutboundMirrorIDs),
		traces: traces}, arp: maps.Clone(b.arps[id]), learned: b.learned[id]}
	if tr.Name != nil {
		r.name = *tr.Name
	}
	self := b.ix.routers.of(id)
	r.table = newRoutingTable(bd.routesOf(id, self))
	r.lb = b.compileLB(tr)
	return r, nil
}

// routesOf compiles a router's routes: the stored ones plus those every
// router port implies (LOCAL /32 for its address, a PORT route for its
// subnet) when the store does not hold them already.
func (bd *build) routesOf(id ID, self handle[router]) []*route {
	b := bd.Builder
	type implied struct {
		dst  prefix4
		kind routeKind
		port ID
	}
	have := map[implied]bool{}
	var rs []*route
	for rid := range b.rtrRoutes[id] {
		tr := b.routes[rid]
		rt := &route{id: tr.ID, tag: RouteTag(tr.ID), src: toPrefix4(tr.SrcPrefix()), dst: toPrefix4(tr.DstPrefix()), weight: tr.Weight}
		switch tr.Type {
		case topology.RouteBlackHole:
			rt.kind = routeBlackhole
		case topology.RouteReject:
			rt.kind = routeReject
		case topology.RouteLocal:
			rt.kind = routeLocal
		default:
			rt.kind = routePort
		}
		var p *port
		if tr.NextHopPort != nil {
			rt.portID = *tr.NextHopPort
			h := b.ix.ports.lookup(rt.portID)
			if q := bd.s.port(h); q != nil && q.router == self {
				rt.port, p = h, q
			}
		}
		if rt.kind == routePort {
			// MidoNet keeps routes through an exterior port only while the
			// port is up and active, and ignores routes to unknown ports.
			if p == nil || (p.exterior && (!p.adminUp || !p.active)) {
				continue
			}
		}
		if tr.NextHopGateway != nil {
			if a, ok := topology.ParseIPv4(*tr.NextHopGateway); ok && a != netip.IPv4Unspecified() {
				rt.gateway, rt.hasGateway = a.As4(), true
			}
		}
		have[implied{rt.dst, rt.kind, rt.portID}] = true
		rs = append(rs, rt)
	}
	for pid := range b.devPorts[id] {
		h := b.ix.ports.of(pid)
		p := bd.s.port(h)
		if p == nil || p.router != self || !p.hasAddr {
			continue
		}
		local := implied{prefix4{u32(p.addr), 32}, routeLocal, p.id}
		if !have[local] {
			rid := uuid.NewSHA1(p.id, []byte("local"))
			rs = append(rs, &route{id: rid, tag: RouteTag(rid), dst: local.dst, kind: routeLocal, port: h, portID: p.id})
		}
		sub := implied{p.subnet, routePort, p.id}
		if !have[sub] && (!p.exterior || (p.adminUp && p.active)) {
			rid := uuid.NewSHA1(p.id, []byte("subnet"))
			rs = append(rs, &route{id: rid, tag: RouteTag(rid), dst: sub.dst, kind: routePort, port: h, portID: p.id})
		}
	}
	return rs
}

// routersWithLB returns the routers a load balancer is attached to.
func (b *Builder) routersWithLB() idSet {
	out := idSet{}
	for _, l := range b.lbs {
		if l.RouterID != nil {
			out[*l.RouterID] = struct{}{}
		}
	}
	for id, r := range b.routers {
		if r.LoadBalancerID != nil {
			out[id] = struct{}{}
		}
	}
	return out
}

// compileLB compiles the load balancer attached to router r: the one it
// names, else one that names it.
func (b *Builder) compileLB(r *topology.Router) *loadBalancer {
	var l *topology.LoadBalancer
	if r.LoadBalancerID != nil {
		l = b.lbs[*r.LoadBalancerID]
	}
	if l == nil {
		for _, x := range b.lbs {
			if x.RouterID != nil && *x.RouterID == r.ID && (l == nil || strings.Compare(x.ID.String(), l.ID.String()) < 0) {
				l = x
			}
		}
	}
	if l == nil {
		return nil
	}
	lb := &loadBalancer{id: l.ID, tag: DeviceTag(l.ID), adminUp: l.AdminStateUp}
	pools := map[ID]*pool{}
	poolOf := func(id ID) *pool {
		if p, ok := pools[id]; ok {
			return p
		}
		tp := b.pools[id]
		if tp == nil {
			return nil
		}
		p := &pool{id: id, tag: DeviceTag(id), adminUp: tp.AdminStateUp}
		for _, m := range b.members {
			if m.PoolID == nil || *m.PoolID != id || m.Address == nil {
				continue
			}
			a, ok := topology.ParseIPv4(*m.Address)
			if !ok {
				continue
			}
			p.members = append(p.members, &member{addr: a.As4(), port: uint16(m.ProtocolPort), weight: m.Weight,
				adminUp: m.AdminStateUp, healthy: m.Status == "" || strings.EqualFold(m.Status, "ACTIVE")})
		}
		slices.SortFunc(p.members, func(x, y *member) int {
			if c := slices.Compare(x.addr[:], y.addr[:]); c != 0 {
				return c
			}
			return int(x.port) - int(y.port)
		})
		pools[id] = p
		return p
	}
	for _, v := range b.vips {
		if v.LoadBalancerID == nil || *v.LoadBalancerID != l.ID || v.Address == nil {
			continue
		}
		a, ok := topology.ParseIPv4(*v.Address)
		if !ok {
			continue
		}
		cv := &vip{id: v.ID, addr: a.As4(), port: uint16(v.ProtocolPort), adminUp: v.AdminStateUp,
			sticky: v.SessionPersistence != nil && strings.EqualFold(*v.SessionPersistence, "SOURCE_IP")}
		if v.PoolID != nil {
			cv.pool = poolOf(*v.PoolID)
		}
		lb.vips = append(lb.vips, cv)
	}
	slices.SortFunc(lb.vips, func(x, y *vip) int { return slices.Compare(x.id[:], y.id[:]) })
	return lb
}

func equalIDPtr(a, b *ID) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
