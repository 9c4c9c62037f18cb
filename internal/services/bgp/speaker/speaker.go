// Package speaker is the BGP speaker of one uplink router port: GoBGP's
// server, embedded, configured from a bgp.SpeakerConfig and reporting
// sessions and best paths as bgp.Events. It is the only package that
// imports GoBGP, so that a build without BGP can leave it out.
//
// A speaker's sockets must live in the port's network namespace, and GoBGP
// opens them from goroutines of its own, which no single thread's setns
// covers; so each speaker runs as a process of its own, started inside the
// namespace by the agent (package bgp), and Main is that process's body.
// GoBGP's multipath switch is also global to a process, one more reason for
// one speaker a process.
package speaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gbgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/midonet/midonet/internal/services/bgp"
)

// exportPolicy announces only the router's own networks, never a route
// learned from one peer to another: MidoNet's "filter-list ^$ out", so an
// uplink never becomes a transit path between two ISPs.
const exportPolicy = "midonet-only-local"

// maxPathsPerEvent splits large batches of best paths into messages of a
// bounded size.
const maxPathsPerEvent = 4096

// Speaker is one BGP instance. Its methods are safe for concurrent use.
type Speaker struct {
	log  *slog.Logger
	emit func(bgp.Event)
	srv  *server.BgpServer
	// localAS is the running AS, for the watch to tell iBGP paths.
	localAS atomic.Uint32

	mu       sync.Mutex
	started  bool
	global   bgp.SpeakerConfig // RouterID and LocalAS it started with
	peers    map[netip.Addr]bgp.PeerConfig
	networks map[netip.Prefix]uuid.UUID // announced networks → GoBGP's path ids
	closed   bool
}

// New returns a speaker that reports to emit, which is called from one
// goroutine at a time, in order.
func New(log *slog.Logger, emit func(bgp.Event)) *Speaker {
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelWarn) // GoBGP narrates every state change at info
	s := &Speaker{
		log: log, emit: emit,
		srv:      server.NewBgpServer(server.LoggerOption(log.With("component", "gobgp"), lv)),
		peers:    map[netip.Addr]bgp.PeerConfig{},
		networks: map[netip.Prefix]uuid.UUID{},
	}
	go s.srv.Serve()
	return s
}

// Started reports whether BGP runs (the first Apply started it).
func (s *Speaker) Started() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// ErrRestart is returned by Apply for a configuration whose router id or
// AS differs from the running one: BGP must start again, which is a new
// speaker (the agent starts a new process).
var ErrRestart = errors.New("speaker: the router id or local AS changed; start a new speaker")

// Apply brings the speaker to cfg: the first call starts BGP, later calls
// add, change and remove peers and networks, leaving the sessions of
// unchanged peers alone.
func (s *Speaker) Apply(ctx context.Context, cfg bgp.SpeakerConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("speaker: closed")
	}
	if !cfg.RouterID.Is4() || cfg.LocalAS == 0 {
		return fmt.Errorf("speaker: needs an IPv4 router id and a local AS, got %v and %d", cfg.RouterID, cfg.LocalAS)
	}
	if !s.started {
		if err := s.start(ctx, cfg); err != nil {
			return err
		}
	} else if cfg.RouterID != s.global.RouterID || cfg.LocalAS != s.global.LocalAS {
		return ErrRestart
	}
	var errs []error
	want := map[netip.Addr]bgp.PeerConfig{}
	for _, p := range cfg.Peers {
		want[p.Address] = p
	}
	for addr, old := range s.peers {
		if p, ok := want[addr]; !ok || p != old {
			if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
				errs = append(errs, fmt.Errorf("remove peer %s: %w", addr, err))
				continue
			}
			delete(s.peers, addr)
		}
	}
	for addr, p := range want {
		if _, ok := s.peers[addr]; ok {
			continue
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.peer(p)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s: %w", addr, err))
			continue
		}
		s.peers[addr] = p
	}
	var drop []uuid.UUID
	for n, id := range s.networks {
		if !slices.Contains(cfg.Networks, n) {
			drop = append(drop, id)
			delete(s.networks, n)
		}
	}
	if len(drop) > 0 {
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{UUIDs: drop}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw networks: %w", err))
		}
	}
	for _, n := range cfg.Networks {
		if _, ok := s.networks[n]; ok || !n.Addr().Is4() {
			continue
		}
		id, err := s.announce(n)
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %s: %w", n, err))
			continue
		}
		s.networks[n] = id
	}
	return errors.Join(errs...)
}

// start starts BGP: listening on the router id, multipath, the export
// policy, and the watch that reports sessions and best paths.
func (s *Speaker) start(ctx context.Context, cfg bgp.SpeakerConfig) error {
	err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: cfg.LocalAS, RouterId: cfg.RouterID.String(),
		ListenPort: 179, ListenAddresses: []string{cfg.RouterID.String()},
		UseMultiplePaths: true,
	}})
	if err != nil {
		return fmt.Errorf("speaker: start BGP as AS %d on %s: %w", cfg.LocalAS, cfg.RouterID, err)
	}
	err = s.srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: exportPolicy, Statements: []*api.Statement{{
		Name:       "local",
		Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
		Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
	}}}})
	if err == nil {
		err = s.srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: api.PolicyDirection_POLICY_DIRECTION_EXPORT,
			Policies: []*api.Policy{{Name: exportPolicy}}, DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
		}})
	}
	if err != nil {
		s.srv.StopBgp(ctx, &api.StopBgpRequest{})
		return fmt.Errorf("speaker: set the export policy: %w", err)
	}
	s.localAS.Store(cfg.LocalAS)
	err = s.srv.WatchEvent(context.Background(), server.WatchEventMessageCallbacks{
		OnPeerUpdate: s.onPeer,
		OnBestPath:   s.onBest,
	}, server.WatchPeer(), server.WatchBestPath(true))
	if err != nil {
		s.srv.StopBgp(ctx, &api.StopBgpRequest{})
		return fmt.Errorf("speaker: watch sessions and paths: %w", err)
	}
	s.started, s.global = true, bgp.SpeakerConfig{RouterID: cfg.RouterID, LocalAS: cfg.LocalAS}
	return nil
}

// peer is GoBGP's form of a peer's configuration.
func (s *Speaker) peer(p bgp.PeerConfig) *api.Peer {
	secs := func(d, def time.Duration) uint64 {
		if d <= 0 {
			d = def
		}
		return uint64((d + time.Second - 1) / time.Second)
	}
	return &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.AS, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			KeepaliveInterval: secs(p.KeepAlive, bgp.DefaultKeepAlive),
			HoldTime:          secs(p.HoldTime, bgp.DefaultHoldTime),
			ConnectRetry:      secs(p.ConnectRetry, bgp.DefaultConnectRetry),
			// After an administrative reset GoBGP would wait 30 s before
			// connecting again; a recovered peer should not wait.
			IdleHoldTimeAfterReset: 1,
		}},
		Transport: &api.Transport{LocalAddress: s.global.RouterID.String()},
	}
}

// announce originates network n with the router id as next hop.
func (s *Speaker) announce(n netip.Prefix) (uuid.UUID, error) {
	nlri, err := gbgp.NewIPAddrPrefix(n.Masked())
	if err != nil {
		return uuid.UUID{}, err
	}
	nh, err := gbgp.NewPathAttributeNextHop(s.global.RouterID)
	if err != nil {
		return uuid.UUID{}, err
	}
	resp, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{{
		Family: gbgp.RF_IPv4_UC, Nlri: nlri,
		Attrs: []gbgp.PathAttributeInterface{gbgp.NewPathAttributeOrigin(gbgp.BGP_ORIGIN_ATTR_TYPE_IGP), nh},
	}}})
	if err != nil {
		return uuid.UUID{}, err
	}
	if len(resp) != 1 {
		return uuid.UUID{}, fmt.Errorf("GoBGP answered %d paths for one", len(resp))
	}
	return resp[0].UUID, resp[0].Error
}

// onPeer reports a session's change of state.
func (s *Speaker) onPeer(e *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
	if e.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := e.Peer.State
	ps := &bgp.PeerStatus{Address: st.NeighborAddress, AS: st.PeerASN, State: sessionState(st.SessionState), Since: at.UTC()}
	if ps.State != bgp.StateEstablished && st.DisconnectMessage != "" {
		ps.Reason = st.DisconnectMessage
	}
	s.emit(bgp.Event{Peer: ps})
}

// onBest reports best-path changes learned from peers; the router's own
// networks are not news to it.
func (s *Speaker) onBest(paths []*apiutil.Path, _ time.Time) {
	local := s.localAS.Load()
	out := make([]bgp.Path, 0, min(len(paths), maxPathsPerEvent))
	for _, p := range paths {
		if !p.PeerAddress.IsValid() || p.PeerAddress.IsUnspecified() {
			continue
		}
		nlri, ok := p.Nlri.(*gbgp.IPAddrPrefix)
		if !ok {
			continue
		}
		bp := bgp.Path{Prefix: nlri.Prefix, Peer: p.PeerAddress, Withdraw: p.Withdrawal, Internal: p.PeerASN == local}
		for _, a := range p.Attrs {
			if nh, ok := a.(*gbgp.PathAttributeNextHop); ok {
				bp.NextHop = nh.Value
			}
		}
		out = append(out, bp)
		if len(out) == maxPathsPerEvent {
			s.emit(bgp.Event{Paths: out})
			out = make([]bgp.Path, 0, maxPathsPerEvent)
		}
	}
	if len(out) > 0 {
		s.emit(bgp.Event{Paths: out})
	}
}

// sessionState names GoBGP's FSM states as RFC 4271 does.
func sessionState(st gbgp.FSMState) bgp.SessionState {
	switch st {
	case gbgp.BGP_FSM_CONNECT:
		return bgp.StateConnect
	case gbgp.BGP_FSM_ACTIVE:
		return bgp.StateActive
	case gbgp.BGP_FSM_OPENSENT:
		return bgp.StateOpenSent
	case gbgp.BGP_FSM_OPENCONFIRM:
		return bgp.StateOpenConfirm
	case gbgp.BGP_FSM_ESTABLISHED:
		return bgp.StateEstablished
	}
	return bgp.StateIdle
}

// Close stops BGP, closing every session with a notification.
func (s *Speaker) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.srv.Stop()
}
