package userspace

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midonet/midonet/internal/datapath/engine"
)

// Busy polling. A receiver that sleeps until the kernel wakes it pays a
// wake-up per packet when traffic is light, and a request and its reply pay
// one at every hop: on this kind of virtual machine about half of a hop's
// latency. After any port saw traffic, one receiver (the spinner) keeps
// polling the receive queues of all the datapath's ports instead of
// sleeping, and handles what arrives on any of them, until no port has seen
// a packet for the busy-poll window; then it sleeps like the others. This is
// an adaptive form of Open vSwitch's poll-mode threads: a busy datapath
// spins on one core, an idle one costs nothing, and in between the replies
// of a conversation find a receiver already running. A long window
// approaches a poll-mode thread, which competes for its core with the
// processes whose packets it waits for (they wait a scheduler slice when
// they land on its core); the default window is short for that reason.
//
// While one receiver spins, the others park on a condition variable
// instead of sleeping in poll(2): there the kernel would wake each of them
// for every frame of its port, only to find that the spinner took it, and
// those wake-ups compete with the spinner for its core. Measured with the
// receivers on one core in poll mode, parking took the ping RTT through
// the datapath from 150-174 to 129-132 µs and TCP from 7.2 to 9.9-10.9
// Gbit/s. The spinner wakes them when it stops; each drains its port once
// more, then sleeps in poll(2).

// drainer is a port whose receive queue any goroutine can drain.
type drainer interface {
	// drain hands up to a batch of ready frames to w and reports how many
	// it handled. Unless wait is set it gives up at once when another
	// goroutine is draining the port.
	drain(w *engine.Worker, wait bool) int
}

// rxGuard serializes the draining of a port's receive side and stops it
// once the port closes its sockets.
type rxGuard struct {
	mu     sync.Mutex
	closed bool // guarded by mu
}

// enter reports whether the caller may drain: the port is open and no one
// else drains it (with wait, once the other is done). When it reports
// true, leave must follow.
func (g *rxGuard) enter(wait bool) bool {
	if wait {
		g.mu.Lock()
	} else if !g.mu.TryLock() {
		return false
	}
	if g.closed {
		g.mu.Unlock()
		return false
	}
	return true
}

func (g *rxGuard) leave() { g.mu.Unlock() }

// close waits for a drain under way and makes later ones fail.
func (g *rxGuard) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// receiveLoop is the receive goroutine of a drainable port: it drains the
// port, then spins over all the datapath's ports while traffic lasts if no
// other receiver does, then sleeps until the port is readable; it returns
// when r is stopped.
func (d *Datapath) receiveLoop(p drainer, r *receiver) {
	defer close(r.done)
	d.pinReceiver()
	w := d.e.NewWorker()
	defer w.Close()
	for {
		for p.drain(w, true) > 0 {
		}
		if !d.busy.spin(w, &r.stopping) {
			d.busy.park(&r.stopping)
			if p.drain(w, true) > 0 {
				continue // frames the spinner left when it stopped
			}
		}
		if !r.poll.wait(-1) {
			return
		}
	}
}

// busyPoller is the spinner role of a datapath.
type busyPoller struct {
	window time.Duration // 0: off
	active atomic.Bool   // a receiver is spinning

	mu    sync.Mutex                // serializes changes of ports
	ports atomic.Pointer[[]drainer] // the ports the spinner polls

	spins atomic.Uint64 // times a receiver became the spinner
	found atomic.Uint64 // frames the spinner handled

	// Receivers park here, not in poll(2), while another spins: the
	// spinner handles their frames, and the kernel would otherwise wake
	// each of them for every frame, for nothing.
	parkMu sync.Mutex
	parked *sync.Cond // on parkMu: a spin ended or a receiver stops
}

// park waits while another receiver spins, or until stopping. active is
// read under parkMu and the spinner clears it before kick takes parkMu, so
// the end of a spin cannot slip between the check and the wait.
func (b *busyPoller) park(stopping *atomic.Bool) {
	if b.window <= 0 {
		return
	}
	b.parkMu.Lock()
	for b.active.Load() && !stopping.Load() {
		b.parked.Wait()
	}
	b.parkMu.Unlock()
}

// kick wakes the parked receivers: a spin ended, or one of them stops.
func (b *busyPoller) kick() {
	b.parkMu.Lock()
	b.parked.Broadcast()
	b.parkMu.Unlock()
}

func (b *busyPoller) add(p drainer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ps []drainer
	if old := b.ports.Load(); old != nil {
		ps = append(ps, *old...)
	}
	ps = append(ps, p)
	b.ports.Store(&ps)
}

// remove stops polling p. The spinner may still be draining p; the port's
// rxGuard makes it see the port closed.
func (b *busyPoller) remove(p drainer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.ports.Load()
	if old == nil {
		return
	}
	ps := make([]drainer, 0, len(*old))
	for _, q := range *old {
		if q != p {
			ps = append(ps, q)
		}
	}
	b.ports.Store(&ps)
}

// spin makes the caller the spinner unless busy polling is off or another
// receiver spins already: it polls every port, handling frames with w,
// until the window passes without a frame or stopping reports true. It
// reports whether the caller spun.
func (b *busyPoller) spin(w *engine.Worker, stopping *atomic.Bool) bool {
	if b.window <= 0 || !b.active.CompareAndSwap(false, true) {
		return false
	}
	defer func() {
		b.active.Store(false)
		b.kick()
	}()
	b.spins.Add(1)
	last := time.Now()
	for !stopping.Load() {
		n := 0
		if ps := b.ports.Load(); ps != nil {
			for _, p := range *ps {
				n += p.drain(w, false)
			}
		}
		if n > 0 {
			b.found.Add(uint64(n))
			last = time.Now()
			continue
		}
		if time.Since(last) > b.window {
			break
		}
		// Let other goroutines have the processor. Not sched_yield(2):
		// measured here, it handed the core to the very threads waiting
		// for our packets only after a scheduler slice, and connection
		// setup through the datapath fell from 2,600 to 150 per second.
		runtime.Gosched()
	}
	return true
}
