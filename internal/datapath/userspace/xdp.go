package userspace

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
)

// An AF_XDP port: an XDP program on the interface redirects every frame of
// receive queue 0 into an XSK socket, whose UMEM (shared packet memory) is
// split between receive frames (handed to the kernel in the fill ring) and
// transmit frames (returned in the completion ring):
//
//	UMEM: | rx frame 0 | ... | rx frame N-1 | tx frame 0 | ... | tx frame N-1 |
//
// Only queue 0 is served: the program passes frames of other queues to the
// kernel's stack (bpf_redirect_map's fallback action), so this suits veths
// and single-queue devices. Frames larger than a chunk less the kernel's
// headroom cannot use it; such interfaces (MTU above 1500) get AF_PACKET.
// XDP carries no checksum-offload metadata, so the peer must not leave
// checksums to offload (ethtool -K dev tx off), as with Open vSwitch's
// afxdp ports.

const (
	xskFrameSize = 2048
	xskFrames    = 1024 // per direction
	xskRingSize  = 1024
)

var errNoXDP = errors.New("AF_XDP unavailable")

// xskRing is one of the four single-producer single-consumer rings shared
// with the kernel.
type xskRing struct {
	mem      []byte
	producer *uint32
	consumer *uint32
	flags    *uint32
	descs    unsafe.Pointer
	mask     uint32
}

func mapRing(fd int, off unix.XDPRingOffset, pgoff int64, n int, descSize uintptr) (xskRing, error) {
	mem, err := unix.Mmap(fd, pgoff, int(off.Desc)+n*int(descSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return xskRing{}, err
	}
	return xskRing{
		mem:      mem,
		producer: (*uint32)(unsafe.Pointer(&mem[off.Producer])),
		consumer: (*uint32)(unsafe.Pointer(&mem[off.Consumer])),
		flags:    (*uint32)(unsafe.Pointer(&mem[off.Flags])),
		descs:    unsafe.Pointer(&mem[off.Desc]),
		mask:     uint32(n - 1),
	}, nil
}

func (r *xskRing) addr(i uint32) *uint64 {
	return (*uint64)(unsafe.Add(r.descs, uintptr(i&r.mask)*8))
}

func (r *xskRing) desc(i uint32) *unix.XDPDesc {
	return (*unix.XDPDesc)(unsafe.Add(r.descs, uintptr(i&r.mask)*unsafe.Sizeof(unix.XDPDesc{})))
}

type xdpPort struct {
	d     *Datapath
	name  string
	index int
	mtu   atomic.Int64

	fd, mapFD, progFD int
	attached          netlink.Link // the interface the program is attached to
	umem              []byte
	rx, fill          xskRing
	receiver

	txMu     sync.Mutex // guards the fields below and fd use for sending
	tx, comp xskRing
	txFree   []uint64 // free transmit frames
	txProd   uint32   // local producer index, published by Flush
	closed   bool
}

// openXDP attaches an AF_XDP port to the interface, or fails with errNoXDP
// wrapped in the reason.
func (d *Datapath) openXDP(spec datapath.PortSpec, link netlink.Link) (*xdpPort, error) {
	attrs := link.Attrs()
	if attrs.MTU+18 > xskFrameSize-unix.XDP_PACKET_HEADROOM {
		return nil, fmt.Errorf("MTU %d exceeds an XDP chunk: %w", attrs.MTU, errNoXDP)
	}
	p := &xdpPort{d: d, name: spec.Name, index: attrs.Index, fd: -1, mapFD: -1, progFD: -1, receiver: newReceiver(d)}
	p.mtu.Store(int64(attrs.MTU))
	if err := p.setup(link); err != nil {
		p.release()
		return nil, fmt.Errorf("%w: %w", errNoXDP, err)
	}
	return p, nil
}

func (p *xdpPort) setup(link netlink.Link) error {
	var err error
	if p.mapFD, err = bpfMapCreateXSK(1); err != nil {
		return fmt.Errorf("create XSKMAP: %w", err)
	}
	if p.progFD, err = bpfLoadXSKRedirect(p.mapFD); err != nil {
		return fmt.Errorf("load XDP program: %w", err)
	}
	if err := p.d.inNS(func() error {
		fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		p.fd = fd
		return err
	}); err != nil {
		return fmt.Errorf("AF_XDP socket: %w", err)
	}
	if p.umem, err = unix.Mmap(-1, 0, 2*xskFrames*xskFrameSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return fmt.Errorf("UMEM: %w", err)
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&p.umem[0]))), Len: uint64(len(p.umem)), Size: xskFrameSize}
	if err := setsockoptPtr(p.fd, unix.SOL_XDP, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return fmt.Errorf("XDP_UMEM_REG: %w", err)
	}
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING, unix.XDP_TX_RING} {
		if err := unix.SetsockoptInt(p.fd, unix.SOL_XDP, opt, xskRingSize); err != nil {
			return fmt.Errorf("ring size (%d): %w", opt, err)
		}
	}
	var off unix.XDPMmapOffsets
	if err := getsockoptPtr(p.fd, unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return fmt.Errorf("XDP_MMAP_OFFSETS: %w", err)
	}
	descSize := unsafe.Sizeof(unix.XDPDesc{})
	if p.rx, err = mapRing(p.fd, off.Rx, unix.XDP_PGOFF_RX_RING, xskRingSize, descSize); err != nil {
		return fmt.Errorf("map rx ring: %w", err)
	}
	if p.tx, err = mapRing(p.fd, off.Tx, unix.XDP_PGOFF_TX_RING, xskRingSize, descSize); err != nil {
		return fmt.Errorf("map tx ring: %w", err)
	}
	if p.fill, err = mapRing(p.fd, off.Fr, unix.XDP_UMEM_PGOFF_FILL_RING, xskRingSize, 8); err != nil {
		return fmt.Errorf("map fill ring: %w", err)
	}
	if p.comp, err = mapRing(p.fd, off.Cr, unix.XDP_UMEM_PGOFF_COMPLETION_RING, xskRingSize, 8); err != nil {
		return fmt.Errorf("map completion ring: %w", err)
	}
	// Every receive frame starts in the fill ring; every transmit frame
	// is free.
	for i := uint32(0); i < xskFrames; i++ {
		*p.fill.addr(i) = uint64(i) * xskFrameSize
	}
	atomic.StoreUint32(p.fill.producer, xskFrames)
	p.txFree = make([]uint64, 0, xskFrames)
	for i := xskFrames; i < 2*xskFrames; i++ {
		p.txFree = append(p.txFree, uint64(i)*xskFrameSize)
	}
	if err := unix.Bind(p.fd, &unix.SockaddrXDP{Flags: unix.XDP_USE_NEED_WAKEUP, Ifindex: uint32(p.index), QueueID: 0}); err != nil {
		return fmt.Errorf("bind to ifindex %d queue 0: %w", p.index, err)
	}
	if err := bpfMapUpdate(p.mapFD, 0, uint32(p.fd)); err != nil {
		return fmt.Errorf("XSKMAP update: %w", err)
	}
	// The package-level call acts in the namespace of the calling thread.
	if err := p.d.inNS(func() error {
		if err := netlink.LinkSetXdpFdWithFlags(link, p.progFD, unix.XDP_FLAGS_DRV_MODE); err != nil {
			return netlink.LinkSetXdpFdWithFlags(link, p.progFD, unix.XDP_FLAGS_SKB_MODE)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("attach XDP program: %w", err)
	}
	p.attached = link
	if p.poll, err = newPoller(p.fd); err != nil {
		return err
	}
	return nil
}

func (p *xdpPort) ifindex() int          { return p.index }
func (p *xdpPort) setMTU(mtu int)        { p.mtu.Store(int64(mtu)) }
func (p *xdpPort) start(ep *engine.Port) { go p.receive(ep) }

// receive hands each received frame to a Worker and returns its chunk to the
// fill ring, one batch per wake-up.
func (p *xdpPort) receive(ep *engine.Port) {
	defer close(p.done)
	p.d.pinReceiver()
	w := p.d.e.NewWorker()
	defer w.Close()
	cons := atomic.LoadUint32(p.rx.consumer)
	fillProd := atomic.LoadUint32(p.fill.producer)
	for {
		prod := atomic.LoadUint32(p.rx.producer)
		if prod == cons {
			if !p.poll.wait(-1) {
				return
			}
			continue
		}
		w.Begin()
		for ; cons != prod; cons++ {
			d := p.rx.desc(cons)
			if d.Addr+uint64(d.Len) > uint64(len(p.umem)) {
				ep.RxPackets.Add(1)
				ep.RxDropped.Add(1)
			} else {
				w.Receive(ep, p.umem[d.Addr:d.Addr+uint64(d.Len)], nil)
			}
			*p.fill.addr(fillProd) = d.Addr &^ (xskFrameSize - 1)
			fillProd++
		}
		w.Flush()
		atomic.StoreUint32(p.rx.consumer, cons)
		atomic.StoreUint32(p.fill.producer, fillProd)
		if atomic.LoadUint32(p.fill.flags)&unix.XDP_RING_NEED_WAKEUP != 0 {
			unix.Recvfrom(p.fd, nil, unix.MSG_DONTWAIT)
		}
	}
}

// Transmit implements engine.Transmitter: it copies frame into a free
// transmit chunk and queues it; Flush publishes the queue to the kernel.
func (p *xdpPort) Transmit(frame []byte, _ *datapath.TunnelSet) error {
	if int64(len(frame)) > p.mtu.Load()+18 || len(frame) > xskFrameSize {
		return errTooBig
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed {
		return errPortClosed
	}
	p.reclaimLocked()
	if len(p.txFree) == 0 || p.txProd-atomic.LoadUint32(p.tx.consumer) >= xskRingSize {
		p.kickLocked()
		p.reclaimLocked()
		if len(p.txFree) == 0 || p.txProd-atomic.LoadUint32(p.tx.consumer) >= xskRingSize {
			return errRingFull
		}
	}
	addr := p.txFree[len(p.txFree)-1]
	p.txFree = p.txFree[:len(p.txFree)-1]
	copy(p.umem[addr:addr+xskFrameSize], frame)
	*p.tx.desc(p.txProd) = unix.XDPDesc{Addr: addr, Len: uint32(len(frame))}
	p.txProd++
	if p.txProd-atomic.LoadUint32(p.tx.producer) >= xskRingSize/2 {
		p.kickLocked()
	}
	return nil
}

// reclaimLocked returns completed transmit chunks to the free list.
func (p *xdpPort) reclaimLocked() {
	cons := atomic.LoadUint32(p.comp.consumer)
	prod := atomic.LoadUint32(p.comp.producer)
	for ; cons != prod; cons++ {
		p.txFree = append(p.txFree, *p.comp.addr(cons))
	}
	atomic.StoreUint32(p.comp.consumer, cons)
}

// kickLocked publishes queued descriptors and has the kernel send them.
func (p *xdpPort) kickLocked() {
	if atomic.LoadUint32(p.tx.producer) == p.txProd {
		return
	}
	atomic.StoreUint32(p.tx.producer, p.txProd)
	// In copy mode (veth) the kernel transmits only within this call, so
	// it is made whatever the ring's need-wakeup flag says.
	for unix.Sendto(p.fd, nil, unix.MSG_DONTWAIT, nil) == unix.EINTR {
	}
}

// Flush implements engine.Flusher.
func (p *xdpPort) Flush() {
	p.txMu.Lock()
	if !p.closed {
		p.kickLocked()
	}
	p.txMu.Unlock()
}

func (p *xdpPort) close() {
	p.stopReceiving()
	p.release()
}

func (p *xdpPort) release() {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	if p.attached != nil {
		// Detach the program; the interface may be gone already.
		p.d.inNS(func() error { return netlink.LinkSetXdpFd(p.attached, -1) })
	}
	for _, r := range []*xskRing{&p.rx, &p.tx, &p.fill, &p.comp} {
		if r.mem != nil {
			unix.Munmap(r.mem)
			r.mem = nil
		}
	}
	if p.poll != nil {
		p.poll.close()
	}
	for _, fd := range []int{p.fd, p.progFD, p.mapFD} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	if p.umem != nil {
		unix.Munmap(p.umem)
		p.umem = nil
	}
}

// The bpf(2) calls an AF_XDP port needs, with their attribute layouts.

func bpf(cmd int, attr unsafe.Pointer, size uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_BPF, uintptr(cmd), uintptr(attr), size)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func bpfMapCreateXSK(entries uint32) (int, error) {
	attr := struct {
		mapType, keySize, valueSize, maxEntries, mapFlags uint32
	}{unix.BPF_MAP_TYPE_XSKMAP, 4, 4, entries, 0}
	return bpf(unix.BPF_MAP_CREATE, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
}

func bpfMapUpdate(mapFD int, key, value uint32) error {
	attr := struct {
		mapFD uint32
		_     uint32
		key   uint64
		value uint64
		flags uint64
	}{mapFD: uint32(mapFD), key: uint64(uintptr(unsafe.Pointer(&key))), value: uint64(uintptr(unsafe.Pointer(&value)))}
	_, err := bpf(unix.BPF_MAP_UPDATE_ELEM, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	return err
}

// bpfInsn is one eBPF instruction.
type bpfInsn struct {
	code uint8
	regs uint8 // dst in the low nibble, src in the high nibble
	off  int16
	imm  int32
}

// bpfLoadXSKRedirect loads the XDP program
//
//	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
func bpfLoadXSKRedirect(mapFD int) (int, error) {
	insns := []bpfInsn{
		{code: 0x61, regs: 1<<4 | 2, off: 16},           // r2 = *(u32 *)(r1 + 16): rx_queue_index
		{code: 0x18, regs: 1<<4 | 1, imm: int32(mapFD)}, // r1 = map (BPF_PSEUDO_MAP_FD)
		{},                            // (second half of the 64-bit load)
		{code: 0xb7, regs: 3, imm: 2}, // r3 = XDP_PASS, the fallback action
		{code: 0x85, imm: 51},         // call bpf_redirect_map
		{code: 0x95},                  // exit
	}
	license := []byte("GPL\x00")
	logBuf := make([]byte, 4096)
	attr := struct {
		progType, insnCnt   uint32
		insns, license      uint64
		logLevel, logSize   uint32
		logBuf              uint64
		kernVersion, flags  uint32
		name                [16]byte
		ifindex, attachType uint32
	}{
		progType: unix.BPF_PROG_TYPE_XDP,
		insnCnt:  uint32(len(insns)),
		insns:    uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&license[0]))),
		logLevel: 1,
		logSize:  uint32(len(logBuf)),
		logBuf:   uint64(uintptr(unsafe.Pointer(&logBuf[0]))),
	}
	copy(attr.name[:], "midonet_xsk")
	fd, err := bpf(unix.BPF_PROG_LOAD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
	if err != nil {
		n := 0
		for n < len(logBuf) && logBuf[n] != 0 {
			n++
		}
		return -1, fmt.Errorf("%w (verifier: %s)", err, logBuf[:n])
	}
	return fd, nil
}

func setsockoptPtr(fd, level, opt int, val unsafe.Pointer, size uintptr) error {
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(val), size, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func getsockoptPtr(fd, level, opt int, val unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(val), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}
