package engine

import (
	"encoding/binary"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

// Offload describes work a frame's sender left to the kernel or hardware,
// as a virtio_net_hdr does: a TCP or UDP checksum to finish (the field
// holds only the pseudo-header sum) and, for a GSO super-frame, the
// segmentation into GSOSize-byte segments. Offsets count from the start of
// the Ethernet frame.
type Offload struct {
	NeedsCsum  bool
	CsumStart  uint16 // where the checksummed bytes start (the L4 header)
	CsumOffset uint16 // offset of the checksum field from CsumStart
	GSOType    uint8  // GSONone, GSOTCPv4, GSOUDP, GSOTCPv6, with GSOECN
	GSOSize    uint16 // segment payload size
	HdrLen     uint16 // length of the headers in front of the payload
}

// GSO types, as in virtio_net_hdr.
const (
	GSONone  uint8 = 0
	GSOTCPv4 uint8 = 1
	GSOUDP   uint8 = 3
	GSOTCPv6 uint8 = 4
	GSOECN   uint8 = 0x80
)

// IsGSO reports whether the frame is a super-frame to segment.
func (o *Offload) IsGSO() bool { return o != nil && o.GSOType&^GSOECN != GSONone }

func (o *Offload) pending() bool { return o != nil && (o.NeedsCsum || o.IsGSO()) }

// OffloadTransmitter is implemented by ports that can hand frames with
// pending offload work to the kernel (AF_PACKET with PACKET_VNET_HDR).
// Others get frames with checksums finished in software; GSO super-frames
// cannot go to them and are dropped.
type OffloadTransmitter interface {
	TransmitOffload(frame []byte, tun *datapath.TunnelSet, off *Offload) error
}

// finishChecksum computes the checksum o left pending, in place. It
// reports false if the offsets do not fit the frame.
func finishChecksum(f []byte, o *Offload) bool {
	start, field := int(o.CsumStart), int(o.CsumStart)+int(o.CsumOffset)
	if start >= len(f) || field+2 > len(f) {
		return false
	}
	// The field holds the pseudo-header sum, so summing it in with the
	// rest gives the full checksum. UDP sends a computed 0 as 0xffff.
	c := packet.Checksum(f[start:], 0)
	if c == 0 && o.CsumOffset == 6 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(f[field:], c)
	o.NeedsCsum = false
	return true
}

// shift moves the offsets when a header of n bytes is pushed (n > 0) or
// popped (n < 0) in front of the L3 header.
func (o *Offload) shift(n int) {
	if !o.pending() {
		return
	}
	if o.NeedsCsum {
		o.CsumStart = uint16(int(o.CsumStart) + n)
	}
	if o.HdrLen != 0 {
		o.HdrLen = uint16(int(o.HdrLen) + n)
	}
}

// segmentTCPv4 splits a TCP/IPv4 GSO super-frame into segments of at most
// o.GSOSize payload bytes, each with its own headers and full checksums, as
// the kernel's GSO would, and passes each to emit (valid only during the
// call). buf is scratch space, grown as needed and returned. It reports
// false, emitting nothing, if the frame is not a TCP/IPv4 segment.
func segmentTCPv4(f []byte, o *Offload, buf []byte, emit func(seg []byte)) ([]byte, bool) {
	ip, _ := packet.IPv4Headers(f)
	if ip == nil || o.GSOSize == 0 {
		return buf, false
	}
	l3, ihl := len(f)-len(ip), ip.HeaderLen()
	if ip.Protocol() != packet.IPProtoTCP || len(ip) < ihl+20 {
		return buf, false
	}
	tcp := ip[ihl:]
	thl := int(tcp[12]>>4) * 4
	if thl < 20 || len(tcp) < thl {
		return buf, false
	}
	hdrs := l3 + ihl + thl
	payload := f[hdrs:]
	mss := int(o.GSOSize)
	if need := hdrs + mss; len(buf) < need {
		buf = make([]byte, need)
	}
	copy(buf, f[:hdrs])
	sip, stcp := buf[l3:], buf[l3+ihl:]
	id := binary.BigEndian.Uint16(ip[4:])
	seq := binary.BigEndian.Uint32(tcp[4:])
	flags := tcp[13]
	for i := 0; len(payload) > 0; i++ {
		n := min(mss, len(payload))
		seg := buf[:hdrs+n]
		copy(seg[hdrs:], payload[:n])
		payload = payload[n:]
		binary.BigEndian.PutUint16(sip[2:], uint16(ihl+thl+n))
		binary.BigEndian.PutUint16(sip[4:], id+uint16(i))
		sip[10], sip[11] = 0, 0
		binary.BigEndian.PutUint16(sip[10:], packet.Checksum(sip[:ihl], 0))
		binary.BigEndian.PutUint32(stcp[4:], seq+uint32(i*mss))
		fl := flags
		if len(payload) > 0 {
			fl &^= 0x09 // FIN and PSH only on the last segment
		}
		if i > 0 {
			fl &^= 0x80 // CWR only on the first
		}
		stcp[13] = fl
		stcp[16], stcp[17] = 0, 0
		sum := packet.PseudoHeaderSum4([4]byte(sip[12:16]), [4]byte(sip[16:20]), 6, uint16(thl+n))
		binary.BigEndian.PutUint16(stcp[16:], packet.Checksum(seg[l3+ihl:], sum))
		emit(seg)
	}
	return buf, true
}
