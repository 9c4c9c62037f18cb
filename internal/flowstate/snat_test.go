package flowstate

import (
	"net/netip"
	"testing"
	"time"
)

func TestBlockSetNextWrapsAround(t *testing.T) {
	var s BlockSet
	if _, ok := s.Next(0); ok {
		t.Fatal("Next on an empty set found a block")
	}
	for _, b := range []uint16{3, 64, 1023} {
		s.Add(b)
	}
	for _, tc := range []struct{ from, want uint16 }{{0, 3}, {3, 3}, {4, 64}, {65, 1023}, {1023, 1023}, {1000, 1023}} {
		if got, ok := s.Next(tc.from); !ok || got != tc.want {
			t.Errorf("Next(%d) = %d, %v; want %d", tc.from, got, ok, tc.want)
		}
	}
	s.Remove(1023)
	if got, _ := s.Next(100); got != 3 {
		t.Errorf("Next(100) after removing 1023 = %d, want 3 (wrapped)", got)
	}
	if s.Len() != 2 || !s.Has(64) || s.Has(1023) {
		t.Errorf("Len %d, Has(64) %v, Has(1023) %v", s.Len(), s.Has(64), s.Has(1023))
	}
}

// TestSNATLeasesCountKeysOfEveryShard: reverse SNAT keys entering and
// leaving any shard's NAT table (a flow's reference, a peer's import, an
// expiry, a delete) move their block's count, and an address whose held
// blocks pass the low-water mark asks for another.
func TestSNATLeasesCountKeysOfEveryShard(t *testing.T) {
	var asked []NATAddr
	l := NewSNATLeases(func(a NATAddr) { asked = append(asked, a) })
	tables := NewTables(2, time.Minute)
	tables.TrackSNAT(l)
	nat := netip.MustParseAddr("203.0.113.1")
	a := NATAddr{Device: dev1, IP: nat}
	rev := func(port uint16) NATKey {
		return NATKey{Type: RevSNAT, Src: netip.MustParseAddr("8.8.8.8"), SrcPort: 53, Dst: nat, DstPort: port, Proto: 17, Device: dev1}
	}
	fwd := NATKey{Type: FwdSNAT, Src: netip.MustParseAddr("10.0.0.1"), SrcPort: 5000, Dst: netip.MustParseAddr("8.8.8.8"), DstPort: 53, Proto: 17, Device: dev1}
	l.Grant(a, 20)
	if h := l.Held(a); h == nil || !h.Has(20) {
		t.Fatal("granted block not held")
	}
	tables.Shard(0).Commit(nil, []NATEntry{{Key: rev(1280)}, {Key: fwd}})
	tables.Shard(1).Touch(nil, []NATEntry{{Key: rev(1281)}}, t0) // an import
	tables.Shard(0).Commit(nil, []NATEntry{{Key: rev(1280)}})    // a second reference: no new key
	if n := l.Used(a, 20); n != 2 {
		t.Fatalf("block 20 used by %d keys, want 2 (forward keys do not count)", n)
	}
	tables.Shard(1).NAT.Delete(rev(1281))
	tables.Shard(0).Release(nil, []NATEntry{{Key: rev(1280)}, {Key: rev(1280)}}, t0)
	tables.Shard(0).NAT.Expire(t0.Add(2*time.Minute), nil)
	if n := l.Used(a, 20); n != 0 {
		t.Fatalf("block 20 used by %d keys after they went, want 0", n)
	}
	if len(asked) != 0 {
		t.Fatalf("asked for a block at 2 keys of 64: %v", asked)
	}
	for p := uint16(1280); p < 1280+48; p++ {
		tables.Shard(0).Touch(nil, []NATEntry{{Key: rev(p)}}, t0)
	}
	if len(asked) != 0 || l.Low(a) {
		t.Fatalf("at 48 keys of 64: asked %d times, Low %v; want neither", len(asked), l.Low(a))
	}
	tables.Shard(0).Touch(nil, []NATEntry{{Key: rev(1280 + 48)}}, t0)
	if len(asked) != 1 || asked[0] != a || !l.Low(a) {
		t.Fatalf("at 49 keys of 64: asked %v, Low %v; want one request for %v", asked, l.Low(a), a)
	}
	l.Grant(a, 21)
	if l.Low(a) {
		t.Fatal("Low with 49 keys in two blocks")
	}
	l.Suspend(a, 21)
	if !l.Low(a) || l.Held(a).Has(21) {
		t.Fatal("a suspended block still counts as allocatable")
	}
}
