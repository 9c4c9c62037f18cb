package userspace

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/nsthread"
)

// Test rigs: every test builds its own namespaces (unique names), links and
// addresses, and t.Cleanup deletes them even when the test fails.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("needs /dev/net/tun")
	}
}

var nsCounter atomic.Uint32

// newNS creates a named network namespace and returns a handle to it.
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	name := fmt.Sprintf("dpt-%d-%d", os.Getpid(), nsCounter.Add(1))
	var ns netns.NsHandle
	err := nsthread.Run(func() error {
		var err error
		ns, err = netns.NewNamed(name) // switches this thread into it
		return err
	}, func() error { return nil })
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.Close()
		netns.DeleteNamed(name)
	})
	return ns
}

// inNS runs fn on a thread inside ns; sockets it opens stay in ns.
func inNS(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	if err := nsthread.In(ns, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

func nlHandle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// veth creates a veth pair with end a in nsA and end b in nsB, both up, and
// with TX checksum offload left at the kernel's default.
func veth(t *testing.T, nsA netns.NsHandle, a string, nsB netns.NsHandle, b string) {
	t.Helper()
	ha := nlHandle(t, nsA)
	la := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b, PeerNamespace: netlink.NsFd(nsB)}
	if err := ha.LinkAdd(la); err != nil {
		t.Fatalf("add veth %s/%s: %v", a, b, err)
	}
	setUp(t, nsA, a)
	setUp(t, nsB, b)
}

func setUp(t *testing.T, ns netns.NsHandle, name string) {
	t.Helper()
	h := nlHandle(t, ns)
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

func addAddr(t *testing.T, ns netns.NsHandle, name, cidr string) {
	t.Helper()
	h := nlHandle(t, ns)
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, name, err)
	}
}

func linkMAC(t *testing.T, ns netns.NsHandle, name string) net.HardwareAddr {
	t.Helper()
	l, err := nlHandle(t, ns).LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

// udpConn opens a UDP socket bound to addr inside ns.
func udpConn(t *testing.T, ns netns.NsHandle, addr string) *net.UDPConn {
	t.Helper()
	var (
		c   *net.UDPConn
		err error
	)
	inNS(t, ns, func() {
		var ua *net.UDPAddr
		if ua, err = net.ResolveUDPAddr("udp4", addr); err == nil {
			c, err = net.ListenUDP("udp4", ua)
		}
	})
	if err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends msg from c to dst until the receiver reads it or the
// deadline passes (the first datagrams may wait for ARP).
func exchange(t *testing.T, c *net.UDPConn, dst string, recv *net.UDPConn, msg string) (from *net.UDPAddr) {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", dst)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.WriteToUDP([]byte(msg), ua); err != nil {
			t.Fatalf("send: %v", err)
		}
		recv.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := recv.ReadFromUDP(buf)
		if err == nil && string(buf[:n]) == msg {
			return from
		}
	}
	t.Fatalf("a %d-byte message never reached %s", len(msg), dst)
	return nil
}

// rawSocket opens an AF_PACKET socket on name in ns for reading frames.
func rawSocket(t *testing.T, ns netns.NsHandle, name string) int {
	t.Helper()
	l, err := nlHandle(t, ns).LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	inNS(t, ns, func() {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err == nil {
			err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Attrs().Index})
		}
	})
	if err != nil {
		t.Fatalf("raw socket on %s: %v", name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return fd
}

// recvIPv4UDP reads one frame from the packet socket fd into buf and
// decodes it. It reports false when the socket's receive timeout passes;
// ip and udp are nil unless the frame is IPv4 UDP; n is its length.
func recvIPv4UDP(fd int, buf []byte) (p gopacket.Packet, ip *layers.IPv4, udp *layers.UDP, n int, ok bool) {
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return nil, nil, nil, 0, false
	}
	p = gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.Default)
	ip, _ = p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ = p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	return p, ip, udp, n, true
}

// disableTxChecksum turns TX checksum offload (and with it TSO) off on an
// interface, as ethtool -K name tx off does.
func disableTxChecksum(t *testing.T, ns netns.NsHandle, name string) {
	t.Helper()
	const ethtoolSTXCSUM = 0x17
	value := struct{ cmd, data uint32 }{ethtoolSTXCSUM, 0}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}
	copy(ifr.name[:], name)
	ifr.data = unsafe.Pointer(&value)
	var err error
	inNS(t, ns, func() {
		fd, serr := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if serr != nil {
			err = serr
			return
		}
		defer unix.Close(fd)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			err = errno
		}
	})
	if err != nil {
		t.Fatalf("ethtool -K %s tx off: %v", name, err)
	}
}
