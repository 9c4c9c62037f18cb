package agent

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/packet/checker"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// routerPort creates a router port with an address, bound to iface on a's
// host when a is not nil.
func (c *cloud) routerPort(router topology.ID, cidr string, portMAC [6]byte, a *testAgent, iface string) topology.ID {
	c.t.Helper()
	return c.createPort(topology.Port{Type: topology.PortTypeRouter, DeviceID: router,
		PortSubnet: []string{cidr}, PortMAC: topology.Str(topology.FormatMAC(portMAC))}, a, iface)
}

func (c *cloud) route(router topology.ID, dst string, length int, port topology.ID, gw string) {
	c.t.Helper()
	r := topology.Route{ID: topology.NewID(), Type: topology.RouteNormal, SrcNetworkAddr: topology.Str("0.0.0.0"),
		DstNetworkAddr: topology.Str(dst), DstNetworkLength: length, NextHopPort: topology.IDPtr(port), RouterID: router}
	if gw != "" {
		r.NextHopGateway = topology.Str(gw)
	}
	c.update(func(tx topology.Store) error { return tx.Create(&r) })
}

func (c *cloud) chain(rules ...topology.Rule) topology.ID {
	c.t.Helper()
	id := topology.NewID()
	ch := topology.Chain{ID: id}
	for i := range rules {
		rules[i].ID, rules[i].ChainID = topology.NewID(), id
		if err := rules[i].Validate(); err != nil {
			c.t.Fatal(err)
		}
		ch.RuleIDs = append(ch.RuleIDs, rules[i].ID)
	}
	c.update(func(tx topology.Store) error {
		if err := tx.Create(&ch); err != nil {
			return err
		}
		for i := range rules {
			if err := tx.Create(&rules[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return id
}

// snatNet is a tenant network, 10.0.0.0/24 with a VM at 10.0.0.10, behind
// a router that SNATs it to 203.0.113.1 out of an uplink (192.0.2.2/24,
// default route via the gateway 192.0.2.1).
type snatNet struct {
	router, bridge, vm, up     topology.ID
	vmMAC, rpMAC, upMAC, gwMAC [6]byte
}

// snatNet builds the network with the VM bound on vmHost and the uplink on
// upHost (interfaces "vm" and "up1"), the gateway's and VM's MACs known.
func (c *cloud) snatNet(vmHost, upHost *testAgent) *snatNet {
	c.t.Helper()
	return c.snatNetPorts(vmHost, upHost, 1024, 65535)
}

// snatOnOneHost is snatNet with the VM and the uplink both on a, active
// and in a's snapshot; it returns their datapath ports too.
func (c *cloud) snatOnOneHost(t *testing.T, a *testAgent) (n *snatNet, dpVM, dpUp datapath.PortNo) {
	t.Helper()
	n = c.snatNet(a, a)
	dpVM, dpUp = a.dpPort(t, "vm", n.vm), a.dpPort(t, "up1", n.up)
	a.waitActive(t, n.vm)
	a.waitActive(t, n.up)
	c.settle() // the router's ARP entries are in the snapshot
	return n, dpVM, dpUp
}

// snatNetPorts is snatNet with the SNAT's port range [from, to].
func (c *cloud) snatNetPorts(vmHost, upHost *testAgent, from, to int) *snatNet {
	c.t.Helper()
	n := &snatNet{router: topology.NewID(), bridge: topology.NewID(), vmMAC: mac(10), rpMAC: mac(11), upMAC: mac(12), gwMAC: mac(14)}
	nat := topology.NatTarget{AddressFrom: topology.Str("203.0.113.1"), AddressTo: topology.Str("203.0.113.1"), PortFrom: from, PortTo: to}
	snat := topology.Rule{Type: topology.RuleSNAT, FlowAction: topology.Str(topology.FlowAccept), NatTargets: []topology.NatTarget{nat}}
	snat.NwSrcAddress, snat.NwSrcLength = topology.Str("10.0.0.0"), 24
	revSNAT := topology.Rule{Type: topology.RuleRevSNAT, FlowAction: topology.Str(topology.FlowAccept)}
	revSNAT.NwDstAddress, revSNAT.NwDstLength = topology.Str("203.0.113.1"), 32
	pre, post := c.chain(revSNAT), c.chain(snat)
	c.update(func(tx topology.Store) error {
		if err := tx.Create(&topology.Router{ID: n.router, AdminStateUp: true, InboundFilterID: &pre, OutboundFilterID: &post}); err != nil {
			return err
		}
		return tx.Create(&topology.Bridge{ID: n.bridge, AdminStateUp: true})
	})
	n.vm = c.bridgePort(n.bridge, vmHost, "vm")
	bp := c.bridgePort(n.bridge, nil, "")
	rp := c.routerPort(n.router, "10.0.0.1/24", n.rpMAC, nil, "")
	c.update(func(tx topology.Store) error {
		var a, b topology.Port
		if err := tx.Get(topology.KindPort, bp.String(), &a); err != nil {
			return err
		}
		if err := tx.Get(topology.KindPort, rp.String(), &b); err != nil {
			return err
		}
		a.PeerID, b.PeerID = &rp, &bp
		if err := tx.Put(&a); err != nil {
			return err
		}
		return tx.Put(&b)
	})
	n.up = c.routerPort(n.router, "192.0.2.2/24", n.upMAC, upHost, "up1")
	c.route(n.router, "10.0.0.0", 24, rp, "")
	c.route(n.router, "0.0.0.0", 0, n.up, "192.0.2.1")
	ctx := context.Background()
	c.store.PutState(ctx, nsdb.RouterARPKey(n.router.String(), netip.MustParseAddr("192.0.2.1")), []byte(topology.FormatMAC(n.gwMAC)))
	c.store.PutState(ctx, nsdb.RouterARPKey(n.router.String(), netip.MustParseAddr("10.0.0.10")), []byte(topology.FormatMAC(n.vmMAC)))
	c.seedMAC(ctx, n.bridge.String(), 0, n.vmMAC, n.vm.String())
	return n
}

// TestAsymmetricReturnThroughStatefulPortGroup sends a SNATed connection
// out of one uplink (on host2) and brings the reply in through another
// (on host3): both uplinks are in a stateful port group, so the NAT state
// the ingress host (host1) created reached host3 before the packet, and
// host3 translates the reply back to the VM.
func TestAsymmetricReturnThroughStatefulPortGroup(t *testing.T) {
	c := newCloud(t)
	h1, h2, h3 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2"), c.addAgent("h3", "10.9.0.3")
	n := c.snatNet(h1, h2)
	up2MAC := mac(13)
	up2 := c.routerPort(n.router, "198.51.100.2/24", up2MAC, h3, "up2")
	c.update(func(tx topology.Store) error {
		return tx.Create(&topology.PortGroup{ID: topology.NewID(), Stateful: true, PortIDs: []topology.ID{n.up, up2}})
	})

	dpVM := h1.dpPort(t, "vm", n.vm)
	dpUp1 := h2.dpPort(t, "up1", n.up)
	dpUp2 := h3.dpPort(t, "up2", up2)
	for _, a := range []*testAgent{h1, h2, h3} {
		a.waitActive(t, n.vm)
		a.waitActive(t, n.up)
		a.waitActive(t, up2)
	}
	c.settle() // the router's ARP entries are in every snapshot

	// Out: vm (host1) -> 8.8.8.8, SNATed, leaves through up1 on host2.
	h1.dp.Inject(dpVM, udpFrame(n.vmMAC, n.rpMAC, "10.0.0.10", "8.8.8.8", 5000, 53))
	f := readIPv4(t, h2, dpUp1)
	if f.Src != netip.MustParseAddr("203.0.113.1") || f.EthDst != n.gwMAC {
		t.Fatalf("out through up1: src %v eth dst %x, want 203.0.113.1 to the gateway", f.Src, f.EthDst)
	}
	// Back: the reply arrives on up2 (host3), which must know the NAT. A
	// real reply crosses the outside network first; here it could overtake
	// the state on its way from host1 to host3, which is sent before the
	// packet to host2 but on another path.
	if !poll.Until(func() bool { return counterValue(h3.metrics.stateReceived) > 0 }, 3*time.Second) {
		t.Fatal("host3, a member of the stateful port group, received no flow state")
	}
	h3.dp.Inject(dpUp2, udpFrame(n.gwMAC, up2MAC, "8.8.8.8", "203.0.113.1", 53, f.SrcPort))
	back := readIPv4(t, h1, dpVM)
	if back.Dst != netip.MustParseAddr("10.0.0.10") || back.DstPort != 5000 || back.EthDst != n.vmMAC {
		t.Fatalf("reply at the VM: dst %v:%d eth %x, want 10.0.0.10:5000", back.Dst, back.DstPort, back.EthDst)
	}
}

// TestPingThroughSNATInstallsFlows checks that on a datapath whose flows
// match the ICMP echo identifier, pings through SNAT are simulated once per
// direction and identifier: later echoes and replies ride installed flows,
// and another identifier is simulated on its own.
func TestPingThroughSNATInstallsFlows(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgent("h1", "10.9.0.1")
	n, dpVM, dpUp := c.snatOnOneHost(t, h1)

	// cross injects spec on port in and checks the frame that leaves by out.
	cross := func(spec sim.PacketSpec, in, out datapath.PortNo, checks ...checker.Check) {
		t.Helper()
		fr, err := spec.Frame()
		if err != nil {
			t.Fatal(err)
		}
		h1.dp.Inject(in, fr)
		got := readIPv4(t, h1, out)
		for _, check := range checks {
			check(t, got)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	vmIP, extIP, natIP := netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("203.0.113.1")
	echo := func(id, seq uint16) {
		t.Helper()
		cross(sim.PacketSpec{EthSrc: n.vmMAC, EthDst: n.rpMAC, Src: vmIP, Dst: extIP, Proto: packet.IPProtoICMP,
			SrcPort: uint16(packet.ICMPEchoRequest), ICMPID: id, Payload: []byte{byte(seq >> 8), byte(seq)}},
			dpVM, dpUp, checker.SrcAddr(natIP), checker.EthDst(n.gwMAC), checker.ICMP(packet.ICMPEchoRequest, 0, checker.EchoIdent(id)))
		cross(sim.PacketSpec{EthSrc: n.gwMAC, EthDst: n.upMAC, Src: extIP, Dst: natIP, Proto: packet.IPProtoICMP,
			SrcPort: uint16(packet.ICMPEchoReply), ICMPID: id},
			dpUp, dpVM, checker.DstAddr(vmIP), checker.EthDst(n.vmMAC), checker.ICMP(packet.ICMPEchoReply, 0, checker.EchoIdent(id)))
	}
	echo(7, 1)
	// A flow goes in after its packet has left: wait for the echo's two.
	if !poll.Until(func() bool { return h1.Flows() >= 2 }, 5*time.Second) {
		t.Fatalf("%d flows after the first echo and reply, want 2", h1.Flows())
	}
	misses := h1.dp.Stats().Misses
	for seq := uint16(2); seq <= 5; seq++ {
		echo(7, seq)
	}
	if m := h1.dp.Stats().Misses; m != misses {
		t.Fatalf("later echoes of the same ping: %d misses, want none (their flows installed)", m-misses)
	}
	echo(8, 1)
	if m := h1.dp.Stats().Misses; m != misses+2 {
		t.Fatalf("another ping: %d misses, want 2 (one per direction: the flows match the identifier)", m-misses)
	}
}

// readIPv4 waits for an IPv4 frame on a port and decodes it.
func readIPv4(t *testing.T, a *testAgent, port datapath.PortNo) *packet.Parsed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for {
		fr, err := a.dp.Read(ctx, port)
		if err != nil {
			t.Fatalf("no IPv4 frame on port %d: %v", port, err)
		}
		var p packet.Parsed
		p.Decode(fr.Data)
		if p.EthType == packet.EtherTypeIPv4 {
			return &p
		}
	}
}

// TestMigratedPortPullsStateFromARestartingHost moves a port off a host
// whose agent is down, and brings that agent back a moment later: the new
// host keeps asking until the old one, restored from its saved state,
// answers with the port's connections.
func TestMigratedPortPullsStateFromARestartingHost(t *testing.T) {
	c := newCloud(t)
	h1, h2 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2")
	bridge := statefulBridge(c)
	p1, p2 := c.bridgePort(bridge, h2, "vm1"), c.bridgePort(bridge, h2, "vm2")
	dp1, dp2 := h2.dpPort(t, "vm1", p1), h2.dpPort(t, "vm2", p2)
	h2.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.0.0.1", "10.0.0.2", 1000, 2000))
	expectFrame(t, h2, dp2, mac(2))
	if !poll.Until(func() bool { return h2.state.Shard(0).Conntrack.Len()+h2.state.Shard(1).Conntrack.Len() > 0 }, 3*time.Second) {
		t.Fatal("h2 holds no conntrack key for the connection")
	}

	// h2's agent goes down (saving its state); vm1's port moves to h1,
	// which asks h2 for the state while nothing answers.
	h2.stop()
	c.update(func(tx topology.Store) error {
		var p topology.Port
		if err := tx.Get(topology.KindPort, p1.String(), &p); err != nil {
			return err
		}
		p.HostID = topology.IDPtr(h1.HostID())
		return tx.Put(&p)
	})
	h1.dpPort(t, "vm1", p1)
	// What h2 records when it unbinds a port itself, which may come after
	// the new host bound the port: h1 waits for it.
	if err := c.store.PutState(context.Background(), lastHostKey(p1), []byte(h2.HostID().String())); err != nil {
		t.Fatal(err)
	}
	// A request sent now is lost: nothing listens at h2.
	if !poll.Until(func() bool { return counterValue(h1.metrics.statePulls) > 0 }, pullTimeout) {
		t.Fatal("h1 never asked h2 for the migrated port's flow state")
	}
	imported := h1.state.Shard(h1.state.Len() - 1)
	if n := imported.Conntrack.Len(); n != 0 {
		t.Fatalf("h1 imported %d conntrack keys with h2 down", n)
	}

	c.restart(h2)
	if !poll.Until(func() bool { return imported.Conntrack.Len() > 0 }, pullTimeout) {
		t.Fatal("h1 never got the migrated port's flow state from h2 once h2's agent was back")
	}
}
