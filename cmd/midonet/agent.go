package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/midonet/midonet/internal/agent"
	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/userspace"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/services/bgp"
	"github.com/midonet/midonet/internal/services/health"
	"github.com/midonet/midonet/internal/services/metadata"
	"github.com/midonet/midonet/internal/sim"
)

func agentCommand() *cobra.Command {
	var (
		cfg           agent.Config
		nsdbURLs      string
		dpKind        string
		metricsListen string
		profiling     bool
		logLevel      string
		tunnelPort    uint16
		busyPoll      time.Duration
		dpCPUs        string
		fastPath      bool
		healthMonitor bool
		replyFlows    bool

		nsdbCA, nsdbCert, nsdbKey string

		novaURL, metadataSecretFile string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the per-host agent: simulate the virtual network and program the datapath",
		Example: `  midonet agent --host h1 --nsdb http://10.0.0.1:2379 --metrics-listen :9100
  midonet agent --host h1 --nsdb http://10.0.0.1:2379 --datapath ovs
  midonet agent --host h1 --nsdb https://10.0.0.1:2379 --nsdb-ca ca.pem --nsdb-cert h1.pem --nsdb-key h1-key.pem`,
		RunE: func(cmd *cobra.Command, args []string) error {
			log := newLogger(logLevel)
			ctx := cmd.Context()
			if cfg.HostName == "" {
				h, err := os.Hostname()
				if err != nil {
					return fmt.Errorf("no --host given and the hostname is unknown: %w", err)
				}
				cfg.HostName = h
			}
			cpus, err := userspace.ParseCPUList(dpCPUs)
			if err != nil {
				return fmt.Errorf("--datapath-cpus: %w", err)
			}
			if novaURL != "" {
				secret, err := os.ReadFile(metadataSecretFile)
				if err != nil {
					return fmt.Errorf("--metadata-secret-file: %w (Nova's metadata_proxy_shared_secret is needed with --metadata-nova-url)", err)
				}
				md, err := metadata.New(metadata.Config{NovaURL: novaURL, SharedSecret: strings.TrimSpace(string(secret))})
				if err != nil {
					return err
				}
				cfg.Services = append(cfg.Services, md)
			}
			var nsdbTLS *tls.Config
			if nsdbCA != "" || nsdbCert != "" {
				if nsdbTLS, err = nsdb.ClientTLS(nsdbCA, nsdbCert, nsdbKey); err != nil {
					return err
				}
			}
			dp, err := openDatapath(dpKind, userspace.Config{BusyPoll: busyPoll, CPUs: cpus, FastPath: fastPath}, log)
			if err != nil {
				return err
			}
			// The store may not be up yet (hosts often boot before the
			// cluster): keep trying, as a supervisor restarting us would.
			var store *nsdb.Store
			for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
				store, err = nsdb.Open(ctx, nsdb.Config{Endpoints: strings.Split(nsdbURLs, ","), Logger: log, TLS: nsdbTLS})
				if err == nil {
					break
				}
				log.Warn("store unreachable; retrying", "nsdb", nsdbURLs, "err", err, "retry_in", wait)
				select {
				case <-ctx.Done():
					dp.Close()
					return nil
				case <-time.After(wait):
				}
			}
			defer store.Close()
			cfg.Store, cfg.Datapath, cfg.Logger = agent.NSDB(store), dp, log
			cfg.TunnelPort = tunnelPort
			cfg.NoReplyFlows = !replyFlows
			cfg.PublishInterfaces = true
			// BGP on the uplinks bound here: a speaker process each (this
			// binary's hidden bgp-speaker command) in the port's namespace.
			cfg.Services = append(cfg.Services, bgp.NewService(bgp.ServiceConfig{}))
			var metricsLn net.Listener
			if metricsListen != "" {
				if metricsLn, err = net.Listen("tcp", metricsListen); err != nil {
					dp.Close()
					return fmt.Errorf("metrics: listen on %s: %w", metricsListen, err)
				}
				// Published in the store, for the cluster's console.
				cfg.MetricsAddress = metricsLn.Addr().String()
			}
			var hs *healthService
			if healthMonitor {
				hs = &healthService{store: store}
				cfg.Services = append(cfg.Services, hs)
			}
			a, err := agent.New(cfg)
			if err != nil {
				if metricsLn != nil {
					metricsLn.Close()
				}
				dp.Close()
				return err
			}
			if metricsLn != nil {
				srv := &http.Server{Handler: metricsMux(a.Metrics().Registry(), profiling), ReadHeaderTimeout: 5 * time.Second}
				go srv.Serve(metricsLn)
				defer srv.Shutdown(context.Background())
				log.Info("metrics serving", "addr", cfg.MetricsAddress)
			}
			if hs != nil {
				hs.reg = a.Metrics().Registry()
			}
			err = a.Run(ctx)
			dp.Close()
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.HostName, "host", "", "name of this host (default: the hostname)")
	f.StringVar(&nsdbURLs, "nsdb", "http://127.0.0.1:2379", "client URLs of the NSDB (etcd), comma-separated (https: see --nsdb-ca)")
	f.StringVar(&novaURL, "metadata-nova-url", "", "Nova's metadata service, e.g. http://nova-api:8775: serve VMs 169.254.169.254 through this agent")
	f.StringVar(&metadataSecretFile, "metadata-secret-file", "", "file holding Nova's metadata_proxy_shared_secret")
	f.StringVar(&nsdbCA, "nsdb-ca", "", "CA (PEM) of the store's TLS certificate (https --nsdb)")
	f.StringVar(&nsdbCert, "nsdb-cert", "", "client certificate (PEM) to present to the store")
	f.StringVar(&nsdbKey, "nsdb-key", "", "private key (PEM) of --nsdb-cert")
	f.StringVar(&dpKind, "datapath", "userspace", "datapath backend: userspace, ovs (the Open vSwitch kernel module) or auto")
	f.StringVar(&cfg.StateDir, "state-dir", agent.DefaultStateDir, "directory for the host id and the flow state (saved every 2s and on exit, journaled in between)")
	f.StringVar(&metricsListen, "metrics-listen", "", "address to serve Prometheus metrics on, e.g. :9100 (published in the store "+
		"for the cluster's console, which reads an unspecified address at the host's tunnel-zone address)")
	f.BoolVar(&profiling, "pprof", false, "also serve Go's profiles under /debug/pprof/ on the metrics address")
	f.IntVar(&cfg.Workers, "workers", 0, "simulation workers (default: the number of cores)")
	f.IntVar(&cfg.FlowLimit, "flow-limit", agent.DefaultFlowLimit, "maximum installed flows; the oldest are evicted beyond it")
	f.DurationVar(&cfg.FlowTimeout, "flow-timeout", sim.FlowTimeout,
		"hard timeout of installed flows, at most MidoNet's 60s (stateful flows: 30s, or this if shorter)")
	f.DurationVar(&cfg.MACExpire, "mac-expire", agent.DefaultMACExpire,
		"how long a learned MAC mapping outlives the last flow from the MAC (MidoNet's mac_port_mapping_expire)")
	f.DurationVar(&cfg.ARPStale, "arp-stale", agent.DefaultARPStale,
		"age at which a router ARP entry in use is asked for again (MidoNet's arp_stale)")
	f.DurationVar(&cfg.ARPRetry, "arp-retry", agent.DefaultARPRetry,
		"least time between two requests refreshing one stale ARP entry (MidoNet's arp_retry_interval)")
	f.DurationVar(&cfg.ARPExpire, "arp-expire", agent.DefaultARPExpire,
		"age at which a router ARP entry not written again is deleted (MidoNet's arp_expiration)")
	f.Uint16Var(&tunnelPort, "tunnel-port", datapath.DefaultVXLANPort, "UDP port of the VXLAN overlay")
	f.DurationVar(&busyPoll, "busy-poll", 200*time.Microsecond,
		"userspace datapath: keep polling the ports this long after the last packet before sleeping; "+
			"lower latency for a spinning core while traffic lasts (0: off)")
	f.StringVar(&dpCPUs, "datapath-cpus", "",
		"userspace datapath: processors to pin the port receivers to, e.g. 1 or 2-3,6 (default: not pinned)")
	f.BoolVar(&fastPath, "fast-path", true,
		"userspace datapath: run the flows that only rewrite headers and send to a local interface or into the overlay in the kernel (eBPF), "+
			"so their packets need no receiver to wake up; false: every packet through the agent's receivers")
	f.BoolVar(&replyFlows, "reply-flows", true,
		"install the reply flow of a stateful (SNAT, conntrack) connection together with its forward flow when the forward "+
			"packet leaves through a port bound here, so the reply is not an upcall; false: simulate each reply when it arrives")
	f.BoolVar(&healthMonitor, "health-monitor", true,
		"take part in the election of the one agent that runs the load balancers' health monitors "+
			"(it probes pool members from a namespace it links to each router)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}

// healthService runs, as one of the agent's services, the host's part in
// the load balancers' health monitors: it campaigns for the lead and, while
// it holds it, probes the pools' members from namespaces it links to their
// routers.
type healthService struct {
	store *nsdb.Store
	reg   prometheus.Registerer // the agent's, set before it runs
}

func (s *healthService) Name() string { return "health-monitor" }

func (s *healthService) Run(ctx context.Context, host *agent.ServiceHost) error {
	plumbing, err := health.NewNetns(health.NetnsConfig{Store: s.store, HostID: host.ID})
	if err != nil {
		return err
	}
	defer plumbing.Close()
	m, err := health.New(health.Config{Store: s.store, HostID: host.ID, Plumbing: plumbing, Logger: host.Log, Registerer: s.reg})
	if err != nil {
		return err
	}
	m.Run(ctx)
	return nil
}

// openDatapath opens the datapath backend the operator chose; us holds
// the userspace datapath's tuning.
func openDatapath(kind string, us userspace.Config, log *slog.Logger) (datapath.Datapath, error) {
	switch kind {
	case "userspace", "auto":
		if kind == "auto" {
			if dp, err := openOVS(); err == nil {
				log.Info("datapath chosen", "kind", "ovs")
				return dp, nil
			} else {
				log.Info("datapath chosen", "kind", "userspace", "why", err.Error())
			}
		}
		// Offload: GSO super-frames from VMs with TSO on pass whole (or
		// are segmented for the overlay), so guests need no ethtool tweaks.
		// InlineUpcalls: the agent's handler returns within a simulation
		// (it hands a miss to its worker, or simulates it in place when
		// the worker is idle), so receivers may call it directly.
		us.Offload, us.Logger, us.Engine.InlineUpcalls = true, log, true
		return userspace.New(us)
	case "ovs":
		return openOVS()
	}
	return nil, fmt.Errorf("unknown datapath %q: use userspace, ovs or auto", kind)
}

// openOVS is replaced when the OVS kernel backend is linked in.
var openOVS = func() (datapath.Datapath, error) {
	return nil, errors.New("the ovs datapath backend is not built into this binary")
}

// metricsMux serves the agent's metrics and, with profiling, Go's profiles
// (explicitly: importing net/http/pprof alone would register them on the
// default mux only).
func metricsMux(reg *prometheus.Registry, profiling bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
