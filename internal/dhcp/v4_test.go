package dhcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/midonet/midonet/internal/topology"
)

var (
	clientMAC = [6]byte{0x02, 0, 0, 0, 0, 0x11}
	otherMAC  = [6]byte{0x02, 0, 0, 0, 0, 0x99}
	relayMAC  = [6]byte{0x02, 0, 0, 0, 0, 0x77}
)

func intp(n int) *int { return &n }

// testSubnet is a subnet with one host for clientMAC at 10.0.1.11, every
// subnet option set, and two extra options.
func testSubnet() topology.DHCPSubnet {
	return topology.DHCPSubnet{
		SubnetPrefix: topology.Str("10.0.1.0"), SubnetLength: 24,
		DefaultGateway: topology.Str("10.0.1.1"), ServerAddr: topology.Str("10.0.1.2"),
		DNSServerAddrs: []string{"10.0.1.2", "8.8.8.8"}, InterfaceMTU: intp(1400),
		Opt121Routes: []topology.Opt121Route{{DestinationPrefix: topology.Str("169.254.169.254"), DestinationLength: 32,
			GatewayAddr: topology.Str("10.0.1.2")}},
		Enabled: true,
		Hosts: []topology.DHCPHost{{MacAddr: topology.Str("02:00:00:00:00:11"), IPAddr: topology.Str("10.0.1.11"),
			Name: topology.Str("vm1.example.org"),
			ExtraDHCPOpts: []topology.DHCPOption{{OptName: "domain-search", OptValue: "example.org,example.net"},
				{OptName: "ntp_server", OptValue: "10.0.1.3"}}}},
	}
}

func newTestServer(t *testing.T, subnets ...topology.DHCPSubnet) *Server4 {
	t.Helper()
	s, problems := NewServer4(subnets, Defaults{MTU: 1450})
	if len(problems) > 0 {
		t.Fatalf("NewServer4: %v", problems)
	}
	return s
}

// requestSpec describes a client message, built by gopacket (an encoder
// independent of ours).
type requestSpec struct {
	typ         layers.DHCPMsgType
	chaddr      [6]byte
	ciaddr      [4]byte
	giaddr      [4]byte
	broadcast   bool
	requestedIP []byte
	serverID    []byte
	relayInfo   []byte
}

func buildRequest(t testing.TB, r requestSpec) []byte {
	t.Helper()
	d := &layers.DHCPv4{Operation: layers.DHCPOpRequest, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6,
		Xid: 0x1234abcd, ClientIP: net.IP(r.ciaddr[:]), YourClientIP: net.IPv4zero, NextServerIP: net.IPv4zero,
		RelayAgentIP: net.IP(r.giaddr[:]), ClientHWAddr: net.HardwareAddr(r.chaddr[:])}
	if r.broadcast {
		d.Flags = 0x8000
	}
	d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(r.typ)}))
	if r.requestedIP != nil {
		d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptRequestIP, r.requestedIP))
	}
	if r.serverID != nil {
		d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptServerID, r.serverID))
	}
	d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptParamsRequest, []byte{1, 3, 6, 15, 26, 121}))
	if r.relayInfo != nil {
		d.Options = append(d.Options, layers.NewDHCPOption(82, r.relayInfo))
	}
	d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptEnd, nil))
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// reply is a reply frame as gopacket decodes it.
type reply struct {
	eth  *layers.Ethernet
	ip   *layers.IPv4
	udp  *layers.UDP
	dhcp *layers.DHCPv4
	opts map[layers.DHCPOpt][]byte
}

func decodeReply(t testing.TB, frame []byte) reply {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if e := p.ErrorLayer(); e != nil {
		t.Fatalf("gopacket cannot decode the reply: %v", e.Error())
	}
	var r reply
	var ok bool
	if r.eth, ok = p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !ok {
		t.Fatal("no Ethernet layer")
	}
	if r.ip, ok = p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); !ok {
		t.Fatal("no IPv4 layer")
	}
	if r.udp, ok = p.Layer(layers.LayerTypeUDP).(*layers.UDP); !ok {
		t.Fatal("no UDP layer")
	}
	if r.dhcp, ok = p.Layer(layers.LayerTypeDHCPv4).(*layers.DHCPv4); !ok {
		t.Fatal("no DHCPv4 layer")
	}
	// Checksums, recomputed independently.
	ipHdr := frame[14 : 14+r.ip.IHL*4]
	if csum(ipHdr, 0) != 0 {
		t.Error("IPv4 header checksum is wrong")
	}
	udp := frame[14+int(r.ip.IHL)*4 : 14+int(r.ip.Length)]
	var ph [12]byte
	copy(ph[0:4], r.ip.SrcIP.To4())
	copy(ph[4:8], r.ip.DstIP.To4())
	ph[9] = 17
	binary.BigEndian.PutUint16(ph[10:], uint16(len(udp)))
	if csum(udp, sum(ph[:], 0)) != 0 {
		t.Error("UDP checksum is wrong")
	}
	r.opts = map[layers.DHCPOpt][]byte{}
	for _, o := range r.dhcp.Options {
		r.opts[o.Type] = append(r.opts[o.Type], o.Data...)
	}
	return r
}

func sum(b []byte, s uint32) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func csum(b []byte, init uint32) uint16 {
	s := sum(b, init)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func ip4(s string) []byte { return netip.MustParseAddr(s).AsSlice() }

func TestAnswer4(t *testing.T) {
	srv := newTestServer(t, testSubnet())
	bcastMAC := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	tests := []struct {
		name      string
		ethSrc    [6]byte
		req       requestSpec
		outcome   Outcome
		reply     layers.DHCPMsgType
		ethDst    net.HardwareAddr
		ipDst     string
		udpDst    layers.UDPPort
		yiaddr    string
		leaseOpts bool // the full set of lease options is present
		relayInfo []byte
	}{
		{name: "discover gets an offer, unicast to the address offered", ethSrc: clientMAC,
			req: requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: clientMAC}, outcome: Answered,
			reply: layers.DHCPMsgTypeOffer, ethDst: clientMAC[:], ipDst: "10.0.1.11", udpDst: 68, yiaddr: "10.0.1.11", leaseOpts: true},
		{name: "discover with the broadcast flag gets a broadcast offer", ethSrc: clientMAC,
			req:     requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: clientMAC, broadcast: true},
			outcome: Answered, reply: layers.DHCPMsgTypeOffer, ethDst: bcastMAC, ipDst: "255.255.255.255", udpDst: 68,
			yiaddr: "10.0.1.11", leaseOpts: true},
		{name: "request for the offered address is acked", ethSrc: clientMAC,
			req: requestSpec{typ: layers.DHCPMsgTypeRequest, chaddr: clientMAC, requestedIP: ip4("10.0.1.11"),
				serverID: ip4("10.0.1.2")},
			outcome: Answered, reply: layers.DHCPMsgTypeAck, ethDst: clientMAC[:], ipDst: "10.0.1.11", udpDst: 68,
			yiaddr: "10.0.1.11", leaseOpts: true},
		{name: "renew (ciaddr, no option 50) is acked to ciaddr", ethSrc: clientMAC,
			req:     requestSpec{typ: layers.DHCPMsgTypeRequest, chaddr: clientMAC, ciaddr: [4]byte{10, 0, 1, 11}},
			outcome: Answered, reply: layers.DHCPMsgTypeAck, ethDst: clientMAC[:], ipDst: "10.0.1.11", udpDst: 68,
			yiaddr: "10.0.1.11", leaseOpts: true},
		{name: "stale lease (init-reboot) gets a NAK at once", ethSrc: clientMAC,
			req:     requestSpec{typ: layers.DHCPMsgTypeRequest, chaddr: clientMAC, requestedIP: ip4("10.0.1.50")},
			outcome: Answered, reply: layers.DHCPMsgTypeNak, ethDst: bcastMAC, ipDst: "255.255.255.255", udpDst: 68,
			yiaddr: "0.0.0.0"},
		{name: "renewing someone else's address gets a NAK", ethSrc: clientMAC,
			req:     requestSpec{typ: layers.DHCPMsgTypeRequest, chaddr: clientMAC, ciaddr: [4]byte{10, 0, 1, 50}},
			outcome: Answered, reply: layers.DHCPMsgTypeNak, ethDst: bcastMAC, ipDst: "255.255.255.255", udpDst: 68,
			yiaddr: "0.0.0.0"},
		{name: "request selecting another server is ignored", ethSrc: clientMAC,
			req: requestSpec{typ: layers.DHCPMsgTypeRequest, chaddr: clientMAC, requestedIP: ip4("10.0.1.11"),
				serverID: ip4("10.0.1.99")},
			outcome: Ignored},
		{name: "inform is acked to ciaddr without lease times", ethSrc: clientMAC,
			req:     requestSpec{typ: layers.DHCPMsgTypeInform, chaddr: clientMAC, ciaddr: [4]byte{10, 0, 1, 11}},
			outcome: Answered, reply: layers.DHCPMsgTypeAck, ethDst: clientMAC[:], ipDst: "10.0.1.11", udpDst: 68,
			yiaddr: "0.0.0.0"},
		{name: "release is consumed silently", ethSrc: clientMAC,
			req:     requestSpec{typ: layers.DHCPMsgTypeRelease, chaddr: clientMAC, ciaddr: [4]byte{10, 0, 1, 11}},
			outcome: Ignored},
		{name: "decline is consumed silently", ethSrc: clientMAC,
			req: requestSpec{typ: layers.DHCPMsgTypeDecline, chaddr: clientMAC}, outcome: Ignored},
		{name: "unknown MAC gets nothing", ethSrc: otherMAC,
			req: requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: otherMAC}, outcome: NoLease},
		{name: "the Ethernet source, not chaddr, names a direct client", ethSrc: otherMAC,
			req: requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: clientMAC}, outcome: NoLease},
		{name: "a relayed discover is answered to the relay, option 82 echoed", ethSrc: relayMAC,
			req: requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: clientMAC, giaddr: [4]byte{10, 0, 1, 254},
				relayInfo: []byte{1, 3, 'e', 't', 'h'}},
			outcome: Answered, reply: layers.DHCPMsgTypeOffer, ethDst: relayMAC[:], ipDst: "10.0.1.254", udpDst: 67,
			yiaddr: "10.0.1.11", leaseOpts: true, relayInfo: []byte{1, 3, 'e', 't', 'h'}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := buildRequest(t, tc.req)
			var req Request4
			if err := req.Decode(msg); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			out, ans := srv.AppendAnswer(nil, tc.ethSrc, &req)
			if ans.Outcome != tc.outcome {
				t.Fatalf("outcome %v, want %v", ans.Outcome, tc.outcome)
			}
			if tc.outcome != Answered {
				if len(out) != 0 {
					t.Fatalf("%d bytes written without an answer", len(out))
				}
				return
			}
			r := decodeReply(t, out)
			if r.dhcp.Operation != layers.DHCPOpReply || r.dhcp.Xid != 0x1234abcd {
				t.Errorf("op %v xid %#x, want reply with the request's xid", r.dhcp.Operation, r.dhcp.Xid)
			}
			if !bytes.Equal(r.dhcp.ClientHWAddr, tc.req.chaddr[:]) {
				t.Errorf("chaddr %v, want %v", r.dhcp.ClientHWAddr, tc.req.chaddr)
			}
			if got := r.opts[layers.DHCPOptMessageType]; len(got) != 1 || layers.DHCPMsgType(got[0]) != tc.reply {
				t.Errorf("message type %v, want %v", got, tc.reply)
			}
			if !bytes.Equal(r.eth.SrcMAC, ServerMAC[:]) || !bytes.Equal(r.eth.DstMAC, tc.ethDst) {
				t.Errorf("Ethernet %v -> %v, want %v -> %v", r.eth.SrcMAC, r.eth.DstMAC, ServerMAC, tc.ethDst)
			}
			if r.ip.SrcIP.String() != "10.0.1.2" || r.ip.DstIP.String() != tc.ipDst {
				t.Errorf("IP %v -> %v, want 10.0.1.2 -> %s", r.ip.SrcIP, r.ip.DstIP, tc.ipDst)
			}
			if r.udp.SrcPort != 67 || r.udp.DstPort != tc.udpDst {
				t.Errorf("UDP %d -> %d, want 67 -> %d", r.udp.SrcPort, r.udp.DstPort, tc.udpDst)
			}
			if r.dhcp.YourClientIP.String() != tc.yiaddr {
				t.Errorf("yiaddr %v, want %s", r.dhcp.YourClientIP, tc.yiaddr)
			}
			if got := r.opts[layers.DHCPOptServerID]; !bytes.Equal(got, ip4("10.0.1.2")) {
				t.Errorf("server id %v, want 10.0.1.2", got)
			}
			if !bytes.Equal(r.opts[82], tc.relayInfo) {
				t.Errorf("relay info %v, want %v", r.opts[82], tc.relayInfo)
			}
			if len(out) < 14+20+8+300 {
				t.Errorf("reply of %d bytes: BOOTP wants at least 300 bytes of message", len(out))
			}
			_, hasLease := r.opts[layers.DHCPOptLeaseTime]
			_, hasMask := r.opts[layers.DHCPOptSubnetMask]
			if tc.leaseOpts != hasLease || (tc.reply != layers.DHCPMsgTypeNak) != hasMask {
				t.Errorf("lease time present %v, mask present %v; want %v, %v", hasLease, hasMask, tc.leaseOpts,
					tc.reply != layers.DHCPMsgTypeNak)
			}
		})
	}
}

// TestOptions4 checks every option a lease carries, decoded by gopacket.
func TestOptions4(t *testing.T) {
	sub := testSubnet()
	sub.Hosts = append(sub.Hosts, topology.DHCPHost{MacAddr: topology.Str("02:00:00:00:00:12"),
		IPAddr: topology.Str("10.0.1.12"), Name: topology.Str("not a host name"),
		ExtraDHCPOpts: []topology.DHCPOption{{OptName: "26", OptValue: "9000"}, {OptName: "IP_LEASE_TIME", OptValue: "60"},
			{OptName: "router", OptValue: "10.0.1.254"}}})
	noGW := topology.DHCPSubnet{SubnetPrefix: topology.Str("10.0.2.0"), SubnetLength: 24, Enabled: true,
		Opt121Routes: []topology.Opt121Route{{DestinationPrefix: topology.Str("192.168.0.0"), DestinationLength: 16,
			GatewayAddr: topology.Str("10.0.2.3")}},
		Hosts: []topology.DHCPHost{{MacAddr: topology.Str("02:00:00:00:00:21"), IPAddr: topology.Str("10.0.2.21")}}}
	srv := newTestServer(t, sub, noGW)
	tests := []struct {
		name string
		mac  [6]byte
		want map[layers.DHCPOpt][]byte
		none []layers.DHCPOpt
	}{
		{name: "subnet options, host name and domain, extra options", mac: clientMAC, want: map[layers.DHCPOpt][]byte{
			layers.DHCPOptSubnetMask:    ip4("255.255.255.0"),
			layers.DHCPOptRouter:        ip4("10.0.1.1"),
			layers.DHCPOptDNS:           append(ip4("10.0.1.2"), ip4("8.8.8.8")...),
			layers.DHCPOptInterfaceMTU:  {0x05, 0x78}, // 1400, the subnet's
			layers.DHCPOptBroadcastAddr: ip4("10.0.1.255"),
			layers.DHCPOptLeaseTime:     {0, 1, 0x51, 0x80}, // 86400
			layers.DHCPOptHostname:      []byte("vm1"),
			layers.DHCPOptDomainName:    []byte("example.org"),
			// 169.254.169.254/32 via 10.0.1.2, then the default route via the gateway.
			layers.DHCPOptClasslessStaticRoute: {32, 169, 254, 169, 254, 10, 0, 1, 2, 0, 10, 0, 1, 1},
			layers.DHCPOptNTPServers:           ip4("10.0.1.3"),
			119:                                append([]byte("\x07example\x03org\x00"), "\x07example\x03net\x00"...),
		}},
		{name: "extra options override the subnet's; a name that is no host name is not sent",
			mac: [6]byte{2, 0, 0, 0, 0, 0x12}, want: map[layers.DHCPOpt][]byte{
				layers.DHCPOptInterfaceMTU: {0x23, 0x28}, // 9000
				layers.DHCPOptLeaseTime:    {0, 0, 0, 60},
				layers.DHCPOptRouter:       ip4("10.0.1.254"),
			}, none: []layers.DHCPOpt{layers.DHCPOptHostname, layers.DHCPOptDomainName}},
		{name: "no gateway: no router, no default route in 121, server is the first address, MTU the default",
			mac: [6]byte{2, 0, 0, 0, 0, 0x21}, want: map[layers.DHCPOpt][]byte{
				layers.DHCPOptServerID:             ip4("10.0.2.1"),
				layers.DHCPOptInterfaceMTU:         {0x05, 0xaa}, // 1450
				layers.DHCPOptClasslessStaticRoute: {16, 192, 168, 10, 0, 2, 3},
			}, none: []layers.DHCPOpt{layers.DHCPOptRouter, layers.DHCPOptDNS}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req Request4
			if err := req.Decode(buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: tc.mac})); err != nil {
				t.Fatal(err)
			}
			out, ans := srv.AppendAnswer(nil, tc.mac, &req)
			if ans.Outcome != Answered {
				t.Fatalf("outcome %v", ans.Outcome)
			}
			r := decodeReply(t, out)
			for code, want := range tc.want {
				if got := r.opts[code]; !bytes.Equal(got, want) {
					t.Errorf("option %v = %v, want %v", code, got, want)
				}
			}
			for _, code := range tc.none {
				if got, ok := r.opts[code]; ok {
					t.Errorf("option %v = %v, want none", code, got)
				}
			}
		})
	}
}

func TestDisabledSubnet(t *testing.T) {
	sub := testSubnet()
	sub.Enabled = false
	srv := newTestServer(t, sub)
	var req Request4
	if err := req.Decode(buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: clientMAC})); err != nil {
		t.Fatal(err)
	}
	out, ans := srv.AppendAnswer(nil, clientMAC, &req)
	if ans.Outcome != Disabled || len(out) != 0 {
		t.Fatalf("outcome %v with %d bytes, want disabled and nothing", ans.Outcome, len(out))
	}
	if len(srv.ServerAddrs()) != 0 {
		t.Errorf("a disabled subnet's server address is answered for: %v", srv.ServerAddrs())
	}
}

// TestLongOption checks that a value over 255 bytes is split (RFC 3396)
// and that gopacket reassembles it.
func TestLongOption(t *testing.T) {
	sub := testSubnet()
	var domains []byte
	var list string
	for i := range 30 {
		if i > 0 {
			list += ","
		}
		d := "d" + string(rune('a'+i%26)) + ".example.org"
		list += d
		domains, _ = appendDomain(domains, d)
	}
	sub.Hosts[0].ExtraDHCPOpts = []topology.DHCPOption{{OptName: "domain-search", OptValue: list}}
	srv := newTestServer(t, sub)
	var req Request4
	if err := req.Decode(buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: clientMAC})); err != nil {
		t.Fatal(err)
	}
	out, _ := srv.AppendAnswer(nil, clientMAC, &req)
	r := decodeReply(t, out)
	if len(domains) <= 255 || !bytes.Equal(r.opts[119], domains) {
		t.Fatalf("option 119 of %d bytes = %d bytes after reassembly", len(domains), len(r.opts[119]))
	}
}

func TestDecodeMalformed(t *testing.T) {
	good := buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: clientMAC})
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	optAt := optionsOff
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"shorter than BOOTP", good[:200], ErrTruncated},
		{"a reply", mutate(func(b []byte) []byte { b[0] = 2; return b }), ErrNotRequest},
		{"not Ethernet", mutate(func(b []byte) []byte { b[1] = 6; return b }), ErrHWAddr},
		{"hlen not 6", mutate(func(b []byte) []byte { b[2] = 16; return b }), ErrHWAddr},
		{"no magic cookie", mutate(func(b []byte) []byte { b[bootpLen] = 0; return b }), ErrMagic},
		{"cut before the cookie", good[:bootpLen+2], ErrMagic},
		{"no options at all", good[:optionsOff], ErrNoType},
		{"option length overruns", append(bytes.Clone(good[:optAt]), 53, 1, 1, 55, 40, 1), ErrOption},
		{"option header cut", append(bytes.Clone(good[:optAt]), 53, 1, 1, 55), ErrOption},
		{"message type of length 2", append(bytes.Clone(good[:optAt]), 53, 2, 1, 1, 255), ErrNoType},
		{"unknown message type", append(bytes.Clone(good[:optAt]), 53, 1, 42, 255), ErrNoType},
		{"requested IP of 3 bytes", append(bytes.Clone(good[:optAt]), 53, 1, 3, 50, 3, 1, 2, 3, 255), ErrOptionValue},
		{"empty parameter list", append(bytes.Clone(good[:optAt]), 53, 1, 1, 55, 0, 255), ErrOptionValue},
		{"bad overload value", append(bytes.Clone(good[:optAt]), 53, 1, 1, 52, 1, 9, 255), ErrOptionValue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request4
			if err := r.Decode(tc.msg); !errors.Is(err, tc.want) {
				t.Fatalf("Decode = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestOverload checks options carried in the file field (option 52).
func TestOverload(t *testing.T) {
	msg := buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: clientMAC})
	msg = append(msg[:optionsOff], 52, 1, 1, 255)
	copy(msg[fileOff:], []byte{53, 1, 3, 50, 4, 10, 0, 1, 11, 255})
	var r Request4
	if err := r.Decode(msg); err != nil {
		t.Fatal(err)
	}
	if r.Type != Request || !r.HasRequestedIP || r.RequestedIP != [4]byte{10, 0, 1, 11} {
		t.Fatalf("decoded %+v, want a REQUEST for 10.0.1.11 from the file field", r)
	}
}

func TestAnswerDoesNotAllocate(t *testing.T) {
	srv := newTestServer(t, testSubnet())
	msg := buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeRequest, chaddr: clientMAC, requestedIP: ip4("10.0.1.11")})
	buf := make([]byte, 0, 2048)
	n := testing.AllocsPerRun(100, func() {
		var r Request4
		if r.Decode(msg) != nil {
			t.Fatal("decode failed")
		}
		buf, _ = srv.AppendAnswer(buf[:0], clientMAC, &r)
	})
	if n != 0 {
		t.Fatalf("%v allocations per request, want 0", n)
	}
}

func BenchmarkAnswer4(b *testing.B) {
	srv, _ := NewServer4([]topology.DHCPSubnet{testSubnet()}, Defaults{})
	msg := buildRequest(b, requestSpec{typ: layers.DHCPMsgTypeRequest, chaddr: clientMAC, requestedIP: ip4("10.0.1.11")})
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		var r Request4
		_ = r.Decode(msg)
		buf, _ = srv.AppendAnswer(buf[:0], clientMAC, &r)
	}
}

// TestAppendRequest4 checks the client-side encoder with gopacket and our
// own decoder.
func TestAppendRequest4(t *testing.T) {
	f := RequestFields{Type: Request, XID: 7, CHAddr: clientMAC, RequestedIP: [4]byte{10, 0, 1, 11},
		ServerID: [4]byte{10, 0, 1, 2}, Broadcast: true}
	frame := AppendRequest4(nil, f)
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	d, ok := p.Layer(layers.LayerTypeDHCPv4).(*layers.DHCPv4)
	if !ok || p.ErrorLayer() != nil {
		t.Fatalf("gopacket: %v", p)
	}
	if d.Xid != 7 || !bytes.Equal(d.ClientHWAddr, clientMAC[:]) || d.Flags != 0x8000 {
		t.Errorf("gopacket reads xid %d chaddr %v flags %#x", d.Xid, d.ClientHWAddr, d.Flags)
	}
	udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	var r Request4
	if err := r.Decode(udp.Payload); err != nil {
		t.Fatal(err)
	}
	if r.Type != Request || r.RequestedIP != f.RequestedIP || r.ServerID != f.ServerID || !r.Broadcast() {
		t.Errorf("decoded %+v from %+v", r, f)
	}
}
