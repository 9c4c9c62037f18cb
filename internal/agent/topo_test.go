package agent

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// TestTopoCacheBuildsWhatChanged feeds a 20-tenant cloud to the topology
// cache, then one unrelated write at a time, and checks that each build
// compiles what the write changed (and what depends on it), never the
// whole snapshot, and that the snapshot built change by change is the one
// a whole compilation of the cache gives.
func TestTopoCacheBuildsWhatChanged(t *testing.T) {
	objs := tenantTopology(440)
	host := topology.NewID()
	c := newTopoCacheFrom(objs)
	c.flush()
	if _, err := c.b.Build(); err != nil {
		t.Fatal(err)
	}
	whole := c.b.Compiled()
	var vm, other topology.Port
	var rule topology.Rule
	var route topology.Route
	zone := topology.TunnelZone{ID: topology.NewID(), Name: topology.Str("z"),
		Members: []topology.TunnelZoneMember{{HostID: host, IPAddress: "192.0.2.7"}}}
	for _, o := range objs {
		switch o.Kind {
		case topology.KindPort:
			var p topology.Port
			json.Unmarshal(o.Value, &p)
			if p.InterfaceName != nil {
				if vm.HostID == nil {
					vm = p
				} else if p.DeviceID != vm.DeviceID {
					other = p
				}
			}
		case topology.KindRule:
			json.Unmarshal(o.Value, &rule)
		case topology.KindRoute:
			json.Unmarshal(o.Value, &route)
		}
	}
	put := func(o topology.Object) func() {
		return func() {
			v, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			c.applyObject(o.Kind(), o.ObjectID(), v)
		}
	}
	state := func(key, value string) func() {
		return func() {
			var v []byte
			if value != "" {
				v = []byte(value)
			}
			c.applyState(key, v)
		}
	}
	down := other
	down.AdminStateUp = false
	drop := rule
	drop.Type = topology.RuleDrop
	heavier := route
	heavier.Weight = 7
	mtu := topology.Interface{HostID: host, Name: "eth0", MTU: 9000, Addresses: []string{"192.0.2.7"}}
	mtuJSON, _ := json.Marshal(mtu)
	tests := []struct {
		name  string
		write func()
		most  int // objects the build may compile
	}{
		{"a port elsewhere goes down", put(down), 2},
		{"a port goes active on its host", state(nsdb.PortActiveKey(other.ID.String()), other.HostID.String()), 2},
		{"a MAC is learned", state(nsdb.BridgeMACKey(vm.DeviceID.String(), 0, [6]byte{2, 0, 0, 0, 0, 9}), vm.ID.String()), 1},
		{"an ARP entry is learned", state(nsdb.RouterARPKey(route.RouterID.String(), netip.MustParseAddr("169.254.0.1")), "02:00:00:00:00:01"), 1},
		{"a rule changes", put(drop), 1},
		{"a route changes", put(heavier), 1},
		{"a DHCP subnet is created", put(topology.DHCPSubnet{BridgeID: vm.DeviceID, SubnetPrefix: topology.Str("10.0.0.0"),
			SubnetLength: 24, ServerAddr: topology.Str("10.0.0.2"), Enabled: true}), 1},
		{"a tunnel zone is created", put(zone), 0},
		{"a host publishes its interface", state(nsdb.HostInterfaceKey(host.String(), "eth0"), string(mtuJSON)), 1},
		{"a port moves to this host", put(func() topology.Port { p := other; p.HostID = &topology.ID{}; return p }()), 2},
	}
	for _, tt := range tests {
		tt.write()
		c.flush()
		snap, err := c.b.Build()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if n := c.b.Compiled(); n > tt.most {
			t.Errorf("%s: the build compiled %d objects, want at most %d (the whole snapshot is %d)", tt.name, n, tt.most, whole)
		}
		ref, err := sim.NewSnapshot(c.input())
		if err != nil {
			t.Fatal(err)
		}
		sameSnapshots(t, tt.name, c, snap, ref, vm.ID)
	}
	if len(c.local) != 1 {
		t.Errorf("%d ports bound to this host, want 1 (the one moved here)", len(c.local))
	}
	if whole < 400 {
		t.Errorf("the first build compiled %d objects: the cloud is smaller than meant", whole)
	}
}

// sameSnapshots checks that snapshots a and b agree on every port of the
// cache, the underlay MTU, and packets from port from to the router and to
// its subnet's other addresses.
func sameSnapshots(t *testing.T, name string, c *topoCache, a, b *sim.Snapshot, from topology.ID) {
	t.Helper()
	for _, p := range c.ports {
		pa, oka := a.Port(p.ID)
		pb, okb := b.Port(p.ID)
		if oka != okb || pa != pb {
			t.Fatalf("%s: port %s: built %+v (%v), compiled whole %+v (%v)", name, p.ID, pa, oka, pb, okb)
		}
	}
	if a.UnderlayMTU() != b.UnderlayMTU() {
		t.Fatalf("%s: underlay MTU %d built, %d compiled whole", name, a.UnderlayMTU(), b.UnderlayMTU())
	}
	tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
	now := time.Unix(1_800_000_000, 0)
	for i, dst := range []string{"10.0.0.1", "10.0.0.9", "8.8.8.8", "169.254.0.1"} {
		for _, proto := range []uint8{packet.IPProtoICMP, packet.IPProtoTCP, packet.IPProtoUDP} {
			k := packet.FlowKey{EthSrc: [6]byte{2, 0, 0, 0, 0, 9}, EthDst: [6]byte{0xac, 0xca, 0xba, 0, 0, 1},
				EthType: packet.EtherTypeIPv4, NwSrc: [4]byte{10, 0, 0, 9}, NwDst: netip.MustParseAddr(dst).As4(),
				NwProto: proto, NwTTL: 64, TpSrc: 40000, TpDst: 22}
			ra := sim.NewSimulator(uint64(i)).Simulate(a, tables.View(0), &sim.Packet{Port: from, Match: sim.MatchFromFlowKey(&k)}, now)
			rb := sim.NewSimulator(uint64(i)).Simulate(b, tables.View(0), &sim.Packet{Port: from, Match: sim.MatchFromFlowKey(&k)}, now)
			if ra.Kind != rb.Kind || ra.Reason != rb.Reason || len(ra.Egress) != len(rb.Egress) {
				t.Fatalf("%s: to %s proto %d: built %v/%v %d egress, compiled whole %v/%v %d egress", name, dst, proto,
					ra.Kind, ra.Reason, len(ra.Egress), rb.Kind, rb.Reason, len(rb.Egress))
			}
		}
	}
}
