package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// watchedFor is how long a metrics request keeps the fast scrape interval.
const watchedFor = time.Minute

// scrapeParallel bounds the agents read at once.
const scrapeParallel = 8

// hostMetrics is what GET /midonet-api/hosts/{id}/metrics answers, and the
// data of a metrics event (without History).
type hostMetrics struct {
	HostID string `json:"hostId"`
	// Address is where the agent's metrics were read ("" when the agent
	// publishes none).
	Address string `json:"address,omitempty"`
	// Available: the last read succeeded and the agent still runs.
	Available bool `json:"available"`
	// Error says why the counters are missing or stale.
	Error string `json:"error,omitempty"`
	// ScrapedAt is the time of the last successful read (Unix ms).
	ScrapedAt int64 `json:"scrapedAt,omitempty"`
	// Flows is the flows installed now; FlowsInstalled counts every flow
	// ever installed.
	Flows          float64 `json:"flows"`
	FlowsInstalled float64 `json:"flowsInstalled"`
	// Simulations counts the packets simulated; SimulationsPerSecond is its
	// rate between the last two reads.
	Simulations          float64 `json:"simulations"`
	SimulationsPerSecond float64 `json:"simulationsPerSecond"`
	// UpcallDrops counts the misses lost before a simulation: upcall
	// queues full in the agent or in the datapath.
	UpcallDrops float64 `json:"upcallDrops"`
	// Drops counts the packets the simulation dropped.
	Drops          float64        `json:"drops"`
	DatapathHits   float64        `json:"datapathHits"`
	DatapathMisses float64        `json:"datapathMisses"`
	Ports          []portCounters `json:"ports"`
	History        []point        `json:"history,omitempty"`
}

// portCounters are one datapath port's counters.
type portCounters struct {
	// Interface is the datapath port's name: the bound interface, or the
	// overlay's port.
	Interface string  `json:"interface"`
	Kind      string  `json:"kind"`
	RxPackets float64 `json:"rxPackets"`
	TxPackets float64 `json:"txPackets"`
	RxBytes   float64 `json:"rxBytes"`
	TxBytes   float64 `json:"txBytes"`
	RxDropped float64 `json:"rxDropped"`
	TxDropped float64 `json:"txDropped"`
}

// point is one sample of a host's history.
type point struct {
	T                    int64   `json:"t"` // Unix ms
	SimulationsPerSecond float64 `json:"simulationsPerSecond"`
	Flows                float64 `json:"flows"`
}

// scraper reads the agents' metrics and keeps each host's history.
type scraper struct {
	c       *Console
	scrapes *prometheus.CounterVec
	// lastWatch is when someone last asked for metrics (Unix ns).
	lastWatch atomic.Int64
	// wake ends an idle wait when someone starts watching.
	wake chan struct{}
	// storeDown: the last read of the addresses failed (logged once).
	// Only run touches it.
	storeDown bool

	mu    sync.Mutex
	hosts map[string]*hostMetrics // guarded by mu
}

func newScraper(c *Console) *scraper {
	return &scraper{c: c, hosts: map[string]*hostMetrics{}, wake: make(chan struct{}, 1),
		scrapes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "console",
			Name: "agent_scrapes_total", Help: "Reads of agents' metrics, by result (ok, error)."}, []string{"result"})}
}

// watched notes that someone looks at the metrics now, and wakes the
// scraper if it was idle.
func (s *scraper) watched() {
	now := time.Now().UnixNano()
	if prev := s.lastWatch.Swap(now); time.Duration(now-prev) > watchedFor {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *scraper) interval() time.Duration {
	if s.c.streams.open() > 0 || time.Since(time.Unix(0, s.lastWatch.Load())) < watchedFor {
		return s.c.cfg.ScrapeInterval
	}
	return s.c.cfg.IdleScrapeInterval
}

func (s *scraper) run(ctx context.Context) {
	for {
		start := time.Now()
		s.scrapeAll(ctx)
		t := time.NewTimer(time.Until(start.Add(s.interval())))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// agentAddrs returns the metrics address each host's agent publishes,
// with an unspecified host replaced by the host's tunnel-zone address.
func (s *scraper) agentAddrs(ctx context.Context) (map[string]string, error) {
	entries, _, err := s.c.store.ListState(ctx, "/state/hosts/")
	if err != nil {
		return nil, err
	}
	addrs := map[string]string{}
	for _, e := range entries {
		rest, _ := strings.CutPrefix(e.Key, "/state/hosts/")
		if id, ok := strings.CutSuffix(rest, "/metrics"); ok && !strings.Contains(id, "/") {
			addrs[id] = string(e.Value)
		}
	}
	var zones []topology.TunnelZone
	if err := s.c.store.View(ctx, func(tx *nsdb.Tx) error {
		zones, err = topology.ListOf[topology.TunnelZone](tx)
		return err
	}); err != nil {
		return nil, err
	}
	for id, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			hid, _ := topology.ParseID(id)
			for i := range zones {
				if m, ok := zones[i].Member(hid); ok {
					addrs[id] = net.JoinHostPort(m.IPAddress, port)
					break
				}
			}
		}
	}
	return addrs, nil
}

// scrapeAll reads every agent that publishes its metrics.
func (s *scraper) scrapeAll(ctx context.Context) {
	addrs, err := s.agentAddrs(ctx)
	if err != nil {
		if !s.storeDown && ctx.Err() == nil {
			s.c.log.Warn("agents' metrics addresses unreadable; the console shows the last counters", "err", err)
		}
		s.storeDown = true
		return
	}
	if s.storeDown {
		s.c.log.Info("agents' metrics addresses readable again")
		s.storeDown = false
	}
	s.mu.Lock()
	for id, m := range s.hosts {
		if _, ok := addrs[id]; !ok && m.Available {
			m.Available, m.Error = false, "the agent is not running (it publishes no metrics address)"
		}
	}
	s.mu.Unlock()
	sem := make(chan struct{}, scrapeParallel)
	var wg sync.WaitGroup
	for id, addr := range addrs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.scrape(ctx, id, addr)
		}()
	}
	wg.Wait()
}

// scrape reads one agent and publishes its sample.
func (s *scraper) scrape(ctx context.Context, hostID, addr string) {
	now := time.Now()
	fams, err := s.read(ctx, addr)
	s.mu.Lock()
	m := s.hosts[hostID]
	if m == nil {
		m = &hostMetrics{HostID: hostID}
		s.hosts[hostID] = m
	}
	m.Address = addr
	if err != nil {
		s.scrapes.WithLabelValues("error").Inc()
		m.Available, m.Error = false, err.Error()
		ev := sse("metrics", "", m.withoutHistory())
		s.mu.Unlock()
		s.c.streams.publish(ev)
		return
	}
	s.scrapes.WithLabelValues("ok").Inc()
	prevSims, prevAt := m.Simulations, m.ScrapedAt
	m.Available, m.Error, m.ScrapedAt = true, "", now.UnixMilli()
	m.Flows = value(fams, "midonet_agent_flows")
	m.FlowsInstalled = value(fams, "midonet_agent_flows_installed_total")
	m.Simulations = value(fams, "midonet_agent_simulations_total")
	m.UpcallDrops = value(fams, "midonet_agent_upcall_queue_drops_total") + value(fams, "midonet_agent_datapath_upcall_drops")
	m.Drops = value(fams, "midonet_agent_drops_total")
	m.DatapathHits = value(fams, "midonet_agent_datapath_hits")
	m.DatapathMisses = value(fams, "midonet_agent_datapath_misses")
	m.Ports = ports(fams)
	m.SimulationsPerSecond = 0
	if prevAt != 0 && m.Simulations >= prevSims {
		if dt := float64(m.ScrapedAt-prevAt) / 1000; dt > 0 {
			m.SimulationsPerSecond = (m.Simulations - prevSims) / dt
		}
	}
	m.History = append(m.History, point{T: m.ScrapedAt, SimulationsPerSecond: m.SimulationsPerSecond, Flows: m.Flows})
	cut := now.Add(-s.c.cfg.History).UnixMilli()
	i := 0
	for i < len(m.History) && m.History[i].T < cut {
		i++
	}
	m.History = slices.Clip(m.History[i:])
	ev := sse("metrics", "", m.withoutHistory())
	s.mu.Unlock()
	s.c.streams.publish(ev)
}

// withoutHistory copies m for a metrics event, with its last point only.
func (m *hostMetrics) withoutHistory() hostMetrics {
	out := *m
	out.History = nil
	if n := len(m.History); n > 0 && m.Available {
		out.History = []point{m.History[n-1]}
	}
	return out
}

// read fetches and parses an agent's /metrics.
func (s *scraper) read(ctx context.Context, addr string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.c.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the agent's metrics at %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read the agent's metrics at %s: %s", addr, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("the agent's metrics at %s do not parse: %w", addr, err)
	}
	return fams, nil
}

// value sums a family's series (counters, gauges or untyped).
func value(fams map[string]*dto.MetricFamily, name string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
	for _, m := range f.Metric {
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

// ports gathers the per-port counters by port name.
func ports(fams map[string]*dto.MetricFamily) []portCounters {
	byName := map[string]*portCounters{}
	var order []string
	for _, c := range []struct {
		series string
		set    func(p *portCounters, v float64)
	}{
		{"rx_packets", func(p *portCounters, v float64) { p.RxPackets = v }},
		{"tx_packets", func(p *portCounters, v float64) { p.TxPackets = v }},
		{"rx_bytes", func(p *portCounters, v float64) { p.RxBytes = v }},
		{"tx_bytes", func(p *portCounters, v float64) { p.TxBytes = v }},
		{"rx_dropped", func(p *portCounters, v float64) { p.RxDropped = v }},
		{"tx_dropped", func(p *portCounters, v float64) { p.TxDropped = v }},
	} {
		f := fams["midonet_agent_port_"+c.series+"_total"]
		if f == nil {
			continue
		}
		for _, m := range f.Metric {
			var name, kind string
			for _, l := range m.Label {
				switch l.GetName() {
				case "port":
					name = l.GetValue()
				case "kind":
					kind = l.GetValue()
				}
			}
			p := byName[name]
			if p == nil {
				p = &portCounters{Interface: name, Kind: kind}
				byName[name] = p
				order = append(order, name)
			}
			if m.Counter != nil {
				c.set(p, m.Counter.GetValue())
			}
		}
	}
	slices.Sort(order)
	out := make([]portCounters, len(order))
	for i, n := range order {
		out[i] = *byName[n]
	}
	return out
}

// serveHostMetrics answers GET /midonet-api/hosts/{id}/metrics.
func (c *Console) serveHostMetrics(w http.ResponseWriter, r *http.Request) error {
	id, err := topology.ParseID(r.PathValue("id"))
	if err != nil {
		return api.Error(http.StatusNotFound, "%q is not a valid id", r.PathValue("id"))
	}
	var h topology.Host
	if err := c.store.View(r.Context(), func(tx *nsdb.Tx) error {
		return tx.Get(topology.KindHost, id.String(), &h)
	}); err != nil {
		return err
	}
	c.metrics.watched()
	c.metrics.mu.Lock()
	out := hostMetrics{HostID: id.String(), Error: "no metrics read yet: the agent publishes no metrics address " +
		"(start it with --metrics-listen), or the console has not read it yet"}
	if m := c.metrics.hosts[id.String()]; m != nil {
		out = *m
		out.History = slices.Clone(m.History)
	}
	c.metrics.mu.Unlock()
	if out.Ports == nil {
		out.Ports = []portCounters{}
	}
	return writeJSON(w, out)
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}
