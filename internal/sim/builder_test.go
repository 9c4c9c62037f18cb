package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/topology"
)

// model is a topology as a set of objects and state entries that a test
// changes at random, feeding each change to a Builder too.
type model struct {
	objs      map[ID]topology.Object
	removed   []topology.Object
	macs      map[macKey]MACEntry
	arps      map[ID]ARPEntry // by a synthetic key: one entry per (router, ip)
	ipmacs    map[ID]IPMACEntry
	bindings  map[ID]PortBinding
	bridgeARP bool
	dhcp4     map[ID][]topology.DHCPSubnet // by bridge
	dhcp6     map[ID][]topology.DHCPSubnetV6
	underlay  int
}

func newModel(in *SnapshotInput) *model {
	m := &model{objs: map[ID]topology.Object{}, macs: map[macKey]MACEntry{}, arps: map[ID]ARPEntry{},
		ipmacs: map[ID]IPMACEntry{}, bindings: map[ID]PortBinding{}, bridgeARP: in.BridgeARP,
		dhcp4: map[ID][]topology.DHCPSubnet{}, dhcp6: map[ID][]topology.DHCPSubnetV6{}, underlay: in.UnderlayMTU}
	add := func(o topology.Object, i ID) { m.objs[i] = o }
	for _, x := range in.Bridges {
		add(x, x.ID)
	}
	for _, x := range in.Routers {
		add(x, x.ID)
	}
	for _, x := range in.Ports {
		add(x, x.ID)
	}
	for _, x := range in.Routes {
		add(x, x.ID)
	}
	for _, x := range in.Chains {
		add(x, x.ID)
	}
	for _, x := range in.Rules {
		add(x, x.ID)
	}
	for _, x := range in.PortGroups {
		add(x, x.ID)
	}
	for _, x := range in.IPAddrGroups {
		add(x, x.ID)
	}
	for _, x := range in.Mirrors {
		add(x, x.ID)
	}
	for _, x := range in.LoadBalancers {
		add(x, x.ID)
	}
	for _, x := range in.Pools {
		add(x, x.ID)
	}
	for _, x := range in.PoolMembers {
		add(x, x.ID)
	}
	for _, x := range in.VIPs {
		add(x, x.ID)
	}
	for _, x := range in.L2Insertions {
		add(x, x.ID)
	}
	for _, x := range in.TraceRequests {
		add(x, x.ID)
	}
	for _, x := range in.DSCPRules {
		add(x, x.ID)
	}
	for _, x := range in.BGPPeers {
		add(x, x.ID)
	}
	for _, d := range in.DHCPSubnets {
		m.dhcp4[d.BridgeID] = append(m.dhcp4[d.BridgeID], d)
	}
	for _, d := range in.DHCPSubnetsV6 {
		m.dhcp6[d.BridgeID] = append(m.dhcp6[d.BridgeID], d)
	}
	for _, e := range in.MACTable {
		m.macs[macKey{e.VLAN, e.MAC}] = e // the random worlds use distinct MACs
	}
	for _, e := range in.ARPTable {
		m.arps[id(e.Router.String()+e.IP.String())] = e
	}
	for _, e := range in.IPMACTable {
		m.ipmacs[id(e.Bridge.String()+e.IP.String())] = e
	}
	for _, e := range in.PortBinding {
		m.bindings[e.Port] = e
	}
	return m
}

// input returns the model as a SnapshotInput, objects in id order.
func (m *model) input() SnapshotInput {
	in := SnapshotInput{BridgeARP: m.bridgeARP, UnderlayMTU: m.underlay}
	ids := slices.SortedFunc(func(yield func(ID) bool) {
		for k := range m.objs {
			if !yield(k) {
				return
			}
		}
	}, func(a, b ID) int { return slices.Compare(a[:], b[:]) })
	for _, k := range ids {
		switch x := m.objs[k].(type) {
		case topology.Bridge:
			in.Bridges = append(in.Bridges, x)
		case topology.Router:
			in.Routers = append(in.Routers, x)
		case topology.Port:
			in.Ports = append(in.Ports, x)
		case topology.Route:
			in.Routes = append(in.Routes, x)
		case topology.Chain:
			in.Chains = append(in.Chains, x)
		case topology.Rule:
			in.Rules = append(in.Rules, x)
		case topology.PortGroup:
			in.PortGroups = append(in.PortGroups, x)
		case topology.IPAddrGroup:
			in.IPAddrGroups = append(in.IPAddrGroups, x)
		case topology.Mirror:
			in.Mirrors = append(in.Mirrors, x)
		case topology.LoadBalancer:
			in.LoadBalancers = append(in.LoadBalancers, x)
		case topology.Pool:
			in.Pools = append(in.Pools, x)
		case topology.PoolMember:
			in.PoolMembers = append(in.PoolMembers, x)
		case topology.VIP:
			in.VIPs = append(in.VIPs, x)
		case topology.L2Insertion:
			in.L2Insertions = append(in.L2Insertions, x)
		case topology.TraceRequest:
			in.TraceRequests = append(in.TraceRequests, x)
		case topology.QOSDSCPRule:
			in.DSCPRules = append(in.DSCPRules, x)
		case topology.BGPPeer:
			in.BGPPeers = append(in.BGPPeers, x)
		}
	}
	for _, l := range m.dhcp4 {
		in.DHCPSubnets = append(in.DHCPSubnets, l...)
	}
	for _, l := range m.dhcp6 {
		in.DHCPSubnetsV6 = append(in.DHCPSubnetsV6, l...)
	}
	for _, e := range m.macs {
		in.MACTable = append(in.MACTable, e)
	}
	for _, e := range m.arps {
		in.ARPTable = append(in.ARPTable, e)
	}
	for _, e := range m.ipmacs {
		in.IPMACTable = append(in.IPMACTable, e)
	}
	for _, e := range m.bindings {
		in.PortBinding = append(in.PortBinding, e)
	}
	return in
}

func objID(o topology.Object) ID {
	i, err := topology.ParseID(o.ObjectID())
	if err != nil {
		panic(err)
	}
	return i
}

// mutate makes one random change to the model and the builder, and says
// what it did.
func (m *model) mutate(r *rand.Rand, w *randomWorld, b *Builder) string {
	keys := slices.SortedFunc(func(yield func(ID) bool) {
		for k := range m.objs {
			if !yield(k) {
				return
			}
		}
	}, func(a, b ID) int { return slices.Compare(a[:], b[:]) })
	pick := func() topology.Object { return m.objs[keys[r.IntN(len(keys))]] }
	put := func(o topology.Object) {
		m.objs[objID(o)] = o
		b.Put(o)
	}
	switch n := r.IntN(14); {
	case n < 2 && len(keys) > 0: // delete an object
		o := pick()
		delete(m.objs, objID(o))
		m.removed = append(m.removed, o)
		b.Delete(o.Kind(), objID(o))
		return "delete " + o.Kind() + " " + o.ObjectID()
	case n < 4 && len(m.removed) > 0: // bring one back
		i := r.IntN(len(m.removed))
		o := m.removed[i]
		m.removed = slices.Delete(m.removed, i, i+1)
		put(o)
		return "restore " + o.Kind() + " " + o.ObjectID()
	case n < 7 && len(keys) > 0: // change an object
		o := pick()
		switch x := o.(type) {
		case topology.Port:
			switch r.IntN(5) {
			case 4:
				if x.QOSPolicyID == nil {
					x.QOSPolicyID = topology.IDPtr(id("policy-b"))
				} else {
					x.QOSPolicyID = nil
				}
			case 0:
				x.AdminStateUp = !x.AdminStateUp
			case 1:
				x.InboundFilterID = nil
			case 2:
				if x.InterfaceName != nil {
					x.HostID, x.InterfaceName = nil, nil
				} else {
					x.HostID, x.InterfaceName = topology.IDPtr(testHost), topology.Str(x.ID.String()[:8])
				}
			case 3:
				x.PeerID = nil
			}
			put(x)
		case topology.Bridge:
			x.AdminStateUp = !x.AdminStateUp
			put(x)
		case topology.Router:
			switch r.IntN(3) {
			case 0:
				x.AdminStateUp = !x.AdminStateUp
			case 1:
				x.InboundFilterID = nil
			default:
				x.ASNumber = 65000 - x.ASNumber // BGP on and off
			}
			put(x)
		case topology.L2Insertion:
			switch r.IntN(3) {
			case 0:
				x.FailOpen = !x.FailOpen
			case 1:
				x.VLAN = 10 - x.VLAN
			default:
				x.Position = r.IntN(3)
			}
			put(x)
		case topology.TraceRequest:
			x.Enabled = !x.Enabled
			put(x)
		case topology.QOSDSCPRule:
			x.DSCPMark = []int{10, 26, 46}[r.IntN(3)]
			put(x)
		case topology.BGPPeer:
			x.Address = topology.Str([]string{"192.0.2.254", "192.0.2.77"}[r.IntN(2)])
			put(x)
		case topology.IPAddrGroup:
			if len(x.IPAddrPorts) > 0 {
				x.IPAddrPorts = x.IPAddrPorts[1:]
			} else {
				x.IPAddrPorts = []topology.IPAddrPort{{IPAddress: w.ip().String()}, {IPAddress: w.ip().String()}}
			}
			put(x)
		case topology.Route:
			x.Weight = r.IntN(3)
			put(x)
		case topology.Rule:
			x.Type = []string{topology.RuleAccept, topology.RuleDrop, topology.RuleReturn}[r.IntN(3)]
			x.JumpChainID = nil
			put(x)
		case topology.Chain:
			if len(x.RuleIDs) > 0 {
				x.RuleIDs = x.RuleIDs[1:]
			}
			put(x)
		case topology.PoolMember:
			x.Weight = r.IntN(3)
			put(x)
		default:
			put(x)
		}
		return "change " + o.Kind() + " " + o.ObjectID()
	case n < 9: // a MAC entry learned or forgotten
		if len(w.in.Bridges) == 0 || len(w.ports) == 0 {
			return "nothing"
		}
		e := MACEntry{Bridge: w.in.Bridges[r.IntN(len(w.in.Bridges))].ID, MAC: w.mac(), Port: w.ports[r.IntN(len(w.ports))]}
		k := macKey{e.VLAN, e.MAC}
		if old, ok := m.macs[k]; ok && r.IntN(2) == 0 {
			delete(m.macs, k)
			b.DeleteMAC(old.Bridge, old.VLAN, old.MAC)
			return "forget MAC"
		}
		if old, ok := m.macs[k]; ok && old.Bridge != e.Bridge {
			b.DeleteMAC(old.Bridge, old.VLAN, old.MAC)
		}
		m.macs[k] = e
		b.SetMAC(e)
		return "learn MAC"
	case n < 10: // an ARP entry, fresh or stale
		e := ARPEntry{Router: w.in.Routers[0].ID, IP: w.ip(), MAC: w.mac()}
		if r.IntN(3) == 0 {
			e.Stale = testNow.Add(-time.Second)
		}
		k := id(e.Router.String() + e.IP.String())
		if _, ok := m.arps[k]; ok && r.IntN(2) == 0 {
			delete(m.arps, k)
			b.DeleteARP(e.Router, e.IP)
			return "forget ARP"
		}
		m.arps[k] = e
		b.SetARP(e)
		return "learn ARP"
	case n < 11: // a bridge's ARP suppression entry
		e := IPMACEntry{Bridge: w.in.Bridges[r.IntN(len(w.in.Bridges))].ID, IP: w.ip(), MAC: w.mac()}
		k := id(e.Bridge.String() + e.IP.String())
		if _, ok := m.ipmacs[k]; ok && r.IntN(2) == 0 {
			delete(m.ipmacs, k)
			b.DeleteIPMAC(e.Bridge, e.IP)
			return "forget IP-MAC"
		}
		m.ipmacs[k] = e
		b.SetIPMAC(e)
		return "learn IP-MAC"
	case n == 12: // a bridge's DHCP subnets change
		br := w.in.Bridges[r.IntN(len(w.in.Bridges))].ID
		if _, ok := m.dhcp4[br]; ok && r.IntN(2) == 0 {
			delete(m.dhcp4, br)
			delete(m.dhcp6, br)
			b.SetDHCP(br, nil, nil)
			return "drop DHCP"
		}
		m.dhcp4[br], m.dhcp6[br] = dhcpSubnets(w, br)
		b.SetDHCP(br, m.dhcp4[br], m.dhcp6[br])
		return "set DHCP"
	case n == 13: // the underlay's MTU changes
		m.underlay = []int{0, 1500, 9000}[r.IntN(3)]
		b.SetUnderlayMTU(m.underlay)
		return "underlay MTU"
	default: // a port goes active or inactive
		p := w.ports[r.IntN(len(w.ports))]
		if _, ok := m.bindings[p]; ok {
			delete(m.bindings, p)
			b.DeleteBinding(p)
			return "deactivate port"
		}
		e := PortBinding{Port: p, Host: testHost, TunnelKey: uint32(r.IntN(100))}
		m.bindings[p] = e
		b.SetBinding(e)
		return "activate port"
	}
}

// extendWorld adds to a random world the objects a cloud has few of: L2
// insertions with their service ports, DHCP subnets, trace requests, QoS
// DSCP marks, a BGP peer, an IP address group rules and traces match on,
// stale ARP entries and the underlay's MTU.
func extendWorld(w *randomWorld) {
	r, in := w.r, &w.in
	b0 := in.Bridges[0].ID
	rtr := in.Routers[0].ID
	var vms []ID // VM ports of b0
	for _, p := range in.Ports {
		if p.DeviceID == b0 && p.InterfaceName != nil {
			vms = append(vms, p.ID)
		}
	}
	// Two service ports; one or two insertions protect b0's first VM.
	for i := range 2 {
		name := fmt.Sprint("svc", i)
		in.Ports = append(in.Ports, topology.Port{ID: id(name), Type: topology.PortTypeBridge, DeviceID: b0,
			AdminStateUp: r.IntN(4) != 0, HostID: topology.IDPtr(testHost), InterfaceName: topology.Str(name), Active: true})
		w.ports = append(w.ports, id(name))
	}
	for i := range 1 + r.IntN(2) {
		in.L2Insertions = append(in.L2Insertions, topology.L2Insertion{ID: id(fmt.Sprint("ins", i)), PortID: topology.IDPtr(vms[0]),
			SrvPortID: topology.IDPtr(id(fmt.Sprint("svc", i))), VLAN: []int{0, 10}[r.IntN(2)], Position: i + 1,
			FailOpen: r.IntN(2) == 0, MAC: topology.Str("02:00:00:00:00:00")})
	}
	in.DHCPSubnets, in.DHCPSubnetsV6 = dhcpSubnets(w, b0)
	in.UnderlayMTU = []int{0, 1500, 9000}[r.IntN(3)]
	// Trace requests on a port, a bridge and the router, matching on an
	// IP address group among others.
	g := topology.IPAddrGroup{ID: id("ipg"), IPAddrPorts: []topology.IPAddrPort{{IPAddress: w.ip().String()}}}
	in.IPAddrGroups = append(in.IPAddrGroups, g)
	grpRule := w.randomRule(nil, "ipg-rule", w.ports, nil)
	grpRule.IPAddrGroupSrc = topology.IDPtr(g.ID)
	in.Rules = append(in.Rules, grpRule)
	in.Chains = append(in.Chains, topology.Chain{ID: id("ipg-chain"), RuleIDs: []ID{grpRule.ID}})
	in.Bridges[len(in.Bridges)-1].OutboundFilterID = topology.IDPtr(id("ipg-chain"))
	for i, dev := range []struct {
		typ string
		id  ID
	}{{topology.TracePort, vms[0]}, {topology.TraceBridge, b0}, {topology.TraceRouter, rtr}} {
		c := w.randomRule(nil, fmt.Sprint("trace-cond", i), w.ports, nil).Condition
		if i == 1 {
			c.IPAddrGroupDst = topology.IDPtr(g.ID)
		}
		in.TraceRequests = append(in.TraceRequests, topology.TraceRequest{ID: id(fmt.Sprint("trace", i)),
			Name: topology.Str(fmt.Sprint("trace", i)), DeviceType: topology.Str(dev.typ), DeviceID: topology.IDPtr(dev.id),
			Condition: &topology.MirrorCondition{Condition: c}, Enabled: r.IntN(3) != 0, Limit: 10})
	}
	// QoS: a policy on b0, another on one VM port.
	in.Bridges[0].QOSPolicyID = topology.IDPtr(id("policy-a"))
	in.DSCPRules = append(in.DSCPRules, topology.QOSDSCPRule{ID: id("dscp-a"), DSCPMark: 46, PolicyID: topology.IDPtr(id("policy-a"))},
		topology.QOSDSCPRule{ID: id("dscp-b"), DSCPMark: 10, PolicyID: topology.IDPtr(id("policy-b"))})
	if len(vms) > 1 {
		for i := range in.Ports {
			if in.Ports[i].ID == vms[1] {
				in.Ports[i].QOSPolicyID = topology.IDPtr(id("policy-b"))
			}
		}
	}
	// BGP with the uplink's next hop.
	in.Routers[0].ASNumber = 65000
	in.BGPPeers = append(in.BGPPeers, topology.BGPPeer{ID: id("peer"), RouterID: rtr, Address: topology.Str("192.0.2.254"), ASNumber: 65001})
	w.tports = append(w.tports, 67, 68, 179)
	for i := range in.ARPTable {
		if r.IntN(2) == 0 {
			in.ARPTable[i].Stale = testNow.Add(-time.Second)
		}
	}
}

// dhcpSubnets returns DHCP and DHCPv6 subnets for bridge br of a random
// world, with a host for one of its MACs.
func dhcpSubnets(w *randomWorld, br ID) ([]topology.DHCPSubnet, []topology.DHCPSubnetV6) {
	var mtu *int
	if w.r.IntN(2) == 0 {
		mtu = ptr(1400)
	}
	v4 := []topology.DHCPSubnet{{BridgeID: br, SubnetPrefix: topology.Str("10.0.0.0"), SubnetLength: 24,
		DefaultGateway: topology.Str("10.0.0.1"), ServerAddr: topology.Str("10.0.0.2"), Enabled: w.r.IntN(4) != 0,
		InterfaceMTU: mtu, Hosts: []topology.DHCPHost{{MacAddr: topology.Str(topology.FormatMAC(w.mac())), IPAddr: topology.Str("10.0.0.10")}}}}
	v6 := []topology.DHCPSubnetV6{{BridgeID: br, Prefix: topology.Str("2001:db8::"), PrefixLength: 64}}
	return v4, v6
}

// sameResult compares everything a simulation returns but its trace.
func sameResult(a, b *Result) string {
	if d := sameActions(a, b); d != "" {
		return d
	}
	switch {
	case a.Mask != b.Mask:
		return fmt.Sprintf("mask %+v vs %+v", a.Mask, b.Mask)
	case !slices.Equal(a.Tags, b.Tags):
		return fmt.Sprintf("tags %v vs %v", a.Tags, b.Tags)
	case !slices.Equal(a.NAT, b.NAT), !slices.Equal(a.Conntrack, b.Conntrack):
		return "flow state differs"
	case !slices.Equal(a.LearnedMACs, b.LearnedMACs), !slices.Equal(a.LearnedARP, b.LearnedARP):
		return "learning differs"
	case len(a.Generated) != len(b.Generated):
		return fmt.Sprintf("%d vs %d generated packets", len(a.Generated), len(b.Generated))
	case a.HardTimeout != b.HardTimeout || a.ARP != b.ARP:
		return "timeout or ARP request differs"
	case !slices.Equal(a.TraceRequests, b.TraceRequests):
		return fmt.Sprintf("trace requests %v vs %v", a.TraceRequests, b.TraceRequests)
	case !slices.Equal(a.StatePorts, b.StatePorts):
		return fmt.Sprintf("state ports %v vs %v", a.StatePorts, b.StatePorts)
	case a.DHCP != b.DHCP:
		return fmt.Sprintf("DHCP %v vs %v", a.DHCP, b.DHCP)
	case len(a.ARPRefresh) != len(b.ARPRefresh):
		return fmt.Sprintf("%d vs %d ARP refreshes", len(a.ARPRefresh), len(b.ARPRefresh))
	}
	for i := range a.Generated {
		if !slices.Equal(a.Generated[i].Frame, b.Generated[i].Frame) {
			return fmt.Sprintf("generated packet %d differs", i)
		}
	}
	return ""
}

// TestBuilderMatchesAFullCompilation changes random topologies object by
// object (deletes, restores, edits, MAC, ARP and binding changes), builds
// each change incrementally, and checks that random packets fare the same
// through the incremental snapshot as through one compiled whole from the
// same objects, and that both refuse the same broken topologies.
func TestBuilderMatchesAFullCompilation(t *testing.T) {
	r := rand.New(rand.NewPCG(*simSeed, 7))
	changes, compared := 0, 0
	for world := range 30 {
		w := newRandomWorld(t, r)
		extendWorld(w)
		m := newModel(&w.in)
		b := NewBuilder(w.in.BridgeARP)
		b.putInput(&w.in)
		if _, err := b.Build(); err != nil {
			t.Fatal(err)
		}
		var log []string
		for step := range 40 {
			log = append(log, m.mutate(r, w, b))
			changes++
			incr, ierr := b.Build()
			full, ferr := NewSnapshot(m.input())
			if (ierr == nil) != (ferr == nil) {
				t.Fatalf("world %d step %d: incremental build error %v, full compilation error %v\nchanges: %v", world, step, ierr, ferr, log)
			}
			if ierr != nil {
				continue
			}
			tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
			for range 30 {
				in := w.ports[r.IntN(len(w.ports))]
				k := w.randomKey()
				seed := r.Uint64()
				pkt := func(trace bool) *Packet {
					return &Packet{Port: in, Match: MatchFromFlowKey(&k), Trace: trace}
				}
				if r.IntN(6) == 0 {
					// A DHCP request: the bridge's server answers it.
					spec := dhcpRequest(t, topology.FormatMAC(w.mac()), layers.DHCPMsgTypeDiscover, "")
					pkt = func(trace bool) *Packet {
						p := mkPacket(t, in, spec)
						p.Trace = trace
						return p
					}
				}
				a := NewSimulator(seed).Simulate(incr, tables.View(0), pkt(false), testNow)
				bres := NewSimulator(seed).Simulate(full, tables.View(0), pkt(false), testNow)
				compared++
				if d := sameResult(a, bres); d != "" {
					tr := NewSimulator(seed).Simulate(incr, tables.View(0), pkt(true), testNow).Trace
					tf := NewSimulator(seed).Simulate(full, tables.View(0), pkt(true), testNow).Trace
					t.Fatalf("world %d step %d: incremental and full snapshots differ: %s\nchanges: %v\nincremental:\n%s\nfull:\n%s",
						world, step, d, log, tr, tf)
				}
			}
		}
	}
	t.Logf("%d changes built incrementally, %d packets compared", changes, compared)
}
