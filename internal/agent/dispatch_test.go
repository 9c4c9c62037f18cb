package agent

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/nsdb/memstore"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/topology"
)

// stateKey is the conntrack key the model's flow-state message k carries.
func stateKey(k int) flowstate.ConnKey {
	return flowstate.ConnKey{Src: netip.AddrFrom4([4]byte{10, 1, byte(k >> 8), byte(k)}), Dst: netip.MustParseAddr("10.2.0.1"),
		SrcPort: 1000, DstPort: 80, Proto: packet.IPProtoTCP}
}

// TestDispatchKeepsOrder is a model test of steps 1 and 2 of the packet
// path: several ports deliver upcalls at once, each port's in order, as
// datapaths do (datapath.UpcallHandler), to workers that are sometimes
// busy, so that misses are handled both inline and from the workers'
// queues. It checks the two orders the design keeps:
//
//   - per connection within a worker: every miss of a connection is
//     handled by one worker, in the order its port delivered them;
//   - state before the packet it precedes: a miss delivered after a peer's
//     flow-state message was delivered (on the overlay port) finds the
//     state when it is handled, on whichever worker.
func TestDispatchKeepsOrder(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	const (
		vmPorts     = 4
		connsByPort = 16
		misses      = 3000 // per VM port
		messages    = 400
	)
	a, err := New(Config{HostName: "model", StateDir: t.TempDir(), Store: memstore.New(), Datapath: untouchable{}, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	a.hostID = topology.NewID()
	a.journal = newStateJournal(a.cfg.StateDir, slog.New(slog.NewTextHandler(io.Discard, nil)), a.metrics)
	defer a.journal.close()

	type seen struct {
		worker int
		seqs   []uint32
	}
	var (
		mu         sync.Mutex
		byConn     = map[uint16]*seen{}
		movedConns int // connections handled by more than one worker
		stateLost  int // misses that did not find the state sent before them
		handled    atomic.Int64
	)
	a.handle = func(w *worker, u *upcall) {
		conn, seq, after := u.match.TpSrc, binary.BigEndian.Uint32(u.frame), int32(binary.BigEndian.Uint32(u.frame[4:]))
		found := after < 0 || w.view.HasConn(stateKey(int(after)))
		// Some work, different for each miss, so that queues form.
		spin := time.Duration(seq%7) * time.Microsecond
		for start := time.Now(); time.Since(start) < spin; {
		}
		mu.Lock()
		s := byConn[conn]
		if s == nil {
			s = &seen{worker: w.id}
			byConn[conn] = s
		}
		if s.worker != w.id {
			movedConns++
		}
		s.seqs = append(s.seqs, seq)
		if !found {
			stateLost++
		}
		mu.Unlock()
		handled.Add(1)
	}
	a.workers = make([]*worker, a.cfg.Workers)
	for i := range a.workers {
		a.workers[i] = newWorker(a, i)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel() // before wg.Wait
	for _, w := range a.workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx) }()
	}

	// The overlay port: flow-state messages, each published once its
	// delivery returned.
	var published atomic.Int32 // messages delivered so far
	// The ports keep fewer misses outstanding than the workers' queues
	// hold, as a datapath's bounded upcall queues would: none is dropped.
	var dispatched atomic.Int64
	var ports sync.WaitGroup
	ports.Add(1)
	go func() {
		defer ports.Done()
		for k := range messages {
			frame, err := appendStateFrame(nil, &flowstate.Message{Sender: topology.NewID(), Conntrack: []flowstate.ConnKey{stateKey(k)}})
			if err != nil {
				t.Error(err)
				return
			}
			a.dispatch(&datapath.Upcall{Kind: datapath.UpcallMiss, InPort: 9, Packet: frame, Key: packet.FlowKey{InPort: 9, TunID: StateVNI}})
			published.Store(int32(k + 1))
		}
	}()
	// The VM ports: misses of their connections, in turn and at random,
	// some of them after a state message (the newest delivered).
	for p := range vmPorts {
		ports.Add(1)
		go func() {
			defer ports.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(p)))
			next := make([]uint32, connsByPort)
			for range misses {
				c := rng.IntN(connsByPort)
				conn := uint16(p*connsByPort + c)
				after := int32(-1)
				if rng.IntN(4) == 0 {
					after = published.Load() - 1
				}
				frame := make([]byte, 8)
				binary.BigEndian.PutUint32(frame, next[c])
				binary.BigEndian.PutUint32(frame[4:], uint32(after))
				next[c]++
				for dispatched.Load()-handled.Load() >= workerQueue/2 {
					runtime.Gosched()
				}
				dispatched.Add(1)
				key := packet.FlowKey{InPort: uint32(p + 1), EthType: packet.EtherTypeIPv4, NwProto: packet.IPProtoUDP,
					NwSrc: [4]byte{10, 0, 0, byte(p)}, NwDst: [4]byte{10, 0, 1, 1}, TpSrc: conn, TpDst: 53}
				a.dispatch(&datapath.Upcall{Kind: datapath.UpcallMiss, InPort: datapath.PortNo(p + 1), Packet: frame, Key: key})
				// Pace the port now and then, so that some misses meet a
				// quiet host and are handled inline.
				if rng.IntN(64) == 0 {
					for start := time.Now(); time.Since(start) < 2*quietGap; {
					}
				}
			}
		}()
	}
	ports.Wait()
	if !poll.Until(func() bool { return handled.Load() == vmPorts*misses }, 10*time.Second) {
		t.Fatalf("%d of %d misses handled (queue drops %v)", handled.Load(), vmPorts*misses, counterValue(a.metrics.upcallQueueDrops))
	}
	mu.Lock()
	defer mu.Unlock()
	for conn, s := range byConn {
		for i, seq := range s.seqs {
			if seq != uint32(i) {
				t.Fatalf("connection %d: handled %v, want its misses in the order delivered", conn, s.seqs)
			}
		}
	}
	if movedConns != 0 {
		t.Errorf("%d misses handled away from their connection's worker", movedConns)
	}
	if stateLost != 0 {
		t.Errorf("%d misses did not find the flow state delivered before them", stateLost)
	}
	inline := counterValue(a.metrics.upcallsInline)
	t.Logf("%d misses, %v handled inline, the rest from the workers' queues", vmPorts*misses, inline)
	if inline == 0 || inline == vmPorts*misses {
		t.Errorf("%v of %d misses inline: the model must exercise both ways", inline, vmPorts*misses)
	}
}
