package bgp

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/midonet/midonet/internal/topology"
)

var (
	testRouter = uuid.MustParse("6f3f1c8e-0000-4000-8000-000000000001")
	testPort   = uuid.MustParse("6f3f1c8e-0000-4000-8000-000000000002")
	testUplink = Uplink{Router: testRouter, Port: testPort, Subnet: netip.MustParsePrefix("10.1.0.2/24")}
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

// summary spells a route as "dst via gw/weight" for comparisons.
func summary(rs []topology.Route) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.DstPrefix().String()+" via "+*r.NextHopGateway+"/"+strconv.Itoa(r.Weight))
	}
	return out
}

func TestRIBTranslation(t *testing.T) {
	peer1, peer2 := ip("10.1.0.1"), ip("10.1.0.3")
	tests := []struct {
		name    string
		steps   [][]Path
		want    []string // routes after the last step
		lastPut []string // what the last step writes
		lastDel int      // how many routes the last step deletes
	}{{
		name:    "a learned default route goes via its peer",
		steps:   [][]Path{{{Prefix: pfx("0.0.0.0/0"), Peer: peer1, NextHop: peer1}}},
		want:    []string{"0.0.0.0/0 via 10.1.0.1/20"},
		lastPut: []string{"0.0.0.0/0 via 10.1.0.1/20"},
	}, {
		name:  "a next hop off the port's subnet is replaced by the peer",
		steps: [][]Path{{{Prefix: pfx("198.51.100.1/32"), Peer: peer1, NextHop: ip("172.16.0.9")}}},
		want:  []string{"198.51.100.1/32 via 10.1.0.1/20"},
	}, {
		name:  "a third-party next hop on the subnet is kept",
		steps: [][]Path{{{Prefix: pfx("198.51.100.0/24"), Peer: peer1, NextHop: ip("10.1.0.77")}}},
		want:  []string{"198.51.100.0/24 via 10.1.0.77/20"},
	}, {
		name:  "the port's own address as next hop is replaced by the peer",
		steps: [][]Path{{{Prefix: pfx("198.51.100.0/24"), Peer: peer1, NextHop: ip("10.1.0.2")}}},
		want:  []string{"198.51.100.0/24 via 10.1.0.1/20"},
	}, {
		name: "two peers with the same prefix give equal-cost routes",
		steps: [][]Path{{
			{Prefix: pfx("0.0.0.0/0"), Peer: peer1, NextHop: peer1},
			{Prefix: pfx("0.0.0.0/0"), Peer: peer2, NextHop: peer2},
		}},
		want: []string{"0.0.0.0/0 via 10.1.0.1/20", "0.0.0.0/0 via 10.1.0.3/20"},
	}, {
		name: "a withdrawal leaves the other peer's route",
		steps: [][]Path{{
			{Prefix: pfx("0.0.0.0/0"), Peer: peer1, NextHop: peer1},
			{Prefix: pfx("0.0.0.0/0"), Peer: peer2, NextHop: peer2},
		}, {{Prefix: pfx("0.0.0.0/0"), Peer: peer1, Withdraw: true}}},
		want:    []string{"0.0.0.0/0 via 10.1.0.3/20"},
		lastDel: 1,
	}, {
		name: "a new next hop replaces the route",
		steps: [][]Path{
			{{Prefix: pfx("198.51.100.0/24"), Peer: peer1, NextHop: peer1}},
			{{Prefix: pfx("198.51.100.0/24"), Peer: peer1, NextHop: ip("10.1.0.77")}},
		},
		want:    []string{"198.51.100.0/24 via 10.1.0.77/20"},
		lastPut: []string{"198.51.100.0/24 via 10.1.0.77/20"},
		lastDel: 1,
	}, {
		name: "the same path again writes nothing",
		steps: [][]Path{
			{{Prefix: pfx("198.51.100.0/24"), Peer: peer1, NextHop: peer1}},
			{{Prefix: pfx("198.51.100.0/24"), Peer: peer1, NextHop: peer1}},
		},
		want: []string{"198.51.100.0/24 via 10.1.0.1/20"},
	}, {
		name: "two peers with one next hop give one route, kept while either has it",
		steps: [][]Path{{
			{Prefix: pfx("198.51.100.0/24"), Peer: peer1, NextHop: ip("10.1.0.77")},
			{Prefix: pfx("198.51.100.0/24"), Peer: peer2, NextHop: ip("10.1.0.77")},
		}, {{Prefix: pfx("198.51.100.0/24"), Peer: peer2, Withdraw: true}}},
		want: []string{"198.51.100.0/24 via 10.1.0.77/20"},
	}, {
		name: "an iBGP path ranks below an eBGP one",
		steps: [][]Path{{
			{Prefix: pfx("0.0.0.0/0"), Peer: peer1, NextHop: peer1, Internal: true},
			{Prefix: pfx("0.0.0.0/0"), Peer: peer2, NextHop: peer2},
		}},
		want: []string{"0.0.0.0/0 via 10.1.0.3/20"},
	}, {
		name: "an iBGP path alone is used, weighted as iBGP",
		steps: [][]Path{{
			{Prefix: pfx("0.0.0.0/0"), Peer: peer1, NextHop: peer1, Internal: true},
		}},
		want: []string{"0.0.0.0/0 via 10.1.0.1/200"},
	}, {
		name: "prefixes are masked; IPv6 is ignored",
		steps: [][]Path{{
			{Prefix: pfx("198.51.100.7/24"), Peer: peer1, NextHop: peer1},
			{Prefix: pfx("2001:db8::/32"), Peer: peer1, NextHop: peer1},
		}},
		want: []string{"198.51.100.0/24 via 10.1.0.1/20"},
	}, {
		name:    "withdrawing what was never learned changes nothing",
		steps:   [][]Path{{{Prefix: pfx("198.51.100.0/24"), Peer: peer1, Withdraw: true}}},
		lastDel: 0,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRIB(testUplink)
			var put []topology.Route
			var del []topology.ID
			for _, s := range tt.steps {
				put, del = r.Apply(s)
			}
			if got := summary(r.Routes()); !slices.Equal(got, tt.want) {
				t.Errorf("routes = %q, want %q", got, tt.want)
			}
			if r.Len() != len(tt.want) {
				t.Errorf("Len = %d, want %d", r.Len(), len(tt.want))
			}
			if tt.lastPut != nil {
				if got := summary(put); !slices.Equal(got, tt.lastPut) {
					t.Errorf("last step writes %q, want %q", got, tt.lastPut)
				}
			}
			if len(del) != tt.lastDel {
				t.Errorf("last step deletes %d routes, want %d", len(del), tt.lastDel)
			}
			for _, rt := range r.Routes() {
				if !rt.Learned || rt.RouterID != testRouter || rt.NextHopPort == nil || *rt.NextHopPort != testPort ||
					rt.Type != topology.RouteNormal || rt.SrcPrefix() != pfx("0.0.0.0/0") {
					t.Errorf("route %+v: want a learned Normal route of the router through the port from anywhere", rt)
				}
				if err := rt.Validate(); err != nil {
					t.Errorf("route %+v does not validate: %v", rt, err)
				}
				gw, _ := netip.ParseAddr(*rt.NextHopGateway)
				if rt.ID != LearnedRouteID(testPort, rt.DstPrefix(), gw) {
					t.Errorf("route %s: id is not LearnedRouteID", rt.DstPrefix())
				}
			}
		})
	}
}

func TestRIBDropPeerAndClear(t *testing.T) {
	peer1, peer2 := ip("10.1.0.1"), ip("10.1.0.3")
	r := NewRIB(testUplink)
	r.Apply([]Path{
		{Prefix: pfx("0.0.0.0/0"), Peer: peer1, NextHop: peer1},
		{Prefix: pfx("0.0.0.0/0"), Peer: peer2, NextHop: peer2},
		{Prefix: pfx("198.51.100.1/32"), Peer: peer1, NextHop: peer1},
	})
	if r.PeerPrefixes(peer1) != 2 || r.PeerPrefixes(peer2) != 1 {
		t.Fatalf("prefixes per peer %d and %d, want 2 and 1", r.PeerPrefixes(peer1), r.PeerPrefixes(peer2))
	}
	put, del := r.DropPeer(peer1)
	if len(put) != 0 || len(del) != 2 {
		t.Fatalf("dropping peer1: put %d, deleted %d; want 0 and 2 (its default route and its /32)", len(put), len(del))
	}
	if got, want := summary(r.Routes()), []string{"0.0.0.0/0 via 10.1.0.3/20"}; !slices.Equal(got, want) {
		t.Fatalf("after dropping peer1: %q, want %q", got, want)
	}
	if r.PeerPrefixes(peer1) != 0 || r.PeerPrefixes(peer2) != 1 {
		t.Fatalf("after dropping peer1: prefixes per peer %d and %d, want 0 and 1", r.PeerPrefixes(peer1), r.PeerPrefixes(peer2))
	}
	if del := r.Clear(); len(del) != 1 || r.Len() != 0 || len(r.Routes()) != 0 {
		t.Fatalf("Clear deleted %d routes and left %d, want 1 and 0", len(del), r.Len())
	}
}

// TestLearnedRouteIDStable pins the derivation: agents on other hosts and
// later versions must name a route the same way.
func TestLearnedRouteIDStable(t *testing.T) {
	a := LearnedRouteID(testPort, pfx("0.0.0.0/0"), ip("10.1.0.1"))
	if a != LearnedRouteID(testPort, pfx("0.0.0.0/0"), ip("10.1.0.1")) {
		t.Fatal("LearnedRouteID is not deterministic")
	}
	if a == LearnedRouteID(testPort, pfx("0.0.0.0/0"), ip("10.1.0.3")) ||
		a == LearnedRouteID(testRouter, pfx("0.0.0.0/0"), ip("10.1.0.1")) ||
		a == LearnedRouteID(testPort, pfx("0.0.0.0/1"), ip("10.1.0.1")) {
		t.Fatal("LearnedRouteID collides across gateways, ports or prefixes")
	}
	if a != LearnedRouteID(testPort, pfx("0.0.0.7/0"), ip("10.1.0.1")) {
		t.Fatal("LearnedRouteID depends on host bits of the prefix")
	}
}
