package sim

import (
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
)

// MaxDevicesTraversed bounds the devices a packet may cross (MidoNet's loop
// guard); beyond it the packet is dropped for a short while.
const MaxDevicesTraversed = 12

// maxJumpDepth bounds nested chain jumps.
const maxJumpDepth = 32

// StateReader is the flow state a simulation reads; flowstate.View
// implements it. Implementations must not allocate.
type StateReader interface {
	HasConn(flowstate.ConnKey) bool
	NAT(flowstate.NATKey) (flowstate.NATBinding, bool)
}

var _ StateReader = (*flowstate.View)(nil)

// SNATBlockReader is a StateReader that knows the SNAT port blocks this
// host leased from the store (flowstate.View with leases tracked). With
// one, dynamic SNAT allocates ports only inside those blocks, so that
// hosts never pick the same (address, port), and asks for another block
// (a NATLeaseNeeded result) when they are full; without one (a trace, a
// test), it may pick any port of the rule's range. It must not allocate.
type SNATBlockReader interface {
	// SNATBlocks returns the blocks held for a NAT address (a nil Set:
	// none); leasing false means there is no leasing and any port may be
	// used.
	SNATBlocks(device ID, ip netip.Addr) (blocks flowstate.HeldBlocks, leasing bool)
}

var _ SNATBlockReader = (*flowstate.View)(nil)

// SNATPortSharer is a SNATBlockReader whose host simulates on several
// workers at once. A worker commits the keys it allocates to its own shard
// only after its simulation, so two workers probing one free port at the
// same time would both give it out; each may give out only the ports p of
// a held block with p%n == i.
type SNATPortSharer interface {
	SNATPortShare() (i, n int)
}

var _ SNATPortSharer = (*flowstate.View)(nil)

// Packet is the input of one simulation.
type Packet struct {
	// Port is the virtual port the packet arrived on, or for a Generated
	// packet the port it is emitted from.
	Port ID
	// Match is the packet's complete match: MatchOf a datapath's flow key
	// and frame, or MatchFromFrame. Simulate does not decode the frame.
	Match Match
	// Frame is the raw frame, read-only; devices copy from it into the
	// packets they generate (ICMP echo replies and errors). It may be nil.
	Frame []byte
	// Generated packets come from a device: they are simulated from the
	// egress of Port and are always return traffic for conntrack.
	Generated bool
	// Trace records what each device does in Result.Trace.
	Trace bool
	// ARPFailed says the agent gave up resolving the next hop this packet
	// waited for (an ARPNeeded result): the router now answers with ICMP
	// host or net unreachable instead of asking again.
	ARPFailed bool
}

type verdict uint8

const (
	vForward verdict = iota
	vDrop
	vTempDrop
	vConsumed
	vARP
)

type connDir uint8

const (
	connUnknown connDir = iota
	connForward
	connReturn
)

// pathState is the part of the simulation context that a flood saves
// before each branch and restores after it.
type pathState struct {
	wc             Match
	written        FieldSet
	inPort         *port
	outPort        *port
	device         ID
	ndev           int
	ntrav          int
	nwDstRewritten bool
	redirectedOut  bool
	failOpen       bool
}

// Simulator is one worker's simulation engine and scratch space. It is not
// safe for concurrent use; give each worker its own.
type Simulator struct {
	rng *rand.Rand

	snap    *Snapshot
	state   StateReader
	now     int64
	pkt     *Packet
	tracing bool

	orig, wc   Match
	preRouting Match
	seen       FieldSet
	written    FieldSet // written on the current path
	writtenAll FieldSet // written on any path that was emitted

	inputPort      *port
	inPort         *port
	outPort        *port
	device         ID                      // device whose chains run: the current port's owner or the current device
	devices        [MaxDevicesTraversed]ID // bridges and routers on the path, for traversed-device conditions
	ntrav          int
	ndev           int // ports entered, for the loop guard
	nwDstRewritten bool
	// redirectedOut: a redirect rule sends the packet out of a port (to a
	// service port, which takes nothing else); failOpen: if that port is
	// down, the packet goes on as if the service had sent it back.
	redirectedOut bool
	failOpen      bool
	// redirectRule is the rule whose redirect ended the last chains run.
	redirectRule *rule
	// vlanStack: an l2_transform rule pushed a tag onto a tagged frame.
	vlanStack   bool
	conn        connDir
	connTracked bool
	userspace   bool
	natFailed   bool
	natWait     bool // natFailed for want of a leased port block: res.NATLease says which
	reason      DropReason

	chainStack [maxJumpDepth]*chain
	nstack     int

	genBuf []byte
	res    Result

	// natNext is, per NAT address, the port after the last one this
	// simulator gave out from a leased block: ports are handed out
	// round-robin inside a block, as MidoNet does, so the next one is
	// almost always free and found with one probe.
	natNext map[flowstate.NATAddr]uint16

	// unmatchable are the fields the datapath's flows cannot match or
	// set; a result that touches one is UserspaceOnly.
	unmatchable FieldSet
}

// NewSimulator returns a simulator whose random choices (NAT ports, DNAT
// targets) come from a PCG source seeded with seed.
func NewSimulator(seed uint64) *Simulator {
	return &Simulator{
		rng:         rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		genBuf:      make([]byte, 0, 1024),
		unmatchable: fieldsUserspace,
	}
}

// MatchICMPID says whether the datapath's flows match the ICMP echo
// identifier (datapath.Features.ICMPEchoID). When they do, pings through
// conntrack and NAT, which key on the identifier, get a flow with the
// identifier in its mask; otherwise (the default, and MidoNet's behaviour)
// every such echo is simulated.
func (s *Simulator) MatchICMPID(on bool) {
	s.unmatchable = fieldsUserspace
	if on {
		s.unmatchable &^= FieldICMPID
	}
}

// Simulate runs pkt through snap at time now. state may be nil (no flow
// state). The result points into the simulator's scratch space and is valid
// until the next call. Simulate does not allocate on the bridge and router
// paths once the scratch space has grown, unless tracing.
func (s *Simulator) Simulate(snap *Snapshot, state StateReader, pkt *Packet, now time.Time) *Result {
	s.reset(snap, state, pkt, now)
	p := snap.portByID(pkt.Port)
	var v verdict
	switch {
	case p == nil:
		v = s.tempDrop(ReasonUnknownPort)
	case pkt.Generated:
		s.inputPort = p
		s.conn = connReturn
		v = s.portEgress(p)
	default:
		s.inputPort = p
		v = s.ingress(p)
	}
	s.finish(v)
	return &s.res
}

func (s *Simulator) reset(snap *Snapshot, state StateReader, pkt *Packet, now time.Time) {
	s.snap, s.state, s.pkt, s.now, s.tracing = snap, state, pkt, now.UnixNano(), pkt.Trace
	s.orig = pkt.Match
	s.wc, s.preRouting = s.orig, s.orig
	s.seen, s.written, s.writtenAll = 0, 0, 0
	s.inputPort, s.inPort, s.outPort, s.device = nil, nil, nil, ID{}
	s.ndev, s.ntrav, s.nwDstRewritten, s.conn, s.connTracked = 0, 0, false, connUnknown, false
	s.redirectedOut, s.failOpen, s.redirectRule, s.vlanStack = false, false, nil, false
	s.userspace, s.natFailed, s.natWait, s.reason, s.nstack = false, false, false, ReasonNone, 0
	s.genBuf = s.genBuf[:0]
	r := &s.res
	*r = Result{
		Egress: r.Egress[:0], Tags: r.Tags[:0], Conntrack: r.Conntrack[:0], NAT: r.NAT[:0], StatePorts: r.StatePorts[:0],
		LearnedMACs: r.LearnedMACs[:0], LearnedARP: r.LearnedARP[:0], Generated: r.Generated[:0], Trace: r.Trace[:0],
		ARPRefresh: r.ARPRefresh[:0], TraceRequests: r.TraceRequests[:0],
	}
}

func (s *Simulator) finish(v verdict) {
	r := &s.res
	switch v {
	case vForward:
		switch {
		case len(r.Egress) == 0:
			r.Kind, r.Reason = Drop, ReasonNoEgress
			if s.needsUserspace() {
				r.Kind = UserspaceOnly // this packet only, no drop flow
			}
		case s.needsUserspace():
			r.Kind = UserspaceOnly
		default:
			r.Kind = Forward
		}
	case vDrop, vTempDrop:
		r.Kind, r.Reason = Drop, s.reason
		if v == vTempDrop {
			r.Kind = TemporaryDrop
		}
		if len(r.Egress) > 0 {
			// Mirrored copies left before the original was dropped: a drop
			// is neutral when merged with them, as in MidoNet's forks.
			r.Kind, r.Reason = Forward, ReasonNone
		}
		if s.needsUserspace() {
			// A drop flow that cannot match what decided the drop (an
			// echo's identifier a conntrack rule read) would also drop
			// the packets that decide otherwise: drop only this one.
			r.Kind = UserspaceOnly
		}
	case vConsumed:
		r.Kind = Consumed
	case vARP:
		r.Kind = ARPNeeded
	}
	if s.natWait {
		// The packet waits for a port block; it is simulated again whole
		// once the agent has one, so nothing of this run is kept.
		r.Kind, r.Reason = NATLeaseNeeded, ReasonNone
		r.NAT, r.Conntrack = r.NAT[:0], r.Conntrack[:0]
	}
	if r.Kind == Consumed || r.Kind == ARPNeeded || r.Kind == NATLeaseNeeded {
		// Mirrored copies are not sent for a packet that is answered, or
		// that waits to be simulated again (its copies come then).
		r.Egress = r.Egress[:0]
	}
	switch r.Kind {
	case Forward:
		r.HardTimeout = FlowTimeout
		if r.IsStateful() {
			r.HardTimeout = StatefulFlowTimeout
		}
	case Drop:
		r.HardTimeout = FlowTimeout
		r.Egress = r.Egress[:0]
	case TemporaryDrop:
		// MidoNet clears the tags of temporary drops: they expire soon
		// anyway and must not pin state.
		r.HardTimeout = TemporaryDropTimeout
		r.Tags = r.Tags[:0]
		r.Egress = r.Egress[:0]
	}
	if s.orig.EthType < 0x0600 {
		// An 802.3 frame's "ethertype" is a length: match the MACs exactly
		// rather than install a flow that catches every such frame.
		s.seen |= FieldEthSrc | FieldEthDst | FieldEthType
	}
	r.Seen = s.seen
	r.Mask = maskFor(s.seen, s.writtenAll)
	if s.tracing {
		s.trace("port", s.pkt.Port, "result", r.Kind.String()+reasonSuffix(r.Reason))
	}
}

// needsUserspace says the flow cannot go to the datapath: the simulation
// asked for userspace, or read or wrote a field the datapath lacks.
func (s *Simulator) needsUserspace() bool {
	return s.userspace || (s.seen|s.writtenAll)&s.unmatchable != 0
}

func reasonSuffix(r DropReason) string {
	if r == ReasonNone {
		return ""
	}
	return " (" + r.String() + ")"
}

func (s *Simulator) drop(r DropReason) verdict {
	s.reason = r
	if s.tracing {
		s.trace("device", s.device, "drop", r.String())
	}
	return vDrop
}

func (s *Simulator) tempDrop(r DropReason) verdict {
	s.reason = r
	if s.tracing {
		s.trace("device", s.device, "temporary drop", r.String())
	}
	return vTempDrop
}

func (s *Simulator) tag(t Tag) { s.res.Tags = append(s.res.Tags, t) }

func (s *Simulator) save() pathState {
	return pathState{wc: s.wc, written: s.written, inPort: s.inPort, outPort: s.outPort, device: s.device,
		ndev: s.ndev, ntrav: s.ntrav, nwDstRewritten: s.nwDstRewritten, redirectedOut: s.redirectedOut, failOpen: s.failOpen}
}

func (s *Simulator) restore(p *pathState) {
	s.wc, s.written, s.inPort, s.outPort, s.device = p.wc, p.written, p.inPort, p.outPort, p.device
	s.ndev, s.ntrav, s.nwDstRewritten = p.ndev, p.ntrav, p.nwDstRewritten
	s.redirectedOut, s.failOpen = p.redirectedOut, p.failOpen
}

// enterDevice records a bridge or router on the path.
func (s *Simulator) enterDevice(id ID, tag Tag, typ string) {
	s.device = id
	if s.ntrav < len(s.devices) {
		s.devices[s.ntrav] = id
		s.ntrav++
	}
	s.tag(tag)
	if s.tracing {
		s.trace(typ, id, "process", "")
	}
}

func (s *Simulator) traversed(id ID) bool {
	for i := 0; i < s.ntrav; i++ {
		if s.devices[i] == id {
			return true
		}
	}
	return false
}

// ingress handles a packet entering the virtual network at exterior port
// p: a DHCP request to a bridge with DHCP is answered there, anything else
// goes through the port.
func (s *Simulator) ingress(p *port) verdict {
	if b := s.snap.bridge(p.bridge); b != nil && (b.dhcp4 != nil || b.dhcp6 != nil) && p.exterior && p.adminUp && b.adminUp {
		if v, ok := s.dhcpIngress(p); ok {
			return v
		}
	}
	return s.portIngress(p)
}

// portIngress handles a packet entering port p: loop guard, tags, admin
// state, the port's inbound chains, then the owning device.
func (s *Simulator) portIngress(p *port) verdict {
	s.device = p.deviceID()
	if s.ndev >= MaxDevicesTraversed {
		return s.tempDrop(ReasonLoop)
	}
	s.ndev++
	return s.ingressCommon(p, true)
}

// ingressCommon is a port's ingress after the loop guard. checkAdmin is
// false for a packet a fail-open redirect bounces back from a service port
// that is down.
func (s *Simulator) ingressCommon(p *port, checkAdmin bool) verdict {
	s.device = p.deviceID()
	s.tag(p.tag)
	if s.tracing {
		s.trace("port", p.id, "ingress", "")
	}
	s.inPort, s.outPort, s.nwDstRewritten = p, nil, false
	if p.router != 0 {
		s.preRouting = s.wc
	}
	if p.traces != nil {
		s.checkTraces(p.traces)
	}
	if checkAdmin && !p.adminUp {
		if p.router != 0 {
			s.icmpError(p, packet.ICMPDestUnreachable, packet.ICMPCodeAdminProhibited)
		}
		return s.drop(ReasonPortAdminDown)
	}
	if p.service && s.ethType() == packet.EtherTypeIPv6 {
		return s.drop(ReasonServicePort) // as MidoNet's service ports
	}
	if p.bgpPeers != nil {
		if v, ok := s.bgpDivert(p); ok {
			return v
		}
	}
	s.mirrorTo(p.mirrorsIn)
	switch s.runChains(p.inChains) {
	case actDrop:
		return s.drop(s.chainDropReason())
	case actReject:
		if p.router != 0 {
			s.icmpError(p, packet.ICMPDestUnreachable, packet.ICMPCodeAdminProhibited)
		}
		return s.drop(ReasonChain)
	case actRedirect:
		return s.redirect(p)
	}
	s.mirrorTo(p.mirrorsPostIn)
	if p.dscp >= 0 && s.isIPv4() {
		// QoS DSCP marking keeps the ECN bits.
		s.setNwTOS(uint8(p.dscp)<<2 | s.nwTOS()&3)
	}
	if p.bridge != 0 {
		if b := s.snap.bridge(p.bridge); b != nil {
			return s.bridgeProcess(b)
		}
	} else if r := s.snap.router(p.router); r != nil {
		return s.routerProcess(r)
	}
	return s.tempDrop(ReasonUnknownPort) // its device is gone: the next snapshot drops the port too
}

// portEgress handles a packet leaving through port p: VLAN pop on a
// VLAN-aware bridge's interior port, tags, the port's outbound chains, then
// emission (exterior), hand-off to the peer (interior) or a drop (unplugged).
func (s *Simulator) portEgress(p *port) verdict { return s.egress(p, true) }

// egress is portEgress; without filter (a redirect out of p) the port's
// pre-filter mirrors and outbound chains are skipped.
func (s *Simulator) egress(p *port, filter bool) verdict {
	if p.bridge != 0 && p.vlan != 0 && p.peer != 0 {
		if s.vlan()&0x0fff != p.vlan {
			return s.drop(ReasonVLAN)
		}
		s.setVLAN(0)
	}
	s.tag(p.tag)
	if s.tracing {
		s.trace("port", p.id, "egress", "")
	}
	s.device = p.deviceID()
	s.outPort = p
	if p.service {
		// A service port takes only what a redirect sends it. When it is
		// down, a fail-open redirect goes on as if the service had sent
		// the packet back; otherwise the packet is dropped.
		if !s.redirectedOut {
			return s.drop(ReasonServicePort)
		}
		failOpen := s.failOpen
		s.redirectedOut, s.failOpen = false, false
		if !p.adminUp || !p.active {
			if !failOpen {
				return s.drop(ReasonServicePortDown)
			}
			if s.tracing {
				s.trace("port", p.id, "fail open", "service port down: the packet skips the service")
			}
			s.ndev++
			return s.ingressCommon(p, false)
		}
	} else if !p.adminUp {
		if p.router != 0 && s.inPort != nil && s.inPort.router == p.router {
			// Routed to a port that is down: the router tells the sender.
			s.icmpError(s.inPort, packet.ICMPDestUnreachable, packet.ICMPCodeAdminProhibited)
		}
		return s.drop(ReasonPortAdminDown)
	}
	if filter {
		s.mirrorTo(p.mirrorsPreOut)
		switch s.runChains(p.outChains) {
		case actDrop:
			return s.drop(s.chainDropReason())
		case actReject:
			return s.drop(ReasonChain)
		case actRedirect:
			return s.redirect(p)
		}
	}
	s.mirrorTo(p.mirrorsOut)
	if peer := s.snap.port(p.peer); peer != nil {
		return s.portIngress(peer)
	}
	switch {
	case p.exterior:
		s.emit(p)
		return vForward
	}
	return s.tempDrop(ReasonUnplugged)
}

// redirect hands the packet to the port of the redirect rule that ended
// the last chains run: into that port (through its inbound chains), or out
// of it without its outbound chains. from is the port whose chains
// redirected (nil for a device's chains): its flow state also goes to the
// hosts of its service ports and its own, so that a service that fails
// open still finds it.
func (s *Simulator) redirect(from *port) verdict {
	r := s.redirectRule
	s.redirectRule = nil
	if from != nil {
		s.statePort(from.id)
		for _, sp := range from.servicePorts {
			s.statePort(sp)
		}
	}
	var to *port
	if r != nil {
		to = s.snap.port(r.redirect)
	}
	if to == nil {
		return s.tempDrop(ReasonUnknownPort)
	}
	if s.tracing {
		how := "out of"
		if r.ingress {
			how = "into"
		}
		s.trace("rule", r.id, "redirect", how+" port "+r.redirectID.String())
	}
	if r.ingress {
		return s.portIngress(to)
	}
	s.redirectedOut, s.failOpen = true, r.failOpen
	return s.egress(to, false)
}

// statePort adds a port whose host must receive the flow's state.
func (s *Simulator) statePort(id ID) {
	for _, x := range s.res.StatePorts {
		if x == id {
			return
		}
	}
	s.res.StatePorts = append(s.res.StatePorts, id)
}

func (s *Simulator) chainDropReason() DropReason {
	switch {
	case s.natFailed:
		return ReasonNATExhausted
	case s.vlanStack:
		return ReasonVLANStack
	}
	return ReasonChain
}

// applyTransform pops and pushes a VLAN tag as an l2_transform rule says.
// It reports whether the rule fires: it transforms, or it redirects. A
// push onto a tagged frame would stack tags, which flows here cannot
// match: it sets vlanStack and the packet is dropped.
func (s *Simulator) applyTransform(r *rule) bool {
	if r.popVLAN && s.vlan()&packet.VLANPresent != 0 {
		s.setVLAN(0)
	}
	if r.pushVLAN != 0 {
		if s.vlan()&packet.VLANPresent != 0 {
			s.vlanStack = true
			return true
		}
		s.setVLAN(r.pushVLAN | packet.VLANPresent)
	}
	return r.popVLAN || r.pushVLAN != 0 || r.action == actRedirect
}

// emit adds an egress action to exterior port p and tracks the connection
// on p's device.
func (s *Simulator) emit(p *port) {
	s.res.Egress = append(s.res.Egress, Egress{Port: p.id, Set: s.written, Values: s.wc})
	s.writtenAll |= s.written
	s.trackConnection(p.deviceID())
	if s.tracing {
		s.trace("port", p.id, "emit", "set "+s.written.String())
	}
}

// Field accessors: reading a field marks it seen, writing it marks it
// written. Devices must read through them so that the megaflow mask covers
// every field a decision depended on.

func (s *Simulator) ethSrc() [6]byte    { s.seen |= FieldEthSrc; return s.wc.EthSrc }
func (s *Simulator) ethDst() [6]byte    { s.seen |= FieldEthDst; return s.wc.EthDst }
func (s *Simulator) vlan() uint16       { s.seen |= FieldVLAN; return s.wc.VLAN }
func (s *Simulator) ethType() uint16    { s.seen |= FieldEthType; return s.wc.EthType }
func (s *Simulator) nwSrc() [4]byte     { s.seen |= FieldNwSrc; return s.wc.NwSrc }
func (s *Simulator) nwDst() [4]byte     { s.seen |= FieldNwDst; return s.wc.NwDst }
func (s *Simulator) nwProto() uint8     { s.seen |= FieldNwProto; return s.wc.NwProto }
func (s *Simulator) nwTOS() uint8       { s.seen |= FieldNwTOS; return s.wc.NwTOS }
func (s *Simulator) nwTTL() uint8       { s.seen |= FieldNwTTL; return s.wc.NwTTL }
func (s *Simulator) nwFrag() uint8      { s.seen |= FieldNwFrag; return s.wc.NwFrag }
func (s *Simulator) tpSrc() uint16      { s.seen |= FieldTpSrc; return s.wc.TpSrc }
func (s *Simulator) tpDst() uint16      { s.seen |= FieldTpDst; return s.wc.TpDst }
func (s *Simulator) arpSHA() [6]byte    { s.seen |= FieldARPSHA; return s.wc.ARPSHA }
func (s *Simulator) icmpID() uint16     { s.seen |= FieldICMPID; return s.wc.ICMPID }
func (s *Simulator) icmpData() ICMPData { s.seen |= FieldICMPData; return s.wc.ICMPData }

func (s *Simulator) isIPv4() bool { return s.ethType() == packet.EtherTypeIPv4 }
func (s *Simulator) isARP() bool  { return s.ethType() == packet.EtherTypeARP }

// hasNwAddrs reports whether NwSrc/NwDst hold addresses (IPv4 or ARP).
func (s *Simulator) hasNwAddrs() bool {
	t := s.ethType()
	return t == packet.EtherTypeIPv4 || t == packet.EtherTypeARP
}

// hasPorts reports whether TpSrc/TpDst hold ports or an ICMP type and code.
func (s *Simulator) hasPorts() bool {
	if !s.isIPv4() || s.nwFrag() == packet.FragLater {
		return false
	}
	switch s.nwProto() {
	case packet.IPProtoTCP, packet.IPProtoUDP, packet.IPProtoICMP:
		return true
	}
	return false
}

// isICMPError reports whether the packet is an ICMP error message.
func (s *Simulator) isICMPError() bool {
	if !s.isIPv4() || s.nwProto() != packet.IPProtoICMP || s.nwFrag() == packet.FragLater {
		return false
	}
	t := uint8(s.tpSrc())
	return t == packet.ICMPDestUnreachable || t == packet.ICMPTimeExceeded || t == packet.ICMPParameterProblem
}

func (s *Simulator) isICMPEcho() bool {
	if !s.isIPv4() || s.nwProto() != packet.IPProtoICMP || s.nwFrag() == packet.FragLater {
		return false
	}
	t := uint8(s.tpSrc())
	return t == packet.ICMPEchoRequest || t == packet.ICMPEchoReply
}

func (s *Simulator) setEthSrc(v [6]byte) { s.wc.EthSrc = v; s.written |= FieldEthSrc }
func (s *Simulator) setEthDst(v [6]byte) { s.wc.EthDst = v; s.written |= FieldEthDst }
func (s *Simulator) setVLAN(v uint16)    { s.wc.VLAN = v; s.written |= FieldVLAN }
func (s *Simulator) setNwSrc(v [4]byte)  { s.wc.NwSrc = v; s.written |= FieldNwSrc }
func (s *Simulator) setNwDst(v [4]byte)  { s.wc.NwDst = v; s.written |= FieldNwDst }
func (s *Simulator) setNwTTL(v uint8)    { s.wc.NwTTL = v; s.written |= FieldNwTTL }
func (s *Simulator) setNwTOS(v uint8)    { s.wc.NwTOS = v; s.written |= FieldNwTOS }
func (s *Simulator) setTpSrc(v uint16)   { s.wc.TpSrc = v; s.written |= FieldTpSrc }
func (s *Simulator) setTpDst(v uint16)   { s.wc.TpDst = v; s.written |= FieldTpDst }
func (s *Simulator) setICMPData(d ICMPData) {
	s.wc.ICMPData = d
	s.written |= FieldICMPData
}

// runChains applies a device's or port's filter chains in order; the first
// chain that does not accept decides. It returns actAccept, actDrop or
// actReject.
func (s *Simulator) runChains(chains []handle[chain]) ruleAction {
	for _, h := range chains {
		c := s.snap.chain(h)
		if c == nil {
			continue // a chain that does not exist accepts
		}
		s.nstack = 0
		switch a := s.runChain(c); a {
		case actDrop, actReject, actRedirect:
			return a
		}
	}
	return actAccept
}

// runChain evaluates c's rules; it returns a decisive action, actReturn, or
// actContinue when no rule decided.
func (s *Simulator) runChain(c *chain) ruleAction {
	s.tag(c.tag)
	if s.tracing {
		s.trace("chain", c.id, "evaluate", "")
	}
	s.chainStack[s.nstack] = c
	s.nstack++
	a := s.runRules(c)
	s.nstack--
	return a
}

func (s *Simulator) runRules(c *chain) ruleAction {
	for i := range c.rules {
		r := &c.rules[i]
		if !s.condMatches(&r.cond) {
			continue
		}
		if r.transform {
			if !s.applyTransform(r) {
				continue
			}
			if s.vlanStack {
				return actDrop
			}
		}
		if r.nat != natNone {
			if !s.applyNAT(r) {
				continue
			}
			if s.natFailed {
				if s.tracing {
					s.trace("rule", r.id, "nat failed", "no free port")
				}
				return actDrop
			}
		}
		if s.tracing {
			detail := r.typ + " → " + r.action.String()
			if r.action == actJump {
				detail = "jump to " + r.jumpID.String()
			}
			s.trace("rule", r.id, "matched", detail)
		}
		switch r.action {
		case actContinue:
			continue
		case actJump:
			jump := s.snap.chain(r.jump)
			if jump == nil || s.nstack >= maxJumpDepth || s.onStack(jump) {
				if s.tracing {
					s.trace("rule", r.id, "jump ignored", "missing chain or loop: "+r.jumpID.String())
				}
				continue
			}
			switch a := s.runChain(jump); a {
			case actAccept, actDrop, actReject, actRedirect:
				return a
			}
		case actRedirect:
			s.redirectRule = r
			return actRedirect
		default:
			return r.action
		}
	}
	return actContinue
}

func (s *Simulator) onStack(c *chain) bool {
	for i := 0; i < s.nstack; i++ {
		if s.chainStack[i].id == c.id {
			return true
		}
	}
	return false
}

// condMatches evaluates a rule condition. The fragment policy is checked
// outside the inversion, as MidoNet does.
func (s *Simulator) condMatches(c *cond) bool {
	if c.frag != fragAny {
		frag := packet.FragNone
		if s.isIPv4() {
			frag = s.nwFrag()
		}
		switch c.frag {
		case fragHeader:
			if frag == packet.FragLater {
				return false
			}
		case fragNonheader:
			if frag != packet.FragLater {
				return false
			}
		case fragUnfragmented:
			if frag != packet.FragNone {
				return false
			}
		}
	}
	return s.conjunction(c) != c.invertAll
}

func (s *Simulator) conjunction(c *cond) bool {
	if c.fwdFlow && !s.isForward() {
		return false
	}
	if c.retFlow && s.isForward() {
		return false
	}
	if c.dstRewrite && !s.nwDstRewritten {
		return false
	}
	for f := c.set; f != 0; f &= f - 1 {
		bit := f & -f
		if s.condField(c, bit) == (c.inv&bit != 0) {
			return false
		}
	}
	return true
}

// condField reports whether the packet matches one condition field, before
// inversion. A field the packet lacks (an address of a non-IP frame) does
// not match.
func (s *Simulator) condField(c *cond, f condField) bool {
	switch f {
	case cfInPorts:
		return s.inPort != nil && hasID(c.inPorts, s.inPort.id)
	case cfOutPorts:
		return s.outPort != nil && hasID(c.outPorts, s.outPort.id)
	case cfPortGroup:
		return s.inputPort != nil && s.inputPort.exterior && s.inputPort.inGroup(c.portGroup)
	case cfInPortGroup:
		return s.inPort != nil && s.inPort.inGroup(c.inPortGroup)
	case cfOutPortGroup:
		return s.outPort != nil && s.outPort.inGroup(c.outPortGrp)
	case cfIPGroupSrc:
		if !s.isIPv4() {
			return false
		}
		_, ok := c.ipGroupSrc[s.nwSrc()]
		return ok
	case cfIPGroupDst:
		if !s.isIPv4() {
			return false
		}
		_, ok := c.ipGroupDst[s.nwDst()]
		return ok
	case cfTraversed:
		return s.traversed(c.traversed)
	case cfDlType:
		return s.ethType() == c.dlType
	case cfDlSrc:
		return maskedMAC(s.ethSrc(), c.dlSrcMask) == c.dlSrc
	case cfDlDst:
		return maskedMAC(s.ethDst(), c.dlDstMask) == c.dlDst
	case cfVLAN:
		v := s.vlan()
		return v&packet.VLANPresent != 0 && v&c.vlanMask == c.vlan
	case cfNoVLAN:
		return s.vlan()&packet.VLANPresent == 0
	case cfNwTos:
		return s.isIPv4() && s.nwTOS() == c.nwTos
	case cfNwProto:
		return s.isIPv4() && s.nwProto() == c.nwProto
	case cfNwSrc:
		return s.hasNwAddrs() && c.nwSrc.contains(u32(s.nwSrc()))
	case cfNwDst:
		return s.hasNwAddrs() && c.nwDst.contains(u32(s.nwDst()))
	case cfTpSrc:
		if !s.hasPorts() {
			return false
		}
		v := s.tpSrc()
		return v >= c.tpSrc[0] && v <= c.tpSrc[1]
	case cfTpDst:
		if !s.hasPorts() {
			return false
		}
		v := s.tpDst()
		return v >= c.tpDst[0] && v <= c.tpDst[1]
	case cfICMPDataSrc:
		if !s.isICMPError() {
			return false
		}
		d := s.icmpData()
		return d.Valid && c.icmpDataSrc.contains(u32(d.Src))
	case cfICMPDataDst:
		if !s.isICMPError() {
			return false
		}
		d := s.icmpData()
		return d.Valid && c.icmpDataDst.contains(u32(d.Dst))
	}
	return false
}

func hasID(l []ID, id ID) bool {
	for _, x := range l {
		if x == id {
			return true
		}
	}
	return false
}

func maskedMAC(m, mask [6]byte) [6]byte {
	for i := range m {
		m[i] &= mask[i]
	}
	return m
}

// connTuple reads the connection tuple of the packet as it entered the
// simulation. ok is false for traffic conntrack does not follow.
func (s *Simulator) connTuple() (k flowstate.ConnKey, ok bool) {
	m := &s.orig
	s.seen |= FieldEthType
	if m.EthType != packet.EtherTypeIPv4 {
		return k, false
	}
	s.seen |= FieldNwProto | FieldNwSrc | FieldNwDst | FieldNwFrag
	k.Src, k.Dst, k.Proto = addr4(m.NwSrc), addr4(m.NwDst), m.NwProto
	switch m.NwProto {
	case packet.IPProtoTCP, packet.IPProtoUDP:
		if m.NwFrag == packet.FragLater {
			return k, false
		}
		s.seen |= FieldTpSrc | FieldTpDst
		k.SrcPort, k.DstPort = m.TpSrc, m.TpDst
	case packet.IPProtoICMP:
		if m.NwFrag == packet.FragLater {
			return k, false
		}
		s.seen |= FieldTpSrc
		switch uint8(m.TpSrc) {
		case packet.ICMPEchoRequest, packet.ICMPEchoReply:
			s.seen |= FieldICMPID
			k.SrcPort, k.DstPort = m.ICMPID, m.ICMPID
		case packet.ICMPDestUnreachable, packet.ICMPTimeExceeded, packet.ICMPParameterProblem:
			// An error belongs to the connection of the datagram it quotes,
			// which travelled the other way: look up its reversed tuple.
			s.seen |= FieldICMPData
			d := &m.ICMPData
			if !d.Valid {
				return k, false
			}
			k.Src, k.Dst, k.SrcPort, k.DstPort, k.Proto = addr4(d.Dst), addr4(d.Src), d.DstPort, d.SrcPort, d.Proto
		}
	default:
		return k, false
	}
	return k, true
}

// isForward reports whether the packet belongs to a connection's forward
// direction, looking the conntrack table up the first time it is asked:
// the packet is a return packet when the table holds its tuple keyed by the
// device of the simulation's ingress port.
func (s *Simulator) isForward() bool {
	if s.conn != connUnknown {
		return s.conn == connForward
	}
	s.conn = connForward
	k, ok := s.connTuple()
	if !ok {
		return true
	}
	s.connTracked = true
	k.Device = s.inputPort.deviceID()
	s.tag(ConnTag(k))
	if s.state != nil && s.state.HasConn(k) {
		s.conn = connReturn
	}
	if s.tracing {
		s.trace("device", k.Device, "conntrack", k.String()+" forward="+strconv.FormatBool(s.conn == connForward))
	}
	return s.conn == connForward
}

// trackConnection records the return key of a forward connection emitted
// from device dev: the packet as emitted, reversed, keyed by dev. Only
// connections whose direction a rule asked about are tracked, as in MidoNet.
func (s *Simulator) trackConnection(dev ID) {
	if s.conn != connForward || !s.connTracked {
		return
	}
	m := &s.wc
	if m.NwProto == packet.IPProtoICMP && uint8(m.TpSrc) != packet.ICMPEchoRequest && uint8(m.TpSrc) != packet.ICMPEchoReply {
		return // errors and other ICMP open no connection
	}
	k := flowstate.ConnKey{Src: addr4(m.NwDst), Dst: addr4(m.NwSrc), SrcPort: m.TpDst, DstPort: m.TpSrc, Proto: m.NwProto, Device: dev}
	if m.NwProto == packet.IPProtoICMP {
		k.SrcPort, k.DstPort = m.ICMPID, m.ICMPID
	}
	for _, x := range s.res.Conntrack {
		if x == k {
			return
		}
	}
	s.res.Conntrack = append(s.res.Conntrack, k)
}
