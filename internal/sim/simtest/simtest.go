// Package simtest makes random packets and the random rewrites a
// simulation can make of them, for property tests of what consumes
// simulation results (the translation to datapath actions, the datapaths
// that execute them), and a port that keeps what a datapath sends it.
package simtest

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"sync"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
)

// Kind is a kind of packet Frame makes.
type Kind uint8

// Kinds of packets.
const (
	TCP           Kind = iota
	UDP                // with a checksum
	UDPNoChecksum      // sent without one
	ICMPEcho
	ICMPError // a host unreachable quoting a UDP datagram
)

// Frame returns a random frame of the given kind, with a VLAN tag if
// tagged.
func Frame(rng *rand.Rand, kind Kind, tagged bool) []byte {
	addr := func() netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))})
	}
	spec := sim.PacketSpec{EthSrc: [6]byte{2, 0, 0, 0, 0, byte(rng.IntN(256))}, EthDst: [6]byte{2, 0, 0, 0, 1, byte(rng.IntN(256))},
		Src: addr(), Dst: addr(), SrcPort: uint16(rng.IntN(65536)), DstPort: uint16(rng.IntN(65536)),
		TTL: uint8(2 + rng.IntN(250)), Payload: make([]byte, rng.IntN(64))}
	for i := range spec.Payload {
		spec.Payload[i] = byte(rng.IntN(256))
	}
	if tagged {
		spec.VLAN = uint16(1 + rng.IntN(4094))
	}
	switch kind {
	case TCP:
		spec.Proto = packet.IPProtoTCP
	case UDP, UDPNoChecksum, ICMPError:
		spec.Proto = packet.IPProtoUDP
	case ICMPEcho:
		spec.Proto, spec.SrcPort, spec.DstPort, spec.ICMPID = packet.IPProtoICMP, uint16(packet.ICMPEchoRequest), 0, uint16(rng.IntN(65536))
	}
	f, err := spec.Frame()
	if err != nil {
		panic(err) // the spec has IPv4 addresses
	}
	switch kind {
	case UDPNoChecksum:
		_, l4 := packet.IPv4Headers(f)
		l4[6], l4[7] = 0, 0
	case ICMPError:
		var p packet.Parsed
		p.Decode(f)
		e, ok := packet.AppendICMPUnreachable(nil, &p, packet.ICMPErrorFields{EthSrc: spec.EthDst, EthDst: spec.EthSrc,
			Src: addr().As4(), TTL: 64}, packet.ICMPCodeHostUnreachable, 0)
		if !ok {
			panic("no ICMP error for a unicast UDP datagram")
		}
		f = e
	}
	return f
}

// Egress returns a random rewrite of a packet like m to port, as the
// simulation can make one: of the fields in allowed, each with a chance of
// one in three, those that apply to the packet (ports for TCP and UDP, the
// identifier for an echo, the quoted header for an error).
func Egress(rng *rand.Rand, m *sim.Match, port sim.ID, allowed sim.FieldSet) sim.Egress {
	e := sim.Egress{Port: port}
	maybe := func(f sim.Field) bool {
		if allowed&f != 0 && rng.IntN(3) == 0 {
			e.Set |= f
			return true
		}
		return false
	}
	v := &e.Values
	if maybe(sim.FieldEthSrc) {
		v.EthSrc = [6]byte{2, 9, 9, 9, 9, byte(rng.IntN(256))}
	}
	if maybe(sim.FieldEthDst) {
		v.EthDst = [6]byte{2, 8, 8, 8, 8, byte(rng.IntN(256))}
	}
	if maybe(sim.FieldVLAN) && rng.IntN(2) == 0 {
		v.VLAN = packet.VLANPresent | uint16(1+rng.IntN(4094)) // else pop
	}
	if maybe(sim.FieldNwSrc) {
		v.NwSrc = [4]byte{203, 0, 113, byte(rng.IntN(256))}
	}
	if maybe(sim.FieldNwDst) {
		v.NwDst = [4]byte{198, 51, 100, byte(rng.IntN(256))}
	}
	if maybe(sim.FieldNwTOS) {
		v.NwTOS = uint8(rng.IntN(256))
	}
	if maybe(sim.FieldNwTTL) {
		v.NwTTL = uint8(rng.IntN(256))
	}
	switch {
	case m.NwProto == packet.IPProtoTCP || m.NwProto == packet.IPProtoUDP:
		if maybe(sim.FieldTpSrc) {
			v.TpSrc = uint16(rng.IntN(65536))
		}
		if maybe(sim.FieldTpDst) {
			v.TpDst = uint16(rng.IntN(65536))
		}
	case m.ICMPData.Valid:
		if maybe(sim.FieldICMPData) {
			v.ICMPData = m.ICMPData
			v.ICMPData.Src = [4]byte{203, 0, 113, byte(rng.IntN(256))}
			v.ICMPData.SrcPort = uint16(rng.IntN(65536))
		}
	case m.NwProto == packet.IPProtoICMP:
		if maybe(sim.FieldICMPID) {
			v.ICMPID = uint16(rng.IntN(65536))
		}
	}
	return e
}

// Port is a datapath port (an engine.Transmitter) that keeps copies of
// what it is sent.
type Port struct {
	mu     sync.Mutex
	frames [][]byte
}

// Transmit keeps a copy of frame.
func (p *Port) Transmit(frame []byte, _ *datapath.TunnelSet) error {
	p.mu.Lock()
	p.frames = append(p.frames, bytes.Clone(frame))
	p.mu.Unlock()
	return nil
}

// Take returns what the port was sent since the last Take.
func (p *Port) Take() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.frames
	p.frames = nil
	return f
}
