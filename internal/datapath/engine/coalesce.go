package engine

import (
	"bytes"
	"encoding/binary"

	"github.com/midonet/midonet/internal/packet"
)

// Coalescer merges consecutive TCP/IPv4 segments of one connection into a
// GSO super-frame, as the kernel's GRO does on a NIC's receive path, so
// that a port which can hand super-frames to the kernel (AF_PACKET with a
// virtio_net_hdr) sends one frame where the sender's TSO burst arrived as
// many: one system call instead of dozens, and the receiving VM's TCP sees
// (and acknowledges) one segment. A Coalescer is not safe for concurrent
// use; ports guard it with their transmit lock.
//
// Only plain data segments merge: Ethernet without a tag, IPv4 without
// options or fragmentation, TCP with ACK (PSH allowed on the last segment)
// and no other flag, the same headers except the IP identification, total
// length and checksums, and contiguous sequence numbers. A segment whose
// TCP checksum is complete must be correct to merge, since the merged frame
// leaves the checksum to the kernel and so would hide a corrupt one.
type Coalescer struct {
	buf     []byte // the pending frame; allocated on first use
	n       int    // its length; 0 when nothing is pending
	hdrs    int    // length of its Ethernet, IPv4 and TCP headers
	mss     int    // payload size of its first segment
	segs    int
	nextSeq uint32
	full    bool // the last segment was short or had PSH: nothing follows
	first   Offload
	firstOK bool // the first segment had offload work pending (first)
	out     Offload
}

// maxCoalesced bounds the IPv4 total length of a merged frame.
const maxCoalesced = 65535

// Pending reports whether a frame is waiting to be taken.
func (c *Coalescer) Pending() bool { return c.n > 0 }

// Add offers frame, with its pending offload work o (nil if none). It
// reports whether the Coalescer took the frame: appended it to the pending
// one or, if none was pending, started one with it. If it returns false
// the caller must send the pending frame (Take) and offer frame again; if
// it returns false with nothing pending, frame cannot merge and the caller
// sends it as it is. The Coalescer copies what it keeps.
func (c *Coalescer) Add(frame []byte, o *Offload) bool {
	if o.IsGSO() {
		return false
	}
	hdrs, payload, ok := tcpSegment(frame, o)
	if !ok {
		return false
	}
	if c.n > 0 && (c.full || hdrs != c.hdrs || payload > c.mss || c.n-14+payload > maxCoalesced ||
		binary.BigEndian.Uint32(frame[14+20+4:]) != c.nextSeq || !sameFlowHeaders(c.buf[:hdrs], frame[:hdrs])) {
		return false // the caller offers it again once the pending frame is out
	}
	// Only a frame about to be taken costs a pass over its payload.
	if o == nil && !checksumValid(frame[14:hdrs+payload]) {
		return false
	}
	if c.n == 0 {
		if len(c.buf) < 14+maxCoalesced {
			c.buf = make([]byte, 14+maxCoalesced)
		}
		c.n = copy(c.buf, frame[:hdrs+payload])
		c.hdrs, c.mss, c.segs = hdrs, payload, 1
		c.nextSeq = binary.BigEndian.Uint32(frame[14+20+4:]) + uint32(payload)
		c.full = frame[14+20+13]&tcpPSH != 0
		c.firstOK = o != nil
		if o != nil {
			c.first = *o
		}
		return true
	}
	c.n += copy(c.buf[c.n:], frame[hdrs:hdrs+payload])
	c.segs++
	c.nextSeq += uint32(payload)
	flags := frame[14+20+13]
	c.buf[14+20+13] |= flags // PSH of the last segment
	c.full = payload < c.mss || flags&tcpPSH != 0
	return true
}

// Take returns the pending frame and its offload work (nil if none) and
// empties the Coalescer. The frame is valid until the next Add. A single
// segment comes back as it was offered; a merged frame is a TCPv4 GSO
// super-frame whose checksum the kernel finishes.
func (c *Coalescer) Take() ([]byte, *Offload) {
	f := c.buf[:c.n]
	segs := c.segs
	c.n, c.segs = 0, 0
	if segs == 1 {
		if c.firstOK {
			c.out = c.first
			return f, &c.out
		}
		return f, nil
	}
	ip := f[14:]
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip[:20], 0))
	l4 := len(ip) - 20
	sum := packet.PseudoHeaderSum4([4]byte(ip[12:16]), [4]byte(ip[16:20]), 6, uint16(l4))
	binary.BigEndian.PutUint16(ip[20+16:], uint16(sum))
	c.out = Offload{NeedsCsum: true, CsumStart: 14 + 20, CsumOffset: 16,
		GSOType: GSOTCPv4, GSOSize: uint16(c.mss), HdrLen: uint16(c.hdrs)}
	return f, &c.out
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// tcpSegment reports whether frame's headers make it a data segment that
// may merge, with its header length and payload size. A complete checksum
// is checked apart (checksumValid), only for a frame that will be taken.
func tcpSegment(f []byte, o *Offload) (hdrs, payload int, ok bool) {
	if len(f) < 14+20+20 || binary.BigEndian.Uint16(f[12:]) != 0x0800 {
		return 0, 0, false
	}
	ip := f[14:]
	if ip[0] != 0x45 || ip[9] != 6 || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return 0, 0, false // options, not TCP, or a fragment
	}
	total := int(binary.BigEndian.Uint16(ip[2:]))
	if total > len(ip) || total < 40 {
		return 0, 0, false
	}
	tcp := ip[20:total]
	thl := int(tcp[12]>>4) * 4
	if thl < 20 || thl >= len(tcp) || tcp[13]&^tcpPSH != tcpACK {
		return 0, 0, false // no payload, or flags other than ACK and PSH
	}
	if o != nil && (!o.NeedsCsum || o.CsumStart != 14+20 || o.CsumOffset != 16) {
		return 0, 0, false
	}
	return 14 + 20 + thl, len(tcp) - thl, true
}

// checksumValid reports whether the TCP checksum of an IPv4 packet without
// options (ip, up to its total length) is correct.
func checksumValid(ip []byte) bool {
	tcp := ip[20:]
	return packet.Checksum(tcp, packet.PseudoHeaderSum4([4]byte(ip[12:16]), [4]byte(ip[16:20]), 6, uint16(len(tcp)))) == 0
}

// sameFlowHeaders compares two segments' headers, skipping the fields that
// differ between segments of one burst: IPv4 total length, identification
// and checksum, TCP sequence number, flags (PSH) and checksum.
func sameFlowHeaders(a, b []byte) bool {
	const ip, tcp = 14, 14 + 20
	return bytes.Equal(a[:ip+2], b[:ip+2]) && // Ethernet, IP version, IHL, TOS
		bytes.Equal(a[ip+6:ip+10], b[ip+6:ip+10]) && // flags, TTL, protocol
		bytes.Equal(a[ip+12:tcp+4], b[ip+12:tcp+4]) && // addresses, ports
		bytes.Equal(a[tcp+8:tcp+13], b[tcp+8:tcp+13]) && // ack, data offset
		bytes.Equal(a[tcp+14:tcp+16], b[tcp+14:tcp+16]) && // window
		bytes.Equal(a[tcp+18:], b[tcp+18:]) // urgent pointer, options
}
