package userspace

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/poll"
)

func newDatapath(t *testing.T, ns netns.NsHandle) *Datapath {
	t.Helper()
	return newDatapathRing(t, ns, RingV2)
}

func newDatapathRing(t *testing.T, ns netns.NsHandle, ring RingVersion) *Datapath {
	t.Helper()
	return newDatapathConfig(t, Config{NetNS: ns, NetNSSet: true, Ring: ring})
}

func newDatapathConfig(t *testing.T, cfg Config) *Datapath {
	t.Helper()
	if cfg.RingBlockSize == 0 {
		cfg.RingBlockSize, cfg.RingBlocks = 64<<10, 4
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func addPort(t *testing.T, d *Datapath, spec datapath.PortSpec) datapath.PortNo {
	t.Helper()
	no, err := d.AddPort(spec)
	if err != nil {
		t.Fatal(err)
	}
	return no
}

func putFlow(t *testing.T, d *Datapath, key, mask packet.FlowKey, actions ...datapath.Action) {
	t.Helper()
	if err := d.PutFlow(&key, &mask, actions, datapath.FlowCreate|datapath.FlowModify); err != nil {
		t.Fatal(err)
	}
}

var inPortMask = packet.FlowKey{InPort: ^uint32(0)}

func fromPort(no datapath.PortNo) packet.FlowKey { return packet.FlowKey{InPort: uint32(no)} }

// twoVMs builds namespaces vmA (10.9.0.1 on a0) and vmB (10.9.0.2 on b0)
// whose veth peers a1 and b1 sit in the datapath's namespace.
type twoVMs struct {
	dpNS, nsA, nsB netns.NsHandle
	d              *Datapath
	pa, pb         datapath.PortNo
}

func newTwoVMs(t *testing.T) *twoVMs {
	t.Helper()
	return newTwoVMsRing(t, RingV2)
}

func newTwoVMsRing(t *testing.T, ring RingVersion) *twoVMs {
	t.Helper()
	return newTwoVMsConfig(t, Config{Ring: ring})
}

// newTwoVMsConfig is newTwoVMs with a datapath configured by cfg (its
// namespace set to the datapath's).
func newTwoVMsConfig(t *testing.T, cfg Config) *twoVMs {
	t.Helper()
	requireRoot(t)
	r := &twoVMs{dpNS: newNS(t), nsA: newNS(t), nsB: newNS(t)}
	veth(t, r.dpNS, "a1", r.nsA, "a0")
	veth(t, r.dpNS, "b1", r.nsB, "b0")
	addAddr(t, r.nsA, "a0", "10.9.0.1/24")
	addAddr(t, r.nsB, "b0", "10.9.0.2/24")
	cfg.NetNS, cfg.NetNSSet = r.dpNS, true
	r.d = newDatapathConfig(t, cfg)
	r.pa = addPort(t, r.d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "a1"})
	r.pb = addPort(t, r.d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "b1"})
	return r
}

// receiverWakeups returns a function that counts the wake-ups from
// poll(2) of all the datapath's receivers so far.
func (r *twoVMs) receiverWakeups() func() uint64 {
	r.d.mu.Lock()
	pa, pb := r.d.ports[r.pa].(*afpacketPort), r.d.ports[r.pb].(*afpacketPort)
	r.d.mu.Unlock()
	return func() uint64 { return pa.poll.wakeups.Load() + pb.poll.wakeups.Load() + r.d.busy.wakeups.Load() }
}

// connect installs in-port flows between the two VMs' ports, both ways.
func (r *twoVMs) connect(t *testing.T) {
	t.Helper()
	putFlow(t, r.d, fromPort(r.pa), inPortMask, datapath.Output(r.pb))
	putFlow(t, r.d, fromPort(r.pb), inPortMask, datapath.Output(r.pa))
}

// udpPair opens a UDP socket on each VM at port and checks that a datagram
// crosses each way.
func (r *twoVMs) udpPair(t *testing.T, port int, what string) (a, b *net.UDPConn) {
	t.Helper()
	a = udpConn(t, r.nsA, fmt.Sprintf("10.9.0.1:%d", port))
	b = udpConn(t, r.nsB, fmt.Sprintf("10.9.0.2:%d", port))
	exchange(t, a, fmt.Sprintf("10.9.0.2:%d", port), b, what+": a to b")
	exchange(t, b, fmt.Sprintf("10.9.0.1:%d", port), a, what+": b to a")
	return a, b
}

var rings = []struct {
	name string
	ring RingVersion
}{{"tpacket-v3", RingV3}, {"tpacket-v2", RingV2}}

func TestForwardBetweenVeths(t *testing.T) {
	for _, rc := range rings {
		t.Run(rc.name, func(t *testing.T) { testForward(t, rc.ring) })
	}
}

func testForward(t *testing.T, ring RingVersion) {
	r := newTwoVMsRing(t, ring)
	r.connect(t)
	r.udpPair(t, 7000, "forwarding")

	var pkts uint64
	r.d.DumpFlows(func(f *datapath.Flow) bool { pkts += f.Stats.Packets; return true })
	if pkts < 4 { // at least ARP request, reply and one datagram each way
		t.Errorf("flows counted %d packets, want at least 4", pkts)
	}
	for _, p := range r.d.Ports() {
		if p.Stats.RxPackets == 0 || p.Stats.TxPackets == 0 {
			t.Errorf("port %d (%s) counters %+v: want traffic both ways", p.No, p.Spec.Name, p.Stats)
		}
	}
}

func TestNATRewriteSeenOnTheWire(t *testing.T) {
	r := newTwoVMs(t)
	arp := packet.FlowKey{InPort: uint32(r.pa), EthType: 0x0806}
	ipv4 := packet.FlowKey{InPort: uint32(r.pa), EthType: 0x0800}
	ethMask := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff}
	natSrc := [4]byte{10, 9, 0, 99}
	putFlow(t, r.d, arp, ethMask, datapath.Output(r.pb))
	putFlow(t, r.d, ipv4, ethMask,
		datapath.SetIPv4(datapath.IPv4Set{Src: natSrc, TTL: 17, Fields: datapath.SetSrc | datapath.SetTTL}),
		datapath.SetUDP(datapath.L4Set{Src: 4444, Fields: datapath.SetSrc}),
		datapath.Output(r.pb))
	putFlow(t, r.d, fromPort(r.pb), inPortMask, datapath.Output(r.pa))

	raw := rawSocket(t, r.nsB, "b0")
	ca := udpConn(t, r.nsA, "10.9.0.1:7001")
	dst := &net.UDPAddr{IP: net.IP{10, 9, 0, 2}, Port: 7001}
	buf := make([]byte, 4096)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ca.WriteToUDP([]byte("nat me"), dst)
		for {
			_, ip, udp, _, ok := recvIPv4UDP(raw, buf)
			if !ok {
				break // timeout: send again
			}
			if udp == nil || ip == nil || udp.DstPort != 7001 {
				continue
			}
			if !ip.SrcIP.Equal(net.IP(natSrc[:])) || ip.TTL != 17 || udp.SrcPort != 4444 {
				t.Fatalf("seen %v:%d ttl %d, want %v:4444 ttl 17", ip.SrcIP, udp.SrcPort, ip.TTL, net.IP(natSrc[:]))
			}
			verifyIPv4UDPChecksums(t, ip, udp)
			return
		}
	}
	t.Fatal("no rewritten datagram seen on b0")
}

// verifyIPv4UDPChecksums recomputes both checksums with gopacket.
func verifyIPv4UDPChecksums(t *testing.T, ip *layers.IPv4, udp *layers.UDP) {
	t.Helper()
	gotIP, gotUDP := ip.Checksum, udp.Checksum
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true},
		ip, udp, gopacket.Payload(udp.Payload)); err != nil {
		t.Fatal(err)
	}
	p := gopacket.NewPacket(buf.Bytes(), layers.LayerTypeIPv4, gopacket.Default)
	wantIP := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4).Checksum
	wantUDP := p.Layer(layers.LayerTypeUDP).(*layers.UDP).Checksum
	if gotIP != wantIP || gotUDP != wantUDP {
		t.Errorf("checksums ip %#04x udp %#04x, want %#04x %#04x", gotIP, gotUDP, wantIP, wantUDP)
	}
}

func TestMissBecomesUpcall(t *testing.T) {
	r := newTwoVMs(t)
	ups := make(chan datapath.Upcall, 64)
	r.d.SetUpcallHandler(datapath.UpcallHandlerFunc(func(u *datapath.Upcall) {
		c := *u
		c.Packet = append([]byte(nil), u.Packet...)
		select {
		case ups <- c:
		default:
		}
	}))
	macA := linkMAC(t, r.nsA, "a0")
	ca := udpConn(t, r.nsA, "10.9.0.1:7002")
	deadline := time.After(10 * time.Second)
	for {
		ca.WriteToUDP([]byte("miss"), &net.UDPAddr{IP: net.IP{10, 9, 0, 2}, Port: 7002})
		select {
		case u := <-ups:
			if u.Key.EthType != 0x0806 || u.Key.NwDst != [4]byte{10, 9, 0, 2} {
				continue // IPv6 neighbour discovery and the like, from either side
			}
			if u.Kind != datapath.UpcallMiss || u.InPort != r.pa || u.Key.InPort != uint32(r.pa) {
				t.Fatalf("upcall %v on port %d (key port %d), want a miss on %d", u.Kind, u.InPort, u.Key.InPort, r.pa)
			}
			if net.HardwareAddr(u.Key.EthSrc[:]).String() != macA.String() {
				t.Errorf("upcall key EthSrc %x, want a0's %v", u.Key.EthSrc, macA)
			}
			if len(u.Packet) < 14 {
				t.Errorf("upcall packet of %d bytes", len(u.Packet))
			}
			if st := r.d.Stats(); st.Misses == 0 || st.Upcalls == 0 {
				t.Errorf("stats %+v: want misses and upcalls counted", st)
			}
			return
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no upcall for a miss")
		}
	}
}

func TestVXLANBetweenDatapaths(t *testing.T) {
	for _, bp := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("busy-poll-%v", bp), func(t *testing.T) { vxlanBetweenDatapaths(t, bp) })
	}
}

// twoHosts builds two datapath namespaces joined by an underlay veth
// (u1 10.1.0.1 and u2 10.1.0.2, with MTU underlayMTU), each with a VM
// namespace behind a veth: vmA (10.9.0.1 on a0, peer a1 in dp1) and vmB
// (10.9.0.2 on b0, peer b1 in dp2).
func twoHosts(t *testing.T, underlayMTU int) (dp1NS, dp2NS, nsA, nsB netns.NsHandle, u1, u2 netip.Addr) {
	t.Helper()
	requireRoot(t)
	dp1NS, dp2NS, nsA, nsB = newNS(t), newNS(t), newNS(t), newNS(t)
	veth(t, dp1NS, "u1", dp2NS, "u2")
	for _, u := range []struct {
		ns   netns.NsHandle
		name string
	}{{dp1NS, "u1"}, {dp2NS, "u2"}} {
		h := nlHandle(t, u.ns)
		link, err := h.LinkByName(u.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetMTU(link, underlayMTU); err != nil {
			t.Fatal(err)
		}
	}
	addAddr(t, dp1NS, "u1", "10.1.0.1/24")
	addAddr(t, dp2NS, "u2", "10.1.0.2/24")
	veth(t, dp1NS, "a1", nsA, "a0")
	veth(t, dp2NS, "b1", nsB, "b0")
	addAddr(t, nsA, "a0", "10.9.0.1/24")
	addAddr(t, nsB, "b0", "10.9.0.2/24")
	return dp1NS, dp2NS, nsA, nsB, netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("10.1.0.2")
}

func vxlanBetweenDatapaths(t *testing.T, busyPoll time.Duration) {
	dp1NS, dp2NS, nsA, nsB, u1, u2 := twoHosts(t, 1500)

	const vni = 5001
	tunMask := packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0), TunSrc: [4]byte{255, 255, 255, 255}}
	setup := func(ns netns.NsHandle, local, remote netip.Addr, vm string) *Datapath {
		d := newDatapathConfig(t, Config{NetNS: ns, NetNSSet: true, BusyPoll: busyPoll})
		vm1 := addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: vm})
		vx := addPort(t, d, datapath.PortSpec{Kind: datapath.PortVXLAN, LocalAddr: local, UDPPort: 6677})
		putFlow(t, d, fromPort(vm1), inPortMask,
			datapath.SetTunnel(datapath.TunnelSet{VNI: vni, Dst: remote, TOS: 0x10}), datapath.Output(vx))
		putFlow(t, d, packet.FlowKey{InPort: uint32(vx), TunID: vni, TunSrc: remote.As4()}, tunMask, datapath.Output(vm1))
		return d
	}
	d1 := setup(dp1NS, u1, u2, "a1")
	d2 := setup(dp2NS, u2, u1, "b1")

	underlay := rawSocket(t, dp2NS, "u2")
	ca := udpConn(t, nsA, "10.9.0.1:7003")
	cb := udpConn(t, nsB, "10.9.0.2:7003")
	exchange(t, ca, "10.9.0.2:7003", cb, "over the overlay")
	exchange(t, cb, "10.9.0.1:7003", ca, "and back")
	checkOuterHeader(t, underlay, vni)

	for _, d := range []*Datapath{d1, d2} {
		found := false
		d.DumpFlows(func(f *datapath.Flow) bool {
			if f.Key.TunID == vni && f.Stats.Packets > 0 {
				found = true
			}
			return true
		})
		if !found {
			t.Errorf("no decapsulated packet matched the tunnel-key flow (TunID %d, TunSrc)", vni)
		}
	}
}

// With busy polling, the receiver that spins after traffic handles frames
// of the other ports too, and forwarding is unchanged.
func TestBusyPollForwarding(t *testing.T) {
	r := newTwoVMsConfig(t, Config{BusyPoll: 50 * time.Millisecond})
	r.connect(t)
	ca, cb := r.udpPair(t, 7014, "warm-up")
	for i := range 20 {
		exchange(t, ca, "10.9.0.2:7014", cb, fmt.Sprintf("request %d", i))
		exchange(t, cb, "10.9.0.1:7014", ca, fmt.Sprintf("reply %d", i))
	}
	// Each reply arrives within the window of the request before it: a
	// spinning receiver handles it, not the port's sleeping one.
	if st := r.d.Stats(); st.BusySpins == 0 || st.BusyPackets == 0 {
		t.Errorf("the spinner ran %d times and handled %d frames; want both above 0", st.BusySpins, st.BusyPackets)
	}
}

// While one receiver spins, the others wait parked rather than in poll(2),
// where the kernel would wake each for every frame of its port that the
// spinner then handles anyway.
func TestBusyPollParksTheOtherReceivers(t *testing.T) {
	r := newTwoVMsConfig(t, Config{BusyPoll: 5 * time.Second})
	r.connect(t)
	ca, cb := r.udpPair(t, 7015, "warm-up")
	wakeups := r.receiverWakeups()
	before := wakeups()
	const rounds = 50
	for i := range rounds {
		exchange(t, ca, "10.9.0.2:7015", cb, fmt.Sprintf("request %d", i))
		exchange(t, cb, "10.9.0.1:7015", ca, fmt.Sprintf("reply %d", i))
	}
	// The window outlasts the exchange: one spin carries it all.
	if n := wakeups() - before; n > rounds/5 {
		t.Errorf("the receivers woke %d times for %d frames during one spin; want them parked", n, 2*rounds)
	}
}

// Between spins one receiver sleeps on all the ports: a request that
// arrives after the window wakes it alone, and the reply, which the peer's
// kernel sends back while that receiver forwards the request, wakes no one
// (a receiver asleep on the reply's port would be woken in the middle of
// forwarding, by an interrupt to its processor).
func TestBusyPollOneWakeUpPerExchange(t *testing.T) {
	r := newTwoVMsConfig(t, Config{BusyPoll: time.Millisecond})
	r.connect(t)
	r.udpPair(t, 7016, "warm-up") // resolves ARP both ways
	// A datagram to a closed port: B's kernel answers with an ICMP error
	// in the same system call that delivers the datagram (as often as
	// asked: no rate limit).
	var (
		c   *net.UDPConn
		err error
	)
	inNS(t, r.nsB, func() { err = os.WriteFile("/proc/sys/net/ipv4/icmp_ratelimit", []byte("0"), 0) })
	if err != nil {
		t.Fatal(err)
	}
	inNS(t, r.nsA, func() { c, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IP{10, 9, 0, 2}, Port: 7017}) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wakeups := r.receiverWakeups()
	const rounds = 20
	var n uint64
	buf := make([]byte, 64)
	for i := range rounds {
		// Let the spin end, so that the request finds the receivers asleep.
		if !poll.Until(r.d.busy.sleeping.Load, 5*time.Second) {
			t.Fatalf("round %d: the receivers never went to sleep", i)
		}
		before := wakeups()
		if _, err := c.Write([]byte("anyone?")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("round %d: read %v, want the port-unreachable error", i, err)
		}
		n += wakeups() - before
	}
	if n > rounds {
		t.Errorf("the receivers woke %d times for %d request-reply exchanges; want one each", n, rounds)
	}
}

// When the leader's port goes away, another receiver takes the lead and
// forwarding goes on. Each port is removed in turn, so the leader's is
// removed once.
func TestBusyPollLeaderPortRemoved(t *testing.T) {
	r := newTwoVMsConfig(t, Config{BusyPoll: time.Millisecond})
	r.connect(t)
	ca, cb := r.udpPair(t, 7018, "warm-up")
	for _, side := range []struct {
		no   *datapath.PortNo
		name string
	}{{&r.pa, "a1"}, {&r.pb, "b1"}} {
		name := side.name
		if err := r.d.RemovePort(*side.no); err != nil {
			t.Fatalf("remove %s: %v", name, err)
		}
		*side.no = addPort(t, r.d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: name})
		r.connect(t)
		for i := range 5 {
			exchange(t, ca, "10.9.0.2:7018", cb, fmt.Sprintf("after %s came back, request %d", name, i))
			exchange(t, cb, "10.9.0.1:7018", ca, fmt.Sprintf("after %s came back, reply %d", name, i))
		}
		if !r.d.busy.active.Load() {
			t.Errorf("no receiver leads after %s was removed and added", name)
		}
	}
}

func TestPortRemovalUnderTraffic(t *testing.T) {
	for _, bp := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("busy-poll-%v", bp), func(t *testing.T) { portRemovalUnderTraffic(t, bp) })
	}
}

func portRemovalUnderTraffic(t *testing.T, busyPoll time.Duration) {
	r := newTwoVMsConfig(t, Config{BusyPoll: busyPoll})
	putFlow(t, r.d, fromPort(r.pa), inPortMask, datapath.Output(r.pb))
	putFlow(t, r.d, fromPort(r.pb), inPortMask, datapath.Output(r.pa))
	ca := udpConn(t, r.nsA, "10.9.0.1:7004")
	cb := udpConn(t, r.nsB, "10.9.0.2:7004")
	exchange(t, ca, "10.9.0.2:7004", cb, "warm up")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent atomic.Uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		dst := &net.UDPAddr{IP: net.IP{10, 9, 0, 2}, Port: 7004}
		for {
			select {
			case <-stop:
				return
			default:
			}
			ca.WriteToUDP([]byte("flood"), dst)
			sent.Add(1)
		}
	}()
	for i := range 10 {
		if err := r.d.RemovePort(r.pb); err != nil {
			t.Fatalf("round %d: remove: %v", i, err)
		}
		r.pb = addPort(t, r.d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "b1"})
		putFlow(t, r.d, fromPort(r.pa), inPortMask, datapath.Output(r.pb))
		putFlow(t, r.d, fromPort(r.pb), inPortMask, datapath.Output(r.pa))
	}
	close(stop)
	wg.Wait()
	if sent.Load() == 0 {
		t.Fatal("the sender sent nothing")
	}
	exchange(t, ca, "10.9.0.2:7004", cb, "still forwarding")
}

func TestLinkEvents(t *testing.T) {
	for _, bp := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprintf("busy-poll-%v", bp), func(t *testing.T) { linkEvents(t, bp) })
	}
}

func linkEvents(t *testing.T, busyPoll time.Duration) {
	r := newTwoVMsConfig(t, Config{BusyPoll: busyPoll})
	evs := make(chan datapath.PortEvent, 16)
	r.d.SetPortEventHandler(datapath.PortEventHandlerFunc(func(ev datapath.PortEvent) { evs <- ev }))
	h := nlHandle(t, r.dpNS)
	link, err := h.LinkByName("b1")
	if err != nil {
		t.Fatal(err)
	}
	expect := func(kind datapath.PortEventKind) {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case ev := <-evs:
				if ev.Port != r.pb || ev.Name != "b1" {
					t.Fatalf("event %+v for another port", ev)
				}
				if ev.Kind == kind {
					return
				}
			case <-timeout:
				t.Fatalf("no %v event for b1", kind)
			}
		}
	}
	if err := h.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	expect(datapath.PortDown)
	// While the link is down the receivers must sleep, not spin on the
	// socket's error.
	wakeups := r.receiverWakeups()
	before := wakeups()
	time.Sleep(300 * time.Millisecond) // measuring wake-ups over an interval
	if n := wakeups() - before; n > 20 {
		t.Errorf("the receivers woke %d times in 300 ms with a link down", n)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	expect(datapath.PortUp)
	if err := h.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	expect(datapath.PortRemoved)
	for _, p := range r.d.Ports() {
		if p.No == r.pb {
			t.Errorf("port %d still listed after its interface was deleted", p.No)
		}
	}
}

func TestInternalPort(t *testing.T) {
	requireRoot(t)
	ns := newNS(t)
	d := newDatapath(t, ns)
	ups := make(chan datapath.Upcall, 16)
	d.SetUpcallHandler(datapath.UpcallHandlerFunc(func(u *datapath.Upcall) {
		select {
		case ups <- datapath.Upcall{Kind: u.Kind, InPort: u.InPort, Key: u.Key}:
		default:
		}
	}))
	no := addPort(t, d, datapath.PortSpec{Kind: datapath.PortInternal, Name: "dpint0", MTU: 1400})
	h := nlHandle(t, ns)
	l, err := h.LinkByName("dpint0")
	if err != nil {
		t.Fatalf("internal port's tap is missing: %v", err)
	}
	if l.Attrs().MTU != 1400 {
		t.Errorf("MTU %d, want 1400", l.Attrs().MTU)
	}
	addAddr(t, ns, "dpint0", "10.7.0.1/24")
	c := udpConn(t, ns, "10.7.0.1:7005")
	deadline := time.After(10 * time.Second)
	for {
		c.WriteToUDP([]byte("x"), &net.UDPAddr{IP: net.IP{10, 7, 0, 2}, Port: 7005})
		select {
		case u := <-ups:
			if u.InPort != no {
				t.Fatalf("upcall on port %d, want the internal port %d", u.InPort, no)
			}
			if u.Key.EthType != 0x0806 || u.Key.NwDst != [4]byte{10, 7, 0, 2} {
				continue // IPv6 neighbour discovery and the like
			}
			answerARP(t, d, ns, no, l.Attrs().HardwareAddr)
			return
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no upcall from the internal port")
		}
	}
}

// answerARP executes an ARP reply for 10.7.0.2 out of the internal port and
// waits for the host to learn it.
func answerARP(t *testing.T, d *Datapath, ns netns.NsHandle, no datapath.PortNo, hostMAC net.HardwareAddr) {
	t.Helper()
	peer := net.HardwareAddr{2, 0, 0, 7, 0, 2}
	eth := &layers.Ethernet{SrcMAC: peer, DstMAC: hostMAC, EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPReply, SourceHwAddress: peer, SourceProtAddress: []byte{10, 7, 0, 2},
		DstHwAddress: hostMAC, DstProtAddress: []byte{10, 7, 0, 1}}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, eth, arp); err != nil {
		t.Fatal(err)
	}
	if err := d.Execute(buf.Bytes(), []datapath.Action{datapath.Output(no)}, 0); err != nil {
		t.Fatal(err)
	}
	h := nlHandle(t, ns)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		neighs, err := h.NeighList(0, unix.AF_INET)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range neighs {
			if n.IP.Equal(net.IP{10, 7, 0, 2}) && n.HardwareAddr.String() == peer.String() {
				return
			}
		}
		time.Sleep(10 * time.Millisecond) // polling the neighbour table
	}
	t.Fatal("the host never learnt 10.7.0.2 from the executed ARP reply")
}

// checkOuterHeader reads the underlay until it sees a VXLAN packet from
// 10.1.0.1 and checks its outer headers with gopacket.
func checkOuterHeader(t *testing.T, fd int, vni uint32) {
	t.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		_, ip, udp, _, ok := recvIPv4UDP(fd, buf)
		if !ok || ip == nil || udp == nil || udp.DstPort != 6677 || !ip.SrcIP.Equal(net.IP{10, 1, 0, 1}) {
			continue
		}
		if ip.TOS != 0x10 || ip.TTL != datapath.DefaultTunnelTTL {
			t.Errorf("outer TOS %#x TTL %d, want 0x10 and %d", ip.TOS, ip.TTL, datapath.DefaultTunnelTTL)
		}
		vx := gopacket.NewPacket(udp.Payload, layers.LayerTypeVXLAN, gopacket.Default)
		v, _ := vx.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		if v == nil || !v.ValidIDFlag || v.VNI != vni {
			t.Fatalf("VXLAN header %+v, want VNI %d with the I flag", v, vni)
		}
		if eth, _ := vx.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); eth == nil {
			t.Fatal("no inner Ethernet frame")
		}
		// The outer UDP checksum is the kernel's and, on a veth, left
		// partial for offload; the IPv4 header checksum is complete.
		got := ip.Checksum
		hb := gopacket.NewSerializeBuffer()
		ip.Payload = nil
		if err := ip.SerializeTo(hb, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
			t.Fatal(err)
		}
		var want layers.IPv4
		if err := want.DecodeFromBytes(hb.Bytes(), gopacket.NilDecodeFeedback); err != nil {
			t.Fatal(err)
		}
		if want.Checksum != got {
			t.Errorf("outer IPv4 checksum %#04x, want %#04x", got, want.Checksum)
		}
		return
	}
	t.Fatal("no VXLAN packet seen on the underlay")
}

// A tagged frame arrives on a port with its tag (AF_PACKET reports it
// apart; the datapath puts it back): pop it on the way in, push one on the
// way back, and check both on the wire with raw sockets.
func TestVLANPushPop(t *testing.T) {
	for _, rc := range rings {
		t.Run(rc.name, func(t *testing.T) {
			r := newTwoVMsRing(t, rc.ring)
			tagged := packet.FlowKey{InPort: uint32(r.pa), VLAN: 100 | packet.VLANPresent}
			vlanMask := packet.FlowKey{InPort: ^uint32(0), VLAN: 0x1fff}
			putFlow(t, r.d, tagged, vlanMask, datapath.PopVLAN(), datapath.Output(r.pb))
			putFlow(t, r.d, fromPort(r.pb), inPortMask, datapath.PushVLAN(0x2064), datapath.Output(r.pa))
			rawA := rawSocket(t, r.nsA, "a0")
			rawB := rawSocket(t, r.nsB, "b0")
			if err := unix.SetsockoptInt(rawA, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
				t.Fatal(err)
			}

			in := udpFrameVLAN(t, 100, 7007)
			untagged := func(f gopacket.Packet) bool {
				udp, _ := f.Layer(layers.LayerTypeUDP).(*layers.UDP)
				return udp != nil && udp.DstPort == 7007 && f.Layer(layers.LayerTypeDot1Q) == nil
			}
			sendUntil(t, rawA, in, rawB, untagged, nil)

			back := udpFrameVLAN(t, 0, 7008)
			var tci uint16
			sendUntil(t, rawB, back, rawA, func(f gopacket.Packet) bool {
				udp, _ := f.Layer(layers.LayerTypeUDP).(*layers.UDP)
				return udp != nil && udp.DstPort == 7008
			}, &tci)
			if tci != 0x2064 {
				t.Errorf("frame pushed to a0 carried TCI %#x, want 0x2064", tci)
			}
		})
	}
}

// udpFrameVLAN builds a UDP frame, tagged with vid unless it is 0.
func udpFrameVLAN(t *testing.T, vid uint16, dport uint16) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 9, 1, 1}, DstIP: net.IP{10, 9, 1, 2}}
	udp := &layers.UDP{SrcPort: 7000, DstPort: layers.UDPPort(dport)}
	udp.SetNetworkLayerForChecksum(ip)
	ls := []gopacket.SerializableLayer{eth}
	if vid != 0 {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: vid, Type: layers.EthernetTypeIPv4})
	}
	ls = append(ls, ip, udp, gopacket.Payload("vlan test"))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sendUntil writes frame on out until a frame for which match is true is
// read from in. If tci is not nil, it receives the TCI of a tag the kernel
// reported apart (PACKET_AUXDATA must be on for in).
func sendUntil(t *testing.T, out int, frame []byte, in int, match func(gopacket.Packet) bool, tci *uint16) {
	t.Helper()
	buf := make([]byte, 4096)
	oob := make([]byte, 256)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := unix.Write(out, frame); err != nil {
			t.Fatalf("raw send: %v", err)
		}
		for {
			n, oobn, _, _, err := unix.Recvmsg(in, buf, oob, 0)
			if err != nil {
				break
			}
			if !match(gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.Default)) {
				continue
			}
			if tci != nil {
				cms, _ := unix.ParseSocketControlMessage(oob[:oobn])
				for _, cm := range cms {
					if cm.Header.Level == unix.SOL_PACKET && cm.Header.Type == unix.PACKET_AUXDATA && len(cm.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
						aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&cm.Data[0]))
						if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
							*tci = aux.Vlan_tci
						}
					}
				}
			}
			return
		}
	}
	t.Fatal("the expected frame never arrived")
}

// A frame larger than the egress interface's MTU is dropped and counted, and
// the datapath follows MTU changes of attached interfaces.
func TestEgressMTU(t *testing.T) {
	r := newTwoVMs(t)
	putFlow(t, r.d, fromPort(r.pa), inPortMask, datapath.Output(r.pb))
	putFlow(t, r.d, fromPort(r.pb), inPortMask, datapath.Output(r.pa))
	ca := udpConn(t, r.nsA, "10.9.0.1:7009")
	cb := udpConn(t, r.nsB, "10.9.0.2:7009")
	exchange(t, ca, "10.9.0.2:7009", cb, "small")
	h := nlHandle(t, r.dpNS)
	b1, err := h.LinkByName("b1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetMTU(b1, 1000); err != nil {
		t.Fatal(err)
	}
	big := string(make([]byte, 1200))
	dst := &net.UDPAddr{IP: net.IP{10, 9, 0, 2}, Port: 7009}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ca.WriteToUDP([]byte(big), dst)
		var dropped uint64
		for _, p := range r.d.Ports() {
			if p.No == r.pb {
				dropped = p.Stats.TxDropped
			}
		}
		if dropped > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a 1242-byte frame to a port with MTU 1000 was never dropped")
		}
		time.Sleep(20 * time.Millisecond) // waiting for the MTU change to arrive by netlink
	}
	if err := h.LinkSetMTU(b1, 1500); err != nil {
		t.Fatal(err)
	}
	exchange(t, ca, "10.9.0.2:7009", cb, big)
}

// With Config.Offload, TCP between peers that keep TSO and checksum offload
// on flows through the datapath: super-frames pass whole.
func TestOffloadTCPWithTSO(t *testing.T) {
	for _, rc := range rings {
		t.Run(rc.name, func(t *testing.T) {
			r := newTwoVMsConfig(t, Config{Ring: rc.ring, Offload: true, RingBlockSize: 256 << 10, RingBlocks: 16})
			r.connect(t)
			tcpTransfer(t, r.nsA, r.nsB, "10.9.0.2:7010", 16<<20)
			for _, p := range r.d.Ports() {
				if p.No == r.pa && p.Stats.RxBytes/max(p.Stats.RxPackets, 1) < 3000 {
					t.Errorf("a1 averaged %d bytes per frame: no super-frames passed", p.Stats.RxBytes/max(p.Stats.RxPackets, 1))
				}
			}
		})
	}
}

// Frames too big for a transmit ring slot (jumbo frames) take the ringless
// socket.
func TestJumboFrames(t *testing.T) {
	requireRoot(t)
	r := &twoVMs{dpNS: newNS(t), nsA: newNS(t), nsB: newNS(t)}
	veth(t, r.dpNS, "a1", r.nsA, "a0")
	veth(t, r.dpNS, "b1", r.nsB, "b0")
	for _, l := range []struct {
		ns   netns.NsHandle
		name string
	}{{r.dpNS, "a1"}, {r.dpNS, "b1"}, {r.nsA, "a0"}, {r.nsB, "b0"}} {
		h := nlHandle(t, l.ns)
		link, err := h.LinkByName(l.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetMTU(link, 9000); err != nil {
			t.Fatal(err)
		}
	}
	addAddr(t, r.nsA, "a0", "10.9.0.1/24")
	addAddr(t, r.nsB, "b0", "10.9.0.2/24")
	r.d = newDatapath(t, r.dpNS)
	r.pa = addPort(t, r.d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "a1"})
	r.pb = addPort(t, r.d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "b1"})
	putFlow(t, r.d, fromPort(r.pa), inPortMask, datapath.Output(r.pb))
	putFlow(t, r.d, fromPort(r.pb), inPortMask, datapath.Output(r.pa))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ports %+v", r.d.Ports())
		}
	})
	ca := udpConn(t, r.nsA, "10.9.0.1:7011")
	cb := udpConn(t, r.nsB, "10.9.0.2:7011")
	exchange(t, ca, "10.9.0.2:7011", cb, string(make([]byte, 8000)))
}

// tcpTransfer sends size bytes over TCP from namespace from to addr, served
// in namespace to, and checks they all arrive.
func tcpTransfer(t *testing.T, from, to netns.NsHandle, addr string, size int) {
	t.Helper()
	var (
		ln  net.Listener
		err error
	)
	inNS(t, to, func() { ln, err = net.Listen("tcp4", addr) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	var c net.Conn
	inNS(t, from, func() { c, err = net.DialTimeout("tcp4", addr, 10*time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatalf("write: %v", err)
	}
	c.Close()
	select {
	case n := <-got:
		if n != int64(size) {
			t.Fatalf("received %d bytes, want %d", n, size)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("transfer did not finish")
	}
}

// With Offload and TSO on at the VMs, super-frames headed for the overlay
// are segmented in software before encapsulation.
func TestVXLANOffloadTCP(t *testing.T) {
	requireRoot(t)
	// With a jumbo underlay, a TSO burst crosses in UDP_SEGMENT batches;
	// with a 1500-byte one, every datagram is fragmented.
	for _, underlayMTU := range []int{1500, 9000} {
		t.Run(fmt.Sprintf("underlay-mtu-%d", underlayMTU), func(t *testing.T) { vxlanOffloadTCP(t, underlayMTU) })
	}
}

func vxlanOffloadTCP(t *testing.T, underlayMTU int) {
	dp1NS, dp2NS, nsA, nsB, u1, u2 := twoHosts(t, underlayMTU)
	const vni = 77
	tunMask := packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0)}
	var (
		vxStats []func() datapath.PortStats
		vxPorts []*vxlanPort
	)
	for _, h := range []struct {
		ns            netns.NsHandle
		local, remote netip.Addr
		vm            string
	}{{dp1NS, u1, u2, "a1"}, {dp2NS, u2, u1, "b1"}} {
		d, err := New(Config{NetNS: h.ns, NetNSSet: true, Offload: true, Ring: RingV3})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		vm := addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: h.vm})
		vx := addPort(t, d, datapath.PortSpec{Kind: datapath.PortVXLAN, LocalAddr: h.local})
		putFlow(t, d, fromPort(vm), inPortMask, datapath.SetTunnel(datapath.TunnelSet{VNI: vni, Dst: h.remote}), datapath.Output(vx))
		putFlow(t, d, packet.FlowKey{InPort: uint32(vx), TunID: vni}, tunMask, datapath.Output(vm))
		vxStats = append(vxStats, func() datapath.PortStats { return portStats(t, d, vx) })
		d.mu.Lock()
		vxPorts = append(vxPorts, d.ports[vx].(*vxlanPort))
		d.mu.Unlock()
	}
	const size = 16 << 20
	tcpTransfer(t, nsA, nsB, "10.9.0.2:7012", size)
	for i, st := range vxStats {
		if s := st(); s.TxDropped != 0 || s.RxDropped != 0 {
			t.Errorf("overlay port of datapath %d dropped: %+v", i+1, s)
		}
	}
	sender := vxPorts[0]
	sender.txMu.Lock()
	gsoMax := sender.gsoMax
	sender.txMu.Unlock()
	if underlayMTU < 9000 {
		// The kernel refuses to segment datagrams larger than the path
		// MTU: the port sends those one by one from then on, and still
		// batches those that fit.
		if gsoMax == 0 || gsoMax <= underlayMTU-28 {
			t.Errorf("datagrams of %d bytes and more are sent unbatched, want those above %d", gsoMax, underlayMTU-28)
		}
		return
	}
	if gsoMax != 0 || sender.segmented.Load() == 0 {
		t.Errorf("over a jumbo underlay: %d UDP_SEGMENT sends, batching refused from %d bytes; want sends, no refusal",
			sender.segmented.Load(), gsoMax)
	}
	// The bursts are received coalesced (UDP_GRO) and merged again into
	// super-frames for the receiving VM: it sees far fewer frames than
	// MSS-sized segments.
	link, err := nlHandle(t, nsB).LinkByName("b0")
	if err != nil {
		t.Fatal(err)
	}
	frames, segs := link.Attrs().Statistics.RxPackets, uint64(size/1448)
	t.Logf("the receiving VM got %d frames for about %d segments", frames, segs)
	if frames > segs/4 {
		t.Errorf("the receiving VM got %d frames for about %d segments: bursts were not merged", frames, segs)
	}
}

// With Config.XDP the ports are AF_XDP sockets and forwarding works as with
// AF_PACKET.
func TestForwardBetweenVethsXDP(t *testing.T) {
	requireRoot(t)
	r := &twoVMs{dpNS: newNS(t), nsA: newNS(t), nsB: newNS(t)}
	veth(t, r.dpNS, "a1", r.nsA, "a0")
	veth(t, r.dpNS, "b1", r.nsB, "b0")
	addAddr(t, r.nsA, "a0", "10.9.0.1/24")
	addAddr(t, r.nsB, "b0", "10.9.0.2/24")
	disableTxChecksum(t, r.nsA, "a0")
	disableTxChecksum(t, r.nsB, "b0")
	d, err := New(Config{NetNS: r.dpNS, NetNSSet: true, XDP: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	r.d = d
	r.pa = addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "a1"})
	r.pb = addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "b1"})
	d.mu.Lock()
	_, isXDP := d.ports[r.pa].(*xdpPort)
	d.mu.Unlock()
	if !isXDP {
		t.Skip("the kernel refused AF_XDP on a veth; the datapath fell back to AF_PACKET")
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("ports %+v stats %+v", d.Ports(), d.Stats())
		}
	})
	putFlow(t, d, fromPort(r.pa), inPortMask, datapath.SetIPv4(datapath.IPv4Set{TTL: 33, Fields: datapath.SetTTL}), datapath.Output(r.pb))
	putFlow(t, d, fromPort(r.pb), inPortMask, datapath.Output(r.pa))
	ca := udpConn(t, r.nsA, "10.9.0.1:7013")
	cb := udpConn(t, r.nsB, "10.9.0.2:7013")
	exchange(t, ca, "10.9.0.2:7013", cb, "a to b over AF_XDP")
	exchange(t, cb, "10.9.0.1:7013", ca, "b to a over AF_XDP")
	if err := d.RemovePort(r.pa); err != nil {
		t.Fatal(err)
	}
	link, err := nlHandle(t, r.dpNS).LinkByName("a1")
	if err != nil {
		t.Fatal(err)
	}
	if x := link.Attrs().Xdp; x != nil && x.Attached {
		t.Error("the XDP program is still attached after the port was removed")
	}
}

func portStats(t *testing.T, d *Datapath, no datapath.PortNo) datapath.PortStats {
	t.Helper()
	for _, p := range d.Ports() {
		if p.No == no {
			return p.Stats
		}
	}
	t.Fatalf("port %d not found", no)
	return datapath.PortStats{}
}

// With Config.CPUs the receivers run on threads pinned to those processors,
// and forwarding is unchanged; a processor the machine lacks is refused.
func TestReceiversPinnedToCPUs(t *testing.T) {
	allowed, err := AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	last, missing := allowed[len(allowed)-1], 0
	for slices.Contains(allowed, missing) {
		missing++
	}
	if d, err := New(Config{CPUs: []int{missing}}); err == nil {
		d.Close()
		t.Errorf("New accepted processor %d, which this process may not use (%s)", missing, cpuList(allowed))
	} else if !strings.Contains(err.Error(), cpuList(allowed)) {
		t.Errorf("refusing processor %d: %v; want the usable ones (%s) named", missing, err, cpuList(allowed))
	}
	r := newTwoVMsConfig(t, Config{CPUs: []int{last}, BusyPoll: time.Millisecond})
	r.connect(t)
	r.udpPair(t, 7015, "pinned receivers")
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("Cpus_allowed_list:\t%d\n", last)
	pinned := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if err == nil && strings.Contains(string(b), want) {
			pinned++
		}
	}
	if runtime.NumCPU() > 1 && pinned < 2 {
		t.Errorf("%d threads pinned to processor %d, want the two receivers'", pinned, last)
	}
}

// cpuList writes what ParseCPUList reads.
func TestCPUList(t *testing.T) {
	for _, tc := range []struct {
		cpus []int
		want string
	}{
		{nil, ""},
		{[]int{3}, "3"},
		{[]int{0, 1, 2, 3}, "0-3"},
		{[]int{0, 2, 3, 6}, "0,2-3,6"},
		{[]int{1, 2, 5, 6, 7, 1023}, "1-2,5-7,1023"},
	} {
		got := cpuList(tc.cpus)
		if got != tc.want {
			t.Errorf("cpuList(%v) = %q, want %q", tc.cpus, got, tc.want)
		}
		if back, err := ParseCPUList(got); err != nil || !slices.Equal(back, tc.cpus) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v", got, back, err, tc.cpus)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		ok   bool
	}{
		{"", nil, true},
		{"1", []int{1}, true},
		{"0,2-4", []int{0, 2, 3, 4}, true},
		{" 3 , 5", []int{3, 5}, true},
		{"4-2", nil, false},
		{"x", nil, false},
		{"-1", nil, false},
		{"1,", nil, false},
	} {
		got, err := ParseCPUList(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("ParseCPUList(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
