package userspace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
	"github.com/midonet/midonet/internal/packet"
)

// An AF_PACKET port has one socket with two rings mapped together: the
// receive ring followed by the transmit ring (fixed-size frames we fill and
// the kernel sends on a sendto, once per batch).
//
//	mmap: | rx block 0 | ... | rx block N-1 | tx frame 0 | ... | tx frame M-1 |
//
// With TPACKET_V3 the kernel packs received frames into blocks and hands a
// block over when it is full or its 1 ms timer expires: few wake-ups under
// load, but up to that timer's latency per hop when traffic is light. With
// TPACKET_V2 each frame has its own slot and the reader wakes per frame
// when idle, batching only under load.

const (
	txFrameSize = 2048
	txFrames    = 256
	// tx3DataOff and tx2DataOff are where a frame's bytes start in a
	// transmit slot: after the aligned tpacket3_hdr or tpacket2_hdr.
	tx3DataOff = (unix.SizeofTpacket3Hdr + 15) &^ 15
	tx2DataOff = (unix.SizeofTpacket2Hdr + 15) &^ 15
	// blockStatusOff and friends locate the fields of a receive block's
	// descriptor (struct tpacket_block_desc with tpacket_hdr_v1).
	blockStatusOff   = 8
	blockNumPktsOff  = 12
	blockFirstPktOff = 16
)

var errPortClosed = errors.New("port closed")

type afpacketPort struct {
	d     *Datapath
	name  string
	index int
	mtu   atomic.Int64 // follows the interface's MTU

	version   int            // unix.TPACKET_V2 or unix.TPACKET_V3
	vnet      bool           // PACKET_VNET_HDR: frames carry a virtio_net_hdr
	rxOffload engine.Offload // the receiver's scratch
	rxFrame   int            // V2 receive slot size
	fd        int
	bigfd     int // a ringless socket for frames too big for a ring slot
	ring      []byte
	rx        []byte // the receive blocks
	blockSize int
	blocks    int
	receiver

	// rxLock guards the receive ring (V2), which the port's receiver and the
	// datapath's spinner both drain, and the fields below.
	rxLock  rxGuard
	rxCur   int    // the next slot to read
	vlanBuf []byte // scratch for putting back a VLAN tag

	ep atomic.Pointer[engine.Port] // set by start

	txMu     sync.Mutex // guards the fields below and fd use for sending
	tx       []byte     // the transmit frames
	txCur    int
	txQueued int
	closed   bool
	// gro merges a burst of TCP segments into one super-frame (vnet
	// ports only): one send instead of dozens, and one segment for the
	// receiving stack to process and acknowledge.
	gro engine.Coalescer
}

func (d *Datapath) openNetdev(spec datapath.PortSpec) (port, error) {
	h, err := d.netlinkHandle()
	if err != nil {
		return nil, fmt.Errorf("netdev port %q: netlink: %w", spec.Name, err)
	}
	defer h.Close()
	link, err := h.LinkByName(spec.Name)
	if err != nil {
		return nil, fmt.Errorf("netdev port %q: no such interface in the datapath's namespace: %w", spec.Name, err)
	}
	attrs := link.Attrs()
	if d.cfg.XDP {
		xp, err := d.openXDP(spec, link)
		if err == nil {
			return xp, nil
		}
		d.log.Info("AF_XDP unavailable, using AF_PACKET", "port_name", spec.Name, "reason", err)
	}
	p, err := d.openAFPacket(spec.Name, attrs.Index, attrs.MTU)
	if err != nil {
		return nil, err
	}
	if p.vnet {
		return afpacketOffloadPort{p}, nil
	}
	return p, nil
}

func (d *Datapath) openAFPacket(name string, index, mtu int) (*afpacketPort, error) {
	p := &afpacketPort{d: d, name: name, index: index, fd: -1, bigfd: -1, receiver: newReceiver(d),
		blockSize: d.cfg.RingBlockSize, blocks: d.cfg.RingBlocks, version: unix.TPACKET_V3}
	p.mtu.Store(int64(mtu))
	p.vnet = d.cfg.Offload
	if d.cfg.Ring != RingV3 {
		p.version = unix.TPACKET_V2
		// A slot holds the header, the largest frame the MTU allows and
		// room for the kernel's alignment.
		p.rxFrame = 2048
		for p.rxFrame < mtu+18+128 {
			p.rxFrame *= 2
		}
		if d.cfg.Offload {
			p.rxFrame = 65536 + 4096 // a whole GSO super-frame
		}
		if p.rxFrame > p.blockSize {
			p.blockSize = p.rxFrame
		}
	}
	err := d.inNS(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		p.fd = fd
		if p.bigfd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netdev port %q: %w", name, err)
	}
	if err := p.setup(); err != nil {
		p.release()
		return nil, fmt.Errorf("netdev port %q: %w", name, err)
	}
	return p, nil
}

func (p *afpacketPort) setup() error {
	fd := p.fd
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, p.version); err != nil {
		return fmt.Errorf("PACKET_VERSION %d: %w", p.version+1, err)
	}
	// Our own transmissions must not come back as receptions.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err)
	}
	if p.vnet {
		for _, s := range []int{fd, p.bigfd} {
			if err := unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
				return fmt.Errorf("PACKET_VNET_HDR: %w", err)
			}
		}
	}
	unix.SetsockoptInt(p.bigfd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1) // best effort
	// Protocol 0: the socket only sends; the kernel reads the ethertype
	// from each frame.
	if err := unix.Bind(p.bigfd, &unix.SockaddrLinklayer{Ifindex: p.index}); err != nil {
		return fmt.Errorf("bind to ifindex %d: %w", p.index, err)
	}
	// A malformed transmit frame is skipped rather than stalling the ring.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_LOSS, 1); err != nil {
		return fmt.Errorf("PACKET_LOSS: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1) // best effort
	txBlock := 1 << 16
	if p.version == unix.TPACKET_V3 {
		rxReq := unix.TpacketReq3{
			Block_size:     uint32(p.blockSize),
			Block_nr:       uint32(p.blocks),
			Frame_size:     txFrameSize,
			Frame_nr:       uint32(p.blockSize / txFrameSize * p.blocks),
			Retire_blk_tov: 1, // ms: bounds the latency a partly filled block adds
		}
		if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &rxReq); err != nil {
			return fmt.Errorf("PACKET_RX_RING: %w", err)
		}
		txReq := unix.TpacketReq3{
			Block_size: uint32(txBlock),
			Block_nr:   uint32(txFrames * txFrameSize / txBlock),
			Frame_size: txFrameSize,
			Frame_nr:   txFrames,
		}
		if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &txReq); err != nil {
			return fmt.Errorf("PACKET_TX_RING: %w", err)
		}
	} else {
		rxReq := unix.TpacketReq{
			Block_size: uint32(p.blockSize),
			Block_nr:   uint32(p.blocks),
			Frame_size: uint32(p.rxFrame),
			Frame_nr:   uint32(p.blockSize / p.rxFrame * p.blocks),
		}
		if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &rxReq); err != nil {
			return fmt.Errorf("PACKET_RX_RING: %w", err)
		}
		txReq := unix.TpacketReq{
			Block_size: uint32(txBlock),
			Block_nr:   uint32(txFrames * txFrameSize / txBlock),
			Frame_size: txFrameSize,
			Frame_nr:   txFrames,
		}
		if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &txReq); err != nil {
			return fmt.Errorf("PACKET_TX_RING: %w", err)
		}
	}
	rxLen := p.blockSize * p.blocks
	ring, err := unix.Mmap(fd, 0, rxLen+txFrames*txFrameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap rings: %w", err)
	}
	p.ring, p.rx, p.tx = ring, ring[:rxLen], ring[rxLen:]
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: p.index}); err != nil {
		return fmt.Errorf("bind to ifindex %d: %w", p.index, err)
	}
	if p.poll, err = newPoller(fd); err != nil {
		return err
	}
	return nil
}

func (p *afpacketPort) ifindex() int { return p.index }

func (p *afpacketPort) pollFd() int { return p.fd }

func (p *afpacketPort) inMemory() bool { return true }

func (p *afpacketPort) setMTU(mtu int) { p.mtu.Store(int64(mtu)) }

func (p *afpacketPort) start(ep *engine.Port) {
	p.ep.Store(ep)
	if p.version == unix.TPACKET_V2 {
		p.d.busy.add(p)
		go p.d.receiveLoop(p, &p.receiver)
		return
	}
	go p.receive(ep)
}

func (p *afpacketPort) close() {
	p.d.busy.remove(p)
	p.stopReceiving()
	p.release()
}

func (p *afpacketPort) release() {
	p.rxLock.close()
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	if p.ring != nil {
		unix.Munmap(p.ring)
		p.ring, p.rx, p.tx = nil, nil, nil
	}
	if p.poll != nil {
		p.poll.close()
	}
	if p.fd >= 0 {
		unix.Close(p.fd)
	}
	if p.bigfd >= 0 {
		unix.Close(p.bigfd)
	}
}

// handle passes one received frame, at ring[start:start+snaplen], to w.
// When status has TP_STATUS_VLAN_VALID, the kernel took out a tag with
// tci (and tpid, if TP_STATUS_VLAN_TPID_VALID) and handle puts it back.
func (p *afpacketPort) handle(w *engine.Worker, ep *engine.Port, ring []byte, start int, snaplen, length, status uint32, tci, tpid uint16, vlanBuf *[]byte) {
	end := start + int(snaplen)
	if end > len(ring) || snaplen != length {
		ep.RxPackets.Add(1)
		ep.RxDropped.Add(1) // truncated: larger than a ring slot
		return
	}
	frame := ring[start:end]
	var off *engine.Offload
	if p.vnet {
		if start >= vnetHdrLen && getVnetHdr(ring[start-vnetHdrLen:start], &p.rxOffload) {
			off = &p.rxOffload
		}
	} else if status&unix.TP_STATUS_CSUMNOTREADY != 0 {
		packet.CompleteChecksum(frame)
	}
	if status&unix.TP_STATUS_VLAN_VALID != 0 && len(frame) >= 12 {
		if status&unix.TP_STATUS_VLAN_TPID_VALID == 0 || tpid == 0 {
			tpid = 0x8100
		}
		b := append((*vlanBuf)[:0], frame[:12]...)
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, tci)
		b = append(b, frame[12:]...)
		*vlanBuf = b
		frame = b
		if off != nil {
			// The kernel's offsets count without the tag.
			if off.NeedsCsum {
				off.CsumStart += 4
			}
			if off.HdrLen != 0 {
				off.HdrLen += 4
			}
		}
	}
	w.ReceiveOffload(ep, frame, nil, off)
}

// drain implements drainer for TPACKET_V2 rings: it hands up to rxBatch
// frames whose slots the kernel released to w, as one batch.
func (p *afpacketPort) drain(w *engine.Worker, wait bool) int {
	if !p.rxLock.enter(wait) {
		return 0
	}
	defer p.rxLock.leave()
	// Slots do not straddle blocks: a block holds perBlock whole slots.
	perBlock := p.blockSize / p.rxFrame
	slots := perBlock * p.blocks
	n := 0
	for n < rxBatch {
		at := p.rxCur/perBlock*p.blockSize + p.rxCur%perBlock*p.rxFrame
		slot := p.rx[at : at+p.rxFrame]
		h := (*unix.Tpacket2Hdr)(unsafe.Pointer(&slot[0]))
		if atomic.LoadUint32(&h.Status)&unix.TP_STATUS_USER == 0 {
			break
		}
		if n == 0 {
			w.Begin()
		}
		p.handle(w, p.ep.Load(), slot, int(h.Mac), h.Snaplen, h.Len, h.Status, h.Vlan_tci, h.Vlan_tpid, &p.vlanBuf)
		atomic.StoreUint32(&h.Status, unix.TP_STATUS_KERNEL)
		p.rxCur = (p.rxCur + 1) % slots
		n++
	}
	if n > 0 {
		w.Flush()
	}
	return n
}

const rxBatch = 64

// receive is the port's receive loop for TPACKET_V3: it hands each packet
// of each block the kernel retires to a Worker, one batch per block.
func (p *afpacketPort) receive(ep *engine.Port) {
	defer close(p.done)
	p.d.pinReceiver()
	w := p.d.e.NewWorker()
	defer w.Close()
	vlanBuf := make([]byte, 0, 2048)
	cur := 0
	for {
		block := p.rx[cur*p.blockSize : (cur+1)*p.blockSize]
		status := (*uint32)(unsafe.Pointer(&block[blockStatusOff]))
		if atomic.LoadUint32(status)&unix.TP_STATUS_USER == 0 {
			if !p.poll.wait(-1) {
				return
			}
			continue
		}
		n := int(binary.NativeEndian.Uint32(block[blockNumPktsOff:]))
		off := int(binary.NativeEndian.Uint32(block[blockFirstPktOff:]))
		w.Begin()
		for range n {
			if off <= 0 || off+unix.SizeofTpacket3Hdr > len(block) {
				break
			}
			h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&block[off]))
			p.handle(w, ep, block, off+int(h.Mac), h.Snaplen, h.Len, h.Status, uint16(h.Hv1.Vlan_tci), h.Hv1.Vlan_tpid, &vlanBuf)
			if h.Next_offset == 0 {
				break
			}
			off += int(h.Next_offset)
		}
		w.Flush()
		atomic.StoreUint32(status, unix.TP_STATUS_KERNEL)
		cur = (cur + 1) % p.blocks
	}
}

var (
	errTooBig   = errors.New("frame exceeds the port's MTU")
	errRingFull = errors.New("transmit ring full")
)

// Transmit implements engine.Transmitter: it queues frame in the transmit
// ring; Flush hands the queued frames to the kernel.
func (p *afpacketPort) Transmit(frame []byte, _ *datapath.TunnelSet) error {
	return p.send(frame, nil)
}

// afpacketOffloadPort is an AF_PACKET port opened with PACKET_VNET_HDR: it
// also takes frames with a pending checksum or segmentation.
type afpacketOffloadPort struct{ *afpacketPort }

// TransmitOffload implements engine.OffloadTransmitter.
func (p afpacketOffloadPort) TransmitOffload(frame []byte, _ *datapath.TunnelSet, o *engine.Offload) error {
	return p.send(frame, o)
}

const vnetHdrLen = 10 // struct virtio_net_hdr

// putVnetHdr writes o (nil: nothing pending) as a virtio_net_hdr.
func putVnetHdr(b []byte, o *engine.Offload) {
	clear(b[:vnetHdrLen])
	if o == nil {
		return
	}
	if o.NeedsCsum {
		b[0] = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
		binary.LittleEndian.PutUint16(b[6:], o.CsumStart)
		binary.LittleEndian.PutUint16(b[8:], o.CsumOffset)
	}
	if o.IsGSO() {
		b[1] = o.GSOType
		binary.LittleEndian.PutUint16(b[2:], o.HdrLen)
		binary.LittleEndian.PutUint16(b[4:], o.GSOSize)
	}
}

// getVnetHdr reads a virtio_net_hdr; it reports false if nothing is pending.
func getVnetHdr(b []byte, o *engine.Offload) bool {
	*o = engine.Offload{
		NeedsCsum:  b[0]&1 != 0,
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
	}
	return o.NeedsCsum || o.IsGSO()
}

func (p *afpacketPort) send(frame []byte, o *engine.Offload) error {
	if !o.IsGSO() && int64(len(frame)) > p.mtu.Load()+18 { // Ethernet header and one VLAN tag
		return errTooBig
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed {
		return errPortClosed
	}
	if p.vnet {
		if p.gro.Add(frame, o) {
			return nil
		}
		if p.gro.Pending() {
			p.sendCoalescedLocked()
			if p.gro.Add(frame, o) {
				return nil
			}
		}
	}
	return p.enqueueLocked(frame, o)
}

// sendCoalescedLocked sends the frame the coalescer holds. Its segments
// were counted as sent when offered, so a failure here counts as a
// transmit drop.
func (p *afpacketPort) sendCoalescedLocked() {
	f, o := p.gro.Take()
	if ep := p.ep.Load(); p.enqueueLocked(f, o) != nil && ep != nil {
		ep.TxDropped.Add(1)
	}
}

// enqueueLocked queues frame in the transmit ring, or sends it at once on
// the ringless socket if it does not fit a ring slot.
func (p *afpacketPort) enqueueLocked(frame []byte, o *engine.Offload) error {
	hdr := 0
	if p.vnet {
		hdr = vnetHdrLen
	}
	dataOff := tx3DataOff
	if p.version == unix.TPACKET_V2 {
		dataOff = tx2DataOff
	}
	if hdr+len(frame) > txFrameSize-dataOff {
		// Jumbo and super-frames bypass the ring, on the second socket
		// (with a transmit ring, every send on fd sends the ring instead),
		// after the frames queued before them.
		if p.txQueued > 0 {
			p.flushLocked()
		}
		var vh [vnetHdrLen]byte
		if p.vnet {
			putVnetHdr(vh[:], o)
		}
		iov := [2]unix.Iovec{{Base: &vh[0]}, {Base: &frame[0]}}
		iov[0].SetLen(hdr)
		iov[1].SetLen(len(frame))
		if _, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(p.bigfd), uintptr(unsafe.Pointer(&iov[0])), 2); errno != 0 {
			return errno
		}
		return nil
	}
	slot := p.tx[p.txCur*txFrameSize : (p.txCur+1)*txFrameSize]
	var status *uint32
	var h2 *unix.Tpacket2Hdr
	var h3 *unix.Tpacket3Hdr
	if p.version == unix.TPACKET_V2 {
		h2 = (*unix.Tpacket2Hdr)(unsafe.Pointer(&slot[0]))
		status = &h2.Status
	} else {
		h3 = (*unix.Tpacket3Hdr)(unsafe.Pointer(&slot[0]))
		status = &h3.Status
	}
	if st := atomic.LoadUint32(status); st != unix.TP_STATUS_AVAILABLE && st != unix.TP_STATUS_WRONG_FORMAT {
		p.flushLocked()
		if st = atomic.LoadUint32(status); st != unix.TP_STATUS_AVAILABLE && st != unix.TP_STATUS_WRONG_FORMAT {
			return errRingFull
		}
	}
	n := uint32(hdr + len(frame))
	if h2 != nil {
		h2.Len, h2.Snaplen = n, n
	} else {
		h3.Len, h3.Snaplen, h3.Next_offset = n, n, 0
	}
	if p.vnet {
		putVnetHdr(slot[dataOff:], o)
	}
	copy(slot[dataOff+hdr:], frame)
	atomic.StoreUint32(status, unix.TP_STATUS_SEND_REQUEST)
	p.txCur = (p.txCur + 1) % txFrames
	p.txQueued++
	if p.txQueued >= txFrames/2 {
		p.flushLocked()
	}
	return nil
}

// Flush implements engine.Flusher.
func (p *afpacketPort) Flush() {
	p.txMu.Lock()
	if !p.closed && p.gro.Pending() {
		p.sendCoalescedLocked()
	}
	if !p.closed && p.txQueued > 0 {
		p.flushLocked()
	}
	p.txMu.Unlock()
}

func (p *afpacketPort) flushLocked() {
	p.txQueued = 0
	for {
		err := unix.Sendto(p.fd, nil, unix.MSG_DONTWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}
