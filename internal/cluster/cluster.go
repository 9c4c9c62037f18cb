// Package cluster runs the `midonet cluster` daemon: the NSDB (an embedded
// etcd member unless an external cluster is named), the REST API with
// MidoNet's Neutron endpoints and its authentication, and the web console
// beside it.
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
	"github.com/midonet/midonet/internal/auth"
	"github.com/midonet/midonet/internal/console"
	"github.com/midonet/midonet/internal/neutron"
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
	// Auth is the authentication provider: AuthMock (MidoNet's mock mode:
	// no checks), AuthLocal or AuthKeystone. Empty is AuthMock, for
	// in-process clusters of tests; `midonet cluster` defaults to
	// AuthLocal.
	Auth string
	// AdminCredentials is where AuthLocal writes the first admin's
	// credential when the store has no user yet.
	AdminCredentials string
	// Local configures AuthLocal (token lifetime, hash cost).
	Local auth.LocalConfig
	// Keystone configures AuthKeystone.
	Keystone auth.KeystoneConfig
	// TLSCert and TLSKey, when set, make the API serve HTTPS.
	TLSCert, TLSKey string
	// NSDBTLSCert and NSDBTLSKey make the embedded store serve agents over
	// TLS; with NSDBClientCA, only clients with a certificate it signed
	// get in.
	NSDBTLSCert, NSDBTLSKey, NSDBClientCA string
	// NSDBCA verifies the store's certificate (default with an embedded
	// TLS store: NSDBTLSCert itself); NSDBCert and NSDBKey are this node's
	// client certificate, for a store that asks for one.
	NSDBCA, NSDBCert, NSDBKey string
	Logger                    *slog.Logger
}

// Authentication providers (--auth).
const (
	AuthMock     = "mock"
	AuthLocal    = "local"
	AuthKeystone = "keystone"
)

// DefaultAdminCredentials is where a fresh cluster with local
// authentication writes its admin's credential.
const DefaultAdminCredentials = "/var/lib/midonet/admin.credentials"

// Cluster is a running node.
type Cluster struct {
	Store *nsdb.Store
	// APIURL is the base URL of the REST API, e.g. http://127.0.0.1:8181/midonet-api.
	APIURL string
	// ConsoleURL is the web console's, e.g. http://127.0.0.1:8181/ui/.
	ConsoleURL string
	// NSDBURLs are the client URLs agents use.
	NSDBURLs []string
	// AdminCredentials names the file where this start wrote the first
	// admin's credential (empty if it wrote none).
	AdminCredentials string

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
		scheme := "http://"
		if cfg.NSDBTLSCert != "" {
			scheme = "https://"
			if cfg.NSDBCA == "" {
				cfg.NSDBCA = cfg.NSDBTLSCert
			}
			if cfg.NSDBClientCA != "" && cfg.NSDBCert == "" {
				return nil, errors.New("nsdb: with --nsdb-client-ca the cluster needs a client certificate of its own: pass --nsdb-cert and --nsdb-key")
			}
		}
		listen := strings.TrimPrefix(strings.TrimPrefix(cfg.NSDBListen, "http://"), "https://")
		c.member, err = embedded.Start(embedded.Config{
			DataDir:   cfg.DataDir,
			ClientURL: scheme + listen,
			Fast:      cfg.FastStore,
			TLSCert:   cfg.NSDBTLSCert, TLSKey: cfg.NSDBTLSKey, ClientCA: cfg.NSDBClientCA,
		})
		if err != nil {
			return nil, err
		}
		endpoints = []string{c.member.ClientURL}
		c.log.Info("embedded store started", "data_dir", cfg.DataDir, "url", c.member.ClientURL)
	}
	c.NSDBURLs = endpoints
	ncfg := nsdb.Config{Endpoints: endpoints, Prefix: cfg.Prefix, Logger: cfg.Logger}
	if cfg.NSDBCA != "" || cfg.NSDBCert != "" {
		if ncfg.TLS, err = nsdb.ClientTLS(cfg.NSDBCA, cfg.NSDBCert, cfg.NSDBKey); err != nil {
			return nil, err
		}
	}
	c.Store, err = nsdb.Open(ctx, ncfg)
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
	scheme := "http"
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if cfg.TLSCert == "" || cfg.TLSKey == "" {
			return nil, errors.New("api: TLS needs both --tls-cert and --tls-key")
		}
		scheme = "https"
	}
	c.APIURL = scheme + "://" + apiHost + api.BasePath
	c.ConsoleURL = scheme + "://" + apiHost + console.Path
	apiSrv := api.New(api.Config{Store: c.Store, Logger: cfg.Logger,
		Neutron: neutron.New(c.Store, cfg.Logger).Handler(api.BasePath, api.BaseURI)})
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c.console = console.New(console.Config{Store: c.Store, API: apiSrv, Registerer: reg, Logger: cfg.Logger})
	c.console.Start()
	// Authentication wraps the API with the console's endpoints on it.
	apiHandler, err := c.authenticate(ctx, cfg, apiSrv)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle(api.BasePath, apiHandler)
	mux.Handle(api.BasePath+"/", apiHandler)
	mux.Handle("/", c.console)
	c.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		var err error
		if scheme == "https" {
			err = c.http.ServeTLS(c.ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			err = c.http.Serve(c.ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		c.done <- err
	}()
	c.log.Info("api serving", "url", c.APIURL, "console", c.ConsoleURL)
	return c, nil
}

// authenticate wraps the API in the configured authentication.
func (c *Cluster) authenticate(ctx context.Context, cfg Config, h http.Handler) (http.Handler, error) {
	acfg := auth.Config{Store: c.Store, BasePath: api.BasePath, Logger: cfg.Logger}
	switch cfg.Auth {
	case "", AuthMock:
		c.log.Warn("authentication in mock mode: every call is the admin's", "auth", AuthMock)
		return h, nil
	case AuthLocal:
		local := auth.NewLocal(c.Store, cfg.Local)
		file := cfg.AdminCredentials
		if file == "" {
			file = DefaultAdminCredentials
		}
		created, err := local.Bootstrap(ctx, file)
		if err != nil {
			return nil, fmt.Errorf("auth: creating the first admin: %w", err)
		}
		if created {
			c.log.Info("admin credential created", "file", file, "user", "admin")
			c.AdminCredentials = file
		}
		acfg.Provider, acfg.Users = local, local
	case AuthKeystone:
		ks, err := auth.NewKeystone(cfg.Keystone)
		if err != nil {
			return nil, err
		}
		acfg.Provider = ks
	default:
		return nil, fmt.Errorf("--auth %q: want %s, %s or %s", cfg.Auth, AuthLocal, AuthKeystone, AuthMock)
	}
	c.log.Info("authentication on", "auth", cfg.Auth)
	return auth.Handler(h, acfg), nil
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
