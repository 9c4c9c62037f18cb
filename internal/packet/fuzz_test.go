package packet

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// fuzzSeeds returns one labelled frame per decoder branch. They run as
// ordinary test cases in a plain `go test`.
func fuzzSeeds(t testing.TB) []struct {
	name  string
	frame []byte
} {
	maxOptions := ip4(layers.IPProtocolTCP)
	maxOptions.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 39, OptionData: make([]byte, 37)}, {OptionType: 0}}
	firstFrag := ip4(layers.IPProtocolUDP)
	firstFrag.Flags = layers.IPv4MoreFragments
	laterFrag := ip4(layers.IPProtocolTCP)
	laterFrag.FragOffset = 3
	badVersion := tcpFrame(t)
	badVersion[EthernetHeaderLen] = 0x65
	shortIHL := tcpFrame(t)
	shortIHL[EthernetHeaderLen] = 0x44
	hugeIHL := tcpFrame(t)
	hugeIHL[EthernetHeaderLen] = 0x4f
	badTCPOffset := tcpFrame(t)
	badTCPOffset[EthernetHeaderLen+IPv4MinHeaderLen+12] = 0xf0
	var echo Parsed
	echoFrame := echoRequest(t, false)
	echo.Decode(echoFrame)
	reply, _ := AppendICMPEchoReply(nil, &echo)
	return []struct {
		name  string
		frame []byte
	}{
		{"empty", nil},
		{"truncated ethernet", tcpFrame(t)[:13]},
		{"ethernet only", tcpFrame(t)[:14]},
		{"truncated vlan tag", PushVLAN(nil, tcpFrame(t), 7)[:16]},
		{"vlan tcp", PushVLAN(nil, tcpFrame(t), 0x2007)},
		{"double vlan", PushVLAN(nil, PushVLAN(nil, udpFrame(t), 5), 6)},
		{"tcp", tcpFrame(t)},
		{"udp", udpFrame(t)},
		{"truncated ipv4 header", tcpFrame(t)[:EthernetHeaderLen+IPv4MinHeaderLen-1]},
		{"truncated tcp header", tcpFrame(t)[:EthernetHeaderLen+IPv4MinHeaderLen+19]},
		{"bad ip version", badVersion},
		{"ihl below minimum", shortIHL},
		{"ihl beyond frame", hugeIHL[:EthernetHeaderLen+40]},
		{"tcp data offset beyond segment", badTCPOffset},
		{"max ipv4 options", serialize(t, eth(layers.EthernetTypeIPv4), maxOptions, tcp(1, 2))},
		{"first fragment", serialize(t, eth(layers.EthernetTypeIPv4), firstFrag, udp(3, 4), gopacket.Payload("12345678"))},
		{"later fragment", serialize(t, eth(layers.EthernetTypeIPv4), laterFrag, gopacket.Payload("12345678"))},
		{"icmp echo request with options", echoFrame},
		{"icmp echo reply", reply},
		{"icmp error quoting tcp", icmpErrorFrame(t)},
		{"icmp error truncated quote", icmpErrorFrame(t)[:14+20+8+20+4]},
		{"arp request", AppendARPRequest(nil, macA, ipA, ipB)},
		{"truncated arp", AppendARPReply(nil, macA, ipA, macB, ipB)[:40]},
		{"ipv6 tcp", serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolTCP), tcp(1, 2))},
		{"ipv6 fragment", serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolIPv6Fragment),
			&layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, FragmentOffset: 2, Identification: 1}, gopacket.Payload("later"))},
		{"ipv6 truncated hop by hop", mustHex(t, `02000000000b 02000000000a 86dd
			60000000 0010 00 40 # payload 16, next header hop-by-hop, hop limit
			20010db8000000000000000000000001 20010db8000000000000000000000002
			06 05 # hop-by-hop: next TCP, length 48 bytes but the frame ends`)},
		{"icmpv6", serialize(t, eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolICMPv6), gopacket.Payload{128, 0, 0, 0, 0, 1, 0, 1})},
		{"vxlan", vxlanFrame(t)},
		{"vxlan without I flag", func() []byte {
			f := vxlanFrame(t)
			f[UDP4HeadersLen] = 0
			return f
		}()},
	}
}

func addSeeds(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.frame)
	}
}

// checkParsedInvariants checks what must hold for any input.
func checkParsedInvariants(t *testing.T, p *Parsed, frame []byte) {
	t.Helper()
	n := len(frame)
	if (p.Layer >= Layer2) != (n >= EthernetHeaderLen) {
		t.Fatalf("Layer %v for a %d-byte frame", p.Layer, n)
	}
	if p.Layer == LayerNone {
		return
	}
	if p.L3Off != EthernetHeaderLen && p.L3Off != EthernetHeaderLen+VLANTagLen || p.L3Off > n {
		t.Fatalf("L3Off %d in a %d-byte frame", p.L3Off, n)
	}
	if p.IPVersion != 0 {
		if p.Layer < Layer3 || p.IPEnd > n || p.L3Off+p.IPHeaderLen > p.IPEnd {
			t.Fatalf("IP offsets L3 %d hl %d end %d in %d bytes, layer %v", p.L3Off, p.IPHeaderLen, p.IPEnd, n, p.Layer)
		}
	}
	if p.Layer == Layer4 {
		if p.IPVersion == 0 || p.Frag == FragLater {
			t.Fatalf("L4 decoded for IP version %d, frag %d", p.IPVersion, p.Frag)
		}
		if p.L4Off != p.L3Off+p.IPHeaderLen || p.PayloadOff <= p.L4Off || p.PayloadOff > p.IPEnd {
			t.Fatalf("L4 offsets %d..%d, IP %d+%d..%d", p.L4Off, p.PayloadOff, p.L3Off, p.IPHeaderLen, p.IPEnd)
		}
	}
	if p.QuotedOff != 0 {
		q := p.Quoted()
		if !q.IsValid() || len(p.QuotedL4()) != 8 || p.QuotedOff+q.HeaderLen()+8 > p.IPEnd {
			t.Fatalf("QuotedOff %d does not hold a valid quote", p.QuotedOff)
		}
	}
	// The views must be safe to read wherever Decode exposed them.
	if ip := p.IPv4(); ip != nil {
		_, _, _ = ip.Options(), ip.Payload(), ip.CalculateChecksum()
		if p.IPChecksumOK {
			// decode(encode(x)) == x for the header.
			re := make(IPv4, ip.HeaderLen())
			re.Encode(IPv4Fields{TOS: ip.TOS(), TotalLen: ip.TotalLen(), ID: ip.ID(), Flags: ip.Flags(),
				FragOff: ip.FragmentOffset(), TTL: ip.TTL(), Protocol: ip.Protocol(), Src: ip.Src(), Dst: ip.Dst(),
				Options: ip.Options()})
			if !bytes.Equal(re, ip[:ip.HeaderLen()]) {
				t.Fatalf("IPv4 header re-encodes to %x, decoded from %x", re, ip[:ip.HeaderLen()])
			}
		}
	}
	if tcp := p.TCP(); tcp != nil {
		hdr := tcp[:tcp.DataOffset()]
		re := make(TCP, len(hdr))
		re.Encode(TCPFields{SrcPort: tcp.SrcPort(), DstPort: tcp.DstPort(), Seq: tcp.Seq(), Ack: tcp.Ack(),
			Flags: tcp.Flags(), Window: tcp.Window(), Checksum: tcp.Checksum(), Urgent: tcp.Urgent(), Options: tcp.Options()})
		// The reserved bits next to the data offset are not carried by TCPFields.
		re[12] |= hdr[12] & 0x0f
		if !bytes.Equal(re, hdr) {
			t.Fatalf("TCP header re-encodes to %x, decoded from %x", re, hdr)
		}
	}
	if p.EthType == EtherTypeARP && p.Layer >= Layer3 {
		a := ARP(frame[p.L3Off : p.L3Off+ARPIPv4Len])
		re := make(ARP, ARPIPv4Len)
		re.Encode(ARPFields{Op: p.ARPOp, SHA: p.ARPSHA, THA: p.ARPTHA, SPA: p.ARPSPA, TPA: p.ARPTPA})
		if !bytes.Equal(re, a) {
			t.Fatalf("ARP re-encodes to %x, decoded from %x", re, a)
		}
	}
	_ = p.Payload()
	if vni, inner, ok := p.VXLAN(VXLANPort); ok {
		var in Parsed
		in.Decode(inner)
		checkParsedInvariants(t, &in, inner)
		if vni>>24 != 0 {
			t.Fatalf("VNI %#x wider than 24 bits", vni)
		}
	}
	var key FlowKey
	p.FlowKey(3, &key)
	if key.InPort != 3 || key.EthType != p.EthType {
		t.Fatalf("FlowKey %+v from %+v", key, p)
	}
}

func FuzzDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var p Parsed
		p.Decode(frame)
		checkParsedInvariants(t, &p, frame)
		var again Parsed
		again.Decode(bytes.Clone(frame))
		if !reflect.DeepEqual(again, p) {
			t.Fatal("Decode is not deterministic")
		}
	})
}

func FuzzExtractFlowKey(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		key := FlowKey{TunID: 9, NwProto: 200}
		ok := ExtractFlowKey(frame, 4, &key)
		if ok != (len(frame) >= EthernetHeaderLen) {
			t.Fatalf("ExtractFlowKey = %v for %d bytes", ok, len(frame))
		}
		var p Parsed
		p.Decode(frame)
		var want FlowKey
		p.FlowKey(4, &want)
		want.TunID = 9
		if key != want {
			t.Fatalf("ExtractFlowKey %+v, Parsed.FlowKey %+v", key, want)
		}
		if key.NwFrag == FragLater && (key.TpSrc != 0 || key.TpDst != 0) {
			t.Fatalf("later fragment with ports %d %d", key.TpSrc, key.TpDst)
		}
	})
}

// l4ChecksumValid reports whether a decoded, complete IPv4 TCP or UDP
// datagram's checksum verifies (UDP zero meaning none).
func l4ChecksumValid(p *Parsed) (valid, applicable bool) {
	ip := p.IPv4()
	if ip == nil || p.Layer < Layer4 || p.Frag != FragNone || int(ip.TotalLen()) != len(ip) {
		return false, false
	}
	seg := ip.Payload()
	switch {
	case p.IPProto == IPProtoTCP:
	case p.IPProto == IPProtoUDP && UDP(seg).Checksum() != 0:
		if int(UDP(seg).Length()) != len(seg) {
			return false, false
		}
	default:
		return false, false
	}
	return Checksum(seg, PseudoHeaderSum4(ip.Src(), ip.Dst(), p.IPProto, uint16(len(seg)))) == 0, true
}

func FuzzRewrites(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.frame, uint32(0x0a000063), uint16(4242), uint8(0x20))
	}
	f.Fuzz(func(t *testing.T, frame []byte, addr uint32, port uint16, b uint8) {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], addr)
		var p Parsed
		p.Decode(frame)
		ipOK := p.IPChecksumOK
		l4Valid, l4Applicable := l4ChecksumValid(&p)
		udpNoChecksum := p.UDP() != nil && p.UDP().Checksum() == 0
		isIPv4 := p.IPVersion == 4
		icmpValid := p.ICMPv4() != nil && p.ICMPv4().IsChecksumValid()
		quoteValid := p.QuotedOff != 0 && p.Quoted().IsChecksumValid()
		if p.SetQuotedIPv4Src(a) != (p.QuotedOff != 0) || p.SetQuotedIPv4Dst(a) != (p.QuotedOff != 0) {
			t.Fatal("SetQuotedIPv4Src/Dst applicability")
		}
		p.SetQuotedSrcPort(port)
		p.SetQuotedDstPort(port)

		if p.SetIPv4Src(a) != isIPv4 || p.SetIPv4Dst(a) != isIPv4 {
			t.Fatal("SetIPv4Src/Dst applicability")
		}
		p.SetTOS(b)
		p.SetTTL(b)
		p.DecTTL()
		p.SetSrcPort(port)
		p.SetDstPort(port)
		p.SetICMPEchoIdent(port)
		p.SetEthSrc(macC)

		var q Parsed
		q.Decode(frame)
		checkParsedInvariants(t, &q, frame)
		if isIPv4 {
			if q.Src.As4() != a || q.Dst.As4() != a {
				t.Fatalf("addresses %v %v, want %v", q.Src, q.Dst, a)
			}
			if ipOK && !q.IPChecksumOK {
				t.Fatal("a valid IPv4 header checksum became invalid")
			}
		}
		if icmpValid && !q.ICMPv4().IsChecksumValid() {
			t.Fatal("a valid ICMP checksum became invalid")
		}
		if quoteValid && !q.Quoted().IsChecksumValid() {
			t.Fatal("a valid quoted IPv4 header checksum became invalid")
		}
		if q.QuotedOff != 0 && (q.Quoted().Src() != a || q.Quoted().Dst() != a) {
			t.Fatal("quoted addresses not rewritten")
		}
		if l4Applicable {
			if v, _ := l4ChecksumValid(&q); v != l4Valid {
				t.Fatalf("L4 checksum validity changed from %v to %v", l4Valid, v)
			}
		}
		if udpNoChecksum && q.UDP().Checksum() != 0 {
			t.Fatal("UDP zero checksum was filled in")
		}
		if !reflect.DeepEqual(q, p) {
			t.Fatalf("Parsed after rewrites\n %+v\nfresh decode\n %+v", p, q)
		}
	})
}

func FuzzVLANPushPop(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.frame, uint16(0x2064))
	}
	f.Fuzz(func(t *testing.T, frame []byte, tci uint16) {
		tagged := PushVLAN(nil, frame, tci)
		if len(frame) < EthernetHeaderLen {
			if len(tagged) != 0 {
				t.Fatal("PushVLAN tagged a runt")
			}
			return
		}
		var p Parsed
		p.Decode(tagged)
		if !p.HasVLAN || p.VLANTCI != tci {
			t.Fatalf("pushed tag decodes as %v %#x", p.HasVLAN, p.VLANTCI)
		}
		buf := append(make([]byte, 4), frame...)
		inPlace, ok := PushVLANHeadroom(buf, 4, tci)
		if !ok || !bytes.Equal(inPlace, tagged) {
			t.Fatal("PushVLANHeadroom differs from PushVLAN")
		}
		popped, ok := PopVLAN(tagged)
		if !ok || !bytes.Equal(popped, frame) {
			t.Fatalf("pop(push(x)) = %x, want %x", popped, frame)
		}
	})
}
