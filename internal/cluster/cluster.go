// Package cluster runs the `midonet cluster` daemon: the NSDB (an embedded
// etcd member unless an external cluster is named), the REST API and the
// web console beside it.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/console"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
)

// Defaults of the daemon's flags.
const (
	DefaultListen     = ":8181"
	DefaultNSDBListen = "127.0.0.1:2379"
	DefaultDataDir    = "/var/lib/midonet/nsdb"
)

// Config configures a cluster node.
type Config struct {
	// Listen is the REST API's address.
	Listen string
	// NSDB lists the client URLs of an external etcd cluster; empty means
	// run an embedded member.
	NSDB []string
	// DataDir keeps the embedded member's data.
	DataDir string
	// NSDBListen is where the embedded member serves clients (agents).
	NSDBListen string
	// Prefix of the store's keys; empty means nsdb.DefaultPrefix.
	Prefix string
	// FastStore trades durability for speed in the embedded member (tests).
	FastStore bool
	Logger    *slog.Logger
}

// Cluster is a running node.
type Cluster struct {
	Store *nsdb.Store
	// APIURL is the base URL of the REST API, e.g. http://127.0.0.1:8181/midonet-api.
	APIURL string
	// ConsoleURL is the web console's, e.g. http://127.0.0.1:8181/ui/.
	ConsoleURL string
	// NSDBURLs are the client URLs agents use.
	NSDBURLs []string

	member  *embedded.Server
	console *console.Console
	http    *http.Server
	ln      net.Listener
	done    chan error
	log     *slog.Logger
}

// Start starts the store (or connects to it) and the API. It undoes what it
// began when a later step fails.
func Start(ctx context.Context, cfg Config) (c *Cluster, err error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.NSDBListen == "" {
		cfg.NSDBListen = DefaultNSDBListen
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c = &Cluster{log: cfg.Logger, done: make(chan error, 1)}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	endpoints := cfg.NSDB
	if len(endpoints) == 0 {
		c.log.Info("embedded store starting", "data_dir", cfg.DataDir, "listen", cfg.NSDBListen)
		c.member, err = embedded.Start(embedded.Config{
			DataDir:   cfg.DataDir,
			ClientURL: "http://" + strings.TrimPrefix(cfg.NSDBListen, "http://"),
			Fast:      cfg.FastStore,
		})
		if err != nil {
			return nil, err
		}
		endpoints = []string{c.member.ClientURL}
		c.log.Info("embedded store started", "data_dir", cfg.DataDir, "url", c.member.ClientURL)
	}
	c.NSDBURLs = endpoints
	c.Store, err = nsdb.Open(ctx, nsdb.Config{Endpoints: endpoints, Prefix: cfg.Prefix, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	c.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w (is another midonet cluster running? pick another --listen)", cfg.Listen, err)
	}
	host := c.ln.Addr().(*net.TCPAddr)
	apiHost := host.String()
	if host.IP.IsUnspecified() {
		apiHost = net.JoinHostPort("127.0.0.1", fmt.Sprint(host.Port))
	}
	c.APIURL = "http://" + apiHost + api.BasePath
	c.ConsoleURL = "http://" + apiHost + console.Path
	apiSrv := api.New(api.Config{Store: c.Store, Logger: cfg.Logger})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c.console = console.New(console.Config{Store: c.Store, API: apiSrv, Registerer: reg, Logger: cfg.Logger})
	c.console.Start()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle(api.BasePath, apiSrv)
	mux.Handle(api.BasePath+"/", apiSrv)
	mux.Handle("/", c.console)
	c.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		err := c.http.Serve(c.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		c.done <- err
	}()
	c.log.Info("api serving", "url", c.APIURL, "console", c.ConsoleURL)
	return c, nil
}

// Err reports a fatal error of the API server or the embedded store.
func (c *Cluster) Err() <-chan error {
	if c.member == nil {
		return c.done
	}
	out := make(chan error, 1)
	go func() {
		select {
		case err := <-c.done:
			out <- err
		case err := <-c.member.Err():
			out <- err
		}
	}()
	return out
}

// Close stops the API and the console, then the store: front door first,
// core last.
func (c *Cluster) Close() {
	if c.console != nil {
		// Its event streams would hold the HTTP server's shutdown.
		c.console.Close()
		c.console = nil
	}
	if c.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.http.Shutdown(ctx)
		cancel()
		c.http = nil
	} else if c.ln != nil {
		c.ln.Close()
	}
	if c.Store != nil {
		c.Store.Close()
		c.Store = nil
	}
	if c.member != nil {
		c.log.Info("embedded store stopping")
		c.member.Close()
		c.member = nil
		c.log.Info("embedded store stopped")
	}
}
