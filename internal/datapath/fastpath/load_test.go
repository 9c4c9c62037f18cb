package fastpath

import (
	"net/netip"
	"os"
	"testing"
)

func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("loading eBPF programs needs root")
	}
}

// The kernel's verifier accepts the three programs: New loads the
// classifier and the forwarder, AttachOverlay the decapsulator (for an
// address or for all of them).
func TestLoad(t *testing.T) {
	needRoot(t)
	f, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, local := range []netip.Addr{{}, netip.MustParseAddr("10.0.0.1")} {
		p, err := f.loadDecapsulator(local, 6677)
		if err != nil {
			t.Fatalf("decapsulator (local %v): %v", local, err)
		}
		p.Close()
	}
}
