package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/midonet/midonet/internal/auth"
	"github.com/midonet/midonet/internal/cli"
	"github.com/midonet/midonet/internal/cluster"
)

func clusterCommand() *cobra.Command {
	var cfg cluster.Config
	var nsdbURLs string
	var logLevel string
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Run the NSDB (embedded etcd by default), the REST API and the web console",
		Long: `Runs a cluster node: the network state database, the MidoNet REST API under
/midonet-api and the web console at / (served at /ui/).

By default an embedded etcd member keeps the data under --data-dir and serves
agents on --nsdb-listen. With --nsdb the node uses an external etcd cluster.

Every call needs an X-Auth-Token (--auth local, the default: users and tokens
in the store; a fresh cluster creates the user admin and writes its password to
--admin-credentials; --auth keystone: tokens from Keystone v3). --auth mock is
MidoNet's mock mode: no checks, every call is the admin's.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if nsdbURLs != "" {
				cfg.NSDB = strings.Split(nsdbURLs, ",")
			}
			cfg.Logger = newLogger(logLevel)
			c, err := cluster.Start(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer c.Close()
			cfg.Logger.Info("cluster ready", "api", c.APIURL, "console", c.ConsoleURL, "nsdb", strings.Join(c.NSDBURLs, ","), "auth", cfg.Auth)
			if c.AdminCredentials != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "The first admin's credential is in %s (user admin): midonet --credentials %s ..., "+
					"or eval $(midonet login --credentials %s); the CLI reads %s by itself.\n",
					c.AdminCredentials, c.AdminCredentials, c.AdminCredentials, cli.DefaultCredentials)
			}
			select {
			case <-cmd.Context().Done():
				return nil
			case err := <-c.Err():
				return err
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", cluster.DefaultListen, "address of the REST API")
	f.StringVar(&nsdbURLs, "nsdb", "", "client URLs of an external etcd cluster, comma-separated (default: run an embedded member)")
	f.StringVar(&cfg.DataDir, "data-dir", cluster.DefaultDataDir, "data directory of the embedded store")
	f.StringVar(&cfg.NSDBListen, "nsdb-listen", cluster.DefaultNSDBListen, "client address of the embedded store, for agents")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&cfg.Auth, "auth", cluster.AuthLocal, "authentication: local (users in the store), keystone, or mock (no checks)")
	f.StringVar(&cfg.AdminCredentials, "admin-credentials", cluster.DefaultAdminCredentials, "file where a fresh cluster with --auth local writes its admin's credential")
	f.DurationVar(&cfg.Local.TokenTTL, "token-ttl", auth.DefaultTokenTTL, "lifetime of the tokens of --auth local")
	f.StringVar(&cfg.Keystone.URL, "keystone-url", "", "Keystone's URL for --auth keystone, e.g. http://keystone:5000")
	f.StringVar(&cfg.Keystone.Domain, "keystone-domain", "Default", "domain of the users and projects that log in through the API")
	f.StringVar(&cfg.Keystone.DefaultProject, "keystone-project", "", "project a login without X-Auth-Project is scoped to")
	f.StringVar(&cfg.Keystone.AdminRole, "keystone-admin-role", "admin", "Keystone role of MidoNet's admins")
	f.StringVar(&cfg.Keystone.TenantAdminRole, "keystone-tenant-admin-role", "member", "Keystone role of tenant admins (read and write their project's objects)")
	f.StringVar(&cfg.Keystone.TenantUserRole, "keystone-tenant-user-role", "reader", "Keystone role of tenant users (read their project's objects)")
	f.StringVar(&cfg.Keystone.CAFile, "keystone-ca", "", "CA certificate of Keystone's TLS certificate")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "certificate (PEM) to serve the API over HTTPS with")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "private key (PEM) of --tls-cert")
	f.StringVar(&cfg.NSDBTLSCert, "nsdb-tls-cert", "", "certificate (PEM) the embedded store serves agents with over TLS (https)")
	f.StringVar(&cfg.NSDBTLSKey, "nsdb-tls-key", "", "private key (PEM) of --nsdb-tls-cert")
	f.StringVar(&cfg.NSDBClientCA, "nsdb-client-ca", "", "CA (PEM) whose client certificates the embedded store requires")
	f.StringVar(&cfg.NSDBCA, "nsdb-ca", "", "CA (PEM) of the store's certificate (default with --nsdb-tls-cert: that certificate)")
	f.StringVar(&cfg.NSDBCert, "nsdb-cert", "", "client certificate (PEM) this node presents to the store")
	f.StringVar(&cfg.NSDBKey, "nsdb-key", "", "private key (PEM) of --nsdb-cert")
	return cmd
}

// newLogger returns a structured logger on stderr.
func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
