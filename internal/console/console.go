// Package console is the web console the cluster serves next to the REST
// API: a page that draws the virtual network as a graph and follows it
// live, shows each host's agent with its counters, and traces a packet
// through the topology onto the graph.
//
// The page is static (assets embedded in the binary, no build step at run
// time) and reads everything through public REST calls, so it never sees
// more than an API client could. Three endpoints are added to the API for
// it, and documented in the README as public API:
//
//	GET  /midonet-api/events             server-sent events: every change of the store's
//	                                     objects and state, then the agents' metrics samples
//	POST /midonet-api/simulate           a packet trace, the report of `midonet trace -o json`
//	GET  /midonet-api/hosts/{id}/metrics the counters of a host's agent, with their history
//
// The cluster reads the agents' Prometheus metrics at the address each
// agent publishes in the store (nsdb.HostMetricsKey).
package console

import (
	"context"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/nsdb"
)

//go:embed assets
var assets embed.FS

// Path is where the console's page is served; "/" redirects there.
const Path = "/ui/"

// Defaults of Config.
const (
	// DefaultScrapeInterval is how often agents' metrics are read while
	// someone watches them (an open event stream or a recent metrics
	// request).
	DefaultScrapeInterval = 2 * time.Second
	// DefaultIdleScrapeInterval is how often they are read otherwise, to
	// keep the charts' history.
	DefaultIdleScrapeInterval = 30 * time.Second
	// DefaultHistory is how far back a host's samples are kept.
	DefaultHistory = 10 * time.Minute
	// DefaultMaxStreams bounds the event streams open at once, each an
	// NSDB watch.
	DefaultMaxStreams = 256
	// DefaultMaxTraces bounds the traces run at once, each a read of the
	// whole topology; more wait a little, then get a 503.
	DefaultMaxTraces = 4
)

// Config configures a Console.
type Config struct {
	Store *nsdb.Store
	// API is the REST API the console's endpoints are added to; its
	// handler also serves the trace's reads, in process.
	API *api.Server
	// ScrapeInterval, IdleScrapeInterval, History, MaxStreams and
	// MaxTraces default to the Default constants.
	ScrapeInterval     time.Duration
	IdleScrapeInterval time.Duration
	History            time.Duration
	MaxStreams         int
	MaxTraces          int
	// Client reads the agents' metrics (default: a client with a 2 s
	// timeout).
	Client *http.Client
	// Registerer receives the console's own metrics, if set.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Console serves the web console. Start runs its metrics reader; Close
// ends it and every open event stream.
type Console struct {
	cfg     Config
	log     *slog.Logger
	store   *nsdb.Store
	api     *api.Server
	static  http.Handler
	metrics *scraper
	streams *streams
	traces  chan struct{} // a slot per trace running

	ctx    context.Context // ends at Close: event streams return
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New builds the console and adds its endpoints to cfg.API.
func New(cfg Config) *Console {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ScrapeInterval <= 0 {
		cfg.ScrapeInterval = DefaultScrapeInterval
	}
	if cfg.IdleScrapeInterval <= 0 {
		cfg.IdleScrapeInterval = DefaultIdleScrapeInterval
	}
	if cfg.History <= 0 {
		cfg.History = DefaultHistory
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.MaxTraces <= 0 {
		cfg.MaxTraces = DefaultMaxTraces
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 2 * time.Second}
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	c := &Console{cfg: cfg, log: cfg.Logger, store: cfg.Store, api: cfg.API,
		static: http.StripPrefix(Path, http.FileServerFS(sub))}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.streams = newStreams(cfg.MaxStreams)
	c.traces = make(chan struct{}, cfg.MaxTraces)
	c.metrics = newScraper(c)
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(c.streams.gauge, c.metrics.scrapes)
	}
	cfg.API.Handle("GET /events", c.serveEvents)
	cfg.API.Handle("POST /simulate", c.serveSimulate)
	cfg.API.Handle("GET /hosts/{id}/metrics", c.serveHostMetrics)
	return c
}

// Start starts reading the agents' metrics, until Close.
func (c *Console) Start() {
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.metrics.run(c.ctx) }()
}

// Close ends the event streams and the metrics reader, and waits for them.
// Call it before shutting the HTTP server down: streams never end by
// themselves.
func (c *Console) Close() {
	c.once.Do(func() {
		c.cancel()
		c.wg.Wait()
		c.streams.wait()
	})
}

// ServeHTTP serves the page and its assets under Path, and redirects "/"
// there.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the console is read with GET", http.StatusMethodNotAllowed)
		return
	}
	switch {
	case r.URL.Path == "/" || r.URL.Path == "/ui":
		http.Redirect(w, r, Path, http.StatusFound)
	case strings.HasPrefix(r.URL.Path, Path):
		// The page is small and changes with the binary: revalidate.
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")
		c.static.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}
