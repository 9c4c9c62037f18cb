package packet

import (
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestExtractFlowKey(t *testing.T) {
	tests := []struct {
		name  string
		frame func(t testing.TB) []byte
		ok    bool
		want  FlowKey
	}{
		{
			name:  "too short for ethernet",
			frame: func(t testing.TB) []byte { return make([]byte, 13) },
			ok:    false,
			want:  FlowKey{InPort: 7},
		},
		{
			name:  "ipv4 tcp",
			frame: tcpFrame,
			ok:    true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeIPv4, NwSrc: ipA, NwDst: ipB,
				NwProto: IPProtoTCP, NwTOS: 0x28, NwTTL: 64, TpSrc: 40000, TpDst: 80},
		},
		{
			name: "vlan tagged udp",
			frame: func(t testing.TB) []byte {
				return serialize(t, eth(layers.EthernetTypeDot1Q),
					&layers.Dot1Q{Priority: 5, VLANIdentifier: 100, Type: layers.EthernetTypeIPv4},
					ip4(layers.IPProtocolUDP), udp(1234, 4789), gopacket.Payload("x"))
			},
			ok: true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, VLAN: 5<<13 | 100 | VLANPresent, EthType: EtherTypeIPv4,
				NwSrc: ipA, NwDst: ipB, NwProto: IPProtoUDP, NwTOS: 0x28, NwTTL: 64, TpSrc: 1234, TpDst: 4789},
		},
		{
			name: "truncated vlan tag",
			frame: func(t testing.TB) []byte {
				return mustHex(t, `02000000000b 02000000000a # dst, src
					8100 0064 # TPID, TCI; the inner type is missing`)
			},
			ok:   true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeVLAN},
		},
		{
			name: "arp request",
			frame: func(t testing.TB) []byte {
				return serialize(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet,
					Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
					SourceHwAddress: macA[:], SourceProtAddress: ipA[:], DstHwAddress: make([]byte, 6), DstProtAddress: ipB[:]})
			},
			ok: true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeARP, NwSrc: ipA, NwDst: ipB,
				NwProto: 1, ARPSHA: macA},
		},
		{
			name:  "icmp echo",
			frame: icmpv4Frame(8, 0),
			ok:    true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeIPv4, NwSrc: ipA, NwDst: ipB,
				NwProto: IPProtoICMP, NwTOS: 0x28, NwTTL: 64, TpSrc: 8, TpDst: 0, ICMPID: 9},
		},
		{
			name:  "icmp error has no echo identifier",
			frame: icmpv4Frame(3, 3),
			ok:    true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeIPv4, NwSrc: ipA, NwDst: ipB,
				NwProto: IPProtoICMP, NwTOS: 0x28, NwTTL: 64, TpSrc: 3, TpDst: 3},
		},
		{
			name: "ipv4 options and first fragment keeps ports",
			frame: func(t testing.TB) []byte {
				ip := ip4(layers.IPProtocolUDP)
				ip.Flags = layers.IPv4MoreFragments
				ip.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 7, OptionData: []byte{4, 0, 0, 0, 0}}} // record route
				return serialize(t, eth(layers.EthernetTypeIPv4), ip, udp(1, 2), gopacket.Payload("abcdefgh"))
			},
			ok: true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeIPv4, NwSrc: ipA, NwDst: ipB,
				NwProto: IPProtoUDP, NwTOS: 0x28, NwTTL: 64, NwFrag: FragFirst, TpSrc: 1, TpDst: 2},
		},
		{
			name: "later fragment has no ports",
			frame: func(t testing.TB) []byte {
				ip := ip4(layers.IPProtocolUDP)
				ip.FragOffset = 185
				return serialize(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload("0123456789abcdef"))
			},
			ok: true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeIPv4, NwSrc: ipA, NwDst: ipB,
				NwProto: IPProtoUDP, NwTOS: 0x28, NwTTL: 64, NwFrag: FragLater},
		},
		{
			name: "truncated tcp leaves ports zero",
			frame: func(t testing.TB) []byte {
				f := tcpFrame(t)
				return f[:EthernetHeaderLen+IPv4MinHeaderLen+10]
			},
			ok: true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeIPv4, NwSrc: ipA, NwDst: ipB,
				NwProto: IPProtoTCP, NwTOS: 0x28, NwTTL: 64},
		},
		{
			name: "truncated ipv4 header leaves l3 zero",
			frame: func(t testing.TB) []byte {
				return tcpFrame(t)[:EthernetHeaderLen+19]
			},
			ok:   true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeIPv4},
		},
		{
			name: "wrong ip version leaves l3 zero",
			frame: func(t testing.TB) []byte {
				f := tcpFrame(t)
				f[EthernetHeaderLen] = 0x55
				return f
			},
			ok:   true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeIPv4},
		},
		{
			name: "ipv6 tcp",
			frame: func(t testing.TB) []byte {
				return serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolTCP), tcp(443, 50000))
			},
			ok: true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeIPv6, IPv6Src: ip6A, IPv6Dst: ip6B,
				NwProto: IPProtoTCP, NwTOS: 0x10, NwTTL: 33, TpSrc: 443, TpDst: 50000},
		},
		{
			name: "ipv6 hop-by-hop then udp",
			frame: func(t testing.TB) []byte {
				return serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolIPv6HopByHop),
					gopacket.Payload(mustHex(t, `11 00 01 04 00000000 # hop-by-hop: next UDP, 8 bytes, PadN
						1f90 0050 0008 0000 # UDP 8080 -> 80`)))
			},
			ok: true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeIPv6, IPv6Src: ip6A, IPv6Dst: ip6B,
				NwProto: IPProtoUDP, NwTOS: 0x10, NwTTL: 33, TpSrc: 8080, TpDst: 80},
		},
		{
			name: "ipv6 first fragment",
			frame: func(t testing.TB) []byte {
				return serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolIPv6Fragment),
					&layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, MoreFragments: true, Identification: 77},
					gopacket.Payload(mustHex(t, "0035 0036 0010 0000 # UDP ports 53, 54")))
			},
			ok: true,
			want: FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: EtherTypeIPv6, IPv6Src: ip6A, IPv6Dst: ip6B,
				NwProto: IPProtoUDP, NwTOS: 0x10, NwTTL: 33, NwFrag: FragFirst, TpSrc: 53, TpDst: 54},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frame := tc.frame(t)
			key := FlowKey{InPort: 99, NwProto: 42} // stale content must be cleared
			if ok := ExtractFlowKey(frame, 7, &key); ok != tc.ok {
				t.Errorf("ExtractFlowKey ok = %v, want %v", ok, tc.ok)
			}
			if key != tc.want {
				t.Errorf("ExtractFlowKey =\n %+v\nwant\n %+v", key, tc.want)
			}
			if n := testing.AllocsPerRun(100, func() { ExtractFlowKey(frame, 7, &key) }); n != 0 {
				t.Errorf("ExtractFlowKey allocated %v times per run, want 0", n)
			}
		})
	}
}

func TestExtractFlowKeyKeepsTunnelMetadata(t *testing.T) {
	key := FlowKey{TunID: 5001, TunSrc: ipA, TunDst: ipB, TunTOS: 3, TunTTL: 9, TpSrc: 77}
	ExtractFlowKey(tcpFrame(t), 1, &key)
	if key.TunID != 5001 || key.TunSrc != ipA || key.TunDst != ipB || key.TunTOS != 3 || key.TunTTL != 9 {
		t.Errorf("tunnel metadata changed: %+v", key)
	}
	if key.TpSrc != 40000 {
		t.Errorf("TpSrc = %d, want 40000", key.TpSrc)
	}
}

func BenchmarkExtractFlowKey(b *testing.B) {
	frame := tcpFrame(b)
	var key FlowKey
	b.ReportAllocs()
	for b.Loop() {
		ExtractFlowKey(frame, 1, &key)
	}
}

// icmpv4Frame builds an ICMPv4 message of the type and code, with 9 in the
// identifier field (an echo's identifier, unused by errors).
func icmpv4Frame(typ, code uint8) func(testing.TB) []byte {
	return func(t testing.TB) []byte {
		return serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Id: 9, Seq: 1})
	}
}
