package translate

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/sim/simtest"
)

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
	caps := []*simtest.Port{{}, {}}
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
		frame := simtest.Frame(rng, simtest.Kind(rng.IntN(5)), rng.IntN(4) == 0)
		orig, _ := sim.MatchFromFrame(frame)
		egress := make([]sim.Egress, 1+rng.IntN(3))
		for k := range egress {
			egress[k] = simtest.Egress(rng, &orig, targets[rng.IntN(2)], ^sim.FieldSet(0))
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
			outs := caps[targets2index(eg.Port)].Take()
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
		outs := [][][]byte{caps[0].Take(), caps[1].Take()}
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
