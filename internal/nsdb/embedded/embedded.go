// Package embedded runs an etcd member inside the midonet process: the
// default store of `midonet cluster`, and the store of tests. It is a
// package of its own so that only the binaries that need the etcd server
// link it (the agent and the CLI need only the client).
package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Config describes one member.
type Config struct {
	// Name of the member; it must be unique within a cluster. Default "default".
	Name string
	// DataDir keeps the member's data. Required.
	DataDir string
	// ClientURL is where clients connect, e.g. "http://127.0.0.1:2379".
	// Port 0 picks a free port; Server.ClientURL reports the one chosen.
	ClientURL string
	// PeerURL is where other members connect. Port 0 picks a free port,
	// which is only possible for a single-member cluster.
	PeerURL string
	// InitialCluster lists every member as name=peerURL, comma-separated;
	// empty means a cluster of this member alone.
	InitialCluster string
	// ExistingCluster joins a running cluster instead of bootstrapping.
	ExistingCluster bool
	// Fast selects short heartbeats and no fsync: for tests only.
	Fast bool
	// StartTimeout bounds the wait for the member to be ready. Default 60s.
	StartTimeout time.Duration
	// TLSCert and TLSKey, when set, make the member serve clients over
	// TLS (the client URL must then be https); with ClientCA, clients must
	// present a certificate signed by it.
	TLSCert, TLSKey, ClientCA string
	// MaxTxnOps bounds the operations of a transaction; default MaxTxnOps
	// (etcd's own default, 128, is what a store that is not ours may hold
	// clients to).
	MaxTxnOps uint
}

// DefaultClientURL is where `midonet cluster` serves its embedded store.
const DefaultClientURL = "http://127.0.0.1:2379"

// MaxTxnOps is raised well above etcd's default of 128 because one API
// operation (a bridge delete and its cascades) is one transaction.
const MaxTxnOps = 16384

// Server is a running member.
type Server struct {
	etcd *embed.Etcd
	// ClientURL is the URL clients use, with the real port.
	ClientURL string
	// PeerURL is the URL other members use, with the real port.
	PeerURL string
}

// Start starts a member and waits until it serves clients.
func Start(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("embedded store: no data directory given; pass --data-dir")
	}
	if cfg.Name == "" {
		cfg.Name = "default"
	}
	if cfg.ClientURL == "" {
		cfg.ClientURL = DefaultClientURL
	}
	if cfg.PeerURL == "" {
		cfg.PeerURL = "http://127.0.0.1:0"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	curl, err := parseURL(cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("embedded store: client URL: %w", err)
	}
	purl, err := parseURL(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("embedded store: peer URL: %w", err)
	}
	// Ports given as 0 are picked now, all at once so that they differ:
	// the advertised URLs must name real ports.
	var pick []*url.URL
	if cfg.InitialCluster == "" && purl.Port() == "0" {
		pick = append(pick, purl) // a lone member's peer port
	}
	if curl.Port() == "0" {
		pick = append(pick, curl)
	}
	if len(pick) > 0 {
		hosts := make([]string, len(pick))
		for i, u := range pick {
			hosts[i] = u.Hostname()
		}
		ports, err := freePorts(hosts...)
		if err != nil {
			return nil, fmt.Errorf("embedded store: %w", err)
		}
		for i, u := range pick {
			u.Host = net.JoinHostPort(u.Hostname(), ports[i])
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}

	ec := embed.NewConfig()
	ec.Name = cfg.Name
	ec.Dir = cfg.DataDir
	ec.ListenClientUrls = []url.URL{*curl}
	ec.AdvertiseClientUrls = []url.URL{*curl}
	ec.ListenPeerUrls = []url.URL{*purl}
	ec.AdvertisePeerUrls = []url.URL{*purl}
	ec.MaxTxnOps = MaxTxnOps
	if cfg.MaxTxnOps > 0 {
		ec.MaxTxnOps = cfg.MaxTxnOps
	}
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		if cfg.TLSCert == "" || cfg.TLSKey == "" || curl.Scheme != "https" {
			return nil, fmt.Errorf("embedded store: serving clients over TLS needs a certificate, its key and an https client URL (have %s)", curl)
		}
		ec.ClientTLSInfo.CertFile, ec.ClientTLSInfo.KeyFile = cfg.TLSCert, cfg.TLSKey
		if cfg.ClientCA != "" {
			ec.ClientTLSInfo.TrustedCAFile, ec.ClientTLSInfo.ClientCertAuth = cfg.ClientCA, true
		}
	} else if curl.Scheme == "https" {
		return nil, fmt.Errorf("embedded store: client URL %s is https but no certificate was given", curl)
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Keep an hour of history so watchers that reconnect can resume.
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"
	if cfg.Fast {
		ec.TickMs = 10
		ec.ElectionMs = 100
		ec.UnsafeNoFsync = true
	}
	if cfg.InitialCluster != "" {
		ec.InitialCluster = cfg.InitialCluster
	} else {
		ec.InitialCluster = ec.InitialClusterFromName(cfg.Name)
	}
	if cfg.ExistingCluster {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedded store: start member %s on %s: %w", cfg.Name, curl, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded store: member %s failed: %w", cfg.Name, err)
	case <-time.After(cfg.StartTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("embedded store: member %s not ready after %s (is a quorum of the initial cluster up?)", cfg.Name, cfg.StartTimeout)
	}
	return &Server{etcd: e, ClientURL: curl.String(), PeerURL: purl.String()}, nil
}

// Err reports a fatal error of the running member.
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops the member. Close clients first: open client connections
// make the shutdown wait.
func (s *Server) Close() {
	s.etcd.Close()
}

// Kill stops the member abruptly, as a crash would: no leadership
// transfer, client streams cut at once instead of drained. Tests use it to
// take a member out of a cluster; start it again on the same DataDir.
func (s *Server) Kill() {
	s.etcd.Server.HardStop()
	s.etcd.Close()
}

// Stopped reports whether the member has stopped, within ctx.
func (s *Server) Stopped(ctx context.Context) bool {
	select {
	case <-s.etcd.Server.StopNotify():
		return true
	case <-ctx.Done():
		return false
	}
}

func parseURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("%q has no port", s)
	}
	return u, nil
}

// freePorts asks the kernel for a free TCP port on each of hosts, all
// distinct: it holds each listener until it has them all, so that it cannot
// be handed one port twice.
func freePorts(hosts ...string) ([]string, error) {
	ports := make([]string, 0, len(hosts))
	for _, host := range hosts {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		defer l.Close()
		_, p, err := net.SplitHostPort(l.Addr().String())
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// LocalClusterConfigs returns the configurations of a cluster of one member
// per directory in dirs, on loopback, with every member's peer and client
// ports picked together (members picking their own could pick one
// another's). Start them together: a member serves once a quorum is up.
func LocalClusterConfigs(dirs []string, fast bool) ([]Config, error) {
	n := len(dirs)
	ports, err := freePorts(slices.Repeat([]string{"127.0.0.1"}, 2*n)...)
	if err != nil {
		return nil, err
	}
	cfgs := make([]Config, n)
	initial := make([]string, n)
	for i := range n {
		peer := "http://127.0.0.1:" + ports[2*i]
		name := fmt.Sprintf("m%d", i)
		cfgs[i] = Config{Name: name, DataDir: dirs[i], ClientURL: "http://127.0.0.1:" + ports[2*i+1], PeerURL: peer,
			Fast: fast, StartTimeout: 20 * time.Second}
		initial[i] = name + "=" + peer
	}
	for i := range cfgs {
		cfgs[i].InitialCluster = strings.Join(initial, ",")
	}
	return cfgs, nil
}

// StartLocalCluster starts n members on loopback, each with a data
// directory from dirs, peer ports picked beforehand, and returns them once a
// quorum serves clients: a real multi-member cluster in one process, for
// tests and for trying failover on one machine.
func StartLocalCluster(dirs []string, fast bool) ([]*Server, error) {
	cfgs, err := LocalClusterConfigs(dirs, fast)
	if err != nil {
		return nil, err
	}
	members := make([]*Server, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Go(func() { members[i], errs[i] = Start(cfgs[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, m := range members {
			if m != nil {
				m.Kill()
			}
		}
		return nil, err
	}
	return members, nil
}
