package dhcp

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/midonet/midonet/internal/topology"
)

// seeds4 returns one labelled request per decoder branch; they run as test
// cases in a plain `go test`.
func seeds4(t testing.TB) map[string][]byte {
	discover := buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: clientMAC})
	overload := append(bytes.Clone(discover[:optionsOff]), 52, 1, 3, 255)
	copy(overload[fileOff:], []byte{53, 1, 1, 255})
	copy(overload[snameOff:], []byte{55, 2, 1, 3})
	return map[string][]byte{
		"discover":           discover,
		"discover broadcast": buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: clientMAC, broadcast: true}),
		"request":            buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeRequest, chaddr: clientMAC, requestedIP: ip4("10.0.1.11"), serverID: ip4("10.0.1.2")}),
		"stale request":      buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeRequest, chaddr: clientMAC, requestedIP: ip4("10.9.9.9")}),
		"renew":              buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeRequest, chaddr: clientMAC, ciaddr: [4]byte{10, 0, 1, 11}}),
		"inform":             buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeInform, chaddr: clientMAC, ciaddr: [4]byte{10, 0, 1, 11}}),
		"release":            buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeRelease, chaddr: clientMAC}),
		"relayed":            buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: clientMAC, giaddr: [4]byte{10, 0, 1, 254}, relayInfo: []byte{1, 2, 3, 4}}),
		"unknown mac":        buildRequest(t, requestSpec{typ: layers.DHCPMsgTypeDiscover, chaddr: otherMAC}),
		"overload":           overload,
		"truncated":          discover[:100],
		"no cookie":          discover[:bootpLen],
		"option overrun":     append(bytes.Clone(discover[:optionsOff]), 53, 1, 1, 61, 200, 1),
		"max options":        append(append(bytes.Clone(discover[:optionsOff]), 53, 1, 1, 12, 255), make([]byte, 255)...),
	}
}

// FuzzRequest4 feeds arbitrary messages to the decoder and the server. An
// accepted request must agree with gopacket's decoding of it, and every
// reply must decode with gopacket, with valid checksums, answering the
// request's transaction for its client.
func FuzzRequest4(f *testing.F) {
	for _, msg := range seeds4(f) {
		f.Add(msg)
	}
	srv, problems := NewServer4(testSubnets(), Defaults{})
	if len(problems) > 0 {
		f.Fatal(problems)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var req Request4
		if err := req.Decode(msg); err != nil {
			return
		}
		var d layers.DHCPv4
		if d.DecodeFromBytes(msg, gopacket.NilDecodeFeedback) == nil && req.GIAddr == [4]byte{} {
			if d.Xid != req.XID || !bytes.Equal(d.ClientHWAddr, req.CHAddr[:]) {
				t.Fatalf("xid %#x chaddr %v, gopacket says %#x %v", req.XID, req.CHAddr, d.Xid, d.ClientHWAddr)
			}
			for _, o := range d.Options {
				if o.Type == layers.DHCPOptMessageType && len(o.Data) == 1 && MessageType(o.Data[0]) != req.Type {
					t.Fatalf("message type %v, gopacket says %v", req.Type, o.Data[0])
				}
			}
		}
		out, ans := srv.AppendAnswer(nil, req.CHAddr, &req)
		if ans.Outcome != Answered {
			if len(out) != 0 {
				t.Fatalf("%v wrote %d bytes", ans.Outcome, len(out))
			}
			return
		}
		r := decodeReply(t, out)
		if r.dhcp.Xid != req.XID || !bytes.Equal(r.dhcp.ClientHWAddr, req.CHAddr[:]) {
			t.Fatalf("reply xid %#x chaddr %v for request %#x %v", r.dhcp.Xid, r.dhcp.ClientHWAddr, req.XID, req.CHAddr)
		}
		if got := r.opts[layers.DHCPOptMessageType]; len(got) != 1 || MessageType(got[0]) != ans.Reply {
			t.Fatalf("reply type %v, want %v", got, ans.Reply)
		}
		if req.RelayInfo != nil && !bytes.Equal(r.opts[82], req.RelayInfo) {
			t.Fatalf("relay info %v not echoed: %v", req.RelayInfo, r.opts[82])
		}
	})
}

func testSubnets() []topology.DHCPSubnet { return []topology.DHCPSubnet{testSubnet()} }
