package checker

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/midonet/midonet/internal/packet"
)

// recorder is a testing.TB that records failures instead of failing the
// test, so the checks themselves can be tested.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

// run calls f with a recorder on its own goroutine (Fatalf ends it) and
// returns the recorded failures.
func run(t *testing.T, f func(tb testing.TB)) []string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.errors
}

var (
	mac1 = [6]byte{2, 0, 0, 0, 0, 1}
	mac2 = [6]byte{2, 0, 0, 0, 0, 2}
	ip1  = [4]byte{10, 0, 0, 1}
	ip2  = [4]byte{10, 0, 0, 2}
)

func udpFrame() []byte {
	return packet.AppendIPv4UDP(nil, packet.UDP4Fields{EthSrc: mac1, EthDst: mac2, Src: ip1, Dst: ip2, TTL: 9,
		SrcPort: 1000, DstPort: 53, Checksum: true}, []byte("payload"))
}

func TestChecks(t *testing.T) {
	vx := packet.AppendVXLAN(nil, packet.UDP4Fields{Src: ip2, Dst: ip1, SrcPort: 50000}, 77, udpFrame())
	var orig packet.Parsed
	orig.Decode(udpFrame())
	unreach, _ := packet.AppendICMPUnreachable(nil, &orig, packet.ICMPErrorFields{EthSrc: mac2, EthDst: mac1, Src: ip2},
		packet.ICMPCodePortUnreachable, 0)
	badUDP := udpFrame()
	badUDP[len(badUDP)-1] ^= 1
	badIP := udpFrame()
	badIP[packet.EthernetHeaderLen+8]++ // TTL changed without checksum update

	tests := []struct {
		name    string
		check   func(tb testing.TB)
		wantErr string // substring of the first failure, or "" for none
	}{
		{"all match", func(tb testing.TB) {
			IPv4(tb, udpFrame(), EthSrc(mac1), EthDst(mac2), NoVLAN(), EtherType(packet.EtherTypeIPv4),
				SrcAddr(netip.AddrFrom4(ip1)), DstAddr(netip.AddrFrom4(ip2)), TTL(9), TOS(0),
				UDP(SrcPort(1000), DstPort(53)))
		}, ""},
		{"wrong ttl", func(tb testing.TB) { IPv4(tb, udpFrame(), TTL(8)) }, "TTL 9, want 8"},
		{"wrong port", func(tb testing.TB) { IPv4(tb, udpFrame(), UDP(DstPort(54))) }, "destination port 53, want 54"},
		{"not tcp", func(tb testing.TB) { IPv4(tb, udpFrame(), TCP()) }, "not TCP"},
		{"bad udp checksum", func(tb testing.TB) { IPv4(tb, badUDP, UDP()) }, "UDP checksum does not verify"},
		{"bad ip checksum", func(tb testing.TB) { IPv4(tb, badIP) }, "IPv4 header checksum"},
		{"not ipv4", func(tb testing.TB) { IPv4(tb, packet.AppendARPRequest(nil, mac1, ip1, ip2)) }, "not an IPv4 packet"},
		{"arp", func(tb testing.TB) {
			Frame(tb, packet.AppendARPRequest(nil, mac1, ip1, ip2), ARP(packet.ARPRequest, ip1, ip2), EthDst(packet.BroadcastMAC))
		}, ""},
		{"wrong arp", func(tb testing.TB) {
			Frame(tb, packet.AppendARPRequest(nil, mac1, ip1, ip2), ARP(packet.ARPReply, ip1, ip2))
		}, "ARP op 1"},
		{"vxlan inner", func(tb testing.TB) {
			IPv4(tb, vx, VXLAN(packet.VXLANPort, 77, SrcAddr(netip.AddrFrom4(ip1)), UDP(DstPort(53))))
		}, ""},
		{"vxlan wrong vni", func(tb testing.TB) { IPv4(tb, vx, VXLAN(packet.VXLANPort, 78)) }, "VNI 0x4d, want 0x4e"},
		{"icmp error quote", func(tb testing.TB) {
			IPv4(tb, unreach, ICMP(packet.ICMPDestUnreachable, packet.ICMPCodePortUnreachable,
				Quoted(SrcAddr(netip.AddrFrom4(ip1)), DstPort(53))))
		}, ""},
		{"icmp wrong code", func(tb testing.TB) { IPv4(tb, unreach, ICMP(packet.ICMPDestUnreachable, 1)) }, "ICMP type 3 code 3, want 3/1"},
		{"vlan missing", func(tb testing.TB) { Frame(tb, udpFrame(), VLAN(5)) }, "want VLAN ID 5"},
		{"runt", func(tb testing.TB) { Frame(tb, make([]byte, 5)) }, "too short"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errs := run(t, tc.check)
			switch {
			case tc.wantErr == "" && len(errs) != 0:
				t.Errorf("unexpected failures: %q", errs)
			case tc.wantErr != "" && (len(errs) == 0 || !strings.Contains(errs[0], tc.wantErr)):
				t.Errorf("failures %q, want one containing %q", errs, tc.wantErr)
			}
		})
	}
}
