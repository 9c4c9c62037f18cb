package userspace

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
)

// tapPort is an internal port: a tap device the datapath creates, whose
// host side the kernel's stack uses like any interface.
type tapPort struct {
	d     *Datapath
	name  string
	index int
	fd    int
	receiver

	txMu   sync.Mutex // guards closed and fd use for writing
	closed bool
}

func (d *Datapath) openTap(spec datapath.PortSpec) (port, error) {
	if spec.Name == "" || len(spec.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("internal port %q: name must have 1 to %d characters", spec.Name, unix.IFNAMSIZ-1)
	}
	p := &tapPort{d: d, name: spec.Name, fd: -1, receiver: newReceiver(d)}
	err := d.inNS(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		p.fd = fd
		ifr, err := unix.NewIfreq(spec.Name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		return nil
	})
	if err == nil {
		err = p.configure(spec)
	}
	if err != nil {
		p.release()
		return nil, fmt.Errorf("internal port %q: %w", spec.Name, err)
	}
	if p.poll, err = newPoller(p.fd); err != nil {
		p.release()
		return nil, err
	}
	return p, nil
}

func (p *tapPort) configure(spec datapath.PortSpec) error {
	h, err := p.d.netlinkHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	link, err := h.LinkByName(spec.Name)
	if err != nil {
		return err
	}
	if spec.MTU > 0 {
		if err := h.LinkSetMTU(link, spec.MTU); err != nil {
			return fmt.Errorf("set MTU %d: %w", spec.MTU, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	p.index = link.Attrs().Index
	return nil
}

func (p *tapPort) ifindex() int { return p.index }

// setMTU needs nothing: the kernel checks what the host sends, and what
// the datapath writes to a tap is not limited by its MTU.
func (p *tapPort) setMTU(int) {}

func (p *tapPort) start(ep *engine.Port) { go p.receive(ep) }

func (p *tapPort) receive(ep *engine.Port) {
	defer close(p.done)
	p.d.pinReceiver()
	w := p.d.e.NewWorker()
	defer w.Close()
	buf := make([]byte, 65536)
	for {
		if !p.poll.wait(-1) {
			return
		}
		w.Begin()
		for range 64 {
			n, err := unix.Read(p.fd, buf)
			if err != nil || n <= 0 {
				break
			}
			w.Receive(ep, buf[:n], nil)
		}
		w.Flush()
	}
}

// Transmit implements engine.Transmitter.
func (p *tapPort) Transmit(frame []byte, _ *datapath.TunnelSet) error {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed {
		return errPortClosed
	}
	_, err := unix.Write(p.fd, frame)
	return err
}

func (p *tapPort) close() {
	p.stopReceiving()
	p.release()
}

func (p *tapPort) release() {
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
		unix.Close(p.fd) // the tap device disappears with its last file
	}
}
