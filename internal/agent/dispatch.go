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
//
// The datapath calls dispatch for each port's upcalls one at a time and in
// order, and for different ports at once (datapath.UpcallHandler), often
// on the goroutine that received the packet; dispatch returns quickly and
// holds no lock across workers, so simulations run on every worker at
// once. What it keeps in order:
//
//   - A peer's flow-state message is imported here, on the overlay port's
//     receive path, before the port's next packet is processed: the
//     packets the peer sent after it, and the replies they cause, find
//     the state.
//   - A connection's misses go to one worker (by connection hash, both
//     directions and ICMP errors alike), whose queue is first in, first
//     out; a miss is handled inline only when that worker has nothing
//     queued, so it never overtakes one of its connection's.

// workerQueue bounds each worker's queue of upcalls; beyond it misses are
// dropped and counted, and the datapath's next miss retries.
const workerQueue = 1024

// quietGap is how long after the previous miss a miss counts as one on a
// quiet host: it is then handled inline, on the delivering goroutine, if
// its worker is idle, which saves waking the worker's goroutine (a large
// part of a first packet's latency). Closer misses go to the workers'
// goroutines, so that a busy port's receiver is not the only core that
// simulates.
const quietGap = 50 * time.Microsecond

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

// dispatch is the datapath's upcall handler: it imports a peer's flow
// state, or hands a miss to the worker of its connection.
func (a *Agent) dispatch(u *datapath.Upcall) {
	a.metrics.upcalls.Inc()
	if isStateMessage(u) {
		// The peer sent it ahead of the packet whose reply may be the
		// next miss here.
		a.importState(u.Packet)
		return
	}
	if t := a.ports.Load(); t.services != nil {
		if h, ok := t.services[u.InPort]; ok {
			h(u) // a service's own port: not simulated
			return
		}
	}
	if len(a.services.takers) > 0 && a.services.take(u) {
		a.metrics.upcallsTaken.Inc()
		return
	}
	m := sim.MatchOf(&u.Key, u.Packet)
	// Both directions of a connection, and ICMP errors about it, meet on
	// one worker, which holds the connection's flow state.
	w := a.workers[sim.ConnectionHash(&m)%uint32(len(a.workers))]
	if u.Key.TunID == StateVNI {
		w = a.workers[0] // a pull request
	}
	// On a quiet host, an idle worker's miss is handled right here, holding
	// only that worker, without copying the frame. With nothing pending
	// this miss is the worker's next in order.
	now := int64(time.Since(a.epoch))
	quiet := now-a.lastMiss.Swap(now) >= int64(quietGap)
	if quiet && w.pending.Load() == 0 && w.mu.TryLock() {
		a.handle(w, &upcall{inPort: u.InPort, match: m, frame: u.Packet, borrowed: true})
		w.mu.Unlock()
		a.metrics.upcallsInline.Inc()
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
