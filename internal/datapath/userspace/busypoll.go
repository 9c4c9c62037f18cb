package userspace

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath/engine"
)

// Busy polling. A receiver that sleeps until the kernel wakes it pays a
// wake-up per packet when traffic is light, and a request and its reply pay
// one at every hop: on this kind of virtual machine about half of a hop's
// latency. After any port saw traffic, one receiver (the leader) keeps
// polling the receive queues of all the datapath's ports instead of
// sleeping, and handles what arrives on any of them, until no port has seen
// a packet for the busy-poll window; then it sleeps in poll(2) on all of
// them at once. This is an adaptive form of Open vSwitch's poll-mode
// threads: a busy datapath spins on one core, an idle one costs nothing,
// and in between the replies of a conversation find a receiver already
// running. A long window approaches a poll-mode thread, which competes for
// its core with the processes whose packets it waits for (they wait a
// scheduler slice when they land on its core); the default window is short
// for that reason.
//
// The other receivers park on a condition variable for as long as a leader
// lives, rather than in poll(2) on their own port: there the kernel would
// wake each of them for every frame of its port, only to find that the
// leader took it, and those wake-ups compete with the leader for a core.
// Worse, a reply that arrives while the leader forwards its request (the
// peer answers in the same system call) made the kernel wake the reply
// port's receiver on the way, an inter-processor interrupt on the request's
// path. Measured with the receivers on one core in poll mode, parking took
// the ping RTT through the datapath from 150-174 to 129-132 µs and TCP from
// 7.2 to 9.9-10.9 Gbit/s. A parked receiver takes the lead when the leader's
// port goes away.

// drainer is a port whose receive queue any goroutine can drain.
type drainer interface {
	// drain hands up to a batch of ready frames to w and reports how many
	// it handled. Unless wait is set it gives up at once when another
	// goroutine is draining the port.
	drain(w *engine.Worker, wait bool) int
	// pollFd is the descriptor that poll(2) reports readable when the
	// port has frames.
	pollFd() int
	// inMemory reports whether the port's receive queue is a ring in shared
	// memory, which a drain finds empty without a system call.
	inMemory() bool
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

// receiveLoop is the receive goroutine of a drainable port. Without busy
// polling it drains its port whenever poll(2) reports it readable. With
// it, the goroutine waits parked while another leads, then leads: it
// spins over all the datapath's ports while traffic lasts and sleeps on
// all of them in between. It returns when r is stopped.
func (d *Datapath) receiveLoop(p drainer, r *receiver) {
	defer close(r.done)
	d.pinReceiver()
	w := d.e.NewWorker()
	defer w.Close()
	if d.busy.window <= 0 {
		for {
			for p.drain(w, true) > 0 {
			}
			if !r.poll.wait(-1) {
				return
			}
		}
	}
	if !d.busy.lead(&r.stopping) {
		return
	}
	defer d.busy.unlead()
	for d.busy.spin(w, &r.stopping) && d.busy.watch(r.poll) {
	}
}

// busyPoller is the leader role of a datapath's drainable ports.
type busyPoller struct {
	window time.Duration // 0: off
	active atomic.Bool   // a receiver leads

	mu    sync.Mutex                // serializes changes of ports
	ports atomic.Pointer[[]drainer] // the ports the leader polls
	// changed is an eventfd written when ports change, so that the
	// leader, asleep on the old set, looks again.
	changed int

	spins    atomic.Uint64 // spins, each begun by a frame after a sleep
	found    atomic.Uint64 // frames the leader handled while spinning
	wakeups  atomic.Uint64 // times the leader's sleep ended (for tests)
	sleeping atomic.Bool   // the leader sleeps in poll(2) (for tests)

	// Receivers park here while another leads.
	parkMu sync.Mutex
	parked *sync.Cond    // on parkMu: the leader left or a receiver stops
	fds    []unix.PollFd // the leader's
}

func (b *busyPoller) init() error {
	b.parked = sync.NewCond(&b.parkMu)
	if b.window <= 0 {
		return nil
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	b.changed = fd
	return nil
}

func (b *busyPoller) close() {
	if b.window > 0 {
		unix.Close(b.changed)
	}
}

// lead waits until no receiver leads and makes the caller the leader; it
// reports false, without leading, once stopping reports true. active is
// changed under parkMu, so unlead cannot slip between the check and the
// wait.
func (b *busyPoller) lead(stopping *atomic.Bool) bool {
	b.parkMu.Lock()
	defer b.parkMu.Unlock()
	for b.active.Load() && !stopping.Load() {
		b.parked.Wait()
	}
	if stopping.Load() {
		return false
	}
	b.active.Store(true)
	return true
}

// unlead gives up the lead: a parked receiver takes it.
func (b *busyPoller) unlead() {
	b.parkMu.Lock()
	b.active.Store(false)
	b.parked.Broadcast()
	b.parkMu.Unlock()
}

// kick wakes the parked receivers, for one of them to see that it stops.
func (b *busyPoller) kick() {
	b.parkMu.Lock()
	b.parked.Broadcast()
	b.parkMu.Unlock()
}

// portsChanged makes the leader look at the ports again.
func (b *busyPoller) portsChanged() {
	if b.window > 0 {
		var one = [8]byte{1}
		unix.Write(b.changed, one[:])
	}
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
	b.portsChanged()
}

// remove stops polling p. The leader may still be draining p; the port's
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
	b.portsChanged()
}

// spin polls every port, handling frames with w, until the window passes
// without a frame; it reports false if stopping reported true first.
func (b *busyPoller) spin(w *engine.Worker, stopping *atomic.Bool) bool {
	b.spins.Add(1)
	last := time.Now()
	// The first turn drains everything: the sleep may have ended for a
	// socket.
	yielded, polled := last, last.Add(-socketEvery)
	for !stopping.Load() {
		now := time.Now()
		sockets := now.Sub(polled) >= socketEvery
		if sockets {
			polled = now
		}
		n := 0
		if ps := b.ports.Load(); ps != nil {
			for _, p := range *ps {
				if sockets || p.inMemory() {
					n += p.drain(w, false)
				}
			}
		}
		if n > 0 {
			b.found.Add(uint64(n))
			last = now
			continue
		}
		if now.Sub(last) > b.window {
			return true
		}
		// Let other goroutines have the processor now and then. Not
		// sched_yield(2): measured here, it handed the core to the very
		// threads waiting for our packets only after a scheduler slice,
		// and connection setup through the datapath fell from 2,600 to
		// 150 per second. Not at every turn either: runtime.Gosched
		// wakes a thread for an idle processor each time, and those
		// wake-ups (interrupts to the other core) landed on the path of
		// the packets the spinner waited for.
		if now.Sub(yielded) > yieldEvery {
			yielded = now
			runtime.Gosched()
		}
	}
	return false
}

// socketEvery is how often the spinner looks at ports that take a system
// call to find empty (the overlay's UDP socket): a receive on an empty
// socket costs a few microseconds here, and made most of an idle spin.
const socketEvery = 10 * time.Microsecond

// yieldEvery is how long an idle spinner keeps its processor from other
// goroutines at most.
const yieldEvery = 50 * time.Microsecond

// watch sleeps until a port is readable (true), or until own, the
// leader's poller, is stopped (false). A change of the ports ends the
// sleep too, so that the caller drains and sleeps again on the new set.
func (b *busyPoller) watch(own *poller) bool {
	ps := b.ports.Load()
	b.fds = append(b.fds[:0],
		unix.PollFd{Fd: int32(own.stopfd), Events: unix.POLLIN},
		unix.PollFd{Fd: int32(b.changed), Events: unix.POLLIN})
	if ps != nil {
		for _, p := range *ps {
			b.fds = append(b.fds, unix.PollFd{Fd: int32(p.pollFd()), Events: unix.POLLIN})
		}
	}
	b.sleeping.Store(true)
	for {
		_, err := unix.Poll(b.fds, -1)
		if err == unix.EINTR {
			continue
		}
		break
	}
	b.sleeping.Store(false)
	b.wakeups.Add(1)
	if b.fds[0].Revents != 0 {
		return false
	}
	if b.fds[1].Revents != 0 {
		var buf [8]byte
		unix.Read(b.changed, buf[:])
	}
	for _, f := range b.fds[2:] {
		if f.Revents&unix.POLLERR != 0 {
			// A packet socket reports its interface going down as a
			// pending error (ENETDOWN); reading it clears POLLERR, which
			// would otherwise wake us forever.
			unix.GetsockoptInt(int(f.Fd), unix.SOL_SOCKET, unix.SO_ERROR)
		}
	}
	return true
}
