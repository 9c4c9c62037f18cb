package translate

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
)

// capture is a port that keeps what it is sent.
type capture struct {
	mu     sync.Mutex
	frames [][]byte
}

func (c *capture) Transmit(frame []byte, _ *datapath.TunnelSet) error {
	c.mu.Lock()
	c.frames = append(c.frames, bytes.Clone(frame))
	c.mu.Unlock()
	return nil
}

func (c *capture) take() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.frames
	c.frames = nil
	return f
}

// RandomPacket returns a random frame of one of the kinds the simulation
// rewrites: TCP, UDP (with or without a checksum), an ICMP echo or an ICMP
// error quoting a UDP datagram, tagged or not.
func randomPacket(rng *rand.Rand) []byte {
	addr := func() netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))})
	}
	spec := sim.PacketSpec{EthSrc: [6]byte{2, 0, 0, 0, 0, byte(rng.IntN(256))}, EthDst: [6]byte{2, 0, 0, 0, 1, byte(rng.IntN(256))},
		Src: addr(), Dst: addr(), SrcPort: uint16(rng.IntN(65536)), DstPort: uint16(rng.IntN(65536)),
		TTL: uint8(2 + rng.IntN(250)), Payload: make([]byte, rng.IntN(40))}
	if rng.IntN(4) == 0 {
		spec.VLAN = uint16(1 + rng.IntN(4094))
	}
	kind := rng.IntN(5)
	switch kind {
	case 0:
		spec.Proto = packet.IPProtoTCP
	case 1, 2:
		spec.Proto = packet.IPProtoUDP
	case 3:
		spec.Proto, spec.SrcPort, spec.DstPort, spec.ICMPID = packet.IPProtoICMP, uint16(packet.ICMPEchoRequest), 0, uint16(rng.IntN(65536))
	case 4:
		spec.Proto = packet.IPProtoUDP
	}
	f, err := spec.Frame()
	if err != nil {
		panic(err)
	}
	switch kind {
	case 2: // no UDP checksum
		ip, l4 := packet.IPv4Headers(f)
		_ = ip
		l4[6], l4[7] = 0, 0
	case 4: // an ICMP error about the datagram, from a router
		var p packet.Parsed
		p.Decode(f)
		e, ok := packet.AppendICMPUnreachable(nil, &p, packet.ICMPErrorFields{EthSrc: spec.EthDst, EthDst: spec.EthSrc,
			Src: addr().As4(), TTL: 64}, packet.ICMPCodeHostUnreachable, 0)
		if !ok {
			panic("no ICMP error")
		}
		f = e
	}
	return f
}

// randomEgress returns a rewrite the simulation can make of a packet like
// m, to port.
func randomEgress(rng *rand.Rand, m *sim.Match, port sim.ID) sim.Egress {
	e := sim.Egress{Port: port}
	maybe := func(f sim.Field) bool {
		if rng.IntN(3) == 0 {
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

// wantMatch is the packet egress e wants, as the simulation describes it.
func wantMatch(orig *sim.Match, e *sim.Egress) sim.Match {
	w := *orig
	apply(&w, e.Set, &e.Values)
	return w
}

// checkOutput checks a frame that left for an egress: it is the packet the
// simulation described, with valid checksums.
func checkOutput(t *testing.T, seed uint64, i int, out []byte, want *sim.Match) {
	t.Helper()
	got, ok := sim.MatchFromFrame(out)
	if !ok {
		t.Fatalf("seed %d case %d: undecodable output %x", seed, i, out)
	}
	if got != *want {
		t.Fatalf("seed %d case %d: output\n got %+v\nwant %+v", seed, i, got, *want)
	}
	var p packet.Parsed
	p.Decode(out)
	if !p.IPChecksumOK {
		t.Fatalf("seed %d case %d: IPv4 header checksum broken in %x", seed, i, out)
	}
	if c := p.ICMPv4(); c != nil && !c.IsChecksumValid() {
		t.Fatalf("seed %d case %d: ICMP checksum broken in %x", seed, i, out)
	}
	if q := p.Quoted(); q != nil && !q.IsChecksumValid() {
		t.Fatalf("seed %d case %d: quoted IPv4 checksum broken in %x", seed, i, out)
	}
	if l4 := p.TCP(); l4 != nil || p.UDP() != nil && p.UDP().Checksum() != 0 {
		seg := p.IPv4().Payload()
		if packet.Checksum(seg, packet.PseudoHeaderSum4(p.Src.As4(), p.Dst.As4(), p.IPProto, uint16(len(seg)))) != 0 {
			t.Fatalf("seed %d case %d: L4 checksum broken in %x", seed, i, out)
		}
	}
}

// For every rewrite the simulation can make, the translation's actions,
// executed by a datapath, give each egress exactly the packet the
// simulation described: a flow's actions (every field a datapath can set)
// and a userspace execution (ICMP identifiers and quoted headers too).
func TestTranslationGivesTheSimulatedPacket(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	e := engine.New(engine.Config{})
	defer e.Close()
	caps := []*capture{{}, {}}
	var nos [2]datapath.PortNo
	for i, c := range caps {
		p, err := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: []string{"a", "b"}[i]}, c)
		if err != nil {
			t.Fatal(err)
		}
		nos[i] = p.No
	}
	where := &Ports{Local: map[sim.ID]datapath.PortNo{hereA: nos[0], hereB: nos[1]}}
	targets := []sim.ID{hereA, hereB}
	for i := range 2000 {
		frame := randomPacket(rng)
		orig, _ := sim.MatchFromFrame(frame)
		egress := make([]sim.Egress, 1+rng.IntN(3))
		for k := range egress {
			egress[k] = randomEgress(rng, &orig, targets[rng.IntN(2)])
		}
		// Userspace: each egress from its own copy.
		for k := range egress {
			eg := &egress[k]
			cp := bytes.Clone(frame)
			acts, drops := Userspace(nil, cp, &orig, eg, where, dir)
			if drops != (Drops{}) {
				t.Fatalf("seed %d case %d: drops %+v", seed, i, drops)
			}
			if err := e.Execute(cp, acts, 0); err != nil {
				t.Fatal(err)
			}
			outs := caps[targets2index(eg.Port)].take()
			if len(outs) != 1 {
				t.Fatalf("seed %d case %d: %d frames out, want 1", seed, i, len(outs))
			}
			want := wantMatch(&orig, eg)
			checkOutput(t, seed, i, outs[0], &want)
		}
		// A flow: one action list for every egress, when no egress sets
		// what a flow cannot.
		flowable := true
		for k := range egress {
			flowable = flowable && egress[k].Set&(sim.FieldICMPID|sim.FieldICMPData) == 0
		}
		if !flowable {
			continue
		}
		acts, _ := Flow(nil, &orig, egress, where, dir)
		if err := e.Execute(frame, acts, 0); err != nil {
			t.Fatal(err)
		}
		outs := [][][]byte{caps[0].take(), caps[1].take()}
		for k := range egress {
			idx := targets2index(egress[k].Port)
			if len(outs[idx]) == 0 {
				t.Fatalf("seed %d case %d: egress %d got no frame", seed, i, k)
			}
			want := wantMatch(&orig, &egress[k])
			checkOutput(t, seed, i, outs[idx][0], &want)
			outs[idx] = outs[idx][1:]
		}
	}
}

func targets2index(p sim.ID) int {
	if p == hereA {
		return 0
	}
	return 1
}
