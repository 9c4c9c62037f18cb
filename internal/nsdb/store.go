// Package nsdb is MidoNet's Network State DataBase on etcd: typed objects of
// the virtual topology with revisions and multi-object optimistic
// transactions, watches that resume after a reconnect, and state keys bound
// to leases (host alive, port active, MAC and ARP table entries).
//
// Objects are stored as JSON under <prefix>/topology/<kind>/<id>. A
// transaction (Update) reads at one revision, buffers its writes, and commits
// them in one etcd transaction guarded by the revisions of everything it read
// or overwrote; on a conflict it runs again. Referential integrity relies on
// one rule: whoever writes a reference to an object reads that object in the
// same transaction, so a concurrent delete of the object conflicts with it.
//
// Keys, under the store prefix (default /midonet/v1):
//
//	/topology/<kind>/<id>                       object JSON              (Tx)
//	/seq/<name>                                 last value of a counter  (Tx.NextSequence)
//	/state/hosts/<host>/alive                   agent running            leased
//	/state/hosts/<host>/interfaces/<name>       an interface of the host leased
//	/state/ports/<port>/active                  → host id                leased
//	/state/bridges/<bridge>/vlans/<vlan>/mac/<mac> → port id             seeded or learned
//	/state/bridges/<bridge>/arp/<ip>            → mac                    seeded or learned
//	/state/routers/<router>/arp/<ip>            → mac                    leased
//
// MACs are spelt lowercase with colons (FormatMAC), IPs as netip.Addr
// spells them, VLANs in decimal (0: untagged). A leased key is written
// through a Session and vanishes when the session closes or its lease
// expires (the agent died or lost the store for longer than the TTL). A
// seeded key is persistent, written by an operator through the API
// (Store.PutState, SeedMAC, SeedBridgeARP); a learned entry never replaces
// a seeded one, and a seeded one replaces a learned one.
//
// Readers follow changes with Snapshot or ListState, then Watch from the
// revision they returned.
package nsdb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/midonet/midonet/internal/topology"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors callers branch on.
var (
	// The first three are the topology's sentinels, so the integrity
	// rules of package topology and the API branch on one set.
	ErrNotFound = topology.ErrNotFound
	ErrExists   = topology.ErrExists
	// ErrConflict means a transaction kept conflicting with concurrent
	// writers and gave up.
	ErrConflict = topology.ErrConflict
	// ErrUnavailable wraps failures to reach the store (no quorum, a
	// leader election, timeouts): the operation may be retried.
	ErrUnavailable = topology.ErrBusy
	// ErrReadOnly means a View tried to write.
	ErrReadOnly = errors.New("write in a read-only transaction")
)

// DefaultPrefix is the key prefix of everything midonet stores.
const DefaultPrefix = "/midonet/v1"

// Config says how to reach the store.
type Config struct {
	// Endpoints are etcd client URLs.
	Endpoints []string
	// Prefix of all keys; default DefaultPrefix. Tests use their own to
	// share one etcd.
	Prefix string
	// DialTimeout bounds the first connection; default 5s.
	DialTimeout time.Duration
	// RequestTimeout bounds each request; default 10s.
	RequestTimeout time.Duration
	// TLS secures the connections (https endpoints): see ClientTLS.
	TLS    *tls.Config
	Logger *slog.Logger
}

// ClientTLS builds the TLS configuration of a store client: ca verifies
// the members' certificates (empty: the system's roots), cert and key are
// the client's own certificate when the members ask for one.
func ClientTLS(ca, cert, key string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("nsdb: CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nsdb: CA %s holds no PEM certificate", ca)
		}
		cfg.RootCAs = pool
	}
	if cert != "" || key != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("nsdb: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}

// Store is a connection to the NSDB.
type Store struct {
	cli    *clientv3.Client
	prefix string
	reqTO  time.Duration
	log    *slog.Logger
}

// Open connects to the etcd cluster named in cfg.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("nsdb: no endpoints; pass --nsdb URL[,URL...]")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		// No Context: the client lives until Close, not until the
		// context that opened it ends.
		Logger: nopZap(),
		// Keepalives make a dead member noticed quickly so requests fail
		// over to the others.
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		AutoSyncInterval:     30 * time.Second,
		TLS:                  cfg.TLS,
	})
	if err != nil {
		return nil, fmt.Errorf("nsdb: connect to %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	s := &Store{cli: cli, prefix: strings.TrimSuffix(cfg.Prefix, "/"), reqTO: cfg.RequestTimeout, log: cfg.Logger}
	// Fail early, with a clear message, when nothing answers.
	cctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(cctx, s.prefix+"/ping"); err != nil {
		cli.Close()
		return nil, fmt.Errorf("nsdb: no etcd answers at %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	return s, nil
}

// Close closes the connection.
func (s *Store) Close() error { return s.cli.Close() }

// Client exposes the etcd client for the parts of the package that need it
// (watches, leases) and for tests.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix is the key prefix of this store.
func (s *Store) Prefix() string { return s.prefix }

func (s *Store) objectPrefix(kind string) string { return s.prefix + "/topology/" + kind + "/" }

func (s *Store) objectKey(kind, id string) string { return s.objectPrefix(kind) + id }

// TopologyPrefix is the prefix under which every object is stored; watch it
// to follow the whole topology.
func (s *Store) TopologyPrefix() string { return s.prefix + "/topology/" }

// ParseObjectKey splits a key under TopologyPrefix into kind and id.
func (s *Store) ParseObjectKey(key string) (kind, id string, ok bool) {
	rest, ok := strings.CutPrefix(key, s.TopologyPrefix())
	if !ok {
		return "", "", false
	}
	kind, id, ok = strings.Cut(rest, "/")
	return kind, id, ok && kind != "" && id != ""
}

func (s *Store) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.reqTO)
}
