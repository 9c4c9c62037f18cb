package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flows"
	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
	"github.com/midonet/midonet/internal/translate"
)

// Steps 3 to 5 of the packet path: a worker simulates a miss, has the
// result translated, sends the flow state, executes the packet and
// installs its flow.

// ARP resolution: how often a parked packet is simulated again and how long
// it waits for the next hop's MAC before it is dropped.
const (
	arpRetryInterval = 20 * time.Millisecond
	arpRequestEvery  = time.Second
	arpTimeout       = 3 * time.Second
)

// tunnelFlowTimeout is the hard timeout of overlay delivery flows.
const tunnelFlowTimeout = 300 * time.Second

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
	acts     []datapath.Action
	parked   []*upcall
	msg      flowstate.Message        // encodeState's message
	egress   []topology.ID            // its egress ports
	stateBuf []byte                   // its frame
	mtus     map[topology.ID]ifaceMTU // port interfaces' MTUs, for MSS clamping
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

func (w *worker) run(ctx context.Context) {
	tick := time.NewTicker(arpRetryInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-w.ch:
			w.mu.Lock()
			w.a.handle(w, u)
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
	since := w.a.flows.Generation() // before the tables are read
	t := w.a.ports.Load()
	if t.Overlay != 0 && u.inPort == t.Overlay {
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
// simulating it, or answers a flow-state pull.
func (w *worker) fromOverlay(t *portTables, u *upcall, since uint64) {
	if u.match.TunID == StateVNI {
		if len(u.frame) >= 14 && binary.BigEndian.Uint16(u.frame[12:]) == pullEtherType {
			w.a.answerPull(u.frame)
		}
		return
	}
	dp, ok := t.byKey[u.match.TunID]
	if !ok {
		w.a.metrics.drops.WithLabelValues("unknown-tunnel-key").Inc()
		return
	}
	var mask packet.FlowKey
	mask.InPort, mask.TunID = ^uint32(0), ^uint32(0)
	acts := []datapath.Action{datapath.Output(dp)}
	w.a.flows.Add(&flows.Entry{
		Key: u.match.FlowKey, Mask: mask, Actions: acts, Tags: []sim.Tag{sim.DeviceTag(t.byDP[dp])},
		Expires: w.a.now().Add(tunnelFlowTimeout), Since: since,
	})
	w.execute(u.frame, acts, u.inPort)
}

// execute executes actions on a frame, counting a refusal as a drop.
func (w *worker) execute(frame []byte, acts []datapath.Action, inPort datapath.PortNo) {
	if err := w.a.dp.Execute(frame, acts, inPort); err != nil {
		w.a.metrics.drops.WithLabelValues("execute").Inc()
	}
}

// simulate runs one packet through the virtual network and acts on the
// result. since is the flow table's generation read before t.
func (w *worker) simulate(t *portTables, u *upcall, port topology.ID, since uint64) {
	snap := w.a.snap.Load()
	if snap == nil {
		return
	}
	pkt := sim.Packet{Port: port, Match: u.match, Frame: u.frame}
	now := w.a.now()
	start := time.Now()
	res := w.sim.Simulate(snap, w.view, &pkt, now)
	w.a.metrics.simulated(res.Kind)
	w.a.metrics.dhcpEvent(res.DHCP)
	w.a.metrics.simLatency.Observe(time.Since(start).Seconds())
	res = w.traceAgain(u, &pkt, res, snap, now)
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
	// The flow installed below holds the MAC mappings it learned; without
	// one they are released at once (ageing.go).
	macs := w.a.macAges.hold(res.LearnedMACs)
	var reply replyPlan // reply.go
	if f := w.clampMSS(snap, u, port, res); f != nil {
		// A SYN whose MSS the overlay cannot carry: sent clamped, no flow.
		c := *u
		c.frame, c.borrowed, u = f, false, &c
		res.Kind = sim.UserspaceOnly
	}

	switch res.Kind {
	case sim.Forward:
		var drops translate.Drops
		w.acts, drops = translate.Flow(w.acts[:0], &pkt.Match, res.Egress, &t.Ports, snap)
		w.countDrops(drops)
		acts := append([]datapath.Action(nil), w.acts...) // the flow table keeps them
		state := w.encodeState(port, res)
		w.replicate(t, snap, port, res, state)
		arrived := arrivalTags(*w.view, res.Conntrack, res.NAT, res.Tags)
		w.shard.Commit(res.Conntrack, res.NAT)
		w.a.state.Rebind(res.NAT)
		if len(arrived) > 0 {
			w.a.flows.Invalidate(arrived)
		}
		w.a.journalState(state) // after the commit: see stateJournal
		e := &flows.Entry{Key: u.match.FlowKey, Mask: res.Mask, Actions: acts, Tags: append([]sim.Tag(nil), res.Tags...),
			Expires: now.Add(w.a.hardTimeout(res.HardTimeout)), Since: since}
		if res.IsStateful() {
			e.Held = &heldState{shard: w.shard, now: w.a.now, macs: macs,
				conns: append([]flowstate.ConnKey(nil), res.Conntrack...), nats: append([]flowstate.NATEntry(nil), res.NAT...)}
		} else {
			e.Held = macs.holder()
		}
		macs = nil
		if w.a.replyFlows {
			reply = planReply(&pkt.Match, res, t.Ports.Local, e)
		}
		if reply.ok {
			// The peer answers within microseconds, often before this
			// handling ends: both flows go in before the packet leaves
			// (the reply's below), so that the reply finds its flow in
			// the datapath instead of coming up to userspace. (If
			// another goroutine is making the table's datapath calls,
			// it makes these too, a moment later.)
			w.a.flows.Add(e)
			reply.frame, reply.acts, reply.inPort = u.frame, acts, u.inPort
			break
		}
		// The packet first, then its flow: installing it is not on the
		// packet's path (a packet of the flow arriving meanwhile misses
		// and is simulated to the same result).
		w.execute(u.frame, acts, u.inPort)
		w.a.flows.Add(e)
	case sim.UserspaceOnly:
		if len(res.Egress) == 0 {
			// Dropped by what no flow can match: this packet only.
			w.a.metrics.drops.WithLabelValues(res.Reason.String()).Inc()
		}
		state := w.encodeState(port, res)
		w.replicate(t, snap, port, res, state)
		// No flow holds the state: it idles out unless packets refresh it.
		arrived := arrivalTags(*w.view, res.Conntrack, res.NAT, res.Tags)
		w.shard.Touch(res.Conntrack, res.NAT, now)
		w.a.state.Rebind(res.NAT)
		if len(arrived) > 0 {
			w.a.flows.Invalidate(arrived)
		}
		w.a.journalState(state)
		w.executeInUserspace(t, snap, &pkt.Match, res.Egress, u)
	case sim.Drop, sim.TemporaryDrop:
		w.a.metrics.drops.WithLabelValues(res.Reason.String()).Inc()
		var tags []sim.Tag
		if res.Kind == sim.Drop {
			tags = append(tags, res.Tags...)
		}
		w.a.flows.Add(&flows.Entry{Key: u.match.FlowKey, Mask: res.Mask, Tags: tags, Expires: now.Add(w.a.hardTimeout(res.HardTimeout)),
			Since: since, Held: macs.holder()})
		macs = nil
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
	case sim.NATLeaseNeeded:
		w.waitNATLease(u, res, now) // natlease.go
	case sim.Consumed:
	}
	macs.Release()
	// Read before simulating again (the reply, each emission): they
	// reuse res.
	generated = append(generated, w.dueRefreshes(res.ARPRefresh)...)
	if reply.ok {
		w.installReply(&reply, now)
		w.execute(reply.frame, reply.acts, reply.inPort)
	}
	for _, g := range generated {
		w.emitGenerated(t, snap, g)
	}
}

// countDrops counts the egresses a translation left out.
func (w *worker) countDrops(d translate.Drops) {
	if d.Unreachable > 0 {
		w.a.metrics.drops.WithLabelValues("egress-unreachable").Add(float64(d.Unreachable))
	}
	if d.NoPeer > 0 {
		w.a.metrics.drops.WithLabelValues("no-tunnel-peer").Add(float64(d.NoPeer))
	}
}

// retryParked simulates again the packets waiting for ARP.
func (w *worker) retryParked() {
	if len(w.parked) == 0 {
		return
	}
	now := w.a.now()
	since := w.a.flows.Generation() // before the tables are read
	t := w.a.ports.Load()
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
	pkt := sim.Packet{Port: port, Match: u.match, Frame: u.frame, ARPFailed: true}
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
		out[i] = sim.Generated{Port: g.Port, Frame: bytes.Clone(g.Frame)}
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
	w.executeInUserspace(t, snap, &m, res.Egress, &upcall{frame: g.Frame})
}

// executeInUserspace sends each egress its own copy of the packet, as the
// translation prepares it (package translate: the fields a datapath cannot
// set are rewritten here), without installing a flow.
func (w *worker) executeInUserspace(t *portTables, snap *sim.Snapshot, orig *sim.Match, egress []sim.Egress, u *upcall) {
	for i := range egress {
		frame := bytes.Clone(u.frame)
		acts, drops := translate.Userspace(w.acts[:0], frame, orig, &egress[i], &t.Ports, snap)
		w.acts = acts
		w.countDrops(drops)
		w.execute(frame, acts, u.inPort)
	}
}
