package ovs

import (
	"encoding/hex"
	"reflect"
	"testing"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

// FuzzDecodeUpcall feeds arbitrary upcall bodies to the decoder: it must not
// panic, and an accepted upcall's packet must lie inside the message.
func FuzzDecodeUpcall(f *testing.F) {
	miss, _ := hex.DecodeString(recordedMiss)
	body := miss[genlHdrLen+ovsHdrLen:]
	f.Add(uint8(cmdPacketMiss), body)                  // a real miss
	f.Add(uint8(cmdPacketAction), body)                // as a userspace upcall
	f.Add(uint8(cmdPacketMiss), body[:len(body)-3])    // truncated key
	f.Add(uint8(cmdPacketMiss), body[64:])             // no packet
	f.Add(uint8(cmdPacketMiss), []byte{0xff, 0xff, 1}) // attribute longer than the message
	f.Add(uint8(cmdPacketMiss), []byte{})
	f.Fuzz(func(t *testing.T, cmd uint8, b []byte) {
		var u datapath.Upcall
		if !decodeUpcall(cmd, b, &u) {
			return
		}
		if len(u.Packet) > len(b) {
			t.Fatalf("packet of %d bytes from a %d-byte message", len(u.Packet), len(b))
		}
	})
}

// FuzzDecodeKey checks that any key the decoder accepts encodes back, with
// an exact mask, to attributes that decode to the same key (for the fields
// the encoding's shape keeps).
func FuzzDecodeKey(f *testing.F) {
	var e encoder
	var k packet.FlowKey
	packet.ExtractFlowKey(tcpFrame(1, 2, "x"), 3, &k)
	appendKey(&e, &k)
	f.Add(e.b) // ipv4 tcp
	e.b = nil
	k.VLAN = 7 | packet.VLANPresent
	appendKey(&e, &k)
	f.Add(e.b) // tagged
	e.b = nil
	k = packet.FlowKey{InPort: 1, EthType: 0x0806, NwProto: 2, TunID: 9, TunDst: [4]byte{1, 2, 3, 4}, TunTTL: 5}
	appendKey(&e, &k)
	f.Add(e.b)                                   // arp with tunnel
	f.Add([]byte{4, 0, 1, 0})                    // empty encap
	f.Add([]byte{8, 0, 16, 0, 4, 0, 0xff, 0x00}) // broken tunnel nest
	f.Fuzz(func(t *testing.T, b []byte) {
		var got packet.FlowKey
		if !decodeKey(b, &got, false) {
			return
		}
		var mask packet.FlowKey
		decodeKey(b, &mask, true) // any input: must not panic
		s := matchKey(&got, &exactMask)
		var e encoder
		appendKey(&e, &s)
		var again packet.FlowKey
		if !decodeKey(e.b, &again, false) {
			t.Fatalf("re-encoded key %x does not decode", e.b)
		}
		var e2 encoder
		appendKey(&e2, &again)
		if !reflect.DeepEqual(e.b, e2.b) {
			t.Fatalf("encoding not stable:\n %x\n %x", e.b, e2.b)
		}
	})
}

// FuzzDecodeActions checks that decoded actions encode and decode to the
// same list.
func FuzzDecodeActions(f *testing.F) {
	var e encoder
	appendActions(&e, []datapath.Action{
		datapath.SetEthernet(datapath.EthernetSet{Dst: macB, Fields: datapath.SetDst}),
		datapath.SetIPv4(datapath.IPv4Set{TTL: 3, Fields: datapath.SetTTL}),
		datapath.PushVLAN(3), datapath.PopVLAN(), datapath.Userspace(7), datapath.Output(2),
	}, 5, [4]byte{})
	f.Add(e.b)
	f.Add([]byte{8, 0, 3, 0, 4, 0, 9, 0})   // set with a short nest
	f.Add([]byte{12, 0, 11, 0, 8, 0, 9, 0}) // masked set of a truncated tcp
	f.Fuzz(func(t *testing.T, b []byte) {
		acts, err := decodeActions(nil, b)
		if err != nil {
			return
		}
		if datapath.ValidateActions(acts) != nil {
			return // e.g. output to port 0: PutFlow would refuse it
		}
		var e encoder
		appendActions(&e, acts, 1, [4]byte{})
		again, err := decodeActions(nil, e.b)
		if err != nil {
			t.Fatalf("re-encoded %v does not decode: %v", acts, err)
		}
		if !reflect.DeepEqual(normalize(acts), normalize(again)) {
			t.Fatalf("round trip\n %v\n %v", acts, again)
		}
	})
}

// normalize clears what encoding legitimately changes: unselected set
// fields and a zero tunnel TTL (sent as the default).
func normalize(acts []datapath.Action) []datapath.Action {
	out := make([]datapath.Action, len(acts))
	for i, a := range acts {
		if a.Kind == datapath.ActSetTunnel && a.Tunnel.TTL == 0 {
			a.Tunnel.TTL = datapath.DefaultTunnelTTL
		}
		a.TCI &^= vlanCFI
		out[i] = a
	}
	return out
}
