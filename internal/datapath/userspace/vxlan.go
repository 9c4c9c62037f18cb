package userspace

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
	"github.com/midonet/midonet/internal/packet"
)

// vxlanPort is the overlay port: VXLAN (RFC 7348) over a UDP socket bound to
// the local underlay address and port. The kernel builds the outer IPv4 and
// UDP headers (with checksums); the datapath adds and strips the 8-byte
// VXLAN header and sets the outer TTL, TOS and source per packet.
type vxlanPort struct {
	d     *Datapath
	local [4]byte
	port  uint16
	fd    int
	receiver

	ep atomic.Pointer[engine.Port] // set by start

	// rxLock guards the receive side, which the port's receiver and the
	// datapath's spinner both drain, and the buffers below.
	rxLock rxGuard
	rxBuf  []byte
	rxOOB  []byte

	txMu   sync.Mutex // guards the fields below and fd use for sending
	closed bool
	txBuf  []byte // the batch being built: datagrams back to back
	txOOB  []byte
	// The batch: datagrams of batchSize bytes for one destination (the
	// last may be shorter), sent with UDP_SEGMENT in one system call.
	batch     batchKey
	batchN    int // bytes in txBuf
	batchSize int
	batchLen  int  // datagrams
	batchDone bool // the last datagram was short: the batch is closed
	// gso reports whether UDP_SEGMENT sends work; gsoMax, if not 0, is the
	// smallest datagram size the kernel refused to segment (larger than the
	// path MTU allows), which is sent alone from then on.
	gso    bool
	gsoMax int
	// segmented counts the batches sent with UDP_SEGMENT.
	segmented atomic.Uint64
}

// batchKey is what datagrams of one UDP_SEGMENT batch share.
type batchKey struct {
	dst, src [4]byte
	ttl, tos uint8
}

const (
	vxlanHeaderLen = 8
	// maxBatchBytes is the most a UDP_SEGMENT send carries (one IPv4
	// datagram's worth before segmentation); maxBatchLen is the kernel's
	// oldest limit on segments per send.
	maxBatchBytes = 65535 - 20 - 8
	maxBatchLen   = 64
)

func (d *Datapath) openVXLAN(spec datapath.PortSpec) (port, error) {
	var local [4]byte
	if spec.LocalAddr.IsValid() {
		if !spec.LocalAddr.Is4() {
			return nil, fmt.Errorf("vxlan port: local address %v is not IPv4", spec.LocalAddr)
		}
		local = spec.LocalAddr.As4()
	}
	p := &vxlanPort{d: d, local: local, port: spec.UDPPort, fd: -1, receiver: newReceiver(d),
		txBuf: make([]byte, vxlanHeaderLen+65536), txOOB: make([]byte, 4*unix.CmsgSpace(unix.SizeofInet4Pktinfo)),
		// With UDP_GRO one receive returns up to 64 KiB of datagrams.
		rxBuf: make([]byte, 1<<17), rxOOB: make([]byte, 256)}
	err := d.inNS(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		p.fd = fd
		for _, o := range []struct{ opt, val int }{
			{unix.IP_RECVTOS, 1}, {unix.IP_RECVTTL, 1}, {unix.IP_PKTINFO, 1},
			// Let the kernel fragment outer packets rather than refuse
			// inner frames that only fit the inner MTU.
			{unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT},
		} {
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, o.opt, o.val); err != nil {
				return fmt.Errorf("setsockopt %d: %w", o.opt, err)
			}
		}
		// Best effort: without UDP_GRO each datagram costs a receive;
		// UDP_SEGMENT is tried on the first batch (see sendBatchLocked).
		unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1)
		p.gso = true
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: local, Port: int(spec.UDPPort)})
	})
	if err != nil {
		p.release()
		return nil, fmt.Errorf("vxlan port on %v:%d: %w", spec.LocalAddr, spec.UDPPort, err)
	}
	if p.poll, err = newPoller(p.fd); err != nil {
		p.release()
		return nil, err
	}
	return p, nil
}

func (p *vxlanPort) ifindex() int { return 0 }

func (p *vxlanPort) pollFd() int { return p.fd }

func (p *vxlanPort) inMemory() bool { return false }

func (p *vxlanPort) setMTU(int) {}

func (p *vxlanPort) start(ep *engine.Port) {
	p.ep.Store(ep)
	p.d.busy.add(p)
	go p.d.receiveLoop(p, &p.receiver)
}

// drain implements drainer: it decapsulates up to 64 receives as one
// batch. The VNI, the outer source and destination addresses, TOS and TTL
// become the tunnel fields of the inner flow key. It reports the
// datagrams handled.
func (p *vxlanPort) drain(w *engine.Worker, wait bool) int {
	if !p.rxLock.enter(wait) {
		return 0
	}
	defer p.rxLock.leave()
	ep := p.ep.Load()
	var (
		from unix.RawSockaddrInet4
		iov  unix.Iovec
		msg  unix.Msghdr
		tun  engine.Tunnel
	)
	handled := 0
	for range 64 {
		iov.Base = &p.rxBuf[0]
		iov.SetLen(len(p.rxBuf))
		msg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&from)), Namelen: unix.SizeofSockaddrInet4, Iov: &iov, Iovlen: 1, Control: &p.rxOOB[0]}
		msg.SetControllen(len(p.rxOOB))
		n, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
		if errno != 0 {
			break
		}
		if handled == 0 {
			w.Begin()
		}
		tun = engine.Tunnel{Src: from.Addr, Dst: p.local}
		size := parseCmsgs(p.rxOOB[:msg.Controllen], &tun)
		if msg.Flags&unix.MSG_TRUNC != 0 {
			ep.RxPackets.Add(1)
			ep.RxDropped.Add(1)
			handled++
			continue
		}
		all := p.rxBuf[:n]
		single := size <= 0
		if single {
			size = len(all)
		}
		for len(all) > 0 {
			d := all[:min(size, len(all))]
			all = all[len(d):]
			handled++
			if len(d) < vxlanHeaderLen+14 || d[0]&0x08 == 0 {
				ep.RxPackets.Add(1)
				ep.RxDropped.Add(1)
				continue
			}
			if single {
				// It may come from a peer's kernel fast path, over
				// virtual links with its inner checksum still left to
				// offload (coalesced ones come from agents, which
				// finish them).
				packet.FinishPartialChecksum(d[vxlanHeaderLen:])
			}
			tun.ID = uint32(d[4])<<16 | uint32(d[5])<<8 | uint32(d[6])
			w.Receive(ep, d[vxlanHeaderLen:], &tun)
		}
	}
	if handled > 0 {
		w.Flush()
	}
	return handled
}

// parseCmsgs reads the outer TOS, TTL and destination address, and
// returns the datagram size of a coalesced receive (0 if none).
func parseCmsgs(b []byte, tun *engine.Tunnel) (gsoSize int) {
	for len(b) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(b) {
			return gsoSize
		}
		data := b[unix.CmsgLen(0):l]
		if h.Level == unix.IPPROTO_IP {
			switch h.Type {
			case unix.IP_TOS:
				if len(data) >= 1 {
					tun.TOS = data[0]
				}
			case unix.IP_TTL:
				if len(data) >= 4 {
					tun.TTL = uint8(binary.NativeEndian.Uint32(data))
				}
			case unix.IP_PKTINFO:
				if len(data) >= unix.SizeofInet4Pktinfo {
					pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
					tun.Dst = pi.Addr
				}
			}
		} else if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && len(data) >= 4 {
			gsoSize = int(binary.NativeEndian.Uint32(data))
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(b) {
			return gsoSize
		}
		b = b[next:]
	}
	return gsoSize
}

// Transmit implements engine.Transmitter: it encapsulates frame with the
// tunnel metadata and adds it to the batch for the tunnel destination;
// Flush sends the batch. Consecutive datagrams of one size to one
// destination, as a segmented TCP burst makes, go out in one UDP_SEGMENT
// send that the kernel splits.
func (p *vxlanPort) Transmit(frame []byte, tun *datapath.TunnelSet) error {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed {
		return errPortClosed
	}
	size := vxlanHeaderLen + len(frame)
	if size > len(p.txBuf) {
		return errTooBig
	}
	ttl := tun.TTL
	if ttl == 0 {
		ttl = datapath.DefaultTunnelTTL
	}
	key := batchKey{dst: tun.Dst.As4(), ttl: ttl, tos: tun.TOS}
	if tun.Src.IsValid() && tun.Src.As4() != p.local {
		key.src = tun.Src.As4()
	}
	if p.batchLen > 0 && (key != p.batch || p.batchDone || size > p.batchSize ||
		p.batchN+size > maxBatchBytes || p.batchLen == maxBatchLen) {
		p.flushLocked()
	}
	if p.batchLen == 0 {
		p.batch, p.batchSize, p.batchDone = key, size, false
	}
	h := p.txBuf[p.batchN : p.batchN+vxlanHeaderLen]
	h[0], h[1], h[2], h[3] = 0x08, 0, 0, 0
	h[4], h[5], h[6], h[7] = byte(tun.VNI>>16), byte(tun.VNI>>8), byte(tun.VNI), 0
	copy(p.txBuf[p.batchN+vxlanHeaderLen:], frame)
	p.batchN += size
	p.batchLen++
	p.batchDone = size < p.batchSize
	if !p.gso || (p.gsoMax != 0 && size >= p.gsoMax) {
		// Nothing to batch with (the batch holds just this datagram):
		// send it now, and let the caller count an error.
		_, err := p.sendBatchLocked()
		return err
	}
	return nil
}

// Flush implements engine.Flusher: it sends the batch.
func (p *vxlanPort) Flush() {
	p.txMu.Lock()
	if !p.closed && p.batchLen > 0 {
		p.flushLocked()
	}
	p.txMu.Unlock()
}

// flushLocked sends the batch, counting what cannot be sent as dropped:
// its datagrams were counted as sent when Transmit took them.
func (p *vxlanPort) flushLocked() {
	if n, _ := p.sendBatchLocked(); n > 0 {
		if ep := p.ep.Load(); ep != nil {
			ep.TxDropped.Add(uint64(n))
		}
	}
}

// sendBatchLocked sends the batch and empties it; it returns how many
// datagrams could not be sent and the last error. If the kernel refuses to
// segment the batch (a datagram larger than the path allows without
// fragmentation), the datagrams go one by one, and datagrams that large
// are no longer batched.
func (p *vxlanPort) sendBatchLocked() (failed int, err error) {
	b, key, size, n := p.txBuf[:p.batchN], p.batch, p.batchSize, p.batchLen
	p.batchN, p.batchLen = 0, 0
	if n == 1 {
		if err := p.sendmsg(b, &key, 0); err != nil {
			return 1, err
		}
		return 0, nil
	}
	switch err = p.sendmsg(b, &key, size); err {
	case nil:
		p.segmented.Add(1)
		return 0, nil
	case unix.EINVAL, unix.EMSGSIZE, unix.EIO, unix.ENOPROTOOPT:
		if p.gsoMax == 0 || size < p.gsoMax {
			p.gsoMax = size
		}
		p.gso = err != unix.ENOPROTOOPT
	default:
		return n, err
	}
	err = nil
	for len(b) > 0 {
		d := b[:min(size, len(b))]
		b = b[len(d):]
		if e := p.sendmsg(d, &key, 0); e != nil {
			failed, err = failed+1, e
		}
	}
	return failed, err
}

// sendmsg sends b to the batch's destination; segment, if not 0, asks the
// kernel to split b into datagrams of that size.
func (p *vxlanPort) sendmsg(b []byte, key *batchKey, segment int) error {
	oob := p.txOOB[:0]
	oob = appendCmsgInt(oob, unix.IPPROTO_IP, unix.IP_TTL, int32(key.ttl))
	oob = appendCmsgInt(oob, unix.IPPROTO_IP, unix.IP_TOS, int32(key.tos))
	if key.src != ([4]byte{}) {
		oob = appendPktinfo(oob, key.src)
	}
	if segment > 0 {
		oob = appendCmsgUint16(oob, unix.IPPROTO_UDP, unix.UDP_SEGMENT, uint16(segment))
	}
	to := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: key.dst}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&to.Port))[:], p.port)
	iov := unix.Iovec{Base: &b[0]}
	iov.SetLen(len(b))
	msg := unix.Msghdr{Name: (*byte)(unsafe.Pointer(&to)), Namelen: unix.SizeofSockaddrInet4, Iov: &iov, Iovlen: 1,
		Control: &oob[0]}
	msg.SetControllen(len(oob))
	for {
		_, _, errno := unix.Syscall(unix.SYS_SENDMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return errno
	}
}

// appendCmsg appends a control message with n zeroed data bytes and
// returns the grown buffer and the data to fill in.
func appendCmsg(b []byte, level, typ, n int) ([]byte, []byte) {
	start := len(b)
	b = slices.Grow(b, unix.CmsgSpace(n))[:start+unix.CmsgSpace(n)]
	clear(b[start:])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(n))
	data := start + unix.CmsgLen(0)
	return b, b[data : data+n]
}

func appendCmsgInt(b []byte, level, typ int, v int32) []byte {
	b, data := appendCmsg(b, level, typ, 4)
	binary.NativeEndian.PutUint32(data, uint32(v))
	return b
}

func appendCmsgUint16(b []byte, level, typ int, v uint16) []byte {
	b, data := appendCmsg(b, level, typ, 2)
	binary.NativeEndian.PutUint16(data, v)
	return b
}

func appendPktinfo(b []byte, src [4]byte) []byte {
	b, data := appendCmsg(b, unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo)
	(*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0])).Spec_dst = src
	return b
}

func (p *vxlanPort) close() {
	p.d.busy.remove(p)
	p.stopReceiving()
	p.release()
}

func (p *vxlanPort) release() {
	p.rxLock.close()
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	if p.poll != nil {
		p.poll.close()
	}
	if p.fd >= 0 {
		unix.Close(p.fd)
	}
}
