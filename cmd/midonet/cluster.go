package main

import (
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

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
agents on --nsdb-listen. With --nsdb the node uses an external etcd cluster.`,
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
			cfg.Logger.Info("cluster ready", "api", c.APIURL, "console", c.ConsoleURL, "nsdb", strings.Join(c.NSDBURLs, ","))
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
