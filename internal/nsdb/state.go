package nsdb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/midonet/midonet/internal/topology"
)

// StatePrefix is the Watch and ListState prefix of every state key.
const StatePrefix = "/state/"

// DefaultSessionTTL is how long a session's keys outlive its last
// keepalive: a host is declared dead this long after it stops answering.
const DefaultSessionTTL = 5 * time.Second

// ErrSessionClosed is returned by the methods of a closed Session.
var ErrSessionClosed = errors.New("nsdb: session closed")

// HostAliveKey is present while the agent of the host runs.
func HostAliveKey(hostID string) string { return "/state/hosts/" + hostID + "/alive" }

// HostInterfacesPrefix is the prefix of the host's interface keys.
func HostInterfacesPrefix(hostID string) string { return "/state/hosts/" + hostID + "/interfaces/" }

// HostInterfaceKey holds what the agent of the host reports about one of
// its interfaces.
func HostInterfaceKey(hostID, name string) string { return HostInterfacesPrefix(hostID) + name }

// HostMetricsKey holds, while the agent of the host runs, the address
// (host:port) where it serves its Prometheus metrics on /metrics; an
// unspecified host ("[::]:9100", ":9100") stands for the host's tunnel-zone
// address. The cluster's console reads the agents' metrics there.
func HostMetricsKey(hostID string) string { return "/state/hosts/" + hostID + "/metrics" }

// PortActiveKey is present, holding the id of the host, while the agent
// of that host has the port bound and up.
func PortActiveKey(portID string) string { return "/state/ports/" + portID + "/active" }

// LearnedRoutesPrefix is the prefix of every learned route. They live
// apart from the ports' other keys, so that reading those (active flags)
// does not read a full routing table too.
const LearnedRoutesPrefix = "/state/port_routes/"

// PortRoutesPrefix is the prefix of the routes an agent learned through a
// router port (by BGP), one key a route.
func PortRoutesPrefix(portID string) string { return LearnedRoutesPrefix + portID + "/" }

// PortRouteKey holds a learned route (a topology.Route, as JSON) through
// port portID.
func PortRouteKey(portID, routeID string) string { return PortRoutesPrefix(portID) + routeID }

// PortBGPKey holds the BGP status of a router port, as text: MidoNet's
// port "bgp" key, shown as the port's bgpStatus.
func PortBGPKey(portID string) string { return "/state/ports/" + portID + "/bgp" }

// BGPPeerStatusPrefix is the prefix of every BGP peer's status key.
const BGPPeerStatusPrefix = "/state/bgp_peers/"

// BGPPeerStatusKey holds the state of a BGP peer's session, as JSON,
// written by the agent whose speaker has the session.
func BGPPeerStatusKey(peerID string) string { return BGPPeerStatusPrefix + peerID + "/status" }

// TracedPacketsPrefix holds, per host, the last packets its agent traced
// for a trace request.
func TracedPacketsPrefix(requestID string) string { return "/state/traces/" + requestID + "/" }

// TracedPacketsKey holds the last packets the agent of a host traced for a
// trace request (a JSON list of topology.TracedPacket), under the agent's
// lease.
func TracedPacketsKey(requestID, hostID string) string {
	return TracedPacketsPrefix(requestID) + hostID
}

// BridgeMACPrefix is the prefix of the MAC table of one VLAN of a bridge
// (VLAN 0: untagged).
func BridgeMACPrefix(bridgeID string, vlan uint16) string {
	return "/state/bridges/" + bridgeID + "/vlans/" + strconv.FormatUint(uint64(vlan), 10) + "/mac/"
}

// BridgeMACKey maps a MAC in a VLAN of a bridge to the id of the port
// behind which it lives.
func BridgeMACKey(bridgeID string, vlan uint16, mac [6]byte) string {
	return BridgeMACPrefix(bridgeID, vlan) + FormatMAC(mac)
}

// BridgeMACsPrefix is the prefix of a bridge's MAC tables of every VLAN.
func BridgeMACsPrefix(bridgeID string) string { return "/state/bridges/" + bridgeID + "/vlans/" }

// BridgeARPPrefix is the prefix of a bridge's ARP table.
func BridgeARPPrefix(bridgeID string) string { return "/state/bridges/" + bridgeID + "/arp/" }

// BridgeARPKey maps an IP address known on a bridge to its MAC.
func BridgeARPKey(bridgeID string, ip netip.Addr) string {
	return BridgeARPPrefix(bridgeID) + ip.String()
}

// RouterARPPrefix is the prefix of a router's ARP table.
func RouterARPPrefix(routerID string) string { return "/state/routers/" + routerID + "/arp/" }

// RouterARPKey maps an IP address a router resolved to its MAC.
func RouterARPKey(routerID string, ip netip.Addr) string {
	return RouterARPPrefix(routerID) + ip.String()
}

// NATBlockPrefix is the prefix of the SNAT port-block leases of one NAT
// address on a device (a router or load balancer).
func NATBlockPrefix(deviceID string, ip netip.Addr) string {
	return "/state/nat/" + deviceID + "/" + ip.String() + "/"
}

// NATBlockKey is present, holding the id of the host, while that host
// leases block (ports block*64 to block*64+63) of a NAT address; it is
// bound to the host's session (ClaimState), so a dead host's blocks come
// free.
func NATBlockKey(deviceID string, ip netip.Addr, block uint16) string {
	return NATBlockPrefix(deviceID, ip) + strconv.FormatUint(uint64(block), 10)
}

// NATBlockUsedPrefix is the prefix of the persistent marks of the blocks of
// a NAT address that were ever leased.
func NATBlockUsedPrefix(deviceID string, ip netip.Addr) string {
	return "/state/natused/" + deviceID + "/" + ip.String() + "/"
}

// NATBlockUsedKey marks a block as leased once; its revision says when it
// was last leased, so that hosts lease the blocks never used first and then
// the least recently used (a port of a block freed a moment ago may still
// be in use by a connection its old host restored).
func NATBlockUsedKey(deviceID string, ip netip.Addr, block uint16) string {
	return NATBlockUsedPrefix(deviceID, ip) + strconv.FormatUint(uint64(block), 10)
}

// ParseNATBlockKey splits a NATBlockKey or a NATBlockUsedKey.
func ParseNATBlockKey(key string) (deviceID string, ip netip.Addr, block uint16, ok bool) {
	id, rest, ok := cutStateKey(key, "nat")
	if !ok {
		if id, rest, ok = cutStateKey(key, "natused"); !ok {
			return "", netip.Addr{}, 0, false
		}
	}
	a, b, ok := strings.Cut(rest, "/")
	if !ok {
		return "", netip.Addr{}, 0, false
	}
	if ip, ok = parseIP(a); !ok {
		return "", netip.Addr{}, 0, false
	}
	n, err := strconv.ParseUint(b, 10, 16)
	if err != nil || strconv.FormatUint(n, 10) != b || n >= 1024 {
		return "", netip.Addr{}, 0, false
	}
	return id, ip, uint16(n), true
}

// FormatMAC spells a MAC the one way state keys and values use:
// lowercase, colon-separated.
func FormatMAC(mac [6]byte) string { return topology.FormatMAC(mac) }

// ParseMAC parses a MAC spelt as FormatMAC spells it; any other spelling
// is refused, so that one MAC has one key.
func ParseMAC(s string) (mac [6]byte, ok bool) {
	if len(s) != 17 {
		return mac, false
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return mac, false
	}
	copy(mac[:], hw)
	return mac, FormatMAC(mac) == s
}

// parseIP parses an address spelt as netip.Addr.String spells it.
func parseIP(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" || ip.String() != s {
		return netip.Addr{}, false
	}
	return ip, true
}

// cutStateKey splits a key of the form /state/<collection>/<id>/<rest>.
func cutStateKey(key, collection string) (id, rest string, ok bool) {
	after, ok := strings.CutPrefix(key, "/state/"+collection+"/")
	if !ok {
		return "", "", false
	}
	id, rest, ok = strings.Cut(after, "/")
	return id, rest, ok && id != ""
}

// ParseHostAliveKey returns the host id of a HostAliveKey.
func ParseHostAliveKey(key string) (hostID string, ok bool) {
	id, rest, ok := cutStateKey(key, "hosts")
	return id, ok && rest == "alive"
}

// ParseHostInterfaceKey returns the host id and interface name of a
// HostInterfaceKey.
func ParseHostInterfaceKey(key string) (hostID, name string, ok bool) {
	id, rest, ok := cutStateKey(key, "hosts")
	name, ok2 := strings.CutPrefix(rest, "interfaces/")
	return id, name, ok && ok2 && name != "" && !strings.Contains(name, "/")
}

// ParsePortActiveKey returns the port id of a PortActiveKey.
func ParsePortActiveKey(key string) (portID string, ok bool) {
	id, rest, ok := cutStateKey(key, "ports")
	return id, ok && rest == "active"
}

// ParsePortRouteKey splits a PortRouteKey.
func ParsePortRouteKey(key string) (portID, routeID string, ok bool) {
	id, rid, ok := cutStateKey(key, "port_routes")
	return id, rid, ok && rid != "" && !strings.Contains(rid, "/")
}

// ParsePortBGPKey returns the port id of a PortBGPKey.
func ParsePortBGPKey(key string) (portID string, ok bool) {
	id, rest, ok := cutStateKey(key, "ports")
	return id, ok && rest == "bgp"
}

// ParseBGPPeerStatusKey returns the peer id of a BGPPeerStatusKey.
func ParseBGPPeerStatusKey(key string) (peerID string, ok bool) {
	id, rest, ok := cutStateKey(key, "bgp_peers")
	return id, ok && rest == "status"
}

// ParseBridgeMACKey splits a BridgeMACKey.
func ParseBridgeMACKey(key string) (bridgeID string, vlan uint16, mac [6]byte, ok bool) {
	id, rest, ok := cutStateKey(key, "bridges")
	if !ok {
		return "", 0, mac, false
	}
	rest, ok = strings.CutPrefix(rest, "vlans/")
	if !ok {
		return "", 0, mac, false
	}
	v, m, ok := strings.Cut(rest, "/mac/")
	if !ok {
		return "", 0, mac, false
	}
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || strconv.FormatUint(n, 10) != v {
		return "", 0, mac, false
	}
	mac, ok = ParseMAC(m)
	return id, uint16(n), mac, ok
}

// ParseBridgeARPKey splits a BridgeARPKey.
func ParseBridgeARPKey(key string) (bridgeID string, ip netip.Addr, ok bool) {
	return parseARPKey(key, "bridges")
}

// ParseRouterARPKey splits a RouterARPKey.
func ParseRouterARPKey(key string) (routerID string, ip netip.Addr, ok bool) {
	return parseARPKey(key, "routers")
}

func parseARPKey(key, collection string) (string, netip.Addr, bool) {
	id, rest, ok := cutStateKey(key, collection)
	if !ok {
		return "", netip.Addr{}, false
	}
	s, ok := strings.CutPrefix(rest, "arp/")
	if !ok {
		return "", netip.Addr{}, false
	}
	ip, ok := parseIP(s)
	return id, ip, ok
}

// StateEntry is one state key.
type StateEntry struct {
	// Key is relative to the store prefix, as the key functions build it.
	Key   string
	Value []byte
	// Leased reports whether the key lives only as long as a session
	// (learned, liveness); otherwise it is persistent (seeded by an
	// operator).
	Leased      bool
	ModRevision int64
}

func (s *Store) stateKey(key string) (string, error) {
	if !strings.HasPrefix(key, StatePrefix) || strings.HasSuffix(key, "/") {
		return "", fmt.Errorf("nsdb: %q is not a state key; build keys with the nsdb key functions", key)
	}
	return s.prefix + key, nil
}

// PutState writes a persistent state key, bound to no session: a MAC or
// ARP entry seeded by an operator. It replaces a learned entry.
func (s *Store) PutState(ctx context.Context, key string, value []byte) error {
	full, err := s.stateKey(key)
	if err != nil {
		return err
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	if _, err := s.cli.Put(ctx, full, string(value)); err != nil {
		return fmt.Errorf("nsdb: write %s: %w: %w", key, ErrUnavailable, err)
	}
	return nil
}

// DeleteState deletes a state key, persistent or leased; deleting an
// absent key is not an error.
func (s *Store) DeleteState(ctx context.Context, key string) error {
	full, err := s.stateKey(key)
	if err != nil {
		return err
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	if _, err := s.cli.Delete(ctx, full); err != nil {
		return fmt.Errorf("nsdb: delete %s: %w: %w", key, ErrUnavailable, err)
	}
	return nil
}

// DeleteStateIf deletes a state key if it holds value, and reports whether
// it did: an entry that changed meanwhile (a MAC learned elsewhere) stays.
func (s *Store) DeleteStateIf(ctx context.Context, key string, value []byte) (bool, error) {
	full, err := s.stateKey(key)
	if err != nil {
		return false, err
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(full), "=", string(value))).
		Then(clientv3.OpDelete(full)).Commit()
	if err != nil {
		return false, fmt.Errorf("nsdb: delete %s: %w: %w", key, ErrUnavailable, err)
	}
	return resp.Succeeded, nil
}

// DeleteStatePrefix deletes every state key under prefix: the tables of a
// deleted device.
func (s *Store) DeleteStatePrefix(ctx context.Context, prefix string) error {
	if !strings.HasPrefix(prefix, StatePrefix) || !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("nsdb: %q is not a state prefix; build prefixes with the nsdb key functions", prefix)
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	if _, err := s.cli.Delete(ctx, s.prefix+prefix, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("nsdb: delete %s: %w: %w", prefix, ErrUnavailable, err)
	}
	return nil
}

// GetState reads a state key, or returns ErrNotFound.
func (s *Store) GetState(ctx context.Context, key string) (StateEntry, error) {
	full, err := s.stateKey(key)
	if err != nil {
		return StateEntry{}, err
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, full)
	if err != nil {
		return StateEntry{}, fmt.Errorf("nsdb: read %s: %w: %w", key, ErrUnavailable, err)
	}
	if len(resp.Kvs) == 0 {
		return StateEntry{}, fmt.Errorf("state %s: %w", key, ErrNotFound)
	}
	kv := resp.Kvs[0]
	return StateEntry{Key: key, Value: kv.Value, Leased: kv.Lease != 0, ModRevision: kv.ModRevision}, nil
}

// ListState reads every state key under prefix (e.g. BridgeMACPrefix) at
// one revision, in key order, and returns that revision: Watch from it to
// follow the keys.
func (s *Store) ListState(ctx context.Context, prefix string) ([]StateEntry, int64, error) {
	if !strings.HasPrefix(prefix, StatePrefix) {
		return nil, 0, fmt.Errorf("nsdb: %q is not a state prefix; build prefixes with the nsdb key functions", prefix)
	}
	ctx, cancel := s.reqCtx(ctx)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("nsdb: list %s: %w: %w", prefix, ErrUnavailable, err)
	}
	out := make([]StateEntry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, StateEntry{Key: string(kv.Key[len(s.prefix):]), Value: kv.Value,
			Leased: kv.Lease != 0, ModRevision: kv.ModRevision})
	}
	return out, resp.Header.Revision, nil
}

// SessionConfig configures a Session.
type SessionConfig struct {
	// TTL is how long the session's keys outlive its last keepalive;
	// default DefaultSessionTTL. etcd counts it in whole seconds, at
	// least one.
	TTL time.Duration
}

// StateSession is what a holder of session-bound state keys calls:
// *Session implements it, and so does the in-memory store of package
// memstore, so that a user of sessions (the agent) can run on either.
type StateSession interface {
	SetState(ctx context.Context, key string, value []byte) error
	LearnState(ctx context.Context, key string, value []byte) (bool, error)
	ClaimState(ctx context.Context, key string, value []byte) (bool, error)
	DeleteState(ctx context.Context, key string) error
	// SetStates and DeleteStates write and delete many keys in batches
	// (a feed of learned routes); DeleteStates deletes whichever session
	// holds a key, so use it for keys only this session writes.
	SetStates(ctx context.Context, entries []StateEntry) error
	DeleteStates(ctx context.Context, keys []string) error
	Close() error
}

var _ StateSession = (*Session)(nil)

// Session binds state keys to the life of a process through an etcd lease
// it keeps alive. Its keys vanish when it is closed, or TTL after the
// process dies or loses the store. If the lease expires while the process
// lives (the store was unreachable for longer than TTL), the session takes
// a new lease and writes its keys again.
type Session struct {
	s      *Store
	ttl    int64 // seconds
	cancel context.CancelFunc
	done   chan struct{} // closed when the keepalive loop ends

	mu     sync.Mutex            // serializes writes of the session's keys
	lease  clientv3.LeaseID      // guarded by mu
	keys   map[string]sessionKey // guarded by mu: full key → what to write again
	closed bool                  // guarded by mu
	// smallBatch: the store refused a large batch (see batchSize);
	// guarded by mu.
	smallBatch bool
}

type sessionKey struct {
	value []byte
	// unlessPersistent: write only if no persistent entry holds the key.
	unlessPersistent bool
	// claim: write only if the key is absent or already holds value.
	claim bool
}

// NewSession takes a lease and keeps it alive until Close.
func (s *Store) NewSession(ctx context.Context, cfg SessionConfig) (*Session, error) {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultSessionTTL
	}
	ttl := max(int64((cfg.TTL+time.Second-1)/time.Second), 1)
	se := &Session{s: s, ttl: ttl, done: make(chan struct{}), keys: map[string]sessionKey{}}
	lease, err := se.grant(ctx)
	if err != nil {
		return nil, err
	}
	se.lease = lease
	runCtx, cancel := context.WithCancel(context.Background())
	se.cancel = cancel
	go se.run(runCtx)
	return se, nil
}

func (se *Session) grant(ctx context.Context) (clientv3.LeaseID, error) {
	ctx, cancel := se.s.reqCtx(ctx)
	defer cancel()
	resp, err := se.s.cli.Grant(ctx, se.ttl)
	if err != nil {
		return 0, fmt.Errorf("nsdb: take a lease of %ds: %w", se.ttl, err)
	}
	return resp.ID, nil
}

// Lease is the id of the session's current lease.
func (se *Session) Lease() int64 {
	se.mu.Lock()
	defer se.mu.Unlock()
	return int64(se.lease)
}

// run keeps the lease alive, and replaces it when it is lost.
func (se *Session) run(ctx context.Context) {
	defer close(se.done)
	backoff := backoffStart
	for {
		se.mu.Lock()
		lease := se.lease
		se.mu.Unlock()
		if ka, err := se.s.cli.KeepAlive(ctx, lease); err == nil {
			for range ka {
				backoff = backoffStart
			}
		}
		if ctx.Err() != nil || se.s.cli.Ctx().Err() != nil {
			return
		}
		se.mu.Lock()
		var err error
		if se.lease == lease { // not replaced meanwhile by a write
			se.s.log.Warn("state session lost its lease", "lease", int64(lease))
			err = se.renewLocked(ctx)
		}
		se.mu.Unlock()
		if err != nil {
			se.s.log.Warn("state session cannot renew its lease", "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, backoffMax)
		}
	}
}

// renewLocked replaces the lease and writes the session's keys again.
func (se *Session) renewLocked(ctx context.Context) error {
	lease, err := se.grant(ctx)
	if err != nil {
		return err
	}
	if err := se.rewriteLocked(ctx, lease); err != nil {
		rctx, cancel := se.s.reqCtx(ctx)
		se.s.cli.Revoke(rctx, lease)
		cancel()
		return err
	}
	old := se.lease
	se.lease = lease
	// Let go of the old lease, if it still exists, so that keys written
	// under it by concurrent calls vanish now rather than never.
	rctx, cancel := se.s.reqCtx(ctx)
	defer cancel()
	se.s.cli.Revoke(rctx, old)
	se.s.log.Info("state session renewed", "lease", int64(lease), "keys", len(se.keys))
	return nil
}

// rewriteLocked writes the session's keys again under lease: the plain
// ones a batch a transaction (a BGP feed holds 100k of them, and one round
// trip each would keep them away for minutes), the learned ones one by
// one, each with its own check for an operator's entry.
func (se *Session) rewriteLocked(ctx context.Context, lease clientv3.LeaseID) error {
	var ops []clientv3.Op
	flush := func() error {
		for len(ops) > 0 {
			n := min(len(ops), se.batchSize())
			rctx, cancel := se.s.reqCtx(ctx)
			_, err := se.s.cli.Txn(rctx).Then(ops[:n]...).Commit()
			cancel()
			if se.tooManyOps(err) {
				continue // again, in small batches
			}
			if err != nil {
				return fmt.Errorf("nsdb: write %d state keys again under a new lease: %w", n, err)
			}
			ops = ops[n:]
		}
		return nil
	}
	for key, k := range se.keys {
		if !k.unlessPersistent && !k.claim {
			ops = append(ops, clientv3.OpPut(key, string(k.value), clientv3.WithLease(lease)))
			if len(ops) >= se.batchSize() {
				if err := flush(); err != nil {
					return err
				}
			}
			continue
		}
		written, err := se.putLocked(ctx, lease, key, k)
		if err != nil {
			return fmt.Errorf("nsdb: write %s again under a new lease: %w", key[len(se.s.prefix):], err)
		}
		if !written && k.claim {
			// Another session claimed the key while this one had no
			// lease: it is theirs now.
			delete(se.keys, key)
			se.s.log.Warn("state session lost a claimed key while it had no lease", "key", key[len(se.s.prefix):])
		}
	}
	return flush()
}

// putLocked writes one key under lease.
func (se *Session) putLocked(ctx context.Context, lease clientv3.LeaseID, full string, k sessionKey) (bool, error) {
	ctx, cancel := se.s.reqCtx(ctx)
	defer cancel()
	put := clientv3.OpPut(full, string(k.value), clientv3.WithLease(lease))
	if k.claim {
		// Absent, or holding this value already (this host's claim under
		// a lease it lost, or its previous run's): put, in one step.
		resp, err := se.s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(full), "=", 0)).
			Then(put).Else(clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(full), "=", string(k.value))},
			[]clientv3.Op{put}, nil)).Commit()
		if err != nil {
			return false, err
		}
		if resp.Succeeded {
			return true, nil
		}
		inner := resp.Responses[0].GetResponseTxn()
		return inner != nil && inner.Succeeded, nil
	}
	if !k.unlessPersistent {
		_, err := se.s.cli.Do(ctx, put)
		return true, err
	}
	// A persistent entry exists if the key exists with no lease.
	resp, err := se.s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(full), ">", 0),
			clientv3.Compare(clientv3.LeaseValue(full), "=", clientv3.NoLease)).
		Else(put).
		Commit()
	if err != nil {
		return false, err
	}
	return !resp.Succeeded, nil
}

// set writes a key bound to the session, taking a new lease first if the
// current one is gone.
func (se *Session) set(ctx context.Context, key string, value []byte, k sessionKey) (bool, error) {
	full, err := se.s.stateKey(key)
	if err != nil {
		return false, err
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.closed {
		return false, ErrSessionClosed
	}
	k.value = value
	written, err := se.putLocked(ctx, se.lease, full, k)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		if err = se.renewLocked(ctx); err == nil {
			written, err = se.putLocked(ctx, se.lease, full, k)
		}
	}
	if err != nil {
		return false, fmt.Errorf("nsdb: write %s: %w", key, err)
	}
	if written {
		se.keys[full] = k
	} else {
		delete(se.keys, full)
	}
	return written, nil
}

// SetState writes key, bound to the session.
func (se *Session) SetState(ctx context.Context, key string, value []byte) error {
	_, err := se.set(ctx, key, value, sessionKey{})
	return err
}

// Batches of SetStates and DeleteStates: a transaction each. etcd refuses
// more than 128 operations in one by default; the cluster's embedded store
// takes many more (embedded.MaxTxnOps), and a full BGP table is written
// several times faster in batches of a thousand. A session starts with the
// large batch and falls back to the small one for good the first time the
// store refuses it.
const (
	stateBatch      = 128
	stateBatchLarge = 1024
)

// batchSize is the session's batch, large until the store refuses it.
func (se *Session) batchSize() int {
	if se.smallBatch {
		return stateBatch
	}
	return stateBatchLarge
}

// tooManyOps reports whether err is the store refusing a transaction's
// size, and if so switches the session to small batches.
func (se *Session) tooManyOps(err error) bool {
	if err == nil || se.smallBatch || !errors.Is(err, rpctypes.ErrTooManyOps) && !strings.Contains(err.Error(), "too many operations") {
		return false
	}
	se.smallBatch = true
	return true
}

// SetStates writes many keys bound to the session, a batch a transaction:
// a feed of learned routes costs a round trip a batch, not a key. On
// error, the batches before the failing one are written.
func (se *Session) SetStates(ctx context.Context, entries []StateEntry) error {
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.closed {
		return ErrSessionClosed
	}
	for len(entries) > 0 {
		n := min(len(entries), se.batchSize())
		batch := entries[:n]
		ops := make([]clientv3.Op, 0, n)
		put := func() error {
			ops = ops[:0]
			for _, e := range batch {
				full, err := se.s.stateKey(e.Key)
				if err != nil {
					return err
				}
				ops = append(ops, clientv3.OpPut(full, string(e.Value), clientv3.WithLease(se.lease)))
			}
			rctx, cancel := se.s.reqCtx(ctx)
			defer cancel()
			_, err := se.s.cli.Txn(rctx).Then(ops...).Commit()
			return err
		}
		err := put()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			if err = se.renewLocked(ctx); err == nil {
				err = put()
			}
		}
		if se.tooManyOps(err) {
			continue // again, in small batches
		}
		if err != nil {
			return fmt.Errorf("nsdb: write %d state keys from %s: %w", n, batch[0].Key, err)
		}
		for _, e := range batch {
			se.keys[se.s.prefix+e.Key] = sessionKey{value: e.Value}
		}
		entries = entries[n:]
	}
	return nil
}

// DeleteStates deletes many keys, a batch a transaction, whether the
// session holds them or not: use it for keys only this session writes. On
// error, the batches before the failing one are deleted.
func (se *Session) DeleteStates(ctx context.Context, keys []string) error {
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.closed {
		return ErrSessionClosed
	}
	for len(keys) > 0 {
		n := min(len(keys), se.batchSize())
		ops := make([]clientv3.Op, 0, n)
		for _, k := range keys[:n] {
			full, err := se.s.stateKey(k)
			if err != nil {
				return err
			}
			ops = append(ops, clientv3.OpDelete(full))
		}
		rctx, cancel := se.s.reqCtx(ctx)
		_, err := se.s.cli.Txn(rctx).Then(ops...).Commit()
		cancel()
		if se.tooManyOps(err) {
			continue // again, in small batches
		}
		if err != nil {
			return fmt.Errorf("nsdb: delete %d state keys from %s: %w", n, keys[0], err)
		}
		for _, k := range keys[:n] {
			delete(se.keys, se.s.prefix+k)
		}
		keys = keys[n:]
	}
	return nil
}

// LearnState writes key bound to the session unless a persistent entry
// holds it (an operator's entry wins over a learned one), and reports
// whether it wrote. Learned MAC and ARP entries go through it.
func (se *Session) LearnState(ctx context.Context, key string, value []byte) (bool, error) {
	return se.set(ctx, key, value, sessionKey{unlessPersistent: true})
}

// ClaimState writes key bound to the session if no one holds it, or if it
// already holds value (this host's own claim, made under a lease that
// expired or by its previous run), and reports whether the session holds
// it now. Claimed keys are leases of a shared resource (SNAT port blocks):
// at most one live session holds each. If the session loses its lease and
// another session claims the key meanwhile, the key is not written again.
func (se *Session) ClaimState(ctx context.Context, key string, value []byte) (bool, error) {
	return se.set(ctx, key, value, sessionKey{claim: true})
}

// DeleteState deletes key if the session holds it; a persistent entry or
// another session's entry stays.
func (se *Session) DeleteState(ctx context.Context, key string) error {
	full, err := se.s.stateKey(key)
	if err != nil {
		return err
	}
	se.mu.Lock()
	defer se.mu.Unlock()
	if se.closed {
		return ErrSessionClosed
	}
	delete(se.keys, full)
	rctx, cancel := se.s.reqCtx(ctx)
	defer cancel()
	_, err = se.s.cli.Txn(rctx).
		If(clientv3.Compare(clientv3.LeaseValue(full), "=", se.lease)).
		Then(clientv3.OpDelete(full)).
		Commit()
	if err != nil {
		return fmt.Errorf("nsdb: delete %s: %w", key, err)
	}
	return nil
}

// Close ends the session: its keys vanish now (or when the lease expires,
// if the store was closed first).
// revokeTimeout bounds the lease revocation of Session.Close.
const revokeTimeout = 2 * time.Second

func (se *Session) Close() error {
	se.mu.Lock()
	if se.closed {
		se.mu.Unlock()
		return nil
	}
	se.closed = true
	se.mu.Unlock()
	se.cancel()
	<-se.done
	se.mu.Lock()
	lease := se.lease
	se.mu.Unlock()
	if se.s.cli.Ctx().Err() != nil {
		// The store was closed first: the lease expires on its own,
		// and a revoke would only retry until its timeout.
		return nil
	}
	// Revoking only hastens what the lease's expiry does anyway: bound it
	// tightly, so a process stopping while a member is down stops quickly.
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	if _, err := se.s.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("nsdb: close session: revoke lease %x: %w", int64(lease), err)
	}
	return nil
}

// LearnMAC records that mac lives behind port portID in a VLAN of a
// bridge, for the life of the session, unless an operator seeded the
// entry; it reports whether it wrote.
func (se *Session) LearnMAC(ctx context.Context, bridgeID string, vlan uint16, mac [6]byte, portID string) (bool, error) {
	return se.LearnState(ctx, BridgeMACKey(bridgeID, vlan, mac), []byte(portID))
}

// SeedMAC records a persistent MAC table entry (an operator's).
func (s *Store) SeedMAC(ctx context.Context, bridgeID string, vlan uint16, mac [6]byte, portID string) error {
	return s.PutState(ctx, BridgeMACKey(bridgeID, vlan, mac), []byte(portID))
}

// LearnBridgeARP records the MAC of an IP address seen on a bridge for the
// life of the session, unless an operator seeded the entry; it reports
// whether it wrote.
func (se *Session) LearnBridgeARP(ctx context.Context, bridgeID string, ip netip.Addr, mac [6]byte) (bool, error) {
	return se.LearnState(ctx, BridgeARPKey(bridgeID, ip), []byte(FormatMAC(mac)))
}

// SeedBridgeARP records a persistent ARP entry of a bridge (an
// operator's, for ARP suppression).
func (s *Store) SeedBridgeARP(ctx context.Context, bridgeID string, ip netip.Addr, mac [6]byte) error {
	return s.PutState(ctx, BridgeARPKey(bridgeID, ip), []byte(FormatMAC(mac)))
}

// SetRouterARP records the MAC a router resolved for an IP address, for
// the life of the session.
func (se *Session) SetRouterARP(ctx context.Context, routerID string, ip netip.Addr, mac [6]byte) error {
	return se.SetState(ctx, RouterARPKey(routerID, ip), []byte(FormatMAC(mac)))
}

// SetPortActive marks a port active on a host for the life of the session.
func (se *Session) SetPortActive(ctx context.Context, portID, hostID string) error {
	return se.SetState(ctx, PortActiveKey(portID), []byte(hostID))
}
