package ovs

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

var (
	macA = [6]byte{0x02, 0, 0, 0, 0, 0xaa}
	macB = [6]byte{0x02, 0, 0, 0, 0, 0xbb}
)

func fullMask() packet.FlowKey { return exactMask }

// encodeDecode encodes key and mask as PutFlow does and decodes them as a
// dump does.
func encodeDecode(t *testing.T, key, mask *packet.FlowKey) (gotKey, gotMask packet.FlowKey) {
	t.Helper()
	k := matchKey(key, mask)
	var e encoder
	appendKey(&e, &k)
	if !decodeKey(e.b, &gotKey, false) {
		t.Fatalf("decode key %x failed", e.b)
	}
	var m encoder
	appendMask(&m, &k, mask)
	if !decodeKey(m.b, &gotMask, true) {
		t.Fatalf("decode mask %x failed", m.b)
	}
	return gotKey, gotMask
}

func TestKeyMaskRoundTrip(t *testing.T) {
	ipv4UDP := packet.FlowKey{
		InPort: 3, EthSrc: macA, EthDst: macB, EthType: 0x0800,
		NwSrc: [4]byte{10, 0, 0, 1}, NwDst: [4]byte{10, 0, 0, 2}, NwProto: 17, NwTOS: 0x10, NwTTL: 64,
		TpSrc: 1234, TpDst: 53,
	}
	tcp := ipv4UDP
	tcp.NwProto = 6
	icmp := ipv4UDP
	icmp.NwProto, icmp.TpSrc, icmp.TpDst = 1, 8, 0
	later := ipv4UDP
	later.NwFrag, later.TpSrc, later.TpDst = packet.FragLater, 0, 0
	first := ipv4UDP
	first.NwFrag = packet.FragFirst
	vlan := tcp
	vlan.VLAN = 0x0064 | packet.VLANPresent
	arp := packet.FlowKey{
		InPort: 1, EthSrc: macA, EthDst: [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthType: 0x0806,
		NwSrc: [4]byte{10, 0, 0, 1}, NwDst: [4]byte{10, 0, 0, 9}, NwProto: 1, ARPSHA: macA,
	}
	tunnel := ipv4UDP
	tunnel.TunID, tunnel.TunSrc, tunnel.TunDst, tunnel.TunTOS, tunnel.TunTTL = 0x1234, [4]byte{192, 168, 0, 1}, [4]byte{192, 168, 0, 2}, 0, 64
	ipv6 := packet.FlowKey{
		InPort: 2, EthSrc: macA, EthDst: macB, EthType: 0x86dd, NwProto: 17, NwTTL: 64, TpSrc: 1, TpDst: 2,
		IPv6Src: [16]byte{0xfe, 0x80, 15: 1}, IPv6Dst: [16]byte{0xfe, 0x80, 15: 2},
	}

	l2Mask := packet.FlowKey{InPort: ^uint32(0), EthSrc: exactMask.EthSrc, EthDst: exactMask.EthDst, VLAN: 0xffff}
	l3Mask := l2Mask
	l3Mask.EthType, l3Mask.NwDst = 0xffff, [4]byte{255, 255, 255, 0}
	tunMask := l2Mask
	tunMask.TunID = ^uint32(0)

	tests := []struct {
		name      string
		key, mask packet.FlowKey
	}{
		{"ipv4 udp exact", ipv4UDP, fullMask()},
		{"ipv4 tcp exact", tcp, fullMask()},
		{"icmp exact", icmp, fullMask()},
		{"later fragment has no ports", later, fullMask()},
		{"first fragment keeps ports", first, fullMask()},
		{"vlan tcp exact", vlan, fullMask()},
		{"arp exact", arp, fullMask()},
		{"tunnel exact", tunnel, fullMask()},
		{"ipv6 udp exact", ipv6, fullMask()},
		{"l2 only", tcp, l2Mask},
		{"l3 prefix", tcp, l3Mask},
		{"tunnel id only", tunnel, tunMask},
		{"vlan l2 only", vlan, l2Mask},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotKey, gotMask := encodeDecode(t, &tc.key, &tc.mask)
			// What the kernel can express: the masked key, under the mask
			// cut to the shape of the key.
			wantKey := tc.key.Masked(&tc.mask)
			if gotKey.Masked(&gotMask) != wantKey.Masked(&gotMask) {
				t.Errorf("masked key:\n got  %+v\n want %+v", gotKey.Masked(&gotMask), wantKey.Masked(&gotMask))
			}
			// Every field the caller masked and the shape allows survives.
			if gotMask.InPort != tc.mask.InPort {
				t.Errorf("in_port mask %#x, want %#x", gotMask.InPort, tc.mask.InPort)
			}
			if gotMask.EthSrc != tc.mask.EthSrc || gotMask.EthDst != tc.mask.EthDst {
				t.Errorf("ethernet mask %x %x, want %x %x", gotMask.EthSrc, gotMask.EthDst, tc.mask.EthSrc, tc.mask.EthDst)
			}
			if gotMask.EthType != tc.mask.EthType {
				t.Errorf("ethertype mask %#x, want %#x", gotMask.EthType, tc.mask.EthType)
			}
			if tc.mask.EthType == 0xffff && tc.key.EthType == 0x0800 && (gotMask.NwSrc != tc.mask.NwSrc || gotMask.NwDst != tc.mask.NwDst) {
				t.Errorf("ipv4 mask %v %v, want %v %v", gotMask.NwSrc, gotMask.NwDst, tc.mask.NwSrc, tc.mask.NwDst)
			}
			if gotMask.TunID != tc.mask.TunID&0xffffffff && (tc.key.TunID != 0) {
				t.Errorf("tun_id mask %#x, want %#x", gotMask.TunID, tc.mask.TunID)
			}
			if tc.mask == exactMask && gotKey.Masked(&gotMask) != tc.key {
				t.Errorf("exact key changed:\n got  %+v\n want %+v", gotKey, tc.key)
			}
		})
	}
}

func TestKeyShapeFollowsKernelRules(t *testing.T) {
	tcp := packet.FlowKey{InPort: 1, EthSrc: macA, EthDst: macB, EthType: 0x0800, NwProto: 6, NwTTL: 64, TpSrc: 1, TpDst: 2}
	later := tcp
	later.NwFrag, later.TpSrc, later.TpDst = packet.FragLater, 0, 0
	tagged := tcp
	tagged.VLAN = 5 | packet.VLANPresent
	protoFree := exactMask
	protoFree.NwProto = 0
	noEthType := packet.FlowKey{InPort: ^uint32(0)}
	tests := []struct {
		name       string
		key, mask  packet.FlowKey
		keyAttrs   []uint16 // top-level key attributes, in order
		maskAttrs  []uint16
		encapAttrs []uint16 // inside ENCAP of the key, if tagged
	}{
		{"tcp", tcp, exactMask,
			[]uint16{keyAttrInPort, keyAttrEthernet, keyAttrEthertype, keyAttrIPv4, keyAttrTCP, keyAttrTCPFlags},
			[]uint16{keyAttrInPort, keyAttrEthernet, keyAttrEthertype, keyAttrIPv4, keyAttrTCP, keyAttrTCPFlags}, nil},
		{"later fragment: no l4", later, exactMask,
			[]uint16{keyAttrInPort, keyAttrEthernet, keyAttrEthertype, keyAttrIPv4},
			[]uint16{keyAttrInPort, keyAttrEthernet, keyAttrEthertype, keyAttrIPv4}, nil},
		{"free protocol: no l4 mask", tcp, protoFree,
			[]uint16{keyAttrInPort, keyAttrEthernet, keyAttrEthertype, keyAttrIPv4},
			[]uint16{keyAttrInPort, keyAttrEthernet, keyAttrEthertype, keyAttrIPv4}, nil},
		{"free ethertype: nothing under it", tcp, noEthType,
			[]uint16{keyAttrInPort, keyAttrEthernet},
			[]uint16{keyAttrInPort, keyAttrEthernet}, nil},
		{"tagged nests in encap", tagged, exactMask,
			[]uint16{keyAttrInPort, keyAttrEthernet, keyAttrEthertype, keyAttrVLAN, keyAttrEncap},
			[]uint16{keyAttrInPort, keyAttrEthernet, keyAttrEthertype, keyAttrVLAN, keyAttrEncap},
			[]uint16{keyAttrEthertype, keyAttrIPv4, keyAttrTCP, keyAttrTCPFlags}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := matchKey(&tc.key, &tc.mask)
			var e, m encoder
			appendKey(&e, &k)
			appendMask(&m, &k, &tc.mask)
			if got := attrTypes(e.b); !reflect.DeepEqual(got, tc.keyAttrs) {
				t.Errorf("key attributes %v, want %v", got, tc.keyAttrs)
			}
			if got := attrTypes(m.b); !reflect.DeepEqual(got, tc.maskAttrs) {
				t.Errorf("mask attributes %v, want %v", got, tc.maskAttrs)
			}
			if tc.encapAttrs != nil {
				a := attrs{b: e.b}
				for a.next() {
					if a.typ == keyAttrEncap {
						if got := attrTypes(a.val); !reflect.DeepEqual(got, tc.encapAttrs) {
							t.Errorf("encap attributes %v, want %v", got, tc.encapAttrs)
						}
					}
				}
			}
		})
	}
}

func attrTypes(b []byte) []uint16 {
	var out []uint16
	a := attrs{b: b}
	for a.next() {
		out = append(out, a.typ)
	}
	return out
}

func TestKeyWireLayout(t *testing.T) {
	// The kernel's struct layouts: ethernet is source first, ports big
	// endian, in_port host order.
	k := packet.FlowKey{InPort: 7, EthSrc: macA, EthDst: macB, EthType: 0x0800,
		NwSrc: [4]byte{1, 2, 3, 4}, NwDst: [4]byte{5, 6, 7, 8}, NwProto: 17, NwTOS: 1, NwTTL: 2, NwFrag: 0, TpSrc: 0x1234, TpDst: 0x5678}
	var e encoder
	appendKey(&e, &k)
	want := "" +
		"0800" + "0300" + "07000000" + // in_port 7 (little-endian host)
		"1000" + "0400" + "0200000000aa" + "0200000000bb" + // ethernet: src, dst
		"0600" + "0600" + "0800" + "0000" + // ethertype 0x0800, padded
		"1000" + "0700" + "01020304" + "05060708" + "11" + "01" + "02" + "00" + // ipv4
		"0800" + "0a00" + "1234" + "5678" // udp
	if got := hex.EncodeToString(e.b); got != want {
		t.Errorf("key bytes\n got  %s\n want %s", got, want)
	}
}

func TestActionsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   []datapath.Action
	}{
		{"output", []datapath.Action{datapath.Output(3), datapath.Output(4)}},
		{"set eth both", []datapath.Action{datapath.SetEthernet(datapath.EthernetSet{Src: macA, Dst: macB, Fields: datapath.SetSrc | datapath.SetDst})}},
		{"set eth dst", []datapath.Action{datapath.SetEthernet(datapath.EthernetSet{Dst: macB, Fields: datapath.SetDst})}},
		{"set ipv4 all", []datapath.Action{datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{1, 1, 1, 1}, Dst: [4]byte{2, 2, 2, 2}, TOS: 4, TTL: 9,
			Fields: datapath.SetSrc | datapath.SetDst | datapath.SetTOS | datapath.SetTTL})}},
		{"set ipv4 ttl", []datapath.Action{datapath.SetIPv4(datapath.IPv4Set{TTL: 63, Fields: datapath.SetTTL})}},
		{"set tcp src", []datapath.Action{datapath.SetTCP(datapath.L4Set{Src: 8080, Fields: datapath.SetSrc})}},
		{"set udp both", []datapath.Action{datapath.SetUDP(datapath.L4Set{Src: 1, Dst: 2, Fields: datapath.SetSrc | datapath.SetDst})}},
		{"set tunnel", []datapath.Action{datapath.SetTunnel(datapath.TunnelSet{VNI: 0xabcdef, Dst: netip.MustParseAddr("10.0.0.2"),
			Src: netip.MustParseAddr("10.0.0.1"), TOS: 0, TTL: 64}), datapath.Output(9)}},
		{"push and pop vlan", []datapath.Action{datapath.PushVLAN(100), datapath.PopVLAN()}},
		{"userspace", []datapath.Action{datapath.Userspace(0xdeadbeefcafe)}},
		{"drop", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e encoder
			appendActions(&e, tc.in, 42, [4]byte{})
			got, err := decodeActions(nil, e.b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.in) {
				t.Errorf("round trip\n got  %v\n want %v", got, tc.in)
			}
		})
	}
}

func TestActionEncodingRules(t *testing.T) {
	t.Run("masked set has no value bits outside its mask", func(t *testing.T) {
		var e encoder
		appendActions(&e, []datapath.Action{datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{9, 9, 9, 9}, TTL: 7, Fields: datapath.SetTTL})}, 0, [4]byte{})
		a := attrs{b: e.b}
		a.next()
		inner := attrs{b: a.val}
		inner.next()
		v, m := inner.val[:12], inner.val[12:24]
		for i := range v {
			if v[i]&^m[i] != 0 {
				t.Errorf("byte %d: value %#x outside mask %#x", i, v[i], m[i])
			}
		}
		if m[8] != 0 || m[11] != 0 {
			t.Errorf("proto/frag mask %#x/%#x: the kernel rejects writes to them", m[8], m[11])
		}
	})
	t.Run("push vlan sets the tag-present bit", func(t *testing.T) {
		var e encoder
		appendActions(&e, []datapath.Action{datapath.PushVLAN(5)}, 0, [4]byte{})
		if got := hex.EncodeToString(e.b); got != "0800"+"0400"+"8100"+"1005" {
			t.Errorf("push_vlan bytes %s", got)
		}
	})
	t.Run("tunnel without source takes the default source and TTL", func(t *testing.T) {
		var e encoder
		appendActions(&e, []datapath.Action{datapath.SetTunnel(datapath.TunnelSet{VNI: 1, Dst: netip.MustParseAddr("10.0.0.2")})}, 0, [4]byte{10, 0, 0, 1})
		got, err := decodeActions(nil, e.b)
		if err != nil {
			t.Fatal(err)
		}
		want := datapath.TunnelSet{VNI: 1, Dst: netip.MustParseAddr("10.0.0.2"), Src: netip.MustParseAddr("10.0.0.1"), TTL: datapath.DefaultTunnelTTL}
		if got[0].Tunnel != want {
			t.Errorf("tunnel %+v, want %+v", got[0].Tunnel, want)
		}
	})
	t.Run("unknown action is an error", func(t *testing.T) {
		var e encoder
		e.u32(7, 1) // OVS_ACTION_ATTR_RECIRC
		if _, err := decodeActions(nil, e.b); !errors.Is(err, datapath.ErrBadAction) {
			t.Errorf("err %v, want ErrBadAction", err)
		}
	})
	t.Run("plain set decodes as all fields", func(t *testing.T) {
		var e encoder
		o := e.begin(actAttrSet)
		b := e.fixed(keyAttrUDP, 4)
		b[0], b[1], b[2], b[3] = 0, 1, 0, 2
		e.end(o)
		got, err := decodeActions(nil, e.b)
		if err != nil {
			t.Fatal(err)
		}
		if want := datapath.SetUDP(datapath.L4Set{Src: 1, Dst: 2, Fields: datapath.SetSrc | datapath.SetDst}); got[0] != want {
			t.Errorf("got %v, want %v", got[0], want)
		}
	})
}

// recordedMiss is an OVS_PACKET_CMD_MISS as the kernel sends it (Linux
// 6.1, x86-64), from the genl header on: a 60-byte UDP frame from port 1.
const recordedMiss = "" +
	"01000000" + // genl: cmd MISS, version 0
	"05000000" + // ovs_header: dp_ifindex 5
	"4000" + "0100" + // PACKET, 60 bytes
	"0200000000bb" + "0200000000aa" + "0800" + // ethernet: dst, src, IPv4
	"4500002e00004000401166b50a0000010a000002" + // IPv4 10.0.0.1 -> 10.0.0.2, UDP
	"04d20035001a0000" + // UDP 1234 -> 53
	"000000000000000000000000000000000000" + // payload
	"8800" + "0200" + // KEY, nested
	"0800" + "0200" + "00000000" + // priority 0
	"0800" + "0300" + "01000000" + // in_port 1
	"0800" + "0f00" + "00000000" + // skb_mark 0
	"0800" + "1300" + "00000000" + // dp_hash 0
	"0800" + "1400" + "00000000" + // recirc_id 0
	"0800" + "1600" + "00000000" + // ct_state 0
	"0600" + "1700" + "0000" + "0000" + // ct_zone 0
	"0800" + "1800" + "00000000" + // ct_mark 0
	"1400" + "1900" + "00000000000000000000000000000000" + // ct_labels
	"1000" + "0400" + "0200000000aa" + "0200000000bb" + // ethernet: src, dst
	"0600" + "0600" + "0800" + "0000" + // ethertype
	"1000" + "0700" + "0a000001" + "0a000002" + "11" + "00" + "40" + "00" + // ipv4
	"0800" + "0a00" + "04d2" + "0035" // udp

func TestDecodeRecordedUpcall(t *testing.T) {
	b, err := hex.DecodeString(recordedMiss)
	if err != nil {
		t.Fatal(err)
	}
	var u datapath.Upcall
	if !decodeUpcall(b[0], b[genlHdrLen+ovsHdrLen:], &u) {
		t.Fatal("decodeUpcall failed")
	}
	want := packet.FlowKey{InPort: 1, EthSrc: macA, EthDst: macB, EthType: 0x0800,
		NwSrc: [4]byte{10, 0, 0, 1}, NwDst: [4]byte{10, 0, 0, 2}, NwProto: 17, NwTTL: 64, TpSrc: 1234, TpDst: 53}
	if u.Kind != datapath.UpcallMiss || u.InPort != 1 || len(u.Packet) != 60 {
		t.Errorf("kind %v in_port %d packet %d bytes, want miss, 1, 60", u.Kind, u.InPort, len(u.Packet))
	}
	if u.Key != want {
		t.Errorf("key\n got  %+v\n want %+v", u.Key, want)
	}
	// The kernel's key agrees with the agent's own parse of the packet.
	var k packet.FlowKey
	packet.ExtractFlowKey(u.Packet, 1, &k)
	if k != u.Key {
		t.Errorf("extracted key differs\n upcall  %+v\n extract %+v", u.Key, k)
	}
	if n := testing.AllocsPerRun(100, func() { decodeUpcall(b[0], b[8:], &u) }); n != 0 {
		t.Errorf("decodeUpcall allocates %v times", n)
	}
}

func TestDecodeUpcallRejects(t *testing.T) {
	b, _ := hex.DecodeString(recordedMiss)
	body := b[8:]
	tests := []struct {
		name string
		cmd  uint8
		body []byte
	}{
		{"execute is not an upcall", cmdPacketExecute, body},
		{"no packet", cmdPacketMiss, body[64:]},
		{"truncated attribute", cmdPacketMiss, body[:70]},
		{"empty", cmdPacketMiss, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var u datapath.Upcall
			if decodeUpcall(tc.cmd, tc.body, &u) {
				t.Errorf("accepted: %+v", u)
			}
		})
	}
}

func TestErrorUnwrapsErrnoAndSentinel(t *testing.T) {
	e := &Error{Op: "flow put", Errno: syscall.EEXIST}
	err := flowError(e, datapath.FlowCreate)
	if !errors.Is(err, datapath.ErrFlowExists) || !errors.Is(err, syscall.EEXIST) {
		t.Errorf("%v: not ErrFlowExists and EEXIST", err)
	}
	e = &Error{Op: "flow put", Errno: syscall.EINVAL}
	if !strings.Contains(e.Error(), "dmesg") {
		t.Errorf("bare EINVAL %q does not point at the kernel log", e)
	}
}

func TestDescribeOffset(t *testing.T) {
	var s sock
	off, _ := s.begin(30, cmdNew, 1, 0, 5)
	o := s.e.begin(flowAttrKey)
	s.e.u32(keyAttrInPort, 1)
	ipv4 := len(s.e.b)
	s.e.fixed(keyAttrIPv4, 12)
	s.e.end(o)
	s.finish(off)
	if got := describeOffset(s.e.b, ipv4); got != "1/7" {
		t.Errorf("describeOffset = %q, want 1/7", got)
	}
	if got := describeOffset(s.e.b, 3); got != "" {
		t.Errorf("offset in the header: %q, want empty", got)
	}
}

func TestMessagesParsesAckAndExtAck(t *testing.T) {
	// NLMSG_ERROR -EINVAL for seq 9 with ext ack offset 28 (CAP_ACK: header only).
	msg := "" +
		"2c000000" + "0200" + "0002" + "09000000" + "00000000" + // nlmsghdr, flags ACK_TLVS
		"eaffffff" + // error -22
		"14000000" + "1e00" + "0500" + "09000000" + "00000000" + // the request's header
		"0800" + "0200" + "1c000000" // NLMSGERR_ATTR_OFFS 28
	b, _ := hex.DecodeString(msg)
	var got []reply
	messages(b, func(r *reply) bool { got = append(got, *r); return true })
	if len(got) != 1 || got[0].seq != 9 || got[0].err == nil || got[0].err.Errno != syscall.EINVAL || got[0].err.offset != 28 {
		t.Fatalf("got %+v", got)
	}
}

// TestPlainSetDecodesEveryField: a set action without a mask (as the
// kernel may report one) writes every field of its key attribute.
func TestPlainSetDecodesEveryField(t *testing.T) {
	tests := []struct {
		name  string
		key   uint16
		value []byte
		want  datapath.Action
	}{
		{"ethernet", keyAttrEthernet, append(macA[:], macB[:]...),
			datapath.SetEthernet(datapath.EthernetSet{Src: macA, Dst: macB, Fields: datapath.SetSrc | datapath.SetDst})},
		{"ipv4", keyAttrIPv4, []byte{1, 1, 1, 1, 2, 2, 2, 2, 17, 4, 9, 0},
			datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{1, 1, 1, 1}, Dst: [4]byte{2, 2, 2, 2}, TOS: 4, TTL: 9,
				Fields: datapath.SetSrc | datapath.SetDst | datapath.SetTOS | datapath.SetTTL})},
		{"udp", keyAttrUDP, []byte{0, 1, 0, 2},
			datapath.SetUDP(datapath.L4Set{Src: 1, Dst: 2, Fields: datapath.SetSrc | datapath.SetDst})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e encoder
			o := e.begin(actAttrSet)
			e.bytes(tc.key, tc.value)
			e.end(o)
			got, err := decodeActions(nil, e.b)
			if err != nil {
				t.Fatal(err)
			}
			if want := []datapath.Action{tc.want}; !reflect.DeepEqual(got, want) {
				t.Errorf("decoded\n got  %v\n want %v", got, want)
			}
		})
	}
}

// The kernel's flow key has no ICMP echo identifier: a flow asking to match
// one is refused rather than installed wildcarded (the backend reports no
// datapath.Features, so the agent never asks).
func TestValidateRefusesFieldsBeyondTheKernelKey(t *testing.T) {
	if f := datapath.FeaturesOf(&Datapath{}); f.ICMPEchoID {
		t.Fatalf("the kernel backend claims %+v", f)
	}
	acts := []datapath.Action{datapath.Output(2)}
	var mask packet.FlowKey
	mask.InPort, mask.NwProto, mask.TpSrc = ^uint32(0), 0xff, 0xffff
	if err := validate(&mask, acts); err != nil {
		t.Fatalf("ICMP type match refused: %v", err)
	}
	mask.ICMPID = 0xffff
	if err := validate(&mask, acts); !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "ICMP echo identifier") {
		t.Fatalf("ICMP echo identifier match: %v, want a refusal naming the field", err)
	}
}

// A port's meter leads its flows' action lists; decoding leaves it out, so
// a dump shows the caller's actions.
func TestMeterActionLeadsAndIsHidden(t *testing.T) {
	var e encoder
	e.u32(actAttrMeter, 7)
	appendActions(&e, []datapath.Action{datapath.Output(3)}, 42, [4]byte{})
	if typ := binary.NativeEndian.Uint16(e.b[2:]); typ != 19 || binary.NativeEndian.Uint32(e.b[4:]) != 7 {
		t.Errorf("first action attribute type %d value %d, want OVS_ACTION_ATTR_METER (19) with the meter id 7", typ, binary.NativeEndian.Uint32(e.b[4:]))
	}
	got, err := decodeActions(nil, e.b)
	if err != nil || !reflect.DeepEqual(got, []datapath.Action{datapath.Output(3)}) {
		t.Errorf("decoded %v, %v; want the output alone", got, err)
	}
}
