package sim

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

var (
	simSeed       = flag.Uint64("sim.seed", 1, "seed of the random topologies and packets of the megaflow property test")
	simIterations = flag.Int("sim.iterations", 3000, "packets the megaflow property test simulates")
)

// randomWorld is a random topology and the value domains its packets draw
// from, small enough that packets often hit the topology's MACs, addresses
// and rule values.
type randomWorld struct {
	r      *rand.Rand
	in     SnapshotInput
	snap   *Snapshot
	ports  []ID // ingress candidates
	macs   [][6]byte
	ips    []netip.Addr
	tports []uint16
}

func (w *randomWorld) mac() [6]byte        { return w.macs[w.r.IntN(len(w.macs))] }
func (w *randomWorld) ip() netip.Addr      { return w.ips[w.r.IntN(len(w.ips))] }
func (w *randomWorld) tport() uint16       { return w.tports[w.r.IntN(len(w.tports))] }
func (w *randomWorld) coin(p float64) bool { return w.r.Float64() < p }

func newRandomWorld(t testing.TB, r *rand.Rand) *randomWorld {
	w := &randomWorld{r: r, tports: []uint16{0, 22, 53, 80, 1000, 40000}}
	tp := newTopo(t)
	rtr := tp.router("r")
	up := tp.routerPort(rtr, "up", "192.0.2.1/24", "ac:ca:ba:00:ff:01", true)
	tp.route(rtr, "default", "0.0.0.0/0", up, "192.0.2.254", 0)
	tp.arp(rtr, "192.0.2.254", "02:00:00:00:ff:fe")
	w.ports = append(w.ports, up)
	w.macs = append(w.macs, mac("ac:ca:ba:00:ff:01"), mac("02:00:00:00:ff:fe"), mac("02:00:00:00:77:77"),
		broadcastMAC, mac("01:00:5e:00:00:05"))
	w.ips = append(w.ips, ip("192.0.2.1"), ip("192.0.2.254"), ip("192.0.2.50"), ip("8.8.8.8"),
		ip("255.255.255.255"), ip("224.0.0.5"))
	var allPorts []ID
	nb := 1 + r.IntN(3)
	for b := range nb {
		bn := fmt.Sprint("b", b)
		br := tp.bridge(bn)
		bp := tp.bridgePort(br, bn+"-r")
		rm := fmt.Sprintf("ac:ca:ba:00:00:%02x", b)
		rp := tp.routerPort(rtr, "r-"+bn, fmt.Sprintf("10.%d.0.1/24", b), rm, false)
		tp.link(bp, rp)
		w.macs = append(w.macs, mac(rm))
		w.ips = append(w.ips, ip(fmt.Sprintf("10.%d.0.1", b)))
		for v := range 2 + r.IntN(3) {
			vn := fmt.Sprint(bn, "-vm", v)
			pid := tp.vmPort(br, vn)
			vm := fmt.Sprintf("02:00:00:00:%02x:%02x", b, v)
			va := fmt.Sprintf("10.%d.0.%d", b, 10+v)
			w.ports, allPorts = append(w.ports, pid), append(allPorts, pid)
			w.macs, w.ips = append(w.macs, mac(vm)), append(w.ips, ip(va))
			if r.IntN(4) != 0 {
				tp.learn(br, vm, pid)
			}
			if r.IntN(4) != 0 {
				tp.arp(rtr, va, vm)
			}
			if r.IntN(3) == 0 {
				tp.in.IPMACTable = append(tp.in.IPMACTable, IPMACEntry{Bridge: br, IP: ip(va), MAC: mac(vm)})
			}
		}
		if r.IntN(2) == 0 {
			tp.in.Bridges[b].InboundFilterID = topology.IDPtr(w.randomChain(tp, bn+"-in", allPorts))
		}
		if r.IntN(3) == 0 {
			tp.in.Bridges[b].OutboundFilterID = topology.IDPtr(w.randomChain(tp, bn+"-out", allPorts))
		}
	}
	for _, pid := range allPorts {
		if r.IntN(3) == 0 {
			tp.port(pid).InboundFilterID = topology.IDPtr(w.randomChain(tp, pid.String()+"-in", allPorts))
		}
		if r.IntN(3) == 0 {
			tp.port(pid).OutboundFilterID = topology.IDPtr(w.randomChain(tp, pid.String()+"-out", allPorts))
		}
	}
	if r.IntN(2) == 0 {
		tap := tp.vmPort(tp.bridge("taps"), "tap")
		cond := w.randomRule(tp, "mirror-cond", allPorts, nil).Condition
		tp.in.Mirrors = append(tp.in.Mirrors, topology.Mirror{ID: id("mirror"), ToPortID: topology.IDPtr(tap),
			Conditions: []topology.MirrorCondition{{Condition: cond}}})
		tp.in.Bridges[0].InboundMirrorIDs = []ID{id("mirror")}
	}
	if r.IntN(2) == 0 {
		lb, pool := id("lb"), id("pool")
		tp.in.LoadBalancers = []topology.LoadBalancer{{ID: lb, RouterID: topology.IDPtr(rtr), AdminStateUp: true}}
		tp.in.Pools = []topology.Pool{{ID: pool, AdminStateUp: true}}
		tp.in.VIPs = []topology.VIP{{ID: id("vip"), PoolID: &pool, LoadBalancerID: &lb, Address: topology.Str("192.0.2.80"),
			ProtocolPort: 80, AdminStateUp: true, SessionPersistence: []*string{nil, topology.Str("SOURCE_IP")}[r.IntN(2)]}}
		for i := range 1 + r.IntN(3) {
			a := w.ips[r.IntN(len(w.ips))]
			tp.in.PoolMembers = append(tp.in.PoolMembers, topology.PoolMember{ID: id(fmt.Sprint("m", i)), PoolID: &pool,
				Address: topology.Str(a.String()), ProtocolPort: 80, Weight: 1 + r.IntN(3), AdminStateUp: r.IntN(4) != 0})
		}
		w.ips = append(w.ips, ip("192.0.2.80"))
	}
	// NAT on the router: a floating IP, the default SNAT, and their reverses.
	in := []topology.Rule{
		natRule(topology.RuleDNAT, topology.Condition{NwDstAddress: topology.Str("192.0.2.50"), NwDstLength: 32}, target("10.0.0.10", "10.0.0.10", 0, 0)),
		natRule(topology.RuleRevSNAT, topology.Condition{InPorts: []ID{up}}),
	}
	out := []topology.Rule{
		natRule(topology.RuleSNAT, topology.Condition{OutPorts: []ID{up}, NwSrcAddress: topology.Str("10.0.0.10"), NwSrcLength: 32}, target("192.0.2.50", "192.0.2.50", 0, 0)),
		natRule(topology.RuleSNAT, topology.Condition{OutPorts: []ID{up}}, target("192.0.2.1", "192.0.2.1", 1024, 65535)),
	}
	if r.IntN(2) == 0 {
		in = append(in, w.randomRule(tp, "r-in-extra", allPorts, nil))
	}
	tp.in.Routers[0].InboundFilterID = topology.IDPtr(tp.chain("r-in", in...))
	tp.in.Routers[0].OutboundFilterID = topology.IDPtr(tp.chain("r-out", out...))
	w.in = tp.in
	w.snap = tp.snapshot()
	return w
}

func (w *randomWorld) randomChain(tp *topo, name string, ports []ID) ID {
	var rules []topology.Rule
	var subs []ID
	if w.coin(0.3) {
		subs = append(subs, tp.chain(name+"-sub", w.randomRule(tp, name+"-sub0", ports, nil), w.randomRule(tp, name+"-sub1", ports, nil)))
	}
	for i := range 1 + w.r.IntN(4) {
		rules = append(rules, w.randomRule(tp, fmt.Sprint(name, i), ports, subs))
	}
	return tp.chain(name, rules...)
}

func (w *randomWorld) randomRule(tp *topo, name string, ports []ID, subs []ID) topology.Rule {
	r := w.r
	var c topology.Condition
	for range 1 + r.IntN(3) {
		switch r.IntN(14) {
		case 0:
			c.NwProto, c.InvNwProto = ptr([]int{1, 6, 17}[r.IntN(3)]), w.coin(0.2)
		case 1:
			lo := int(w.tport())
			c.TpDst, c.InvTpDst = &topology.PortRange{Start: lo, End: lo + r.IntN(100)}, w.coin(0.2)
		case 2:
			c.TpSrc = &topology.PortRange{Start: int(w.tport()), End: 65535}
		case 3:
			a := w.ip()
			c.NwSrcAddress, c.NwSrcLength, c.InvNwSrc = topology.Str(a.String()), []int{8, 24, 32}[r.IntN(3)], w.coin(0.2)
		case 4:
			c.NwDstAddress, c.NwDstLength, c.InvNwDst = topology.Str(w.ip().String()), []int{16, 32}[r.IntN(2)], w.coin(0.2)
		case 5:
			m := w.mac()
			c.DlSrc, c.InvDlSrc = topology.Str(topology.FormatMAC(m)), w.coin(0.2)
			if w.coin(0.5) {
				c.DlSrcMask = topology.Str("ffff.ff00.0000")
			}
		case 6:
			c.DlDst = topology.Str(topology.FormatMAC(w.mac()))
		case 7:
			c.DlType, c.InvDlType = ptr([]int{0x0800, 0x0806}[r.IntN(2)]), w.coin(0.3)
		case 8:
			c.InPorts, c.InvInPorts = []ID{ports[r.IntN(len(ports))]}, w.coin(0.3)
		case 9:
			c.FragmentPolicy = topology.Str([]string{topology.FragAny, topology.FragHeader, topology.FragNonheader, topology.FragUnfragmented}[r.IntN(4)])
		case 10:
			c.MatchForwardFlow = true
		case 11:
			c.NwTos = ptr([]int{0, 0x10}[r.IntN(2)])
		case 12:
			c.CondInvert = true
		case 13:
			c.NoVLAN = true
		}
	}
	rule := topology.Rule{ID: id(name), Condition: c}
	switch k := r.IntN(10); {
	case k < 3:
		rule.Type = topology.RuleAccept
	case k < 6:
		rule.Type = topology.RuleDrop
	case k < 7:
		rule.Type = topology.RuleReturn
	case k < 8:
		rule.Type = topology.RuleReject
	case len(subs) > 0:
		rule.Type, rule.JumpChainID = topology.RuleJump, topology.IDPtr(subs[r.IntN(len(subs))])
	default:
		rule.Type, rule.JumpChainID = topology.RuleJump, topology.IDPtr(id("missing"))
	}
	return rule
}

// randomKey draws a flow key, normalized as a datapath would extract it.
func (w *randomWorld) randomKey() packet.FlowKey {
	r := w.r
	k := packet.FlowKey{EthSrc: w.mac(), EthDst: w.mac()}
	switch n := r.IntN(20); {
	case n < 14:
		k.EthType = packet.EtherTypeIPv4
	case n < 18:
		k.EthType = packet.EtherTypeARP
	case n < 19:
		k.EthType = packet.EtherTypeIPv6
	default:
		k.EthType = 0x88cc
	}
	if w.coin(0.1) {
		k.VLAN = packet.VLANPresent | uint16(r.IntN(3))
	}
	k.NwSrc, k.NwDst = w.ip().As4(), w.ip().As4()
	k.NwProto = []uint8{1, 6, 17, 47}[r.IntN(4)]
	k.NwTOS = []uint8{0, 0x10}[r.IntN(2)]
	k.NwTTL = []uint8{1, 2, 64}[r.IntN(3)]
	k.NwFrag = []uint8{packet.FragNone, packet.FragNone, packet.FragNone, packet.FragFirst, packet.FragLater}[r.IntN(5)]
	k.TpSrc, k.TpDst = w.tport(), w.tport()
	k.ICMPID = []uint16{1, 2, 777}[r.IntN(3)]
	k.ARPSHA, k.ARPTHA = w.mac(), w.mac()
	if r.IntN(5) == 0 {
		// Aim at the router's services: the uplink MAC, the floating IP or
		// the VIP, a TCP service port.
		k.EthDst, k.EthType, k.NwProto, k.TpDst = w.macs[0], packet.EtherTypeIPv4, packet.IPProtoTCP, 80
		k.NwDst = []netip.Addr{ip("192.0.2.50"), ip("192.0.2.80")}[r.IntN(2)].As4()
	}
	normalize(&k)
	return k
}

// normalize zeroes the fields a datapath leaves zero for the key's
// protocols, and maps ICMP "ports" to the type and code values.
func normalize(k *packet.FlowKey) {
	switch k.EthType {
	case packet.EtherTypeARP:
		k.NwProto = 1 + k.NwProto%2
		k.NwTOS, k.NwTTL, k.NwFrag, k.TpSrc, k.TpDst = 0, 0, 0, 0, 0
	case packet.EtherTypeIPv4:
		k.ARPSHA, k.ARPTHA = [6]byte{}, [6]byte{}
		switch {
		case k.NwFrag == packet.FragLater, k.NwProto != 1 && k.NwProto != 6 && k.NwProto != 17:
			k.TpSrc, k.TpDst = 0, 0
		case k.NwProto == 1:
			k.TpSrc, k.TpDst = []uint16{0, 3, 8, 11}[k.TpSrc%4], k.TpDst%4
		}
		if k.NwProto != 1 || k.NwFrag == packet.FragLater || (k.TpSrc != 0 && k.TpSrc != 8) {
			k.ICMPID = 0 // only echoes have an identifier
		}
	default:
		k.NwSrc, k.NwDst, k.NwProto, k.NwTOS, k.NwTTL, k.NwFrag, k.TpSrc, k.TpDst = [4]byte{}, [4]byte{}, 0, 0, 0, 0, 0, 0
		k.ARPSHA, k.ARPTHA, k.ICMPID = [6]byte{}, [6]byte{}, 0
	}
	if k.EthType == packet.EtherTypeARP {
		k.ICMPID = 0
	}
}

// keepMasked sets *dst to k when any bit of mask is set, leaving it
// random otherwise.
func keepMasked[T comparable](dst *T, k, mask T) {
	var zero T
	if mask != zero {
		*dst = k
	}
}

// perturb returns a key equal to k in every bit of mask and random
// elsewhere; ok is false when normalization broke the equality.
func (w *randomWorld) perturb(k, mask packet.FlowKey) (packet.FlowKey, bool) {
	q := w.randomKey()
	q.InPort = k.InPort
	keepMasked(&q.EthSrc, k.EthSrc, mask.EthSrc)
	keepMasked(&q.EthDst, k.EthDst, mask.EthDst)
	keepMasked(&q.VLAN, k.VLAN, mask.VLAN)
	keepMasked(&q.EthType, k.EthType, mask.EthType)
	keepMasked(&q.NwSrc, k.NwSrc, mask.NwSrc)
	keepMasked(&q.NwDst, k.NwDst, mask.NwDst)
	keepMasked(&q.NwProto, k.NwProto, mask.NwProto)
	keepMasked(&q.NwTOS, k.NwTOS, mask.NwTOS)
	keepMasked(&q.NwTTL, k.NwTTL, mask.NwTTL)
	keepMasked(&q.NwFrag, k.NwFrag, mask.NwFrag)
	keepMasked(&q.TpSrc, k.TpSrc, mask.TpSrc)
	keepMasked(&q.TpDst, k.TpDst, mask.TpDst)
	keepMasked(&q.ICMPID, k.ICMPID, mask.ICMPID)
	keepMasked(&q.ARPSHA, k.ARPSHA, mask.ARPSHA)
	keepMasked(&q.ARPTHA, k.ARPTHA, mask.ARPTHA)
	normalize(&q)
	return q, q.Masked(&mask) == k.Masked(&mask)
}

// sameActions compares what two results do to a packet: kind, reason,
// egress ports and the values of the fields they set.
func sameActions(a, b *Result) string {
	if a.Kind != b.Kind || a.Reason != b.Reason {
		return fmt.Sprintf("kind %v/%v vs %v/%v", a.Kind, a.Reason, b.Kind, b.Reason)
	}
	if len(a.Egress) != len(b.Egress) {
		return fmt.Sprintf("%d vs %d egress ports", len(a.Egress), len(b.Egress))
	}
	for i := range a.Egress {
		x, y := &a.Egress[i], &b.Egress[i]
		if x.Port != y.Port || x.Set != y.Set {
			return fmt.Sprintf("egress %d: port %v set %v vs port %v set %v", i, x.Port, x.Set, y.Port, y.Set)
		}
		xk, yk := x.Values.FlowKey, y.Values.FlowKey
		// The mask of exactly the set fields.
		m := maskFor(x.Set&^fieldsUserspace, 0)
		m.InPort, m.EthType, m.NwFrag = 0, 0, 0
		if x.Set&FieldNwProto == 0 {
			m.NwProto = 0
		}
		if xk.Masked(&m) != yk.Masked(&m) {
			return fmt.Sprintf("egress %d: set values %+v vs %+v", i, xk.Masked(&m), yk.Masked(&m))
		}
	}
	return ""
}

// TestMegaflowProperty checks the central promise of the megaflow mask:
// every packet that matches an installed flow's key under its mask would
// have been simulated to the same actions, for a datapath with and
// without the ICMP echo identifier in its flow key.
func TestMegaflowProperty(t *testing.T) {
	for _, icmpID := range []bool{false, true} {
		t.Run(fmt.Sprint("icmp-id=", icmpID), func(t *testing.T) { testMegaflowProperty(t, icmpID) })
	}
}

func testMegaflowProperty(t *testing.T, matchICMPID bool) {
	r := rand.New(rand.NewPCG(*simSeed, 42))
	t.Logf("seed %d, %d iterations (rerun with -sim.seed and -sim.iterations)", *simSeed, *simIterations)
	sim1, sim2 := NewSimulator(1), NewSimulator(2)
	sim1.MatchICMPID(matchICMPID)
	sim2.MatchICMPID(matchICMPID)
	var checked, installed, icmpEchoes int
	var w *randomWorld
	var tables *flowstate.Tables
	for i := range *simIterations {
		if i%200 == 0 {
			w = newRandomWorld(t, r)
			tables = flowstate.NewTables(1, flowstate.DefaultIdleTTL)
		}
		in := w.ports[r.IntN(len(w.ports))]
		if r.IntN(4) == 0 {
			in = w.ports[0] // the uplink
		}
		k := w.randomKey()
		pk := &Packet{Port: in, Match: MatchFromFlowKey(&k)}
		a := sim1.Simulate(w.snap, tables.View(0), pk, testNow)
		switch a.Kind {
		case Forward, Drop, TemporaryDrop:
		default:
			continue
		}
		installed++
		if a.Mask.ICMPID != 0 {
			if !matchICMPID {
				t.Fatalf("iteration %d: a %v flow matches the ICMP echo identifier its datapath lacks", i, a.Kind)
			}
			icmpEchoes++
		}
		// The flow's NAT bindings exist once it is installed.
		tables.Shard(0).Commit(nil, a.NAT)
		for range 4 {
			q, ok := w.perturb(k, a.Mask)
			if !ok {
				continue
			}
			b := sim2.Simulate(w.snap, tables.View(0), &Packet{Port: in, Match: MatchFromFlowKey(&q)}, testNow)
			checked++
			if diff := sameActions(a, b); diff != "" {
				pk.Trace = true
				a = sim1.Simulate(w.snap, tables.View(0), pk, testNow)
				t.Fatalf("iteration %d: packets equal under the mask act differently: %s\nkey  %+v\nmask %+v\nother %+v\ntrace of the first:\n%s",
					i, diff, k, a.Mask, q, a.Trace)
			}
		}
		// Later packets may be this connection's return traffic.
		tables.Shard(0).Commit(a.Conntrack, nil)
	}
	t.Logf("%d installed flows (%d matching an ICMP echo identifier), %d packets checked against their masks",
		installed, icmpEchoes, checked)
	if installed == 0 || checked < *simIterations/10 {
		t.Fatalf("too few cases exercised: %d installed, %d checked", installed, checked)
	}
	if matchICMPID && icmpEchoes == 0 {
		t.Fatal("no installed flow matched an ICMP echo identifier: the random topologies no longer track or NAT pings")
	}
}
