package sim

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
)

// Kind is what the agent does with a simulated packet.
type Kind uint8

const (
	// Drop installs a drop flow with the result's tags and hard timeout.
	Drop Kind = iota
	// TemporaryDrop installs a short drop flow without tags (no route, a
	// loop, an unplugged port...), so the packet is simulated again soon.
	TemporaryDrop
	// Forward installs a flow with the egress actions.
	Forward
	// UserspaceOnly executes the egress actions on this packet but installs
	// no flow: the simulation read a field a datapath cannot match (an ICMP
	// identifier or quoted header) or MidoNet wants every packet seen (a
	// gratuitous ARP). With no egress (and Reason set) it drops just this
	// packet.
	UserspaceOnly
	// Consumed installs nothing: a device answered the packet (ARP or ICMP
	// echo reply, see Generated).
	Consumed
	// ARPNeeded means a router needs the MAC of ARP.IP: the agent emits the
	// generated ARP request, waits for the reply (or a timeout) and simulates
	// the packet again.
	ARPNeeded
	// NATLeaseNeeded means a dynamic SNAT found no free port in the blocks
	// this host leased for NATLease's address (see SNATBlockReader): the
	// agent leases another block from the store and simulates the packet
	// again, or drops it if the store cannot be reached.
	NATLeaseNeeded
)

// Kinds is the number of result kinds.
const Kinds = int(NATLeaseNeeded) + 1

var kindNames = [...]string{"drop", "temporary-drop", "forward", "userspace-only", "consumed", "arp-needed",
	"nat-lease-needed"}

// String returns the kind's name.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText implements encoding.TextMarshaler.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// DropReason says why a packet was dropped; it is a counter label.
type DropReason uint8

// Drop reasons.
const (
	ReasonNone DropReason = iota
	ReasonUnknownPort
	ReasonPortAdminDown
	ReasonDeviceAdminDown
	ReasonUnplugged
	ReasonLoop
	ReasonChain
	ReasonMulticastSource
	ReasonSameInOutPort
	ReasonVLAN
	ReasonNotIPv4
	ReasonNotForRouter
	ReasonNoRoute
	ReasonBlackhole
	ReasonRejectRoute
	ReasonLocalRoute
	ReasonTTLExceeded
	ReasonBadEgressPort
	ReasonNATExhausted
	ReasonARP
	ReasonNoEgress
	ReasonMalformed
	ReasonARPTimeout
	ReasonLoadBalancer
	ReasonServicePort
	ReasonServicePortDown
	ReasonVLANStack
	ReasonDHCPMalformed
)

var reasonNames = [...]string{"", "unknown-port", "port-admin-down", "device-admin-down", "unplugged-port", "loop",
	"chain", "multicast-source", "same-in-out-port", "vlan", "not-ipv4", "not-for-router", "no-route", "blackhole-route",
	"reject-route", "local-route", "ttl-exceeded", "bad-egress-port", "nat-exhausted", "arp", "no-egress", "malformed", "arp-timeout", "load-balancer",
	"service-port", "service-port-down", "vlan-stack", "dhcp-malformed"}

// String returns the reason's name.
func (r DropReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// MarshalText implements encoding.TextMarshaler.
func (r DropReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Hard timeouts of installed flows, as MidoNet's.
const (
	TemporaryDropTimeout = 5 * time.Second
	FlowTimeout          = 60 * time.Second
	StatefulFlowTimeout  = 30 * time.Second // half the flow-state idle TTL
)

// Egress is one output of a forwarded packet: an exterior port and the
// header fields to set before emitting to it.
type Egress struct {
	Port ID
	// Set lists the fields to set; their values are in Values. FieldVLAN
	// set with Values.VLAN == 0 means pop the tag. FieldICMPData (a quoted
	// header rewritten by NAT) can only be applied in userspace.
	Set    FieldSet
	Values Match
}

// Generated is a packet a device produced, to be sent out of Port as if
// the device emitted it there (the agent simulates it as the port's egress).
type Generated struct {
	Port  ID
	Frame []byte
}

// MACLearning is a MAC a bridge saw as a source on a port.
type MACLearning struct {
	Bridge ID
	VLAN   uint16
	MAC    [6]byte
	Port   ID
}

// ARPLearning is an address→MAC pair a device learned from an ARP packet: a
// router's ARP table entry, or a bridge's IPv4→MAC entry from a gratuitous
// ARP.
type ARPLearning struct {
	Device ID
	IP     netip.Addr
	MAC    [6]byte
}

// ARPRequest says which next hop a router could not resolve.
type ARPRequest struct {
	Router ID
	Port   ID // the router port to resolve on
	IP     netip.Addr
}

// NATLeaseRequest asks for a SNAT port block of a NAT address on a device
// that holds ports in [PortFrom, PortTo].
type NATLeaseRequest struct {
	Device           ID
	IP               netip.Addr
	PortFrom, PortTo uint16
}

// ARPRefresh is a stale ARP entry a router used, and the request (sent
// out of Port) that asks for it again. The agent sends it unless it asked
// recently.
type ARPRefresh struct {
	ARPRequest
	Frame []byte
}

// Result is the outcome of one simulation. Its slices point into the
// Simulator's scratch space: they are valid until the Simulator's next call.
type Result struct {
	Kind   Kind
	Reason DropReason // for Drop, TemporaryDrop and a UserspaceOnly drop
	Egress []Egress
	// Mask is the megaflow mask: the flow matches every packet equal to the
	// simulated one in the mask's bits.
	Mask        packet.FlowKey
	Seen        FieldSet
	Tags        []Tag
	HardTimeout time.Duration

	// Conntrack holds the return-flow keys and NAT the NAT entries this
	// simulation created or refreshed: the flow holds a reference on each
	// (flowstate.Shard.Commit) and they are replicated to peers.
	Conntrack []flowstate.ConnKey
	NAT       []flowstate.NATEntry
	// StatePorts are more ports whose hosts must receive the flow state:
	// the service ports of an L2 insertion and the port that redirected to
	// them (besides the egress ports and stateful port groups).
	StatePorts []ID

	LearnedMACs []MACLearning
	LearnedARP  []ARPLearning
	Generated   []Generated
	ARP         ARPRequest // when Kind is ARPNeeded
	// NATLease is the NAT address that needs another port block, when
	// Kind is NATLeaseNeeded.
	NATLease   NATLeaseRequest
	ARPRefresh []ARPRefresh
	// DHCP says what the bridge's DHCP server did, when the packet was a
	// DHCP request entering a bridge that serves DHCP.
	DHCP DHCPEvent

	// Trace lists what each device did, when tracing was requested.
	Trace Trace
	// TraceRequests are the enabled trace requests whose condition the
	// packet matched at their port, bridge or router, in path order. The
	// agent traces the packet for those still under their limit.
	TraceRequests []ID
}

// IsStateful reports whether the flow created or refreshed flow state.
func (r *Result) IsStateful() bool { return len(r.Conntrack) > 0 || len(r.NAT) > 0 }
