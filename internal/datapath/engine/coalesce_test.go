package engine

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"github.com/midonet/midonet/internal/packet"
)

// segments splits a super-frame the way the engine does for a port that
// cannot segment, returning copies of the segments.
func segments(t testing.TB, f []byte, o Offload) [][]byte {
	t.Helper()
	var segs [][]byte
	if _, ok := segmentTCPv4(f, &o, nil, func(s []byte) { segs = append(segs, slices.Clone(s)) }); !ok {
		t.Fatal("segmentTCPv4 refused the super-frame")
	}
	return segs
}

func payloadOf(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*13 + 1)
	}
	return p
}

func TestCoalescerRebuildsTheSuperFrame(t *testing.T) {
	for _, size := range []int{2000, 3500, 4000, 60000} {
		super, o := gsoTCP(t, payloadOf(size), 1000)
		segs := segments(t, super, o)
		var c Coalescer
		for i, s := range segs {
			if !c.Add(s, nil) {
				t.Fatalf("%d bytes: segment %d of %d refused", size, i, len(segs))
			}
		}
		got, gotO := c.Take()
		if c.Pending() {
			t.Error("Take left a frame pending")
		}
		if !bytes.Equal(got, super) {
			t.Errorf("%d bytes: merged frame differs from the super-frame the segments came from", size)
		}
		if gotO == nil || *gotO != o {
			t.Errorf("%d bytes: offload %+v, want %+v", size, gotO, o)
		}
		// Segmenting the merged frame again gives the same segments.
		again := segments(t, got, *gotO)
		if len(again) != len(segs) {
			t.Fatalf("%d bytes: %d segments again, want %d", size, len(again), len(segs))
		}
		for i := range segs {
			if !bytes.Equal(again[i], segs[i]) {
				t.Errorf("%d bytes: segment %d differs after a round trip", size, i)
			}
		}
	}
}

func TestCoalescerSingleSegmentComesBackAsOffered(t *testing.T) {
	super, o := gsoTCP(t, payloadOf(900), 1000)
	seg := segments(t, super, o)[0]
	var c Coalescer
	if !c.Add(seg, nil) {
		t.Fatal("a lone data segment was refused")
	}
	got, gotO := c.Take()
	if !bytes.Equal(got, seg) || gotO != nil {
		t.Errorf("got %d bytes with offload %+v, want the segment unchanged without offload", len(got), gotO)
	}

	// One with its checksum pending keeps that offload.
	pf, po := partialData(t, seg)
	if !c.Add(pf, &po) {
		t.Fatal("a segment with a pending checksum was refused")
	}
	got, gotO = c.Take()
	if !bytes.Equal(got, pf) || gotO == nil || *gotO != po {
		t.Errorf("got offload %+v, want %+v", gotO, po)
	}
}

// partialData returns a copy of seg with its TCP checksum left pending.
func partialData(t testing.TB, seg []byte) ([]byte, Offload) {
	f := slices.Clone(seg)
	ip := f[14:]
	l4 := int(binary.BigEndian.Uint16(ip[2:])) - 20
	sum := packet.PseudoHeaderSum4([4]byte(ip[12:16]), [4]byte(ip[16:20]), 6, uint16(l4))
	binary.BigEndian.PutUint16(ip[20+16:], uint16(sum))
	return f, Offload{NeedsCsum: true, CsumStart: 34, CsumOffset: 16}
}

func TestCoalescerMixesCompleteAndPendingChecksums(t *testing.T) {
	super, o := gsoTCP(t, payloadOf(3000), 1000)
	segs := segments(t, super, o)
	var c Coalescer
	pf, po := partialData(t, segs[1])
	if !c.Add(segs[0], nil) || !c.Add(pf, &po) || !c.Add(segs[2], nil) {
		t.Fatal("segments refused")
	}
	got, gotO := c.Take()
	if !bytes.Equal(got, super) || gotO == nil || *gotO != o {
		t.Error("merged frame differs from the original super-frame")
	}
}

// TestCoalescerRefuses checks the segments that must not join the pending
// frame (the second Add fails) or must not start one (the first fails).
func TestCoalescerRefuses(t *testing.T) {
	super, o := gsoTCP(t, payloadOf(3000), 1000)
	base := segments(t, super, o)
	first, second := base[0], base[1]
	// fix recomputes the checksums after a test changed a header.
	fix := func(f []byte) []byte {
		ip := f[14:]
		ihl := int(ip[0]&0xf) * 4
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip[:ihl], 0))
		tcp := ip[ihl:binary.BigEndian.Uint16(ip[2:])]
		tcp[16], tcp[17] = 0, 0
		binary.BigEndian.PutUint16(tcp[16:], packet.Checksum(tcp, packet.PseudoHeaderSum4([4]byte(ip[12:16]), [4]byte(ip[16:20]), 6, uint16(len(tcp)))))
		return f
	}
	edit := func(f []byte, at int, b ...byte) []byte {
		g := slices.Clone(f)
		copy(g[at:], b)
		return fix(g)
	}
	tcpAt := 14 + 20
	seqOf := func(f []byte) uint32 { return binary.BigEndian.Uint32(f[tcpAt+4:]) }
	withSeq := func(f []byte, seq uint32) []byte {
		g := slices.Clone(f)
		binary.BigEndian.PutUint32(g[tcpAt+4:], seq)
		return fix(g)
	}
	var withOptions []byte
	{
		// An IPv4 header with a 4-byte option (NOP x4) in front of TCP.
		g := append(slices.Clone(first[:34]), 1, 1, 1, 1)
		g = append(g, first[34:]...)
		g[14] = 0x46
		binary.BigEndian.PutUint16(g[16:], binary.BigEndian.Uint16(first[16:])+4)
		withOptions = fix(g)
	}
	tagged := append(slices.Clone(first[:12]), 0x81, 0x00, 0x00, 0x05)
	tagged = append(tagged, first[12:]...)
	badSum := slices.Clone(second)
	badSum[len(badSum)-1] ^= 0xff
	// A short segment (without PSH) followed by a full one.
	super2, o2 := gsoTCP(t, payloadOf(3500), 1000)
	short := edit(segments(t, super2, o2)[3], tcpAt+13, tcpACK)
	header := slices.Clone(second[:tcpAt+20])
	binary.BigEndian.PutUint16(header[16:], 40)

	tests := []struct {
		name          string
		first, second []byte
		firstOK       bool
	}{
		{"sequence gap", first, withSeq(second, seqOf(second)+1), true},
		{"other source port", first, edit(second, tcpAt, 0x12, 0x34), true},
		{"other destination address", first, edit(second, 14+16, 10, 9, 9, 9), true},
		{"other TTL", first, edit(second, 14+8, 3), true},
		{"other window", first, edit(second, tcpAt+14, 0, 1), true},
		{"other acknowledgement", first, edit(second, tcpAt+8, 0, 0, 0, 9), true},
		{"other MAC", first, edit(second, 0, 2, 2, 2, 2, 2, 2), true},
		{"corrupt checksum", first, badSum, true},
		{"FIN", first, edit(second, tcpAt+13, tcpACK|tcpFIN), true},
		{"SYN", edit(first, tcpAt+13, tcpSYN|tcpACK), second, false},
		{"RST", first, edit(second, tcpAt+13, tcpRST|tcpACK), true},
		{"no ACK", edit(first, tcpAt+13, tcpPSH), second, false},
		{"after PSH", edit(first, tcpAt+13, tcpACK|tcpPSH), second, true},
		{"larger than the first", short, withSeq(first, seqOf(short)+500), true},
		{"IP options", withOptions, second, false},
		{"VLAN tag", tagged, second, false},
		{"fragment", edit(first, 14+6, 0x20, 0), second, false},
		{"no payload", header, second, false},
		{"truncated", first[:40], second, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Coalescer
			if got := c.Add(tc.first, nil); got != tc.firstOK {
				t.Fatalf("first Add = %v, want %v", got, tc.firstOK)
			}
			if !tc.firstOK {
				if c.Pending() {
					t.Error("a refused frame left something pending")
				}
				return
			}
			if c.Add(tc.second, nil) {
				t.Fatal("second segment merged")
			}
			got, o := c.Take()
			if !bytes.Equal(got, tc.first) || o != nil {
				t.Error("the pending frame changed after a refused Add")
			}
		})
	}
}

func TestCoalescerStopsAt64KiB(t *testing.T) {
	super, o := gsoTCP(t, payloadOf(70000), 1400)
	segs := segments(t, super, o)
	var c Coalescer
	taken := 0
	for _, s := range segs {
		if !c.Add(s, nil) {
			break
		}
		taken++
	}
	f, _ := c.Take()
	if taken == len(segs) || len(f)-14 > 65535 || len(f)-14+1400 <= 65535 {
		t.Errorf("merged %d of %d segments into %d bytes: want the most that fit 65535", taken, len(segs), len(f)-14)
	}
}

func TestCoalescerIgnoresEthernetPadding(t *testing.T) {
	super, o := gsoTCP(t, payloadOf(8), 4)
	segs := segments(t, super, o)
	var c Coalescer
	for _, s := range segs {
		padded := append(slices.Clone(s), make([]byte, 60-len(s))...)
		if !c.Add(padded, nil) {
			t.Fatal("padded segment refused")
		}
	}
	got, _ := c.Take()
	if !bytes.Equal(got, super) {
		t.Error("padding leaked into the merged frame")
	}
}

func TestCoalescerDoesNotAllocate(t *testing.T) {
	super, o := gsoTCP(t, payloadOf(3000), 1000)
	segs := segments(t, super, o)
	var c Coalescer
	c.Add(segs[0], nil)
	c.Take()
	if n := testing.AllocsPerRun(100, func() {
		for _, s := range segs {
			c.Add(s, nil)
		}
		c.Take()
	}); n != 0 {
		t.Errorf("%v allocations per burst, want 0", n)
	}
}

func FuzzCoalescer(f *testing.F) {
	super, o := gsoTCP(f, payloadOf(3000), 1000)
	segs := segments(f, super, o)
	f.Add(segs[0], segs[1])
	f.Add(segs[1], segs[0])
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var c Coalescer
		for _, fr := range [][]byte{a, b, a} {
			if !c.Add(fr, nil) && c.Pending() {
				c.Take()
				c.Add(fr, nil)
			}
		}
		if !c.Pending() {
			return
		}
		got, off := c.Take()
		if off != nil {
			// Whatever merged must segment again.
			if _, ok := segmentTCPv4(got, off, nil, func([]byte) {}); !ok {
				t.Fatal("a merged frame does not segment")
			}
		}
	})
}
