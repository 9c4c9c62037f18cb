package sim

import (
	"testing"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/topology"
)

// lbTopo is routerTopo with a load balancer on the router: VIP
// 192.0.2.80:80 over backends 10.0.0.11:8080 (weight 1) and
// 10.0.0.12:8080 (weight 3). The router's inbound filter drops traffic to
// the VIP and its outbound filter the backends' replies, to show that
// balanced traffic skips them.
func lbTopo(t testing.TB, sticky bool, member2 func(*topology.PoolMember)) (*topo, map[string]ID) {
	tp, ids := routerTopo(t)
	ids["vm2"] = tp.vmPort(ids["br"], "vm2")
	tp.learn(ids["br"], "02:00:00:00:00:12", ids["vm2"])
	tp.arp(ids["rtr"], vmIP, vmMAC)
	tp.arp(ids["rtr"], "10.0.0.12", "02:00:00:00:00:12")
	lb, pool := id("lb"), id("pool")
	tp.in.LoadBalancers = []topology.LoadBalancer{{ID: lb, RouterID: topology.IDPtr(ids["rtr"]), AdminStateUp: true}}
	tp.in.Pools = []topology.Pool{{ID: pool, LoadBalancerID: &lb, AdminStateUp: true, Protocol: "TCP"}}
	m2 := topology.PoolMember{ID: id("m2"), PoolID: &pool, Address: topology.Str("10.0.0.12"), ProtocolPort: 8080, Weight: 3, AdminStateUp: true, Status: "ACTIVE"}
	if member2 != nil {
		member2(&m2)
	}
	tp.in.PoolMembers = []topology.PoolMember{
		{ID: id("m1"), PoolID: &pool, Address: topology.Str(vmIP), ProtocolPort: 8080, Weight: 1, AdminStateUp: true, Status: "ACTIVE"},
		m2,
	}
	v := topology.VIP{ID: id("vip"), PoolID: &pool, LoadBalancerID: &lb, Address: topology.Str(vipIP), ProtocolPort: 80, AdminStateUp: true}
	if sticky {
		v.SessionPersistence = topology.Str("SOURCE_IP")
	}
	tp.in.VIPs = []topology.VIP{v}
	tp.in.Routers[0].InboundFilterID = topology.IDPtr(tp.chain("in",
		dropIf(topology.Condition{NwDstAddress: topology.Str(vipIP), NwDstLength: 32})))
	tp.in.Routers[0].OutboundFilterID = topology.IDPtr(tp.chain("out",
		dropIf(topology.Condition{NwProto: ptr(6), TpSrc: &topology.PortRange{Start: 8080, End: 8080}})))
	ids["lb"] = lb
	return tp, ids
}

func TestLoadBalancerConnection(t *testing.T) {
	tp, ids := lbTopo(t, false, nil)
	snap := tp.snapshot()
	tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
	in := run(t, snap, tables.View(0), ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", vipIP, 5000, 80))
	if in.Kind != Forward {
		t.Fatalf("to the VIP: %v %v", in.Kind, in.Reason)
	}
	v := in.Egress[0].Values
	backend := addr4(v.NwDst)
	if (backend != ip(vmIP) && backend != ip("10.0.0.12")) || v.TpDst != 8080 {
		t.Fatalf("balanced to %v:%d", backend, v.TpDst)
	}
	if e, ok := natEntry(in, flowstate.FwdDNAT); !ok || e.Key.Device != ids["lb"] {
		t.Fatalf("forward key %+v: NAT keys belong to the load balancer", e)
	}
	commit(tables.Shard(0), in)
	again := run(t, snap, tables.View(0), ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", vipIP, 5000, 80))
	if addr4(again.Egress[0].Values.NwDst) != backend {
		t.Fatal("an existing connection changed backend")
	}
	vmMACOf := map[string]string{vmIP: vmMAC, "10.0.0.12": "02:00:00:00:00:12"}
	reply := run(t, snap, tables.View(0), id(map[string]string{vmIP: "vm1", "10.0.0.12": "vm2"}[backend.String()]),
		tcp(vmMACOf[backend.String()], rtrMAC, backend.String(), "8.8.8.8", 8080, 5000))
	if reply.Kind != Forward || reply.Egress[0].Values.NwSrc != ip(vipIP).As4() || reply.Egress[0].Values.TpSrc != 80 {
		t.Fatalf("reply: %v %v %+v", reply.Kind, reply.Reason, reply.Egress)
	}
	if other := run(t, snap, tables.View(0), ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", vipIP, 5000, 81)); other.Kind != Drop {
		t.Fatalf("not a VIP port: %v, want the router's filter to drop it", other.Kind)
	}
}

func TestLoadBalancerWeights(t *testing.T) {
	tp, ids := lbTopo(t, false, nil)
	snap := tp.snapshot()
	s := NewSimulator(3)
	counts := map[[4]byte]int{}
	for sp := range uint16(800) {
		r := s.Simulate(snap, nil, mkPacket(t, ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", vipIP, 1000+sp, 80)), testNow)
		counts[r.Egress[0].Values.NwDst]++
	}
	heavy, light := counts[ip("10.0.0.12").As4()], counts[ip(vmIP).As4()]
	if heavy+light != 800 || heavy < 2*light || light < 100 {
		t.Fatalf("weight 3 member got %d, weight 1 member %d", heavy, light)
	}
}

func TestLoadBalancerStickyAndDraining(t *testing.T) {
	t.Run("sticky sessions keep a client on one backend", func(t *testing.T) {
		tp, ids := lbTopo(t, true, nil)
		snap := tp.snapshot()
		tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
		first := run(t, snap, tables.View(0), ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", vipIP, 5000, 80))
		commit(tables.Shard(0), first)
		for sp := uint16(5001); sp < 5020; sp++ {
			r := run(t, snap, tables.View(0), ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", vipIP, sp, 80))
			if r.Egress[0].Values.NwDst != first.Egress[0].Values.NwDst {
				t.Fatalf("client moved to another backend on port %d", sp)
			}
		}
	})
	t.Run("a disabled member drains its connections", func(t *testing.T) {
		tp, ids := lbTopo(t, false, nil)
		tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
		tables.Shard(0).NAT.Touch(flowstate.NATKey{Type: flowstate.FwdDNAT, Src: ip("8.8.8.8"), SrcPort: 5000, Dst: ip(vipIP), DstPort: 80, Proto: 6, Device: ids["lb"]},
			flowstate.NATBinding{IP: ip("10.0.0.12"), Port: 8080}, testNow)
		tp.in.PoolMembers[1].AdminStateUp = false
		snap := tp.snapshot()
		old := run(t, snap, tables.View(0), ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", vipIP, 5000, 80))
		if addr4(old.Egress[0].Values.NwDst) != ip("10.0.0.12") {
			t.Fatalf("existing connection moved off the disabled member")
		}
		for sp := uint16(6000); sp < 6050; sp++ {
			r := run(t, snap, tables.View(0), ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", vipIP, sp, 80))
			if addr4(r.Egress[0].Values.NwDst) != ip(vmIP) {
				t.Fatalf("new connection sent to the disabled member")
			}
		}
	})
	t.Run("a pool without active members drops new connections", func(t *testing.T) {
		tp, ids := lbTopo(t, false, func(m *topology.PoolMember) { m.Status = "INACTIVE" })
		tp.in.PoolMembers[0].Weight = 0
		r := run(t, tp.snapshot(), nil, ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", vipIP, 5000, 80))
		wantDrop(t, r, ReasonLoadBalancer)
	})
}

// A client that re-uses a source port reaches the same backend through a
// second VIP of the balancer (the backend sees the same 5-tuple again, as
// after TIME_WAIT): the reply must come from the VIP of the newer
// connection, not from the one a stale reverse key of the older names.
func TestLoadBalancerReplyFollowsTheNewerVIP(t *testing.T) {
	const stickyVIP = "192.0.2.81"
	for _, tc := range []struct {
		name                string
		firstSticky, sticky bool
	}{
		{"plain then sticky", false, true},
		{"sticky then plain", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp, ids := lbTopo(t, false, func(m *topology.PoolMember) { m.Status = "INACTIVE" })
			v2 := tp.in.VIPs[0]
			v2.ID, v2.Address = id("vip2"), topology.Str(stickyVIP)
			tp.in.VIPs[0].SessionPersistence, v2.SessionPersistence = nil, nil
			if tc.firstSticky {
				tp.in.VIPs[0].SessionPersistence = topology.Str("SOURCE_IP")
			}
			if tc.sticky {
				v2.SessionPersistence = topology.Str("SOURCE_IP")
			}
			tp.in.VIPs = append(tp.in.VIPs, v2)
			snap := tp.snapshot()
			tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
			for _, vip := range []string{vipIP, stickyVIP} {
				fwd := run(t, snap, tables.View(0), ids["up"], tcp(gwMAC, upMAC, "8.8.8.8", vip, 5000, 80))
				if fwd.Kind != Forward || addr4(fwd.Egress[0].Values.NwDst) != ip(vmIP) {
					t.Fatalf("to %s: %v %v", vip, fwd.Kind, fwd.Reason)
				}
				commit(tables.Shard(0), fwd)
				reply := run(t, snap, tables.View(0), id("vm1"), tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 8080, 5000))
				if reply.Kind != Forward || reply.Egress[0].Values.NwSrc != ip(vip).As4() || reply.Egress[0].Values.TpSrc != 80 {
					t.Fatalf("reply of the connection to %s: %v %v, from %v:%d", vip, reply.Kind, reply.Reason,
						reply.Egress[0].Values.NwSrc, reply.Egress[0].Values.TpSrc)
				}
			}
		})
	}
}
