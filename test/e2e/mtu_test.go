package e2e

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/sandbox"
)

// TestMSSClampedTowardsOverlay: a VM whose interface MTU (9000) is larger
// than the overlay carries (the sandbox's 9000-byte underlay minus VXLAN's
// 50) opens TCP connections. Its SYN to a VM on another host arrives with
// the MSS the path allows (8950 - 40); its SYN to a VM on its own host,
// which crosses no overlay, keeps the VM's own (9000 - 40).
func TestMSSClampedTowardsOverlay(t *testing.T) {
	need(t)
	bridge := location(t, api(t, "POST", "/bridges", map[string]any{"name": "mss-clamp", "tenantId": "e2e"}))
	t.Cleanup(func() { deleteQuietly(sb.APIURL() + "/bridges/" + bridge) })
	vm := staticVM(t, 0, bridge, "02:00:0a:4f:00:05", "10.79.0.5/24", "")
	remote := staticVM(t, 1, bridge, "02:00:0a:4f:00:06", "10.79.0.6/24", "")
	local := staticVM(t, 0, bridge, "02:00:0a:4f:00:07", "10.79.0.7/24", "")
	// Jumbo frames on every VM's link, both ends of its veth: the agent
	// reads the MTU of the port's interface on its host.
	for _, v := range []*testVM{vm, remote, local} {
		for _, args := range [][]string{
			{"-n", v.ns, "link", "set", "eth0", "mtu", "9000"},
			{"-n", sandbox.HostNS(v.host), "link", "set", v.tap, "mtu", "9000"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v %s", args, err, out)
			}
		}
	}
	// IPv6 too: unique local addresses, no duplicate address detection.
	for i, v := range []*testVM{vm, remote, local} {
		for _, args := range [][]string{
			{"netns", "exec", v.ns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"},
			{"-n", v.ns, "-6", "addr", "add", fmt.Sprintf("fd00:79::%d/64", 5+i), "dev", "eth0", "nodad"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v %s", args, err, out)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		peer    *testVM
		network string
		addr    string
		wantMSS uint16
	}{
		{"to another host", remote, "tcp4", "10.79.0.6", 8950 - 40},
		{"on the same host", local, "tcp4", "10.79.0.7", 9000 - 40},
		{"IPv6 to another host", remote, "tcp6", "fd00:79::6", 8950 - 60},
		{"IPv6 on the same host", local, "tcp6", "fd00:79::7", 9000 - 60},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.network == "tcp4" {
				if n := pingCount(vm.ns, tc.addr, 2); n < 1 {
					t.Fatalf("%d of 2 pings to the peer", n)
				}
			}
			var fd int
			inNS(t, tc.peer.ns, func() { fd = rawSocket(t, "eth0") })
			defer unix.Close(fd)
			unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000})
			const port = 5999
			// Nothing listens: the peer's kernel answers the SYN with a
			// reset, after it has been seen. The reset says the kernel
			// took the rewritten segment's checksum.
			var dialErr error
			inNS(t, vm.ns, func() {
				var c net.Conn
				if c, dialErr = net.DialTimeout(tc.network, net.JoinHostPort(tc.addr, fmt.Sprint(port)), 3*time.Second); dialErr == nil {
					c.Close()
				}
			})
			if !errors.Is(dialErr, syscall.ECONNREFUSED) {
				t.Errorf("connecting to a closed port of the peer: %v; want it refused by the peer's reset", dialErr)
			}
			mss, ok := synMSS(fd, port, 3*time.Second)
			if !ok {
				t.Fatal("the peer saw no SYN with an MSS option")
			}
			if mss != tc.wantMSS {
				t.Errorf("SYN's MSS %d at the peer, want %d", mss, tc.wantMSS)
			}
		})
	}
}

// synMSS reads frames from a packet socket until a TCP SYN to port comes,
// and returns its MSS option.
func synMSS(fd int, port uint16, within time.Duration) (uint16, bool) {
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(within); time.Now().Before(deadline); {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			continue
		}
		p := gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.NoCopy)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil || !tcp.SYN || tcp.ACK || uint16(tcp.DstPort) != port {
			continue
		}
		for _, o := range tcp.Options {
			if o.OptionType == layers.TCPOptionKindMSS && len(o.OptionData) == 2 {
				return uint16(o.OptionData[0])<<8 | uint16(o.OptionData[1]), true
			}
		}
		return 0, false
	}
	return 0, false
}
