package sim

import (
	"errors"
	"net/netip"
	"time"

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
// state tables, shared by all workers. NewSnapshot compiles one whole; a
// Builder makes the next one from a change at the cost of what changed,
// sharing every compiled object the change leaves alone (handles.go).
type Snapshot struct {
	ports   table[port]
	bridges table[bridge]
	routers table[router]
	chains  table[chain]
	groups  table[portGroup]
	mirrors table[mirror]
	ix      *indexes
	// underlayMTU is SnapshotInput.UnderlayMTU.
	underlayMTU int
	// traceNames are the names of the enabled trace requests.
	traceNames map[ID]string
}

// indexes give the handles of ids; one Builder's snapshots share them.
type indexes struct {
	ports   idIndex[port]
	bridges idIndex[bridge]
	routers idIndex[router]
	chains  idIndex[chain]
	groups  idIndex[portGroup]
	mirrors idIndex[mirror]
}

func (ix *indexes) publish() {
	ix.ports.publish()
	ix.bridges.publish()
	ix.routers.publish()
	ix.chains.publish()
	ix.groups.publish()
	ix.mirrors.publish()
}

func (s *Snapshot) port(h handle[port]) *port       { return s.ports.at(h) }
func (s *Snapshot) bridge(h handle[bridge]) *bridge { return s.bridges.at(h) }
func (s *Snapshot) router(h handle[router]) *router { return s.routers.at(h) }
func (s *Snapshot) chain(h handle[chain]) *chain    { return s.chains.at(h) }
func (s *Snapshot) mirror(h handle[mirror]) *mirror { return s.mirrors.at(h) }

// portByID returns port id, or nil.
func (s *Snapshot) portByID(id ID) *port { return s.ports.at(s.ix.ports.get(id)) }

// IsRouter reports whether id is a router of the snapshot.
func (s *Snapshot) IsRouter(id ID) bool { return s.routerByID(id) != nil }

// routerByID returns router id, or nil.
func (s *Snapshot) routerByID(id ID) *router { return s.routers.at(s.ix.routers.get(id)) }

// nameOf returns the name of a bridge, router or chain, or a port's
// interface, for traces.
func (s *Snapshot) nameOf(id ID) string {
	if p := s.portByID(id); p != nil {
		return p.ifName
	}
	if b := s.bridges.at(s.ix.bridges.get(id)); b != nil {
		return b.name
	}
	if r := s.routerByID(id); r != nil {
		return r.name
	}
	if c := s.chains.at(s.ix.chains.get(id)); c != nil {
		return c.name
	}
	return s.traceNames[id]
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
	p := s.portByID(id)
	if p == nil {
		return PortInfo{}, false
	}
	return PortInfo{ID: p.id, Device: p.device, Host: p.host, TunnelKey: p.tunnelKey, InterfaceName: p.ifName,
		Exterior: p.exterior, Active: p.active, AdminUp: p.adminUp}, true
}

// StatefulGroupPeers returns the ports of the stateful port groups id
// belongs to (id included), to which flow state must also be replicated.
func (s *Snapshot) StatefulGroupPeers(id ID) []ID {
	p := s.portByID(id)
	if p == nil {
		return nil
	}
	var out []ID
	for _, gid := range p.groups {
		if g := s.groups.at(s.ix.groups.get(gid)); g != nil && g.stateful {
			out = append(out, g.ports...)
		}
	}
	return out
}

type port struct {
	id     ID
	tag    Tag // DeviceTag(id), computed once
	device ID  // its bridge or router
	bridge handle[bridge]
	router handle[router]
	// peer is the linked port, when it exists.
	peer      handle[port]
	exterior  bool // bound to a host interface, or a VXLAN port
	active    bool
	adminUp   bool
	host      ID
	tunnelKey uint32
	ifName    string
	inChains  []handle[chain]
	outChains []handle[chain]
	groups    []ID   // port groups, by id
	vlan      uint16 // bridge interior port of a VLAN-aware bridge
	dscp      int16  // DSCP mark for IPv4 entering this bridge port, or -1
	// service: the service port of an L2 insertion, which takes only
	// redirected traffic; servicePorts: a protected port's service ports.
	service      bool
	servicePorts []ID

	// Mirrors at the port's four mirror points, in traversal order.
	mirrorsIn, mirrorsPostIn, mirrorsPreOut, mirrorsOut []handle[mirror]

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

func (p *port) deviceID() ID { return p.device }

func (p *port) inGroup(g ID) bool {
	for _, x := range p.groups {
		if x == g {
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
	name       string
	adminUp    bool
	inChains   []handle[chain]
	outChains  []handle[chain]
	mirrorsIn  []handle[mirror]
	mirrorsOut []handle[mirror]
	traces     []*traceReq // enabled trace requests on the device
}

// rtrPort is a bridge's interior port linked to a router port, with that
// router port's MAC.
type rtrPort struct {
	port   handle[port]
	mac    [6]byte
	subnet prefix4 // the router port's subnet
}

type bridge struct {
	deviceBase
	macs      map[macKey]handle[port]
	ipMAC     map[[4]byte][6]byte      // ARP suppression table
	answerARP bool                     // answer ARP requests from ipMAC (SnapshotInput.BridgeARP)
	rtrMACs   map[[6]byte]handle[port] // MAC of a peer router port → this bridge's interior port
	rtrIPs    map[[4]byte]rtrPort      // address of a peer router port → this bridge's interior port
	flood     []handle[port]           // exterior ports, by id
	vlanPorts map[uint16]handle[port]  // interior ports with a VLAN id
	vabPeers  []handle[port]           // interior ports linked to a VLAN-aware bridge's VLAN port
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
	b := NewBuilder(in.BridgeARP)
	b.putInput(&in)
	return b.Build()
}

// StaleARP calls fn for each router ARP entry that goes stale after after
// and no later than upTo: the agent invalidates the flows through them, so
// that the next packet is simulated again and the router asks again.
func (s *Snapshot) StaleARP(after, upTo time.Time, fn func(router ID, ip netip.Addr)) {
	a, b := after.UnixNano(), upTo.UnixNano()
	s.routers.each(func(r *router) {
		for ip, e := range r.arp {
			if e.stale > a && e.stale <= b {
				fn(r.id, netip.AddrFrom4(ip))
			}
		}
	})
}
