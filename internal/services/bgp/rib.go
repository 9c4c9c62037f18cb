package bgp

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/google/uuid"

	"github.com/midonet/midonet/internal/topology"
)

// Uplink is the router port a speaker serves, as the routes it learns name
// it.
type Uplink struct {
	Router topology.ID
	Port   topology.ID
	// Subnet is the port's address with its subnet's length.
	Subnet netip.Prefix
}

// Weights of learned routes: the administrative distances Quagga reported
// to MidoNet, so that a learned route and a stored one compare as they did
// there (lower wins).
const (
	WeightEBGP = 20
	WeightIBGP = 200
)

// via is how one peer reaches a prefix.
type via struct {
	gateway netip.Addr
	weight  int
}

// RIB turns a speaker's best-path changes into the learned routes of the
// router: for each prefix, one route through the uplink port per distinct
// next hop among the best paths (several best paths are equal-cost
// multipath), with the next hop as gateway when it lies on the port's
// subnet and the peer itself otherwise. Route ids are derived from the
// port, prefix and gateway, so that the same route learned again, by this
// agent or another, has the same id. A RIB is not safe for concurrent use.
type RIB struct {
	up Uplink
	// paths: prefix → peer → how the peer reaches it.
	paths map[netip.Prefix]map[netip.Addr]via
	// routes: prefix → the routes written for it, by id.
	routes map[netip.Prefix][]topology.Route
	count  int
	// perPeer counts the prefixes each peer has a best path to.
	perPeer map[netip.Addr]int
}

// NewRIB returns an empty RIB for uplink up.
func NewRIB(up Uplink) *RIB {
	return &RIB{up: up, paths: map[netip.Prefix]map[netip.Addr]via{}, routes: map[netip.Prefix][]topology.Route{},
		perPeer: map[netip.Addr]int{}}
}

// Len is the number of learned routes.
func (r *RIB) Len() int { return r.count }

// PeerPrefixes is how many prefixes peer has a best path to.
func (r *RIB) PeerPrefixes(peer netip.Addr) int { return r.perPeer[peer] }

// Routes returns every learned route, by prefix then gateway.
func (r *RIB) Routes() []topology.Route {
	out := make([]topology.Route, 0, r.count)
	for _, rs := range r.routes {
		out = append(out, rs...)
	}
	sortRoutes(out)
	return out
}

// Apply applies best-path changes, in order, and returns the routes to
// write (new, or changed) and the ids of the routes to delete. Paths that
// are not IPv4 unicast are ignored: the speaker negotiates nothing else.
func (r *RIB) Apply(paths []Path) (put []topology.Route, del []topology.ID) {
	touched := map[netip.Prefix]bool{}
	for _, p := range paths {
		if !p.Prefix.IsValid() || !p.Prefix.Addr().Is4() || !p.Peer.Is4() {
			continue
		}
		pfx := p.Prefix.Masked()
		touched[pfx] = true
		if p.Withdraw {
			if m := r.paths[pfx]; m != nil {
				if _, ok := m[p.Peer]; ok {
					r.perPeer[p.Peer]--
					if r.perPeer[p.Peer] == 0 {
						delete(r.perPeer, p.Peer)
					}
				}
				delete(m, p.Peer)
				if len(m) == 0 {
					delete(r.paths, pfx)
				}
			}
			continue
		}
		m := r.paths[pfx]
		if m == nil {
			m = map[netip.Addr]via{}
			r.paths[pfx] = m
		}
		w := WeightEBGP
		if p.Internal {
			w = WeightIBGP
		}
		if _, ok := m[p.Peer]; !ok {
			r.perPeer[p.Peer]++
		}
		m[p.Peer] = via{gateway: r.gateway(p), weight: w}
	}
	for pfx := range touched {
		p, d := r.update(pfx)
		put, del = append(put, p...), append(del, d...)
	}
	sortRoutes(put)
	slices.SortFunc(del, func(a, b topology.ID) int { return slices.Compare(a[:], b[:]) })
	return put, del
}

// DropPeer forgets every path learned from peer (its session ended) and
// returns the resulting changes as Apply does.
func (r *RIB) DropPeer(peer netip.Addr) (put []topology.Route, del []topology.ID) {
	var ws []Path
	for pfx, m := range r.paths {
		if _, ok := m[peer]; ok {
			ws = append(ws, Path{Prefix: pfx, Peer: peer, Withdraw: true})
		}
	}
	return r.Apply(ws)
}

// Clear forgets everything and returns the ids of every route.
func (r *RIB) Clear() []topology.ID {
	var del []topology.ID
	for _, rs := range r.routes {
		for _, rt := range rs {
			del = append(del, rt.ID)
		}
	}
	clear(r.paths)
	clear(r.routes)
	clear(r.perPeer)
	r.count = 0
	return del
}

// gateway picks the next hop of a path: its BGP next hop when the port can
// reach it directly, else the peer, which always can.
func (r *RIB) gateway(p Path) netip.Addr {
	nh := p.NextHop
	if nh.IsValid() && nh.Is4() && r.up.Subnet.Contains(nh) && nh != r.up.Subnet.Addr() && !nh.IsUnspecified() {
		return nh
	}
	return p.Peer
}

// update recomputes the routes of one prefix and returns what changed.
func (r *RIB) update(pfx netip.Prefix) (put []topology.Route, del []topology.ID) {
	// The best weight's distinct gateways, each one route.
	best := -1
	for _, v := range r.paths[pfx] {
		if best < 0 || v.weight < best {
			best = v.weight
		}
	}
	var want []topology.Route
	for _, v := range r.paths[pfx] {
		if v.weight != best {
			continue
		}
		rt := r.route(pfx, v.gateway, v.weight)
		if !slices.ContainsFunc(want, func(x topology.Route) bool { return x.ID == rt.ID }) {
			want = append(want, rt)
		}
	}
	old := r.routes[pfx]
	for _, o := range old {
		if !slices.ContainsFunc(want, func(x topology.Route) bool { return x.ID == o.ID }) {
			del = append(del, o.ID)
		}
	}
	for _, w := range want {
		i := slices.IndexFunc(old, func(x topology.Route) bool { return x.ID == w.ID })
		if i < 0 || old[i].Weight != w.Weight {
			put = append(put, w)
		}
	}
	r.count += len(want) - len(old)
	if len(want) == 0 {
		delete(r.routes, pfx)
	} else {
		sortRoutes(want)
		r.routes[pfx] = want
	}
	return put, del
}

// route builds the learned route to pfx via gateway.
func (r *RIB) route(pfx netip.Prefix, gateway netip.Addr, weight int) topology.Route {
	return topology.Route{
		ID:               LearnedRouteID(r.up.Port, pfx, gateway),
		Type:             topology.RouteNormal,
		SrcNetworkAddr:   topology.Str("0.0.0.0"),
		SrcNetworkLength: 0,
		DstNetworkAddr:   topology.Str(pfx.Addr().String()),
		DstNetworkLength: pfx.Bits(),
		NextHopPort:      topology.IDPtr(r.up.Port),
		NextHopGateway:   topology.Str(gateway.String()),
		Weight:           weight,
		RouterID:         r.up.Router,
		Learned:          true,
	}
}

// LearnedRouteID is the id of the route through port to pfx via gateway.
func LearnedRouteID(port topology.ID, pfx netip.Prefix, gateway netip.Addr) topology.ID {
	return uuid.NewSHA1(port, []byte("bgp "+pfx.Masked().String()+" via "+gateway.String()))
}

func sortRoutes(rs []topology.Route) {
	slices.SortFunc(rs, func(a, b topology.Route) int {
		pa, pb := a.DstPrefix(), b.DstPrefix()
		if c := pa.Addr().Compare(pb.Addr()); c != 0 {
			return c
		}
		if c := cmp.Compare(pa.Bits(), pb.Bits()); c != 0 {
			return c
		}
		return cmp.Compare(*a.NextHopGateway, *b.NextHopGateway)
	})
}
