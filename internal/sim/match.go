package sim

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

// Field is one header field of a Match, a bit of a FieldSet. The
// simulation marks every field a device reads as seen (the megaflow mask)
// and every field it changes as written (the set-actions).
type Field uint32

// FieldSet is a set of Fields, the union of their bits.
type FieldSet = Field

// Match fields.
const (
	FieldEthSrc Field = 1 << iota
	FieldEthDst
	FieldVLAN
	FieldEthType
	FieldNwSrc
	FieldNwDst
	FieldNwProto
	FieldNwTOS
	FieldNwTTL
	FieldNwFrag
	FieldTpSrc
	FieldTpDst
	FieldARPSHA
	FieldARPTHA
	// FieldICMPID is a datapath match field only where the datapath has
	// datapath.Features.ICMPEchoID (Simulator.MatchICMPID); FieldICMPData
	// never is. A flow that reads or writes a field its datapath lacks
	// cannot be installed, and every packet is simulated.
	FieldICMPID
	FieldICMPData

	fieldsUserspace = FieldICMPID | FieldICMPData
	fieldsL3        = FieldNwSrc | FieldNwDst | FieldNwProto | FieldNwTOS | FieldNwTTL | FieldNwFrag
	fieldsL4        = FieldTpSrc | FieldTpDst
)

var fieldNames = [...]string{"eth_src", "eth_dst", "vlan", "eth_type", "nw_src", "nw_dst", "nw_proto", "nw_tos",
	"nw_ttl", "nw_frag", "tp_src", "tp_dst", "arp_sha", "arp_tha", "icmp_id", "icmp_data"}

// String lists the fields of the set, separated by commas.
func (f Field) String() string {
	s := ""
	for i, n := range fieldNames {
		if f&(1<<i) != 0 {
			if s != "" {
				s += ","
			}
			s += n
		}
	}
	return s
}

// MarshalText implements encoding.TextMarshaler: the field names, comma
// separated.
func (f Field) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// ICMPData is the header an ICMP error quotes: the packet that caused it.
type ICMPData struct {
	Valid            bool
	Src, Dst         [4]byte
	Proto            uint8
	SrcPort, DstPort uint16 // TCP/UDP ports, or the ICMP echo identifier in both
}

// Match is the packet as the simulation sees it: its datapath flow key,
// which the datapath decoded once from the frame, plus the header an ICMP
// error quotes, which no flow key holds. Devices read the key's Ethernet,
// IPv4, transport, ARP and ICMP echo identifier fields; its in-port,
// tunnel metadata and IPv6 addresses ride along unread. Conventions follow
// packet.FlowKey: for ARP NwSrc/NwDst are the sender and target protocol
// addresses and NwProto the opcode; for ICMP TpSrc is the type and TpDst
// the code.
type Match struct {
	packet.FlowKey
	ICMPData ICMPData
}

// MatchFromFlowKey returns the match of a datapath flow key. The quoted
// header of an ICMP error, which a flow key lacks, stays zero (and so does
// the echo identifier of a key from a datapath without it): MatchOf or
// FillICMP add them from the frame.
func MatchFromFlowKey(k *packet.FlowKey) Match { return Match{FlowKey: *k} }

// MatchOf returns the complete match of a packet a datapath delivered with
// its flow key: the key itself and, for ICMPv4, the fields a key may lack
// (an error's quoted header; the echo identifier, from a datapath whose
// flows do not match it), decoded from the frame. Only ICMPv4 frames are
// decoded again. It does not allocate.
func MatchOf(k *packet.FlowKey, frame []byte) Match {
	m := Match{FlowKey: *k}
	if k.EthType == packet.EtherTypeIPv4 && k.NwProto == packet.IPProtoICMP {
		var p packet.Parsed
		p.Decode(frame)
		m.FillICMP(&p)
	}
	return m
}

// FillICMP sets the ICMP echo identifier and the quoted header of an ICMP
// error from a decoded frame. It does not allocate.
func (m *Match) FillICMP(p *packet.Parsed) {
	m.ICMPID, m.ICMPData = 0, ICMPData{}
	if p.Layer < packet.Layer4 || p.IPVersion != 4 || p.IPProto != packet.IPProtoICMP {
		return
	}
	m.ICMPID = p.ICMPIdent
	q := p.Quoted()
	if q == nil {
		return
	}
	d := &m.ICMPData
	d.Valid = true
	d.Src, d.Dst, d.Proto = q.Src(), q.Dst(), q.Protocol()
	l4 := p.QuotedL4()
	switch d.Proto {
	case packet.IPProtoTCP, packet.IPProtoUDP:
		d.SrcPort, d.DstPort = binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
	case packet.IPProtoICMP:
		id := binary.BigEndian.Uint16(l4[4:])
		d.SrcPort, d.DstPort = id, id
	}
}

// MatchFromFrame decodes frame and returns its match; ok is false when the
// frame is too short to be Ethernet.
func MatchFromFrame(frame []byte) (m Match, ok bool) {
	var p packet.Parsed
	p.Decode(frame)
	if p.Layer < packet.Layer2 {
		return m, false
	}
	p.FlowKey(0, &m.FlowKey)
	m.FillICMP(&p)
	return m, true
}

func addr4(b [4]byte) netip.Addr { return netip.AddrFrom4(b) }

func u32(b [4]byte) uint32 { return binary.BigEndian.Uint32(b[:]) }

func isMulticastMAC(m [6]byte) bool { return m[0]&1 != 0 }

var broadcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// maskFor builds the megaflow mask of a simulation that read the fields in
// seen and wrote those in written, following MidoNet's rules: the input port
// is always exact; seen Ethernet fields exact; any seen L3 field makes the
// ethertype and (for IPv4) the fragment type exact; any seen L4 field makes
// the protocol exact; a rewrite of an IP or L4 field makes ethertype and
// protocol exact so the set-action is valid. A seen ICMP echo identifier is
// exact with the ICMP type (which tells echoes from errors) and protocol.
func maskFor(seen, written FieldSet) packet.FlowKey {
	var k packet.FlowKey
	k.InPort = ^uint32(0)
	if seen&FieldEthSrc != 0 {
		k.EthSrc = broadcastMAC
	}
	if seen&FieldEthDst != 0 {
		k.EthDst = broadcastMAC
	}
	if seen&FieldVLAN != 0 {
		k.VLAN = 0xffff
	}
	l3 := seen&(fieldsL3|fieldsL4|FieldICMPID|FieldARPSHA|FieldARPTHA) != 0 || written&(fieldsL3|fieldsL4) != 0
	l4 := seen&(fieldsL4|FieldICMPID) != 0 || written&fieldsL4 != 0
	if seen&FieldEthType != 0 || l3 {
		k.EthType = 0xffff
	}
	if l3 {
		k.NwFrag = 0xff
	}
	if seen&FieldNwSrc != 0 {
		k.NwSrc = [4]byte{0xff, 0xff, 0xff, 0xff}
	}
	if seen&FieldNwDst != 0 {
		k.NwDst = [4]byte{0xff, 0xff, 0xff, 0xff}
	}
	if seen&FieldNwProto != 0 || l4 || written&fieldsL3 != 0 {
		k.NwProto = 0xff
	}
	if seen&FieldNwTOS != 0 {
		k.NwTOS = 0xff
	}
	if seen&FieldNwTTL != 0 {
		k.NwTTL = 0xff
	}
	if seen&(FieldTpSrc|FieldICMPID) != 0 {
		k.TpSrc = 0xffff
	}
	if seen&FieldICMPID != 0 {
		k.ICMPID = 0xffff
	}
	if seen&FieldTpDst != 0 {
		k.TpDst = 0xffff
	}
	if seen&FieldARPSHA != 0 {
		k.ARPSHA = broadcastMAC
	}
	if seen&FieldARPTHA != 0 {
		k.ARPTHA = broadcastMAC
	}
	return k
}

// String describes the packet on one line, for logs and traces: its MACs,
// VLAN, and its IPv4 or ARP addresses, protocol and ports.
func (m *Match) String() string {
	var b strings.Builder
	b.WriteString(topology.FormatMAC(m.EthSrc) + " > " + topology.FormatMAC(m.EthDst))
	if m.VLAN&packet.VLANPresent != 0 {
		b.WriteString(" vlan " + strconv.Itoa(int(m.VLAN&0x0fff)))
	}
	src, dst := netip.AddrFrom4(m.NwSrc).String(), netip.AddrFrom4(m.NwDst).String()
	switch m.EthType {
	case packet.EtherTypeIPv4:
		b.WriteString(" ipv4 ")
		switch m.NwProto {
		case packet.IPProtoTCP, packet.IPProtoUDP:
			name := "tcp"
			if m.NwProto == packet.IPProtoUDP {
				name = "udp"
			}
			b.WriteString(name + " " + src + ":" + strconv.Itoa(int(m.TpSrc)) + " > " + dst + ":" + strconv.Itoa(int(m.TpDst)))
		case packet.IPProtoICMP:
			b.WriteString("icmp " + src + " > " + dst + " type " + strconv.Itoa(int(m.TpSrc)) + " code " + strconv.Itoa(int(m.TpDst)))
		default:
			b.WriteString("proto " + strconv.Itoa(int(m.NwProto)) + " " + src + " > " + dst)
		}
		if m.NwFrag != packet.FragNone {
			b.WriteString(" fragment")
		}
		b.WriteString(" ttl " + strconv.Itoa(int(m.NwTTL)))
	case packet.EtherTypeARP:
		op := "request"
		if m.NwProto == 2 {
			op = "reply"
		}
		b.WriteString(" arp " + op + " " + src + " > " + dst)
	default:
		b.WriteString(" ethertype 0x" + strconv.FormatUint(uint64(m.EthType), 16))
	}
	return b.String()
}
