package packet

import (
	"bytes"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func TestAppendARP(t *testing.T) {
	tests := []struct {
		name     string
		frame    []byte
		ethDst   [6]byte
		op       uint16
		sha, tha [6]byte
		spa, tpa [4]byte
	}{
		{"request", AppendARPRequest(nil, macA, ipA, ipB), BroadcastMAC, ARPRequest, macA, [6]byte{}, ipA, ipB},
		{"reply", AppendARPReply(nil, macB, ipB, macA, ipA), macA, ARPReply, macB, macA, ipB, ipA},
		{"gratuitous", AppendGratuitousARP(nil, macC, ipC), BroadcastMAC, ARPRequest, macC, [6]byte{}, ipC, ipC},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.frame) != EthernetHeaderLen+ARPIPv4Len {
				t.Fatalf("length %d", len(tc.frame))
			}
			pkt := decodeGopacket(tc.frame)
			e, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			a, _ := pkt.Layer(layers.LayerTypeARP).(*layers.ARP)
			if e == nil || a == nil {
				t.Fatalf("gopacket decoded %v", pkt)
			}
			if [6]byte(e.DstMAC) != tc.ethDst || [6]byte(e.SrcMAC) != tc.sha {
				t.Errorf("ethernet %v -> %v", e.SrcMAC, e.DstMAC)
			}
			if a.Operation != tc.op || [6]byte(a.SourceHwAddress) != tc.sha || [6]byte(a.DstHwAddress) != tc.tha ||
				[4]byte(a.SourceProtAddress) != tc.spa || [4]byte(a.DstProtAddress) != tc.tpa ||
				a.AddrType != layers.LinkTypeEthernet || a.Protocol != layers.EthernetTypeIPv4 {
				t.Errorf("gopacket ARP %+v", a)
			}
		})
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { AppendARPRequest(buf, macA, ipA, ipB) }); n != 0 {
		t.Errorf("AppendARPRequest allocated %v times with enough capacity", n)
	}
}

func echoRequest(t testing.TB, vlan bool) []byte {
	ls := []gopacket.SerializableLayer{eth(layers.EthernetTypeIPv4)}
	if vlan {
		ls = []gopacket.SerializableLayer{eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 33, Type: layers.EthernetTypeIPv4}}
	}
	ip := ip4(layers.IPProtocolICMPv4)
	ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}} // NOPs, end
	ls = append(ls, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 0x77, Seq: 9},
		gopacket.Payload("0123456789abcdefghijklmnopqrstuvwxyz"))
	return serialize(t, ls...)
}

func TestAppendICMPEchoReply(t *testing.T) {
	for _, vlan := range []bool{false, true} {
		req := echoRequest(t, vlan)
		var p Parsed
		p.Decode(req)
		prefix := []byte("prefix")
		out, ok := AppendICMPEchoReply(bytes.Clone(prefix), &p)
		if !ok || !bytes.HasPrefix(out, prefix) {
			t.Fatalf("vlan %v: AppendICMPEchoReply = %v, prefix kept %v", vlan, ok, bytes.HasPrefix(out, prefix))
		}
		reply := out[len(prefix):]
		var r Parsed
		r.Decode(reply)
		if r.EthSrc != macB || r.EthDst != macA || r.Src.As4() != ipB || r.Dst.As4() != ipA || r.HasVLAN != vlan ||
			r.ICMPType != ICMPEchoReply || r.ICMPIdent != 0x77 || r.ICMPSeq != 9 || r.IPHeaderLen != 20 || r.TTL != DefaultTTL {
			t.Errorf("vlan %v: reply decodes to %+v", vlan, r)
		}
		if !bytes.Equal(r.Payload(), p.Payload()) {
			t.Errorf("vlan %v: echo data %q, want %q", vlan, r.Payload(), p.Payload())
		}
		checkChecksums(t, reply)
		if vlan {
			if d, ok := decodeGopacket(reply).Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q); !ok || d.VLANIdentifier != 33 {
				t.Errorf("reply VLAN %+v", d)
			}
		}
		buf := make([]byte, 0, 256)
		if n := testing.AllocsPerRun(100, func() { AppendICMPEchoReply(buf, &p) }); n != 0 {
			t.Errorf("AppendICMPEchoReply allocated %v times", n)
		}
	}
	var notEcho Parsed
	notEcho.Decode(tcpFrame(t))
	if out, ok := AppendICMPEchoReply(nil, &notEcho); ok || len(out) != 0 {
		t.Error("echo reply built for a TCP frame")
	}
}

func TestAppendICMPError(t *testing.T) {
	router := ICMPErrorFields{EthSrc: macB, EthDst: macA, Src: ipC}
	tests := []struct {
		name     string
		build    func(dst []byte, p *Parsed) ([]byte, bool)
		typ      uint8
		code     uint8
		mtu      uint16
		wantOK   bool
		original func(t testing.TB) []byte
	}{
		{"port unreachable", func(d []byte, p *Parsed) ([]byte, bool) {
			return AppendICMPUnreachable(d, p, router, ICMPCodePortUnreachable, 1400)
		}, ICMPDestUnreachable, ICMPCodePortUnreachable, 0, true, udpFrame},
		{"net unreachable", func(d []byte, p *Parsed) ([]byte, bool) {
			return AppendICMPUnreachable(d, p, router, ICMPCodeNetUnreachable, 0)
		}, ICMPDestUnreachable, ICMPCodeNetUnreachable, 0, true, tcpFrame},
		{"host unreachable", func(d []byte, p *Parsed) ([]byte, bool) {
			return AppendICMPUnreachable(d, p, router, ICMPCodeHostUnreachable, 0)
		}, ICMPDestUnreachable, ICMPCodeHostUnreachable, 0, true, tcpFrame},
		{"admin prohibited", func(d []byte, p *Parsed) ([]byte, bool) {
			return AppendICMPUnreachable(d, p, router, ICMPCodeAdminProhibited, 0)
		}, ICMPDestUnreachable, ICMPCodeAdminProhibited, 0, true, tcpFrame},
		{"frag needed carries mtu", func(d []byte, p *Parsed) ([]byte, bool) {
			return AppendICMPUnreachable(d, p, router, ICMPCodeFragNeeded, 1450)
		}, ICMPDestUnreachable, ICMPCodeFragNeeded, 1450, true, tcpFrame},
		{"time exceeded quotes options", timeExceeded(router), ICMPTimeExceeded, ICMPCodeTTLExceeded, 0, true,
			func(t testing.TB) []byte { return echoRequest(t, false) }},
		{"no error about an error", timeExceeded(router), 0, 0, 0, false, icmpErrorFrame},
		{"no error about a later fragment", timeExceeded(router), 0, 0, 0, false, func(t testing.TB) []byte {
			ip := ip4(layers.IPProtocolUDP)
			ip.FragOffset = 100
			return serialize(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload("later fragment"))
		}},
		{"no error about a broadcast", timeExceeded(router), 0, 0, 0, false, func(t testing.TB) []byte {
			ip := ip4(layers.IPProtocolUDP)
			ip.DstIP = net.IPv4bcast
			return serialize(t, eth(layers.EthernetTypeIPv4), ip, udp(68, 67))
		}},
		{"no error about multicast", timeExceeded(router), 0, 0, 0, false, func(t testing.TB) []byte {
			ip := ip4(layers.IPProtocolUDP)
			ip.DstIP = net.IPv4(224, 0, 0, 251)
			return serialize(t, eth(layers.EthernetTypeIPv4), ip, udp(5353, 5353))
		}},
		{"no error about an ethernet broadcast", timeExceeded(router), 0, 0, 0, false, func(t testing.TB) []byte {
			e := eth(layers.EthernetTypeIPv4)
			e.DstMAC = net.HardwareAddr(BroadcastMAC[:])
			return serialize(t, e, ip4(layers.IPProtocolUDP), udp(1, 2))
		}},
		{"no error about arp", timeExceeded(router), 0, 0, 0, false, func(t testing.TB) []byte {
			return AppendARPRequest(nil, macA, ipA, ipB)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			orig := tc.original(t)
			var p Parsed
			p.Decode(orig)
			out, ok := tc.build(nil, &p)
			if ok != tc.wantOK {
				t.Fatalf("reported %v, want %v", ok, tc.wantOK)
			}
			if !ok {
				if len(out) != 0 {
					t.Errorf("appended %d bytes while reporting false", len(out))
				}
				return
			}
			var e Parsed
			e.Decode(out)
			if e.EthSrc != macB || e.EthDst != macA || e.Src.As4() != ipC || e.Dst != p.Src ||
				e.ICMPType != tc.typ || e.ICMPCode != tc.code || e.TTL != DefaultTTL {
				t.Errorf("error decodes to %+v", e)
			}
			if got := e.ICMPv4().MTU(); got != tc.mtu {
				t.Errorf("MTU field %d, want %d", got, tc.mtu)
			}
			want := orig[p.L3Off : p.L3Off+p.IPHeaderLen+8]
			if e.QuotedOff == 0 || !bytes.Equal(e.Payload(), want) {
				t.Errorf("quoted %x, want %x", e.Payload(), want)
			}
			checkChecksums(t, out)
			g, _ := decodeGopacket(out).Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if g == nil || g.TypeCode != layers.CreateICMPv4TypeCode(tc.typ, tc.code) {
				t.Errorf("gopacket ICMP %+v", g)
			}
			buf := make([]byte, 0, 256)
			if n := testing.AllocsPerRun(100, func() { tc.build(buf, &p) }); n != 0 {
				t.Errorf("allocated %v times", n)
			}
		})
	}
}

// timeExceeded adapts AppendICMPTimeExceeded to the table.
func timeExceeded(f ICMPErrorFields) func([]byte, *Parsed) ([]byte, bool) {
	return func(d []byte, p *Parsed) ([]byte, bool) { return AppendICMPTimeExceeded(d, p, f) }
}

func TestAppendVXLAN(t *testing.T) {
	inner := tcpFrame(t)
	var ik FlowKey
	ExtractFlowKey(inner, 0, &ik)
	sport := VXLANSourcePort(ik.Hash())
	if sport < 49152 {
		t.Fatalf("VXLANSourcePort = %d, below the dynamic range", sport)
	}
	for _, withChecksum := range []bool{false, true} {
		f := UDP4Fields{EthSrc: macA, EthDst: macB, Src: ipA, Dst: ipC, TTL: 17, ID: 5, DontFragment: true,
			SrcPort: sport, Checksum: withChecksum}
		outer := AppendVXLAN(nil, f, 0x123456, inner)

		buf := make([]byte, 128+len(inner))
		copy(buf[128:], inner)
		inPlace, ok := EncapVXLANHeadroom(buf, 128, f, 0x123456)
		if !ok || !bytes.Equal(inPlace, outer) || &inPlace[0] != &buf[128-VXLANEncapLen] {
			t.Fatalf("EncapVXLANHeadroom differs from AppendVXLAN")
		}

		pkt := decodeGopacket(outer)
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		u, _ := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
		v, _ := pkt.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		if ip == nil || u == nil || v == nil {
			t.Fatalf("gopacket decoded %v", pkt)
		}
		if int(ip.Length) != len(outer)-EthernetHeaderLen || int(u.Length) != len(outer)-EthernetHeaderLen-IPv4MinHeaderLen ||
			ip.TTL != 17 || ip.Flags != layers.IPv4DontFragment || uint16(u.SrcPort) != sport || uint16(u.DstPort) != VXLANPort ||
			!v.ValidIDFlag || v.VNI != 0x123456 {
			t.Errorf("outer headers ip %+v udp %+v vxlan %+v", ip, u, v)
		}
		if withChecksum != (u.Checksum != 0) {
			t.Errorf("UDP checksum %#04x with checksum requested %v", u.Checksum, withChecksum)
		}
		var p Parsed
		p.Decode(outer)
		if !p.IPChecksumOK {
			t.Error("outer IPv4 checksum does not verify")
		}
		if withChecksum {
			checkChecksums(t, outer)
		}
		vni, got, ok := p.VXLAN(VXLANPort)
		if !ok || vni != 0x123456 || !bytes.Equal(got, inner) {
			t.Errorf("VXLAN() = %#x, %v", vni, ok)
		}
	}
	plain := AppendIPv4UDP(nil, UDP4Fields{Src: ipA, Dst: ipB, SrcPort: 1, DstPort: 2, Checksum: true}, []byte("data"))
	checkChecksums(t, plain)

	dst := make([]byte, 0, 256)
	buf := make([]byte, 128+len(inner))
	f := UDP4Fields{Src: ipA, Dst: ipC, SrcPort: sport, Checksum: true}
	if n := testing.AllocsPerRun(100, func() {
		AppendVXLAN(dst, f, 1, inner)
		EncapVXLANHeadroom(buf, 128, f, 1)
		ik.Hash()
	}); n != 0 {
		t.Errorf("VXLAN encapsulation allocated %v times", n)
	}
}

func TestFlowKeyHashSpreads(t *testing.T) {
	seen := map[uint16]bool{}
	for port := range uint16(256) {
		k := FlowKey{NwSrc: ipA, NwDst: ipB, NwProto: IPProtoTCP, TpSrc: 30000 + port, TpDst: 80}
		seen[VXLANSourcePort(k.Hash())] = true
	}
	if len(seen) < 200 {
		t.Errorf("256 flows map to only %d source ports", len(seen))
	}
}
