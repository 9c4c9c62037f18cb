package flowstate

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

var (
	t0     = time.Unix(1000, 0)
	dev1   = uuid.MustParse("11111111-1111-1111-1111-111111111111")
	dev2   = uuid.MustParse("22222222-2222-2222-2222-222222222222")
	connAB = ConnKey{Src: netip.MustParseAddr("10.0.0.2"), Dst: netip.MustParseAddr("10.0.0.1"), SrcPort: 80, DstPort: 4000, Proto: 6, Device: dev1}
)

func TestTableReferencedEntriesNeverExpire(t *testing.T) {
	tb := NewTable[ConnKey, struct{}](time.Minute)
	tb.Ref(connAB, struct{}{})
	if n := tb.Expire(t0.Add(time.Hour), nil); n != 0 {
		t.Fatalf("expired %d referenced entries", n)
	}
	tb.Unref(connAB, t0)
	if n := tb.Expire(t0.Add(59*time.Second), nil); n != 0 {
		t.Fatalf("expired before the idle TTL")
	}
	var got []ConnKey
	if n := tb.Expire(t0.Add(time.Minute), func(k ConnKey, _ struct{}) { got = append(got, k) }); n != 1 {
		t.Fatalf("Expire = %d at the TTL, want 1", n)
	}
	if len(got) != 1 || got[0] != connAB {
		t.Fatalf("expired callback got %v", got)
	}
	if _, ok := tb.Get(connAB); ok {
		t.Fatal("entry still present after expiry")
	}
}

func TestTableRefCountsNest(t *testing.T) {
	tb := NewTable[ConnKey, struct{}](time.Minute)
	tb.Ref(connAB, struct{}{})
	tb.Ref(connAB, struct{}{})
	tb.Unref(connAB, t0)
	if tb.Refs(connAB) != 1 {
		t.Fatalf("refs = %d, want 1", tb.Refs(connAB))
	}
	if n := tb.Expire(t0.Add(2*time.Minute), nil); n != 0 {
		t.Fatal("expired an entry still referenced once")
	}
	tb.Unref(connAB, t0.Add(2*time.Minute))
	if n := tb.Expire(t0.Add(2*time.Minute+59*time.Second), nil); n != 0 {
		t.Fatal("idle time must start at the last release")
	}
	if n := tb.Expire(t0.Add(3*time.Minute), nil); n != 1 {
		t.Fatal("entry did not expire after the last release plus TTL")
	}
}

func TestTableTouchRefreshesIdleEntries(t *testing.T) {
	tb := NewTable[NATKey, NATBinding](time.Minute)
	k := NATKey{Type: FwdSNAT, Src: connAB.Src, Dst: connAB.Dst, SrcPort: 1, DstPort: 2, Proto: 6, Device: dev1}
	b := NATBinding{IP: netip.MustParseAddr("192.0.2.1"), Port: 1024}
	tb.Touch(k, b, t0)
	tb.Touch(k, b, t0.Add(50*time.Second))
	if n := tb.Expire(t0.Add(100*time.Second), nil); n != 0 {
		t.Fatal("a refreshed key expired early")
	}
	if got, ok := tb.Get(k); !ok || got != b {
		t.Fatalf("Get = %v %v", got, ok)
	}
	if n := tb.Expire(t0.Add(110*time.Second), nil); n != 1 {
		t.Fatal("touched key did not idle out")
	}
}

// Changes counts keys added and removed, not refreshes: the agent skips a
// flow-state save when it has not moved.
func TestTableChangesCountKeysAddedAndRemoved(t *testing.T) {
	tb := NewTable[ConnKey, struct{}](time.Minute)
	other := connAB
	other.SrcPort++
	for _, step := range []struct {
		name string
		do   func()
		want uint64
	}{
		{"ref a new key", func() { tb.Ref(connAB, struct{}{}) }, 1},
		{"ref it again", func() { tb.Ref(connAB, struct{}{}) }, 1},
		{"touch another", func() { tb.Touch(other, struct{}{}, t0) }, 2},
		{"touch it again", func() { tb.Touch(other, struct{}{}, t0.Add(time.Second)) }, 2},
		{"unref", func() { tb.Unref(connAB, t0); tb.Unref(connAB, t0) }, 2},
		{"expire both", func() { tb.Expire(t0.Add(2*time.Minute), nil) }, 4},
		{"delete an absent key", func() { tb.Delete(connAB) }, 4},
		{"delete a present key", func() { tb.Ref(connAB, struct{}{}); tb.Delete(connAB) }, 6},
	} {
		step.do()
		if got := tb.Changes(); got != step.want {
			t.Fatalf("%s: %d changes, want %d", step.name, got, step.want)
		}
	}
}

func TestViewReadsOtherShards(t *testing.T) {
	tables := NewTables(3, time.Minute)
	tables.Shard(2).Commit([]ConnKey{connAB}, nil)
	nk := NATKey{Type: RevSNAT, Src: connAB.Src, Dst: connAB.Dst, SrcPort: 80, DstPort: 4000, Proto: 6, Device: dev2}
	tables.Shard(1).NAT.Touch(nk, NATBinding{IP: netip.MustParseAddr("10.1.1.1"), Port: 33}, t0)
	v := tables.View(0)
	if !v.HasConn(connAB) {
		t.Error("view of worker 0 misses a key of worker 2")
	}
	if b, ok := v.NAT(nk); !ok || b.Port != 33 {
		t.Errorf("NAT = %v %v", b, ok)
	}
	other := connAB
	other.Device = dev2
	if v.HasConn(other) {
		t.Error("key of another device must not match")
	}
	if a := testing.AllocsPerRun(100, func() { v.HasConn(connAB); v.NAT(nk) }); a != 0 {
		t.Errorf("view lookups allocate %v times", a)
	}
}

func sampleMessage() Message {
	return Message{
		Sender:      dev1,
		IngressPort: dev2,
		EgressPorts: []uuid.UUID{dev1, dev2},
		Conntrack:   []ConnKey{connAB, {Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"), Proto: 17, Device: dev2}},
		NAT: []NATEntry{{
			Key:     NATKey{Type: FwdSNAT, Src: connAB.Dst, Dst: connAB.Src, SrcPort: 4000, DstPort: 80, Proto: 6, Device: dev2},
			Binding: NATBinding{IP: netip.MustParseAddr("192.0.2.10"), Port: 30001},
		}, {
			Key:     NATKey{Type: RevSNAT, Src: connAB.Src, Dst: netip.MustParseAddr("192.0.2.10"), SrcPort: 80, DstPort: 30001, Proto: 6, Device: dev2},
			Binding: NATBinding{IP: connAB.Dst, Port: 4000},
		}},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	m := sampleMessage()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Message
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, m)
	}
	var sh = NewShard(time.Minute)
	sh.Import(&got, t0)
	if _, ok := sh.NAT.Get(m.NAT[1].Key); !ok || sh.Conntrack.Len() != 2 {
		t.Fatal("Import did not touch every key")
	}
}

func TestMessageRejectsMalformed(t *testing.T) {
	good, _ := func() ([]byte, error) { m := sampleMessage(); return m.MarshalBinary() }()
	badType := bytes.Clone(good)
	// The first NAT entry's type byte follows the conntrack group.
	natStart := len(good) - 2*(1+16+5+5+2+2+1+5+2) - 2
	badType[natStart+2] = 99
	badFamily := bytes.Clone(good)
	badFamily[3+16+16+2+2*16+2+16] = 5 // first conntrack key's src family
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"wrong magic", append([]byte("XX"), good[2:]...), ErrBadHeader},
		{"wrong version", append([]byte{'M', 'S', 9}, good[3:]...), ErrBadHeader},
		{"truncated in the middle", good[:len(good)/2], ErrTruncated},
		{"truncated by one byte", good[:len(good)-1], ErrTruncated},
		{"trailing byte", append(bytes.Clone(good), 0), ErrTrailing},
		{"unknown NAT key type", badType, ErrBadKeyType},
		{"unknown address family", badFamily, ErrBadAddress},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			if err := m.UnmarshalBinary(tc.in); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMessageTooLarge(t *testing.T) {
	m := Message{}
	for range 100 {
		m.Conntrack = append(m.Conntrack, connAB)
	}
	if _, err := m.MarshalBinary(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func FuzzMessageDecode(f *testing.F) {
	m := sampleMessage()
	good, _ := m.MarshalBinary()
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte{'M', 'S', 1})
	f.Add([]byte{})
	empty, _ := (&Message{}).MarshalBinary()
	f.Add(empty)
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		// A message that decodes re-encodes to the same bytes (the format has
		// one encoding per message) and decodes to the same value.
		out, err := m.AppendBinary(nil)
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return
			}
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, out)
		}
		var again Message
		if err := again.UnmarshalBinary(out); err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("second decode: %v %+v", err, again)
		}
	})
}

func TestTableExpiryIgnoresStaleQueueEntries(t *testing.T) {
	tb := NewTable[ConnKey, struct{}](time.Minute)
	tb.Touch(connAB, struct{}{}, t0)
	tb.Ref(connAB, struct{}{}) // a flow took it before it expired
	if n := tb.Expire(t0.Add(2*time.Minute), nil); n != 0 {
		t.Fatal("expired a key a flow references")
	}
	tb.Unref(connAB, t0.Add(3*time.Minute))
	if n := tb.Expire(t0.Add(3*time.Minute+59*time.Second), nil); n != 0 {
		t.Fatal("expired before the TTL since the release")
	}
	if n := tb.Expire(t0.Add(4*time.Minute), nil); n != 1 {
		t.Fatal("did not expire after the release plus TTL")
	}
	for i := range 1000 {
		k := connAB
		k.SrcPort = uint16(i)
		tb.Touch(k, struct{}{}, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if n := tb.Expire(t0.Add(time.Minute+499*time.Millisecond), nil); n != 500 {
		t.Fatalf("expired %d, want the 500 oldest", n)
	}
	if tb.Len() != 500 {
		t.Fatalf("%d left", tb.Len())
	}
}

// TestConcurrentShards runs owners writing their shards while other
// workers read through their views; run it with -race.
func TestConcurrentShards(t *testing.T) {
	tables := NewTables(4, time.Minute)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			sh, v := tables.Shard(w), tables.View(w)
			for i := range 2000 {
				k := connAB
				k.SrcPort, k.DstPort = uint16(w), uint16(i)
				sh.Commit([]ConnKey{k}, nil)
				other := k
				other.SrcPort = uint16((w + 1) % 4)
				v.HasConn(other)
				sh.Release([]ConnKey{k}, nil, t0)
				if i%500 == 0 {
					sh.Conntrack.Expire(t0.Add(time.Duration(i)*time.Second), nil)
				}
			}
		})
	}
	wg.Wait()
	for w := range 4 {
		k := connAB
		k.SrcPort, k.DstPort = uint16(w), 1999
		if !tables.View((w + 2) % 4).HasConn(k) {
			t.Errorf("worker %d's last key is not visible to another worker", w)
		}
	}
}

func BenchmarkViewLookup(b *testing.B) {
	tables := NewTables(4, time.Minute)
	for w := range 4 {
		for i := range 10000 {
			k := connAB
			k.SrcPort, k.DstPort = uint16(w), uint16(i)
			tables.Shard(w).Commit([]ConnKey{k}, nil)
		}
	}
	v := tables.View(0)
	hit, miss := connAB, connAB
	hit.SrcPort, hit.DstPort = 0, 42
	miss.SrcPort = 9
	b.Run("own-shard-hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v.HasConn(hit)
		}
	})
	b.Run("miss-all-shards", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			v.HasConn(miss)
		}
	})
}

func TestRebindReplacesOlderBindingsInEveryShard(t *testing.T) {
	tables := NewTables(3, time.Minute)
	k := NATKey{Type: RevDNAT, Src: netip.MustParseAddr("10.0.0.11"), SrcPort: 80,
		Dst: netip.MustParseAddr("10.0.1.5"), DstPort: 40000, Proto: 6}
	older := NATBinding{IP: netip.MustParseAddr("10.0.9.1"), Port: 80}
	newer := NATBinding{IP: netip.MustParseAddr("10.0.9.2"), Port: 80}
	now := time.Unix(1000, 0)

	if !tables.View(0).NATStale(k, older) {
		t.Fatal("a key no shard holds is not stale news")
	}
	tables.Shard(1).Commit(nil, []NATEntry{{Key: k, Binding: older}})
	tables.Shard(2).Touch(nil, []NATEntry{{Key: k, Binding: older}}, now)
	if tables.View(0).NATStale(k, older) {
		t.Fatal("the same binding again changes nothing")
	}
	if !tables.View(0).NATStale(k, newer) {
		t.Fatal("another binding for a held key must be news")
	}

	tables.Shard(0).Commit(nil, []NATEntry{{Key: k, Binding: newer}})
	tables.Rebind([]NATEntry{{Key: k, Binding: newer}})
	for i := range tables.Len() {
		if b, ok := tables.View(i).NAT(k); !ok || b != newer {
			t.Errorf("worker %d reads %v, %v; want the newer binding %v", i, b, ok, newer)
		}
	}
	if refs := tables.Shard(1).NAT.Refs(k); refs != 1 {
		t.Errorf("rebinding changed shard 1's references to %d, want 1", refs)
	}
	if tables.View(1).NATStale(k, newer) {
		t.Error("after the rebind the newer binding is no news")
	}
}
