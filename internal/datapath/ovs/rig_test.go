package ovs

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/nsthread"
	"github.com/midonet/midonet/internal/packet"
)

// Test rigs for the kernel tests: each test runs in its own network
// namespace (OVS datapaths are per namespace), with its own veth pairs and
// packet sockets, all removed by t.Cleanup even when the test fails.

// waitTimeout is generous: the VM runs under TCG, 10-50x slower than native.
const waitTimeout = 10 * time.Second

// requireKernel skips the test when the openvswitch module is absent or the
// test is not root.
func requireKernel(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for the openvswitch generic netlink families and network namespaces")
	}
	if err := Available(); err != nil {
		t.Skipf("kernel datapath not available (run scripts/kvm-ovs-test.sh for the VM): %v", err)
	}
}

// netNS is a network namespace private to one test.
type netNS struct{ h netns.NsHandle }

// newNetNS creates an unnamed namespace with lo up and IPv6 off; it goes
// away with its last reference, taking its links and datapaths along.
func newNetNS(t testing.TB) *netNS {
	t.Helper()
	var h netns.NsHandle
	err := onNSThread(func() (err error) {
		h, err = netns.New()
		return err
	}, func() error {
		for _, p := range []string{"all", "default"} {
			_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+p+"/disable_ipv6", []byte("1"), 0o644)
		}
		if lo, err := netlink.LinkByName("lo"); err == nil {
			return netlink.LinkSetUp(lo)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return &netNS{h: h}
}

// do runs fn on a thread inside the namespace: sockets and links it
// creates belong there.
func (ns *netNS) do(t testing.TB, fn func()) {
	t.Helper()
	err := onNSThread(func() error { return netns.Set(ns.h) }, func() error {
		fn()
		return nil
	})
	if err != nil {
		t.Fatalf("enter network namespace: %v", err)
	}
}

// onNSThread runs fn on a locked OS thread that enter has moved into a
// namespace, then moves the thread back (nsthread.Run).
func onNSThread(enter, fn func() error) error { return nsthread.Run(enter, fn) }

var dpCounter atomic.Uint32

// openDP opens a datapath with a unique name in ns; it is deleted at
// cleanup.
func openDP(t testing.TB, ns *netNS, cfg Config) *Datapath {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("ovt%d-%d", os.Getpid()%10000, dpCounter.Add(1))
	}
	var (
		d   *Datapath
		err error
	)
	ns.do(t, func() { d, err = Open(cfg) })
	if err != nil {
		t.Fatalf("open datapath %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() { _ = d.Delete() })
	return d
}

// addPort adds a port from inside ns (an internal port is configured with
// an ioctl on a socket of the calling thread).
func addPort(t testing.TB, ns *netNS, d *Datapath, spec datapath.PortSpec) datapath.PortNo {
	t.Helper()
	var (
		no  datapath.PortNo
		err error
	)
	ns.do(t, func() { no, err = d.AddPort(spec) })
	if err != nil {
		t.Fatalf("add %v port %q: %v", spec.Kind, spec.Name, err)
	}
	return no
}

// attachVeth creates the veth pair name<->name+"p" in ns, attaches name
// to d as a netdev port and opens a wire on its peer.
func attachVeth(t testing.TB, ns *netNS, d *Datapath, name string) (datapath.PortNo, *wire) {
	t.Helper()
	vethPair(t, ns, name)
	no := addPort(t, ns, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: name})
	return no, openWire(t, ns, name+"p")
}

// vethPair creates name<->name+"p", both up, in ns.
func vethPair(t testing.TB, ns *netNS, name string) {
	t.Helper()
	var err error
	ns.do(t, func() {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
		if err = netlink.LinkAdd(v); err != nil {
			return
		}
		for _, n := range []string{name, name + "p"} {
			l, lerr := netlink.LinkByName(n)
			if lerr != nil {
				err = lerr
				return
			}
			if err = netlink.LinkSetUp(l); err != nil {
				return
			}
		}
	})
	if err != nil {
		t.Fatalf("create veth %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.do(t, func() {
			if l, err := netlink.LinkByName(name); err == nil {
				_ = netlink.LinkDel(l)
			}
		})
	})
}

// wire is an AF_PACKET socket on one interface: it sends frames out of it
// and reads the frames it receives, VLAN tags put back from the aux data.
type wire struct {
	fd   int
	name string
}

func openWire(t testing.TB, ns *netNS, name string) *wire {
	t.Helper()
	var (
		w   *wire
		err error
	)
	ns.do(t, func() {
		ifi, ierr := net.InterfaceByName(name)
		if ierr != nil {
			err = ierr
			return
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, serr := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if serr != nil {
			err = serr
			return
		}
		if err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1)
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		w = &wire{fd: fd, name: name}
	})
	if err != nil {
		t.Fatalf("packet socket on %s: %v", name, err)
	}
	t.Cleanup(func() { unix.Close(w.fd) })
	return w
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (w *wire) send(t testing.TB, frame []byte) {
	t.Helper()
	if _, err := unix.Write(w.fd, frame); err != nil {
		t.Fatalf("send on %s: %v", w.name, err)
	}
}

// expect returns the first received frame match accepts, failing the
// test after waitTimeout.
func (w *wire) expect(t testing.TB, what string, match func(f []byte) bool) []byte {
	t.Helper()
	f, ok := w.wait(match, waitTimeout)
	if !ok {
		t.Fatalf("%s: no frame on %s within %v", what, w.name, waitTimeout)
	}
	return f
}

// wait reads frames until match accepts one or timeout passes.
func (w *wire) wait(match func(f []byte) bool, timeout time.Duration) ([]byte, bool) {
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n, oobn, _, from, err := unix.Recvmsg(w.fd, buf, oob, 0)
		if err != nil {
			continue // timeout tick or interrupted
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		f := withVLAN(buf[:n], oob[:oobn])
		if match(f) {
			return f, true
		}
	}
	return nil, false
}

// withVLAN reinserts the 802.1Q tag the kernel kept out of band.
func withVLAN(frame, oob []byte) []byte {
	out := append([]byte(nil), frame...)
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return out
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA || len(m.Data) < 20 {
			continue
		}
		status := binary.NativeEndian.Uint32(m.Data[0:])
		tci := binary.NativeEndian.Uint16(m.Data[16:])
		tpid := binary.NativeEndian.Uint16(m.Data[18:])
		if status&unix.TP_STATUS_VLAN_VALID == 0 || len(out) < 12 {
			continue
		}
		if status&unix.TP_STATUS_VLAN_TPID_VALID == 0 {
			tpid = ethTypeVLAN
		}
		tag := make([]byte, 4)
		binary.BigEndian.PutUint16(tag[0:], tpid)
		binary.BigEndian.PutUint16(tag[2:], tci)
		out = append(out[:12], append(tag, out[12:]...)...)
	}
	return out
}

// Frames. marker makes each test's frames recognizable among stray ones.

var (
	macSrc = [6]byte{0x02, 0x00, 0x00, 0x00, 0x01, 0x01}
	macDst = [6]byte{0x02, 0x00, 0x00, 0x00, 0x02, 0x02}
	ipSrc  = [4]byte{10, 1, 0, 1}
	ipDst  = [4]byte{10, 1, 0, 2}
)

func udpFrame(srcPort, dstPort uint16, marker string) []byte {
	return packet.AppendIPv4UDP(nil, packet.UDP4Fields{
		EthSrc: macSrc, EthDst: macDst, Src: ipSrc, Dst: ipDst, TTL: 64, TOS: 0,
		SrcPort: srcPort, DstPort: dstPort, Checksum: true,
	}, []byte(marker))
}

// tcpFrame builds Ethernet/IPv4/TCP with valid checksums.
func tcpFrame(srcPort, dstPort uint16, marker string) []byte {
	f := udpFrame(srcPort, dstPort, "")
	f = f[:packet.EthernetHeaderLen+packet.IPv4MinHeaderLen]
	ip := f[packet.EthernetHeaderLen:]
	ip[9] = packet.IPProtoTCP
	seg := make([]byte, packet.TCPMinHeaderLen+len(marker))
	packet.TCP(seg).Encode(packet.TCPFields{SrcPort: srcPort, DstPort: dstPort, Seq: 1, Flags: 0x18, Window: 1000})
	copy(seg[packet.TCPMinHeaderLen:], marker)
	binary.BigEndian.PutUint16(ip[2:], uint16(packet.IPv4MinHeaderLen+len(seg)))
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip[:packet.IPv4MinHeaderLen], 0))
	sum := packet.PseudoHeaderSum4(ipSrc, ipDst, packet.IPProtoTCP, uint16(len(seg)))
	packet.TCP(seg).SetChecksum(packet.Checksum(seg, sum))
	return append(f, seg...)
}

// vlanFrame inserts an 802.1Q tag with tci into frame.
func vlanFrame(frame []byte, tci uint16) []byte {
	out := append([]byte(nil), frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, ethTypeVLAN)
	out = binary.BigEndian.AppendUint16(out, tci)
	return append(out, frame[12:]...)
}

func hasMarker(marker string) func(f []byte) bool {
	return func(f []byte) bool {
		return len(f) >= len(marker) && string(f[len(f)-len(marker):]) == marker
	}
}

// exactKey is the flow key of frame on inPort, with an exact mask.
func exactKey(frame []byte, inPort datapath.PortNo) (key, mask packet.FlowKey) {
	packet.ExtractFlowKey(frame, uint32(inPort), &key)
	return key, exactMask
}

// upcalls collects upcalls (copied) on a channel.
func upcalls(d *Datapath) chan datapath.Upcall {
	ch := make(chan datapath.Upcall, 64)
	d.SetUpcallHandler(datapath.UpcallHandlerFunc(func(u *datapath.Upcall) {
		c := *u
		c.Packet = append([]byte(nil), u.Packet...)
		select {
		case ch <- c:
		default:
		}
	}))
	return ch
}

// nextUpcall waits for the first upcall match accepts.
func nextUpcall(t testing.TB, ch chan datapath.Upcall, what string, match func(u *datapath.Upcall) bool) datapath.Upcall {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case u := <-ch:
			if match(&u) {
				return u
			}
		case <-timer.C:
			t.Fatalf("%s: no upcall within %v", what, waitTimeout)
		}
	}
}
