package fastpath

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

// Which flows the kernel may run, and how their match and actions are laid
// out for the programs.
func TestTranslate(t *testing.T) {
	overlay := &Overlay{Local: netip.MustParseAddr("192.168.0.1"), UDPPort: 6677,
		Route: func(dst netip.Addr) (uint32, int, bool) { return 7, 1500, dst.Is4() }}
	ports := func(no datapath.PortNo) (Port, bool) {
		switch no {
		case 1, 2:
			return Port{Ifindex: uint32(no) * 10}, true
		case 9:
			return Port{Overlay: overlay}, true
		}
		return Port{}, false
	}
	tunnel := datapath.SetTunnel(datapath.TunnelSet{VNI: 5, Dst: netip.MustParseAddr("192.168.0.2")})
	tunKey := packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0)}
	inPort := packet.FlowKey{InPort: ^uint32(0)}
	ipv4 := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff}
	tcp := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwProto: 0xff}
	out := datapath.Output(2)
	setTCP := datapath.SetTCP(datapath.L4Set{Src: 1, Fields: datapath.SetSrc})
	cases := []struct {
		name      string
		key, mask packet.FlowKey
		actions   []datapath.Action
		want      bool
	}{
		{"in-port only, output", packet.FlowKey{InPort: 1}, inPort, []datapath.Action{out}, true},
		{"a drop", packet.FlowKey{InPort: 1}, inPort, nil, true},
		{"in-port wildcarded", packet.FlowKey{InPort: 1}, packet.FlowKey{}, []datapath.Action{out}, false},
		{"in-port not attached", packet.FlowKey{InPort: 3}, inPort, []datapath.Action{out}, false},
		{"output not attached", packet.FlowKey{InPort: 1}, inPort, []datapath.Action{datapath.Output(3)}, false},
		{"two outputs", packet.FlowKey{InPort: 1}, inPort, []datapath.Action{out, datapath.Output(1)}, false},
		{"a tunnel then a local port", packet.FlowKey{InPort: 1}, inPort, []datapath.Action{tunnel, out}, true},
		{"into the overlay", packet.FlowKey{InPort: 1}, inPort, []datapath.Action{tunnel, datapath.Output(9)}, true},
		{"into the overlay without a tunnel", packet.FlowKey{InPort: 1}, inPort, []datapath.Action{datapath.Output(9)}, false},
		{"into the overlay, no peer address", packet.FlowKey{InPort: 1}, inPort, []datapath.Action{
			datapath.SetTunnel(datapath.TunnelSet{VNI: 5}), datapath.Output(9)}, false},
		{"out of the overlay by key", packet.FlowKey{InPort: 9, TunID: 5}, tunKey, []datapath.Action{out}, true},
		{"out of the overlay, matching more", packet.FlowKey{InPort: 9, TunID: 5, EthType: 0x0800},
			packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0), EthType: 0xffff}, []datapath.Action{out}, false},
		{"out of the overlay, rewriting", packet.FlowKey{InPort: 9, TunID: 5}, tunKey, []datapath.Action{
			datapath.SetEthernet(datapath.EthernetSet{Fields: datapath.SetSrc}), out}, false},
		{"overlay to overlay", packet.FlowKey{InPort: 9, TunID: 5}, tunKey, []datapath.Action{tunnel, datapath.Output(9)}, false},
		{"to the agent", packet.FlowKey{InPort: 1}, inPort, []datapath.Action{datapath.Userspace(1), out}, false},
		{"push a tag", packet.FlowKey{InPort: 1}, inPort, []datapath.Action{datapath.PushVLAN(5), out}, false},
		{"IPv4", packet.FlowKey{InPort: 1, EthType: 0x0800}, ipv4, []datapath.Action{out}, true},
		{"ARP", packet.FlowKey{InPort: 1, EthType: 0x0806}, ipv4, []datapath.Action{out}, false},
		{"tagged", packet.FlowKey{InPort: 1, VLAN: 5 | packet.VLANPresent}, packet.FlowKey{InPort: ^uint32(0), VLAN: 0xffff}, []datapath.Action{out}, false},
		{"untagged only", packet.FlowKey{InPort: 1}, packet.FlowKey{InPort: ^uint32(0), VLAN: 0xffff}, []datapath.Action{out}, true},
		{"later fragments", packet.FlowKey{InPort: 1, EthType: 0x0800, NwFrag: packet.FragLater}, packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwFrag: 0xff}, []datapath.Action{out}, false},
		{"from the overlay", packet.FlowKey{InPort: 1, TunID: 7}, packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0)}, []datapath.Action{out}, false},
		{"TCP ports, protocol pinned", packet.FlowKey{InPort: 1, EthType: 0x0800, NwProto: 6}, tcp, []datapath.Action{setTCP, out}, true},
		{"TCP ports, protocol not pinned", packet.FlowKey{InPort: 1, EthType: 0x0800}, ipv4, []datapath.Action{setTCP, out}, false},
		{"UDP ports on TCP", packet.FlowKey{InPort: 1, EthType: 0x0800, NwProto: 6}, tcp, []datapath.Action{
			datapath.SetUDP(datapath.L4Set{Src: 1, Fields: datapath.SetSrc}), out}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var val [valSize]byte
			k := c.key.Masked(&c.mask)
			_, ok := translate(&k, &c.mask, c.actions, ports, &val)
			if ok != c.want {
				t.Errorf("mirrored %v, want %v", ok, c.want)
			}
		})
	}
}

func TestTranslateLayout(t *testing.T) {
	ports := func(no datapath.PortNo) (Port, bool) { return Port{Ifindex: uint32(no) * 10}, true }
	key := packet.FlowKey{InPort: 1, EthType: 0x0800, NwProto: 1, NwTTL: 64, TpSrc: 8, TpDst: 0, ICMPID: 0x1234,
		NwSrc: [4]byte{10, 0, 0, 1}, EthDst: [6]byte{2, 0, 0, 0, 0, 9}}
	mask := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwProto: 0xff, NwTTL: 0xff, TpSrc: 0xffff, ICMPID: 0xffff, NwSrc: [4]byte{255, 255, 255, 0}}
	var val [valSize]byte
	kf, ok := translate(&key, &mask, []datapath.Action{
		datapath.SetIPv4(datapath.IPv4Set{Dst: [4]byte{192, 0, 2, 7}, TTL: 63, Fields: datapath.SetDst | datapath.SetTTL}),
		datapath.Output(2)}, ports, &val)
	bkey, bmask := kf.key, kf.mask
	if !ok || kf.in != 10 || kf.out != 20 {
		t.Fatalf("ok %v in %d out %d", ok, kf.in, kf.out)
	}
	if got := binary.NativeEndian.Uint32(bkey[keyIfindex:]); got != 10 {
		t.Errorf("key interface %d", got)
	}
	if bkey[keyTpSrc] != 0 || bkey[keyTpSrc+1] != 8 || bkey[keyICMPID] != 0x12 || bkey[keyICMPID+1] != 0x34 {
		t.Errorf("ICMP fields % x", bkey[keyTpSrc:keySize])
	}
	if bmask[keyNwSrc+3] != 0 || bmask[keyNwSrc] != 0xff || bmask[keyEthDst] != 0 || bmask[keyMaskNo] != 0 {
		t.Errorf("mask % x", bmask)
	}
	if f := binary.NativeEndian.Uint32(val[valFlags:]); f != actNwDst|actTTL {
		t.Errorf("action bits %#x", f)
	}
	if val[valTTL] != 63 || val[valNwDst+3] != 7 || binary.NativeEndian.Uint32(val[valOutIf:]) != 20 {
		t.Errorf("value % x", val[:valActSize])
	}
}

// A flow into the overlay carries the outer headers the forwarder pushes.
func TestTranslateTunnel(t *testing.T) {
	o := &Overlay{Local: netip.MustParseAddr("192.168.0.1"), UDPPort: 6677,
		Route: func(netip.Addr) (uint32, int, bool) { return 7, 1500, true }}
	ports := func(no datapath.PortNo) (Port, bool) {
		if no == 9 {
			return Port{Overlay: o}, true
		}
		return Port{Ifindex: uint32(no) * 10}, true
	}
	key := packet.FlowKey{InPort: 1}
	mask := packet.FlowKey{InPort: ^uint32(0)}
	var val [valSize]byte
	kf, ok := translate(&key, &mask, []datapath.Action{
		datapath.SetTunnel(datapath.TunnelSet{VNI: 0x123456, Dst: netip.MustParseAddr("192.168.0.2"), TOS: 0x10}),
		datapath.Output(9)}, ports, &val)
	if !ok || !kf.overlay || kf.out != 7 {
		t.Fatalf("ok %v overlay %v out %d, want the underlay's interface 7", ok, kf.overlay, kf.out)
	}
	if f := binary.NativeEndian.Uint32(val[valFlags:]); f != actTunnel {
		t.Errorf("action bits %#x, want the tunnel only", f)
	}
	if got := val[valVNI : valVNI+4]; got[0] != 0x12 || got[1] != 0x34 || got[2] != 0x56 || got[3] != 0 {
		t.Errorf("VNI word % x", got)
	}
	if src, dst := netip.AddrFrom4([4]byte(val[valTunSrc:])), netip.AddrFrom4([4]byte(val[valTunDst:])); src != o.Local || dst.String() != "192.168.0.2" {
		t.Errorf("outer %v → %v, want the port's address to the peer", src, dst)
	}
	if val[valTunTOS] != 0x10 || val[valTunTTL] != datapath.DefaultTunnelTTL || binary.BigEndian.Uint16(val[valTunDport:]) != 6677 {
		t.Errorf("outer TOS %#x TTL %d port %d", val[valTunTOS], val[valTunTTL], binary.BigEndian.Uint16(val[valTunDport:]))
	}
	if got := binary.NativeEndian.Uint16(val[valMaxLen:]); got != 1500-vxlanOverhead {
		t.Errorf("longest frame %d, want %d", got, 1500-vxlanOverhead)
	}
	// A tunnel key's flow: out of the overlay to interface 20.
	tk, tm := packet.FlowKey{InPort: 9, TunID: 0x123456}, packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0)}
	kf, ok = translate(&tk, &tm, []datapath.Action{datapath.Output(2)}, ports, &val)
	if !ok || !kf.decap || kf.out != 20 || kf.key[0] != 0x12 || kf.key[2] != 0x56 || binary.NativeEndian.Uint32(val[decOutIf:]) != 20 {
		t.Errorf("decap %+v ok %v", kf, ok)
	}
}

// A flow into the overlay stays in userspace when the underlay has no
// route to the peer, or an MTU too small to carry a frame once
// encapsulated.
func TestTunnelValueNeedsARoute(t *testing.T) {
	peer := netip.MustParseAddr("192.168.0.2")
	for _, tc := range []struct {
		name  string
		mtu   int
		route bool
		ok    bool
	}{
		{"route", 1500, true, true},
		{"no route", 1500, false, false},
		{"MTU the outer headers fill", vxlanOverhead + ethLen, true, false},
		{"MTU one byte more", vxlanOverhead + ethLen + 1, true, true},
	} {
		o := &Overlay{Local: netip.MustParseAddr("192.168.0.1"), UDPPort: 6677,
			Route: func(dst netip.Addr) (uint32, int, bool) { return 7, tc.mtu, tc.route && dst == peer }}
		var val [valSize]byte
		underlay, ok := tunnelValue(&val, &datapath.TunnelSet{VNI: 5, Dst: peer}, o)
		if ok != tc.ok || (ok && underlay != 7) {
			t.Errorf("%s: underlay %d, ok %v; want ok %v", tc.name, underlay, ok, tc.ok)
		}
	}
}
