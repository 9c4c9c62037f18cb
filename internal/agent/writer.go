package agent

import (
	"context"
	"sync"
	"time"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// stateWriter writes what workers learn (MACs, ARP entries, port
// activity) to the NSDB from its own goroutine, so that a slow or absent
// store never blocks the packet path.
type stateWriter struct {
	a  *Agent
	ch chan func(ctx context.Context) error

	mu   sync.Mutex
	macs map[sim.MACLearning]time.Time // recently written MAC mappings

	// What this agent wrote, for ageing (ageing.go); only the writer's
	// goroutine touches them.
	ownMACs map[sim.MACLearning]topology.ID // by macKeyOf: the port last written
	ownARPs map[arpKey]time.Time            // router ARP entries: when last written
}

func newStateWriter(a *Agent) *stateWriter {
	return &stateWriter{a: a, ch: make(chan func(ctx context.Context) error, 4096),
		ownMACs: map[sim.MACLearning]topology.ID{}, ownARPs: map[arpKey]time.Time{}}
}

func (w *stateWriter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-w.ch:
			if err := f(ctx); err != nil && ctx.Err() == nil {
				w.a.log.Warn("state write failed", "err", err)
			}
		}
	}
}

// submit queues a write; when the queue is full the write is dropped and
// counted (learning happens again on the next packet).
func (w *stateWriter) submit(f func(ctx context.Context) error) {
	select {
	case w.ch <- f:
	default:
		w.a.metrics.stateWritesDropped.Inc()
	}
}

func (w *stateWriter) setActive(port topology.ID, active bool) {
	host := w.a.hostID.String()
	w.submit(func(ctx context.Context) error {
		if active {
			return w.a.session.SetState(ctx, nsdb.PortActiveKey(port.String()), []byte(host))
		}
		return w.a.session.DeleteState(ctx, nsdb.PortActiveKey(port.String()))
	})
}

func (w *stateWriter) learnMAC(l sim.MACLearning) {
	// Packets keep reporting a MAC until the snapshot has it: write each
	// mapping once.
	w.mu.Lock()
	if w.macs == nil || len(w.macs) > 1<<16 {
		w.macs = map[sim.MACLearning]time.Time{}
	}
	key := l
	if last, ok := w.macs[key]; ok && time.Since(last) < learnRewriteAfter {
		w.mu.Unlock()
		return
	}
	w.macs[key] = time.Now()
	w.mu.Unlock()
	w.submit(func(ctx context.Context) error {
		written, err := w.a.session.LearnState(ctx, nsdb.BridgeMACKey(l.Bridge.String(), l.VLAN, l.MAC), []byte(l.Port.String()))
		if written {
			w.ownMACs[macKeyOf(l)] = l.Port
		}
		return err
	})
}

// learnRewriteAfter is how long the same learned MAC mapping is not
// written again.
const learnRewriteAfter = 5 * time.Second

func (w *stateWriter) learnARP(l sim.ARPLearning, router bool) {
	w.submit(func(ctx context.Context) error {
		mac := []byte(nsdb.FormatMAC(l.MAC))
		if router {
			err := w.a.session.SetState(ctx, nsdb.RouterARPKey(l.Device.String(), l.IP), mac)
			if err == nil {
				w.ownARPs[arpKey{l.Device, l.IP.As4()}] = w.a.now()
			}
			return err
		}
		_, err := w.a.session.LearnState(ctx, nsdb.BridgeARPKey(l.Device.String(), l.IP), mac)
		return err
	})
}
