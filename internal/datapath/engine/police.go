package engine

import (
	"sync"
	"time"

	"github.com/midonet/midonet/internal/datapath"
)

// policer is a token bucket: a frame passes while the bucket holds its
// bytes (one larger than the burst, on a full bucket); the bucket refills
// at the port's rate up to its burst. A port's
// receiver and the packets executed as received on the port share it, so
// it has a lock; it is taken only on limited ports.
type policer struct {
	mu     sync.Mutex
	rate   float64 // bytes per nanosecond
	burst  float64 // bytes
	tokens float64 // guarded by mu
	last   int64   // guarded by mu: unix nanoseconds of the last refill
}

func newPolicer(l datapath.RateLimit, now int64) *policer {
	p := &policer{rate: float64(l.BitsPerSecond) / 8 / 1e9, burst: float64(l.BurstBytes), last: now}
	p.tokens = p.burst
	return p
}

// allow takes n bytes from the bucket at time now, and reports whether
// they were there.
func (p *policer) allow(n int, now int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := now - p.last; d > 0 {
		p.tokens = min(p.burst, p.tokens+float64(d)*p.rate)
		p.last = now
	}
	switch {
	case p.tokens >= float64(n):
	case float64(n) > p.burst && p.tokens >= p.burst:
		// A segmentation-offload frame larger than the whole burst
		// would never pass, and TCP would stall for good: it passes on
		// a full bucket, and the debt is repaid at the rate before
		// anything else passes.
	default:
		return false
	}
	p.tokens -= float64(n)
	return true
}

// SetPortRateLimit implements datapath.PortRateLimiter: frames received on
// port no beyond the limit are dropped before their flow is looked up and
// counted in the port's RxLimited.
func (e *Engine) SetPortRateLimit(no datapath.PortNo, l datapath.RateLimit) error {
	p := e.Port(no)
	if p == nil {
		return datapath.ErrPortNotFound
	}
	if l.BitsPerSecond == 0 {
		p.policer.Store(nil)
		return nil
	}
	if err := l.Validate(); err != nil {
		return err
	}
	p.policer.Store(newPolicer(l, time.Now().UnixNano()))
	return nil
}

// PortRateLimit returns the limit on port no (zero: none).
func (e *Engine) PortRateLimit(no datapath.PortNo) datapath.RateLimit {
	p := e.Port(no)
	if p == nil {
		return datapath.RateLimit{}
	}
	pol := p.policer.Load()
	if pol == nil {
		return datapath.RateLimit{}
	}
	return datapath.RateLimit{BitsPerSecond: uint64(pol.rate * 8e9), BurstBytes: uint64(pol.burst)}
}

// SetPortRateLimit implements datapath.PortRateLimiter.
func (c Core) SetPortRateLimit(no datapath.PortNo, l datapath.RateLimit) error {
	return c.e.SetPortRateLimit(no, l)
}
