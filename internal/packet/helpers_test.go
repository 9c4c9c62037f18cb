package packet

import (
	"encoding/hex"
	"net"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// Test fixtures are built with gopacket, an independent encoder, so our
// decoder is not checked against itself.

var (
	macA = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}
	macB = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b}
	ipA  = [4]byte{10, 0, 0, 1}
	ipB  = [4]byte{192, 168, 7, 200}
	ip6A = [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}
	ip6B = [16]byte{0x20, 0x01, 0x0d, 0xb8, 14: 0xab, 15: 2}
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	// The network layer of TCP/UDP must be known for checksums.
	var nl gopacket.NetworkLayer
	for _, l := range ls {
		switch l := l.(type) {
		case *layers.IPv4:
			nl = l
		case *layers.IPv6:
			nl = l
		case *layers.TCP:
			if nl != nil {
				if err := l.SetNetworkLayerForChecksum(nl); err != nil {
					t.Fatal(err)
				}
			}
		case *layers.UDP:
			if nl != nil {
				if err := l.SetNetworkLayerForChecksum(nl); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: net.HardwareAddr(macA[:]), DstMAC: net.HardwareAddr(macB[:]), EthernetType: typ}
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TOS: 0x28, TTL: 64, Id: 0x1234, Protocol: proto,
		SrcIP: net.IP(ipA[:]), DstIP: net.IP(ipB[:])}
}

func ip6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, TrafficClass: 0x10, HopLimit: 33, NextHeader: next,
		SrcIP: net.IP(ip6A[:]), DstIP: net.IP(ip6B[:])}
}

func tcp(src, dst uint16) *layers.TCP {
	return &layers.TCP{SrcPort: layers.TCPPort(src), DstPort: layers.TCPPort(dst), Seq: 1000, SYN: true, Window: 8192}
}

func udp(src, dst uint16) *layers.UDP {
	return &layers.UDP{SrcPort: layers.UDPPort(src), DstPort: layers.UDPPort(dst)}
}

func tcpFrame(t testing.TB) []byte {
	return serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(40000, 80), gopacket.Payload("hello"))
}

func udpFrame(t testing.TB) []byte {
	return serialize(t, eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(5353, 53), gopacket.Payload("query!"))
}

// mustHex decodes hex, ignoring whitespace and "#" comments to the end of
// each line.
func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for line := range strings.Lines(s) {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		clean.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatalf("bad hex fixture: %v", err)
	}
	return b
}

// decodeGopacket decodes frame with gopacket.
func decodeGopacket(frame []byte) gopacket.Packet {
	return gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
}
