package classifier

import (
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/midonet/midonet/internal/packet"
)

type val struct{ name string }

func setVal(name string) func(v *val) { return func(v *val) { v.name = name } }

func ip(a, b, c, d byte) [4]byte { return [4]byte{a, b, c, d} }

// fullMask returns a mask with every bit of the given fields set.
func maskOf(fields ...string) packet.FlowKey {
	var m packet.FlowKey
	for _, f := range fields {
		switch f {
		case "inport":
			m.InPort = ^uint32(0)
		case "ethtype":
			m.EthType = 0xffff
		case "nwdst":
			m.NwDst = ip(255, 255, 255, 255)
		case "nwdst/24":
			m.NwDst = ip(255, 255, 255, 0)
		case "nwsrc":
			m.NwSrc = ip(255, 255, 255, 255)
		case "proto":
			m.NwProto = 0xff
		case "tpdst":
			m.TpDst = 0xffff
		case "tunid":
			m.TunID = ^uint32(0)
		}
	}
	return m
}

func pkt(in uint32, src, dst [4]byte, proto uint8, dport uint16) packet.FlowKey {
	return packet.FlowKey{InPort: in, EthType: 0x0800, NwSrc: src, NwDst: dst, NwProto: proto, TpDst: dport, NwTTL: 64}
}

func TestLookupOverlappingMasks(t *testing.T) {
	tb := New[val]()
	type flow struct {
		name string
		key  packet.FlowKey
		mask packet.FlowKey
	}
	flows := []flow{
		{"port1-to-10.0.0.5", pkt(1, ip(0, 0, 0, 0), ip(10, 0, 0, 5), 0, 0), maskOf("inport", "ethtype", "nwdst")},
		{"port1-to-10.0.1/24", pkt(1, ip(0, 0, 0, 0), ip(10, 0, 1, 0), 0, 0), maskOf("inport", "ethtype", "nwdst/24")},
		{"port2-tcp-80", pkt(2, ip(0, 0, 0, 0), ip(0, 0, 0, 0), 6, 80), maskOf("inport", "ethtype", "proto", "tpdst")},
		{"port2-tcp-443-from-1.2.3.4", pkt(2, ip(1, 2, 3, 4), ip(0, 0, 0, 0), 6, 443), maskOf("inport", "ethtype", "proto", "tpdst", "nwsrc")},
	}
	for _, f := range flows {
		if _, err := tb.Insert(&f.key, &f.mask, setVal(f.name)); err != nil {
			t.Fatalf("insert %s: %v", f.name, err)
		}
	}
	if got, want := tb.Masks(), 4; got != want {
		t.Errorf("Masks() = %d, want %d", got, want)
	}
	tests := []struct {
		name string
		key  packet.FlowKey
		want string // "" for a miss
	}{
		{"exact host", pkt(1, ip(9, 9, 9, 9), ip(10, 0, 0, 5), 17, 53), "port1-to-10.0.0.5"},
		{"prefix", pkt(1, ip(9, 9, 9, 9), ip(10, 0, 1, 77), 6, 22), "port1-to-10.0.1/24"},
		{"prefix other in-port misses", pkt(3, ip(9, 9, 9, 9), ip(10, 0, 1, 77), 6, 22), ""},
		{"host neighbour misses", pkt(1, ip(9, 9, 9, 9), ip(10, 0, 0, 6), 6, 22), ""},
		{"tcp 80 any source", pkt(2, ip(7, 7, 7, 7), ip(10, 0, 0, 5), 6, 80), "port2-tcp-80"},
		{"tcp 443 from 1.2.3.4", pkt(2, ip(1, 2, 3, 4), ip(10, 0, 0, 5), 6, 443), "port2-tcp-443-from-1.2.3.4"},
		{"tcp 443 from elsewhere misses", pkt(2, ip(1, 2, 3, 5), ip(10, 0, 0, 5), 6, 443), ""},
		{"udp 80 misses", pkt(2, ip(7, 7, 7, 7), ip(10, 0, 0, 5), 17, 80), ""},
	}
	emc := NewEMC[val](64)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, lookup := range []struct {
				name string
				fn   func(k *packet.FlowKey) *Entry[val]
			}{
				{"table", tb.Lookup},
				{"cached", func(k *packet.FlowKey) *Entry[val] { e, _ := LookupCached(tb, emc, k); return e }},
				{"cached again", func(k *packet.FlowKey) *Entry[val] { e, _ := LookupCached(tb, emc, k); return e }},
			} {
				e := lookup.fn(&tc.key)
				got := ""
				if e != nil {
					got = e.Value.name
				}
				if got != tc.want {
					t.Errorf("%s lookup = %q, want %q", lookup.name, got, tc.want)
				}
			}
		})
	}
}

func TestInsertDuplicateFails(t *testing.T) {
	tb := New[val]()
	k, m := pkt(1, ip(1, 1, 1, 1), ip(2, 2, 2, 2), 6, 80), maskOf("inport", "nwdst")
	if _, err := tb.Insert(&k, &m, setVal("a")); err != nil {
		t.Fatal(err)
	}
	other := k
	other.NwSrc = ip(3, 3, 3, 3) // outside the mask: same flow
	if _, err := tb.Insert(&other, &m, setVal("b")); err != ErrExists {
		t.Fatalf("second insert: err = %v, want ErrExists", err)
	}
	if tb.Len() != 1 {
		t.Fatalf("Len() = %d, want 1", tb.Len())
	}
}

func TestEMCInvalidatedOnDelete(t *testing.T) {
	tb := New[val]()
	emc := NewEMC[val](16)
	wide, wideMask := pkt(1, ip(0, 0, 0, 0), ip(0, 0, 0, 0), 0, 0), maskOf("inport")
	narrow, narrowMask := pkt(1, ip(0, 0, 0, 0), ip(10, 0, 0, 1), 0, 0), maskOf("inport", "nwdst")
	if _, err := tb.Insert(&narrow, &narrowMask, setVal("narrow")); err != nil {
		t.Fatal(err)
	}
	k := pkt(1, ip(5, 5, 5, 5), ip(10, 0, 0, 1), 6, 80)
	if e, hit := LookupCached(tb, emc, &k); e == nil || hit || e.Value.name != "narrow" {
		t.Fatalf("first lookup = %v (emc hit %v), want narrow from the table", e, hit)
	}
	if e, hit := LookupCached(tb, emc, &k); e == nil || !hit {
		t.Fatalf("second lookup: emc hit = %v, want a hit", hit)
	}
	if _, err := tb.Insert(&wide, &wideMask, setVal("wide")); err != nil {
		t.Fatal(err)
	}
	if tb.Delete(&narrow, &narrowMask) == nil {
		t.Fatal("delete narrow found nothing")
	}
	e, hit := LookupCached(tb, emc, &k)
	if hit {
		t.Fatal("emc answered for a deleted flow")
	}
	if e == nil || e.Value.name != "wide" {
		t.Fatalf("after delete lookup = %v, want wide", e)
	}
	if tb.Delete(&wide, &wideMask) == nil {
		t.Fatal("delete wide found nothing")
	}
	if e, _ := LookupCached(tb, emc, &k); e != nil {
		t.Fatalf("after deleting all, lookup = %q, want a miss", e.Value.name)
	}
	if tb.Masks() != 0 || tb.Len() != 0 {
		t.Fatalf("empty table has Masks()=%d Len()=%d", tb.Masks(), tb.Len())
	}
}

func TestEMCInvalidatedOnReplace(t *testing.T) {
	tb := New[val]()
	emc := NewEMC[val](16)
	fk, m := pkt(1, ip(0, 0, 0, 0), ip(10, 0, 0, 1), 0, 0), maskOf("inport", "nwdst")
	if _, err := tb.Insert(&fk, &m, setVal("v1")); err != nil {
		t.Fatal(err)
	}
	k := pkt(1, ip(5, 5, 5, 5), ip(10, 0, 0, 1), 6, 80)
	LookupCached(tb, emc, &k)
	_, old := tb.Replace(&fk, &m, setVal("v2"))
	if old == nil || old.Alive() {
		t.Fatalf("Replace returned old=%v alive=%v, want the dead v1", old, old != nil && old.Alive())
	}
	e, hit := LookupCached(tb, emc, &k)
	if hit || e == nil || e.Value.name != "v2" {
		t.Fatalf("after replace lookup = %v (emc hit %v), want v2 from the table", e, hit)
	}
	if e, hit := LookupCached(tb, emc, &k); !hit || e.Value.name != "v2" {
		t.Fatalf("second lookup after replace: hit=%v, want an emc hit on v2", hit)
	}
	if tb.Len() != 1 {
		t.Fatalf("Len() = %d after replace, want 1", tb.Len())
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tb := New[val]()
	emc := NewEMC[val](0)
	for i := range 8 {
		k, m := pkt(uint32(i), ip(0, 0, 0, 0), ip(10, 0, byte(i), 0), 0, 0), maskOf("inport", "nwdst/24")
		m.TpDst = uint16(i) // distinct masks
		if _, err := tb.Insert(&k, &m, setVal("x")); err != nil {
			t.Fatal(err)
		}
	}
	k := pkt(7, ip(1, 1, 1, 1), ip(10, 0, 7, 9), 17, 0)
	if e, _ := LookupCached(tb, emc, &k); e == nil {
		t.Fatal("no match")
	}
	miss := pkt(9, ip(1, 1, 1, 1), ip(10, 0, 7, 9), 17, 0)
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"table hit", func() { tb.Lookup(&k) }},
		{"emc hit", func() { LookupCached(tb, emc, &k) }},
		{"miss", func() { LookupCached(tb, emc, &miss) }},
	} {
		if n := testing.AllocsPerRun(100, tc.fn); n != 0 {
			t.Errorf("%s: %v allocs per lookup, want 0", tc.name, n)
		}
	}
}

func BenchmarkLookupHit(b *testing.B) {
	tb := New[val]()
	for i := range 16 {
		k, m := pkt(uint32(i), ip(0, 0, 0, 0), ip(10, 0, byte(i), 0), 0, 0), maskOf("inport", "nwdst/24")
		m.TpDst = uint16(i)
		tb.Insert(&k, &m, setVal("x"))
	}
	k := pkt(15, ip(1, 1, 1, 1), ip(10, 0, 15, 9), 17, 0)
	b.Run("emc", func(b *testing.B) {
		emc := NewEMC[val](0)
		b.ReportAllocs()
		for b.Loop() {
			if e, _ := LookupCached(tb, emc, &k); e == nil {
				b.Fatal("miss")
			}
		}
	})
	b.Run("table-16-masks", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if tb.Lookup(&k) == nil {
				b.Fatal("miss")
			}
		}
	})
}

func TestMaskKeyMatchesMasked(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	fill := func(k *packet.FlowKey) {
		b := (*[unsafe.Sizeof(packet.FlowKey{})]byte)(unsafe.Pointer(k))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	}
	for range 1000 {
		var k, m packet.FlowKey
		fill(&k)
		fill(&m)
		if got, want := maskKey(&k, &m), k.Masked(&m); got != want {
			t.Fatalf("maskKey = %+v, Masked = %+v", got, want)
		}
	}
}

// TestStableFlowsFoundDuringChurn looks up flows that stay installed while
// other goroutines install and delete flows of the same masks and of masks
// whose subtables come and go: every lookup must find its flow, and
// Len must end where it began.
func TestStableFlowsFoundDuringChurn(t *testing.T) {
	tb := New[val]()
	masks := []packet.FlowKey{
		maskOf("inport", "ethtype", "nwdst"),
		maskOf("inport", "ethtype", "proto", "tpdst"),
		maskOf("inport", "ethtype", "nwsrc", "nwdst", "proto", "tpdst"),
	}
	var stable []packet.FlowKey
	for i := range 64 {
		k := pkt(1, ip(10, 0, 0, byte(i)), ip(10, 1, 0, byte(i)), 17, uint16(1000+i))
		if _, err := tb.Insert(&k, &masks[i%2], setVal("stable")); err != nil {
			t.Fatal(err)
		}
		stable = append(stable, k)
	}
	base := tb.Len()
	stop := make(chan struct{})
	done := make(chan struct{}, 3)
	for w := range 3 {
		go func() {
			defer func() { done <- struct{}{} }()
			// Each churner's flows come in on its own port, so none is
			// a stable flow's key under any of the masks.
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := pkt(uint32(2+w), ip(10, 2, 0, byte(r.IntN(8))), ip(10, 3, 0, byte(r.IntN(8))), 17, uint16(r.IntN(8)))
				m := &masks[r.IntN(len(masks))]
				if _, err := tb.Insert(&k, m, setVal("churn")); err == nil {
					if tb.Delete(&k, m) == nil {
						t.Error("a flow just installed was not there to delete")
						return
					}
				}
			}
		}()
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	lookups := 0
	for time.Now().Before(deadline) {
		for i := range stable {
			e := tb.Lookup(&stable[i])
			if e == nil || e.Value.name != "stable" || !e.Alive() {
				close(stop)
				t.Fatalf("lookup %d of a stable flow found %v", lookups, e)
			}
			lookups++
		}
	}
	close(stop)
	for range 3 {
		<-done
	}
	if got := tb.Len(); got != base {
		t.Errorf("Len = %d after the churn, want %d", got, base)
	}
	if got := tb.Masks(); got != 2 {
		t.Errorf("Masks = %d after the churn, want 2 (the churn-only mask's subtable removed)", got)
	}
	t.Logf("%d lookups", lookups)
}
