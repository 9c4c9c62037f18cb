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
	clientLL   = netip.MustParseAddr("fe80::11").As16()
	clientDUID = []byte{0, 1, 0, 1, 0x2a, 0x2b, 0x2c, 0x2d, 0x02, 0, 0, 0, 0, 0x11} // DUID-LLT of clientMAC
	otherDUID  = []byte{0, 2, 0, 0, 0x01, 0x37, 1, 2, 3, 4}                         // DUID-EN
)

// testSubnet6 has a host named by MAC (clientMAC), one by a whole DUID,
// and DNS servers.
func testSubnet6() topology.DHCPSubnetV6 {
	return topology.DHCPSubnetV6{Prefix: topology.Str("2001:db8:1::"), PrefixLength: 64,
		DNSServerAddrs: []string{"2001:db8:1::2"},
		Hosts: []topology.DHCPHostV6{
			{ClientID: topology.Str("02:00:00:00:00:11"), FixedAddress: topology.Str("2001:db8:1::11")},
			{ClientID: topology.Str("00-02-00-00-01-37-01-02-03-04"), FixedAddress: topology.Str("2001:db8:1::22")},
		}}
}

type spec6 struct {
	typ         layers.DHCPv6MsgType
	clientID    []byte
	serverID    []byte
	iaAddr      string // an address in the IA_NA, if any
	noIA        bool
	rapidCommit bool
}

func buildRequest6(t testing.TB, s spec6) []byte {
	t.Helper()
	d := &layers.DHCPv6{MsgType: s.typ, TransactionID: []byte{0xab, 0xcd, 0xef}}
	if s.clientID != nil {
		d.Options = append(d.Options, layers.NewDHCPv6Option(layers.DHCPv6OptClientID, s.clientID))
	}
	if s.serverID != nil {
		d.Options = append(d.Options, layers.NewDHCPv6Option(layers.DHCPv6OptServerID, s.serverID))
	}
	if !s.noIA {
		ia := binary.BigEndian.AppendUint32(nil, 7)
		ia = append(ia, make([]byte, 8)...)
		if s.iaAddr != "" {
			a := netip.MustParseAddr(s.iaAddr).As16()
			ia = appendIAAddr(ia, a, 100, 200)
		}
		d.Options = append(d.Options, layers.NewDHCPv6Option(layers.DHCPv6OptIANA, ia))
	}
	if s.rapidCommit {
		d.Options = append(d.Options, layers.NewDHCPv6Option(layers.DHCPv6OptRapidCommit, nil))
	}
	d.Options = append(d.Options, layers.NewDHCPv6Option(layers.DHCPv6OptOro, []byte{0, 23}))
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type reply6 struct {
	eth  *layers.Ethernet
	ip   *layers.IPv6
	udp  *layers.UDP
	msg  *layers.DHCPv6
	opts map[layers.DHCPv6Opt][][]byte
}

func decodeReply6(t testing.TB, frame []byte) reply6 {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if e := p.ErrorLayer(); e != nil {
		t.Fatalf("gopacket cannot decode the reply: %v", e.Error())
	}
	var r reply6
	var ok bool
	r.eth, _ = p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	r.ip, _ = p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	r.udp, _ = p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if r.msg, ok = p.Layer(layers.LayerTypeDHCPv6).(*layers.DHCPv6); !ok || r.ip == nil || r.udp == nil {
		t.Fatalf("no DHCPv6 reply in %v", p)
	}
	// The UDP checksum, recomputed with the IPv6 pseudo header.
	var ph [40]byte
	copy(ph[0:16], r.ip.SrcIP.To16())
	copy(ph[16:32], r.ip.DstIP.To16())
	udp := frame[14+40:]
	binary.BigEndian.PutUint32(ph[32:], uint32(len(udp)))
	ph[39] = 17
	if csum(udp, sum(ph[:], 0)) != 0 {
		t.Error("UDP checksum is wrong")
	}
	r.opts = map[layers.DHCPv6Opt][][]byte{}
	for _, o := range r.msg.Options {
		r.opts[o.Code] = append(r.opts[o.Code], o.Data)
	}
	return r
}

// iaAddrs returns the addresses and valid lifetimes in an IA_NA value.
func iaAddrs(t testing.TB, ia []byte) map[string]uint32 {
	t.Helper()
	out := map[string]uint32{}
	for o := ia[12:]; len(o) >= 4; {
		l := int(binary.BigEndian.Uint16(o[2:]))
		if binary.BigEndian.Uint16(o) == Opt6IAAddr {
			out[netip.AddrFrom16([16]byte(o[4:20])).String()] = binary.BigEndian.Uint32(o[24:28])
		}
		o = o[4+l:]
	}
	return out
}

func TestAnswer6(t *testing.T) {
	srv, problems := NewServer6([]topology.DHCPSubnetV6{testSubnet6()})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	tests := []struct {
		name    string
		ethSrc  [6]byte
		req     spec6
		outcome Outcome
		reply   layers.DHCPv6MsgType
		addrs   map[string]uint32 // in the IA_NA, with their valid lifetimes
		status  int               // top-level status code, -1 for none
		dns     bool
	}{
		{name: "solicit by DUID-LLT MAC gets an advertise", ethSrc: clientMAC,
			req: spec6{typ: layers.DHCPv6MsgTypeSolicit, clientID: clientDUID}, outcome: Answered,
			reply: layers.DHCPv6MsgTypeAdvertise, addrs: map[string]uint32{"2001:db8:1::11": 86400}, status: -1, dns: true},
		{name: "solicit with rapid commit gets a reply", ethSrc: clientMAC,
			req: spec6{typ: layers.DHCPv6MsgTypeSolicit, clientID: clientDUID, rapidCommit: true}, outcome: Answered,
			reply: layers.DHCPv6MsgTypeReply, addrs: map[string]uint32{"2001:db8:1::11": 86400}, status: -1, dns: true},
		{name: "solicit by a whole DUID", ethSrc: otherMAC,
			req: spec6{typ: layers.DHCPv6MsgTypeSolicit, clientID: otherDUID}, outcome: Answered,
			reply: layers.DHCPv6MsgTypeAdvertise, addrs: map[string]uint32{"2001:db8:1::22": 86400}, status: -1, dns: true},
		{name: "request is replied", ethSrc: clientMAC,
			req:     spec6{typ: layers.DHCPv6MsgTypeRequest, clientID: clientDUID, serverID: serverDUID, iaAddr: "2001:db8:1::11"},
			outcome: Answered, reply: layers.DHCPv6MsgTypeReply, addrs: map[string]uint32{"2001:db8:1::11": 86400}, status: -1, dns: true},
		{name: "renew of a stale address withdraws it", ethSrc: clientMAC,
			req:     spec6{typ: layers.DHCPv6MsgTypeRenew, clientID: clientDUID, serverID: serverDUID, iaAddr: "2001:db8:1::99"},
			outcome: Answered, reply: layers.DHCPv6MsgTypeReply,
			addrs: map[string]uint32{"2001:db8:1::11": 86400, "2001:db8:1::99": 0}, status: -1, dns: true},
		{name: "rebind is replied", ethSrc: clientMAC,
			req:     spec6{typ: layers.DHCPv6MsgTypeRebind, clientID: clientDUID, iaAddr: "2001:db8:1::11"},
			outcome: Answered, reply: layers.DHCPv6MsgTypeReply, addrs: map[string]uint32{"2001:db8:1::11": 86400}, status: -1, dns: true},
		{name: "request for another server is ignored", ethSrc: clientMAC,
			req:     spec6{typ: layers.DHCPv6MsgTypeRequest, clientID: clientDUID, serverID: otherDUID},
			outcome: Ignored},
		{name: "release is replied with success", ethSrc: clientMAC,
			req:     spec6{typ: layers.DHCPv6MsgTypeRelease, clientID: clientDUID, serverID: serverDUID, iaAddr: "2001:db8:1::11"},
			outcome: Answered, reply: layers.DHCPv6MsgTypeReply, status: 0},
		{name: "confirm on link", ethSrc: clientMAC,
			req:     spec6{typ: layers.DHCPv6MsgTypeConfirm, clientID: clientDUID, iaAddr: "2001:db8:1::11"},
			outcome: Answered, reply: layers.DHCPv6MsgTypeReply, status: 0},
		{name: "confirm off link", ethSrc: clientMAC,
			req:     spec6{typ: layers.DHCPv6MsgTypeConfirm, clientID: clientDUID, iaAddr: "2001:db8:9::11"},
			outcome: Answered, reply: layers.DHCPv6MsgTypeReply, status: status6NotOnLink},
		{name: "information-request gets DNS, by Ethernet source", ethSrc: clientMAC,
			req:     spec6{typ: layers.DHCPv6MsgTypeInformationRequest, noIA: true},
			outcome: Answered, reply: layers.DHCPv6MsgTypeReply, status: -1, dns: true},
		{name: "unknown client gets nothing", ethSrc: otherMAC,
			req: spec6{typ: layers.DHCPv6MsgTypeSolicit, clientID: []byte{0, 3, 0, 1, 2, 0, 0, 0, 0, 0x55}}, outcome: NoLease},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req Request6
			if err := req.Decode(buildRequest6(t, tc.req)); err != nil {
				t.Fatal(err)
			}
			out, ans := srv.AppendAnswer(nil, tc.ethSrc, clientLL, &req)
			if ans.Outcome != tc.outcome {
				t.Fatalf("outcome %v, want %v", ans.Outcome, tc.outcome)
			}
			if tc.outcome != Answered {
				if len(out) != 0 {
					t.Fatalf("%d bytes without an answer", len(out))
				}
				return
			}
			r := decodeReply6(t, out)
			if r.msg.MsgType != tc.reply || !bytes.Equal(r.msg.TransactionID, []byte{0xab, 0xcd, 0xef}) {
				t.Errorf("reply %v xid %x, want %v abcdef", r.msg.MsgType, r.msg.TransactionID, tc.reply)
			}
			if !bytes.Equal(r.eth.DstMAC, tc.ethSrc[:]) || !bytes.Equal(r.eth.SrcMAC, ServerMAC[:]) ||
				r.ip.SrcIP.String() != "fe80::a8:9cff:fede:3927" || r.ip.DstIP.String() != "fe80::11" ||
				r.udp.SrcPort != 547 || r.udp.DstPort != 546 {
				t.Errorf("addressed %v %v:%d → %v %v:%d", r.eth.SrcMAC, r.ip.SrcIP, r.udp.SrcPort, r.eth.DstMAC, r.ip.DstIP, r.udp.DstPort)
			}
			if sid := r.opts[layers.DHCPv6OptServerID]; len(sid) != 1 || !bytes.Equal(sid[0], serverDUID) {
				t.Errorf("server id %x, want %x", sid, serverDUID)
			}
			if tc.req.clientID != nil {
				if cid := r.opts[layers.DHCPv6OptClientID]; len(cid) != 1 || !bytes.Equal(cid[0], tc.req.clientID) {
					t.Errorf("client id %x not echoed", cid)
				}
			}
			got := map[string]uint32{}
			for _, ia := range r.opts[layers.DHCPv6OptIANA] {
				if binary.BigEndian.Uint32(ia) != 7 {
					t.Errorf("IAID %d, want the request's 7", binary.BigEndian.Uint32(ia))
				}
				for a, v := range iaAddrs(t, ia) {
					got[a] = v
				}
			}
			if len(got) != len(tc.addrs) {
				t.Errorf("addresses %v, want %v", got, tc.addrs)
			}
			for a, v := range tc.addrs {
				if g, ok := got[a]; !ok || g != v {
					t.Errorf("address %s valid %d (present %v), want %d", a, g, ok, v)
				}
			}
			st := r.opts[layers.DHCPv6OptStatusCode]
			switch {
			case tc.status < 0 && len(st) != 0:
				t.Errorf("status %x, want none", st)
			case tc.status >= 0 && (len(st) != 1 || int(binary.BigEndian.Uint16(st[0])) != tc.status):
				t.Errorf("status %x, want %d", st, tc.status)
			}
			dns := r.opts[layers.DHCPv6OptDNSServers]
			if tc.dns != (len(dns) == 1 && bytes.Equal(dns[0], net.ParseIP("2001:db8:1::2"))) {
				t.Errorf("DNS %x, want it %v", dns, tc.dns)
			}
		})
	}
}

func TestDecode6Malformed(t *testing.T) {
	good := buildRequest6(t, spec6{typ: layers.DHCPv6MsgTypeSolicit, clientID: clientDUID, iaAddr: "2001:db8:1::11"})
	tests := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"header cut", good[:3], ErrTruncated},
		{"an advertise", append([]byte{2}, good[1:]...), ErrNotClient6},
		{"relayed", append([]byte{12}, good[1:]...), ErrNotClient6},
		{"option cut", good[:len(good)-1], ErrOption},
		{"option header cut", append(bytes.Clone(good[:4]), 0, 1, 0), ErrOption},
		{"no client id", buildRequest6(t, spec6{typ: layers.DHCPv6MsgTypeSolicit}), ErrNoClientID},
		{"short client id", append(bytes.Clone(good[:4]), 0, 1, 0, 1, 9), ErrOptionValue},
		{"short IA_NA", append(bytes.Clone(good[:4]), 0, 3, 0, 4, 0, 0, 0, 1), ErrOptionValue},
		{"IA_NA sub-option overrun", append(bytes.Clone(good[:4]), 0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 24), ErrOption},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Request6
			if err := r.Decode(tc.msg); !errors.Is(err, tc.want) {
				t.Fatalf("Decode = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseClientID6(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []byte
		ok   bool
	}{
		{"02:00:00:00:00:11", []byte{2, 0, 0, 0, 0, 0x11}, true},
		{"00-03-00-01-02-00-00-00-00-11", []byte{0, 3, 0, 1, 2, 0, 0, 0, 0, 0x11}, true},
		{"0:3:0:1:2:a:b:c:d:e", []byte{0, 3, 0, 1, 2, 0xa, 0xb, 0xc, 0xd, 0xe}, true},
		{"vm1", nil, false},
		{"00:zz", nil, false},
		{"001:02", nil, false},
	} {
		got, err := ParseClientID6(tc.in)
		if (err == nil) != tc.ok || !bytes.Equal(got, tc.want) {
			t.Errorf("ParseClientID6(%q) = %x, %v; want %x ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestAnswer6DoesNotAllocate(t *testing.T) {
	srv, _ := NewServer6([]topology.DHCPSubnetV6{testSubnet6()})
	msg := buildRequest6(t, spec6{typ: layers.DHCPv6MsgTypeRequest, clientID: clientDUID, serverID: serverDUID, iaAddr: "2001:db8:1::11"})
	buf := make([]byte, 0, 2048)
	if n := testing.AllocsPerRun(100, func() {
		var r Request6
		if r.Decode(msg) != nil {
			t.Fatal("decode failed")
		}
		buf, _ = srv.AppendAnswer(buf[:0], clientMAC, clientLL, &r)
	}); n != 0 {
		t.Fatalf("%v allocations per request, want 0", n)
	}
}

// FuzzRequest6 feeds arbitrary messages to the DHCPv6 decoder and server:
// replies must decode with gopacket, with a valid checksum, echoing the
// transaction id.
func FuzzRequest6(f *testing.F) {
	for _, s := range []spec6{
		{typ: layers.DHCPv6MsgTypeSolicit, clientID: clientDUID},
		{typ: layers.DHCPv6MsgTypeSolicit, clientID: clientDUID, rapidCommit: true},
		{typ: layers.DHCPv6MsgTypeRequest, clientID: clientDUID, serverID: serverDUID, iaAddr: "2001:db8:1::11"},
		{typ: layers.DHCPv6MsgTypeRenew, clientID: clientDUID, serverID: serverDUID, iaAddr: "2001:db8:1::99"},
		{typ: layers.DHCPv6MsgTypeConfirm, clientID: clientDUID, iaAddr: "2001:db8:9::1"},
		{typ: layers.DHCPv6MsgTypeInformationRequest, noIA: true},
		{typ: layers.DHCPv6MsgTypeRelease, clientID: otherDUID, serverID: serverDUID},
	} {
		f.Add(buildRequest6(f, s))
	}
	srv, _ := NewServer6([]topology.DHCPSubnetV6{testSubnet6()})
	f.Fuzz(func(t *testing.T, msg []byte) {
		var req Request6
		if req.Decode(msg) != nil {
			return
		}
		out, ans := srv.AppendAnswer(nil, clientMAC, clientLL, &req)
		if ans.Outcome != Answered {
			return
		}
		r := decodeReply6(t, out)
		if !bytes.Equal(r.msg.TransactionID, req.XID[:]) || r.msg.MsgType != layers.DHCPv6MsgType(ans.Reply) {
			t.Fatalf("reply %v xid %x for %v xid %x", r.msg.MsgType, r.msg.TransactionID, req.Type, req.XID)
		}
	})
}
