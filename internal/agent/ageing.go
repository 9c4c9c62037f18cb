package agent

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/midonet/midonet/internal/flows"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// Ageing keeps the learned tables current, as MidoNet's agent does, so
// that a VM that moves or goes away does not leave traffic black-holed:
//
//   - A MAC mapping this agent learned (a VM's MAC on one of its ports) is
//     held by the installed flows that learned it: while any flow from the
//     MAC exists it stays; MACExpire after the last one left (or after the
//     last packet that installed no flow), the agent deletes it from the
//     store, and the bridges flood to the MAC until it is learned again
//     (MidoNet's bridge.mac_port_mapping_expire).
//   - A router's ARP entry is used freely for ARPStale after it was written,
//     then the flows through it are simulated again and, still used, it is
//     asked for again (every ARPRetry at most) until a reply rewrites it; ARPExpire after it was written the agent that
//     wrote it deletes it (MidoNet's arptable.arp_stale, arp_retry_interval
//     and arp_expiration). Every agent times an entry from when it saw it
//     written.
//   - A gratuitous ARP updates the bridge's and its routers' tables at once
//     (package sim), and a MAC seen on a new port is learned there at once.

// Ageing defaults, MidoNet's.
const (
	DefaultMACExpire = 15 * time.Second
	DefaultARPRetry  = 10 * time.Second
	DefaultARPStale  = 60 * time.Second
	DefaultARPExpire = 90 * time.Second
)

// ageingTick is how often expired entries are looked for.
func ageingTick(c *Config) time.Duration {
	return min(time.Second, c.MACExpire/4, c.ARPExpire/4)
}

// macAges counts, per MAC mapping this agent learned, the installed flows
// that depend on it.
type macAges struct {
	now func() time.Time

	mu   sync.Mutex
	refs map[sim.MACLearning]*macRef // guarded by mu
}

type macRef struct {
	flows int       // installed flows from the MAC on the port
	idle  time.Time // since when flows has been 0
}

func newMACAges(now func() time.Time) *macAges {
	return &macAges{now: now, refs: map[sim.MACLearning]*macRef{}}
}

// macHold is a flow's hold on the MAC mappings it learned.
type macHold struct {
	m  *macAges
	ls []sim.MACLearning
	// one backs ls for the usual single mapping (the sender's), saving
	// an allocation per flow.
	one [1]sim.MACLearning
}

// hold takes a reference on each mapping a simulation learned, for the
// flow it installs; Release (when the flow leaves, or at once for a packet
// that installs none) lets go of them. It returns nil without mappings.
func (m *macAges) hold(ls []sim.MACLearning) *macHold {
	if len(ls) == 0 {
		return nil
	}
	m.mu.Lock()
	for _, l := range ls {
		r := m.refs[l]
		if r == nil {
			r = &macRef{}
			m.refs[l] = r
		}
		r.flows++
	}
	m.mu.Unlock()
	h := &macHold{m: m}
	h.ls = append(h.one[:0], ls...)
	return h
}

// holder returns h as a flows.Holder, nil (not a nil *macHold) for none.
func (h *macHold) holder() flows.Holder {
	if h == nil {
		return nil
	}
	return h
}

// Release implements flows.Holder.
func (h *macHold) Release() {
	if h == nil {
		return
	}
	now := h.m.now()
	h.m.mu.Lock()
	for _, l := range h.ls {
		if r := h.m.refs[l]; r != nil {
			if r.flows--; r.flows <= 0 {
				r.flows, r.idle = 0, now
			}
		}
	}
	h.m.mu.Unlock()
}

// expired removes and returns the mappings no flow has held for expire.
func (m *macAges) expired(now time.Time, expire time.Duration) []sim.MACLearning {
	var out []sim.MACLearning
	m.mu.Lock()
	for l, r := range m.refs {
		if r.flows == 0 && now.Sub(r.idle) >= expire {
			out = append(out, l)
			delete(m.refs, l)
		}
	}
	m.mu.Unlock()
	return out
}

// arpKey names a router's ARP entry.
type arpKey struct {
	router topology.ID
	ip     [4]byte
}

// arpRefresher rate-limits the requests that refresh stale ARP entries.
type arpRefresher struct {
	mu   sync.Mutex
	last map[arpKey]time.Time // guarded by mu
}

// due reports whether a refresh of r may be sent now, and if so records
// it.
func (f *arpRefresher) due(r sim.ARPRequest, now time.Time, retry time.Duration) bool {
	k := arpKey{r.Router, r.IP.As4()}
	f.mu.Lock()
	defer f.mu.Unlock()
	if last, ok := f.last[k]; ok && now.Sub(last) < retry {
		return false
	}
	if f.last == nil || len(f.last) > 1<<16 {
		f.last = map[arpKey]time.Time{}
	}
	f.last[k] = now
	return true
}

// dueRefreshes returns, copied, the requests that refresh the stale ARP
// entries a simulation used, but those this agent sent recently.
func (w *worker) dueRefreshes(rs []sim.ARPRefresh) []sim.Generated {
	var out []sim.Generated
	now := w.a.now()
	for _, r := range rs {
		if w.a.arpRefresh.due(r.ARPRequest, now, w.a.cfg.ARPRetry) {
			w.a.metrics.arpRefreshes.Inc()
			out = append(out, sim.Generated{Port: r.Port, Frame: append([]byte(nil), r.Frame...)})
		}
	}
	return out
}

// ageLoop deletes the MAC mappings and router ARP entries this agent wrote
// that expired.
func (a *Agent) ageLoop(ctx context.Context) {
	tick := time.NewTicker(ageingTick(&a.cfg))
	defer tick.Stop()
	last := a.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := a.now()
		// Flows through an entry that just went stale are simulated again
		// on their next packet, which asks for the entry again: a moved
		// address is followed within ARPStale, not ARPExpire.
		if snap := a.snap.Load(); snap != nil {
			var tags []sim.Tag
			snap.StaleARP(last, now, func(router topology.ID, ip netip.Addr) { tags = append(tags, sim.ARPTag(router, ip)) })
			if len(tags) > 0 {
				a.flows.Invalidate(tags)
			}
		}
		last = now
		for _, l := range a.macAges.expired(now, a.cfg.MACExpire) {
			a.writer.forgetMAC(l)
		}
		a.writer.expireARP(now, a.cfg.ARPExpire)
	}
}

// forgetMAC deletes a mapping this agent wrote, unless it has written the
// MAC on another port since (its key then holds that one); a mapping
// another agent wrote since is under that agent's lease and stays.
func (w *stateWriter) forgetMAC(l sim.MACLearning) {
	w.mu.Lock()
	delete(w.macs, l) // learned again, it is written again
	w.mu.Unlock()
	k := macKeyOf(l)
	w.submit(func(ctx context.Context) error {
		if w.ownMACs[k] != l.Port {
			return nil
		}
		delete(w.ownMACs, k)
		w.a.metrics.macsExpired.Inc()
		return w.a.session.DeleteState(ctx, nsdb.BridgeMACKey(l.Bridge.String(), l.VLAN, l.MAC))
	})
}

// macKeyOf is the store key's identity of a mapping: its port aside.
func macKeyOf(l sim.MACLearning) sim.MACLearning { l.Port = topology.ID{}; return l }

// expireARP deletes the router ARP entries this agent wrote more than
// expire ago that it has not written again since.
func (w *stateWriter) expireARP(now time.Time, expire time.Duration) {
	w.submit(func(ctx context.Context) error {
		var first error
		for k, at := range w.ownARPs {
			if now.Sub(at) < expire {
				continue
			}
			delete(w.ownARPs, k)
			w.a.metrics.arpsExpired.Inc()
			if err := w.a.session.DeleteState(ctx, nsdb.RouterARPKey(k.router.String(), addr4of(k.ip))); err != nil && first == nil {
				first = err
			}
		}
		return first
	})
}

// fillAgeingDefaults gives zero ageing times MidoNet's defaults.
func (c *Config) fillAgeingDefaults() {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.MACExpire, DefaultMACExpire}, {&c.ARPRetry, DefaultARPRetry}, {&c.ARPStale, DefaultARPStale},
		{&c.ARPExpire, DefaultARPExpire}, {&c.FlowTimeout, sim.FlowTimeout}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
}

// validateAgeing checks the ageing times.
func (c *Config) validateAgeing() []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MACExpire (--mac-expire)", c.MACExpire}, {"ARPRetry (--arp-retry)", c.ARPRetry},
		{"ARPStale (--arp-stale)", c.ARPStale}, {"ARPExpire (--arp-expire)", c.ARPExpire},
		{"FlowTimeout (--flow-timeout)", c.FlowTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("agent: %s is %v; give a positive duration, or 0 for the default", d.name, d.v))
		}
	}
	if c.ARPStale > 0 && c.ARPExpire > 0 && c.ARPStale >= c.ARPExpire {
		errs = append(errs, fmt.Errorf("agent: ARPStale %v is not below ARPExpire %v: a stale entry must have time to be refreshed",
			c.ARPStale, c.ARPExpire))
	}
	if c.FlowTimeout > sim.FlowTimeout {
		errs = append(errs, fmt.Errorf("agent: FlowTimeout %v is above MidoNet's %v; give at most that", c.FlowTimeout, sim.FlowTimeout))
	}
	return errs
}

// hardTimeout caps a flow's hard timeout at FlowTimeout.
func (a *Agent) hardTimeout(d time.Duration) time.Duration { return min(d, a.cfg.FlowTimeout) }

// registerAgeing creates the ageing counters.
func (m *Metrics) registerAgeing(register func(prometheus.Collector)) {
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "agent", Name: name, Help: help})
		register(c)
		return c
	}
	m.arpRefreshes = counter("arp_refreshes_total", "ARP requests sent to refresh stale router ARP entries.")
	m.macsExpired = counter("macs_expired_total", "Learned MAC mappings deleted after no flow held them for --mac-expire.")
	m.arpsExpired = counter("arps_expired_total", "Router ARP entries deleted --arp-expire after they were last written.")
}

func addr4of(b [4]byte) netip.Addr { return netip.AddrFrom4(b) }

// arpAgeing times the router ARP entries a topology cache sees written.
type arpAgeing struct {
	now           func() time.Time
	stale, expire time.Duration
}

// arpEntry is an entry seen written now: stale and expired from now.
func (g arpAgeing) arpEntry(router topology.ID, ip netip.Addr, mac [6]byte) sim.ARPEntry {
	e := sim.ARPEntry{Router: router, IP: ip, MAC: mac}
	if g.now != nil {
		now := g.now()
		e.Stale, e.Expiry = now.Add(g.stale), now.Add(g.expire)
	}
	return e
}
