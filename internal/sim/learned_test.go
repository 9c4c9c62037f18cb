package sim

import (
	"net/netip"
	"strconv"
	"testing"
)

// learnedTopo is routerTopo with a second uplink, up2 (198.51.100.1/24,
// gateway .254 at gw2MAC), for routes learned there.
func learnedTopo(t testing.TB) (*topo, map[string]ID) {
	tp, ids := routerTopo(t)
	ids["up2"] = tp.routerPort(ids["rtr"], "up2", "198.51.100.1/24", up2MAC, true)
	tp.arp(ids["rtr"], "198.51.100.254", gw2MAC)
	return tp, ids
}

func lr(ids map[string]ID, name, dst, port, gw string, weight int) LearnedRoute {
	return LearnedRoute{ID: id(name), Router: ids["rtr"], Port: ids[port], Dst: netip.MustParsePrefix(dst),
		Gateway: netip.MustParseAddr(gw), Weight: weight}
}

func TestLearnedRoutes(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(tp *topo, ids map[string]ID)
		learned func(ids map[string]ID) []LearnedRoute
		dst     string
		want    string // egress port name, "" for no route
		wantGW  string // MAC the packet is sent to
	}{{
		name:  "a learned route alone",
		setup: func(tp *topo, ids map[string]ID) { tp.in.Routes = nil },
		learned: func(ids map[string]ID) []LearnedRoute {
			return []LearnedRoute{lr(ids, "l1", "0.0.0.0/0", "up2", "198.51.100.254", 20)}
		},
		dst: "8.8.8.8", want: "up2", wantGW: gw2MAC,
	}, {
		name: "a longer learned prefix beats the static default",
		learned: func(ids map[string]ID) []LearnedRoute {
			return []LearnedRoute{lr(ids, "l1", "8.8.8.0/24", "up2", "198.51.100.254", 20)}
		},
		dst: "8.8.8.8", want: "up2", wantGW: gw2MAC,
	}, {
		name: "a longer static prefix beats a learned one",
		setup: func(tp *topo, ids map[string]ID) {
			tp.route(ids["rtr"], "s24", "8.8.8.0/24", ids["up"], gatewayIP, 100)
		},
		learned: func(ids map[string]ID) []LearnedRoute {
			return []LearnedRoute{lr(ids, "l1", "8.8.0.0/16", "up2", "198.51.100.254", 20)}
		},
		dst: "8.8.8.8", want: "up", wantGW: gwMAC,
	}, {
		name: "at equal prefixes the lower weight wins: learned",
		learned: func(ids map[string]ID) []LearnedRoute {
			return []LearnedRoute{lr(ids, "l1", "0.0.0.0/0", "up2", "198.51.100.254", 20)}
		},
		dst: "8.8.8.8", want: "up2", wantGW: gw2MAC,
	}, {
		name: "at equal prefixes the lower weight wins: static",
		setup: func(tp *topo, ids map[string]ID) {
			tp.in.Routes[0].Weight = 10
		},
		learned: func(ids map[string]ID) []LearnedRoute {
			return []LearnedRoute{lr(ids, "l1", "0.0.0.0/0", "up2", "198.51.100.254", 20)}
		},
		dst: "8.8.8.8", want: "up", wantGW: gwMAC,
	}, {
		name: "a route through an inactive port is skipped for a shorter one",
		setup: func(tp *topo, ids map[string]ID) {
			tp.port(ids["up2"]).Active = false
		},
		learned: func(ids map[string]ID) []LearnedRoute {
			return []LearnedRoute{lr(ids, "l1", "8.8.8.0/24", "up2", "198.51.100.254", 20)}
		},
		dst: "8.8.8.8", want: "up", wantGW: gwMAC,
	}, {
		name: "a route through an admin-down port is skipped",
		setup: func(tp *topo, ids map[string]ID) {
			tp.in.Routes = nil
			tp.port(ids["up2"]).AdminStateUp = false
		},
		learned: func(ids map[string]ID) []LearnedRoute {
			return []LearnedRoute{lr(ids, "l1", "8.8.8.0/24", "up2", "198.51.100.254", 20)}
		},
		dst: "8.8.8.8", want: "",
	}, {
		name:  "a route through another router's port is not used",
		setup: func(tp *topo, ids map[string]ID) { tp.in.Routes = nil },
		learned: func(ids map[string]ID) []LearnedRoute {
			other := tp2port(ids)
			return []LearnedRoute{{ID: id("l1"), Router: ids["rtr"], Port: other, Dst: netip.MustParsePrefix("0.0.0.0/0"),
				Gateway: netip.MustParseAddr("198.51.100.254"), Weight: 20}}
		},
		dst: "8.8.8.8", want: "",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, ids := learnedTopo(t)
			ids["other"] = tp.routerPort(tp.router("other"), "other-up", "198.51.100.9/24", "ac:ca:ba:00:00:99", true)
			if tt.setup != nil {
				tt.setup(tp, ids)
			}
			tp.in.Learned = map[ID]*LearnedTable{ids["rtr"]: (*LearnedTable)(nil).With(tt.learned(ids), nil)}
			r := run(t, tp.snapshot(), nil, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, tt.dst, 40000, 443))
			if tt.want == "" {
				if r.Kind != TemporaryDrop || r.Reason != ReasonNoRoute {
					t.Fatalf("%v %v, want no route", r.Kind, r.Reason)
				}
				return
			}
			if r.Kind != Forward || !sameIDs(egressPorts(r), []ID{ids[tt.want]}) {
				t.Fatalf("%v %v egress %v, want %s", r.Kind, r.Reason, egressPorts(r), tt.want)
			}
			if r.Egress[0].Values.EthDst != mac(tt.wantGW) {
				t.Errorf("sent to %v, want the gateway %s", r.Egress[0].Values.EthDst, tt.wantGW)
			}
		})
	}
}

// tp2port is the id of the port of router "other" that learnedTopo's
// callers add.
func tp2port(ids map[string]ID) ID { return ids["other"] }

// TestLearnedRoutesECMP: equal routes, learned through two uplinks or one
// learned and one static, share the connections, each connection keeping
// its path; the flow is tagged with the route it took.
func TestLearnedRoutesECMP(t *testing.T) {
	for _, mixed := range []bool{false, true} {
		t.Run("mixed="+strconv.FormatBool(mixed), func(t *testing.T) {
			tp, ids := learnedTopo(t)
			learned := []LearnedRoute{lr(ids, "via-up2", "0.0.0.0/0", "up2", "198.51.100.254", 100)}
			if !mixed {
				tp.in.Routes = nil
				learned = append(learned, lr(ids, "via-up", "0.0.0.0/0", "up", gatewayIP, 100))
			}
			tp.in.Learned = map[ID]*LearnedTable{ids["rtr"]: (*LearnedTable)(nil).With(learned, nil)}
			snap := tp.snapshot()
			seen := map[ID]int{}
			for sp := range uint16(64) {
				spec := tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000+sp, 443)
				r := run(t, snap, nil, ids["vm1"], spec)
				if r.Kind != Forward {
					t.Fatalf("%v %v", r.Kind, r.Reason)
				}
				out := egressPorts(r)[0]
				seen[out]++
				again := run(t, snap, nil, ids["vm1"], spec)
				if egressPorts(again)[0] != out {
					t.Fatal("one connection took two paths")
				}
				if out == ids["up2"] && !hasTag(r, RouteTag(id("via-up2"))) {
					t.Error("a flow through a learned route lacks its tag")
				}
			}
			if seen[ids["up"]] == 0 || seen[ids["up2"]] == 0 {
				t.Fatalf("connections by uplink %v: want both used", seen)
			}
		})
	}
}

// TestLearnedTableWith: changes make new tables and leave the old ones as
// they were.
func TestLearnedTableWith(t *testing.T) {
	_, ids := learnedTopo(t)
	a := lr(ids, "a", "10.9.0.0/16", "up2", "198.51.100.254", 20)
	b := lr(ids, "b", "10.9.0.0/16", "up", gatewayIP, 20)
	c := lr(ids, "c", "10.9.8.0/24", "up", gatewayIP, 20)
	t1 := (*LearnedTable)(nil).With([]LearnedRoute{a, b, c}, nil)
	if t1.Len() != 3 || len(t1.lengths) != 2 || t1.lengths[0] != 24 || t1.lengths[1] != 16 {
		t.Fatalf("t1: %d routes, lengths %v", t1.Len(), t1.lengths)
	}
	a2 := a
	a2.Weight = 5
	t2 := t1.With([]LearnedRoute{a2}, []LearnedRoute{c})
	if t2.Len() != 2 || len(t2.lengths) != 1 {
		t.Fatalf("t2: %d routes, lengths %v", t2.Len(), t2.lengths)
	}
	key := toPrefix4(a.Dst)
	rs := t2.byLen[16].shards[shardOf(key.addr)][key.addr]
	if len(rs) != 2 || rs[0].id != a.ID || rs[0].weight != 5 {
		t.Fatalf("t2 /16 routes %+v: want a (weight 5) first", rs)
	}
	old := t1.byLen[16].shards[shardOf(key.addr)][key.addr]
	if len(old) != 2 || t1.Len() != 3 || t1.counts[24] != 1 {
		t.Fatal("With changed the table it was called on")
	}
	for _, r := range old {
		if r.weight != 20 {
			t.Fatal("With changed a route of the old table")
		}
	}
	t3 := t2.With(nil, []LearnedRoute{a2, b, c})
	if t3.Len() != 0 || len(t3.lengths) != 0 {
		t.Fatalf("t3: %d routes, lengths %v", t3.Len(), t3.lengths)
	}
	if t4 := t3.With([]LearnedRoute{{ID: id("v6"), Dst: netip.MustParsePrefix("2001:db8::/32")}}, nil); t4.Len() != 0 {
		t.Error("an IPv6 route was taken")
	}
}

// TestLearnedRouteNoAllocs: a simulation through a learned route allocates
// nothing once warm.
func TestLearnedRouteNoAllocs(t *testing.T) {
	tp, ids := learnedTopo(t)
	tp.in.Routes = nil
	var learned []LearnedRoute
	for i := range 1000 {
		learned = append(learned, lr(ids, "l"+strconv.Itoa(i), netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}).String()+"/24",
			"up2", "198.51.100.254", 20))
	}
	learned = append(learned, lr(ids, "default", "0.0.0.0/0", "up", gatewayIP, 20))
	tp.in.Learned = map[ID]*LearnedTable{ids["rtr"]: (*LearnedTable)(nil).With(learned, nil)}
	snap := tp.snapshot()
	pkt := mkPacket(t, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "10.3.7.9", 40000, 443))
	s := NewSimulator(1)
	if r := s.Simulate(snap, nil, pkt, testNow); r.Kind != Forward || r.Egress[0].Port != ids["up2"] {
		t.Fatalf("%v %v %v", r.Kind, r.Reason, egressPorts(r))
	}
	if n := testing.AllocsPerRun(100, func() { s.Simulate(snap, nil, pkt, testNow) }); n != 0 {
		t.Fatalf("%v allocations per simulation through a learned route, want 0", n)
	}
}
