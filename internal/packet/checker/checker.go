// Package checker provides composable test assertions on Ethernet frames,
// for tests of code that emits packets (the simulation, datapaths, packet
// builders):
//
//	checker.IPv4(t, frame,
//		checker.SrcAddr(netip.MustParseAddr("10.0.0.1")),
//		checker.TTL(63),
//		checker.UDP(checker.DstPort(53)))
//
// Each helper decodes with packet.Parsed and reports every failing check
// with t.Errorf, so one run shows all differences. It is meant for _test
// files only.
package checker

import (
	"net/netip"
	"testing"

	"github.com/midonet/midonet/internal/packet"
)

// Check asserts one property of a decoded frame.
type Check func(t testing.TB, p *packet.Parsed)

// Frame decodes frame and runs checks on it.
func Frame(t testing.TB, frame []byte, checks ...Check) {
	t.Helper()
	var p packet.Parsed
	p.Decode(frame)
	if p.Layer == packet.LayerNone {
		t.Fatalf("frame of %d bytes is too short for Ethernet", len(frame))
	}
	for _, c := range checks {
		c(t, &p)
	}
}

// IPv4 asserts that frame is an IPv4 packet with a valid header checksum,
// then runs checks.
func IPv4(t testing.TB, frame []byte, checks ...Check) {
	t.Helper()
	Frame(t, frame, append([]Check{isIPv4}, checks...)...)
}

func isIPv4(t testing.TB, p *packet.Parsed) {
	t.Helper()
	if p.IPVersion != 4 {
		t.Fatalf("not an IPv4 packet: ethertype %#04x, layer %v", p.EthType, p.Layer)
	}
	if !p.IPChecksumOK {
		t.Errorf("IPv4 header checksum %#04x, want %#04x", p.IPv4().Checksum(), p.IPv4().CalculateChecksum())
	}
}

// equal checks that get(p) is want, naming the field what and printing
// both values with verb.
func equal[T comparable](what, verb string, get func(*packet.Parsed) T, want T) Check {
	return func(t testing.TB, p *packet.Parsed) {
		t.Helper()
		if got := get(p); got != want {
			t.Errorf(what+" "+verb+", want "+verb, got, want)
		}
	}
}

// EthSrc checks the Ethernet source address.
func EthSrc(mac [6]byte) Check {
	return equal("Ethernet source", "%x", func(p *packet.Parsed) [6]byte { return p.EthSrc }, mac)
}

// EthDst checks the Ethernet destination address.
func EthDst(mac [6]byte) Check {
	return equal("Ethernet destination", "%x", func(p *packet.Parsed) [6]byte { return p.EthDst }, mac)
}

// EtherType checks the ethertype after any VLAN tag.
func EtherType(typ uint16) Check {
	return equal("ethertype", "%#04x", func(p *packet.Parsed) uint16 { return p.EthType }, typ)
}

// VLAN checks that the frame carries an 802.1Q tag with VLAN ID vid.
func VLAN(vid uint16) Check {
	return func(t testing.TB, p *packet.Parsed) {
		t.Helper()
		if !p.HasVLAN || p.VLANTCI&0x0fff != vid {
			t.Errorf("VLAN present %v, TCI %#04x; want VLAN ID %d", p.HasVLAN, p.VLANTCI, vid)
		}
	}
}

// NoVLAN checks that the frame is untagged.
func NoVLAN() Check {
	return func(t testing.TB, p *packet.Parsed) {
		t.Helper()
		if p.HasVLAN {
			t.Errorf("frame has VLAN TCI %#04x, want untagged", p.VLANTCI)
		}
	}
}

// SrcAddr checks the IP source address.
func SrcAddr(a netip.Addr) Check {
	return equal("IP source", "%v", func(p *packet.Parsed) netip.Addr { return p.Src }, a)
}

// DstAddr checks the IP destination address.
func DstAddr(a netip.Addr) Check {
	return equal("IP destination", "%v", func(p *packet.Parsed) netip.Addr { return p.Dst }, a)
}

// TTL checks the IPv4 TTL or IPv6 hop limit.
func TTL(ttl uint8) Check {
	return equal("TTL", "%d", func(p *packet.Parsed) uint8 { return p.TTL }, ttl)
}

// TOS checks the IPv4 TOS or IPv6 traffic class.
func TOS(tos uint8) Check {
	return equal("TOS", "%#02x", func(p *packet.Parsed) uint8 { return p.TOS }, tos)
}

// TCP asserts a complete TCP header whose checksum verifies (for an
// unfragmented IPv4 datagram), then runs checks.
func TCP(checks ...Check) Check {
	return l4(packet.IPProtoTCP, "TCP", checks)
}

// UDP asserts a complete UDP header whose checksum, if present, verifies
// (for an unfragmented IPv4 datagram), then runs checks.
func UDP(checks ...Check) Check {
	return l4(packet.IPProtoUDP, "UDP", checks)
}

func l4(proto uint8, name string, checks []Check) Check {
	return func(t testing.TB, p *packet.Parsed) {
		t.Helper()
		if p.IPProto != proto || p.Layer < packet.Layer4 {
			t.Errorf("not %s: IP protocol %d, layer %v", name, p.IPProto, p.Layer)
			return
		}
		if ip := p.IPv4(); ip != nil && p.Frag == packet.FragNone {
			seg := ip.Payload()
			skip := proto == packet.IPProtoUDP && packet.UDP(seg).Checksum() == 0
			sum := packet.PseudoHeaderSum4(ip.Src(), ip.Dst(), proto, uint16(len(seg)))
			if !skip && packet.Checksum(seg, sum) != 0 {
				t.Errorf("%s checksum does not verify", name)
			}
		}
		for _, c := range checks {
			c(t, p)
		}
	}
}

// SrcPort checks the TCP or UDP source port.
func SrcPort(port uint16) Check {
	return equal("source port", "%d", func(p *packet.Parsed) uint16 { return p.SrcPort }, port)
}

// DstPort checks the TCP or UDP destination port.
func DstPort(port uint16) Check {
	return equal("destination port", "%d", func(p *packet.Parsed) uint16 { return p.DstPort }, port)
}

// ICMP asserts an ICMPv4 message of the given type and code whose checksum
// verifies, then runs checks.
func ICMP(typ, code uint8, checks ...Check) Check {
	return func(t testing.TB, p *packet.Parsed) {
		t.Helper()
		c := p.ICMPv4()
		if c == nil {
			t.Errorf("not ICMPv4: IP protocol %d, layer %v", p.IPProto, p.Layer)
			return
		}
		if c.Type() != typ || c.Code() != code {
			t.Errorf("ICMP type %d code %d, want %d/%d", c.Type(), c.Code(), typ, code)
		}
		if !c.IsChecksumValid() {
			t.Error("ICMP checksum does not verify")
		}
		for _, ch := range checks {
			ch(t, p)
		}
	}
}

// EchoIdent checks the identifier of an ICMP echo request or reply.
func EchoIdent(id uint16) Check {
	return equal("ICMP echo identifier", "%#04x", func(p *packet.Parsed) uint16 { return p.ICMPIdent }, id)
}

// Quoted asserts that an ICMP error quotes a valid IPv4 header and runs
// checks on the quoted datagram, decoded as if it were the frame's payload
// (its ports are checked with SrcPort and DstPort; the quoted L4 checksum
// is not, as only 8 bytes are quoted).
func Quoted(checks ...Check) Check {
	return func(t testing.TB, p *packet.Parsed) {
		t.Helper()
		q := p.Quoted()
		if q == nil {
			t.Error("no quoted IPv4 datagram")
			return
		}
		hl := q.HeaderLen()
		var inner packet.Parsed
		inner.IPVersion = 4
		inner.Src, inner.Dst = q.SrcAddr(), q.DstAddr()
		inner.IPProto, inner.TOS, inner.TTL = q.Protocol(), q.TOS(), q.TTL()
		l4 := q[hl : hl+8]
		inner.SrcPort, inner.DstPort = packet.TCP(l4).SrcPort(), packet.TCP(l4).DstPort()
		for _, c := range checks {
			c(t, &inner)
		}
	}
}

// ARP asserts an Ethernet/IPv4 ARP packet with the given operation, sender
// and target protocol addresses.
func ARP(op uint16, spa, tpa [4]byte) Check {
	return func(t testing.TB, p *packet.Parsed) {
		t.Helper()
		if p.EthType != packet.EtherTypeARP || p.Layer < packet.Layer3 {
			t.Errorf("not ARP: ethertype %#04x, layer %v", p.EthType, p.Layer)
			return
		}
		if p.ARPOp != op || p.ARPSPA != spa || p.ARPTPA != tpa {
			t.Errorf("ARP op %d %v -> %v, want op %d %v -> %v", p.ARPOp, p.ARPSPA, p.ARPTPA, op, spa, tpa)
		}
	}
}

// VXLAN asserts a VXLAN packet on UDP destination port port with network
// identifier vni, and runs checks on the decoded inner frame.
func VXLAN(port uint16, vni uint32, inner ...Check) Check {
	return func(t testing.TB, p *packet.Parsed) {
		t.Helper()
		got, frame, ok := p.VXLAN(port)
		if !ok {
			t.Errorf("not VXLAN on UDP port %d", port)
			return
		}
		if got != vni {
			t.Errorf("VNI %#x, want %#x", got, vni)
		}
		var ip packet.Parsed
		ip.Decode(frame)
		for _, c := range inner {
			c(t, &ip)
		}
	}
}
