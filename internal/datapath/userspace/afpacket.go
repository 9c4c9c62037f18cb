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
)

// An AF_PACKET port has one socket with two TPACKET_V3 rings mapped
// together: the receive ring (blocks the kernel fills and hands over whole)
// followed by the transmit ring (fixed-size frames we fill and the kernel
// sends on a sendto, once per batch).
//
//	mmap: | rx block 0 | ... | rx block N-1 | tx frame 0 | ... | tx frame M-1 |

const (
	txFrameSize = 2048
	txFrames    = 256
	// txDataOff is where a frame's bytes start in a TPACKET_V3 transmit
	// slot: the aligned tpacket3_hdr.
	txDataOff = (unix.SizeofTpacket3Hdr + 15) &^ 15
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
	mtu   int

	fd        int
	ring      []byte
	rx        []byte // the receive blocks
	blockSize int
	blocks    int
	poll      *poller
	done      chan struct{}

	txMu     sync.Mutex // guards the fields below and fd use for sending
	tx       []byte     // the transmit frames
	txCur    int
	txQueued int
	closed   bool

	txFull atomic.Uint64 // frames dropped because the ring was full
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
	return d.openAFPacket(spec.Name, attrs.Index, attrs.MTU)
}

func (d *Datapath) openAFPacket(name string, index, mtu int) (*afpacketPort, error) {
	p := &afpacketPort{d: d, name: name, index: index, mtu: mtu, fd: -1, done: make(chan struct{}),
		blockSize: d.cfg.RingBlockSize, blocks: d.cfg.RingBlocks}
	err := d.inNS(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		p.fd = fd
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
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("TPACKET_V3: %w", err)
	}
	// Our own transmissions must not come back as receptions.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err)
	}
	// A malformed transmit frame is skipped rather than stalling the ring.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_LOSS, 1); err != nil {
		return fmt.Errorf("PACKET_LOSS: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1) // best effort
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
	txBlock := 1 << 16
	txReq := unix.TpacketReq3{
		Block_size: uint32(txBlock),
		Block_nr:   uint32(txFrames * txFrameSize / txBlock),
		Frame_size: txFrameSize,
		Frame_nr:   txFrames,
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_TX_RING, &txReq); err != nil {
		return fmt.Errorf("PACKET_TX_RING: %w", err)
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

func (p *afpacketPort) start(ep *engine.Port) {
	go p.receive(ep)
}

func (p *afpacketPort) close() {
	if p.poll != nil {
		p.poll.stop()
		<-p.done
	}
	p.release()
}

func (p *afpacketPort) release() {
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
}

// receive is the port's receive loop: it hands each packet of each block
// the kernel retires to a Worker, one batch per block.
func (p *afpacketPort) receive(ep *engine.Port) {
	defer close(p.done)
	w := p.d.e.NewWorker()
	defer w.Close()
	vlanBuf := make([]byte, 0, p.blockSize)
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
			start := off + int(h.Mac)
			end := start + int(h.Snaplen)
			if end <= len(block) && h.Snaplen == h.Len {
				frame := block[start:end]
				if h.Status&unix.TP_STATUS_CSUMNOTREADY != 0 {
					engine.CompleteChecksum(frame)
				}
				if h.Status&unix.TP_STATUS_VLAN_VALID != 0 && len(frame) >= 12 {
					// The kernel took the tag out; put it back.
					tpid := uint16(0x8100)
					if h.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 && h.Hv1.Vlan_tpid != 0 {
						tpid = h.Hv1.Vlan_tpid
					}
					vlanBuf = append(vlanBuf[:0], frame[:12]...)
					vlanBuf = binary.BigEndian.AppendUint16(vlanBuf, tpid)
					vlanBuf = binary.BigEndian.AppendUint16(vlanBuf, uint16(h.Hv1.Vlan_tci))
					vlanBuf = append(vlanBuf, frame[12:]...)
					frame = vlanBuf
				}
				w.Receive(ep, frame, nil)
			} else {
				ep.RxPackets.Add(1)
				ep.RxDropped.Add(1) // truncated: larger than a ring block
			}
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
	if len(frame) > p.mtu+18 { // Ethernet header and one VLAN tag
		return errTooBig
	}
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed {
		return errPortClosed
	}
	if len(frame) > txFrameSize-txDataOff {
		// Jumbo frames bypass the ring.
		_, err := unix.Write(p.fd, frame)
		return err
	}
	slot := p.tx[p.txCur*txFrameSize : (p.txCur+1)*txFrameSize]
	h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&slot[0]))
	if st := atomic.LoadUint32(&h.Status); st != unix.TP_STATUS_AVAILABLE && st != unix.TP_STATUS_WRONG_FORMAT {
		p.flushLocked()
		if st = atomic.LoadUint32(&h.Status); st != unix.TP_STATUS_AVAILABLE && st != unix.TP_STATUS_WRONG_FORMAT {
			p.txFull.Add(1)
			return errRingFull
		}
	}
	copy(slot[txDataOff:], frame)
	h.Len = uint32(len(frame))
	h.Snaplen = uint32(len(frame))
	h.Next_offset = 0
	atomic.StoreUint32(&h.Status, unix.TP_STATUS_SEND_REQUEST)
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
