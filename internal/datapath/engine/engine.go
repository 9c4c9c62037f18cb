// Package engine is the in-process datapath shared by the mem and userspace
// backends: the flow table with per-flow counters (a classifier with
// per-worker exact-match caches), action execution on frames, and upcalls:
// delivered by the receiver itself when it can (InlineUpcalls), else kept
// in bounded per-port queues drained fairly by one dispatcher goroutine,
// each port's one at a time and in order, different ports' concurrently.
// A backend supplies port I/O: it hands received frames to a Worker and
// implements Transmitter for output.
package engine

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/classifier"
	"github.com/midonet/midonet/internal/packet"
)

// Transmitter sends frames out of a port. frame is valid only during the
// call. tun is the tunnel metadata set by a set-tunnel action, nil if none;
// only the VXLAN port uses it.
type Transmitter interface {
	Transmit(frame []byte, tun *datapath.TunnelSet) error
}

// Flusher is implemented by Transmitters that batch: a Worker calls Flush
// at the end of each batch on the ports it transmitted to.
type Flusher interface {
	Flush()
}

// Defaults for Config.
const (
	DefaultUpcallQueueLen = 256
	DefaultEMCSize        = classifier.DefaultEMCSize
)

// Config configures an Engine.
type Config struct {
	// UpcallQueueLen bounds each port's queue of pending upcalls; excess
	// misses are dropped and counted on the port. 0: DefaultUpcallQueueLen.
	UpcallQueueLen int
	// EMCSize is the number of exact-match cache slots per worker.
	// 0: DefaultEMCSize.
	EMCSize int
	// InlineUpcalls lets a receiver hand a miss to the upcall handler
	// itself when none of its port's upcalls is queued or with the handler,
	// instead of waking the dispatcher: what the handler does happens
	// before the port's next packet, and a wake-up is saved. The handler
	// must return quickly (datapath.UpcallHandler), since the receiver
	// forwards nothing while it runs.
	InlineUpcalls bool
	Logger        *slog.Logger // nil: discard
}

// Port is a port of an Engine.
type Port struct {
	No   datapath.PortNo
	Spec datapath.PortSpec
	tx   Transmitter

	RxPackets, RxBytes atomic.Uint64
	TxPackets, TxBytes atomic.Uint64
	RxDropped          atomic.Uint64
	TxDropped          atomic.Uint64
	RxLimited          atomic.Uint64

	// policer, when set, limits the rate of what the port receives.
	policer atomic.Pointer[policer]

	upq     upcallQueue
	removed atomic.Bool
}

// Stats returns the port's counters.
func (p *Port) Stats() datapath.PortStats {
	return datapath.PortStats{
		RxPackets: p.RxPackets.Load(), RxBytes: p.RxBytes.Load(),
		TxPackets: p.TxPackets.Load(), TxBytes: p.TxBytes.Load(),
		RxDropped: p.RxDropped.Load(), TxDropped: p.TxDropped.Load(),
		UpcallDropped: p.upq.dropped.Load(), RxLimited: p.RxLimited.Load(),
	}
}

// Removed reports whether the port has been removed.
func (p *Port) Removed() bool { return p.removed.Load() }

// flowState is the value of a classifier entry.
type flowState struct {
	actions  atomic.Pointer[[]datapath.Action]
	packets  atomic.Uint64
	bytes    atomic.Uint64
	used     atomic.Int64 // unix nanoseconds, 0 if never
	tcpFlags atomic.Uint32
}

type upcallBox struct{ h datapath.UpcallHandler }
type portEventBox struct{ h datapath.PortEventHandler }

// Engine is an in-process datapath core.
type Engine struct {
	cfg Config
	log *slog.Logger

	flows *classifier.Table[flowState]

	portMu sync.Mutex              // serializes port changes
	ports  atomic.Pointer[[]*Port] // indexed by PortNo; nil holes
	// removedQs are the queues of removed ports, for the dispatcher to
	// empty; guarded by portMu.
	removedQs []*upcallQueue
	queued    atomic.Int64 // upcalls in all queues
	localQ    upcallQueue  // userspace actions of packets executed with no in-port

	upcallH atomic.Pointer[upcallBox]
	eventH  atomic.Pointer[portEventBox]

	workerMu sync.Mutex
	workers  map[*Worker]struct{} // guarded by workerMu
	retired  counters             // guarded by workerMu: counts of closed workers

	execCounters counters // shared by the pooled Execute workers

	upcalls       atomic.Uint64
	upcallDropped atomic.Uint64 // no handler, or removed port

	execPool sync.Pool // *Worker; pooled because Execute is called from many goroutines and a Worker's scratch is large

	wake      chan struct{}
	done      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New starts an engine and its upcall dispatcher. Close stops it.
func New(cfg Config) *Engine {
	if cfg.UpcallQueueLen <= 0 {
		cfg.UpcallQueueLen = DefaultUpcallQueueLen
	}
	if cfg.EMCSize <= 0 {
		cfg.EMCSize = DefaultEMCSize
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		cfg:     cfg,
		log:     log,
		flows:   classifier.New[flowState](),
		workers: make(map[*Worker]struct{}),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	e.localQ.init(cfg.UpcallQueueLen, &e.queued)
	empty := []*Port{nil}
	e.ports.Store(&empty)
	e.execPool.New = func() any {
		w := e.newWorker(64)
		w.c = &e.execCounters
		return w
	}
	e.wg.Add(1)
	go e.dispatch()
	return e
}

// Close stops the dispatcher. Pending upcalls are discarded.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		close(e.done)
		e.wg.Wait()
	})
}

// SetUpcallHandler installs h; nil drops upcalls (counted).
func (e *Engine) SetUpcallHandler(h datapath.UpcallHandler) {
	if h == nil {
		e.upcallH.Store(nil)
		return
	}
	e.upcallH.Store(&upcallBox{h})
}

// SetPortEventHandler installs h; nil discards events.
func (e *Engine) SetPortEventHandler(h datapath.PortEventHandler) {
	if h == nil {
		e.eventH.Store(nil)
		return
	}
	e.eventH.Store(&portEventBox{h})
}

// PortEvent delivers ev to the port event handler, if any.
func (e *Engine) PortEvent(ev datapath.PortEvent) {
	if b := e.eventH.Load(); b != nil {
		b.h.HandlePortEvent(ev)
	}
}

// AddPort registers a port with the lowest free number.
func (e *Engine) AddPort(spec datapath.PortSpec, tx Transmitter) (*Port, error) {
	e.portMu.Lock()
	defer e.portMu.Unlock()
	old := *e.ports.Load()
	free := 0
	for i := 1; i < len(old); i++ {
		p := old[i]
		if p == nil {
			if free == 0 {
				free = i
			}
			continue
		}
		if p.Spec.Kind == datapath.PortVXLAN && spec.Kind == datapath.PortVXLAN {
			return nil, fmt.Errorf("vxlan port %q: the datapath already has vxlan port %d: %w", spec.Name, p.No, datapath.ErrPortExists)
		}
		if spec.Name != "" && p.Spec.Name == spec.Name {
			return nil, fmt.Errorf("port %q is already port %d: %w", spec.Name, p.No, datapath.ErrPortExists)
		}
	}
	ports := make([]*Port, len(old), len(old)+1)
	copy(ports, old)
	if free == 0 {
		free = len(ports)
		ports = append(ports, nil)
	}
	p := &Port{No: datapath.PortNo(free), Spec: spec, tx: tx}
	p.upq.init(e.cfg.UpcallQueueLen, &e.queued)
	ports[free] = p
	e.ports.Store(&ports)
	e.log.Info("port added", "port_no", p.No, "port_name", spec.Name, "port_kind", spec.Kind)
	return p, nil
}

// RemovePort unregisters port no and returns it.
func (e *Engine) RemovePort(no datapath.PortNo) (*Port, error) {
	e.portMu.Lock()
	defer e.portMu.Unlock()
	old := *e.ports.Load()
	if int(no) <= 0 || int(no) >= len(old) || old[no] == nil {
		return nil, fmt.Errorf("port %d: %w", no, datapath.ErrPortNotFound)
	}
	p := old[no]
	ports := make([]*Port, len(old))
	copy(ports, old)
	ports[no] = nil
	for len(ports) > 1 && ports[len(ports)-1] == nil {
		ports = ports[:len(ports)-1]
	}
	p.removed.Store(true)
	e.ports.Store(&ports)
	p.upq.close()
	e.removedQs = append(e.removedQs, &p.upq)
	e.kick()
	e.log.Info("port removed", "port_no", p.No, "port_name", p.Spec.Name)
	return p, nil
}

// Port returns port no, or nil.
func (e *Engine) Port(no datapath.PortNo) *Port {
	ports := *e.ports.Load()
	if int(no) >= len(ports) {
		return nil
	}
	return ports[no]
}

// PortByName returns the port named name, or nil.
func (e *Engine) PortByName(name string) *Port {
	for _, p := range *e.ports.Load() {
		if p != nil && p.Spec.Name == name {
			return p
		}
	}
	return nil
}

// Ports lists the ports with their counters.
func (e *Engine) Ports() []datapath.Port {
	var out []datapath.Port
	for _, p := range *e.ports.Load() {
		if p != nil {
			out = append(out, datapath.Port{No: p.No, Spec: p.Spec, Stats: p.Stats()})
		}
	}
	return out
}

// PutFlow implements datapath.FlowTable.
func (e *Engine) PutFlow(key, mask *packet.FlowKey, actions []datapath.Action, flags datapath.FlowFlags) error {
	if err := datapath.ValidateActions(actions); err != nil {
		return err
	}
	acts := append([]datapath.Action(nil), actions...)
	if flags&(datapath.FlowCreate|datapath.FlowModify) == 0 {
		flags |= datapath.FlowCreate | datapath.FlowModify
	}
	for {
		if flags&datapath.FlowModify != 0 {
			if ent := e.flows.Get(key, mask); ent != nil {
				ent.Value.actions.Store(&acts)
				if flags&datapath.FlowResetStats != 0 {
					ent.Value.packets.Store(0)
					ent.Value.bytes.Store(0)
					ent.Value.used.Store(0)
					ent.Value.tcpFlags.Store(0)
				}
				return nil
			}
			if flags&datapath.FlowCreate == 0 {
				return datapath.ErrFlowNotFound
			}
		}
		_, err := e.flows.Insert(key, mask, func(fs *flowState) { fs.actions.Store(&acts) })
		if err == nil {
			return nil
		}
		if flags&datapath.FlowModify == 0 {
			return datapath.ErrFlowExists
		}
		// Lost a race with another create; modify what it installed.
	}
}

// DeleteFlow implements datapath.FlowTable.
func (e *Engine) DeleteFlow(key, mask *packet.FlowKey) (datapath.FlowStats, error) {
	ent := e.flows.Delete(key, mask)
	if ent == nil {
		return datapath.FlowStats{}, datapath.ErrFlowNotFound
	}
	return flowStats(&ent.Value), nil
}

// FlushFlows deletes every flow.
func (e *Engine) FlushFlows() { e.flows.Clear() }

func flowStats(fs *flowState) datapath.FlowStats {
	st := datapath.FlowStats{
		Packets:  fs.packets.Load(),
		Bytes:    fs.bytes.Load(),
		TCPFlags: uint16(fs.tcpFlags.Load()),
	}
	if u := fs.used.Load(); u != 0 {
		st.LastUsed = time.Unix(0, u)
	}
	return st
}

// DumpFlows implements datapath.FlowTable.
func (e *Engine) DumpFlows(fn func(f *datapath.Flow) bool) error {
	var f datapath.Flow
	for _, ent := range e.flows.Entries() {
		if !ent.Alive() {
			continue
		}
		f = datapath.Flow{Key: ent.Key, Mask: ent.Mask, Actions: *ent.Value.actions.Load(), Stats: flowStats(&ent.Value)}
		if !fn(&f) {
			break
		}
	}
	return nil
}

// Stats returns datapath-wide counters.
func (e *Engine) Stats() datapath.Stats {
	e.workerMu.Lock()
	var c counters
	c.add(&e.retired)
	c.add(&e.execCounters)
	for w := range e.workers {
		c.add(&w.own)
	}
	e.workerMu.Unlock()
	st := datapath.Stats{
		Hits:          c.hits.Load(),
		EMCHits:       c.emcHits.Load(),
		Misses:        c.misses.Load(),
		Lost:          c.lost.Load(),
		Upcalls:       e.upcalls.Load(),
		UpcallDropped: e.upcallDropped.Load() + e.localQ.dropped.Load(),
		Flows:         e.flows.Len(),
		Masks:         e.flows.Masks(),
	}
	for _, p := range *e.ports.Load() {
		if p != nil {
			st.UpcallDropped += p.upq.dropped.Load()
		}
	}
	return st
}

// Execute implements datapath.Executor.
func (e *Engine) Execute(frame []byte, actions []datapath.Action, inPort datapath.PortNo) error {
	if err := datapath.ValidateActions(actions); err != nil {
		return err
	}
	var in *Port
	if inPort != 0 {
		if in = e.Port(inPort); in == nil {
			return fmt.Errorf("execute with in-port %d: %w", inPort, datapath.ErrPortNotFound)
		}
	}
	if len(frame) > maxFrame {
		return fmt.Errorf("execute: %d-byte frame exceeds %d: %w", len(frame), maxFrame, datapath.ErrBadPacket)
	}
	w := e.execPool.Get().(*Worker)
	defer e.execPool.Put(w)
	w.Begin()
	var key packet.FlowKey
	if !packet.ExtractFlowKey(frame, uint32(inPort), &key) {
		return fmt.Errorf("execute: %d-byte frame: %w", len(frame), datapath.ErrBadPacket)
	}
	w.execute(in, frame, actions, &key)
	w.Flush()
	return nil
}
