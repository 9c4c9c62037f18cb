package flowstate

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"github.com/google/uuid"
)

// Message is one replication message: the state a simulation created or
// refreshed, sent to every peer host that may see the connection's traffic
// before the packet itself. A simulation contributes at most one conntrack
// key plus the NAT keys it created or used.
type Message struct {
	Sender      uuid.UUID // host that simulated the flow
	IngressPort uuid.UUID
	EgressPorts []uuid.UUID
	Conntrack   []ConnKey
	NAT         []NATEntry
}

// Wire format, little-endian:
//
//	magic "MS" | version 1 | sender 16 | ingress port 16
//	u16 n, n × egress port 16
//	u16 n, n × conntrack {device 16, src addr, dst addr, src port 2, dst port 2, proto 1}
//	u16 n, n × nat {type 1, device 16, src addr, dst addr, src port 2, dst port 2, proto 1, binding addr, binding port 2}
//
// where an addr is a family byte (0 none, 4, 6) followed by 0, 4 or 16 bytes.
const (
	messageVersion = 1
	// MaxMessageLen bounds an encoded message so that it fits an overlay
	// packet on a 1500-byte underlay (MidoNet reserves 70 bytes of headers).
	MaxMessageLen = 1500 - 70
)

var messageMagic = [2]byte{'M', 'S'}

// Errors returned by UnmarshalBinary and AppendBinary.
var (
	ErrTruncated   = errors.New("flowstate: message truncated")
	ErrBadHeader   = errors.New("flowstate: not a flow-state message or unknown version")
	ErrBadAddress  = errors.New("flowstate: bad address family")
	ErrBadKeyType  = errors.New("flowstate: unknown NAT key type")
	ErrTrailing    = errors.New("flowstate: trailing bytes after message")
	ErrTooLarge    = errors.New("flowstate: message exceeds MaxMessageLen; split the keys over several messages")
	ErrTooManyKeys = errors.New("flowstate: more than 65535 entries in a group")
)

// AppendBinary appends the encoded message to b. It fails when a group has
// more than 65535 entries or the result exceeds MaxMessageLen.
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	if len(m.EgressPorts) > 0xffff || len(m.Conntrack) > 0xffff || len(m.NAT) > 0xffff {
		return b, ErrTooManyKeys
	}
	start := len(b)
	b = append(b, messageMagic[0], messageMagic[1], messageVersion)
	b = append(b, m.Sender[:]...)
	b = append(b, m.IngressPort[:]...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(m.EgressPorts)))
	for _, p := range m.EgressPorts {
		b = append(b, p[:]...)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(m.Conntrack)))
	for i := range m.Conntrack {
		k := &m.Conntrack[i]
		b = append(b, k.Device[:]...)
		b = appendAddr(b, k.Src)
		b = appendAddr(b, k.Dst)
		b = binary.LittleEndian.AppendUint16(b, k.SrcPort)
		b = binary.LittleEndian.AppendUint16(b, k.DstPort)
		b = append(b, k.Proto)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(m.NAT)))
	for i := range m.NAT {
		e := &m.NAT[i]
		b = append(b, byte(e.Key.Type))
		b = append(b, e.Key.Device[:]...)
		b = appendAddr(b, e.Key.Src)
		b = appendAddr(b, e.Key.Dst)
		b = binary.LittleEndian.AppendUint16(b, e.Key.SrcPort)
		b = binary.LittleEndian.AppendUint16(b, e.Key.DstPort)
		b = append(b, e.Key.Proto)
		b = appendAddr(b, e.Binding.IP)
		b = binary.LittleEndian.AppendUint16(b, e.Binding.Port)
	}
	if len(b)-start > MaxMessageLen {
		return b[:start], ErrTooLarge
	}
	return b, nil
}

// MarshalBinary returns the encoded message.
func (m *Message) MarshalBinary() ([]byte, error) { return m.AppendBinary(nil) }

func appendAddr(b []byte, a netip.Addr) []byte {
	switch {
	case a.Is4():
		x := a.As4()
		return append(append(b, 4), x[:]...)
	case a.Is6():
		x := a.As16()
		return append(append(b, 6), x[:]...)
	}
	return append(b, 0)
}

// UnmarshalBinary decodes b into m, reusing m's slices. Malformed input
// returns an error and leaves m in an unspecified state; it never panics.
func (m *Message) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	if magic := d.bytes(3); magic == nil || magic[0] != messageMagic[0] || magic[1] != messageMagic[1] || magic[2] != messageVersion {
		if d.err != nil {
			return d.err
		}
		return ErrBadHeader
	}
	m.Sender = d.uuid()
	m.IngressPort = d.uuid()
	n := int(d.u16())
	if d.err == nil && n*16 > len(d.b) {
		return ErrTruncated
	}
	m.EgressPorts = m.EgressPorts[:0]
	for range n {
		m.EgressPorts = append(m.EgressPorts, d.uuid())
	}
	n = int(d.u16())
	if d.err == nil && n*22 > len(d.b) { // smallest entry: 16 + 1 + 1 + 2 + 2 + 1 - 1
		return ErrTruncated
	}
	m.Conntrack = m.Conntrack[:0]
	for i := 0; i < n && d.err == nil; i++ {
		var k ConnKey
		k.Device = d.uuid()
		k.Src = d.addr()
		k.Dst = d.addr()
		k.SrcPort = d.u16()
		k.DstPort = d.u16()
		k.Proto = d.u8()
		m.Conntrack = append(m.Conntrack, k)
	}
	n = int(d.u16())
	if d.err == nil && n*27 > len(d.b) {
		return ErrTruncated
	}
	m.NAT = m.NAT[:0]
	for i := 0; i < n && d.err == nil; i++ {
		var e NATEntry
		e.Key.Type = NATKeyType(d.u8())
		if d.err == nil && !e.Key.Type.Valid() {
			return ErrBadKeyType
		}
		e.Key.Device = d.uuid()
		e.Key.Src = d.addr()
		e.Key.Dst = d.addr()
		e.Key.SrcPort = d.u16()
		e.Key.DstPort = d.u16()
		e.Key.Proto = d.u8()
		e.Binding.IP = d.addr()
		e.Binding.Port = d.u16()
		m.NAT = append(m.NAT, e)
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return ErrTrailing
	}
	return nil
}

// decoder reads fields from b, recording the first error; after an error
// every read returns zero.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = ErrTruncated
		return nil
	}
	x := d.b[:n]
	d.b = d.b[n:]
	return x
}

func (d *decoder) u8() uint8 {
	if x := d.bytes(1); x != nil {
		return x[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if x := d.bytes(2); x != nil {
		return binary.LittleEndian.Uint16(x)
	}
	return 0
}

func (d *decoder) uuid() (u uuid.UUID) {
	if x := d.bytes(16); x != nil {
		copy(u[:], x)
	}
	return u
}

func (d *decoder) addr() netip.Addr {
	switch d.u8() {
	case 0:
		return netip.Addr{}
	case 4:
		if x := d.bytes(4); x != nil {
			return netip.AddrFrom4([4]byte(x))
		}
	case 6:
		if x := d.bytes(16); x != nil {
			return netip.AddrFrom16([16]byte(x))
		}
	default:
		if d.err == nil {
			d.err = ErrBadAddress
		}
	}
	return netip.Addr{}
}
