package agent

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/packet"
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
	c.update(func(tx *nsdb.Tx) error { return tx.Create(&r) })
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
	c.update(func(tx *nsdb.Tx) error {
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

// TestAsymmetricReturnThroughStatefulPortGroup sends a SNATed connection
// out of one uplink (on host2) and brings the reply in through another
// (on host3): both uplinks are in a stateful port group, so the NAT state
// the ingress host (host1) created reached host3 before the packet, and
// host3 translates the reply back to the VM.
func TestAsymmetricReturnThroughStatefulPortGroup(t *testing.T) {
	c := newCloud(t)
	h1, h2, h3 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h2", "10.9.0.2"), c.addAgent("h3", "10.9.0.3")
	vmMAC, rpMAC, up1MAC, up2MAC, gwMAC := mac(10), mac(11), mac(12), mac(13), mac(14)

	router, bridge := topology.NewID(), topology.NewID()
	nat := topology.NatTarget{AddressFrom: topology.Str("203.0.113.1"), AddressTo: topology.Str("203.0.113.1"), PortFrom: 1024, PortTo: 65535}
	snat := topology.Rule{Type: topology.RuleSNAT, FlowAction: topology.Str(topology.FlowAccept), NatTargets: []topology.NatTarget{nat}}
	snat.NwSrcAddress, snat.NwSrcLength = topology.Str("10.0.0.0"), 24
	revSNAT := topology.Rule{Type: topology.RuleRevSNAT, FlowAction: topology.Str(topology.FlowAccept)}
	revSNAT.NwDstAddress, revSNAT.NwDstLength = topology.Str("203.0.113.1"), 32
	pre, post := c.chain(revSNAT), c.chain(snat)
	c.update(func(tx *nsdb.Tx) error {
		if err := tx.Create(&topology.Router{ID: router, AdminStateUp: true, InboundFilterID: &pre, OutboundFilterID: &post}); err != nil {
			return err
		}
		return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true})
	})
	vm := c.bridgePort(bridge, h1, "vm")
	bp := c.bridgePort(bridge, nil, "")
	rp := c.routerPort(router, "10.0.0.1/24", rpMAC, nil, "")
	c.update(func(tx *nsdb.Tx) error {
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
	up1 := c.routerPort(router, "192.0.2.2/24", up1MAC, h2, "up1")
	up2 := c.routerPort(router, "198.51.100.2/24", up2MAC, h3, "up2")
	c.route(router, "10.0.0.0", 24, rp, "")
	c.route(router, "0.0.0.0", 0, up1, "192.0.2.1")
	c.update(func(tx *nsdb.Tx) error {
		return tx.Create(&topology.PortGroup{ID: topology.NewID(), Stateful: true, PortIDs: []topology.ID{up1, up2}})
	})
	ctx := context.Background()
	c.store.PutState(ctx, nsdb.RouterARPKey(router.String(), netip.MustParseAddr("192.0.2.1")), []byte(topology.FormatMAC(gwMAC)))
	c.store.PutState(ctx, nsdb.RouterARPKey(router.String(), netip.MustParseAddr("10.0.0.10")), []byte(topology.FormatMAC(vmMAC)))
	c.store.SeedMAC(ctx, bridge.String(), 0, vmMAC, vm.String())

	dpVM := h1.dpPort(t, "vm", vm)
	dpUp1 := h2.dpPort(t, "up1", up1)
	dpUp2 := h3.dpPort(t, "up2", up2)
	for _, a := range []*testAgent{h1, h2, h3} {
		a.waitActive(t, vm)
		a.waitActive(t, up1)
		a.waitActive(t, up2)
	}

	// Out: vm (host1) -> 8.8.8.8, SNATed, leaves through up1 on host2.
	h1.dp.Inject(dpVM, udpFrame(vmMAC, rpMAC, "10.0.0.10", "8.8.8.8", 5000, 53))
	f := readIPv4(t, h2, dpUp1)
	if f.Src != netip.MustParseAddr("203.0.113.1") || f.EthDst != gwMAC {
		t.Fatalf("out through up1: src %v eth dst %x, want 203.0.113.1 to the gateway", f.Src, f.EthDst)
	}
	// Back: the reply arrives on up2 (host3), which must know the NAT.
	h3.dp.Inject(dpUp2, udpFrame(gwMAC, up2MAC, "8.8.8.8", "203.0.113.1", 53, f.SrcPort))
	back := readIPv4(t, h1, dpVM)
	if back.Dst != netip.MustParseAddr("10.0.0.10") || back.DstPort != 5000 || back.EthDst != vmMAC {
		t.Fatalf("reply at the VM: dst %v:%d eth %x, want 10.0.0.10:5000", back.Dst, back.DstPort, back.EthDst)
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
