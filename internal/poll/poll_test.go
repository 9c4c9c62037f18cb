package poll

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	var n atomic.Int32
	if !Until(func() bool { return n.Add(1) == 3 }, time.Second) {
		t.Fatal("a condition that holds on the third check was not seen")
	}
	start := time.Now()
	if Until(func() bool { return false }, 20*time.Millisecond) {
		t.Fatal("a condition that never holds was reported")
	}
	if waited := time.Since(start); waited < 20*time.Millisecond {
		t.Fatalf("gave up after %v, before the 20ms timeout", waited)
	}
}
