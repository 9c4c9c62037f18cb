package agent

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// Flow state (conntrack and NAT keys) around the packet path: encoded once
// per simulation for the peers and the journal, sent before the packet,
// imported from peers, held by the flows that use it, and expired.

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
	if frame == nil || t.Overlay == 0 {
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
	for _, p := range res.StatePorts {
		addPort(p) // L2 insertion: the service ports and the redirecting port
	}
	for h := range hosts {
		acts, ok := t.Tunnel(nil, h, StateVNI)
		if !ok {
			continue
		}
		if err := w.a.dp.Execute(frame, acts, 0); err != nil {
			w.a.metrics.drops.WithLabelValues("state-send").Inc()
			continue
		}
		w.a.metrics.stateSent.Inc()
	}
}

// journalState journals the message of a flow-state frame (none if nil).
func (a *Agent) journalState(frame []byte) {
	if frame != nil {
		a.journal.add(frame[stateHeaderLen:])
	}
}

// importState imports a flow-state message from a peer into the shard kept
// for imported state, on the overlay port's receive path (dispatch).
func (a *Agent) importState(frame []byte) {
	a.importMu.Lock()
	defer a.importMu.Unlock()
	m := &a.importMsg
	if err := m.UnmarshalBinary(frame[stateHeaderLen:]); err != nil {
		a.metrics.drops.WithLabelValues("bad-state-message").Inc()
		return
	}
	arrived := arrivalTags(*a.state.View(a.state.Len() - 1), m.Conntrack, m.NAT, nil)
	a.state.Shard(a.state.Len()-1).Import(m, a.now())
	a.state.Rebind(m.NAT)
	if len(arrived) > 0 {
		a.flows.Invalidate(arrived)
	}
	a.journalState(frame)
	a.pulls.arrived(m.Sender)
	a.metrics.stateReceived.Inc()
}

// heldState is the flow state a flow holds references on while it is
// installed (flows.Holder).
type heldState struct {
	shard *flowstate.Shard
	conns []flowstate.ConnKey
	nats  []flowstate.NATEntry
	now   func() time.Time
	macs  *macHold // the MAC mappings the flow learned, or nil
}

// Release drops the flow's references; keys then idle out.
func (h *heldState) Release() {
	h.shard.Release(h.conns, h.nats, h.now())
	h.macs.Release()
}

// expireLoop enforces hard timeouts and expires idle flow state, each
// expired key invalidating the flows that depend on it.
func (a *Agent) expireLoop(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := a.now()
		a.flows.Expire(now)
		var tags []sim.Tag
		for i := range a.state.Len() {
			s := a.state.Shard(i)
			s.Conntrack.Expire(now, func(k flowstate.ConnKey, _ struct{}) { tags = append(tags, sim.ConnTag(k)) })
			s.NAT.Expire(now, func(k flowstate.NATKey, _ flowstate.NATBinding) { tags = append(tags, sim.NATTag(k)) })
		}
		if len(tags) > 0 {
			a.flows.Invalidate(tags)
		}
		a.metrics.datapathStats(a.dp.Stats())
	}
}

// isRouter reports whether id is a router of the current topology.
func (a *Agent) isRouter(id topology.ID) bool {
	snap := a.snap.Load()
	return snap != nil && snap.IsRouter(id)
}

// stateTunnel returns the actions that send a flow-state frame to host,
// or false if the overlay does not reach it.
func (a *Agent) stateTunnel(host topology.ID) ([]datapath.Action, bool) {
	t := a.ports.Load()
	return t.Tunnel(nil, host, StateVNI)
}
