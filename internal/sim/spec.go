package sim

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/midonet/midonet/internal/packet"
)

// PacketSpec describes a packet by its headers, for tracing a hypothetical
// packet through the topology (the `midonet trace` command) and for tests.
type PacketSpec struct {
	EthSrc, EthDst [6]byte
	VLAN           uint16 // 802.1Q TCI (priority and VLAN id), 0 for an untagged frame
	// ARPOp makes the packet an ARP request (1) or reply (2) from Src
	// (sender) for Dst (target); the sender MAC is EthSrc.
	ARPOp    uint16
	Src, Dst netip.Addr // IPv4
	Proto    uint8      // packet.IPProtoTCP, UDP or ICMP; any other is sent with no L4 header
	// SrcPort and DstPort are the TCP/UDP ports, or the ICMP type and code.
	SrcPort, DstPort uint16
	ICMPID           uint16 // identifier of an ICMP echo
	TTL              uint8  // 0 means 64
	Payload          []byte
}

// ErrSpec is returned for a PacketSpec that cannot be encoded.
var ErrSpec = errors.New("sim: packet spec needs IPv4 addresses")

// Frame encodes the packet as an Ethernet frame, checksums included.
func (p *PacketSpec) Frame() ([]byte, error) {
	if !p.Src.Is4() || !p.Dst.Is4() {
		return nil, ErrSpec
	}
	var b []byte
	eth := func(t uint16) {
		if p.VLAN != 0 {
			b = append(b, p.EthDst[:]...)
			b = append(b, p.EthSrc[:]...)
			b = binary.BigEndian.AppendUint16(b, packet.EtherTypeVLAN)
			b = binary.BigEndian.AppendUint16(b, p.VLAN&^packet.VLANPresent)
			b = binary.BigEndian.AppendUint16(b, t)
			return
		}
		b = make([]byte, packet.EthernetHeaderLen)
		packet.Ethernet(b).Encode(packet.EthernetFields{Dst: p.EthDst, Src: p.EthSrc, EtherType: t})
	}
	if p.ARPOp != 0 {
		eth(packet.EtherTypeARP)
		a := make([]byte, packet.ARPIPv4Len)
		var tha [6]byte
		if p.ARPOp == arpOpReply {
			tha = p.EthDst
		}
		packet.ARP(a).Encode(packet.ARPFields{Op: p.ARPOp, SHA: p.EthSrc, SPA: p.Src.As4(), THA: tha, TPA: p.Dst.As4()})
		return append(b, a...), nil
	}
	eth(packet.EtherTypeIPv4)
	var l4 []byte
	switch p.Proto {
	case packet.IPProtoTCP:
		l4 = make([]byte, packet.TCPMinHeaderLen)
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
		l4[12] = 5 << 4
		l4[13] = packet.TCPFlagSYN
		binary.BigEndian.PutUint16(l4[14:], 65535)
	case packet.IPProtoUDP:
		l4 = make([]byte, packet.UDPHeaderLen)
		binary.BigEndian.PutUint16(l4[0:], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
	case packet.IPProtoICMP:
		l4 = make([]byte, packet.ICMPv4HeaderLen)
		l4[0], l4[1] = uint8(p.SrcPort), uint8(p.DstPort)
		binary.BigEndian.PutUint16(l4[4:], p.ICMPID)
	}
	l4 = append(l4, p.Payload...)
	switch p.Proto {
	case packet.IPProtoTCP, packet.IPProtoUDP:
		if p.Proto == packet.IPProtoUDP {
			binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		}
		sum := packet.PseudoHeaderSum4(p.Src.As4(), p.Dst.As4(), p.Proto, uint16(len(l4)))
		off := 16
		if p.Proto == packet.IPProtoUDP {
			off = 6
		}
		binary.BigEndian.PutUint16(l4[off:], packet.Checksum(l4, sum))
	case packet.IPProtoICMP:
		binary.BigEndian.PutUint16(l4[2:], packet.Checksum(l4, 0))
	}
	ttl := p.TTL
	if ttl == 0 {
		ttl = 64
	}
	ip := make([]byte, packet.IPv4MinHeaderLen)
	packet.IPv4(ip).Encode(packet.IPv4Fields{TotalLen: uint16(len(ip) + len(l4)), TTL: ttl, Protocol: p.Proto,
		Src: p.Src.As4(), Dst: p.Dst.As4(), Flags: packet.IPv4FlagDontFragment})
	b = append(b, ip...)
	return append(b, l4...), nil
}

// TracePacket simulates the packet spec describes arriving on port inPort,
// with tracing on, and returns the result with its trace. It allocates a
// simulator of its own; the result stays valid.
func TracePacket(snap *Snapshot, state StateReader, inPort ID, spec PacketSpec, now time.Time) (*Result, error) {
	frame, err := spec.Frame()
	if err != nil {
		return nil, err
	}
	m, _ := MatchFromFrame(frame)
	pkt := &Packet{Port: inPort, Match: m, Frame: frame, Trace: true}
	return NewSimulator(1).Simulate(snap, state, pkt, now), nil
}
