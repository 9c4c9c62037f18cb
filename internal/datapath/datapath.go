// Package datapath defines the contract between the agent and a packet
// datapath: ports, masked flows (megaflows) with counters, packet execution,
// and upcalls for misses and userspace actions. Backends live in
// sub-packages: mem (in-process, for tests and scale runs) and userspace
// (AF_PACKET, tap and VXLAN ports on Linux). The shapes follow the Open
// vSwitch kernel datapath so that a netlink backend can implement the same
// interface.
//
// The lower layer calls up through what it is handed: the agent installs an
// UpcallHandler and a PortEventHandler; the datapath never imports the agent.
package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/packet"
)

// PortNo is a datapath port number. Port 0 is never assigned to a port, so a
// zero PortNo means "no port".
type PortNo uint32

// PortKind is the kind of a datapath port.
type PortKind uint8

// Port kinds.
const (
	PortNetdev   PortKind = iota + 1 // an existing Linux interface, attached by name
	PortInternal                     // a tap device created by the datapath, usable by the host
	PortVXLAN                        // the overlay port: VXLAN over UDP
)

func (k PortKind) String() string {
	switch k {
	case PortNetdev:
		return "netdev"
	case PortInternal:
		return "internal"
	case PortVXLAN:
		return "vxlan"
	}
	return fmt.Sprintf("PortKind(%d)", uint8(k))
}

// DefaultVXLANPort is the UDP port of the MidoNet overlay.
const DefaultVXLANPort = 6677

// PortSpec describes a port to add.
type PortSpec struct {
	Kind PortKind
	// Name is the Linux interface name for netdev and internal ports, and a
	// free label for a VXLAN port.
	Name string
	// LocalAddr is the local underlay address a VXLAN port binds to; the
	// zero value binds to all addresses. Also the default outer source.
	LocalAddr netip.Addr
	// UDPPort is the VXLAN port's UDP port; 0 means DefaultVXLANPort.
	UDPPort uint16
	// MTU, if non-zero, is set on internal ports.
	MTU int
}

// Port describes a port of a datapath.
type Port struct {
	No    PortNo
	Spec  PortSpec
	Stats PortStats
}

// PortStats counts a port's traffic.
type PortStats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	RxDropped          uint64 // received but dropped: malformed, or no room
	TxDropped          uint64 // could not be sent (queue full, too big, error)
	UpcallDropped      uint64 // misses dropped because the port's upcall queue was full
	RxLimited          uint64 // received beyond the port's rate limit, and dropped
}

// FlowFlags say whether PutFlow may create a flow, replace one, or both.
type FlowFlags uint8

// Flow flags. FlowCreate|FlowModify installs or replaces.
const (
	FlowCreate FlowFlags = 1 << iota // fail with ErrFlowExists if the flow exists
	FlowModify                       // fail with ErrFlowNotFound if it does not exist
	// FlowResetStats zeroes the counters of a modified flow.
	FlowResetStats
)

// FlowStats are the counters of one flow.
type FlowStats struct {
	Packets  uint64
	Bytes    uint64
	LastUsed time.Time // zero if never used
	TCPFlags uint16    // OR of the TCP flags seen
}

// Merge returns s with the counters of o added: packets and bytes summed,
// TCP flags ORed, the later use kept (a flow counted in two places).
func (s FlowStats) Merge(o FlowStats) FlowStats {
	s.Packets += o.Packets
	s.Bytes += o.Bytes
	s.TCPFlags |= o.TCPFlags
	if o.LastUsed.After(s.LastUsed) {
		s.LastUsed = o.LastUsed
	}
	return s
}

// MonotonicToTime converts an instant of CLOCK_MONOTONIC, the clock
// kernels stamp flows' last use with, to wall-clock time; 0 (never) gives
// the zero time.
func MonotonicToTime(t time.Duration) time.Time {
	var ts unix.Timespec
	if t == 0 || unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return time.Time{}
	}
	return time.Now().Add(t - time.Duration(ts.Nano()))
}

// Flow is one installed flow as reported by DumpFlows. Key is already masked.
// Actions is shared with the datapath: read it, do not modify it.
type Flow struct {
	Key     packet.FlowKey
	Mask    packet.FlowKey
	Actions []Action
	Stats   FlowStats
}

// Errors returned by datapaths; branch with errors.Is.
var (
	ErrFlowExists   = errors.New("flow already exists")
	ErrFlowNotFound = errors.New("flow not found")
	ErrPortNotFound = errors.New("port not found")
	ErrPortExists   = errors.New("port already exists")
	ErrClosed       = errors.New("datapath closed")
	ErrBadAction    = errors.New("invalid action")
	ErrBadPacket    = errors.New("packet could not be parsed")
)

// UpcallKind says why a packet came up.
type UpcallKind uint8

// Upcall kinds.
const (
	UpcallMiss      UpcallKind = iota + 1 // no flow matched
	UpcallUserspace                       // a Userspace action sent it
)

func (k UpcallKind) String() string {
	switch k {
	case UpcallMiss:
		return "miss"
	case UpcallUserspace:
		return "userspace"
	}
	return fmt.Sprintf("UpcallKind(%d)", uint8(k))
}

// Upcall is a packet handed to the agent.
//
// Ownership: the Upcall and the bytes of Packet belong to the datapath and
// are valid only until HandleUpcall returns; a handler that keeps either must
// copy it.
type Upcall struct {
	Kind   UpcallKind
	InPort PortNo
	Packet []byte
	// Key is the parsed flow key, with InPort and, for packets from the
	// overlay, TunID/TunSrc/TunDst/TunTOS/TunTTL set. For UpcallUserspace
	// it is the key of the packet as it entered the datapath, while Packet
	// carries the rewrites of the actions before the Userspace action.
	Key    packet.FlowKey
	Cookie uint64 // the Userspace action's cookie, for UpcallUserspace
}

// UpcallHandler receives upcalls. The contract is "serialized per port,
// returns quickly": HandleUpcall is called for the upcalls of one port one
// at a time, in the order the port received them, while upcalls of
// different ports may be delivered at once from different goroutines (a
// backend delivers a miss on the goroutine that received it when it can,
// so that what a handler does for one upcall happens before the port's
// next packet is processed). No datapath-wide lock is held during a call.
// A handler must return quickly, handing the packet on, since the port
// receives nothing while it runs and further upcalls wait in bounded
// queues whose overflow is dropped; it must not call back into the
// datapath's upcall delivery.
type UpcallHandler interface {
	HandleUpcall(u *Upcall)
}

// UpcallHandlerFunc adapts a function to UpcallHandler.
type UpcallHandlerFunc func(u *Upcall)

// HandleUpcall calls f(u).
func (f UpcallHandlerFunc) HandleUpcall(u *Upcall) { f(u) }

// PortEventKind is what happened to a port's interface.
type PortEventKind uint8

// Port event kinds.
const (
	PortUp      PortEventKind = iota + 1 // the interface is up (carrier on)
	PortDown                             // the interface went down
	PortRemoved                          // the interface disappeared; the port is gone
)

func (k PortEventKind) String() string {
	switch k {
	case PortUp:
		return "up"
	case PortDown:
		return "down"
	case PortRemoved:
		return "removed"
	}
	return fmt.Sprintf("PortEventKind(%d)", uint8(k))
}

// PortEvent reports a change in a port's interface.
type PortEvent struct {
	Kind PortEventKind
	Port PortNo
	Name string
}

// PortEventHandler receives port events, from a datapath goroutine.
type PortEventHandler interface {
	HandlePortEvent(ev PortEvent)
}

// PortEventHandlerFunc adapts a function to PortEventHandler.
type PortEventHandlerFunc func(ev PortEvent)

// HandlePortEvent calls f(ev).
func (f PortEventHandlerFunc) HandlePortEvent(ev PortEvent) { f(ev) }

// Stats are datapath-wide counters.
type Stats struct {
	Hits          uint64 // packets that matched a flow (EMC or classifier)
	EMCHits       uint64 // of which in the exact-match cache
	Misses        uint64 // packets that matched no flow
	Upcalls       uint64 // upcalls delivered to the handler
	UpcallDropped uint64 // upcalls dropped (queue full or no handler)
	Lost          uint64 // packets dropped for other reasons (malformed, output errors)
	Flows         int    // installed flows
	Masks         int    // distinct masks (classifier subtables)
	// Busy polling (backends that do it): how many times a receiver kept
	// polling after traffic, and the packets it handled while polling.
	BusySpins, BusyPackets uint64
	// Kernel fast path (backends that have one): packets and bytes its
	// flows forwarded or dropped without reaching the backend's own
	// receivers (also counted in their flows' counters), and the flows it
	// holds. Not in Hits.
	KernelPackets, KernelBytes uint64
	KernelFlows                int
}

// Features are what a backend's flows can do beyond the Open vSwitch
// kernel datapath's flow key and actions, which every backend supports.
type Features struct {
	// ICMPEchoID: flows may match packet.FlowKey.ICMPID, so pings
	// through conntrack and NAT (which key on the identifier) need not be
	// simulated packet by packet.
	ICMPEchoID bool
}

// FeatureReporter is implemented by backends that have Features.
type FeatureReporter interface {
	Features() Features
}

// FeaturesOf returns the features of dp: none unless it reports some.
func FeaturesOf(dp any) Features {
	if r, ok := dp.(FeatureReporter); ok {
		return r.Features()
	}
	return Features{}
}

// RateLimit polices what a datapath receives on a port: a token bucket of
// BurstBytes refilled at BitsPerSecond. The zero value is no limit.
type RateLimit struct {
	BitsPerSecond uint64
	BurstBytes    uint64
}

// Validate checks that a limit can pass a frame: its burst holds at least
// one full-size frame.
func (l RateLimit) Validate() error {
	if l.BitsPerSecond != 0 && l.BurstBytes < 1514 {
		return fmt.Errorf("rate limit %d bit/s: a burst of %d bytes is less than one frame (1514)", l.BitsPerSecond, l.BurstBytes)
	}
	return nil
}

// PortRateLimiter is implemented by backends that police what they receive
// on a port (QoS bandwidth limits on a VM's traffic). A zero limit removes
// it. The port's frames over the limit are dropped and counted in
// PortStats.RxLimited.
type PortRateLimiter interface {
	SetPortRateLimit(no PortNo, l RateLimit) error
}

// PortManager adds and removes ports.
type PortManager interface {
	// AddPort creates or attaches a port and returns its number.
	AddPort(spec PortSpec) (PortNo, error)
	// RemovePort detaches a port; traffic to it is then dropped.
	RemovePort(no PortNo) error
	// Ports lists the ports with their counters.
	Ports() []Port
}

// FlowPut is one flow of a batch for FlowBatcher.
type FlowPut struct {
	Key, Mask *packet.FlowKey
	Actions   []Action
	Flags     FlowFlags
}

// FlowBatcher is implemented by backends that install several flows in
// one exchange with the kernel (ovs: up to 64 per netlink datagram).
// PutFlows installs puts in order, as PutFlow would one by one, stores
// each one's error in errs (which must be at least as long) and returns
// how many failed.
type FlowBatcher interface {
	PutFlows(puts []FlowPut, errs []error) int
}

// FlowTable installs, removes and dumps masked flows. The agent decides
// expiry; the datapath never removes a flow on its own.
type FlowTable interface {
	// PutFlow installs or replaces the flow (key masked by mask). The
	// datapath keeps its own copies of key, mask and actions.
	PutFlow(key, mask *packet.FlowKey, actions []Action, flags FlowFlags) error
	// DeleteFlow removes the flow with this mask whose masked key equals
	// key masked by mask, and returns its final counters.
	DeleteFlow(key, mask *packet.FlowKey) (FlowStats, error)
	// DumpFlows calls fn for each installed flow until fn returns false.
	DumpFlows(fn func(f *Flow) bool) error
}

// Executor runs actions on a packet the agent hands in.
type Executor interface {
	// Execute runs actions on frame as if it had been received on inPort
	// (0 for none). The datapath does not keep frame.
	Execute(frame []byte, actions []Action, inPort PortNo) error
}

// Upcaller lets the agent receive upcalls and port events.
type Upcaller interface {
	SetUpcallHandler(h UpcallHandler)
	SetPortEventHandler(h PortEventHandler)
}

// Datapath is the whole contract a backend implements.
type Datapath interface {
	PortManager
	FlowTable
	Executor
	Upcaller
	Stats() Stats
	Close() error
}
