package agent

import (
	"bytes"
	"encoding/binary"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/sim"
)

// Steps 1 and 2 of the packet path: a miss comes in from the datapath and
// goes to the worker of its connection.

// workerQueue bounds each worker's queue of upcalls; beyond it misses are
// dropped and counted, and the datapath's next miss retries.
const workerQueue = 1024

// upcall is a miss for a worker.
type upcall struct {
	inPort datapath.PortNo
	// match is the packet's flow key as the datapath decoded it, with the
	// ICMP fields a key lacks (sim.MatchOf): the simulation's input.
	match sim.Match
	frame []byte
	// borrowed: frame is the datapath's, valid only while the miss is
	// handled inline; keep copies it for a miss that must wait.
	borrowed bool
	// parked since, for packets waiting for ARP.
	parkedAt, lastARP time.Time
	// traced: the trace requests a packet waiting for ARP is traced for
	// (tracing.go).
	traced []sim.ID
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

// isStateMessage reports whether an upcall is a flow-state message from a
// peer.
func isStateMessage(u *datapath.Upcall) bool {
	return u.Key.TunID == StateVNI && len(u.Packet) >= stateHeaderLen &&
		binary.BigEndian.Uint16(u.Packet[12:]) == stateEtherType
}

// dispatch is the datapath's upcall handler: it copies the miss and hands
// it to the worker of its connection.
func (a *Agent) dispatch(u *datapath.Upcall) {
	a.metrics.upcalls.Inc()
	if isStateMessage(u) {
		// Flow state from a peer is imported here, before any packet
		// queued after it is simulated: the peer sent it ahead of the
		// packet whose reply may already be on its way in.
		a.importState(u.Packet)
		return
	}
	if t := a.ports.Load(); t.services != nil {
		if h, ok := t.services[u.InPort]; ok {
			h(u) // a service's own port: not simulated
			return
		}
	}
	m := sim.MatchOf(&u.Key, u.Packet)
	// Both directions of a connection, and ICMP errors about it, meet on
	// one worker, which holds the connection's flow state.
	w := a.workers[sim.ConnectionHash(&m)%uint32(len(a.workers))]
	if u.Key.TunID == StateVNI {
		w = a.workers[0] // a pull request
	}
	// An idle worker's miss is handled right here, on the datapath's
	// goroutine, which saves waking the worker's (a large part of a first
	// packet's latency on a quiet host), and copying the frame. Calls to
	// dispatch are serialized, so with nothing pending this miss is the
	// worker's next in order.
	if w.pending.Load() == 0 && w.mu.TryLock() {
		w.handle(&upcall{inPort: u.InPort, match: m, frame: u.Packet, borrowed: true})
		w.mu.Unlock()
		return
	}
	w.pending.Add(1)
	select {
	case w.ch <- &upcall{inPort: u.InPort, match: m, frame: bytes.Clone(u.Packet)}:
	default:
		w.pending.Add(-1)
		a.metrics.upcallQueueDrops.Inc()
	}
}
