package translate

import (
	"testing"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
)

func TestReply(t *testing.T) {
	tcp := udpMatch(0)
	tcp.NwProto, tcp.NwTOS = packet.IPProtoTCP, 8
	// SNAT through a router: new MACs, source address and port, TTL-1.
	snat := sim.Egress{Port: hereB, Set: sim.FieldEthSrc | sim.FieldEthDst | sim.FieldNwSrc | sim.FieldTpSrc | sim.FieldNwTTL,
		Values: sim.Match{FlowKey: packet.FlowKey{EthSrc: [6]byte{2, 0, 0, 0, 0, 0xaa}, EthDst: [6]byte{2, 0, 0, 0, 0, 0xbb},
			NwSrc: [4]byte{192, 0, 2, 100}, TpSrc: 40000, NwTTL: 63}}}
	tagged := udpMatch(packet.VLANPresent | 10)
	later := udpMatch(0)
	later.NwFrag = packet.FragLater
	icmp := udpMatch(0)
	icmp.NwProto, icmp.TpSrc, icmp.TpDst, icmp.ICMPID = packet.IPProtoICMP, uint16(packet.ICMPEchoRequest), 0, 7
	arp := sim.Match{FlowKey: packet.FlowKey{EthType: packet.EtherTypeARP, NwProto: 1}}
	ipv6 := udpMatch(0)
	ipv6.EthType = packet.EtherTypeIPv6

	tests := []struct {
		name   string
		orig   sim.Match
		egress sim.Egress
		ok     bool
		want   packet.FlowKey
	}{
		{"tcp through snat", tcp, snat, true, packet.FlowKey{InPort: 5,
			EthSrc: [6]byte{2, 0, 0, 0, 0, 0xbb}, EthDst: [6]byte{2, 0, 0, 0, 0, 0xaa}, EthType: packet.EtherTypeIPv4,
			NwSrc: [4]byte{10, 0, 0, 2}, NwDst: [4]byte{192, 0, 2, 100}, NwProto: packet.IPProtoTCP, NwTOS: 8, NwTTL: 64,
			TpSrc: 53, TpDst: 40000}},
		{"udp bridged, tagged", tagged, sim.Egress{Port: hereB}, true, packet.FlowKey{InPort: 5,
			EthSrc: tagged.EthDst, EthDst: tagged.EthSrc, VLAN: tagged.VLAN, EthType: packet.EtherTypeIPv4,
			NwSrc: tagged.NwDst, NwDst: tagged.NwSrc, NwProto: packet.IPProtoUDP, NwTTL: 64, TpSrc: 53, TpDst: 1000}},
		{"later fragment", later, snat, false, packet.FlowKey{}},
		{"icmp echo", icmp, snat, false, packet.FlowKey{}},
		{"arp", arp, sim.Egress{Port: hereB}, false, packet.FlowKey{}},
		{"ipv6", ipv6, sim.Egress{Port: hereB}, false, packet.FlowKey{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Reply(&tt.orig, &tt.egress, 5)
			if ok != tt.ok {
				t.Fatalf("Reply ok = %v, want %v", ok, tt.ok)
			}
			if got.FlowKey != tt.want || got.ICMPData != (sim.ICMPData{}) {
				t.Errorf("Reply =\n %+v\nwant\n %+v", got.FlowKey, tt.want)
			}
		})
	}
}
