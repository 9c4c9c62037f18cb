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
