package sim

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

const (
	vmMAC     = "02:00:00:00:00:01"
	rtrMAC    = "ac:ca:ba:00:00:01"
	upMAC     = "ac:ca:ba:00:00:02"
	gwMAC     = "02:00:00:00:00:fe"
	up2MAC    = "ac:ca:ba:00:00:03"
	gw2MAC    = "02:00:00:00:00:fd"
	vmIP      = "10.0.0.11"
	rtrIP     = "10.0.0.1"
	upIP      = "192.0.2.1"
	gatewayIP = "192.0.2.254"
)

// routerTopo: vm1 on bridge br, linked to router rtr (10.0.0.1/24); rtr has
// an exterior uplink 192.0.2.1/24 with a default route via 192.0.2.254,
// whose MAC is in the ARP table.
func routerTopo(t testing.TB) (*topo, map[string]ID) {
	tp := newTopo(t)
	ids := map[string]ID{}
	ids["br"] = tp.bridge("br")
	ids["rtr"] = tp.router("rtr")
	ids["vm1"] = tp.vmPort(ids["br"], "vm1")
	ids["br-rtr"] = tp.bridgePort(ids["br"], "br-rtr")
	ids["rtr-br"] = tp.routerPort(ids["rtr"], "rtr-br", "10.0.0.1/24", rtrMAC, false)
	tp.link(ids["br-rtr"], ids["rtr-br"])
	ids["up"] = tp.routerPort(ids["rtr"], "up", "192.0.2.1/24", upMAC, true)
	ids["default"] = tp.route(ids["rtr"], "default", "0.0.0.0/0", ids["up"], gatewayIP, 100)
	tp.arp(ids["rtr"], gatewayIP, gwMAC)
	tp.learn(ids["br"], vmMAC, ids["vm1"])
	return tp, ids
}

func decodeGenerated(t *testing.T, r *Result, port ID) *packet.Parsed {
	t.Helper()
	if len(r.Generated) != 1 {
		t.Fatalf("generated %d packets, want 1", len(r.Generated))
	}
	if r.Generated[0].Port != port {
		t.Fatalf("generated out of %s, want %s", r.Generated[0].Port, port)
	}
	var p packet.Parsed
	p.Decode(r.Generated[0].Frame)
	return &p
}

func TestRouterForwardsAndRewrites(t *testing.T) {
	tp, ids := routerTopo(t)
	r := run(t, tp.snapshot(), nil, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443))
	if r.Kind != Forward || !sameIDs(egressPorts(r), []ID{ids["up"]}) {
		t.Fatalf("result %v %v egress %v", r.Kind, r.Reason, egressPorts(r))
	}
	e := r.Egress[0]
	if e.Set != FieldEthSrc|FieldEthDst|FieldNwTTL {
		t.Errorf("set %v, want eth_src,eth_dst,nw_ttl", e.Set)
	}
	if e.Values.EthSrc != mac(upMAC) || e.Values.EthDst != mac(gwMAC) || e.Values.NwTTL != 63 {
		t.Errorf("rewrite values %+v", e.Values)
	}
	if r.Mask.NwDst != [4]byte{255, 255, 255, 255} || r.Mask.NwTTL != 0xff || r.Mask.NwFrag != 0xff || r.Mask.EthType != 0xffff {
		t.Errorf("routed mask %+v lacks nw_dst, ttl, frag or ethertype", r.Mask)
	}
	if r.Mask.TpSrc != 0 || r.Mask.TpDst != 0 {
		t.Errorf("routed mask matches ports that nothing read: %+v", r.Mask)
	}
	for name, tg := range map[string]Tag{"route": RouteTag(ids["default"]), "dst": DstIPTag(ids["rtr"], ip("8.8.8.8")),
		"router": DeviceTag(ids["rtr"]), "arp": ARPTag(ids["rtr"], ip(gatewayIP))} {
		if !hasTag(r, tg) {
			t.Errorf("missing %s tag", name)
		}
	}
}

func TestRouterICMPErrors(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(tp *topo, ids map[string]ID)
		spec     PacketSpec
		frag     uint8
		kind     Kind
		reason   DropReason
		icmpType uint8 // 0: no ICMP expected
		icmpCode uint8
	}{
		{name: "TTL 1 gets time exceeded", spec: func() PacketSpec { p := udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2); p.TTL = 1; return p }(),
			kind: TemporaryDrop, reason: ReasonTTLExceeded, icmpType: packet.ICMPTimeExceeded, icmpCode: 0},
		{name: "no route gets net unreachable", setup: func(tp *topo, ids map[string]ID) { tp.in.Routes = nil },
			spec: udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2), kind: TemporaryDrop, reason: ReasonNoRoute,
			icmpType: packet.ICMPDestUnreachable, icmpCode: packet.ICMPCodeNetUnreachable},
		{name: "reject route gets admin prohibited", setup: func(tp *topo, ids map[string]ID) { tp.in.Routes[0].Type = topology.RouteReject },
			spec: udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2), kind: TemporaryDrop, reason: ReasonRejectRoute,
			icmpType: packet.ICMPDestUnreachable, icmpCode: packet.ICMPCodeAdminProhibited},
		{name: "blackhole route drops silently", setup: func(tp *topo, ids map[string]ID) { tp.in.Routes[0].Type = topology.RouteBlackHole },
			spec: udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2), kind: TemporaryDrop, reason: ReasonBlackhole},
		{name: "inbound filter reject gets admin prohibited", setup: func(tp *topo, ids map[string]ID) {
			tp.in.Routers[0].InboundFilterID = topology.IDPtr(tp.chain("rej", topology.Rule{Type: topology.RuleReject}))
		}, spec: udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2), kind: Drop, reason: ReasonChain,
			icmpType: packet.ICMPDestUnreachable, icmpCode: packet.ICMPCodeAdminProhibited},
		{name: "inbound filter drop of a first fragment gets frag needed", setup: func(tp *topo, ids map[string]ID) {
			tp.in.Routers[0].InboundFilterID = topology.IDPtr(tp.chain("drop", topology.Rule{Type: topology.RuleDrop}))
		}, spec: udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2), frag: packet.FragFirst, kind: TemporaryDrop, reason: ReasonChain,
			icmpType: packet.ICMPDestUnreachable, icmpCode: packet.ICMPCodeFragNeeded},
		{name: "inbound filter drop of an unfragmented packet is silent", setup: func(tp *topo, ids map[string]ID) {
			tp.in.Routers[0].InboundFilterID = topology.IDPtr(tp.chain("drop", topology.Rule{Type: topology.RuleDrop}))
		}, spec: udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2), kind: Drop, reason: ReasonChain},
		{name: "no ICMP error about an ICMP error", setup: func(tp *topo, ids map[string]ID) { tp.in.Routes = nil },
			spec: PacketSpec{EthSrc: mac(vmMAC), EthDst: mac(rtrMAC), Src: ip(vmIP), Dst: ip("8.8.8.8"), Proto: packet.IPProtoICMP,
				SrcPort: uint16(packet.ICMPDestUnreachable), DstPort: 3},
			kind: TemporaryDrop, reason: ReasonNoRoute},
		{name: "no ICMP error to a broadcast source", setup: func(tp *topo, ids map[string]ID) { tp.in.Routes = nil },
			spec: udp(vmMAC, rtrMAC, "255.255.255.255", "8.8.8.8", 1, 2), kind: TemporaryDrop, reason: ReasonNoRoute},
		{name: "no ICMP error about a multicast destination", setup: func(tp *topo, ids map[string]ID) { tp.in.Routes = nil },
			spec: udp(vmMAC, rtrMAC, vmIP, "239.1.1.1", 1, 2), kind: TemporaryDrop, reason: ReasonNoRoute},
		{name: "no ICMP error about a later fragment", setup: func(tp *topo, ids map[string]ID) { tp.in.Routes = nil },
			spec: udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2), frag: packet.FragLater, kind: TemporaryDrop, reason: ReasonNoRoute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, ids := routerTopo(t)
			if tc.setup != nil {
				tc.setup(tp, ids)
			}
			pkt := mkPacket(t, ids["vm1"], tc.spec)
			pkt.Match.NwFrag = tc.frag
			if tc.frag == packet.FragLater {
				pkt.Match.TpSrc, pkt.Match.TpDst = 0, 0
			}
			r := NewSimulator(1).Simulate(tp.snapshot(), nil, pkt, testNow)
			if r.Kind != tc.kind || r.Reason != tc.reason {
				t.Fatalf("result %v %v, want %v %v", r.Kind, r.Reason, tc.kind, tc.reason)
			}
			if tc.icmpType == 0 {
				if len(r.Generated) != 0 {
					t.Fatalf("generated %d packets, want none", len(r.Generated))
				}
				return
			}
			p := decodeGenerated(t, r, ids["rtr-br"])
			if p.IPProto != packet.IPProtoICMP || p.ICMPType != tc.icmpType || p.ICMPCode != tc.icmpCode {
				t.Fatalf("generated ICMP %d/%d, want %d/%d", p.ICMPType, p.ICMPCode, tc.icmpType, tc.icmpCode)
			}
			if p.Src != ip(rtrIP) || p.Dst != tc.spec.Src || p.EthDst != tc.spec.EthSrc || p.EthSrc != mac(rtrMAC) {
				t.Errorf("ICMP error addressed %v→%v %x→%x", p.Src, p.Dst, p.EthSrc, p.EthDst)
			}
			if !p.IPChecksumOK || !p.ICMPv4().IsChecksumValid() {
				t.Error("bad checksums on the ICMP error")
			}
			q := p.Quoted()
			if q == nil || q.SrcAddr() != tc.spec.Src || q.DstAddr() != tc.spec.Dst || binary.BigEndian.Uint16(p.QuotedL4()[2:]) != tc.spec.DstPort {
				t.Errorf("quoted datagram does not describe the original packet")
			}
		})
	}
}

func TestRouterAnswersPingAndARP(t *testing.T) {
	tp, ids := routerTopo(t)
	snap := tp.snapshot()
	t.Run("ping of the ingress port address", func(t *testing.T) {
		r := run(t, snap, nil, ids["vm1"], icmpEcho(vmMAC, rtrMAC, vmIP, rtrIP, 77))
		if r.Kind != Consumed {
			t.Fatalf("kind %v %v", r.Kind, r.Reason)
		}
		p := decodeGenerated(t, r, ids["rtr-br"])
		if p.ICMPType != packet.ICMPEchoReply || p.ICMPIdent != 77 || p.Src != ip(rtrIP) || p.Dst != ip(vmIP) || !p.ICMPv4().IsChecksumValid() {
			t.Errorf("bad echo reply %+v", p)
		}
	})
	t.Run("ping of another port's address", func(t *testing.T) {
		r := run(t, snap, nil, ids["vm1"], icmpEcho(vmMAC, rtrMAC, vmIP, upIP, 78))
		p := decodeGenerated(t, r, ids["rtr-br"])
		if r.Kind != Consumed || p.Src != ip(upIP) || p.ICMPType != packet.ICMPEchoReply {
			t.Errorf("kind %v reply from %v", r.Kind, p.Src)
		}
	})
	t.Run("UDP to the router's address is dropped", func(t *testing.T) {
		r := run(t, snap, nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, rtrIP, 1, 2))
		if r.Kind != TemporaryDrop || r.Reason != ReasonLocalRoute {
			t.Errorf("%v %v", r.Kind, r.Reason)
		}
	})
	t.Run("ARP request from the uplink subnet is answered and learned", func(t *testing.T) {
		r := run(t, snap, nil, ids["up"], arpReq(gw2MAC, "192.0.2.9", upIP))
		if r.Kind != Consumed {
			t.Fatalf("kind %v %v", r.Kind, r.Reason)
		}
		p := decodeGenerated(t, r, ids["up"])
		if p.ARPOp != arpOpReply || p.ARPSHA != mac(upMAC) || p.ARPTPA != ip("192.0.2.9").As4() {
			t.Errorf("bad ARP reply %+v", p)
		}
		want := ARPLearning{Device: ids["rtr"], IP: ip("192.0.2.9"), MAC: mac(gw2MAC)}
		if len(r.LearnedARP) != 1 || r.LearnedARP[0] != want {
			t.Errorf("learned %+v, want %+v", r.LearnedARP, want)
		}
	})
	t.Run("ARP request from outside the subnet is ignored", func(t *testing.T) {
		r := run(t, snap, nil, ids["up"], arpReq(gw2MAC, "198.51.100.9", upIP))
		if r.Kind != Drop || len(r.Generated) != 0 || len(r.LearnedARP) != 0 {
			t.Errorf("kind %v generated %d learned %d", r.Kind, len(r.Generated), len(r.LearnedARP))
		}
	})
	t.Run("frame to another MAC is not for the router", func(t *testing.T) {
		r := run(t, snap, nil, ids["up"], udp(gw2MAC, "02:00:00:00:00:33", "192.0.2.9", vmIP, 1, 2))
		if r.Kind != Drop || r.Reason != ReasonNotForRouter {
			t.Errorf("%v %v", r.Kind, r.Reason)
		}
	})
}

func TestRouterNeedsARP(t *testing.T) {
	tp, ids := routerTopo(t)
	tp.in.ARPTable = nil
	r := run(t, tp.snapshot(), nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2))
	if r.Kind != ARPNeeded {
		t.Fatalf("kind %v %v, want arp-needed", r.Kind, r.Reason)
	}
	want := ARPRequest{Router: ids["rtr"], Port: ids["up"], IP: ip(gatewayIP)}
	if r.ARP != want {
		t.Errorf("ARP %+v, want %+v", r.ARP, want)
	}
	p := decodeGenerated(t, r, ids["up"])
	if p.ARPOp != arpOpRequest || p.ARPTPA != ip(gatewayIP).As4() || p.ARPSPA != ip(upIP).As4() || p.EthDst != broadcastMAC {
		t.Errorf("bad ARP request %+v", p)
	}
	// An expired entry is as good as none.
	tp.in.ARPTable = []ARPEntry{{Router: ids["rtr"], IP: ip(gatewayIP), MAC: mac(gwMAC), Expiry: testNow.Add(-1)}}
	if r := run(t, tp.snapshot(), nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2)); r.Kind != ARPNeeded {
		t.Errorf("expired ARP entry: kind %v", r.Kind)
	}
}

func TestRouterRouteSelection(t *testing.T) {
	build := func(t *testing.T, w1, w2 int, src2 string) (*Snapshot, map[string]ID) {
		tp, ids := routerTopo(t)
		ids["up2"] = tp.routerPort(ids["rtr"], "up2", "198.51.100.1/24", up2MAC, true)
		tp.arp(ids["rtr"], "198.51.100.254", gw2MAC)
		tp.in.Routes[0].Weight = w1
		ids["second"] = tp.route(ids["rtr"], "second", "0.0.0.0/0", ids["up2"], "198.51.100.254", w2)
		if src2 != "" {
			pfx := netipPrefix(src2)
			tp.in.Routes[1].SrcNetworkAddr = topology.Str(pfx.Addr().String())
			tp.in.Routes[1].SrcNetworkLength = pfx.Bits()
		}
		ids["specific"] = tp.route(ids["rtr"], "specific", "8.8.0.0/16", ids["up"], gatewayIP, 500)
		return tp.snapshot(), ids
	}
	t.Run("longest prefix wins over weight", func(t *testing.T) {
		snap, ids := build(t, 100, 10, "")
		r := run(t, snap, nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2))
		if !hasTag(r, RouteTag(ids["specific"])) {
			t.Errorf("did not use the /16")
		}
	})
	t.Run("lowest weight wins", func(t *testing.T) {
		snap, ids := build(t, 100, 10, "")
		r := run(t, snap, nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "9.9.9.9", 1, 2))
		if !sameIDs(egressPorts(r), []ID{ids["up2"]}) {
			t.Errorf("egress %v, want up2", egressPorts(r))
		}
	})
	t.Run("source prefix restricts a route", func(t *testing.T) {
		snap, ids := build(t, 100, 10, "10.9.0.0/16")
		r := run(t, snap, nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "9.9.9.9", 1, 2))
		if !sameIDs(egressPorts(r), []ID{ids["up"]}) {
			t.Errorf("egress %v, want up (the other route is for another source)", egressPorts(r))
		}
	})
	t.Run("equal weights spread connections and keep each on one path", func(t *testing.T) {
		snap, ids := build(t, 100, 100, "")
		used := map[ID]int{}
		for sp := uint16(1000); sp < 1064; sp++ {
			a := run(t, snap, nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "9.9.9.9", sp, 53))
			b := run(t, snap, nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "9.9.9.9", sp, 53))
			if a.Egress[0].Port != b.Egress[0].Port {
				t.Fatalf("connection from port %d changed path", sp)
			}
			if a.Mask.TpSrc != 0xffff {
				t.Fatalf("ECMP flow does not match the ports it hashed")
			}
			used[a.Egress[0].Port]++
		}
		if len(used) != 2 || used[ids["up"]] < 10 || used[ids["up2"]] < 10 {
			t.Errorf("ECMP spread %v", used)
		}
	})
	t.Run("routes through an inactive exterior port are ignored", func(t *testing.T) {
		tp, ids := routerTopo(t)
		ids["up2"] = tp.routerPort(ids["rtr"], "up2", "198.51.100.1/24", up2MAC, true)
		tp.port(ids["up2"]).Active = false
		tp.arp(ids["rtr"], "198.51.100.254", gw2MAC)
		tp.route(ids["rtr"], "second", "0.0.0.0/0", ids["up2"], "198.51.100.254", 1)
		r := run(t, tp.snapshot(), nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "9.9.9.9", 1, 2))
		if !sameIDs(egressPorts(r), []ID{ids["up"]}) {
			t.Errorf("egress %v, want up", egressPorts(r))
		}
	})
}

func TestRouterToRouterAndBackToBridge(t *testing.T) {
	// vm1 - br - rtr(tenant) - rtr2(provider) - uplink, and back in from
	// the uplink to vm1 through the bridge's MAC table.
	tp, ids := routerTopo(t)
	tp.in.Routes = nil
	ids["rtr2"] = tp.router("rtr2")
	tp.providerUplink(ids, ids["rtr"], ids["rtr2"])
	tp.route(ids["rtr2"], "p-tenant", "10.0.0.0/24", ids["p-t"], "169.254.0.1", 0)
	tp.arp(ids["rtr"], vmIP, vmMAC)
	snap := tp.snapshot()
	r := run(t, snap, nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2))
	if r.Kind != Forward || !sameIDs(egressPorts(r), []ID{ids["uplink"]}) || r.Egress[0].Values.NwTTL != 62 {
		t.Fatalf("out: %v %v egress %v ttl %d", r.Kind, r.Reason, egressPorts(r), r.Egress[0].Values.NwTTL)
	}
	r = run(t, snap, nil, ids["uplink"], udp(gwMAC, "ac:ca:ba:00:01:03", "8.8.8.8", vmIP, 2, 1))
	if r.Kind != Forward || !sameIDs(egressPorts(r), []ID{ids["vm1"]}) {
		t.Fatalf("in: %v %v egress %v", r.Kind, r.Reason, egressPorts(r))
	}
	if v := r.Egress[0].Values; v.EthDst != mac(vmMAC) || v.EthSrc != mac(rtrMAC) || v.NwTTL != 62 {
		t.Errorf("in: rewrite %+v", v)
	}
}

func TestRouterARPFailureAnswersUnreachable(t *testing.T) {
	tp, ids := routerTopo(t)
	tp.in.ARPTable = nil
	pkt := mkPacket(t, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2))
	pkt.ARPFailed = true
	r := NewSimulator(1).Simulate(tp.snapshot(), nil, pkt, testNow)
	if r.Kind != TemporaryDrop || r.Reason != ReasonARPTimeout {
		t.Fatalf("%v %v", r.Kind, r.Reason)
	}
	// The route has a gateway: net unreachable.
	if p := decodeGenerated(t, r, ids["rtr-br"]); p.ICMPType != packet.ICMPDestUnreachable || p.ICMPCode != packet.ICMPCodeNetUnreachable {
		t.Errorf("ICMP %d/%d", p.ICMPType, p.ICMPCode)
	}
}

func TestRouterResolvesNextHopFromBridgeTables(t *testing.T) {
	tp, ids := routerTopo(t)
	tp.in.BridgeARP = false // the bridge does not answer ARP, the router still uses its table
	tp.in.IPMACTable = []IPMACEntry{{Bridge: ids["br"], IP: ip("10.0.0.12"), MAC: mac("02:00:00:00:00:12")}}
	tp.learn(ids["br"], "02:00:00:00:00:12", tp.vmPort(ids["br"], "vm2"))
	snap := tp.snapshot()
	r := run(t, snap, nil, ids["up"], udp(gwMAC, upMAC, "8.8.8.8", "10.0.0.12", 1, 2))
	if r.Kind != Forward || r.Egress[0].Values.EthDst != mac("02:00:00:00:00:12") {
		t.Fatalf("%v %v %+v", r.Kind, r.Reason, r.Egress)
	}
	if r := run(t, snap, nil, ids["vm1"], arpReq(vmMAC, vmIP, "10.0.0.12")); r.Kind != Forward {
		t.Errorf("bridge answered ARP with bridge ARP disabled: %v", r.Kind)
	}
}

// TestRouterARPStaleness: a fresh entry is used quietly; a stale one is
// used and asked for again; an expired one is as good as none.
func TestRouterARPStaleness(t *testing.T) {
	tests := []struct {
		name    string
		stale   time.Duration // from testNow; 0 means never stale
		expiry  time.Duration
		kind    Kind
		refresh bool
	}{
		{"fresh", 30 * time.Second, 60 * time.Second, Forward, false},
		{"never stale", 0, 0, Forward, false},
		{"stale: used and refreshed", -time.Second, 29 * time.Second, Forward, true},
		{"expired", -31 * time.Second, -time.Second, ARPNeeded, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, ids := routerTopo(t)
			e := ARPEntry{Router: ids["rtr"], IP: ip(gatewayIP), MAC: mac(gwMAC)}
			if tc.stale != 0 {
				e.Stale = testNow.Add(tc.stale)
			}
			if tc.expiry != 0 {
				e.Expiry = testNow.Add(tc.expiry)
			}
			tp.in.ARPTable = []ARPEntry{e}
			r := run(t, tp.snapshot(), nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2))
			if r.Kind != tc.kind {
				t.Fatalf("kind %v (%v), want %v", r.Kind, r.Reason, tc.kind)
			}
			if got := len(r.ARPRefresh) == 1; got != tc.refresh {
				t.Fatalf("%d refreshes, want refresh %v", len(r.ARPRefresh), tc.refresh)
			}
			if !tc.refresh {
				return
			}
			f := r.ARPRefresh[0]
			if f.Router != ids["rtr"] || f.Port != ids["up"] || f.IP != ip(gatewayIP) {
				t.Errorf("refresh %+v", f.ARPRequest)
			}
			var p packet.Parsed
			p.Decode(f.Frame)
			if p.ARPOp != arpOpRequest || p.ARPTPA != ip(gatewayIP).As4() || p.ARPSPA != ip(upIP).As4() ||
				p.ARPSHA != mac(upMAC) || p.EthDst != broadcastMAC {
				t.Errorf("refresh request %+v", p)
			}
			if r.Egress[0].Values.EthDst != mac(gwMAC) {
				t.Errorf("the stale entry was not used: eth_dst %v", r.Egress[0].Values.EthDst)
			}
		})
	}
}

// TestGratuitousARPReachesRouters: a VM's gratuitous ARP on a bridge is
// learned by the bridge and by the routers linked to it whose subnet holds
// the address, so an address that moved to another MAC is followed at once.
func TestGratuitousARPReachesRouters(t *testing.T) {
	tp, ids := routerTopo(t)
	r := run(t, tp.snapshot(), nil, ids["vm1"], arpReq("02:00:00:00:00:77", vmIP, vmIP))
	var bridge, router bool
	for _, l := range r.LearnedARP {
		if l.IP != ip(vmIP) || l.MAC != mac("02:00:00:00:00:77") {
			t.Errorf("learned %+v", l)
		}
		bridge = bridge || l.Device == ids["br"]
		router = router || l.Device == ids["rtr"]
	}
	if !bridge || !router {
		t.Errorf("learned %+v: want the bridge's and the router's entry", r.LearnedARP)
	}
	if r.Kind != UserspaceOnly && r.Kind != Drop {
		t.Errorf("kind %v: a gratuitous ARP installs no flow", r.Kind)
	}
	// An address outside the router's subnet is not the router's.
	r = run(t, tp.snapshot(), nil, ids["vm1"], arpReq("02:00:00:00:00:77", "172.16.0.9", "172.16.0.9"))
	for _, l := range r.LearnedARP {
		if l.Device == ids["rtr"] {
			t.Errorf("the router learned %+v outside its subnet", l)
		}
	}
}

func TestStaleARPBetween(t *testing.T) {
	tp, ids := routerTopo(t)
	tp.in.ARPTable = []ARPEntry{
		{Router: ids["rtr"], IP: ip(gatewayIP), MAC: mac(gwMAC), Stale: testNow.Add(time.Second)},
		{Router: ids["rtr"], IP: ip("192.0.2.9"), MAC: mac(gw2MAC), Stale: testNow.Add(3 * time.Second)},
		{Router: ids["rtr"], IP: ip("192.0.2.10"), MAC: mac(gw2MAC)}, // never stale
	}
	snap := tp.snapshot()
	var got []string
	snap.StaleARP(testNow, testNow.Add(2*time.Second), func(r ID, a netip.Addr) {
		if r != ids["rtr"] {
			t.Errorf("router %s", r)
		}
		got = append(got, a.String())
	})
	if len(got) != 1 || got[0] != gatewayIP {
		t.Errorf("stale between now and +2s: %v, want %s only", got, gatewayIP)
	}
}
