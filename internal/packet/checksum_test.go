package packet

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"
)

// refChecksum is the textbook RFC 1071 loop over 16-bit words, used as an
// independent reference.
func refChecksum(b []byte, initial uint32) uint16 {
	sum := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func TestChecksumKnownVectors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want uint16
	}{
		{name: "empty", data: nil, want: 0xffff},
		// RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2.
		{name: "rfc1071 example", data: []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, want: ^uint16(0xddf2)},
		{name: "odd length pads with zero", data: []byte{0x01, 0x02, 0x03}, want: ^uint16(0x0102 + 0x0300)},
		// A real IPv4 header (from Wikipedia's checksum example) with checksum b861.
		{
			name: "ipv4 header with checksum verifies to zero",
			data: []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7},
			want: 0,
		},
		{
			name: "ipv4 header with zeroed checksum",
			data: []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7},
			want: 0xb861,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Checksum(tc.data, 0); got != tc.want {
				t.Errorf("Checksum = %#04x, want %#04x", got, tc.want)
			}
		})
	}
}

func newRand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func TestChecksumMatchesReference(t *testing.T) {
	r := newRand(t)
	for range 2000 {
		b := make([]byte, r.IntN(3000))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		initial := r.Uint32() & 0x3ffff
		if got, want := Checksum(b, initial), refChecksum(b, initial); got != want {
			t.Fatalf("Checksum(len %d, %#x) = %#04x, reference %#04x", len(b), initial, got, want)
		}
	}
	// Large buffers must not overflow the accumulator.
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = 0xff
	}
	if got, want := Checksum(big, 0xffffffff), refChecksum(big, 0xffffffff); got != want {
		t.Fatalf("Checksum of 1 MiB of 0xff = %#04x, reference %#04x", got, want)
	}
}

func TestChecksumCombineChains(t *testing.T) {
	r := newRand(t)
	for range 500 {
		b := make([]byte, 2*r.IntN(200))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		split := 2 * r.IntN(len(b)/2+1)
		chained := ^uint16(ChecksumCombine(ChecksumCombine(0, b[:split]), b[split:]))
		if want := refChecksum(b, 0); chained != want {
			t.Fatalf("chained sum split at %d = %#04x, want %#04x", split, chained, want)
		}
	}
}

func TestPseudoHeaderSum4(t *testing.T) {
	src, dst := [4]byte{192, 168, 0, 1}, [4]byte{10, 255, 3, 200}
	ph := []byte{192, 168, 0, 1, 10, 255, 3, 200, 0, 17, 0x05, 0xdc}
	got := ^uint16(PseudoHeaderSum4(src, dst, 17, 0x05dc))
	if want := refChecksum(ph, 0); got != want {
		t.Fatalf("pseudo header checksum %#04x, want %#04x", got, want)
	}
}

// TestChecksumIncrementalUpdate is the property test: after changing a
// 16-bit word, a 4-byte or a 6-byte field of random data, the incrementally
// updated checksum equals the full recomputation.
func TestChecksumIncrementalUpdate(t *testing.T) {
	r := newRand(t)
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return b
	}
	for i := range 20000 {
		n := 2 * (4 + r.IntN(40))
		b := randBytes(n)
		if i%50 == 0 { // sparse data reaches the all-zero and 0xffff edge cases
			for j := range b {
				b[j] = []byte{0, 0xff}[r.IntN(2)]
			}
		}
		check := Checksum(b, 0)
		off := 2 * r.IntN(n/2-3)
		switch r.IntN(3) {
		case 0:
			old := binary.BigEndian.Uint16(b[off:])
			nw := uint16(r.UintN(1 << 16))
			binary.BigEndian.PutUint16(b[off:], nw)
			if got, want := ChecksumUpdate16(check, old, nw), Checksum(b, 0); got != want {
				t.Fatalf("ChecksumUpdate16(%#04x, %#04x, %#04x) = %#04x, full recompute %#04x", check, old, nw, got, want)
			}
		case 1:
			old := [4]byte(b[off : off+4])
			nw := [4]byte(randBytes(4))
			copy(b[off:], nw[:])
			if got, want := ChecksumUpdate4(check, old, nw), Checksum(b, 0); got != want {
				t.Fatalf("ChecksumUpdate4(%#04x, %v, %v) = %#04x, full recompute %#04x", check, old, nw, got, want)
			}
		case 2:
			old := [6]byte(b[off : off+6])
			nw := [6]byte(randBytes(6))
			copy(b[off:], nw[:])
			if got, want := ChecksumUpdate6(check, old, nw), Checksum(b, 0); got != want {
				t.Fatalf("ChecksumUpdate6(%#04x, %v, %v) = %#04x, full recompute %#04x", check, old, nw, got, want)
			}
		}
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		Checksum(buf, 0)
	}
}

// l4ChecksumOffset is where the TCP or UDP checksum of an untagged IPv4
// frame without options sits.
func l4ChecksumOffset(proto uint8) int {
	if proto == IPProtoUDP {
		return 14 + 20 + 6
	}
	return 14 + 20 + 16
}

// l4Frames are a TCP and a UDP frame, untagged IPv4 without options.
var l4Frames = []struct {
	name  string
	frame func(testing.TB) []byte
	proto uint8
}{{"tcp", tcpFrame, IPProtoTCP}, {"udp", udpFrame, IPProtoUDP}}

func TestCompleteChecksum(t *testing.T) {
	for _, tc := range l4Frames {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.frame(t)
			off := l4ChecksumOffset(tc.proto)
			f[off], f[off+1] = 0x12, 0x34 // as left for hardware: garbage here
			if !CompleteChecksum(f) {
				t.Fatal("CompleteChecksum refused a valid frame")
			}
			checkChecksums(t, f)
		})
	}
}

// A checksum left to offload (the field holds the pseudo-header sum) is
// finished; a complete one, or any other value, is left alone.
func TestFinishPartialChecksum(t *testing.T) {
	for _, tc := range l4Frames {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.frame(t)
			off := l4ChecksumOffset(tc.proto)
			complete := bytes.Clone(f)
			if FinishPartialChecksum(f) || !bytes.Equal(f, complete) {
				t.Fatal("a complete checksum was changed")
			}
			partial(f, tc.proto)
			if !FinishPartialChecksum(f) {
				t.Fatal("a partial checksum was not finished")
			}
			checkChecksums(t, f)
			f[off] ^= 0xff // corrupt, not partial
			if FinishPartialChecksum(f) {
				t.Error("a wrong checksum that is not the pseudo-header sum was rewritten")
			}
		})
	}
}

// partial leaves the TCP or UDP checksum of an untagged IPv4 frame without
// options to offload: the field holds the folded pseudo-header sum.
func partial(f []byte, proto uint8) {
	ip := IPv4(f[14:])
	sum := PseudoHeaderSum4(ip.Src(), ip.Dst(), proto, ip.TotalLen()-20)
	binary.BigEndian.PutUint16(f[l4ChecksumOffset(proto):], ^Checksum(nil, sum))
}
