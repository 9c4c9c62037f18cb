package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// workerQueue bounds each worker's queue of upcalls; beyond it misses are
// dropped and counted, and the datapath's next miss retries.
const workerQueue = 1024

// ARP resolution: how often a parked packet is simulated again and how long
// it waits for the next hop's MAC before it is dropped.
const (
	arpRetryInterval = 20 * time.Millisecond
	arpRequestEvery  = time.Second
	arpTimeout       = 3 * time.Second
)

// upcall is a miss for a worker.
type upcall struct {
	inPort datapath.PortNo
	key    packet.FlowKey
	frame  []byte
	// borrowed: frame is the datapath's, valid only while the miss is
	// handled inline; keep copies it for a miss that must wait.
	borrowed bool
	// parked since, for packets waiting for ARP.
	parkedAt, lastARP time.Time
}

// keep returns u in a form that may outlive its handling.
func (u *upcall) keep() *upcall {
	if !u.borrowed {
		return u
	}
	c := *u
	c.frame, c.borrowed = bytes.Clone(u.frame), false
	return &c
}

// worker simulates the misses of its share of connections. It owns its
// simulator scratch space and its flow-state shard.
type worker struct {
	a  *Agent
	id int
	ch chan *upcall
	// pending counts the upcalls handed to ch and not yet handled; mu is
	// held while one is handled, by the worker's goroutine or by dispatch
	// handling one inline. The fields below are guarded by mu.
	pending  atomic.Int64
	mu       sync.Mutex
	sim      *sim.Simulator
	shard    *flowstate.Shard
	view     *flowstate.View
	parsed   packet.Parsed
	acts     []datapath.Action
	parked   []*upcall
	msg      flowstate.Message // encodeState's message
	egress   []topology.ID     // its egress ports
	stateBuf []byte            // its frame
}

func newWorker(a *Agent, id int) *worker {
	w := &worker{
		a: a, id: id, ch: make(chan *upcall, workerQueue),
		sim:   sim.NewSimulator(uint64(time.Now().UnixNano()) + uint64(id)),
		shard: a.state.Shard(id), view: a.state.View(id),
	}
	w.sim.MatchICMPID(datapath.FeaturesOf(a.dp).ICMPEchoID)
	return w
}

var hashSeed = maphash.MakeSeed()

// connHash hashes a flow key so both directions of a connection give the
// same value: the endpoints are ordered before hashing.
func connHash(k *packet.FlowKey) uint64 {
	var b [32]byte
	a1, a2 := k.NwSrc, k.NwDst
	p1, p2 := k.TpSrc, k.TpDst
	if k.EthType == packet.EtherTypeIPv4 && k.NwProto == packet.IPProtoICMP {
		// An echo and its reply differ in type but share the identifier
		// (zero from a datapath without it).
		p1, p2 = k.ICMPID, k.ICMPID
	}
	if string(a1[:]) > string(a2[:]) || (a1 == a2 && p1 > p2) {
		a1, a2, p1, p2 = a2, a1, p2, p1
	}
	copy(b[0:4], a1[:])
	copy(b[4:8], a2[:])
	binary.BigEndian.PutUint16(b[8:], p1)
	binary.BigEndian.PutUint16(b[10:], p2)
	b[12] = k.NwProto
	if k.EthType != packet.EtherTypeIPv4 {
		m1, m2 := k.EthSrc, k.EthDst
		if string(m1[:]) > string(m2[:]) {
			m1, m2 = m2, m1
		}
		copy(b[13:19], m1[:])
		copy(b[19:25], m2[:])
	}
	return maphash.Bytes(hashSeed, b[:])
}

// dispatch is the datapath's upcall handler: it copies the miss and hands
// it to the worker of its connection.
func (a *Agent) dispatch(u *datapath.Upcall) {
	a.metrics.upcalls.Inc()
	if u.Key.TunID == StateVNI && len(u.Packet) >= 14 && binary.BigEndian.Uint16(u.Packet[12:]) == stateEtherType {
		// Flow state from a peer is imported here, before any packet
		// queued after it is simulated: the peer sent it ahead of the
		// packet whose reply may already be on its way in.
		a.importState(u.Packet)
		return
	}
	w := a.workers[connHash(&u.Key)%uint64(len(a.workers))]
	if u.Key.TunID == StateVNI {
		w = a.workers[0] // a pull request
	}
	// An idle worker's miss is handled right here, on the datapath's
	// goroutine, which saves waking the worker's (a large part of a first
	// packet's latency on a quiet host), and copying the frame. Calls to
	// dispatch are serialized, so with nothing pending this miss is the
	// worker's next in order.
	if w.pending.Load() == 0 && w.mu.TryLock() {
		w.handle(&upcall{inPort: u.InPort, key: u.Key, frame: u.Packet, borrowed: true})
		w.mu.Unlock()
		return
	}
	w.pending.Add(1)
	select {
	case w.ch <- &upcall{inPort: u.InPort, key: u.Key, frame: bytes.Clone(u.Packet)}:
	default:
		w.pending.Add(-1)
		a.metrics.upcallQueueDrops.Inc()
	}
}

func (w *worker) run(ctx context.Context) {
	tick := time.NewTicker(arpRetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-w.ch:
			w.mu.Lock()
			w.handle(u)
			w.mu.Unlock()
			w.pending.Add(-1)
		case <-tick.C:
			w.mu.Lock()
			w.retryParked()
			w.mu.Unlock()
		}
	}
}

// handle processes one miss.
func (w *worker) handle(u *upcall) {
	since := w.a.flows.generation() // before the tables are read
	t := w.a.dpPortsView.Load()
	if t.vxlan != 0 && u.inPort == t.vxlan {
		w.fromOverlay(t, u, since)
		return
	}
	port, ok := t.byDP[u.inPort]
	if !ok {
		w.a.metrics.drops.WithLabelValues("unbound-port").Inc()
		return
	}
	w.simulate(t, u, port, since)
}

// fromOverlay delivers a packet from a peer by its tunnel key without
// simulating it, or imports a flow-state message.
func (w *worker) fromOverlay(t *portTables, u *upcall, since uint64) {
	if u.key.TunID == StateVNI {
		if len(u.frame) >= 14 && binary.BigEndian.Uint16(u.frame[12:]) == pullEtherType {
			w.a.answerPull(u.frame)
		}
		return
	}
	dp, ok := t.byKey[u.key.TunID]
	if !ok {
		w.a.metrics.drops.WithLabelValues("unknown-tunnel-key").Inc()
		return
	}
	var mask packet.FlowKey
	mask.InPort, mask.TunID = ^uint32(0), ^uint32(0)
	acts := []datapath.Action{datapath.Output(dp)}
	w.a.flows.add(&flowEntry{
		key: u.key, mask: mask, actions: acts, tags: []sim.Tag{sim.DeviceTag(t.byDP[dp])},
		expires: w.a.now().Add(tunnelFlowTimeout), since: since,
	})
	if err := w.a.dp.Execute(u.frame, acts, u.inPort); err != nil {
		w.a.metrics.drops.WithLabelValues("execute").Inc()
	}
}

// tunnelFlowTimeout is the hard timeout of overlay delivery flows.
const tunnelFlowTimeout = 300 * time.Second

// simulate runs one packet through the virtual network and acts on the
// result. since is the flow table's generation read before t.
func (w *worker) simulate(t *portTables, u *upcall, port topology.ID, since uint64) {
	snap := w.a.snap.Load()
	if snap == nil {
		return
	}
	w.parsed.Decode(u.frame)
	pkt := sim.Packet{Port: port, Match: sim.MatchFromFlowKey(&u.key), Frame: u.frame}
	pkt.Match.FillICMP(&w.parsed)
	now := w.a.now()
	start := time.Now()
	res := w.sim.Simulate(snap, w.view, &pkt, now)
	w.a.metrics.simulated(res.Kind)
	w.a.metrics.simLatency.Observe(time.Since(start).Seconds())
	if w.a.debug {
		// Simulate again with a trace: per-packet detail for debugging only.
		pkt.Trace = true
		tr := w.sim.Simulate(snap, w.view, &pkt, now).Trace.String()
		pkt.Trace = false
		res = w.sim.Simulate(snap, w.view, &pkt, now)
		w.a.log.Debug("simulated", "port_id", port, "result", res.Kind.String(), "reason", res.Reason.String(), "trace", tr)
	}

	for _, l := range res.LearnedMACs {
		w.a.writer.learnMAC(l)
	}
	for _, l := range res.LearnedARP {
		w.a.writer.learnARP(l, w.a.isRouter(l.Device))
	}
	generated := copyGenerated(res.Generated)

	switch res.Kind {
	case sim.Forward:
		acts := w.translate(t, snap, res.Egress, &pkt.Match)
		state := w.encodeState(port, res)
		w.replicate(t, snap, port, res, state)
		w.shard.Commit(res.Conntrack, res.NAT)
		w.a.journalState(state) // after the commit: see stateJournal
		// The packet first, then its flow: installing it is not on the
		// packet's path (a packet of the flow arriving meanwhile misses
		// and is simulated to the same result).
		if err := w.a.dp.Execute(u.frame, acts, u.inPort); err != nil {
			w.a.metrics.drops.WithLabelValues("execute").Inc()
		}
		w.a.flows.add(&flowEntry{
			key: u.key, mask: res.Mask, actions: acts, tags: append([]sim.Tag(nil), res.Tags...),
			expires: now.Add(res.HardTimeout), shard: w.shard, since: since,
			conns: append([]flowstate.ConnKey(nil), res.Conntrack...), nats: append([]flowstate.NATEntry(nil), res.NAT...),
		})
	case sim.UserspaceOnly:
		if len(res.Egress) == 0 {
			// Dropped by what no flow can match: this packet only.
			w.a.metrics.drops.WithLabelValues(res.Reason.String()).Inc()
		}
		state := w.encodeState(port, res)
		w.replicate(t, snap, port, res, state)
		// No flow holds the state: it idles out unless packets refresh it.
		w.shard.Touch(res.Conntrack, res.NAT, now)
		w.a.journalState(state)
		w.executeInUserspace(t, snap, res.Egress, u)
	case sim.Drop, sim.TemporaryDrop:
		w.a.metrics.drops.WithLabelValues(res.Reason.String()).Inc()
		var tags []sim.Tag
		if res.Kind == sim.Drop {
			tags = append(tags, res.Tags...)
		}
		w.a.flows.add(&flowEntry{key: u.key, mask: res.Mask, tags: tags, expires: now.Add(res.HardTimeout), since: since})
	case sim.ARPNeeded:
		// Park the packet; it is simulated again until the MAC is known
		// or the wait times out.
		switch {
		case u.parkedAt.IsZero():
			u.parkedAt, u.lastARP = now, now
		case now.Sub(u.lastARP) < arpRequestEvery:
			generated = nil // asked recently: do not flood the network with requests
		default:
			u.lastARP = now
		}
		w.parked = append(w.parked, u.keep())
	case sim.Consumed:
	}
	for _, g := range generated {
		w.emitGenerated(t, snap, g)
	}
}

// retryParked simulates again the packets waiting for ARP.
func (w *worker) retryParked() {
	if len(w.parked) == 0 {
		return
	}
	now := w.a.now()
	since := w.a.flows.generation() // before the tables are read
	t := w.a.dpPortsView.Load()
	parked := w.parked
	w.parked = nil
	for _, u := range parked {
		port, ok := t.byDP[u.inPort]
		if !ok {
			continue
		}
		if now.Sub(u.parkedAt) > arpTimeout {
			// The next hop never answered: simulate once more as MidoNet
			// does, so the router sends the sender a host unreachable.
			w.a.metrics.drops.WithLabelValues("arp-timeout").Inc()
			w.arpFailed(t, u, port)
			continue
		}
		w.simulate(t, u, port, since)
	}
}

// arpFailed simulates a packet whose next hop did not answer ARP and sends
// what the devices generate (an ICMP host unreachable to the sender).
func (w *worker) arpFailed(t *portTables, u *upcall, port topology.ID) {
	snap := w.a.snap.Load()
	if snap == nil {
		return
	}
	w.parsed.Decode(u.frame)
	pkt := sim.Packet{Port: port, Match: sim.MatchFromFlowKey(&u.key), Frame: u.frame, ARPFailed: true}
	pkt.Match.FillICMP(&w.parsed)
	res := w.sim.Simulate(snap, w.view, &pkt, w.a.now())
	for _, g := range copyGenerated(res.Generated) {
		w.emitGenerated(t, snap, g)
	}
}

// copyGenerated copies the packets a simulation generated out of the
// simulator's scratch space, which the next simulation overwrites.
func copyGenerated(gs []sim.Generated) []sim.Generated {
	out := make([]sim.Generated, len(gs))
	for i, g := range gs {
		out[i] = sim.Generated{Port: g.Port, Frame: append([]byte(nil), g.Frame...)}
	}
	return out
}

// emitGenerated simulates a packet a device produced from the egress of its
// port and sends it, without installing a flow.
func (w *worker) emitGenerated(t *portTables, snap *sim.Snapshot, g sim.Generated) {
	m, ok := sim.MatchFromFrame(g.Frame)
	if !ok {
		return
	}
	pkt := sim.Packet{Port: g.Port, Match: m, Frame: g.Frame, Generated: true}
	res := w.sim.Simulate(snap, w.view, &pkt, w.a.now())
	if res.Kind != sim.Forward && res.Kind != sim.UserspaceOnly {
		return
	}
	w.executeInUserspace(t, snap, res.Egress, &upcall{frame: g.Frame, key: m.FlowKey(0)})
}

// output appends the actions that send the packet to a virtual port: an
// output to its datapath port here, or a tunnel to its host.
func (w *worker) output(acts []datapath.Action, t *portTables, snap *sim.Snapshot, port topology.ID) []datapath.Action {
	if dp, ok := t.byPort[port]; ok {
		return append(acts, datapath.Output(dp))
	}
	info, ok := snap.Port(port)
	if !ok || info.Host == (topology.ID{}) || t.vxlan == 0 {
		w.a.metrics.drops.WithLabelValues("egress-unreachable").Inc()
		return acts
	}
	ip, ok := t.peers[info.Host]
	if !ok {
		w.a.metrics.drops.WithLabelValues("no-tunnel-peer").Inc()
		return acts
	}
	return append(acts,
		datapath.SetTunnel(datapath.TunnelSet{VNI: info.TunnelKey, Dst: ip, Src: t.localIP}),
		datapath.Output(t.vxlan))
}

// translate turns the egress list of a result into datapath actions: for
// each egress, the header sets that turn the packet as it is into the
// packet that egress wants, then its output.
func (w *worker) translate(t *portTables, snap *sim.Snapshot, egress []sim.Egress, orig *sim.Match) []datapath.Action {
	acts := w.acts[:0]
	cur := *orig
	for i := range egress {
		e := &egress[i]
		want := *orig
		applyFields(&want, e.Set, &e.Values)
		acts = appendSets(acts, &cur, &want)
		cur = want
		acts = w.output(acts, t, snap, e.Port)
	}
	w.acts = acts
	return append([]datapath.Action(nil), acts...)
}

// applyFields copies the fields of set from values into m.
func applyFields(m *sim.Match, set sim.FieldSet, v *sim.Match) {
	if set&sim.FieldEthSrc != 0 {
		m.EthSrc = v.EthSrc
	}
	if set&sim.FieldEthDst != 0 {
		m.EthDst = v.EthDst
	}
	if set&sim.FieldVLAN != 0 {
		m.VLAN = v.VLAN
	}
	if set&sim.FieldNwSrc != 0 {
		m.NwSrc = v.NwSrc
	}
	if set&sim.FieldNwDst != 0 {
		m.NwDst = v.NwDst
	}
	if set&sim.FieldNwTOS != 0 {
		m.NwTOS = v.NwTOS
	}
	if set&sim.FieldNwTTL != 0 {
		m.NwTTL = v.NwTTL
	}
	if set&sim.FieldTpSrc != 0 {
		m.TpSrc = v.TpSrc
	}
	if set&sim.FieldTpDst != 0 {
		m.TpDst = v.TpDst
	}
	if set&sim.FieldICMPID != 0 {
		m.ICMPID = v.ICMPID
	}
	if set&sim.FieldICMPData != 0 {
		m.ICMPData = v.ICMPData
	}
}

// appendSets appends the set actions that turn cur into want.
func appendSets(acts []datapath.Action, cur, want *sim.Match) []datapath.Action {
	if cur.EthSrc != want.EthSrc || cur.EthDst != want.EthDst {
		var s datapath.EthernetSet
		if cur.EthSrc != want.EthSrc {
			s.Src, s.Fields = want.EthSrc, s.Fields|datapath.SetSrc
		}
		if cur.EthDst != want.EthDst {
			s.Dst, s.Fields = want.EthDst, s.Fields|datapath.SetDst
		}
		acts = append(acts, datapath.SetEthernet(s))
	}
	if cur.EthType == packet.EtherTypeIPv4 {
		var s datapath.IPv4Set
		if cur.NwSrc != want.NwSrc {
			s.Src, s.Fields = want.NwSrc, s.Fields|datapath.SetSrc
		}
		if cur.NwDst != want.NwDst {
			s.Dst, s.Fields = want.NwDst, s.Fields|datapath.SetDst
		}
		if cur.NwTOS != want.NwTOS {
			s.TOS, s.Fields = want.NwTOS, s.Fields|datapath.SetTOS
		}
		if cur.NwTTL != want.NwTTL {
			s.TTL, s.Fields = want.NwTTL, s.Fields|datapath.SetTTL
		}
		if s.Fields != 0 {
			acts = append(acts, datapath.SetIPv4(s))
		}
		if cur.NwFrag != packet.FragLater && (cur.NwProto == packet.IPProtoTCP || cur.NwProto == packet.IPProtoUDP) {
			var l datapath.L4Set
			if cur.TpSrc != want.TpSrc {
				l.Src, l.Fields = want.TpSrc, l.Fields|datapath.SetSrc
			}
			if cur.TpDst != want.TpDst {
				l.Dst, l.Fields = want.TpDst, l.Fields|datapath.SetDst
			}
			if l.Fields != 0 {
				if cur.NwProto == packet.IPProtoTCP {
					acts = append(acts, datapath.SetTCP(l))
				} else {
					acts = append(acts, datapath.SetUDP(l))
				}
			}
		}
	}
	if cur.VLAN != want.VLAN {
		if cur.VLAN&packet.VLANPresent != 0 {
			acts = append(acts, datapath.PopVLAN())
		}
		if want.VLAN&packet.VLANPresent != 0 {
			acts = append(acts, datapath.PushVLAN(want.VLAN))
		}
	}
	return acts
}

// executeInUserspace applies each egress's rewrites to its own copy of the
// frame here (including the ICMP fields a datapath cannot set) and executes
// only its output.
func (w *worker) executeInUserspace(t *portTables, snap *sim.Snapshot, egress []sim.Egress, u *upcall) {
	for i := range egress {
		e := &egress[i]
		frame := append([]byte(nil), u.frame...)
		var p packet.Parsed
		p.Decode(frame)
		v := &e.Values
		if e.Set&sim.FieldEthSrc != 0 {
			p.SetEthSrc(v.EthSrc)
		}
		if e.Set&sim.FieldEthDst != 0 {
			p.SetEthDst(v.EthDst)
		}
		if e.Set&sim.FieldNwSrc != 0 {
			p.SetIPv4Src(v.NwSrc)
		}
		if e.Set&sim.FieldNwDst != 0 {
			p.SetIPv4Dst(v.NwDst)
		}
		if e.Set&sim.FieldNwTOS != 0 {
			p.SetTOS(v.NwTOS)
		}
		if e.Set&sim.FieldNwTTL != 0 {
			p.SetTTL(v.NwTTL)
		}
		if e.Set&sim.FieldTpSrc != 0 {
			p.SetSrcPort(v.TpSrc)
		}
		if e.Set&sim.FieldTpDst != 0 {
			p.SetDstPort(v.TpDst)
		}
		if e.Set&sim.FieldICMPID != 0 {
			p.SetICMPEchoIdent(v.ICMPID)
		}
		if e.Set&sim.FieldICMPData != 0 && v.ICMPData.Valid {
			p.SetQuotedIPv4Src(v.ICMPData.Src)
			p.SetQuotedIPv4Dst(v.ICMPData.Dst)
			p.SetQuotedSrcPort(v.ICMPData.SrcPort)
			p.SetQuotedDstPort(v.ICMPData.DstPort)
		}
		var acts []datapath.Action
		if e.Set&sim.FieldVLAN != 0 {
			cur := sim.Match{VLAN: u.key.VLAN}
			want := sim.Match{VLAN: v.VLAN}
			acts = appendSets(acts, &cur, &want)
		}
		acts = w.output(acts, t, snap, e.Port)
		if err := w.a.dp.Execute(frame, acts, u.inPort); err != nil {
			w.a.metrics.drops.WithLabelValues("execute").Inc()
		}
	}
}

// encodeState encodes the keys a simulation created or used as a
// flow-state frame, once for the peers and the journal, in the worker's
// buffer (the datapath does not keep what it executes). It returns nil if
// there are none.
func (w *worker) encodeState(ingress topology.ID, res *sim.Result) []byte {
	if !res.IsStateful() {
		return nil
	}
	w.egress = w.egress[:0]
	for _, e := range res.Egress {
		w.egress = append(w.egress, e.Port)
	}
	w.msg = flowstate.Message{Sender: w.a.hostID, IngressPort: ingress, EgressPorts: w.egress,
		Conntrack: res.Conntrack, NAT: res.NAT}
	frame, err := appendStateFrame(w.stateBuf[:0], &w.msg)
	if err != nil {
		w.a.log.Warn("flow state message too large", "err", err)
		w.a.metrics.journalDropped.Inc()
		return nil
	}
	w.stateBuf = frame
	return frame
}

// replicate sends a simulation's flow-state frame to every peer that may
// see the connection's traffic, before the packet is forwarded.
func (w *worker) replicate(t *portTables, snap *sim.Snapshot, ingress topology.ID, res *sim.Result, frame []byte) {
	if frame == nil || t.vxlan == 0 {
		return
	}
	hosts := map[topology.ID]bool{}
	addPort := func(p topology.ID) {
		if info, ok := snap.Port(p); ok && info.Host != (topology.ID{}) && info.Host != w.a.hostID {
			hosts[info.Host] = true
		}
	}
	for _, e := range res.Egress {
		addPort(e.Port)
		for _, p := range snap.StatefulGroupPeers(e.Port) {
			addPort(p)
		}
	}
	for _, p := range snap.StatefulGroupPeers(ingress) {
		addPort(p)
	}
	for h := range hosts {
		ip, ok := t.peers[h]
		if !ok {
			continue
		}
		acts := []datapath.Action{
			datapath.SetTunnel(datapath.TunnelSet{VNI: StateVNI, Dst: ip, Src: t.localIP}),
			datapath.Output(t.vxlan),
		}
		if err := w.a.dp.Execute(frame, acts, 0); err != nil {
			w.a.metrics.drops.WithLabelValues("state-send").Inc()
			continue
		}
		w.a.metrics.stateSent.Inc()
	}
}

// stateHeaderLen is the Ethernet header before the message in a flow-state
// frame.
const stateHeaderLen = 14

// appendStateFrame appends to b a flow-state frame carrying m: an Ethernet
// header of type stateEtherType, then the message.
func appendStateFrame(b []byte, m *flowstate.Message) ([]byte, error) {
	var hdr [stateHeaderLen]byte
	binary.BigEndian.PutUint16(hdr[12:], stateEtherType)
	return m.AppendBinary(append(b, hdr[:]...))
}

// journalState journals the message of a flow-state frame (none if nil).
func (a *Agent) journalState(frame []byte) {
	if frame != nil {
		a.journal.add(frame[stateHeaderLen:])
	}
}

// importState imports a flow-state message from a peer into the shard kept
// for imported state. It runs on the datapath's upcall goroutine.
func (a *Agent) importState(frame []byte) {
	m := &a.importMsg
	if err := m.UnmarshalBinary(frame[stateHeaderLen:]); err != nil {
		a.metrics.drops.WithLabelValues("bad-state-message").Inc()
		return
	}
	a.state.Shard(a.state.Len()-1).Import(m, a.now())
	a.journalState(frame)
	a.pulls.arrived(m.Sender)
	a.metrics.stateReceived.Inc()
}

// isRouter reports whether id is a router of the current topology.
func (a *Agent) isRouter(id topology.ID) bool {
	rs := a.routerSet.Load()
	return rs != nil && (*rs)[id]
}
