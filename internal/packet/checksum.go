package packet

import "encoding/binary"

// Internet checksum (RFC 1071) helpers. Sums are carried as uint32 values
// holding a partially folded ones' complement sum; Checksum folds and
// complements one into the 16-bit value stored in a header.

// ChecksumCombine adds the bytes of b, taken as big-endian 16-bit words, to
// the partial ones' complement sum and returns the new partial sum, folded to
// at most 16 bits. An odd final byte is padded with a zero byte, so only the
// last slice of a chain may have an odd length.
func ChecksumCombine(sum uint32, b []byte) uint32 {
	acc := uint64(sum)
	// Summing 32-bit words and folding later gives the same ones' complement
	// sum as 16-bit words (2^16 ≡ 1 mod 0xffff), at half the iterations.
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	if len(b) >= 4 {
		acc += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return fold64(acc)
}

// Checksum returns the Internet checksum of b: the ones' complement of the
// ones' complement sum of initial (a partial sum, such as a pseudo-header
// sum, or 0) and the 16-bit words of b. Computing it over a header whose
// checksum field holds a correct value gives 0.
func Checksum(b []byte, initial uint32) uint16 {
	return ^uint16(ChecksumCombine(initial, b))
}

// PseudoHeaderSum4 returns the partial sum of the IPv4 pseudo header used by
// TCP and UDP checksums: addresses, protocol and the L4 length (header plus
// payload).
func PseudoHeaderSum4(src, dst [4]byte, proto uint8, length uint16) uint32 {
	s := uint64(binary.BigEndian.Uint32(src[:])) + uint64(binary.BigEndian.Uint32(dst[:])) +
		uint64(proto) + uint64(length)
	return fold64(s)
}

// PseudoHeaderSum6 returns the partial sum of the IPv6 pseudo header used
// by TCP, UDP and ICMPv6 checksums (RFC 8200 §8.1): addresses, the
// upper-layer length and the next header.
func PseudoHeaderSum6(src, dst [16]byte, proto uint8, length uint32) uint32 {
	var s uint64
	for i := 0; i < 16; i += 4 {
		s += uint64(binary.BigEndian.Uint32(src[i:])) + uint64(binary.BigEndian.Uint32(dst[i:]))
	}
	s += uint64(length) + uint64(proto)
	return fold64(s)
}

// ChecksumUpdate16 returns the checksum field value after a 16-bit word
// covered by check changed from old to new, per RFC 1624 equation 3
// (HC' = ~(~HC + ~m + m')), which never turns a valid checksum into the
// ambiguous 0xffff.
func ChecksumUpdate16(check, old, new uint16) uint16 {
	s := uint32(^check) + uint32(^old) + uint32(new)
	return ^uint16(fold64(uint64(s)))
}

// ChecksumUpdate4 returns the checksum field value after a 4-byte field
// aligned on a 16-bit boundary (an IPv4 address) changed from old to new.
func ChecksumUpdate4(check uint16, old, new [4]byte) uint16 {
	s := uint64(^check) +
		uint64(^binary.BigEndian.Uint16(old[0:])) + uint64(^binary.BigEndian.Uint16(old[2:])) +
		uint64(binary.BigEndian.Uint16(new[0:])) + uint64(binary.BigEndian.Uint16(new[2:]))
	return ^uint16(fold64(s))
}

// ChecksumUpdate6 returns the checksum field value after a 6-byte field
// aligned on a 16-bit boundary changed from old to new.
func ChecksumUpdate6(check uint16, old, new [6]byte) uint16 {
	s := uint64(^check)
	for i := 0; i < 6; i += 2 {
		s += uint64(^binary.BigEndian.Uint16(old[i:])) + uint64(binary.BigEndian.Uint16(new[i:]))
	}
	return ^uint16(fold64(s))
}

// fold64 folds a ones' complement sum to 16 bits.
func fold64(s uint64) uint32 {
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint32(s)
}

// Checksums left to offload. A sender that leaves a TCP or UDP checksum to
// hardware (AF_PACKET hands such frames with TP_STATUS_CSUMNOTREADY; a
// virtio header says so) puts only the pseudo-header sum in the field.

// l4Segment finds the TCP or UDP segment of an IPv4 frame (bounded by the
// datagram's length), the offset of its checksum field, and the sum of its
// pseudo header.
func l4Segment(f []byte) (l4 []byte, off int, pseudo uint32, ok bool) {
	ip, l4 := IPv4Headers(f)
	if ip == nil || l4 == nil {
		return nil, 0, 0, false
	}
	tot, ihl := int(ip.TotalLen()), ip.HeaderLen()
	if tot > len(ip) || tot < ihl {
		return nil, 0, 0, false
	}
	l4 = l4[:tot-ihl]
	if off, ok = l4ChecksumField(ip.Protocol(), l4); !ok {
		return nil, 0, 0, false
	}
	return l4, off, PseudoHeaderSum4(ip.Src(), ip.Dst(), ip.Protocol(), uint16(len(l4))), true
}

// CompleteChecksum finishes the TCP or UDP checksum of an IPv4 frame whose
// sender left it to hardware, whatever the field holds. It reports whether
// it did.
func CompleteChecksum(f []byte) bool {
	l4, off, pseudo, ok := l4Segment(f)
	if ok {
		storeL4Checksum(l4, off, pseudo)
	}
	return ok
}

// FinishPartialChecksum completes the TCP or UDP checksum of an IPv4 frame
// whose field holds just the pseudo-header sum, as a sender leaves it to
// offload: frames the kernel encapsulated arrive so over virtual links. It
// reports whether it did. A complete checksum that happens to equal that
// sum is recomputed to itself.
func FinishPartialChecksum(f []byte) bool {
	l4, off, pseudo, ok := l4Segment(f)
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
	c := Checksum(l4, pseudo)
	if off == 6 { // UDP sends a computed 0 as 0xffff
		c = nonZeroUDP(c)
	}
	binary.BigEndian.PutUint16(l4[off:], c)
}
