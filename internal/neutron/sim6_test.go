package neutron

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

type noFlowState struct{}

func (noFlowState) HasConn(flowstate.ConnKey) bool { return false }
func (noFlowState) NAT(flowstate.NATKey) (flowstate.NATBinding, bool) {
	return flowstate.NATBinding{}, false
}

// snapshot compiles what the translation stored into the simulation's
// snapshot, as an agent does.
func (r *rig) snapshot() *sim.Snapshot {
	r.t.Helper()
	var in sim.SnapshotInput
	err := r.store.View(context.Background(), func(tx *nsdb.Tx) (err error) {
		if in.Bridges, err = topology.ListOf[topology.Bridge](tx); err != nil {
			return err
		}
		if in.Ports, err = topology.ListOf[topology.Port](tx); err != nil {
			return err
		}
		if in.Chains, err = topology.ListOf[topology.Chain](tx); err != nil {
			return err
		}
		if in.Rules, err = topology.ListOf[topology.Rule](tx); err != nil {
			return err
		}
		if in.IPAddrGroups, err = topology.ListOf[topology.IPAddrGroup](tx); err != nil {
			return err
		}
		in.DHCPSubnetsV6, err = topology.ListOf[topology.DHCPSubnetV6](tx)
		return err
	})
	if err != nil {
		r.t.Fatal(err)
	}
	snap, err := sim.NewSnapshot(in)
	if err != nil {
		r.t.Fatal(err)
	}
	return snap
}

// TestIPv6AntiSpoofingSimulated runs IPv6 packets from a dual-stack VM's
// port through the simulation of what the translation made: IPv6 from the
// port's MAC (neighbour discovery from its link-local address, traffic
// from its address) passes anti-spoofing and the default group's IPv6
// egress rule; the same from another MAC is dropped.
func TestIPv6AntiSpoofingSimulated(t *testing.T) {
	r := newRig(t)
	f := r.network("10.0.0.0/24", "10.0.0.1")
	sub := r.subnet6(f.net, "2001:db8:1::/64")
	sg := r.securityGroup("default")
	mac := "fa:16:3e:66:00:05"
	port := topology.NewID()
	r.create("ports", body("id", port, "tenant_id", tenant, "network_id", f.net, "admin_state_up", true,
		"mac_address", mac, "security_groups", []ID{sg}, "device_owner", "compute:nova", "binding:host_id", "h1",
		"fixed_ips", []any{map[string]any{"subnet_id": sub, "ip_address": "2001:db8:1::5"}}))
	// A second VM, without port security, that the packets are for.
	peerMAC := "fa:16:3e:66:00:06"
	peerPort := r.vif(f, "10.0.0.6", peerMAC, []ID{}, "port_security_enabled", false, "binding:host_id", "h2")
	snap := r.snapshot()

	own, _ := topology.ParseMAC(mac)
	other, _ := topology.ParseMAC("fa:16:3e:66:00:99")
	peer, _ := topology.ParseMAC(peerMAC)
	for _, c := range []struct {
		name     string
		src      [6]byte
		ip6      string
		icmpType uint16
		dropped  bool
	}{
		{"neighbour solicitation from the link-local address", own, "fe80::f816:3eff:fe66:5", 135, false},
		{"echo from the port's address", own, "2001:db8:1::5", 128, false},
		{"echo from another MAC", other, "2001:db8:1::5", 128, true},
	} {
		var k packet.FlowKey
		k.EthSrc, k.EthDst, k.EthType = c.src, peer, packet.EtherTypeIPv6
		k.IPv6Src, k.IPv6Dst = netip.MustParseAddr(c.ip6).As16(), netip.MustParseAddr("fe80::f816:3eff:fe66:6").As16()
		k.NwProto, k.NwTTL, k.TpSrc = packet.IPProtoICMPv6, 255, c.icmpType
		res := sim.NewSimulator(1).Simulate(snap, noFlowState{}, &sim.Packet{Port: port, Match: sim.Match{FlowKey: k}}, time.Now())
		if c.dropped && res.Kind != sim.Drop || !c.dropped && (res.Kind != sim.Forward || len(res.Egress) != 1) {
			t.Errorf("%s: result %v (reason %v, %d egress), want dropped %v", c.name, res.Kind, res.Reason, len(res.Egress), c.dropped)
		}
	}
	// As the README says, IPv6 to a secured port passes only an IPv6 rule
	// without protocol, ports or remote group: the default group's
	// ingress rule (from its members) matches no IPv6 packet.
	var k packet.FlowKey
	k.EthSrc, k.EthDst, k.EthType = peer, own, packet.EtherTypeIPv6
	k.IPv6Src, k.IPv6Dst = netip.MustParseAddr("fe80::f816:3eff:fe66:6").As16(), netip.MustParseAddr("2001:db8:1::5").As16()
	k.NwProto, k.NwTTL, k.TpSrc = packet.IPProtoICMPv6, 64, 128
	if res := sim.NewSimulator(1).Simulate(snap, noFlowState{}, &sim.Packet{Port: peerPort, Match: sim.Match{FlowKey: k}}, time.Now()); res.Kind != sim.Drop {
		t.Errorf("IPv6 echo to the secured port: result %v, want dropped by its groups' chain", res.Kind)
	}
}
