package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/sim"
)

// Metrics are the agent's Prometheus collectors.
type Metrics struct {
	registry *prometheus.Registry

	upcalls            prometheus.Counter
	upcallQueueDrops   prometheus.Counter
	simulations        *prometheus.CounterVec
	byKind             [sim.ARPNeeded + 1]prometheus.Counter // simulations by sim.Kind, resolved once
	simLatency         prometheus.Histogram
	snapshotBuild      prometheus.Histogram
	drops              *prometheus.CounterVec
	flowsInstalled     prometheus.Counter
	flowsRemoved       prometheus.Counter
	flowsInvalidated   prometheus.Counter
	flowsEvicted       prometheus.Counter
	flowPutErrors      prometheus.Counter
	flowsCurrent       prometheus.Gauge
	stateSent          prometheus.Counter
	stateReceived      prometheus.Counter
	stateWritesDropped prometheus.Counter
	dpHits, dpMisses   prometheus.Gauge
	dpLost, dpUpDrops  prometheus.Gauge
}

func newMetrics() *Metrics {
	r := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{registry: r}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "agent", Name: name, Help: help})
		f(c)
		return c
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "midonet", Subsystem: "agent", Name: name, Help: help})
		f(g)
		return g
	}
	m.upcalls = counter("upcalls_total", "Packets the datapath sent up (misses and userspace actions).")
	m.upcallQueueDrops = counter("upcall_queue_drops_total", "Upcalls dropped because a worker queue was full.")
	m.simulations = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "agent",
		Name: "simulations_total", Help: "Simulations by result kind."}, []string{"result"})
	f(m.simulations)
	for k := range m.byKind {
		m.byKind[k] = m.simulations.WithLabelValues(sim.Kind(k).String())
	}
	m.simLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "midonet", Subsystem: "agent",
		Name: "simulation_seconds", Help: "Time to simulate one packet.",
		Buckets: prometheus.ExponentialBuckets(250e-9, 2, 16)})
	f(m.simLatency)
	m.snapshotBuild = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "midonet", Subsystem: "agent",
		Name: "snapshot_build_seconds", Help: "Time to compile the topology snapshot.",
		Buckets: prometheus.ExponentialBuckets(10e-6, 2, 16)})
	f(m.snapshotBuild)
	m.drops = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "agent",
		Name: "drops_total", Help: "Packets dropped, by reason."}, []string{"reason"})
	f(m.drops)
	m.flowsInstalled = counter("flows_installed_total", "Flows installed in the datapath.")
	m.flowsRemoved = counter("flows_removed_total", "Flows removed from the datapath.")
	m.flowsInvalidated = counter("flows_invalidated_total", "Flows removed because something they depended on changed.")
	m.flowsEvicted = counter("flows_evicted_total", "Flows evicted at the flow limit.")
	m.flowPutErrors = counter("flow_errors_total", "Flow installations or removals the datapath refused.")
	m.flowsCurrent = gauge("flows", "Flows currently installed.")
	m.stateSent = counter("state_messages_sent_total", "Flow-state messages sent to peers.")
	m.stateReceived = counter("state_messages_received_total", "Flow-state messages received from peers.")
	m.stateWritesDropped = counter("state_writes_dropped_total", "NSDB writes (learned MACs, ARP) dropped because the queue was full.")
	m.dpHits = gauge("datapath_hits", "Packets that matched a datapath flow.")
	m.dpMisses = gauge("datapath_misses", "Packets that matched no datapath flow.")
	m.dpLost = gauge("datapath_lost", "Packets the datapath lost.")
	m.dpUpDrops = gauge("datapath_upcall_drops", "Upcalls the datapath dropped.")
	return m
}

// simulated counts one simulation of result kind k without a label lookup.
func (m *Metrics) simulated(k sim.Kind) {
	if int(k) < len(m.byKind) {
		m.byKind[k].Inc()
		return
	}
	m.simulations.WithLabelValues(k.String()).Inc()
}

// Registry is the registry to serve on /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

func (m *Metrics) datapathStats(s datapath.Stats) {
	m.dpHits.Set(float64(s.Hits))
	m.dpMisses.Set(float64(s.Misses))
	m.dpLost.Set(float64(s.Lost))
	m.dpUpDrops.Set(float64(s.UpcallDropped))
}
