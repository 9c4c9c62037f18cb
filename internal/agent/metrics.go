package agent

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flows"
	"github.com/midonet/midonet/internal/sim"
)

// Metrics are the agent's Prometheus collectors.
type Metrics struct {
	registry *prometheus.Registry

	upcalls            prometheus.Counter
	upcallQueueDrops   prometheus.Counter
	upcallsTaken       prometheus.Counter
	upcallsInline      prometheus.Counter
	simulations        *prometheus.CounterVec
	byKind             [sim.Kinds]prometheus.Counter // simulations by sim.Kind, resolved once
	simLatency         prometheus.Histogram
	snapshotBuild      prometheus.Histogram
	snapshotObjects    prometheus.Histogram
	drops              *prometheus.CounterVec
	stateSent          prometheus.Counter
	stateReceived      prometheus.Counter
	statePulls         prometheus.Counter
	stateWritesDropped prometheus.Counter
	serviceFailures    *prometheus.CounterVec
	traced             *prometheus.CounterVec
	stateSaves         prometheus.Counter
	stateSavedKeys     prometheus.Gauge
	journalBytes       prometheus.Counter
	journalDropped     prometheus.Counter
	dpHits, dpMisses   prometheus.Gauge
	dpLost, dpUpDrops  prometheus.Gauge
	dpBusySpins        prometheus.Gauge
	dpBusyPackets      prometheus.Gauge
	dpKernelPackets    prometheus.Gauge
	dpKernelBytes      prometheus.Gauge
	dpKernelFlows      prometheus.Gauge
	natBlocksLeased    prometheus.Counter
	natBlocksReleased  prometheus.Counter
	natBlocksLost      prometheus.Counter
	natBlocksHeld      prometheus.Gauge
	natLeaseFailures   *prometheus.CounterVec
	dhcp               [sim.DHCPMalformed + 1]prometheus.Counter // DHCP requests by sim.DHCPEvent
	mssClamped         prometheus.Counter
	repliesInstalled   prometheus.Counter
	repliesSkipped     prometheus.Counter
	arpRefreshes       prometheus.Counter
	macsExpired        prometheus.Counter
	arpsExpired        prometheus.Counter
}

func newMetrics(ft *flows.Table) *Metrics {
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
	m.upcallsTaken = counter("upcalls_taken_total", "Upcalls a service answered itself instead of the simulation (the metadata proxy).")
	m.upcallsInline = counter("upcalls_inline_total", "Misses simulated on the goroutine that delivered them (a quiet host), not handed to a worker's.")
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
	m.snapshotObjects = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "midonet", Subsystem: "agent",
		Name: "snapshot_objects", Help: "Objects a snapshot build compiled: what changed and what depends on it.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10)})
	f(m.snapshotObjects)
	m.drops = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "agent",
		Name: "drops_total", Help: "Packets dropped, by reason."}, []string{"reason"})
	f(m.drops)
	f(newFlowCollector(ft))
	m.registerDHCP(f)
	m.registerAgeing(f)
	m.serviceFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "agent",
		Name: "service_failures_total", Help: "Times a service's Run failed (it is restarted), by service."}, []string{"service"})
	f(m.serviceFailures)
	m.traced = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "agent",
		Name: "traced_packets_total", Help: "Packets traced for trace requests, by request."}, []string{"request"})
	f(m.traced)
	m.stateSent = counter("state_messages_sent_total", "Flow-state messages sent to peers.")
	m.stateReceived = counter("state_messages_received_total", "Flow-state messages received from peers.")
	m.statePulls = counter("state_pulls_total", "Flow-state requests sent to the previous hosts of migrated ports.")
	m.stateSaves = counter("state_saves_total", "Times the flow state was saved to the state directory.")
	m.stateSavedKeys = gauge("state_saved_keys", "Conntrack and NAT keys in the last flow-state save.")
	m.journalBytes = counter("state_journal_bytes_total", "Bytes of flow state appended to the journal between saves.")
	m.journalDropped = counter("state_journal_dropped_total", "Flow-state records the journal could not write (see the log).")
	m.stateWritesDropped = counter("state_writes_dropped_total", "NSDB writes (learned MACs, ARP) dropped because the queue was full.")
	m.dpHits = gauge("datapath_hits", "Packets that matched a datapath flow.")
	m.dpMisses = gauge("datapath_misses", "Packets that matched no datapath flow.")
	m.dpLost = gauge("datapath_lost", "Packets the datapath lost.")
	m.dpUpDrops = gauge("datapath_upcall_drops", "Upcalls the datapath dropped.")
	m.dpBusySpins = gauge("datapath_busy_polls", "Times a datapath receiver kept polling its ports after traffic.")
	m.dpBusyPackets = gauge("datapath_busy_polled_packets", "Packets a busy-polling receiver handled (each a wake-up saved).")
	m.dpKernelPackets = gauge("datapath_kernel_packets", "Packets the datapath's kernel fast path forwarded or dropped by itself.")
	m.dpKernelBytes = gauge("datapath_kernel_bytes", "Bytes of the packets the datapath's kernel fast path forwarded or dropped.")
	m.dpKernelFlows = gauge("datapath_kernel_flows", "Flows the datapath's kernel fast path holds.")
	m.repliesInstalled = counter("reply_flows_installed_total", "Reply flows of stateful connections installed with their forward flow (simulated ahead of the reply).")
	m.repliesSkipped = counter("reply_flows_skipped_total", "Replies simulated ahead whose flow was not installed (the simulation had effects only the packet may have); the reply is simulated when it arrives.")
	m.natBlocksLeased = counter("nat_blocks_leased_total", "SNAT port blocks (64 ports) leased from the store.")
	m.natBlocksReleased = counter("nat_blocks_released_total", "SNAT port blocks given back to the store, unused.")
	m.natBlocksLost = counter("nat_blocks_lost_total", "SNAT port blocks another host claimed after this host's lease expired.")
	m.natBlocksHeld = gauge("nat_blocks_held", "SNAT port blocks this host holds.")
	m.natLeaseFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "agent",
		Name: "nat_lease_failures_total", Help: "SNAT port-block leases that failed, by reason (store, exhausted)."}, []string{"reason"})
	f(m.natLeaseFailures)
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

// flowCollector exports the flow table's counters at scrape time.
type flowCollector struct {
	t                                                     *flows.Table
	installed, removed, invalidated, evicted, errs, count *prometheus.Desc
}

func newFlowCollector(t *flows.Table) *flowCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("midonet_agent_"+name, help, nil, nil)
	}
	return &flowCollector{t: t,
		installed:   d("flows_installed_total", "Flows installed in the datapath."),
		removed:     d("flows_removed_total", "Flows removed from the datapath."),
		invalidated: d("flows_invalidated_total", "Flows removed, or not installed, because something they depended on changed."),
		evicted:     d("flows_evicted_total", "Flows evicted at the flow limit."),
		errs:        d("flow_errors_total", "Flow installations or removals the datapath refused."),
		count:       d("flows", "Flows currently installed."),
	}
}

func (c *flowCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.installed, c.removed, c.invalidated, c.evicted, c.errs, c.count} {
		ch <- d
	}
}

func (c *flowCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.t.Stats()
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(c.installed, s.Installed)
	counter(c.removed, s.Removed)
	counter(c.invalidated, s.Invalidated)
	counter(c.evicted, s.Evicted)
	counter(c.errs, s.Errors)
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(s.Current))
}

// portCollector exports the datapath's per-port counters at scrape time.
type portCollector struct {
	dp   datapath.Datapath
	desc map[string]*prometheus.Desc
}

func newPortCollector(dp datapath.Datapath) *portCollector {
	c := &portCollector{dp: dp, desc: map[string]*prometheus.Desc{}}
	for _, n := range []struct{ name, help string }{
		{"rx_packets", "Packets received on a datapath port."},
		{"rx_bytes", "Bytes received on a datapath port."},
		{"tx_packets", "Packets sent out of a datapath port."},
		{"tx_bytes", "Bytes sent out of a datapath port."},
		{"rx_dropped", "Packets received on a datapath port and dropped (malformed, no room)."},
		{"tx_dropped", "Packets that could not be sent out of a datapath port."},
		{"upcall_dropped", "Misses dropped because the port's upcall queue was full."},
		{"rx_limited", "Packets received on a datapath port beyond its QoS bandwidth limit, and dropped."},
	} {
		c.desc[n.name] = prometheus.NewDesc("midonet_agent_port_"+n.name+"_total", n.help, []string{"port", "kind"}, nil)
	}
	return c
}

func (c *portCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.desc {
		ch <- d
	}
}

func (c *portCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.dp.Ports() {
		labels := []string{p.Spec.Name, p.Spec.Kind.String()}
		st := p.Stats
		for name, v := range map[string]uint64{
			"rx_packets": st.RxPackets, "rx_bytes": st.RxBytes, "tx_packets": st.TxPackets, "tx_bytes": st.TxBytes,
			"rx_dropped": st.RxDropped, "tx_dropped": st.TxDropped, "upcall_dropped": st.UpcallDropped,
			"rx_limited": st.RxLimited,
		} {
			ch <- prometheus.MustNewConstMetric(c.desc[name], prometheus.CounterValue, float64(v), labels...)
		}
	}
}

// Registry is the registry to serve on /metrics.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

func (m *Metrics) datapathStats(s datapath.Stats) {
	m.dpHits.Set(float64(s.Hits))
	m.dpMisses.Set(float64(s.Misses))
	m.dpLost.Set(float64(s.Lost))
	m.dpUpDrops.Set(float64(s.UpcallDropped))
	m.dpBusySpins.Set(float64(s.BusySpins))
	m.dpBusyPackets.Set(float64(s.BusyPackets))
	m.dpKernelPackets.Set(float64(s.KernelPackets))
	m.dpKernelBytes.Set(float64(s.KernelBytes))
	m.dpKernelFlows.Set(float64(s.KernelFlows))
}
