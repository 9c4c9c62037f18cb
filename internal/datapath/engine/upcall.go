package engine

import (
	"sync"
	"sync/atomic"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

// upcallQueue is a port's bounded ring of pending upcalls. Producers are the
// port's receivers; the single consumer is the dispatcher, which releases a
// slot only after the handler returns, so slot buffers are reused without
// copying again or allocating once they have grown to the traffic's size.
type upcallQueue struct {
	// delivering is held while one of the port's upcalls is with the
	// handler, by the dispatcher or by a receiver delivering inline: the
	// port's upcalls reach the handler one at a time, in order.
	delivering sync.Mutex
	mu         sync.Mutex
	slots      []upcallSlot // guarded by mu for the [head, tail) bookkeeping
	head, tail uint64       // guarded by mu
	closed     bool         // guarded by mu: the port is gone; pushes fail
	dropped    atomic.Uint64
	// queued is the engine's count of upcalls in all its queues, which
	// tells the dispatcher whether to look again.
	queued *atomic.Int64
}

type upcallSlot struct {
	kind   datapath.UpcallKind
	cookie uint64
	key    packet.FlowKey
	buf    []byte
}

func (q *upcallQueue) init(n int, queued *atomic.Int64) {
	q.slots, q.queued = make([]upcallSlot, n), queued
}

// close makes further pushes fail, once the port is removed.
func (q *upcallQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// discard drops what a closed queue holds, counting it. Only the
// dispatcher calls it, so no delivery is under way.
func (q *upcallQueue) discard() {
	q.mu.Lock()
	n := q.tail - q.head
	q.head = q.tail
	q.mu.Unlock()
	q.dropped.Add(n)
	q.queued.Add(-int64(n))
}

// push copies frame into a free slot. It reports false, counting a drop, if
// the queue is full.
func (q *upcallQueue) push(kind datapath.UpcallKind, cookie uint64, key *packet.FlowKey, frame []byte) bool {
	return q.pushOffload(kind, cookie, key, frame, nil)
}

// pushOffload is push for a frame with offload work pending (o, nil if
// none): the copy in the queue gets its checksum finished, so the handler
// sees a valid packet.
func (q *upcallQueue) pushOffload(kind datapath.UpcallKind, cookie uint64, key *packet.FlowKey, frame []byte, o *Offload) bool {
	q.mu.Lock()
	if q.closed || q.tail-q.head >= uint64(len(q.slots)) {
		q.mu.Unlock()
		q.dropped.Add(1)
		return false
	}
	s := &q.slots[q.tail%uint64(len(q.slots))]
	s.kind, s.cookie, s.key = kind, cookie, *key
	s.buf = appendFinished(s.buf[:0], frame, o)
	q.tail++
	q.queued.Add(1)
	q.mu.Unlock()
	return true
}

// appendFinished appends frame to dst with the checksum o left pending (o
// may be nil) finished in the copy.
func appendFinished(dst, frame []byte, o *Offload) []byte {
	dst = append(dst, frame...)
	if o != nil && o.NeedsCsum {
		oc := *o
		finishChecksum(dst[len(dst)-len(frame):], &oc)
	}
	return dst
}

// empty reports whether the queue holds no upcall.
func (q *upcallQueue) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.head == q.tail
}

// deliverOne hands the oldest upcall to h and reports whether there was one.
func (q *upcallQueue) deliverOne(e *Engine, port datapath.PortNo, h datapath.UpcallHandler, u *datapath.Upcall) bool {
	q.delivering.Lock()
	defer q.delivering.Unlock()
	q.mu.Lock()
	if q.head == q.tail {
		q.mu.Unlock()
		return false
	}
	s := &q.slots[q.head%uint64(len(q.slots))]
	q.mu.Unlock()
	e.count(h)
	if h != nil {
		*u = datapath.Upcall{Kind: s.kind, InPort: port, Packet: s.buf, Key: s.key, Cookie: s.cookie}
		h.HandleUpcall(u)
	}
	q.mu.Lock()
	q.head++
	q.queued.Add(-1)
	q.mu.Unlock()
	return true
}

// deliverInline hands a miss straight to the handler on the receiver's
// goroutine when none of the port's upcalls is queued before it: what the
// handler does for it (a peer's flow state imported from the overlay port)
// is done before the port's next packet is processed, and the hand-off to
// the dispatcher (a thread wake-up) is saved. It reports false, leaving
// the miss to the queue, when another of the port's upcalls is with the
// handler or queued, or there is no handler. No lock but the port's is
// held: other ports deliver at the same time.
func (e *Engine) deliverInline(w *Worker, in *Port, frame []byte, o *Offload) bool {
	if !e.cfg.InlineUpcalls {
		return false
	}
	b := e.upcallH.Load()
	if b == nil || !in.upq.delivering.TryLock() {
		return false
	}
	defer in.upq.delivering.Unlock()
	if !in.upq.empty() {
		return false
	}
	pkt := frame
	if o != nil && o.NeedsCsum {
		// The handler sees a valid packet, as from the queue.
		w.upBuf = appendFinished(w.upBuf[:0], frame, o)
		pkt = w.upBuf
	}
	e.upcalls.Add(1)
	w.up = datapath.Upcall{Kind: datapath.UpcallMiss, InPort: in.No, Packet: pkt, Key: w.key}
	b.h.HandleUpcall(&w.up)
	return true
}

func (e *Engine) kick() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// dispatch delivers upcalls, taking one from each port's queue in turn so a
// busy port cannot starve the others.
func (e *Engine) dispatch() {
	defer e.wg.Done()
	var u datapath.Upcall
	for {
		select {
		case <-e.done:
			return
		case <-e.wake:
		}
		e.portMu.Lock()
		gone := e.removedQs
		e.removedQs = nil
		e.portMu.Unlock()
		for _, q := range gone {
			q.discard()
		}
		for {
			var h datapath.UpcallHandler
			if b := e.upcallH.Load(); b != nil {
				h = b.h
			}
			any := false
			for _, p := range *e.ports.Load() {
				if p != nil && p.upq.deliverOne(e, p.No, h, &u) {
					any = true
				}
			}
			if e.localQ.deliverOne(e, 0, h, &u) {
				any = true
			}
			if !any {
				break
			}
			select {
			case <-e.done:
				return
			default:
			}
		}
	}
}

func (e *Engine) count(h datapath.UpcallHandler) {
	if h == nil {
		e.upcallDropped.Add(1)
	} else {
		e.upcalls.Add(1)
	}
}
