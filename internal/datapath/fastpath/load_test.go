package fastpath

import (
	"os"
	"testing"
)

func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("loading eBPF programs needs root")
	}
}

// The kernel's verifier accepts both programs.
func TestLoad(t *testing.T) {
	needRoot(t)
	f, err := New()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
