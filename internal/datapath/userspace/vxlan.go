package userspace

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
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
	poll  *poller
	done  chan struct{}

	txMu   sync.Mutex // guards the fields below and fd use for sending
	closed bool
	txBuf  []byte
	txOOB  []byte
}

const vxlanHeaderLen = 8

func (d *Datapath) openVXLAN(spec datapath.PortSpec) (port, error) {
	var local [4]byte
	if spec.LocalAddr.IsValid() {
		if !spec.LocalAddr.Is4() {
			return nil, fmt.Errorf("vxlan port: local address %v is not IPv4", spec.LocalAddr)
		}
		local = spec.LocalAddr.As4()
	}
	p := &vxlanPort{d: d, local: local, port: spec.UDPPort, fd: -1, done: make(chan struct{}),
		txBuf: make([]byte, vxlanHeaderLen+65536), txOOB: make([]byte, 3*unix.CmsgSpace(unix.SizeofInet4Pktinfo))}
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

func (p *vxlanPort) setMTU(int) {}

func (p *vxlanPort) start(ep *engine.Port) { go p.receive(ep) }

// receive decapsulates datagrams: the VNI, the outer source and destination
// addresses, TOS and TTL become the tunnel fields of the inner flow key.
func (p *vxlanPort) receive(ep *engine.Port) {
	defer close(p.done)
	w := p.d.e.NewWorker()
	defer w.Close()
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	var (
		from unix.RawSockaddrInet4
		iov  unix.Iovec
		msg  unix.Msghdr
		tun  engine.Tunnel
	)
	for {
		if !p.poll.wait(-1) {
			return
		}
		w.Begin()
		for range 64 {
			iov.Base = &buf[0]
			iov.SetLen(len(buf))
			msg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&from)), Namelen: unix.SizeofSockaddrInet4, Iov: &iov, Iovlen: 1, Control: &oob[0]}
			msg.SetControllen(len(oob))
			n, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
			if errno != 0 {
				break
			}
			d := buf[:n]
			if len(d) < vxlanHeaderLen+14 || d[0]&0x08 == 0 {
				ep.RxPackets.Add(1)
				ep.RxDropped.Add(1)
				continue
			}
			tun = engine.Tunnel{ID: uint32(d[4])<<16 | uint32(d[5])<<8 | uint32(d[6]), Src: from.Addr, Dst: p.local}
			parseCmsgs(oob[:msg.Controllen], &tun)
			w.Receive(ep, d[vxlanHeaderLen:], &tun)
		}
		w.Flush()
	}
}

// parseCmsgs reads the outer TOS, TTL and destination address.
func parseCmsgs(b []byte, tun *engine.Tunnel) {
	for len(b) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(b) {
			return
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
		}
		next := unix.CmsgSpace(l - unix.CmsgLen(0))
		if next > len(b) {
			return
		}
		b = b[next:]
	}
}

// Transmit implements engine.Transmitter: it encapsulates frame with the
// tunnel metadata and sends it to the tunnel destination.
func (p *vxlanPort) Transmit(frame []byte, tun *datapath.TunnelSet) error {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed {
		return errPortClosed
	}
	if len(frame) > len(p.txBuf)-vxlanHeaderLen {
		return errTooBig
	}
	h := p.txBuf[:vxlanHeaderLen]
	h[0], h[1], h[2], h[3] = 0x08, 0, 0, 0
	h[4], h[5], h[6], h[7] = byte(tun.VNI>>16), byte(tun.VNI>>8), byte(tun.VNI), 0
	n := vxlanHeaderLen + copy(p.txBuf[vxlanHeaderLen:], frame)

	ttl := int32(tun.TTL)
	if ttl == 0 {
		ttl = datapath.DefaultTunnelTTL
	}
	oob := p.txOOB[:0]
	oob = appendCmsgInt(oob, unix.IP_TTL, ttl)
	oob = appendCmsgInt(oob, unix.IP_TOS, int32(tun.TOS))
	if tun.Src.IsValid() && tun.Src.As4() != p.local {
		oob = appendPktinfo(oob, tun.Src.As4())
	}
	to := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: tun.Dst.As4()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&to.Port))[:], p.port)
	iov := unix.Iovec{Base: &p.txBuf[0]}
	iov.SetLen(n)
	msg := unix.Msghdr{Name: (*byte)(unsafe.Pointer(&to)), Namelen: unix.SizeofSockaddrInet4, Iov: &iov, Iovlen: 1,
		Control: &oob[0]}
	msg.SetControllen(len(oob))
	_, _, errno := unix.Syscall(unix.SYS_SENDMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&msg)), unix.MSG_DONTWAIT)
	if errno != 0 {
		return errno
	}
	return nil
}

func appendCmsgInt(b []byte, typ int, v int32) []byte {
	start := len(b)
	b = slices.Grow(b, unix.CmsgSpace(4))[:start+unix.CmsgSpace(4)]
	clear(b[start:])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level, h.Type = unix.IPPROTO_IP, int32(typ)
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[start+unix.CmsgLen(0):], uint32(v))
	return b
}

func appendPktinfo(b []byte, src [4]byte) []byte {
	start := len(b)
	b = slices.Grow(b, unix.CmsgSpace(unix.SizeofInet4Pktinfo))[:start+unix.CmsgSpace(unix.SizeofInet4Pktinfo)]
	clear(b[start:])
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[start]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&b[start+unix.CmsgLen(0)]))
	pi.Spec_dst = src
	return b
}

func (p *vxlanPort) close() {
	if p.poll != nil {
		p.poll.stop()
		<-p.done
	}
	p.release()
}

func (p *vxlanPort) release() {
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
