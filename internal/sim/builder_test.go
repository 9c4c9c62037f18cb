package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

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
}

func newModel(in *SnapshotInput) *model {
	m := &model{objs: map[ID]topology.Object{}, macs: map[macKey]MACEntry{}, arps: map[ID]ARPEntry{},
		ipmacs: map[ID]IPMACEntry{}, bindings: map[ID]PortBinding{}, bridgeARP: in.BridgeARP}
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
	in := SnapshotInput{BridgeARP: m.bridgeARP}
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
		}
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
	switch n := r.IntN(12); {
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
			switch r.IntN(4) {
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
			if r.IntN(2) == 0 {
				x.AdminStateUp = !x.AdminStateUp
			} else {
				x.InboundFilterID = nil
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
	case n < 10: // an ARP entry
		e := ARPEntry{Router: w.in.Routers[0].ID, IP: w.ip(), MAC: w.mac()}
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
				a := NewSimulator(seed).Simulate(incr, tables.View(0), &Packet{Port: in, Match: MatchFromFlowKey(&k)}, testNow)
				bres := NewSimulator(seed).Simulate(full, tables.View(0), &Packet{Port: in, Match: MatchFromFlowKey(&k)}, testNow)
				compared++
				if d := sameResult(a, bres); d != "" {
					tr := NewSimulator(seed).Simulate(incr, tables.View(0), &Packet{Port: in, Match: MatchFromFlowKey(&k), Trace: true}, testNow).Trace
					tf := NewSimulator(seed).Simulate(full, tables.View(0), &Packet{Port: in, Match: MatchFromFlowKey(&k), Trace: true}, testNow).Trace
					t.Fatalf("world %d step %d: incremental and full snapshots differ: %s\nchanges: %v\nincremental:\n%s\nfull:\n%s",
						world, step, d, log, tr, tf)
				}
			}
		}
	}
	t.Logf("%d changes built incrementally, %d packets compared", changes, compared)
}
