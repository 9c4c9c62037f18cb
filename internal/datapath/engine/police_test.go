package engine

import (
	"testing"

	"github.com/midonet/midonet/internal/datapath"
)

// The bucket passes its burst at once, then the rate, whatever the frame
// sizes; it lends only to a frame larger than the whole burst (a
// segmentation-offload frame), on a full bucket.
func TestPolicerPassesBurstThenRate(t *testing.T) {
	const second = int64(1e9)
	for _, tc := range []struct {
		name      string
		limit     datapath.RateLimit
		frame     int
		every     int64 // ns between frames offered
		duration  int64
		wantBytes float64 // what passes: burst + rate × duration
	}{
		{"1 Mbit/s, 1500-byte frames offered at 10x", datapath.RateLimit{BitsPerSecond: 1e6, BurstBytes: 15000}, 1500,
			second / 833, 10 * second, 15000 + 1e6/8*10},
		{"100 Mbit/s, 64-byte frames", datapath.RateLimit{BitsPerSecond: 100e6, BurstBytes: 64000}, 64,
			second / 1e6 * 2, 2 * second, 64000 + 100e6/8*2},
		{"1 Mbit/s, 64 KB offload frames over a 25 KB burst", datapath.RateLimit{BitsPerSecond: 1e6, BurstBytes: 25000}, 65536,
			second / 20, 10 * second, 65536 + 1e6/8*10},
		{"offered below the rate: everything passes", datapath.RateLimit{BitsPerSecond: 10e6, BurstBytes: 3000}, 1000,
			second / 100, second, 1000 * 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPolicer(tc.limit, 0)
			var passed, offered float64
			for now := int64(0); now < tc.duration; now += tc.every {
				offered += float64(tc.frame)
				if p.allow(tc.frame, now) {
					passed += float64(tc.frame)
				}
			}
			want := min(tc.wantBytes, offered)
			if passed > want+float64(tc.frame) || passed < want-2*float64(tc.frame) {
				t.Errorf("passed %.0f bytes, want %.0f (within a frame)", passed, want)
			}
		})
	}
}

func TestRateLimitNeedsAFrameOfBurst(t *testing.T) {
	if err := (datapath.RateLimit{BitsPerSecond: 1e6, BurstBytes: 100}).Validate(); err == nil {
		t.Error("a burst smaller than a frame was accepted")
	}
	if err := (datapath.RateLimit{}).Validate(); err != nil {
		t.Errorf("no limit: %v", err)
	}
}
