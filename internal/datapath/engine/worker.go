package engine

import (
	"encoding/binary"
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/classifier"
	"github.com/midonet/midonet/internal/packet"
)

const (
	// headroom is kept in front of a copied frame so VLAN pushes need no
	// second copy.
	headroom = 64
	// maxFrame is the largest frame a worker handles (a GSO super-frame).
	maxFrame = 65536 + 64
)

var errBadOffload = errors.New("offload offsets outside the frame")

type counters struct {
	hits, emcHits, misses, lost atomic.Uint64
}

func (c *counters) add(o *counters) {
	c.hits.Add(o.hits.Load())
	c.emcHits.Add(o.emcHits.Load())
	c.misses.Add(o.misses.Load())
	c.lost.Add(o.lost.Load())
}

// Tunnel is the outer-header metadata of a packet received from the
// overlay, exposed in its flow key.
type Tunnel struct {
	ID       uint32
	Src, Dst [4]byte
	TOS, TTL uint8
}

// Worker processes received frames: flow key extraction, lookup, action
// execution or upcall. A Worker belongs to one goroutine (typically a
// port's receive loop). Receive does not allocate on a flow hit.
type Worker struct {
	e      *Engine
	emc    *classifier.EMC[flowState]
	c      *counters
	own    counters
	key    packet.FlowKey
	buf    []byte
	now    int64
	dirty  []Flusher
	ofl    Offload // executeOffload's working copy
	segBuf []byte  // software segmentation's scratch
	// queued records that the batch queued upcalls.
	queued bool
	up     datapath.Upcall // an upcall delivered inline
	upBuf  []byte          // its packet when a checksum had to be finished
}

// NewWorker returns a Worker registered for Stats; Close it when done.
func (e *Engine) NewWorker() *Worker {
	w := e.newWorker(e.cfg.EMCSize)
	w.c = &w.own
	e.workerMu.Lock()
	e.workers[w] = struct{}{}
	e.workerMu.Unlock()
	return w
}

func (e *Engine) newWorker(emcSize int) *Worker {
	w := &Worker{
		e:     e,
		emc:   classifier.NewEMC[flowState](emcSize),
		buf:   make([]byte, headroom+2048),
		dirty: make([]Flusher, 0, 8),
	}
	w.c = &w.own
	return w
}

// Close unregisters the worker, keeping its counts in the engine's totals.
func (w *Worker) Close() {
	e := w.e
	e.workerMu.Lock()
	if _, ok := e.workers[w]; ok {
		delete(e.workers, w)
		e.retired.add(&w.own)
	}
	e.workerMu.Unlock()
}

// Begin starts a batch: flows hit until the next Begin are stamped with the
// time of this call, which saves a clock read per packet.
func (w *Worker) Begin() { w.now = time.Now().UnixNano() }

// Flush ends a batch, flushing the batching ports transmitted to. If the
// batch queued upcalls, it yields so the dispatcher gets to deliver them
// even when receivers and dispatcher share one processor.
func (w *Worker) Flush() {
	if w.queued {
		w.queued = false
		runtime.Gosched()
	}
	for i, f := range w.dirty {
		f.Flush()
		w.dirty[i] = nil
	}
	w.dirty = w.dirty[:0]
}

// Receive handles a frame received on in. tun is non-nil for frames
// decapsulated from the overlay. The frame may be modified in place only if
// the caller owns it; Receive copies before rewriting, so the caller's
// bytes are left unchanged. Receive counts the frame on in.
func (w *Worker) Receive(in *Port, frame []byte, tun *Tunnel) {
	w.ReceiveOffload(in, frame, tun, nil)
}

// ReceiveOffload is Receive for a frame with offload work pending (off is
// nil if none): the checksum or segmentation is done by the egress port's
// kernel when it can, else the checksum is finished in software and a
// super-frame is dropped. Upcalls carry finished checksums.
func (w *Worker) ReceiveOffload(in *Port, frame []byte, tun *Tunnel, off *Offload) {
	in.RxPackets.Add(1)
	in.RxBytes.Add(uint64(len(frame)))
	if pol := in.policer.Load(); pol != nil && !pol.allow(len(frame), time.Now().UnixNano()) {
		in.RxLimited.Add(1)
		return
	}
	// ExtractFlowKey keeps the tunnel fields as set here.
	if tun != nil {
		w.key.TunID, w.key.TunSrc, w.key.TunDst, w.key.TunTOS, w.key.TunTTL = tun.ID, tun.Src, tun.Dst, tun.TOS, tun.TTL
	} else {
		w.key.TunID, w.key.TunSrc, w.key.TunDst, w.key.TunTOS, w.key.TunTTL = 0, [4]byte{}, [4]byte{}, 0, 0
	}
	if len(frame) > maxFrame || !packet.ExtractFlowKey(frame, uint32(in.No), &w.key) {
		in.RxDropped.Add(1)
		return
	}
	ent, emcHit := classifier.LookupCached(w.e.flows, w.emc, &w.key)
	if ent == nil {
		w.c.misses.Add(1)
		if w.e.deliverInline(w, in, frame, off) {
			return
		}
		if in.upq.pushOffload(datapath.UpcallMiss, 0, &w.key, frame, off) {
			w.e.kick()
			w.queued = true
		}
		return
	}
	w.c.hits.Add(1)
	if emcHit {
		w.c.emcHits.Add(1)
	}
	fs := &ent.Value
	fs.packets.Add(1)
	fs.bytes.Add(uint64(len(frame)))
	if fs.used.Load() != w.now {
		fs.used.Store(w.now)
	}
	if w.key.NwProto == 6 {
		if fl := uint32(tcpFlags(frame)); fl != 0 && fs.tcpFlags.Load()&fl != fl {
			fs.tcpFlags.Or(fl)
		}
	}
	w.executeOffload(in, frame, *fs.actions.Load(), &w.key, off)
}

// tcpFlags returns the TCP flags of an IPv4 TCP segment, or 0.
func tcpFlags(f []byte) uint16 {
	ip, l4 := packet.IPv4Headers(f)
	if ip == nil || ip.Protocol() != packet.IPProtoTCP || len(l4) < packet.TCPMinHeaderLen {
		return 0
	}
	return binary.BigEndian.Uint16(l4[12:]) & 0x0fff
}

// scratch returns the worker's copy buffer with room for headroom and an
// n-byte frame. It starts small, since most workers never see jumbo or
// super-frames, and grows once for those that do.
func (w *Worker) scratch(n int) []byte {
	if len(w.buf) < headroom+n {
		w.buf = make([]byte, headroom+max(n, 2*len(w.buf)))
	}
	return w.buf
}

// modifies reports whether actions change the packet, so that it must be
// copied first.
func modifies(actions []datapath.Action) bool {
	for i := range actions {
		switch actions[i].Kind {
		case datapath.ActSetEth, datapath.ActSetIPv4, datapath.ActSetTCP, datapath.ActSetUDP,
			datapath.ActPushVLAN, datapath.ActPopVLAN:
			return true
		}
	}
	return false
}

// execute runs actions on frame. key is frame's flow key (used for
// userspace upcalls). in may be nil.
func (w *Worker) execute(in *Port, frame []byte, actions []datapath.Action, key *packet.FlowKey) {
	w.executeOffload(in, frame, actions, key, nil)
}

func (w *Worker) executeOffload(in *Port, frame []byte, actions []datapath.Action, key *packet.FlowKey, ofl *Offload) {
	pkt := frame
	off := 0
	copied := false
	if modifies(actions) {
		off = headroom
		n := copy(w.scratch(len(frame))[off:], frame)
		pkt = w.buf[off : off+n]
		copied = true
	}
	var o *Offload
	if ofl.pending() {
		w.ofl = *ofl // ours to adjust as headers move
		o = &w.ofl
	}
	csum := func() packet.L4Checksum {
		if o != nil && o.NeedsCsum {
			return packet.L4ChecksumPartial
		}
		return packet.L4ChecksumComplete
	}
	var tun *datapath.TunnelSet
	for i := range actions {
		a := &actions[i]
		switch a.Kind {
		case datapath.ActOutput:
			if o.pending() && !copied {
				if p := w.e.Port(a.Port); p != nil {
					if _, ok := p.tx.(OffloadTransmitter); !ok {
						// Finishing the checksum writes: copy first.
						off = headroom
						n := copy(w.scratch(len(pkt))[off:], pkt)
						pkt = w.buf[off : off+n]
						copied = true
					}
				}
			}
			w.output(a.Port, pkt, tun, o)
		case datapath.ActSetEth:
			a.Eth.Apply(pkt)
		case datapath.ActSetIPv4:
			a.IPv4.Apply(pkt, csum())
		case datapath.ActSetTCP:
			a.L4.Apply(pkt, packet.IPProtoTCP, csum())
		case datapath.ActSetUDP:
			a.L4.Apply(pkt, packet.IPProtoUDP, csum())
		case datapath.ActSetTunnel:
			tun = &a.Tunnel
		case datapath.ActPushVLAN:
			if off < 4 || len(pkt) < 12 {
				w.c.lost.Add(1)
				return
			}
			n := len(pkt)
			copy(w.buf[off-4:off+8], w.buf[off:off+12])
			off -= 4
			binary.BigEndian.PutUint16(w.buf[off+12:], 0x8100)
			binary.BigEndian.PutUint16(w.buf[off+14:], a.TCI&^packet.VLANPresent)
			pkt = w.buf[off : off+n+4]
			o.shift(4)
		case datapath.ActPopVLAN:
			if len(pkt) < 18 || binary.BigEndian.Uint16(pkt[12:]) != 0x8100 {
				continue
			}
			n := len(pkt)
			copy(w.buf[off+4:off+16], w.buf[off:off+12])
			off += 4
			pkt = w.buf[off : off+n-4]
			o.shift(-4)
		case datapath.ActUserspace:
			q := &w.e.localQ
			if in != nil {
				q = &in.upq
			}
			if q.pushOffload(datapath.UpcallUserspace, a.Cookie, key, pkt, o) {
				w.e.kick()
			}
		}
	}
}

// output sends pkt to port no. With offload work pending, pkt must be the
// worker's own copy unless the port is an OffloadTransmitter.
func (w *Worker) output(no datapath.PortNo, pkt []byte, tun *datapath.TunnelSet, o *Offload) {
	p := w.e.Port(no)
	if p == nil {
		w.c.lost.Add(1)
		return
	}
	if p.Spec.Kind == datapath.PortVXLAN && tun == nil {
		p.TxDropped.Add(1)
		return
	}
	var err error
	if o.pending() {
		if ot, ok := p.tx.(OffloadTransmitter); ok {
			err = ot.TransmitOffload(pkt, tun, o)
		} else if o.IsGSO() {
			w.segment(p, pkt, tun, o)
			return
		} else if o.NeedsCsum && !finishChecksum(pkt, o) {
			err = errBadOffload
		} else {
			err = p.tx.Transmit(pkt, tun)
		}
	} else {
		err = p.tx.Transmit(pkt, tun)
	}
	if err != nil {
		p.TxDropped.Add(1)
		return
	}
	p.TxPackets.Add(1)
	p.TxBytes.Add(uint64(len(pkt)))
	w.dirtyPort(p)
}

// segment sends a GSO super-frame to a port that cannot segment, in
// software; only TCP over IPv4 is segmented, other kinds are dropped.
func (w *Worker) segment(p *Port, pkt []byte, tun *datapath.TunnelSet, o *Offload) {
	if o.GSOType&^GSOECN != GSOTCPv4 {
		p.TxDropped.Add(1)
		return
	}
	var ok bool
	w.segBuf, ok = segmentTCPv4(pkt, o, w.segBuf, func(seg []byte) {
		if err := p.tx.Transmit(seg, tun); err != nil {
			p.TxDropped.Add(1)
			return
		}
		p.TxPackets.Add(1)
		p.TxBytes.Add(uint64(len(seg)))
	})
	if !ok {
		p.TxDropped.Add(1)
		return
	}
	w.dirtyPort(p)
}

func (w *Worker) dirtyPort(p *Port) {
	if f, ok := p.tx.(Flusher); ok {
		for _, d := range w.dirty {
			if d == f {
				return
			}
		}
		w.dirty = append(w.dirty, f)
	}
}
