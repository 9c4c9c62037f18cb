package datapath

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A flow counted in two places (the kernel and userspace) adds up.
func TestFlowStatsMerge(t *testing.T) {
	early, late := time.Unix(100, 0), time.Unix(200, 0)
	for _, tc := range []struct {
		name       string
		a, b, want FlowStats
	}{
		{"sums and the later use", FlowStats{1, 10, early, 0x02}, FlowStats{2, 20, late, 0x10}, FlowStats{3, 30, late, 0x12}},
		{"the later use first", FlowStats{1, 10, late, 0}, FlowStats{2, 20, early, 0}, FlowStats{3, 30, late, 0}},
		{"never used", FlowStats{}, FlowStats{}, FlowStats{}},
	} {
		if got := tc.a.Merge(tc.b); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestMonotonicToTime(t *testing.T) {
	if got := MonotonicToTime(0); !got.IsZero() {
		t.Errorf("never: %v, want the zero time", got)
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	got := MonotonicToTime(time.Duration(ts.Nano()) - 5*time.Second)
	if d := time.Since(got); d < 5*time.Second || d > 6*time.Second {
		t.Errorf("5 s ago on the monotonic clock is %v ago", d)
	}
}
