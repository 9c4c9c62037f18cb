package fastpath

import (
	"os"
	"testing"
)

// The kernel's verifier accepts both programs.
func TestLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading eBPF programs needs root")
	}
	f, err := New()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
