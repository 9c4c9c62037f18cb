package ovs

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/packet/checker"
)

// Tests against the real openvswitch module: they skip on a host without
// it and run in the qemu VM of scripts/kvm-ovs-test.sh.

func TestDatapathCreateReuseDelete(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	vethPair(t, ns, "lc0")
	d := openDP(t, ns, Config{})
	if d.Reused() {
		t.Fatal("a new datapath reports Reused")
	}
	if !d.Megaflow() {
		t.Error("Linux 6.1 supports megaflows, Megaflow() is false")
	}
	no := addPort(t, ns, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "lc0"})
	key, mask := exactKey(udpFrame(1, 2, "reuse"), no)
	if err := d.PutFlow(&key, &mask, []datapath.Action{datapath.Output(no)}, datapath.FlowCreate); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// A restarted agent reuses the datapath, adopts its port and flushes
	// the flows left by its predecessor.
	var (
		d2  *Datapath
		err error
	)
	ns.do(t, func() { d2, err = Open(Config{Name: d.Name()}) })
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if !d2.Reused() || d2.Ifindex() != d.Ifindex() {
		t.Errorf("reopen: reused %v ifindex %d, want true and %d", d2.Reused(), d2.Ifindex(), d.Ifindex())
	}
	ports := d2.Ports()
	if len(ports) != 1 || ports[0].No != no || ports[0].Spec.Name != "lc0" || ports[0].Spec.Kind != datapath.PortNetdev {
		t.Errorf("adopted ports %+v, want lc0 as netdev port %d", ports, no)
	}
	if got := addPort(t, ns, d2, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "lc0"}); got != no {
		t.Errorf("re-adding the adopted port gave %d, want %d", got, no)
	}
	if n := countFlows(t, d2); n != 0 {
		t.Errorf("%d flows after reuse, want them flushed", n)
	}
	if err := d2.Delete(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	ns.do(t, func() { _, err = net.InterfaceByName(d.Name()) })
	if err == nil {
		t.Errorf("the datapath's local interface %s is still there after Delete", d.Name())
	}
	if err := d2.PutFlow(&key, &mask, nil, datapath.FlowCreate); !errors.Is(err, datapath.ErrClosed) {
		t.Errorf("PutFlow after Delete: %v, want ErrClosed", err)
	}
}

func countFlows(t testing.TB, d *Datapath) int {
	t.Helper()
	n := 0
	if err := d.DumpFlows(func(*datapath.Flow) bool { n++; return true }); err != nil {
		t.Fatalf("dump flows: %v", err)
	}
	return n
}

func TestPortLifecycle(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	vethPair(t, ns, "pl0")
	d := openDP(t, ns, Config{})
	netdev := addPort(t, ns, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "pl0"})
	internal := addPort(t, ns, d, datapath.PortSpec{Kind: datapath.PortInternal, Name: "plint", MTU: 1400})
	vxlan := addPort(t, ns, d, datapath.PortSpec{Kind: datapath.PortVXLAN, UDPPort: 4790})

	var ifi *net.Interface
	var err error
	ns.do(t, func() { ifi, err = net.InterfaceByName("plint") })
	if err != nil {
		t.Fatalf("internal port's interface: %v", err)
	}
	if ifi.MTU != 1400 || ifi.Flags&net.FlagUp == 0 {
		t.Errorf("internal port mtu %d flags %v, want 1400 and up", ifi.MTU, ifi.Flags)
	}

	got := map[datapath.PortNo]datapath.PortSpec{}
	for _, p := range d.Ports() {
		got[p.No] = p.Spec
	}
	want := map[datapath.PortNo]datapath.PortKind{netdev: datapath.PortNetdev, internal: datapath.PortInternal, vxlan: datapath.PortVXLAN}
	if len(got) != len(want) {
		t.Errorf("ports %v, want %v", got, want)
	}
	for no, kind := range want {
		if got[no].Kind != kind {
			t.Errorf("port %d kind %v, want %v", no, got[no].Kind, kind)
		}
	}
	if got[vxlan].Name != "tnvxlan-4790" || got[vxlan].UDPPort != 4790 {
		t.Errorf("vxlan port spec %+v, want default name tnvxlan-4790 on UDP 4790", got[vxlan])
	}

	errCases := []struct {
		name string
		spec datapath.PortSpec
		want error
		text string
	}{
		{"same name twice", datapath.PortSpec{Kind: datapath.PortNetdev, Name: "pl0"}, datapath.ErrPortExists, "pl0"},
		{"missing interface", datapath.PortSpec{Kind: datapath.PortNetdev, Name: "nosuch0"}, nil, "no interface named \"nosuch0\""},
	}
	for _, tc := range errCases {
		var err error
		ns.do(t, func() { _, err = d.AddPort(tc.spec) })
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: err %v, want %v mentioning %q", tc.name, err, tc.want, tc.text)
		}
	}

	for _, no := range []datapath.PortNo{netdev, internal, vxlan} {
		if err := d.RemovePort(no); err != nil {
			t.Errorf("remove port %d: %v", no, err)
		}
	}
	if ps := d.Ports(); len(ps) != 0 {
		t.Errorf("ports after removal: %+v", ps)
	}
	if err := d.RemovePort(netdev); !errors.Is(err, datapath.ErrPortNotFound) {
		t.Errorf("second remove: %v, want ErrPortNotFound", err)
	}
	// Ports come and go while the datapath runs: the netdev can come back.
	if no := addPort(t, ns, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "pl0"}); no == 0 {
		t.Error("re-added port has number 0")
	}
}

func TestPortRemovedWithItsInterface(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	vethPair(t, ns, "rm0")
	d := openDP(t, ns, Config{})
	events := make(chan datapath.PortEvent, 4)
	d.SetPortEventHandler(datapath.PortEventHandlerFunc(func(ev datapath.PortEvent) { events <- ev }))
	no := addPort(t, ns, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "rm0"})
	ns.do(t, func() {
		if l, err := netlink.LinkByName("rm0"); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	timeout := time.After(waitTimeout)
	for removed := false; !removed; {
		select {
		case ev := <-events:
			if ev.Kind == datapath.PortDown && ev.Port == no {
				continue // the interface goes down on its way out
			}
			if ev.Kind != datapath.PortRemoved || ev.Port != no || ev.Name != "rm0" {
				t.Errorf("event %+v, want removed port %d rm0", ev, no)
			}
			removed = true
		case <-timeout:
			t.Fatal("no port event after the interface was deleted")
		}
	}
	if len(d.Ports()) != 0 {
		t.Errorf("ports after interface removal: %+v", d.Ports())
	}
}

func TestFlowForwardsBetweenVeths(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	d := openDP(t, ns, Config{})
	in, src := attachVeth(t, ns, d, "fa0")
	out, dst := attachVeth(t, ns, d, "fb0")

	frame := udpFrame(1000, 2000, "fwd-1")
	key, _ := exactKey(frame, in)
	// A megaflow: in_port, Ethernet and IPv4 destination; other fields free.
	mask := packet.FlowKey{InPort: ^uint32(0), EthSrc: exactMask.EthSrc, EthDst: exactMask.EthDst, VLAN: 0xffff,
		EthType: 0xffff, NwDst: [4]byte{255, 255, 255, 255}}
	actions := []datapath.Action{datapath.Output(out)}
	if err := d.PutFlow(&key, &mask, actions, datapath.FlowCreate); err != nil {
		t.Fatal(err)
	}
	if err := d.PutFlow(&key, &mask, actions, datapath.FlowCreate); !errors.Is(err, datapath.ErrFlowExists) {
		t.Errorf("second create: %v, want ErrFlowExists", err)
	}
	// Another packet in the same megaflow (other ports) takes it too.
	src.send(t, frame)
	dst.expect(t, "first frame", hasMarker("fwd-1"))
	src.send(t, udpFrame(3000, 4000, "fwd-2"))
	dst.expect(t, "second frame, other ports", hasMarker("fwd-2"))

	var flows []datapath.Flow
	if err := d.DumpFlows(func(f *datapath.Flow) bool { flows = append(flows, *f); return true }); err != nil {
		t.Fatal(err)
	}
	if len(flows) != 1 {
		t.Fatalf("dumped %d flows, want 1", len(flows))
	}
	f := flows[0]
	if f.Key != key.Masked(&mask) || f.Mask != mask || !slices.Equal(f.Actions, actions) {
		t.Errorf("dumped flow\n key  %+v\n mask %+v\n acts %v\nwant\n key  %+v\n mask %+v\n acts %v",
			f.Key, f.Mask, f.Actions, key.Masked(&mask), mask, actions)
	}
	if f.Stats.Packets != 2 || f.Stats.LastUsed.IsZero() {
		t.Errorf("stats %+v, want 2 packets and a last-used time", f.Stats)
	}

	// Create-or-replace on an existing flow replaces its actions.
	if err := d.PutFlow(&key, &mask, actions, datapath.FlowCreate|datapath.FlowModify); err != nil {
		t.Errorf("create-or-replace of an existing flow: %v", err)
	}
	// Modify: drop instead; the counters stay unless reset.
	if err := d.PutFlow(&key, &mask, nil, datapath.FlowModify); err != nil {
		t.Fatal(err)
	}
	src.send(t, udpFrame(1000, 2000, "fwd-dropped"))
	if _, ok := dst.wait(hasMarker("fwd-dropped"), 300*time.Millisecond); ok {
		t.Error("a frame got through the modified (drop) flow")
	}
	st, err := d.DeleteFlow(&key, &mask)
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != 3 {
		t.Errorf("final counters %+v, want 3 packets", st)
	}
	if _, err := d.DeleteFlow(&key, &mask); !errors.Is(err, datapath.ErrFlowNotFound) {
		t.Errorf("second delete: %v, want ErrFlowNotFound", err)
	}
	if err := d.PutFlow(&key, &mask, actions, datapath.FlowModify); !errors.Is(err, datapath.ErrFlowNotFound) {
		t.Errorf("modify of an absent flow: %v, want ErrFlowNotFound", err)
	}
}

func TestMissUpcallAnsweredByExecute(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	d := openDP(t, ns, Config{})
	ups := upcalls(d)
	in, src := attachVeth(t, ns, d, "ma0")
	out, dst := attachVeth(t, ns, d, "mb0")

	frame := tcpFrame(5555, 80, "miss-1")
	src.send(t, frame)
	u := nextUpcall(t, ups, "miss", func(u *datapath.Upcall) bool { return hasMarker("miss-1")(u.Packet) })
	want, _ := exactKey(frame, in)
	if u.Kind != datapath.UpcallMiss || u.InPort != in || u.Key != want {
		t.Errorf("upcall kind %v in_port %d key\n %+v\nwant miss, %d,\n %+v", u.Kind, u.InPort, u.Key, in, want)
	}
	if err := d.Execute(u.Packet, []datapath.Action{datapath.Output(out)}, u.InPort); err != nil {
		t.Fatal(err)
	}
	got := dst.expect(t, "executed frame", hasMarker("miss-1"))
	checker.IPv4(t, got, checker.TCP(checker.SrcPort(5555), checker.DstPort(80)))

	st := d.Stats()
	if st.Misses < 1 || st.Upcalls < 1 {
		t.Errorf("stats %+v, want a miss and an upcall", st)
	}
	var upcallDropped uint64
	for _, p := range d.Ports() {
		upcallDropped += p.Stats.UpcallDropped
	}
	if upcallDropped != 0 {
		t.Errorf("%d upcalls dropped", upcallDropped)
	}
}

// TestActionsApplied runs each action on a frame, through Execute and
// through a flow, and checks the frame that comes out.
func TestActionsApplied(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	d := openDP(t, ns, Config{})
	ups := upcalls(d)
	in, src := attachVeth(t, ns, d, "aa0")
	out, dst := attachVeth(t, ns, d, "ab0")

	newMAC := [6]byte{0x02, 0xee, 0, 0, 0, 0x01}
	tests := []struct {
		name   string
		frame  func(marker string) []byte
		action datapath.Action
		check  checker.Check
	}{
		{"set eth", func(m string) []byte { return udpFrame(1, 2, m) },
			datapath.SetEthernet(datapath.EthernetSet{Src: newMAC, Dst: newMAC, Fields: datapath.SetSrc | datapath.SetDst}),
			func(t testing.TB, p *packet.Parsed) {
				checker.EthSrc(newMAC)(t, p)
				checker.EthDst(newMAC)(t, p)
			}},
		{"set eth dst only", func(m string) []byte { return udpFrame(1, 2, m) },
			datapath.SetEthernet(datapath.EthernetSet{Dst: newMAC, Fields: datapath.SetDst}),
			func(t testing.TB, p *packet.Parsed) {
				checker.EthSrc(macSrc)(t, p)
				checker.EthDst(newMAC)(t, p)
			}},
		{"set ipv4", func(m string) []byte { return udpFrame(1, 2, m) },
			datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{192, 0, 2, 1}, Dst: [4]byte{192, 0, 2, 2}, TOS: 0x20, TTL: 9,
				Fields: datapath.SetSrc | datapath.SetDst | datapath.SetTOS | datapath.SetTTL}),
			func(t testing.TB, p *packet.Parsed) {
				checker.SrcAddr(netip.MustParseAddr("192.0.2.1"))(t, p)
				checker.DstAddr(netip.MustParseAddr("192.0.2.2"))(t, p)
				checker.TOS(0x20)(t, p)
				checker.TTL(9)(t, p)
				checker.UDP()(t, p) // checksum fixed for the new addresses
			}},
		{"set ipv4 ttl only", func(m string) []byte { return tcpFrame(1, 2, m) },
			datapath.SetIPv4(datapath.IPv4Set{TTL: 63, Fields: datapath.SetTTL}),
			func(t testing.TB, p *packet.Parsed) {
				checker.TTL(63)(t, p)
				checker.SrcAddr(netip.AddrFrom4(ipSrc))(t, p)
			}},
		{"set tcp", func(m string) []byte { return tcpFrame(1000, 2000, m) },
			datapath.SetTCP(datapath.L4Set{Src: 8080, Dst: 9090, Fields: datapath.SetSrc | datapath.SetDst}),
			checker.TCP(checker.SrcPort(8080), checker.DstPort(9090))},
		{"set udp dst only", func(m string) []byte { return udpFrame(1000, 2000, m) },
			datapath.SetUDP(datapath.L4Set{Dst: 53, Fields: datapath.SetDst}),
			checker.UDP(checker.SrcPort(1000), checker.DstPort(53))},
		{"push vlan", func(m string) []byte { return udpFrame(1, 2, m) },
			datapath.PushVLAN(100), checker.VLAN(100)},
		{"pop vlan", func(m string) []byte { return vlanFrame(udpFrame(1, 2, m), 200) },
			datapath.PopVLAN(), checker.NoVLAN()},
	}
	modes := []struct {
		name string
		run  func(t *testing.T, frame []byte, actions []datapath.Action)
	}{
		{"execute", func(t *testing.T, frame []byte, actions []datapath.Action) {
			if err := d.Execute(frame, actions, in); err != nil {
				t.Fatal(err)
			}
		}},
		{"flow", func(t *testing.T, frame []byte, actions []datapath.Action) {
			key, mask := exactKey(frame, in)
			if err := d.PutFlow(&key, &mask, actions, datapath.FlowCreate); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = d.DeleteFlow(&key, &mask) })
			src.send(t, frame)
		}},
	}
	for _, mode := range modes {
		for _, tc := range tests {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				marker := "act-" + mode.name + "-" + tc.name
				mode.run(t, tc.frame(marker), []datapath.Action{tc.action, datapath.Output(out)})
				got := dst.expect(t, tc.name, hasMarker(marker))
				checker.Frame(t, got, tc.check)
			})
		}
		t.Run(mode.name+"/userspace", func(t *testing.T) {
			marker := "act-" + mode.name + "-userspace"
			frame := udpFrame(7, 8, marker)
			mode.run(t, frame, []datapath.Action{datapath.SetUDP(datapath.L4Set{Dst: 99, Fields: datapath.SetDst}), datapath.Userspace(0xc0ffee)})
			u := nextUpcall(t, ups, "userspace action", func(u *datapath.Upcall) bool { return hasMarker(marker)(u.Packet) })
			if u.Kind != datapath.UpcallUserspace || u.Cookie != 0xc0ffee || u.InPort != in {
				t.Errorf("upcall kind %v cookie %#x in_port %d, want userspace, 0xc0ffee, %d", u.Kind, u.Cookie, u.InPort, in)
			}
			checker.Frame(t, u.Packet, checker.UDP(checker.DstPort(99))) // as modified so far
		})
	}
}

// TestVXLANBetweenPorts sends a frame from a netdev port into the VXLAN
// port with a tunnel to 127.0.0.1: the kernel encapsulates it (seen on lo),
// receives it back on the same VXLAN port, decapsulates it and the miss
// carries the tunnel metadata; a flow on the tunnel ID then forwards it to
// a second netdev port.
func TestVXLANBetweenPorts(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	d := openDP(t, ns, Config{})
	ups := upcalls(d)
	const udpPort, vni = 4791, 0x5abcde
	in, src := attachVeth(t, ns, d, "va0")
	out, dst := attachVeth(t, ns, d, "vb0")
	vx := addPort(t, ns, d, datapath.PortSpec{Kind: datapath.PortVXLAN, Name: "vxt", UDPPort: udpPort})
	lo := openWire(t, ns, "lo")

	local := netip.MustParseAddr("127.0.0.1")
	encap := []datapath.Action{
		datapath.SetTunnel(datapath.TunnelSet{VNI: vni, Dst: local, Src: local, TTL: 10}),
		datapath.Output(vx),
	}
	frame := udpFrame(1, 2, "vxlan-1")
	key, mask := exactKey(frame, in)
	if err := d.PutFlow(&key, &mask, encap, datapath.FlowCreate); err != nil {
		t.Fatal(err)
	}
	src.send(t, frame)
	outer := lo.expect(t, "encapsulated frame on lo", func(f []byte) bool {
		var p packet.Parsed
		p.Decode(f)
		_, inner, ok := p.VXLAN(udpPort)
		return ok && hasMarker("vxlan-1")(inner)
	})
	checker.IPv4(t, outer, checker.TTL(10), checker.VXLAN(udpPort, vni,
		checker.EthSrc(macSrc), checker.EthDst(macDst), checker.UDP(checker.DstPort(2))))

	u := nextUpcall(t, ups, "miss from the vxlan port", func(u *datapath.Upcall) bool { return u.InPort == vx })
	if u.Key.TunID != vni || u.Key.TunDst != local.As4() || u.Key.TunSrc != local.As4() || u.Key.TunTTL != 10 {
		t.Errorf("tunnel key id %#x %v -> %v ttl %d, want %#x 127.0.0.1 -> 127.0.0.1 ttl 10",
			u.Key.TunID, u.Key.TunSrc, u.Key.TunDst, u.Key.TunTTL, vni)
	}
	if !hasMarker("vxlan-1")(u.Packet) {
		t.Errorf("upcall packet is not the decapsulated frame: %x", u.Packet)
	}

	// Decapsulation flow: any frame on the VXLAN port with this VNI.
	decapMask := packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0), VLAN: 0xffff}
	if err := d.PutFlow(&u.Key, &decapMask, []datapath.Action{datapath.Output(out)}, datapath.FlowCreate); err != nil {
		t.Fatal(err)
	}
	src.send(t, udpFrame(1, 2, "vxlan-2"))
	got := dst.expect(t, "decapsulated frame", hasMarker("vxlan-2"))
	checker.Frame(t, got, checker.EthSrc(macSrc), checker.UDP(checker.DstPort(2)))
	if _, err := d.DeleteFlow(&u.Key, &decapMask); err != nil {
		t.Errorf("delete the decapsulation flow: %v", err)
	}
}

func TestPutFlowsBatch(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	vethPair(t, ns, "ba0")
	d := openDP(t, ns, Config{})
	in := addPort(t, ns, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "ba0"})
	puts := make([]FlowPut, 300)
	keys := make([]packet.FlowKey, len(puts))
	for i := range puts {
		keys[i], _ = exactKey(udpFrame(uint16(i+1), 53, "b"), in)
		puts[i] = FlowPut{Key: &keys[i], Mask: &exactMask, Actions: []datapath.Action{datapath.Output(in)}, Flags: datapath.FlowCreate}
	}
	puts[150].Key = &keys[10] // a duplicate in the same batch
	errs := make([]error, len(puts))
	if n := d.PutFlows(puts, errs); n != 1 {
		t.Errorf("%d failures, want 1: %v", n, errors.Join(errs...))
	}
	if !errors.Is(errs[150], datapath.ErrFlowExists) {
		t.Errorf("duplicate: %v, want ErrFlowExists", errs[150])
	}
	if n := countFlows(t, d); n != len(puts)-1 {
		t.Errorf("%d flows, want %d", n, len(puts)-1)
	}
	if err := d.FlushFlows(); err != nil {
		t.Fatal(err)
	}
	if n := countFlows(t, d); n != 0 {
		t.Errorf("%d flows after flush", n)
	}
}

// TestKernelErrorNamesAttribute sends a request whose attribute fails the
// family's policy (a 2-byte upcall PID): the error names the attribute.
func TestKernelErrorNamesAttribute(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	d := openDP(t, ns, Config{})
	ls := &d.ctl
	ls.mu.Lock()
	s := ls.s
	s.e.b = s.e.b[:0]
	off, seq := s.begin(d.fam.datapath, cmdSet, versionDatapath, flagAck, d.ifindex)
	s.e.u16(dpAttrUpcallPID, 1)
	s.finish(off)
	err := d.roundTrip(s, seq, "datapath set", nil)
	ls.mu.Unlock()
	var e *Error
	// Linux 6.1 answers ERANGE ("Attribute failed policy validation").
	if !errors.As(err, &e) || e.Errno == 0 || e.Attr != "2" || e.Msg == "" {
		t.Fatalf("err %v, want a kernel error naming attribute 2 (OVS_DP_ATTR_UPCALL_PID) with a message", err)
	}
	t.Logf("kernel error: %v", err)
}

func TestPortUpDownEvents(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	vethPair(t, ns, "ud0")
	d := openDP(t, ns, Config{})
	events := make(chan datapath.PortEvent, 16)
	d.SetPortEventHandler(datapath.PortEventHandlerFunc(func(ev datapath.PortEvent) { events <- ev }))
	no := addPort(t, ns, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "ud0"})
	setPeer := func(up bool) {
		var err error
		ns.do(t, func() {
			l, lerr := netlink.LinkByName("ud0p")
			if lerr != nil {
				err = lerr
				return
			}
			if up {
				err = netlink.LinkSetUp(l)
			} else {
				err = netlink.LinkSetDown(l)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, step := range []struct {
		peerUp bool
		want   datapath.PortEventKind
	}{{false, datapath.PortDown}, {true, datapath.PortUp}} {
		setPeer(step.peerUp) // the veth's carrier follows its peer
		select {
		case ev := <-events:
			if ev.Kind != step.want || ev.Port != no || ev.Name != "ud0" {
				t.Errorf("event %+v, want %v for port %d ud0", ev, step.want, no)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("no %v event", step.want)
		}
	}
}

// TestNoisyPortDoesNotStarveOthers floods misses on one port while the
// handler is stalled: that port's upcall socket overflows (the kernel
// counts the loss) while a miss on another port still gets through.
func TestNoisyPortDoesNotStarveOthers(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	d := openDP(t, ns, Config{UpcallSocketBuffer: 16 << 10})
	gate := make(chan struct{})
	quietSeen := make(chan struct{}, 1)
	noisy, a := attachVeth(t, ns, d, "na0")
	quiet, b := attachVeth(t, ns, d, "nb0")
	d.SetUpcallHandler(datapath.UpcallHandlerFunc(func(u *datapath.Upcall) {
		<-gate
		if u.InPort == quiet && hasMarker("quiet")(u.Packet) {
			select {
			case quietSeen <- struct{}{}:
			default:
			}
		}
	}))
	const flood = 500
	for i := range flood {
		a.send(t, udpFrame(uint16(i+1), 9, "noisy"))
	}
	b.send(t, udpFrame(1, 9, "quiet"))
	// Wait until the kernel has handled every frame: queued or lost.
	deadline := time.Now().Add(waitTimeout)
	for st := d.Stats(); st.Misses < flood+1; st = d.Stats() {
		if time.Now().After(deadline) {
			close(gate)
			t.Fatalf("only %d misses of %d after %v", st.Misses, flood+1, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond) // polling the kernel's counter
	}
	close(gate)
	select {
	case <-quietSeen:
	case <-time.After(waitTimeout):
		t.Fatal("the quiet port's miss never arrived")
	}
	if st := d.Stats(); st.Lost == 0 {
		t.Errorf("stats %+v: the noisy port's upcall socket never overflowed; the test proves nothing", st)
	}
	for _, p := range d.Ports() {
		if p.No == quiet && p.Stats.UpcallDropped != 0 {
			t.Errorf("quiet port dropped %d upcalls", p.Stats.UpcallDropped)
		}
		if p.No == noisy {
			t.Logf("noisy port: %d upcall overruns", p.Stats.UpcallDropped)
		}
	}
}

// TestHotPathsDoNotAllocate: executing a packet and putting a flow cost no
// Go allocations.
func TestHotPathsDoNotAllocate(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	vethPair(t, ns, "al0")
	d := openDP(t, ns, Config{})
	no := addPort(t, ns, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "al0"})
	frame := udpFrame(1, 2, "alloc")
	acts := []datapath.Action{datapath.SetIPv4(datapath.IPv4Set{TTL: 9, Fields: datapath.SetTTL}), datapath.Output(no)}
	key, mask := exactKey(frame, no)
	tests := []struct {
		name string
		op   func() error
	}{
		{"execute", func() error { return d.Execute(frame, acts, no) }},
		{"flow put", func() error {
			return d.PutFlow(&key, &mask, acts, datapath.FlowCreate|datapath.FlowModify)
		}},
	}
	for _, tc := range tests {
		if err := tc.op(); err != nil { // warm up buffers
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n := testing.AllocsPerRun(50, func() { _ = tc.op() }); n != 0 {
			t.Errorf("%s allocates %v times per call", tc.name, n)
		}
	}
}

// A port's rate limit is a kernel meter its flows run first: frames sent
// back to back beyond the burst are dropped; dumps do not show the meter;
// flows installed before the limit gain it and lose it with the limit.
func TestPortRateLimitMeter(t *testing.T) {
	requireKernel(t)
	ns := newNetNS(t)
	d := openDP(t, ns, Config{})
	in, src := attachVeth(t, ns, d, "ma0")
	out, dst := attachVeth(t, ns, d, "mb0")
	key := packet.FlowKey{InPort: uint32(in), EthType: 0x0800}
	mask := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff}
	actions := []datapath.Action{datapath.Output(out)}
	if err := d.PutFlow(&key, &mask, actions, datapath.FlowCreate); err != nil {
		t.Fatal(err)
	}
	var _ datapath.PortRateLimiter = d
	// 8 kbit/s: 1 KB/s refills almost nothing while the frames are sent;
	// the burst holds 10 frames of 1 KB.
	const frames, size, burstFrames = 60, 1000, 10
	if err := d.SetPortRateLimit(in, datapath.RateLimit{BitsPerSecond: 8000, BurstBytes: burstFrames * size}); err != nil {
		t.Fatal(err)
	}
	send := func(tag string) (got int, elapsed time.Duration) {
		start := time.Now()
		for i := range frames {
			f := udpFrame(1000, 2000, fmt.Sprintf("%s-%03d", tag, i))
			src.send(t, append(f, make([]byte, size-len(f))...))
		}
		elapsed = time.Since(start)
		for {
			if _, ok := dst.wait(func(f []byte) bool { return bytes.Contains(f, []byte(tag+"-")) }, 500*time.Millisecond); !ok {
				return got, elapsed
			}
			got++
		}
	}
	got, elapsed := send("limited")
	refill := int(elapsed.Seconds()*1000/size) + 1
	if got < burstFrames-1 || got > burstFrames+refill+1 {
		t.Errorf("%d of %d frames through the meter in %s; want the burst (%d) and what refilled (≤ %d)", got, frames, elapsed, burstFrames, refill)
	}
	var acts []datapath.Action
	d.DumpFlows(func(f *datapath.Flow) bool { acts = f.Actions; return true })
	if !slices.Equal(acts, actions) {
		t.Errorf("dumped actions %v; want the caller's %v, without the meter", acts, actions)
	}
	if err := d.SetPortRateLimit(in, datapath.RateLimit{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := send("free"); got != frames {
		t.Errorf("%d of %d frames after the limit was removed", got, frames)
	}
	if err := d.SetPortRateLimit(99, datapath.RateLimit{BitsPerSecond: 1e6, BurstBytes: 2000}); !errors.Is(err, datapath.ErrPortNotFound) {
		t.Errorf("limit on a missing port: %v", err)
	}
}
