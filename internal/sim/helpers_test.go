package sim

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

var (
	testNow   = time.Unix(1_800_000_000, 0)
	testSpace = uuid.MustParse("6ba7b811-9dad-11d1-80b4-00c04fd430c8")
	testHost  = uuid.MustParse("00000000-0000-0000-0000-0000000000aa")
)

// id returns a stable id for a name, so that failures name objects.
func id(name string) ID { return uuid.NewSHA1(testSpace, []byte(name)) }

func mac(s string) [6]byte {
	m, ok := topology.ParseMAC(s)
	if !ok {
		panic("bad MAC " + s)
	}
	return m
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// topo builds a SnapshotInput by name.
type topo struct {
	t  testing.TB
	in SnapshotInput
}

func newTopo(t testing.TB) *topo { return &topo{t: t, in: SnapshotInput{BridgeARP: true}} }

func (tp *topo) bridge(name string) ID {
	tp.in.Bridges = append(tp.in.Bridges, topology.Bridge{ID: id(name), Name: topology.Str(name), AdminStateUp: true})
	return id(name)
}

func (tp *topo) router(name string) ID {
	tp.in.Routers = append(tp.in.Routers, topology.Router{ID: id(name), Name: topology.Str(name), AdminStateUp: true})
	return id(name)
}

// vmPort adds an exterior, active bridge port.
func (tp *topo) vmPort(bridge ID, name string) ID {
	tp.in.Ports = append(tp.in.Ports, topology.Port{ID: id(name), Type: topology.PortTypeBridge, DeviceID: bridge,
		AdminStateUp: true, HostID: topology.IDPtr(testHost), InterfaceName: topology.Str(name), Active: true})
	return id(name)
}

// bridgePort adds an interior (to be linked) bridge port.
func (tp *topo) bridgePort(bridge ID, name string) ID {
	tp.in.Ports = append(tp.in.Ports, topology.Port{ID: id(name), Type: topology.PortTypeBridge, DeviceID: bridge, AdminStateUp: true})
	return id(name)
}

// routerPort adds a router port with address cidr and MAC m; exterior ports
// are bound and active.
func (tp *topo) routerPort(router ID, name, cidr, m string, exterior bool) ID {
	p := topology.Port{ID: id(name), Type: topology.PortTypeRouter, DeviceID: router, AdminStateUp: true,
		PortSubnet: []string{cidr}, PortMAC: topology.Str(m)}
	if exterior {
		p.HostID, p.InterfaceName, p.Active = topology.IDPtr(testHost), topology.Str(name), true
	}
	tp.in.Ports = append(tp.in.Ports, p)
	return id(name)
}

func (tp *topo) port(pid ID) *topology.Port {
	for i := range tp.in.Ports {
		if tp.in.Ports[i].ID == pid {
			return &tp.in.Ports[i]
		}
	}
	tp.t.Fatalf("no port %s", pid)
	return nil
}

func (tp *topo) link(a, b ID) {
	tp.port(a).PeerID = topology.IDPtr(b)
	tp.port(b).PeerID = topology.IDPtr(a)
}

func (tp *topo) route(router ID, name, dst string, port ID, gw string, weight int) ID {
	p := netip.MustParsePrefix(dst)
	r := topology.Route{ID: id(name), Type: topology.RouteNormal, RouterID: router,
		SrcNetworkAddr: topology.Str("0.0.0.0"), DstNetworkAddr: topology.Str(p.Addr().String()),
		DstNetworkLength: p.Bits(), NextHopPort: topology.IDPtr(port), Weight: weight}
	if gw != "" {
		r.NextHopGateway = topology.Str(gw)
	}
	tp.in.Routes = append(tp.in.Routes, r)
	return id(name)
}

// providerUplink links router tenant (t-p, 169.254.0.1/30) to router
// provider (p-t, 169.254.0.2/30), gives provider the exterior port uplink
// (203.0.113.1/24, gateway .254 at gwMAC) and default routes tenant →
// provider → gateway; the new port ids go into ids.
func (tp *topo) providerUplink(ids map[string]ID, tenant, provider ID) {
	ids["t-p"] = tp.routerPort(tenant, "t-p", "169.254.0.1/30", "ac:ca:ba:00:01:01", false)
	ids["p-t"] = tp.routerPort(provider, "p-t", "169.254.0.2/30", "ac:ca:ba:00:01:02", false)
	tp.link(ids["t-p"], ids["p-t"])
	ids["uplink"] = tp.routerPort(provider, "uplink", "203.0.113.1/24", "ac:ca:ba:00:01:03", true)
	tp.route(tenant, "t-default", "0.0.0.0/0", ids["t-p"], "169.254.0.2", 0)
	tp.route(provider, "p-default", "0.0.0.0/0", ids["uplink"], "203.0.113.254", 0)
	tp.arp(provider, "203.0.113.254", gwMAC)
}

// chain adds a chain holding rules in order; rule ids are derived from the
// chain name and position unless set.
func (tp *topo) chain(name string, rules ...topology.Rule) ID {
	c := topology.Chain{ID: id(name), Name: topology.Str(name)}
	for i, r := range rules {
		if r.ID == (ID{}) {
			r.ID = id(name + "/" + itoa(i))
		}
		r.ChainID = c.ID
		tp.in.Rules = append(tp.in.Rules, r)
		c.RuleIDs = append(c.RuleIDs, r.ID)
	}
	tp.in.Chains = append(tp.in.Chains, c)
	return c.ID
}

func (tp *topo) learn(bridge ID, m string, port ID) {
	tp.in.MACTable = append(tp.in.MACTable, MACEntry{Bridge: bridge, MAC: mac(m), Port: port})
}

func (tp *topo) arp(router ID, a, m string) {
	tp.in.ARPTable = append(tp.in.ARPTable, ARPEntry{Router: router, IP: ip(a), MAC: mac(m)})
}

func (tp *topo) snapshot() *Snapshot {
	tp.t.Helper()
	s, err := NewSnapshot(tp.in)
	if err != nil {
		tp.t.Fatalf("NewSnapshot: %v", err)
	}
	return s
}

// udp, tcp, icmpEcho and arpReq describe test packets.
func udp(srcMAC, dstMAC, src, dst string, sp, dp uint16) PacketSpec {
	return PacketSpec{EthSrc: mac(srcMAC), EthDst: mac(dstMAC), Src: ip(src), Dst: ip(dst), Proto: packet.IPProtoUDP, SrcPort: sp, DstPort: dp}
}

func tcp(srcMAC, dstMAC, src, dst string, sp, dp uint16) PacketSpec {
	p := udp(srcMAC, dstMAC, src, dst, sp, dp)
	p.Proto = packet.IPProtoTCP
	return p
}

func icmpEcho(srcMAC, dstMAC, src, dst string, ident uint16) PacketSpec {
	return PacketSpec{EthSrc: mac(srcMAC), EthDst: mac(dstMAC), Src: ip(src), Dst: ip(dst), Proto: packet.IPProtoICMP,
		SrcPort: uint16(packet.ICMPEchoRequest), ICMPID: ident}
}

func arpReq(srcMAC, src, target string) PacketSpec {
	return PacketSpec{EthSrc: mac(srcMAC), EthDst: broadcastMAC, ARPOp: arpOpRequest, Src: ip(src), Dst: ip(target)}
}

// mkPacket turns a spec into a simulation input on port in.
func mkPacket(t testing.TB, in ID, spec PacketSpec) *Packet {
	t.Helper()
	frame, err := spec.Frame()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := MatchFromFrame(frame)
	if !ok {
		t.Fatal("frame does not decode")
	}
	return &Packet{Port: in, Match: m, Frame: frame}
}

// run simulates spec on port in with a fresh simulator; verbose tests log
// the trace.
func run(t testing.TB, snap *Snapshot, state StateReader, in ID, spec PacketSpec) *Result {
	t.Helper()
	pkt := mkPacket(t, in, spec)
	pkt.Trace = testing.Verbose()
	r := NewSimulator(1).Simulate(snap, state, pkt, testNow)
	if testing.Verbose() {
		t.Logf("trace:\n%s", r.Trace)
	}
	return r
}

// wantDrop fails the test unless r dropped the packet for reason.
func wantDrop(t testing.TB, r *Result, reason DropReason) {
	t.Helper()
	if r.Kind != Drop || r.Reason != reason {
		t.Fatalf("%v %v, want drop for %v", r.Kind, r.Reason, reason)
	}
}

func egressPorts(r *Result) []ID {
	var out []ID
	for _, e := range r.Egress {
		out = append(out, e.Port)
	}
	return out
}

func hasTag(r *Result, tg Tag) bool {
	for _, x := range r.Tags {
		if x == tg {
			return true
		}
	}
	return false
}

// commit applies a result's flow-state keys to a shard, as the agent does
// when it installs the flow.
func commit(sh *flowstate.Shard, r *Result) {
	sh.Commit(r.Conntrack, r.NAT)
}

func sameIDs(a, b []ID) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[ID]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

func netipPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// icmpError describes an ICMP port-unreachable from src to dst quoting the
// IP datagram of quoted.
func icmpError(t testing.TB, ethSrc, ethDst, src, dst string, quoted PacketSpec) PacketSpec {
	t.Helper()
	f, err := quoted.Frame()
	if err != nil {
		t.Fatal(err)
	}
	return PacketSpec{EthSrc: mac(ethSrc), EthDst: mac(ethDst), Src: ip(src), Dst: ip(dst), Proto: packet.IPProtoICMP,
		SrcPort: uint16(packet.ICMPDestUnreachable), DstPort: uint16(packet.ICMPCodePortUnreachable),
		Payload: f[packet.EthernetHeaderLen:]}
}
