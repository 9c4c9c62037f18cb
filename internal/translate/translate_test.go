package translate

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// directory is a PortDirectory of fixed ports.
type directory map[topology.ID]sim.PortInfo

func (d directory) Port(id topology.ID) (sim.PortInfo, bool) {
	p, ok := d[id]
	return p, ok
}

var (
	hereA, hereB = topology.NewID(), topology.NewID() // bound here
	remote       = topology.NewID()                   // bound on host2
	stranger     = topology.NewID()                   // bound on a host outside the tunnel zone
	inactive     = topology.NewID()                   // bound nowhere
	host2, host3 = topology.NewID(), topology.NewID()
	host2IP      = netip.MustParseAddr("192.168.0.2")
	localIP      = netip.MustParseAddr("192.168.0.1")

	dir = directory{
		remote:   {ID: remote, Host: host2, TunnelKey: 77},
		stranger: {ID: stranger, Host: host3, TunnelKey: 78},
		inactive: {ID: inactive, TunnelKey: 79},
	}
	ports = &Ports{
		Local:   map[topology.ID]datapath.PortNo{hereA: 1, hereB: 2},
		Peers:   map[topology.ID]netip.Addr{host2: host2IP},
		Overlay: 9,
		LocalIP: localIP,
	}
	tunnelToHost2 = datapath.SetTunnel(datapath.TunnelSet{VNI: 77, Dst: host2IP, Src: localIP})
)

// udpMatch is a UDP packet's match, tagged with vlan when not 0.
func udpMatch(vlan uint16) sim.Match {
	return sim.Match{FlowKey: packet.FlowKey{EthSrc: [6]byte{2, 0, 0, 0, 0, 1}, EthDst: [6]byte{2, 0, 0, 0, 0, 2}, VLAN: vlan,
		EthType: packet.EtherTypeIPv4, NwSrc: [4]byte{10, 0, 0, 1}, NwDst: [4]byte{10, 0, 0, 2},
		NwProto: packet.IPProtoUDP, NwTTL: 64, TpSrc: 1000, TpDst: 53}}
}

func TestFlow(t *testing.T) {
	udp := udpMatch(0)
	tcp := udp
	tcp.NwProto = packet.IPProtoTCP
	later := udp
	later.NwFrag = packet.FragLater
	arp := sim.Match{FlowKey: packet.FlowKey{EthSrc: udp.EthSrc, EthDst: udp.EthDst, EthType: packet.EtherTypeARP, NwSrc: udp.NwSrc, NwDst: udp.NwDst, NwProto: 1}}
	tagged := udpMatch(packet.VLANPresent | 10)
	routed := sim.Egress{Port: hereB, Set: sim.FieldEthSrc | sim.FieldEthDst | sim.FieldNwTTL,
		Values: sim.Match{FlowKey: packet.FlowKey{EthSrc: [6]byte{2, 0, 0, 0, 0, 9}, EthDst: [6]byte{2, 0, 0, 0, 0, 8}, NwTTL: 63}}}
	snat := sim.Egress{Port: hereB, Set: sim.FieldNwSrc | sim.FieldTpSrc, Values: sim.Match{FlowKey: packet.FlowKey{NwSrc: [4]byte{203, 0, 113, 1}, TpSrc: 40000}}}
	cases := []struct {
		name   string
		orig   sim.Match
		egress []sim.Egress
		want   []datapath.Action
		drops  Drops
	}{
		{"bridged here", udp, []sim.Egress{{Port: hereB}}, []datapath.Action{datapath.Output(2)}, Drops{}},
		{"to another host", udp, []sim.Egress{{Port: remote}}, []datapath.Action{tunnelToHost2, datapath.Output(9)}, Drops{}},
		{"routed: MACs and TTL", udp, []sim.Egress{routed}, []datapath.Action{
			datapath.SetEthernet(datapath.EthernetSet{Src: [6]byte{2, 0, 0, 0, 0, 9}, Dst: [6]byte{2, 0, 0, 0, 0, 8}, Fields: datapath.SetSrc | datapath.SetDst}),
			datapath.SetIPv4(datapath.IPv4Set{TTL: 63, Fields: datapath.SetTTL}),
			datapath.Output(2)}, Drops{}},
		{"SNAT on UDP", udp, []sim.Egress{snat}, []datapath.Action{
			datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{203, 0, 113, 1}, Fields: datapath.SetSrc}),
			datapath.SetUDP(datapath.L4Set{Src: 40000, Fields: datapath.SetSrc}),
			datapath.Output(2)}, Drops{}},
		{"SNAT on TCP", tcp, []sim.Egress{snat}, []datapath.Action{
			datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{203, 0, 113, 1}, Fields: datapath.SetSrc}),
			datapath.SetTCP(datapath.L4Set{Src: 40000, Fields: datapath.SetSrc}),
			datapath.Output(2)}, Drops{}},
		{"no ports on a later fragment", later, []sim.Egress{snat}, []datapath.Action{
			datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{203, 0, 113, 1}, Fields: datapath.SetSrc}),
			datapath.Output(2)}, Drops{}},
		{"no IPv4 sets on ARP", arp, []sim.Egress{{Port: hereB, Set: sim.FieldNwSrc | sim.FieldEthDst,
			Values: sim.Match{FlowKey: packet.FlowKey{NwSrc: [4]byte{1, 1, 1, 1}, EthDst: [6]byte{2, 0, 0, 0, 0, 7}}}}}, []datapath.Action{
			datapath.SetEthernet(datapath.EthernetSet{Dst: [6]byte{2, 0, 0, 0, 0, 7}, Fields: datapath.SetDst}),
			datapath.Output(2)}, Drops{}},
		{"the same value is no set", udp, []sim.Egress{{Port: hereB, Set: sim.FieldNwTTL, Values: sim.Match{FlowKey: packet.FlowKey{NwTTL: 64}}}},
			[]datapath.Action{datapath.Output(2)}, Drops{}},
		{"pop a tag", tagged, []sim.Egress{{Port: hereB, Set: sim.FieldVLAN}}, []datapath.Action{datapath.PopVLAN(), datapath.Output(2)}, Drops{}},
		{"change a tag", tagged, []sim.Egress{{Port: hereB, Set: sim.FieldVLAN, Values: sim.Match{FlowKey: packet.FlowKey{VLAN: packet.VLANPresent | 20}}}},
			[]datapath.Action{datapath.PopVLAN(), datapath.PushVLAN(packet.VLANPresent | 20), datapath.Output(2)}, Drops{}},
		{"push a tag", udp, []sim.Egress{{Port: hereB, Set: sim.FieldVLAN, Values: sim.Match{FlowKey: packet.FlowKey{VLAN: packet.VLANPresent | 20}}}},
			[]datapath.Action{datapath.PushVLAN(packet.VLANPresent | 20), datapath.Output(2)}, Drops{}},
		{"flood: each egress from the previous one's packet", udp, []sim.Egress{
			{Port: hereA, Set: sim.FieldVLAN, Values: sim.Match{FlowKey: packet.FlowKey{VLAN: packet.VLANPresent | 5}}},
			{Port: remote},
			{Port: hereB, Set: sim.FieldNwTTL, Values: sim.Match{FlowKey: packet.FlowKey{NwTTL: 63}}},
		}, []datapath.Action{
			datapath.PushVLAN(packet.VLANPresent | 5), datapath.Output(1),
			datapath.PopVLAN(), tunnelToHost2, datapath.Output(9),
			datapath.SetIPv4(datapath.IPv4Set{TTL: 63, Fields: datapath.SetTTL}), datapath.Output(2),
		}, Drops{}},
		{"unreachable egresses are left out and counted", udp, []sim.Egress{{Port: inactive}, {Port: stranger}, {Port: topology.NewID()}, {Port: hereA}},
			[]datapath.Action{datapath.Output(1)}, Drops{Unreachable: 2, NoPeer: 1}},
		{"no egress", udp, nil, nil, Drops{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, drops := Flow(nil, &tc.orig, tc.egress, ports, dir)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("actions\n got %v\nwant %v", got, tc.want)
			}
			if drops != tc.drops {
				t.Errorf("drops %+v, want %+v", drops, tc.drops)
			}
			if n := testing.AllocsPerRun(20, func() { Flow(got[:0], &tc.orig, tc.egress, ports, dir) }); n != 0 {
				t.Errorf("Flow allocated %v times appending to a large enough slice", n)
			}
		})
	}
}

// Without an overlay port nothing leaves for another host.
func TestFlowWithoutOverlay(t *testing.T) {
	p := *ports
	p.Overlay = 0
	orig := udpMatch(0)
	got, drops := Flow(nil, &orig, []sim.Egress{{Port: remote}}, &p, dir)
	if len(got) != 0 || drops != (Drops{Unreachable: 1}) {
		t.Errorf("actions %v drops %+v, want none and one unreachable", got, drops)
	}
	if _, ok := p.Tunnel(nil, host2, 1); ok {
		t.Error("Tunnel without an overlay port reported true")
	}
}
