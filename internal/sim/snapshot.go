package sim

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/midonet/midonet/internal/dhcp"
	"github.com/midonet/midonet/internal/topology"
)

// ID is a topology object id.
type ID = topology.ID

// MACEntry is a bridge MAC table entry: frames to MAC on VLAN go to Port.
type MACEntry struct {
	Bridge ID
	VLAN   uint16
	MAC    [6]byte
	Port   ID
}

// IPMACEntry is an entry of a bridge's IPv4→MAC (ARP suppression) table.
type IPMACEntry struct {
	Bridge ID
	IP     netip.Addr
	MAC    [6]byte
}

// ARPEntry is an entry of a router's ARP table. A zero Expiry never
// expires; past Expiry the entry is ignored. Past Stale (zero: never), a
// router that uses the entry asks the next hop again (Result.ARPRefresh)
// while it keeps using it, as MidoNet's ARP cache does.
type ARPEntry struct {
	Router ID
	IP     netip.Addr
	MAC    [6]byte
	Stale  time.Time
	Expiry time.Time
}

// PortBinding says a port is active: bound to an interface on Host, where
// its traffic arrives with tunnel key TunnelKey.
type PortBinding struct {
	Port      ID
	Host      ID
	TunnelKey uint32
}

// SnapshotInput is everything a Snapshot is compiled from: the topology
// objects and the state tables. The slices are read, not kept.
type SnapshotInput struct {
	Bridges      []topology.Bridge
	Routers      []topology.Router
	Ports        []topology.Port
	Routes       []topology.Route
	Chains       []topology.Chain
	Rules        []topology.Rule
	PortGroups   []topology.PortGroup
	IPAddrGroups []topology.IPAddrGroup
	Mirrors      []topology.Mirror
	// DSCPRules mark the IPv4 traffic entering ports whose QoS policy
	// (for a bridge port without one, its bridge's) holds one.
	DSCPRules []topology.QOSDSCPRule
	// L4 load balancers, attached to routers by LoadBalancer.RouterID or
	// Router.LoadBalancerID. A member's Status is "ACTIVE" (or empty) when
	// healthy.
	LoadBalancers []topology.LoadBalancer
	Pools         []topology.Pool
	PoolMembers   []topology.PoolMember
	VIPs          []topology.VIP
	// L2Insertions put service ports in the path of protected ports.
	L2Insertions []topology.L2Insertion
	// TraceRequests ask for the packets matching a condition at a port,
	// bridge or router to be traced; disabled ones are left out.
	TraceRequests []topology.TraceRequest

	// DHCPSubnets are the bridges' DHCP subnets with their hosts; the
	// bridge's agent answers its VMs' requests from them.
	DHCPSubnets []topology.DHCPSubnet
	// DHCPSubnetsV6 are the bridges' DHCPv6 subnets with their hosts.
	DHCPSubnetsV6 []topology.DHCPSubnetV6
	// UnderlayMTU is the smallest MTU of the tunnel-zone members'
	// underlay interfaces, 0 when unknown (1500 is assumed). DHCP offers it
	// minus the overlay's overhead to subnets without an interfaceMTU.
	UnderlayMTU int

	// Learned are the routers' learned routes (BGP), by router: tables
	// the agent keeps up to date change by change and the snapshot takes
	// as they are (see LearnedTable).
	Learned map[ID]*LearnedTable

	// BGPPeers are the routers' BGP peers: a router port that reaches
	// some sends its sessions with them to its BGP helper.
	BGPPeers []topology.BGPPeer

	MACTable    []MACEntry
	IPMACTable  []IPMACEntry
	ARPTable    []ARPEntry
	PortBinding []PortBinding

	// BridgeARP lets bridges answer ARP requests from their IPv4→MAC tables
	// (MidoNet's agent.midolman.enable_bridge_arp). Bridges always answer for
	// the addresses of router ports linked to them, and routers always use
	// the tables to resolve next hops on the bridge.
	BridgeARP bool
}

// ErrTopology is wrapped by NewSnapshot's errors.
var ErrTopology = errors.New("sim: inconsistent topology")

// Snapshot is an immutable, compiled view of the virtual topology and its
// state tables, shared by all workers. Build a new one on every change.
type Snapshot struct {
	ports   map[ID]*port
	bridges map[ID]*bridge
	routers map[ID]*router
	chains  map[ID]*chain
	groups  map[ID]*portGroup
	names   map[ID]string // for traces
	// underlayMTU is SnapshotInput.UnderlayMTU.
	underlayMTU int
}

// UnderlayMTU is the smallest MTU of the tunnel-zone members' underlay
// interfaces the snapshot was compiled with, 0 when unknown.
func (s *Snapshot) UnderlayMTU() int { return s.underlayMTU }

// PortInfo describes a port for the agent's translation of egress ports to
// datapath outputs and tunnels.
type PortInfo struct {
	ID            ID
	Device        ID
	Host          ID // zero when the port is not active
	TunnelKey     uint32
	InterfaceName string
	Exterior      bool
	Active        bool
	AdminUp       bool
}

// Port returns what the agent needs to know about port id.
func (s *Snapshot) Port(id ID) (PortInfo, bool) {
	p, ok := s.ports[id]
	if !ok {
		return PortInfo{}, false
	}
	return PortInfo{ID: p.id, Device: p.deviceID(), Host: p.host, TunnelKey: p.tunnelKey, InterfaceName: p.ifName,
		Exterior: p.exterior, Active: p.active, AdminUp: p.adminUp}, true
}

// StatefulGroupPeers returns the ports of the stateful port groups id
// belongs to (id included), to which flow state must also be replicated.
func (s *Snapshot) StatefulGroupPeers(id ID) []ID {
	p, ok := s.ports[id]
	if !ok {
		return nil
	}
	var out []ID
	for _, g := range p.groups {
		if g.stateful {
			out = append(out, g.ports...)
		}
	}
	return out
}

type port struct {
	id        ID
	tag       Tag // DeviceTag(id), computed once
	bridge    *bridge
	router    *router
	peer      *port
	exterior  bool // bound to a host interface, or a VXLAN port
	active    bool
	adminUp   bool
	host      ID
	tunnelKey uint32
	ifName    string
	inChains  []*chain
	outChains []*chain
	groups    []*portGroup
	vlan      uint16 // bridge interior port of a VLAN-aware bridge
	dscp      int16  // DSCP mark for IPv4 entering this bridge port, or -1
	// service: the service port of an L2 insertion, which takes only
	// redirected traffic; servicePorts: a protected port's service ports.
	service      bool
	servicePorts []ID

	// Mirrors at the port's four mirror points, in traversal order.
	mirrorsIn, mirrorsPostIn, mirrorsPreOut, mirrorsOut []*mirror

	// Router ports.
	mac     [6]byte
	addr    [4]byte
	hasAddr bool
	subnet  prefix4
	// BGP: the peers whose sessions go to the port's helper.
	bgpPeers  [][4]byte
	bgpHelper ID

	traces []*traceReq // enabled trace requests on the port
}

func (p *port) deviceID() ID {
	if p.bridge != nil {
		return p.bridge.id
	}
	if p.router != nil {
		return p.router.id
	}
	return ID{}
}

func (p *port) inGroup(g ID) bool {
	for _, x := range p.groups {
		if x.id == g {
			return true
		}
	}
	return false
}

type portGroup struct {
	id       ID
	stateful bool
	ports    []ID
}

type macKey struct {
	vlan uint16
	mac  [6]byte
}

// deviceBase is what bridges and routers share: identity, admin state, and the
// chains and mirrors a packet meets on entering and leaving.
type deviceBase struct {
	id         ID
	tag        Tag
	adminUp    bool
	inChains   []*chain
	outChains  []*chain
	mirrorsIn  []*mirror
	mirrorsOut []*mirror
	traces     []*traceReq // enabled trace requests on the device
}

type bridge struct {
	deviceBase
	macs      map[macKey]*port
	ipMAC     map[[4]byte][6]byte // ARP suppression table
	answerARP bool                // answer ARP requests from ipMAC (SnapshotInput.BridgeARP)
	rtrMACs   map[[6]byte]*port   // MAC of a peer router port → this bridge's interior port
	rtrIPs    map[[4]byte]*port   // address of a peer router port → this bridge's interior port
	flood     []*port             // exterior ports, by id
	vlanPorts map[uint16]*port    // interior ports with a VLAN id
	vabPeers  []*port             // interior ports linked to a VLAN-aware bridge's VLAN port
	// dhcp4 answers the DHCP requests of the bridge's VMs, nil without
	// DHCP subnets; the bridge answers ARP for dhcpServers with its MAC.
	dhcp4       *dhcp.Server4
	dhcp6       *dhcp.Server6
	dhcpServers [][4]byte
}

type router struct {
	deviceBase
	table   routingTable
	learned *LearnedTable // shared with other snapshots; nil when empty
	lb      *loadBalancer
	arp     map[[4]byte]arpEntry
}

type arpEntry struct {
	mac    [6]byte
	stale  int64 // Unix nanoseconds, 0 = never
	expiry int64 // Unix nanoseconds, 0 = never
}

// prefix4 is an IPv4 prefix as integers.
type prefix4 struct {
	addr uint32
	bits uint8
}

func (p prefix4) contains(ip uint32) bool {
	return p.bits == 0 || (ip^p.addr)>>(32-p.bits) == 0
}

func toPrefix4(p netip.Prefix) prefix4 {
	if !p.IsValid() || !p.Addr().Is4() {
		return prefix4{}
	}
	return prefix4{addr: u32(p.Masked().Addr().As4()), bits: uint8(p.Bits())}
}

// NewSnapshot compiles in. It fails on references that make the topology
// unusable (a port whose device is missing); references that MidoNet
// tolerates (a jump to a missing chain, a route to a missing port) are kept
// and handled by the simulation as MidoNet does.
func NewSnapshot(in SnapshotInput) (*Snapshot, error) {
	s := &Snapshot{
		ports:   make(map[ID]*port, len(in.Ports)),
		bridges: make(map[ID]*bridge, len(in.Bridges)),
		routers: make(map[ID]*router, len(in.Routers)),
		chains:  make(map[ID]*chain, len(in.Chains)),
		groups:  make(map[ID]*portGroup, len(in.PortGroups)),
		names:   map[ID]string{},

		underlayMTU: in.UnderlayMTU,
	}
	name := func(id ID, n *string) {
		if n != nil && *n != "" {
			s.names[id] = *n
		}
	}
	for i := range in.Bridges {
		name(in.Bridges[i].ID, in.Bridges[i].Name)
	}
	for i := range in.Routers {
		name(in.Routers[i].ID, in.Routers[i].Name)
	}
	for i := range in.Chains {
		name(in.Chains[i].ID, in.Chains[i].Name)
	}
	for i := range in.Ports {
		name(in.Ports[i].ID, in.Ports[i].InterfaceName)
	}
	ipg := compileIPGroups(in.IPAddrGroups)
	if err := s.compileChains(in.Chains, in.Rules, in.PortGroups, ipg); err != nil {
		return nil, err
	}
	chainList := func(ids ...*ID) []*chain {
		var out []*chain
		for _, id := range ids {
			if id == nil {
				continue
			}
			if c, ok := s.chains[*id]; ok {
				out = append(out, c)
			}
		}
		return out
	}
	mirrors := make(map[ID]*mirror, len(in.Mirrors))
	for i := range in.Mirrors {
		m := &in.Mirrors[i]
		cm := &mirror{id: m.ID, tag: DeviceTag(m.ID), conds: make([]cond, len(m.Conditions))}
		if m.ToPortID != nil {
			cm.toID = *m.ToPortID
		}
		for j := range m.Conditions {
			if err := s.compileCond(&cm.conds[j], &m.Conditions[j].Condition, ipg); err != nil {
				return nil, fmt.Errorf("%w: mirror %s: condition %d: %w", ErrTopology, m.ID, j, err)
			}
		}
		mirrors[m.ID] = cm
	}
	mirrorList := func(ids []ID) []*mirror {
		var out []*mirror
		for _, id := range ids {
			if m, ok := mirrors[id]; ok {
				out = append(out, m)
			}
		}
		return out
	}
	for i := range in.Bridges {
		b := &in.Bridges[i]
		s.bridges[b.ID] = &bridge{deviceBase: deviceBase{id: b.ID, tag: DeviceTag(b.ID), adminUp: b.AdminStateUp,
			inChains: chainList(b.InboundFilterID), outChains: chainList(b.OutboundFilterID),
			mirrorsIn: mirrorList(b.InboundMirrorIDs), mirrorsOut: mirrorList(b.OutboundMirrorIDs)},
			macs: map[macKey]*port{}, ipMAC: map[[4]byte][6]byte{}, rtrMACs: map[[6]byte]*port{},
			rtrIPs: map[[4]byte]*port{}, vlanPorts: map[uint16]*port{}}
	}
	for i := range in.Routers {
		r := &in.Routers[i]
		s.routers[r.ID] = &router{deviceBase: deviceBase{id: r.ID, tag: DeviceTag(r.ID), adminUp: r.AdminStateUp,
			inChains:  chainList(r.LocalRedirectChainID, r.InboundFilterID),
			outChains: chainList(r.ForwardChainID, r.OutboundFilterID),
			mirrorsIn: mirrorList(r.InboundMirrorIDs), mirrorsOut: mirrorList(r.OutboundMirrorIDs)},
			arp: map[[4]byte]arpEntry{}}
	}
	dscp := map[ID]int16{}
	for _, r := range in.DSCPRules {
		if r.PolicyID != nil && r.DSCPMark >= 0 && r.DSCPMark < 64 {
			dscp[*r.PolicyID] = int16(r.DSCPMark)
		}
	}
	bridgePolicy := map[ID]*ID{}
	for i := range in.Bridges {
		bridgePolicy[in.Bridges[i].ID] = in.Bridges[i].QOSPolicyID
	}
	for i := range in.Ports {
		tp := &in.Ports[i]
		p := &port{dscp: -1, id: tp.ID, tag: DeviceTag(tp.ID), adminUp: tp.AdminStateUp, active: tp.Active, vlan: tp.VLANID,
			inChains: chainList(tp.InboundFilterID), outChains: chainList(tp.OutboundFilterID),
			mirrorsIn: mirrorList(tp.InboundMirrorIDs), mirrorsPostIn: mirrorList(tp.PostInFilterMirrorIDs),
			mirrorsPreOut: mirrorList(tp.PreOutFilterMirrorIDs), mirrorsOut: mirrorList(tp.OutboundMirrorIDs)}
		if tp.HostID != nil {
			p.host = *tp.HostID
		}
		if tp.InterfaceName != nil {
			p.ifName = *tp.InterfaceName
		}
		p.exterior = tp.IsExterior() || tp.Type == topology.PortTypeVxlan
		p.tunnelKey = uint32(tp.TunnelKey)
		// A port's QoS policy marks the IPv4 it takes in; a bridge port
		// without one has its bridge's.
		policy := tp.QOSPolicyID
		switch tp.Type {
		case topology.PortTypeRouter:
			r, ok := s.routers[tp.DeviceID]
			if !ok {
				return nil, fmt.Errorf("%w: port %s: router %s does not exist", ErrTopology, tp.ID, tp.DeviceID)
			}
			p.router = r
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
		default:
			b, ok := s.bridges[tp.DeviceID]
			if !ok {
				return nil, fmt.Errorf("%w: port %s: bridge %s does not exist", ErrTopology, tp.ID, tp.DeviceID)
			}
			p.bridge = b
			if policy == nil {
				policy = bridgePolicy[b.id]
			}
		}
		if policy != nil {
			if d, ok := dscp[*policy]; ok {
				p.dscp = d
			}
		}
		s.ports[p.id] = p
	}
	for _, m := range mirrors {
		m.to = s.ports[m.toID]
	}
	for _, b := range in.PortBinding {
		if p, ok := s.ports[b.Port]; ok {
			p.active, p.host, p.tunnelKey = true, b.Host, b.TunnelKey
		}
	}
	for i := range in.Ports {
		tp := &in.Ports[i]
		if tp.PeerID == nil {
			continue
		}
		p := s.ports[tp.ID]
		if peer, ok := s.ports[*tp.PeerID]; ok {
			p.peer = peer
			p.exterior = false
		}
	}
	for i := range in.PortGroups {
		g := &in.PortGroups[i]
		pg := s.groups[g.ID]
		for _, pid := range g.PortIDs {
			if p, ok := s.ports[pid]; ok {
				p.groups = append(p.groups, pg)
			}
		}
	}
	// Bridge port sets and the router ports linked to each bridge.
	for _, p := range s.ports {
		b := p.bridge
		if b == nil {
			continue
		}
		if p.exterior {
			b.flood = append(b.flood, p)
		}
		if p.peer != nil && p.vlan != 0 {
			b.vlanPorts[p.vlan] = p
		}
		if q := p.peer; q != nil && q.bridge != nil && q.vlan != 0 {
			b.vabPeers = append(b.vabPeers, p)
		}
		if rp := p.peer; rp != nil && rp.router != nil {
			b.rtrMACs[rp.mac] = p
			if rp.hasAddr {
				b.rtrIPs[rp.addr] = p
			}
		}
	}
	for _, b := range s.bridges {
		byID := func(x, y *port) int { return slices.Compare(x.id[:], y.id[:]) }
		slices.SortFunc(b.flood, byID)
		slices.SortFunc(b.vabPeers, byID)
	}
	for _, e := range in.MACTable {
		b, ok := s.bridges[e.Bridge]
		p, pok := s.ports[e.Port]
		if ok && pok {
			b.macs[macKey{e.VLAN, e.MAC}] = p
		}
	}
	for _, e := range in.IPMACTable {
		if b, ok := s.bridges[e.Bridge]; ok && e.IP.Is4() {
			b.ipMAC[e.IP.As4()] = e.MAC
		}
	}
	for _, b := range s.bridges {
		b.answerARP = in.BridgeARP
	}
	for _, e := range in.ARPTable {
		if r, ok := s.routers[e.Router]; ok && e.IP.Is4() {
			var exp, stale int64
			if !e.Expiry.IsZero() {
				exp = e.Expiry.UnixNano()
			}
			if !e.Stale.IsZero() {
				stale = e.Stale.UnixNano()
			}
			r.arp[e.IP.As4()] = arpEntry{mac: e.MAC, stale: stale, expiry: exp}
		}
	}
	s.compileBGP(in.BGPPeers, in.Ports, in.Routers)
	s.compileRoutes(in.Routes)
	for id, t := range in.Learned {
		if r, ok := s.routers[id]; ok && t.Len() > 0 {
			r.learned = t
		}
	}
	s.compileLoadBalancers(&in)
	s.compileInsertions(in.L2Insertions)
	if err := s.compileTraceRequests(in.TraceRequests, ipg); err != nil {
		return nil, err
	}
	for _, c := range s.chains {
		for i := range c.rules {
			if r := &c.rules[i]; r.action == actRedirect {
				r.redirect = s.ports[r.redirectID]
			}
		}
	}
	s.compileDHCP(&in)
	return s, nil
}

// compileRoutes fills the routers' tables with the stored routes plus the
// routes every router port implies (LOCAL /32 for its address, a PORT route
// for its subnet) when the store does not hold them already.
func (s *Snapshot) compileRoutes(routes []topology.Route) {
	byRouter := map[ID][]*route{}
	type implied struct {
		dst  prefix4
		kind routeKind
		port ID
	}
	have := map[implied]bool{}
	for i := range routes {
		tr := &routes[i]
		r, ok := s.routers[tr.RouterID]
		if !ok {
			continue
		}
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
		if tr.NextHopPort != nil {
			rt.portID = *tr.NextHopPort
			if p, ok := s.ports[*tr.NextHopPort]; ok && p.router == r {
				rt.port = p
			}
		}
		if rt.kind == routePort {
			// MidoNet keeps routes through an exterior port only while the
			// port is up and active, and ignores routes to unknown ports.
			if rt.port == nil || (rt.port.exterior && (!rt.port.adminUp || !rt.port.active)) {
				continue
			}
		}
		if tr.NextHopGateway != nil {
			if a, ok := topology.ParseIPv4(*tr.NextHopGateway); ok && a != netip.IPv4Unspecified() {
				rt.gateway, rt.hasGateway = a.As4(), true
			}
		}
		have[implied{rt.dst, rt.kind, rt.portID}] = true
		byRouter[r.id] = append(byRouter[r.id], rt)
	}
	for _, p := range s.ports {
		r := p.router
		if r == nil || !p.hasAddr {
			continue
		}
		local := implied{prefix4{u32(p.addr), 32}, routeLocal, p.id}
		if !have[local] {
			rid := uuid.NewSHA1(p.id, []byte("local"))
			byRouter[r.id] = append(byRouter[r.id], &route{id: rid, tag: RouteTag(rid), dst: local.dst, kind: routeLocal, port: p, portID: p.id})
		}
		sub := implied{p.subnet, routePort, p.id}
		if !have[sub] && (!p.exterior || (p.adminUp && p.active)) {
			rid := uuid.NewSHA1(p.id, []byte("subnet"))
			byRouter[r.id] = append(byRouter[r.id], &route{id: rid, tag: RouteTag(rid), dst: sub.dst, kind: routePort, port: p, portID: p.id})
		}
	}
	for id, rs := range byRouter {
		s.routers[id].table = newRoutingTable(rs)
	}
}

// StaleARP calls fn for each router ARP entry that goes stale after after
// and no later than upTo: the agent invalidates the flows through them, so
// that the next packet is simulated again and the router asks again.
func (s *Snapshot) StaleARP(after, upTo time.Time, fn func(router ID, ip netip.Addr)) {
	a, b := after.UnixNano(), upTo.UnixNano()
	for id, r := range s.routers {
		for ip, e := range r.arp {
			if e.stale > a && e.stale <= b {
				fn(id, netip.AddrFrom4(ip))
			}
		}
	}
}
