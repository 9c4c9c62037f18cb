package packet

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// icmpErrorFrame is a time-exceeded message quoting the TCP frame's IPv4
// header and the first 8 bytes of its TCP header.
func icmpErrorFrame(t testing.TB) []byte {
	orig := tcpFrame(t)[EthernetHeaderLen:]
	quoted := orig[:IPv4MinHeaderLen+8]
	outer := ip4(layers.IPProtocolICMPv4)
	outer.SrcIP, outer.DstIP = outer.DstIP, outer.SrcIP
	return serialize(t, eth(layers.EthernetTypeIPv4), outer,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(11, 0)}, gopacket.Payload(quoted))
}

func vxlanFrame(t testing.TB) []byte {
	inner := tcpFrame(t)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(50123, VXLANPort),
		&layers.VXLAN{ValidIDFlag: true, VNI: 0xabcdef}, gopacket.Payload(inner))
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		frame func(t testing.TB) []byte
		check func(t *testing.T, p *Parsed, frame []byte)
	}{
		{
			name:  "ipv4 tcp fields and offsets",
			frame: tcpFrame,
			check: func(t *testing.T, p *Parsed, frame []byte) {
				want := Parsed{buf: frame, Layer: Layer4, EthDst: macB, EthSrc: macA, EthType: EtherTypeIPv4, L3Off: 14,
					IPVersion: 4, Src: netip.AddrFrom4(ipA), Dst: netip.AddrFrom4(ipB), IPProto: IPProtoTCP, TOS: 0x28, TTL: 64,
					IPHeaderLen: 20, IPEnd: 14 + 20 + 20 + 5, IPID: 0x1234, IPChecksumOK: true,
					L4Off: 34, PayloadOff: 54, SrcPort: 40000, DstPort: 80, TCPFlags: TCPFlagSYN}
				assertParsed(t, p, &want)
				if got := string(p.Payload()); got != "hello" {
					t.Errorf("Payload = %q, want hello", got)
				}
			},
		},
		{
			// gopacket pads frames to the 60-byte Ethernet minimum.
			name:  "ethernet padding excluded from datagram",
			frame: udpFrame,
			check: func(t *testing.T, p *Parsed, frame []byte) {
				if want := 14 + 20 + 8 + 6; len(frame) != 60 || p.IPEnd != want {
					t.Errorf("frame length %d, IPEnd = %d, want 60, %d", len(frame), p.IPEnd, want)
				}
				if got := string(p.Payload()); got != "query!" {
					t.Errorf("Payload = %q", got)
				}
			},
		},
		{
			name: "bad ipv4 header checksum is reported",
			frame: func(t testing.TB) []byte {
				f := tcpFrame(t)
				f[EthernetHeaderLen+10] ^= 0xff
				return f
			},
			check: func(t *testing.T, p *Parsed, frame []byte) {
				if p.IPChecksumOK || p.Layer != Layer4 {
					t.Errorf("IPChecksumOK = %v, Layer = %v; want false, L4", p.IPChecksumOK, p.Layer)
				}
			},
		},
		{
			name: "ipv4 total length shorter than header is invalid",
			frame: func(t testing.TB) []byte {
				f := tcpFrame(t)
				f[EthernetHeaderLen+2], f[EthernetHeaderLen+3] = 0, 19
				return f
			},
			check: func(t *testing.T, p *Parsed, frame []byte) {
				if p.Layer != Layer2 || p.IPVersion != 0 {
					t.Errorf("Layer = %v, IPVersion = %d; want L2, 0", p.Layer, p.IPVersion)
				}
			},
		},
		{
			name: "icmp echo id and seq",
			frame: func(t testing.TB) []byte {
				return serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
					&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 0xbeef, Seq: 42}, gopacket.Payload("ping"))
			},
			check: func(t *testing.T, p *Parsed, frame []byte) {
				if p.ICMPType != ICMPEchoRequest || p.ICMPIdent != 0xbeef || p.ICMPSeq != 42 || p.QuotedOff != 0 {
					t.Errorf("type %d ident %#x seq %d quoted %d", p.ICMPType, p.ICMPIdent, p.ICMPSeq, p.QuotedOff)
				}
				if !p.ICMPv4().IsChecksumValid() {
					t.Error("ICMP checksum does not verify")
				}
			},
		},
		{
			name:  "icmp error exposes quoted header and ports",
			frame: icmpErrorFrame,
			check: func(t *testing.T, p *Parsed, frame []byte) {
				if p.ICMPType != ICMPTimeExceeded || p.QuotedOff != 14+20+8 {
					t.Fatalf("type %d, QuotedOff %d", p.ICMPType, p.QuotedOff)
				}
				q := p.Quoted()
				if q.Src() != ipA || q.Dst() != ipB || q.Protocol() != IPProtoTCP {
					t.Errorf("quoted header %v -> %v proto %d", q.Src(), q.Dst(), q.Protocol())
				}
				l4 := TCP(p.QuotedL4())
				if l4.SrcPort() != 40000 || l4.DstPort() != 80 {
					t.Errorf("quoted ports %d -> %d", l4.SrcPort(), l4.DstPort())
				}
			},
		},
		{
			name: "icmp error with short quote has no QuotedOff",
			frame: func(t testing.TB) []byte {
				return icmpErrorFrame(t)[:14+20+8+20+7]
			},
			check: func(t *testing.T, p *Parsed, frame []byte) {
				if p.QuotedOff != 0 || p.Quoted() != nil || p.QuotedL4() != nil {
					t.Errorf("QuotedOff = %d for a quote of 7 payload bytes", p.QuotedOff)
				}
			},
		},
		{
			name:  "vxlan",
			frame: vxlanFrame,
			check: func(t *testing.T, p *Parsed, frame []byte) {
				vni, inner, ok := p.VXLAN(VXLANPort)
				if !ok || vni != 0xabcdef {
					t.Fatalf("VXLAN = %#x, ok %v", vni, ok)
				}
				var ip Parsed
				ip.Decode(inner)
				if ip.SrcPort != 40000 || ip.Dst != netip.AddrFrom4(ipB) {
					t.Errorf("inner frame decoded to %+v", ip)
				}
				if _, _, ok := p.VXLAN(6677); ok {
					t.Error("VXLAN matched on another port")
				}
			},
		},
		{
			name: "arp reply",
			frame: func(t testing.TB) []byte {
				return serialize(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet,
					Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 2,
					SourceHwAddress: macA[:], SourceProtAddress: ipA[:], DstHwAddress: macB[:], DstProtAddress: ipB[:]})
			},
			check: func(t *testing.T, p *Parsed, frame []byte) {
				if p.Layer != Layer3 || p.ARPOp != ARPReply || p.ARPSHA != macA || p.ARPSPA != ipA || p.ARPTHA != macB || p.ARPTPA != ipB {
					t.Errorf("arp decoded to %+v", p)
				}
			},
		},
		{
			name: "arp with wrong hardware size is unknown",
			frame: func(t testing.TB) []byte {
				return mustHex(t, `02000000000b 02000000000a 0806 # dst, src, ARP
					0001 0800 08 04 0001 # htype, ptype, hlen 8 (wrong), plen, op
					02000000000a 0a000001 000000000000 c0a807c8 0000`)
			},
			check: func(t *testing.T, p *Parsed, frame []byte) {
				if p.Layer != Layer2 || p.ARPOp != 0 {
					t.Errorf("Layer %v, ARPOp %d; want L2, 0", p.Layer, p.ARPOp)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frame := tc.frame(t)
			var p Parsed
			p.Decode(frame)
			tc.check(t, &p, frame)
			compareWithGopacket(t, &p, frame)
			if n := testing.AllocsPerRun(100, func() { p.Decode(frame) }); n != 0 {
				t.Errorf("Decode allocated %v times per run, want 0", n)
			}
		})
	}
}

func assertParsed(t *testing.T, got, want *Parsed) {
	t.Helper()
	g, w := *got, *want
	g.buf, w.buf = nil, nil
	if !reflect.DeepEqual(g, w) {
		t.Errorf("Decode =\n %+v\nwant\n %+v", g, w)
	}
	if &got.Frame()[0] != &want.buf[0] {
		t.Error("Parsed does not reference the decoded frame")
	}
}

// compareWithGopacket checks the fields gopacket also decodes.
func compareWithGopacket(t *testing.T, p *Parsed, frame []byte) {
	t.Helper()
	pkt := decodeGopacket(frame)
	if l, ok := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); ok {
		if [6]byte(l.SrcMAC) != p.EthSrc || [6]byte(l.DstMAC) != p.EthDst {
			t.Errorf("MACs %v %v, gopacket %v %v", p.EthSrc, p.EthDst, l.SrcMAC, l.DstMAC)
		}
	}
	if l, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && p.IPVersion == 4 {
		if p.Src != netip.AddrFrom4([4]byte(l.SrcIP.To4())) || p.Dst != netip.AddrFrom4([4]byte(l.DstIP.To4())) ||
			p.TTL != l.TTL || p.TOS != l.TOS || p.IPProto != uint8(l.Protocol) || p.IPID != l.Id {
			t.Errorf("IPv4 fields differ from gopacket: %+v", l)
		}
	}
	if l, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && p.Layer == Layer4 && p.IPProto == IPProtoTCP && p.QuotedOff == 0 {
		if p.SrcPort != uint16(l.SrcPort) || p.DstPort != uint16(l.DstPort) {
			t.Errorf("TCP ports %d %d, gopacket %d %d", p.SrcPort, p.DstPort, l.SrcPort, l.DstPort)
		}
	}
	if l, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && p.Layer == Layer4 && p.IPProto == IPProtoUDP {
		if p.SrcPort != uint16(l.SrcPort) || p.DstPort != uint16(l.DstPort) {
			t.Errorf("UDP ports %d %d, gopacket %d %d", p.SrcPort, p.DstPort, l.SrcPort, l.DstPort)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	frame := tcpFrame(b)
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		p.Decode(frame)
	}
}
