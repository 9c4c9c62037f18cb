package packet

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// fullL4Checksum recomputes the TCP or UDP checksum of a decoded IPv4 frame
// from scratch, with the stored field taken as zero.
func fullL4Checksum(t *testing.T, p *Parsed) uint16 {
	t.Helper()
	ip := p.IPv4()
	l4 := bytes.Clone(ip.Payload())
	off := 16
	if p.IPProto == IPProtoUDP {
		off = 6
	}
	l4[off], l4[off+1] = 0, 0
	c := Checksum(l4, PseudoHeaderSum4(ip.Src(), ip.Dst(), p.IPProto, uint16(len(l4))))
	if c == 0 && p.IPProto == IPProtoUDP {
		c = 0xffff
	}
	return c
}

// checkChecksums asserts that the frame's checksums equal a full
// recomputation and that gopacket, re-encoding what it decodes with fresh
// checksums, produces the same bytes.
func checkChecksums(t *testing.T, frame []byte) {
	t.Helper()
	var p Parsed
	p.Decode(frame)
	if ip := p.IPv4(); ip != nil {
		if got, want := ip.Checksum(), ip.CalculateChecksum(); got != want {
			t.Errorf("IPv4 header checksum %#04x, full recompute %#04x", got, want)
		}
		switch {
		case p.TCP() != nil:
			if got, want := p.TCP().Checksum(), fullL4Checksum(t, &p); got != want {
				t.Errorf("TCP checksum %#04x, full recompute %#04x", got, want)
			}
		case p.UDP() != nil && p.UDP().Checksum() != 0:
			if got, want := p.UDP().Checksum(), fullL4Checksum(t, &p); got != want {
				t.Errorf("UDP checksum %#04x, full recompute %#04x", got, want)
			}
		case p.ICMPv4() != nil:
			if !p.ICMPv4().IsChecksumValid() {
				t.Errorf("ICMP checksum does not verify")
			}
		}
	}
	if p.UDP() != nil && p.UDP().Checksum() == 0 {
		return // gopacket would compute a checksum the frame deliberately lacks
	}
	want := frame
	if len(want) < 60 { // gopacket pads to the Ethernet minimum
		want = append(bytes.Clone(frame), make([]byte, 60-len(frame))...)
	}
	if re := reencodeWithGopacket(t, frame); !bytes.Equal(re, want) {
		t.Errorf("gopacket re-encoding differs:\n got %x\nwant %x", want, re)
	}
}

func reencodeWithGopacket(t *testing.T, frame []byte) []byte {
	t.Helper()
	pkt := decodeGopacket(frame)
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	transport := false
	for _, l := range pkt.Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			nl = l
		case *layers.TCP:
			_ = l.SetNetworkLayerForChecksum(nl)
			transport = true
		case *layers.UDP:
			_ = l.SetNetworkLayerForChecksum(nl)
			transport = true
		case *layers.ICMPv4:
			transport = true
		}
		sl, ok := l.(gopacket.SerializableLayer)
		if !ok {
			t.Fatalf("gopacket layer %v is not serializable", l.LayerType())
		}
		ls = append(ls, sl)
		if transport {
			// Random ports may name an application gopacket would try to
			// decode; keep the payload opaque instead.
			ls = append(ls, gopacket.Payload(l.LayerPayload()))
			break
		}
	}
	if !transport {
		if el := pkt.ErrorLayer(); el != nil {
			t.Fatalf("gopacket cannot decode: %v", el.Error())
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("gopacket serialize: %v", err)
	}
	return buf.Bytes()
}

var (
	macC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	ipC  = [4]byte{172, 16, 254, 3}
)

// rewriteFrames are the frames the rewrite tests rewrite.
var rewriteFrames = []struct {
	name  string
	frame func(t testing.TB) []byte
}{
	{"tcp", tcpFrame},
	{"udp", udpFrame},
	{"udp without checksum", func(t testing.TB) []byte {
		f := udpFrame(t)
		f[14+20+6], f[14+20+7] = 0, 0
		return f
	}},
	{"tcp with ip options and vlan", func(t testing.TB) []byte {
		ip := ip4(layers.IPProtocolTCP)
		ip.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: 11, OptionData: []byte{4, 1, 2, 3, 4, 5, 6, 7, 8}}}
		return serialize(t, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeIPv4},
			ip, tcp(1, 2), gopacket.Payload("odd"))
	}},
	{"icmp echo", func(t testing.TB) []byte {
		return serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 3}, gopacket.Payload("ping!"))
	}},
}

func TestRewrites(t *testing.T) {
	rewrites := []struct {
		name  string
		apply func(p *Parsed) bool
		check func(p *Parsed) bool // on a fresh decode of the result
		l4    bool                 // applies only to TCP/UDP
		icmp  bool                 // applies only to ICMP echo
	}{
		{"eth src", func(p *Parsed) bool { return p.SetEthSrc(macC) }, func(p *Parsed) bool { return p.EthSrc == macC }, false, false},
		{"eth dst", func(p *Parsed) bool { return p.SetEthDst(macC) }, func(p *Parsed) bool { return p.EthDst == macC }, false, false},
		{"ipv4 src", func(p *Parsed) bool { return p.SetIPv4Src(ipC) }, func(p *Parsed) bool { return p.Src.As4() == ipC }, false, false},
		{"ipv4 dst", func(p *Parsed) bool { return p.SetIPv4Dst(ipC) }, func(p *Parsed) bool { return p.Dst.As4() == ipC }, false, false},
		{"tos", func(p *Parsed) bool { return p.SetTOS(0xb8) }, func(p *Parsed) bool { return p.TOS == 0xb8 }, false, false},
		{"ttl", func(p *Parsed) bool { return p.SetTTL(200) }, func(p *Parsed) bool { return p.TTL == 200 }, false, false},
		{"dec ttl", func(p *Parsed) bool { return p.DecTTL() }, func(p *Parsed) bool { return p.TTL == 63 }, false, false},
		{"src port", func(p *Parsed) bool { return p.SetSrcPort(61000) }, func(p *Parsed) bool { return p.SrcPort == 61000 }, true, false},
		{"dst port", func(p *Parsed) bool { return p.SetDstPort(8443) }, func(p *Parsed) bool { return p.DstPort == 8443 }, true, false},
		{"echo ident", func(p *Parsed) bool { return p.SetICMPEchoIdent(0x4242) }, func(p *Parsed) bool { return p.ICMPIdent == 0x4242 }, false, true},
	}
	for _, fc := range rewriteFrames {
		for _, rc := range rewrites {
			t.Run(fc.name+"/"+rc.name, func(t *testing.T) {
				frame := fc.frame(t)
				var p Parsed
				p.Decode(frame)
				isL4 := p.IPProto == IPProtoTCP || p.IPProto == IPProtoUDP
				isEcho := p.IPProto == IPProtoICMP
				applicable := (!rc.l4 || isL4) && (!rc.icmp || isEcho)
				noChecksum := p.UDP() != nil && p.UDP().Checksum() == 0
				if got := rc.apply(&p); got != applicable {
					t.Fatalf("rewrite reported %v, want %v", got, applicable)
				}
				if !applicable {
					return
				}
				if !rc.check(&p) {
					t.Errorf("Parsed not updated: %+v", p)
				}
				var fresh Parsed
				fresh.Decode(frame)
				if !rc.check(&fresh) {
					t.Errorf("frame not rewritten: %+v", fresh)
				}
				if noChecksum && fresh.UDP().Checksum() != 0 {
					t.Errorf("UDP zero checksum became %#04x", fresh.UDP().Checksum())
				}
				checkChecksums(t, frame)
				if n := testing.AllocsPerRun(50, func() { rc.apply(&p) }); n != 0 {
					t.Errorf("rewrite allocated %v times per run", n)
				}
			})
		}
	}
}

func TestRewriteNotApplicable(t *testing.T) {
	arp := serialize(t, eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet,
		Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
		SourceHwAddress: macA[:], SourceProtAddress: ipA[:], DstHwAddress: make([]byte, 6), DstProtAddress: ipB[:]})
	orig := bytes.Clone(arp)
	var p Parsed
	p.Decode(arp)
	for name, f := range map[string]func() bool{
		"SetIPv4Src": func() bool { return p.SetIPv4Src(ipC) },
		"SetTTL":     func() bool { return p.SetTTL(3) },
		"DecTTL":     func() bool { return p.DecTTL() },
		"SetSrcPort": func() bool { return p.SetSrcPort(1) },
		"SetEchoID":  func() bool { return p.SetICMPEchoIdent(1) },
	} {
		if f() {
			t.Errorf("%s on ARP reported true", name)
		}
	}
	if !bytes.Equal(arp, orig) {
		t.Error("frame changed by rewrites that do not apply")
	}
	var short Parsed
	short.Decode(make([]byte, 10))
	if short.SetEthSrc(macC) {
		t.Error("SetEthSrc on a 10-byte frame reported true")
	}
}

func TestDecTTLStopsAtOne(t *testing.T) {
	for _, ttl := range []uint8{0, 1} {
		f := tcpFrame(t)
		var p Parsed
		p.Decode(f)
		p.SetTTL(ttl)
		before := bytes.Clone(f)
		if p.DecTTL() {
			t.Errorf("DecTTL at TTL %d reported true", ttl)
		}
		if !bytes.Equal(before, f) {
			t.Errorf("DecTTL at TTL %d changed the frame", ttl)
		}
	}
}

func TestUDPRewriteAvoidsZeroChecksum(t *testing.T) {
	f := udpFrame(t)
	var p Parsed
	p.Decode(f)
	check := p.UDP().Checksum()
	// Find the source port whose incremental update would yield 0x0000.
	port, found := uint16(0), false
	for cand := range 1 << 16 {
		if ChecksumUpdate16(check, p.SrcPort, uint16(cand)) == 0 {
			port, found = uint16(cand), true
			break
		}
	}
	if !found {
		t.Fatal("no port yields a zero checksum")
	}
	p.SetSrcPort(port)
	if got := p.UDP().Checksum(); got != 0xffff {
		t.Errorf("UDP checksum %#04x, want 0xffff (RFC 768: computed zero is sent as all ones)", got)
	}
	checkChecksums(t, f)
}

// TestRewriteProperty applies random address and port rewrites to random
// TCP and UDP frames and compares with full recomputation.
func TestRewriteProperty(t *testing.T) {
	r := newRand(t)
	for i := range 300 {
		payload := make([]byte, r.IntN(64))
		for j := range payload {
			payload[j] = byte(r.UintN(256))
		}
		var l4 gopacket.SerializableLayer = tcp(uint16(r.UintN(1<<16)), uint16(r.UintN(1<<16)))
		proto := layers.IPProtocolTCP
		if i%2 == 1 {
			l4, proto = udp(uint16(r.UintN(1<<16)), uint16(r.UintN(1<<16))), layers.IPProtocolUDP
		}
		frame := serialize(t, eth(layers.EthernetTypeIPv4), ip4(proto), l4, gopacket.Payload(payload))
		var p Parsed
		p.Decode(frame)
		for range 4 {
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], r.Uint32())
			switch r.IntN(5) {
			case 0:
				p.SetIPv4Src(a)
			case 1:
				p.SetIPv4Dst(a)
			case 2:
				p.SetSrcPort(uint16(r.UintN(1 << 16)))
			case 3:
				p.SetDstPort(uint16(r.UintN(1 << 16)))
			case 4:
				p.SetTOS(uint8(r.UintN(256)))
			}
		}
		checkChecksums(t, frame)
		if t.Failed() {
			t.Fatalf("frame %x", frame)
		}
	}
}

func TestVLANPushPop(t *testing.T) {
	orig := tcpFrame(t)
	tci := uint16(3<<13 | 42)

	tagged := PushVLAN(make([]byte, 0, 128), orig, tci)
	var p Parsed
	p.Decode(tagged)
	if !p.HasVLAN || p.VLANTCI != tci || p.EthType != EtherTypeIPv4 || p.SrcPort != 40000 || p.EthSrc != macA {
		t.Fatalf("pushed frame decodes to %+v", p)
	}
	pkt := decodeGopacket(tagged)
	if d, ok := pkt.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q); !ok || d.VLANIdentifier != 42 || d.Priority != 3 {
		t.Errorf("gopacket sees Dot1Q %+v", pkt.Layer(layers.LayerTypeDot1Q))
	}

	buf := make([]byte, 16+len(orig))
	copy(buf[16:], orig)
	inPlace, ok := PushVLANHeadroom(buf, 16, tci)
	if !ok || !bytes.Equal(inPlace, tagged) || &inPlace[0] != &buf[12] {
		t.Fatalf("PushVLANHeadroom = %x, %v; want %x at buf[12:]", inPlace, ok, tagged)
	}
	if _, ok := PushVLANHeadroom(buf, 3, tci); ok {
		t.Error("PushVLANHeadroom with 3 bytes of headroom reported true")
	}

	popped, ok := PopVLAN(inPlace)
	if !ok || !bytes.Equal(popped, orig) {
		t.Fatalf("PopVLAN = %x, %v; want %x", popped, ok, orig)
	}
	if _, ok := PopVLAN(orig); ok {
		t.Error("PopVLAN of an untagged frame reported true")
	}

	dst := make([]byte, 0, 128)
	if n := testing.AllocsPerRun(100, func() {
		f := PushVLAN(dst, orig, tci)
		f, _ = PopVLAN(f)
		_, _ = PushVLANHeadroom(buf, 16, tci)
	}); n != 0 {
		t.Errorf("VLAN push/pop allocated %v times per run", n)
	}
}

// TestQuotedRewrites translates the datagram quoted by an ICMP error and
// checks it against the original datagram translated the same way.
func TestQuotedRewrites(t *testing.T) {
	router := ICMPErrorFields{EthSrc: macB, EthDst: macA, Src: ipC}
	for _, tc := range []struct {
		name  string
		frame func(testing.TB) []byte
	}{{"udp", udpFrame}, {"tcp", tcpFrame}} {
		t.Run(tc.name, func(t *testing.T) {
			origFrame := tc.frame(t)
			var orig Parsed
			orig.Decode(origFrame)
			errFrame, ok := AppendICMPUnreachable(nil, &orig, router, ICMPCodePortUnreachable, 0)
			if !ok {
				t.Fatal("no ICMP error built")
			}
			var e Parsed
			e.Decode(errFrame)
			newSrc, newDst := [4]byte{100, 64, 0, 9}, [4]byte{198, 51, 100, 1}
			if !e.SetQuotedIPv4Src(newSrc) || !e.SetQuotedIPv4Dst(newDst) || !e.SetQuotedSrcPort(1111) || !e.SetQuotedDstPort(2222) {
				t.Fatal("a quoted rewrite reported false")
			}
			// The same translation applied to the original datagram.
			orig.SetIPv4Src(newSrc)
			orig.SetIPv4Dst(newDst)
			orig.SetSrcPort(1111)
			orig.SetDstPort(2222)
			want := origFrame[orig.L3Off : orig.L3Off+orig.IPHeaderLen+8]
			if got := e.Payload(); !bytes.Equal(got, want) {
				t.Errorf("quote %x, want the translated original %x", got, want)
			}
			if !e.ICMPv4().IsChecksumValid() || !e.Quoted().IsChecksumValid() {
				t.Error("ICMP or quoted IPv4 checksum does not verify")
			}
			checkChecksums(t, errFrame)
			if n := testing.AllocsPerRun(50, func() { e.SetQuotedIPv4Src(ipA); e.SetQuotedSrcPort(7) }); n != 0 {
				t.Errorf("quoted rewrites allocated %v times", n)
			}
		})
	}
	var p Parsed
	p.Decode(tcpFrame(t))
	if p.SetQuotedIPv4Src(ipA) || p.SetQuotedSrcPort(1) {
		t.Error("quoted rewrite on a frame without a quote reported true")
	}
}

func BenchmarkRewriteNAT(b *testing.B) {
	frame := tcpFrame(b)
	var p Parsed
	p.Decode(frame)
	b.ReportAllocs()
	for b.Loop() {
		p.SetIPv4Src(ipC)
		p.SetSrcPort(61000)
		p.DecTTL()
		p.SetTTL(64)
		p.SetEthDst(macC)
	}
}

// The set arguments of datapath actions and Parsed's methods are two ways
// into one implementation: on every frame they give the same bytes, with
// checksums equal to a full recomputation.
func TestSetsApplyAsParsedRewrites(t *testing.T) {
	cases := []struct {
		name   string
		set    func(f []byte, proto uint8) bool
		parsed func(p *Parsed)
	}{
		{"eth both", func(f []byte, _ uint8) bool {
			return (&EthernetSet{Src: macC, Dst: macA, Fields: SetSrc | SetDst}).Apply(f)
		}, func(p *Parsed) { p.SetEthSrc(macC); p.SetEthDst(macA) }},
		{"snat", func(f []byte, _ uint8) bool {
			return (&IPv4Set{Src: ipC, Fields: SetSrc}).Apply(f, L4ChecksumComplete)
		}, func(p *Parsed) { p.SetIPv4Src(ipC) }},
		{"dnat and ttl", func(f []byte, _ uint8) bool {
			return (&IPv4Set{Dst: ipC, TTL: 9, Fields: SetDst | SetTTL}).Apply(f, L4ChecksumComplete)
		}, func(p *Parsed) { p.SetIPv4Dst(ipC); p.SetTTL(9) }},
		{"tos", func(f []byte, _ uint8) bool {
			return (&IPv4Set{TOS: 0xb8, Fields: SetTOS}).Apply(f, L4ChecksumComplete)
		}, func(p *Parsed) { p.SetTOS(0xb8) }},
		{"same address", func(f []byte, _ uint8) bool {
			var p Parsed
			p.Decode(f)
			return (&IPv4Set{Src: p.Src.As4(), Fields: SetSrc}).Apply(f, L4ChecksumComplete)
		}, func(p *Parsed) { p.SetIPv4Src(p.Src.As4()) }},
		{"ports", func(f []byte, proto uint8) bool {
			return (&L4Set{Src: 61000, Dst: 8443, Fields: SetSrc | SetDst}).Apply(f, proto, L4ChecksumComplete)
		}, func(p *Parsed) { p.SetSrcPort(61000); p.SetDstPort(8443) }},
	}
	for _, fc := range rewriteFrames {
		for _, c := range cases {
			t.Run(fc.name+"/"+c.name, func(t *testing.T) {
				viaSet, viaParsed := fc.frame(t), fc.frame(t)
				var p Parsed
				p.Decode(viaParsed)
				proto := p.IPProto
				c.parsed(&p)
				c.set(viaSet, proto)
				if !bytes.Equal(viaSet, viaParsed) {
					t.Fatalf("the set and Parsed disagree:\n set    %x\n parsed %x", viaSet, viaParsed)
				}
				checkChecksums(t, viaSet)
				if n := testing.AllocsPerRun(50, func() { c.set(viaSet, proto) }); n != 0 {
					t.Errorf("Apply allocated %v times per run", n)
				}
			})
		}
	}
}

// With the L4 checksum left to offload, rewrites keep the field the
// pseudo-header sum of the rewritten packet: finishing it afterwards gives
// what a full recomputation gives.
func TestPartialChecksumFollowsRewrites(t *testing.T) {
	for _, tc := range l4Frames {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.frame(t)
			partial(f, tc.proto)
			if !(&IPv4Set{Src: ipC, Dst: ipA, TTL: 3, Fields: SetSrc | SetDst | SetTTL}).Apply(f, L4ChecksumPartial) ||
				!(&L4Set{Src: 4000, Dst: 5000, Fields: SetSrc | SetDst}).Apply(f, tc.proto, L4ChecksumPartial) {
				t.Fatal("a rewrite refused the frame")
			}
			if !FinishPartialChecksum(f) {
				t.Fatal("after the rewrites the field is no longer the pseudo-header sum")
			}
			checkChecksums(t, f)
		})
	}
}

// IPv4Headers finds the headers datapaths rewrite without decoding the
// frame, and refuses what is not IPv4.
func TestIPv4Headers(t *testing.T) {
	tagged := serialize(t, eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 10, Type: layers.EthernetTypeIPv4},
		ip4(layers.IPProtocolUDP), udp(1, 2), gopacket.Payload("x"))
	later := udpFrame(t)
	later[14+6], later[14+7] = 0, 10 // fragment offset 80
	for _, tc := range []struct {
		name         string
		frame        []byte
		ipOff, l4Len int // ipOff 0: no IPv4 header; l4Len -1: no L4
	}{
		{"untagged", udpFrame(t), 14, len(udpFrame(t)) - 34},
		{"tagged", tagged, 18, len(tagged) - 38},
		{"later fragment", later, 14, -1},
		{"truncated", udpFrame(t)[:30], 0, 0},
		{"arp", mustHex(t, "ffffffffffff0200000000010806"), 0, 0},
		{"short", []byte{1, 2, 3}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ip, l4 := IPv4Headers(tc.frame)
			switch {
			case tc.ipOff == 0:
				if ip != nil {
					t.Fatalf("found an IPv4 header at %d", len(tc.frame)-len(ip))
				}
			case ip == nil:
				t.Fatal("no IPv4 header found")
			case len(tc.frame)-len(ip) != tc.ipOff:
				t.Fatalf("IPv4 header at %d, want %d", len(tc.frame)-len(ip), tc.ipOff)
			case tc.l4Len < 0 && l4 != nil, tc.l4Len >= 0 && len(l4) != tc.l4Len:
				t.Fatalf("L4 of %d bytes (nil %v), want %d", len(l4), l4 == nil, tc.l4Len)
			}
		})
	}
}
