package engine

import (
	"encoding/binary"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

// Header rewrites done in place on an Ethernet frame. Each one checks the
// frame is long enough and of the right kind, and otherwise leaves it as is
// and reports false. Checksums are patched incrementally (RFC 1624).

// l3Offset returns the offset of the network header and the ethertype,
// skipping one 802.1Q tag.
func l3Offset(f []byte) (int, uint16) {
	if len(f) < 14 {
		return -1, 0
	}
	et := binary.BigEndian.Uint16(f[12:])
	if et == 0x8100 || et == 0x88a8 {
		if len(f) < 18 {
			return -1, 0
		}
		return 18, binary.BigEndian.Uint16(f[16:])
	}
	return 14, et
}

func setEthernet(f []byte, s *datapath.EthernetSet) bool {
	if len(f) < 14 {
		return false
	}
	if s.Fields&datapath.SetDst != 0 {
		copy(f[0:6], s.Dst[:])
	}
	if s.Fields&datapath.SetSrc != 0 {
		copy(f[6:12], s.Src[:])
	}
	return true
}

// ipv4L4 returns the IPv4 header and, when the packet is not a later
// fragment and the L4 header is present, the L4 bytes.
func ipv4L4(f []byte) (ip, l4 []byte) {
	off, et := l3Offset(f)
	if off < 0 || et != 0x0800 || len(f) < off+20 {
		return nil, nil
	}
	ip = f[off:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl {
		return nil, nil
	}
	if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
		return ip, nil
	}
	return ip, ip[ihl:]
}

// setIPv4 rewrites IPv4 fields. partial says the L4 checksum field holds
// only the pseudo-header sum (offload pending), which moves with the
// addresses the other way.
func setIPv4(f []byte, s *datapath.IPv4Set, partial bool) bool {
	ip, l4 := ipv4L4(f)
	if ip == nil {
		return false
	}
	check := binary.BigEndian.Uint16(ip[10:])
	proto := ip[9]
	setAddr := func(field []byte, addr [4]byte) {
		old := [4]byte(field)
		if old == addr {
			return
		}
		copy(field, addr[:])
		check = packet.ChecksumUpdate4(check, old, addr)
		updateL4Pseudo(l4, proto, old, addr, partial)
	}
	if s.Fields&datapath.SetSrc != 0 {
		setAddr(ip[12:16], s.Src)
	}
	if s.Fields&datapath.SetDst != 0 {
		setAddr(ip[16:20], s.Dst)
	}
	if s.Fields&datapath.SetTOS != 0 && ip[1] != s.TOS {
		old := binary.BigEndian.Uint16(ip[0:])
		ip[1] = s.TOS
		check = packet.ChecksumUpdate16(check, old, binary.BigEndian.Uint16(ip[0:]))
	}
	if s.Fields&datapath.SetTTL != 0 && ip[8] != s.TTL {
		old := binary.BigEndian.Uint16(ip[8:])
		ip[8] = s.TTL
		check = packet.ChecksumUpdate16(check, old, binary.BigEndian.Uint16(ip[8:]))
	}
	binary.BigEndian.PutUint16(ip[10:], check)
	return true
}

// updateL4Pseudo patches the TCP or UDP checksum for an address change in
// the pseudo header. With partial, the field is the uncomplemented
// pseudo-header sum.
func updateL4Pseudo(l4 []byte, proto uint8, old, new [4]byte, partial bool) {
	var off int
	switch proto {
	case 6:
		off = 16
	case 17:
		off = 6
	default:
		return
	}
	if len(l4) < off+2 {
		return
	}
	if partial {
		c := binary.BigEndian.Uint16(l4[off:])
		binary.BigEndian.PutUint16(l4[off:], ^packet.ChecksumUpdate4(^c, old, new))
		return
	}
	switch proto {
	case 6:
		if len(l4) >= 18 {
			c := binary.BigEndian.Uint16(l4[16:])
			binary.BigEndian.PutUint16(l4[16:], packet.ChecksumUpdate4(c, old, new))
		}
	case 17:
		if len(l4) >= 8 {
			c := binary.BigEndian.Uint16(l4[6:])
			if c == 0 { // no checksum: leave it absent
				return
			}
			c = packet.ChecksumUpdate4(c, old, new)
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(l4[6:], c)
		}
	}
}

// setL4Ports rewrites TCP or UDP ports. With partial, the checksum field
// is the pseudo-header sum, which ports are not part of: it stays.
func setL4Ports(f []byte, s *datapath.L4Set, wantProto uint8, partial bool) bool {
	ip, l4 := ipv4L4(f)
	if ip == nil || ip[9] != wantProto {
		// TODO(datapath): IPv6 transport rewrites.
		return false
	}
	var csumOff int
	switch wantProto {
	case 6:
		csumOff = 16
	case 17:
		csumOff = 6
	}
	if len(l4) < csumOff+2 {
		return false
	}
	c := binary.BigEndian.Uint16(l4[csumOff:])
	noCsum := wantProto == 17 && c == 0
	set := func(off int, v uint16) {
		old := binary.BigEndian.Uint16(l4[off:])
		if old == v {
			return
		}
		binary.BigEndian.PutUint16(l4[off:], v)
		c = packet.ChecksumUpdate16(c, old, v)
	}
	if s.Fields&datapath.SetSrc != 0 {
		set(0, s.Src)
	}
	if s.Fields&datapath.SetDst != 0 {
		set(2, s.Dst)
	}
	if noCsum || partial {
		return true
	}
	if wantProto == 17 && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[csumOff:], c)
	return true
}

// l4Checksum finds the TCP or UDP segment of an IPv4 frame (bounded by
// the datagram's length), the offset of its checksum field, and the sum
// of its pseudo header.
func l4Checksum(f []byte) (l4 []byte, off int, pseudo uint32, ok bool) {
	ip, l4 := ipv4L4(f)
	if ip == nil || l4 == nil {
		return nil, 0, 0, false
	}
	tot, ihl := int(binary.BigEndian.Uint16(ip[2:])), int(ip[0]&0x0f)*4
	if tot > len(ip) || tot < ihl {
		return nil, 0, 0, false
	}
	l4 = l4[:tot-ihl]
	switch ip[9] {
	case 6:
		off = 16
	case 17:
		off = 6
	default:
		return nil, 0, 0, false
	}
	if len(l4) < off+2 {
		return nil, 0, 0, false
	}
	return l4, off, packet.PseudoHeaderSum4([4]byte(ip[12:16]), [4]byte(ip[16:20]), ip[9], uint16(len(l4))), true
}

// CompleteChecksum finishes a TCP or UDP checksum the sender left to
// hardware (the field holds only the pseudo-header sum, as AF_PACKET hands
// frames with TP_STATUS_CSUMNOTREADY). It reports whether it did.
func CompleteChecksum(f []byte) bool {
	l4, off, pseudo, ok := l4Checksum(f)
	if ok {
		storeL4Checksum(l4, off, pseudo)
	}
	return ok
}

// FinishPartialChecksum completes the TCP or UDP checksum of an IPv4 frame
// whose field holds just the pseudo-header sum, as a sender leaves it to
// offload: frames the kernel encapsulated arrive so over virtual links
// (the fast path's tunnels between veths). It reports whether it did. A
// complete checksum that happens to equal that sum is recomputed to
// itself.
func FinishPartialChecksum(f []byte) bool {
	l4, off, pseudo, ok := l4Checksum(f)
	if !ok || binary.BigEndian.Uint16(l4[off:]) != uint16(pseudo) { // the folded pseudo-header sum, as a partial checksum holds
		return false
	}
	storeL4Checksum(l4, off, pseudo)
	return true
}

// storeL4Checksum computes the checksum of segment l4, whose field is at
// off, over pseudo and stores it.
func storeL4Checksum(l4 []byte, off int, pseudo uint32) {
	l4[off], l4[off+1] = 0, 0
	c := packet.Checksum(l4, pseudo)
	if off == 6 && c == 0 { // UDP sends a computed 0 as 0xffff
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}

// tcpFlags returns the TCP flags of an IPv4 TCP segment, or 0.
func tcpFlags(f []byte) uint16 {
	ip, l4 := ipv4L4(f)
	if ip == nil || ip[9] != 6 || len(l4) < 14 {
		return 0
	}
	return binary.BigEndian.Uint16(l4[12:]) & 0x0fff
}
