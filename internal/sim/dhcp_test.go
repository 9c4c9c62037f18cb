package sim

import (
	"bytes"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/midonet/midonet/internal/dhcp"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

const (
	vm1MAC = "02:00:00:00:01:01"
	vm2MAC = "02:00:00:00:01:02"
)

// dhcpTopo is a bridge with three VM ports and a DHCP subnet holding an
// entry for vm1 only, behind a port whose outbound chain accepts only
// return traffic (as a security group does).
func dhcpTopo(t *testing.T, enabled bool) (*topo, map[string]ID) {
	tp := newTopo(t)
	ids := map[string]ID{}
	ids["br"] = tp.bridge("br")
	ids["vm1"] = tp.vmPort(ids["br"], "vm1")
	ids["vm2"] = tp.vmPort(ids["br"], "vm2")
	ids["vm3"] = tp.vmPort(ids["br"], "vm3")
	sg := tp.chain("sg", topology.Rule{Type: topology.RuleAccept, Condition: topology.Condition{MatchReturnFlow: true}},
		topology.Rule{Type: topology.RuleDrop})
	tp.port(ids["vm1"]).OutboundFilterID = topology.IDPtr(sg)
	tp.in.DHCPSubnets = []topology.DHCPSubnet{{BridgeID: ids["br"], SubnetPrefix: topology.Str("10.0.1.0"),
		SubnetLength: 24, DefaultGateway: topology.Str("10.0.1.1"), ServerAddr: topology.Str("10.0.1.2"), Enabled: enabled,
		Hosts: []topology.DHCPHost{{MacAddr: topology.Str(vm1MAC), IPAddr: topology.Str("10.0.1.11")}}}}
	tp.in.UnderlayMTU = 9000
	return tp, ids
}

// dhcpRequest is a DHCP message from a client, built with gopacket.
func dhcpRequest(t *testing.T, from string, typ layers.DHCPMsgType, requested string) PacketSpec {
	t.Helper()
	m := mac(from)
	d := &layers.DHCPv4{Operation: layers.DHCPOpRequest, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6,
		Xid: 42, ClientHWAddr: net.HardwareAddr(m[:]), ClientIP: net.IPv4zero, YourClientIP: net.IPv4zero,
		NextServerIP: net.IPv4zero, RelayAgentIP: net.IPv4zero}
	d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(typ)}))
	if requested != "" {
		d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptRequestIP, ip(requested).AsSlice()))
	}
	d.Options = append(d.Options, layers.NewDHCPOption(layers.DHCPOptEnd, nil))
	buf := gopacket.NewSerializeBuffer()
	if err := d.SerializeTo(buf, gopacket.SerializeOptions{FixLengths: true}); err != nil {
		t.Fatal(err)
	}
	spec := udp(from, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255", 68, 67)
	spec.Payload = buf.Bytes()
	return spec
}

func TestDHCPAnswered(t *testing.T) {
	tests := []struct {
		name      string
		enabled   bool
		from      ID // port name in ids
		mac       string
		typ       layers.DHCPMsgType
		requested string
		payload   func([]byte) []byte // mutates the DHCP message
		kind      Kind
		event     DHCPEvent
		reply     layers.DHCPMsgType // when a reply is generated
		reason    DropReason
		flood     bool // the request goes on through the bridge
	}{
		{name: "discover is answered with an offer", enabled: true, mac: vm1MAC, typ: layers.DHCPMsgTypeDiscover,
			kind: Consumed, event: DHCPOffer, reply: layers.DHCPMsgTypeOffer},
		{name: "request is acked", enabled: true, mac: vm1MAC, typ: layers.DHCPMsgTypeRequest, requested: "10.0.1.11",
			kind: Consumed, event: DHCPAck, reply: layers.DHCPMsgTypeAck},
		{name: "stale lease is nakked at once", enabled: true, mac: vm1MAC, typ: layers.DHCPMsgTypeRequest,
			requested: "10.0.1.99", kind: Consumed, event: DHCPNak, reply: layers.DHCPMsgTypeNak},
		{name: "release is consumed", enabled: true, mac: vm1MAC, typ: layers.DHCPMsgTypeRelease, kind: Consumed,
			event: DHCPIgnored},
		{name: "unknown MAC: no answer, flooded without a flow", enabled: true, mac: vm2MAC,
			typ: layers.DHCPMsgTypeDiscover, kind: UserspaceOnly, event: DHCPNoLease, flood: true},
		{name: "disabled subnet: no answer, flooded without a flow", enabled: false, mac: vm1MAC,
			typ: layers.DHCPMsgTypeDiscover, kind: UserspaceOnly, event: DHCPDisabled, flood: true},
		{name: "malformed request is dropped, without a flow", enabled: true, mac: vm1MAC,
			typ: layers.DHCPMsgTypeDiscover, payload: func(b []byte) []byte { return b[:100] },
			kind: UserspaceOnly, event: DHCPMalformed, reason: ReasonDHCPMalformed},
		{name: "a BOOTREPLY to port 67 is not a request: simulated as any packet", enabled: true, mac: vm1MAC,
			typ: layers.DHCPMsgTypeDiscover, payload: func(b []byte) []byte { b[0] = 2; return b },
			kind: Forward, flood: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, ids := dhcpTopo(t, tc.enabled)
			snap := tp.snapshot()
			in := ids["vm1"]
			if tc.mac == vm2MAC {
				in = ids["vm2"]
			}
			spec := dhcpRequest(t, tc.mac, tc.typ, tc.requested)
			if tc.payload != nil {
				spec.Payload = tc.payload(spec.Payload)
			}
			r := run(t, snap, nil, in, spec)
			if r.Kind != tc.kind || r.DHCP != tc.event || r.Reason != tc.reason {
				t.Fatalf("result %v (%v) dhcp %v, want %v (%v) dhcp %v", r.Kind, r.Reason, r.DHCP, tc.kind, tc.reason, tc.event)
			}
			if got := len(r.Egress) > 0; got != tc.flood {
				t.Errorf("egress %v, want flooded %v", egressPorts(r), tc.flood)
			}
			if tc.reply == 0 {
				if len(r.Generated) != 0 {
					t.Fatalf("%d packets generated, want none", len(r.Generated))
				}
				return
			}
			if len(r.Generated) != 1 || r.Generated[0].Port != in {
				t.Fatalf("generated %d packets, want the reply out of the ingress port", len(r.Generated))
			}
			frame := r.Generated[0].Frame
			p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
			d, ok := p.Layer(layers.LayerTypeDHCPv4).(*layers.DHCPv4)
			if !ok {
				t.Fatalf("the reply does not decode as DHCP: %v", p)
			}
			var typ, mtu []byte
			for _, o := range d.Options {
				switch o.Type {
				case layers.DHCPOptMessageType:
					typ = o.Data
				case layers.DHCPOptInterfaceMTU:
					mtu = o.Data
				}
			}
			if len(typ) != 1 || layers.DHCPMsgType(typ[0]) != tc.reply || d.Xid != 42 {
				t.Errorf("reply type %v xid %d, want %v 42", typ, d.Xid, tc.reply)
			}
			if tc.reply != layers.DHCPMsgTypeNak && !bytes.Equal(mtu, []byte{0x22, 0xf6}) {
				t.Errorf("MTU option %v, want 8950: the underlay's 9000 minus the overlay's 50", mtu)
			}

			// The reply leaves by the VM's port, through its outbound
			// chain, which lets return traffic only: a generated packet
			// is return traffic.
			m, _ := MatchFromFrame(frame)
			out := NewSimulator(1).Simulate(snap, nil, &Packet{Port: in, Match: m, Frame: frame, Generated: true}, testNow)
			if out.Kind != Forward || len(out.Egress) != 1 || out.Egress[0].Port != in {
				t.Errorf("the reply is %v to %v, want forwarded to the VM's port", out.Kind, egressPorts(out))
			}
		})
	}
}

// TestDHCPMegaflow checks that no flow installed for other traffic from a
// VM on a bridge with DHCP can catch the VM's DHCP requests: those flows
// match the fields that tell a DHCP request apart.
func TestDHCPMegaflow(t *testing.T) {
	tp, ids := dhcpTopo(t, true)
	tp.learn(ids["br"], vm2MAC, ids["vm2"])
	snap := tp.snapshot()
	dhcpSpec := dhcpRequest(t, vm1MAC, layers.DHCPMsgTypeRequest, "10.0.1.11")
	dhcpSpec.EthDst = mac(vm2MAC) // a renew unicast to where a flow exists
	dhcpPkt := mkPacket(t, ids["vm1"], dhcpSpec)
	for _, spec := range []PacketSpec{
		udp(vm1MAC, vm2MAC, "10.0.1.11", "10.0.1.12", 68, 53),
		udp(vm1MAC, vm2MAC, "10.0.1.11", "10.0.1.12", 5000, 67),
		tcp(vm1MAC, vm2MAC, "10.0.1.11", "10.0.1.12", 68, 67),
		icmpEcho(vm1MAC, vm2MAC, "10.0.1.11", "10.0.1.12", 7),
	} {
		r := run(t, snap, nil, ids["vm1"], spec)
		if r.Kind != Forward {
			t.Fatalf("%+v: %v, want forward", spec, r.Kind)
		}
		mask := r.Mask
		k := dhcpPkt.Match.FlowKey
		flowKey := mkPacket(t, ids["vm1"], spec).Match.FlowKey
		if k.Masked(&mask) == flowKey.Masked(&mask) {
			t.Errorf("the flow for %+v (mask %v) would catch DHCP requests", spec, r.Seen)
		}
	}
	// A bridge without DHCP keeps its wide megaflows.
	tp2 := newTopo(t)
	br := tp2.bridge("plain")
	p := tp2.vmPort(br, "p1")
	tp2.vmPort(br, "p2")
	tp2.learn(br, vm2MAC, id("p2"))
	r := run(t, tp2.snapshot(), nil, p, udp(vm1MAC, vm2MAC, "10.0.1.11", "10.0.1.12", 5000, 53))
	if r.Seen&(FieldEthType|FieldTpDst) != 0 {
		t.Errorf("a bridge without DHCP reads %v", r.Seen)
	}
}

func TestDHCPServerARP(t *testing.T) {
	tp, ids := dhcpTopo(t, true)
	snap := tp.snapshot()
	r := run(t, snap, nil, ids["vm1"], arpReq(vm1MAC, "10.0.1.11", "10.0.1.2"))
	if r.Kind != Consumed || len(r.Generated) != 1 {
		t.Fatalf("ARP for the DHCP server: %v with %d generated, want an answer", r.Kind, len(r.Generated))
	}
	var p packet.Parsed
	p.Decode(r.Generated[0].Frame)
	if p.ARPOp != arpOpReply || p.ARPSHA != dhcp.ServerMAC || p.ARPSPA != [4]byte{10, 0, 1, 2} {
		t.Errorf("reply %v is-at %v, want 10.0.1.2 is-at the DHCP server's MAC", p.ARPSPA, p.ARPSHA)
	}
}

func TestDHCPNoAllocs(t *testing.T) {
	tp, ids := dhcpTopo(t, true)
	snap := tp.snapshot()
	pkt := mkPacket(t, ids["vm1"], dhcpRequest(t, vm1MAC, layers.DHCPMsgTypeRequest, "10.0.1.11"))
	s := NewSimulator(1)
	s.Simulate(snap, nil, pkt, testNow)
	if n := testing.AllocsPerRun(100, func() { s.Simulate(snap, nil, pkt, testNow) }); n != 0 {
		t.Errorf("%v allocations per DHCP request, want 0", n)
	}
}

// dhcp6Frame is a DHCPv6 SOLICIT from vm1's link-local address to the
// All_DHCP_Relay_Agents_and_Servers group, built with gopacket.
func dhcp6Frame(t *testing.T, from string) []byte {
	t.Helper()
	m := mac(from)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(m[:]), DstMAC: net.HardwareAddr{0x33, 0x33, 0, 1, 0, 2},
		EthernetType: layers.EthernetTypeIPv6}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 1, NextHeader: layers.IPProtocolUDP,
		SrcIP: net.ParseIP("fe80::1:1"), DstIP: net.ParseIP("ff02::1:2")}
	u := &layers.UDP{SrcPort: 546, DstPort: 547}
	if err := u.SetNetworkLayerForChecksum(ip6); err != nil {
		t.Fatal(err)
	}
	duid := append([]byte{0, 3, 0, 1}, m[:]...)
	ia := make([]byte, 12)
	ia[3] = 1
	d := &layers.DHCPv6{MsgType: layers.DHCPv6MsgTypeSolicit, TransactionID: []byte{1, 2, 3},
		Options: layers.DHCPv6Options{layers.NewDHCPv6Option(layers.DHCPv6OptClientID, duid),
			layers.NewDHCPv6Option(layers.DHCPv6OptIANA, ia)}}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip6, u, d); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDHCPv6Answered(t *testing.T) {
	tp, ids := dhcpTopo(t, true)
	tp.in.DHCPSubnetsV6 = []topology.DHCPSubnetV6{{BridgeID: ids["br"], Prefix: topology.Str("2001:db8:1::"), PrefixLength: 64,
		Hosts: []topology.DHCPHostV6{{ClientID: topology.Str(vm1MAC), FixedAddress: topology.Str("2001:db8:1::11")}}}}
	snap := tp.snapshot()
	for _, tc := range []struct {
		name  string
		port  string
		mac   string
		kind  Kind
		event DHCPEvent
	}{
		{"solicit answered with an advertise", "vm1", vm1MAC, Consumed, DHCPOffer},
		{"unknown client flooded without a flow", "vm2", vm2MAC, UserspaceOnly, DHCPNoLease},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := dhcp6Frame(t, tc.mac)
			m, _ := MatchFromFrame(frame)
			pkt := &Packet{Port: ids[tc.port], Match: m, Frame: frame, Trace: testing.Verbose()}
			r := NewSimulator(1).Simulate(snap, nil, pkt, testNow)
			t.Logf("trace:\n%s", r.Trace)
			if r.Kind != tc.kind || r.DHCP != tc.event {
				t.Fatalf("%v dhcp %v, want %v %v", r.Kind, r.DHCP, tc.kind, tc.event)
			}
			if tc.kind != Consumed {
				if len(r.Egress) == 0 || len(r.Generated) != 0 {
					t.Errorf("egress %v generated %d, want flooded and unanswered", egressPorts(r), len(r.Generated))
				}
				return
			}
			if len(r.Generated) != 1 {
				t.Fatalf("generated %d, want the advertise", len(r.Generated))
			}
			p := gopacket.NewPacket(r.Generated[0].Frame, layers.LayerTypeEthernet, gopacket.Default)
			d, ok := p.Layer(layers.LayerTypeDHCPv6).(*layers.DHCPv6)
			if !ok || d.MsgType != layers.DHCPv6MsgTypeAdvertise {
				t.Fatalf("generated %v, want an ADVERTISE", p)
			}
		})
	}
	// Other IPv6 traffic is bridged like any frame: to a multicast group,
	// it floods, and the source MAC is learned.
	ns := dhcp6Frame(t, vm1MAC)
	copy(ns[14+40:], []byte{0x87, 0x00, 0x87, 0x00}) // UDP ports 34560, not DHCP's
	m, _ := MatchFromFrame(ns)
	r := NewSimulator(1).Simulate(snap, nil, &Packet{Port: ids["vm1"], Match: m, Frame: ns}, testNow)
	if r.Kind != Forward || len(r.Egress) != 2 || len(r.LearnedMACs) != 1 {
		t.Errorf("IPv6 multicast from vm1: %v to %v, learned %v; want flooded to vm2 and vm3, vm1's MAC learned",
			r.Kind, egressPorts(r), r.LearnedMACs)
	}
}

func TestDHCPTaggedNotAnswered(t *testing.T) {
	tp, ids := dhcpTopo(t, true)
	spec := dhcpRequest(t, vm1MAC, layers.DHCPMsgTypeDiscover, "")
	spec.VLAN = 5
	r := run(t, tp.snapshot(), nil, ids["vm1"], spec)
	if r.DHCP != DHCPNone || len(r.Generated) != 0 {
		t.Errorf("a VLAN-tagged request: dhcp %v, %d generated; want it bridged, not answered", r.DHCP, len(r.Generated))
	}
}
