package userspace

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/poll"
)

func newFastVMs(t *testing.T, cfg Config) *twoVMs {
	t.Helper()
	cfg.FastPath = true
	r := newTwoVMsConfig(t, cfg)
	if r.d.fp == nil {
		t.Fatal("the kernel fast path did not load (see the datapath's log)")
	}
	return r
}

// Flows that only rewrite and output run in the kernel: their packets never
// reach the port's socket, the rewrites and checksums on the wire are the
// engine's, and the flows' counters include them. The sender either
// completes its checksums, which the kernel then patches, or leaves the
// UDP checksum to offload, when the field must hold the rewritten
// pseudo-header's sum for the receiver's stack to finish.
func TestFastPathNATRewrite(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("checksum-offload=%v", offload), func(t *testing.T) { fastPathNATRewrite(t, offload) })
	}
}

func fastPathNATRewrite(t *testing.T, csumOffload bool) {
	r := newFastVMs(t, Config{})
	if !csumOffload {
		disableTxChecksum(t, r.nsA, "a0")
	}
	arp := packet.FlowKey{InPort: uint32(r.pa), EthType: 0x0806}
	ipv4 := packet.FlowKey{InPort: uint32(r.pa), EthType: 0x0800, NwProto: 17}
	mask := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwProto: 0xff}
	natSrc := [4]byte{10, 9, 0, 99}
	putFlow(t, r.d, arp, packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff}, datapath.Output(r.pb))
	putFlow(t, r.d, ipv4, mask,
		datapath.SetIPv4(datapath.IPv4Set{Src: natSrc, TTL: 17, TOS: 0x20, Fields: datapath.SetSrc | datapath.SetTTL | datapath.SetTOS}),
		datapath.SetUDP(datapath.L4Set{Src: 4444, Fields: datapath.SetSrc}),
		datapath.SetEthernet(datapath.EthernetSet{Src: [6]byte{2, 0, 0, 0, 0, 0x99}, Fields: datapath.SetSrc}),
		datapath.Output(r.pb))
	putFlow(t, r.d, fromPort(r.pb), inPortMask, datapath.Output(r.pa))
	if s := r.d.Stats(); s.KernelFlows != 2 {
		t.Fatalf("kernel holds %d flows, want 2 (ARP and IPv4 from a1)", s.KernelFlows)
	}

	raw := rawSocket(t, r.nsB, "b0")
	ca := udpConn(t, r.nsA, "10.9.0.1:7001")
	dst := &net.UDPAddr{IP: net.IP{10, 9, 0, 2}, Port: 7001}
	buf := make([]byte, 4096)
	seen := 0
	for deadline := time.Now().Add(10 * time.Second); seen < 5 && time.Now().Before(deadline); {
		ca.WriteToUDP([]byte("nat me"), dst)
		for {
			p, ip, udp, _, ok := recvIPv4UDP(raw, buf)
			if !ok {
				break
			}
			eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if udp == nil || ip == nil || udp.DstPort != 7001 {
				continue
			}
			if !ip.SrcIP.Equal(net.IP(natSrc[:])) || ip.TTL != 17 || ip.TOS != 0x20 || udp.SrcPort != 4444 ||
				!bytes.Equal(eth.SrcMAC, []byte{2, 0, 0, 0, 0, 0x99}) {
				t.Fatalf("seen %v %v:%d ttl %d tos %#x, want 02:00:00:00:00:99 %v:4444 ttl 17 tos 0x20",
					eth.SrcMAC, ip.SrcIP, udp.SrcPort, ip.TTL, ip.TOS, net.IP(natSrc[:]))
			}
			if csumOffload {
				verifyPartialUDPChecksum(t, ip, udp)
			} else {
				verifyIPv4UDPChecksums(t, ip, udp)
			}
			seen++
		}
	}
	if seen < 5 {
		t.Fatalf("saw %d rewritten datagrams on b0, want 5", seen)
	}
	s := r.d.Stats()
	if s.KernelPackets < 5 {
		t.Errorf("kernel forwarded %d packets, want at least the 5 datagrams", s.KernelPackets)
	}
	var flowPkts uint64
	r.d.DumpFlows(func(f *datapath.Flow) bool {
		if f.Key.EthType == 0x0800 && f.Key.InPort == uint32(r.pa) {
			flowPkts = f.Stats.Packets
			if f.Stats.LastUsed.IsZero() || time.Since(f.Stats.LastUsed) > time.Minute {
				t.Errorf("flow last used %v, want just now", f.Stats.LastUsed)
			}
		}
		return true
	})
	if flowPkts < 5 {
		t.Errorf("the IPv4 flow counted %d packets, want at least 5", flowPkts)
	}
	r.d.Core.DumpFlows(func(f *datapath.Flow) bool {
		if f.Key.EthType == 0x0800 && f.Key.InPort == uint32(r.pa) && f.Stats.Packets != 0 {
			t.Errorf("userspace matched %d datagrams the kernel should have taken", f.Stats.Packets)
		}
		return true
	})
	engineOnly := map[datapath.PortNo]datapath.PortStats{}
	for _, p := range r.d.Core.Ports() {
		engineOnly[p.No] = p.Stats
	}
	if a, b := portStats(t, r.d, r.pa), portStats(t, r.d, r.pb); a.RxPackets-engineOnly[r.pa].RxPackets < 5 || b.TxPackets-engineOnly[r.pb].TxPackets < 5 {
		t.Errorf("port counters a1 %+v, b1 %+v, without the kernel's %+v, %+v: want the kernel's datagrams counted",
			a, b, engineOnly[r.pa], engineOnly[r.pb])
	}
	st, err := r.d.DeleteFlow(&ipv4, &mask)
	if err != nil || st.Packets < flowPkts {
		t.Errorf("delete: %d packets, %v; want at least %d", st.Packets, err, flowPkts)
	}
	if s := r.d.Stats(); s.KernelFlows != 1 {
		t.Errorf("after the delete the kernel holds %d flows, want 1", s.KernelFlows)
	}
}

// verifyPartialUDPChecksum checks that a datagram whose checksum is left
// to offload carries the sum of its pseudo header, and a valid IP checksum.
func verifyPartialUDPChecksum(t *testing.T, ip *layers.IPv4, udp *layers.UDP) {
	t.Helper()
	want := ^packet.Checksum(nil, packet.PseudoHeaderSum4([4]byte(ip.SrcIP.To4()), [4]byte(ip.DstIP.To4()), packet.IPProtoUDP, udp.Length))
	if udp.Checksum != want {
		t.Errorf("UDP checksum field %#04x, want the pseudo-header sum %#04x", udp.Checksum, want)
	}
	if !packet.IPv4(ip.Contents).IsChecksumValid() {
		t.Errorf("IP checksum %#04x does not verify", ip.Checksum)
	}
}

// A TCP transfer with TSO and checksum offload on both VMs passes through
// the kernel flows whole, super-frames included.
func TestFastPathTCP(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			r := newFastVMs(t, Config{Offload: offload})
			r.connect(t)
			tcpTransfer(t, r.nsA, r.nsB, "10.9.0.2:7010", 16<<20)
			if s := r.d.Stats(); s.KernelBytes < 16<<20 {
				t.Errorf("kernel forwarded %d bytes of a 16 MiB transfer", s.KernelBytes)
			}
		})
	}
}

// Removing a port removes the kernel flows that enter or leave through it.
func TestFastPathPortRemoval(t *testing.T) {
	r := newFastVMs(t, Config{})
	r.connect(t)
	if s := r.d.Stats(); s.KernelFlows != 2 {
		t.Fatalf("kernel holds %d flows, want 2", s.KernelFlows)
	}
	if err := r.d.RemovePort(r.pb); err != nil {
		t.Fatal(err)
	}
	if s := r.d.Stats(); s.KernelFlows != 0 {
		t.Errorf("after removing b1 the kernel holds %d flows, want 0", s.KernelFlows)
	}
	// The flows stay in userspace: outputs to the removed port drop there.
	n := 0
	r.d.DumpFlows(func(*datapath.Flow) bool { n++; return true })
	if n != 2 {
		t.Errorf("userspace holds %d flows, want 2", n)
	}
}

// The property the fast path must keep: for any flows and any frame, what
// leaves the datapath is what the engine alone would send. Random flows
// (random masks, rewrites, drops, actions the kernel cannot run) and random
// frames (IP options, fragments, truncated headers, ICMP, other protocols)
// go through the datapath with the fast path; each frame's output on the
// wire is compared with the engine's for the flow the frame matches.
func TestFastPathMatchesEngine(t *testing.T) {
	r := newFastVMs(t, Config{})
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(1, seed))
	t.Logf("seed %d", seed)

	ref := engine.New(engine.Config{})
	t.Cleanup(ref.Close)
	refA, _ := ref.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "a1"}, nopTx{})
	capture := &captureTx{}
	refB, _ := ref.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "b1"}, capture)
	if refA.No != r.pa || refB.No != r.pb {
		t.Fatalf("reference ports %d/%d, datapath %d/%d", refA.No, refB.No, r.pa, r.pb)
	}

	type flow struct {
		key, mask packet.FlowKey
		actions   []datapath.Action
	}
	var flows []flow
	const nflows = 24
	for i := range nflows {
		// Each flow pins a distinct destination, so no frame matches two.
		f := flow{mask: packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwDst: [4]byte{255, 255, 255, 255}}}
		f.key = packet.FlowKey{InPort: uint32(r.pa), EthType: 0x0800, NwDst: [4]byte{10, 9, 1, byte(i)}}
		proto := []uint8{6, 17, 1, 47}[rng.IntN(4)]
		if rng.IntN(4) > 0 {
			f.mask.NwProto, f.key.NwProto = 0xff, proto
		}
		if rng.IntN(2) == 0 {
			f.mask.NwSrc, f.key.NwSrc = [4]byte{255, 255, 255, 0}, [4]byte{10, 9, byte(rng.IntN(2)), 0}
		}
		if rng.IntN(3) == 0 {
			f.mask.NwTTL, f.key.NwTTL = 0xff, []uint8{1, 64}[rng.IntN(2)]
		}
		if rng.IntN(3) == 0 {
			f.mask.NwTOS, f.key.NwTOS = 0xff, []uint8{0, 0x10}[rng.IntN(2)]
		}
		if rng.IntN(3) == 0 {
			f.mask.EthSrc, f.key.EthSrc = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, testMACs[rng.IntN(len(testMACs))]
		}
		if f.mask.NwProto == 0xff && (proto == 6 || proto == 17) && rng.IntN(2) == 0 {
			f.mask.TpDst, f.key.TpDst = 0xffff, testPorts[rng.IntN(len(testPorts))]
		}
		if f.mask.NwProto == 0xff && proto == 1 && rng.IntN(2) == 0 {
			f.mask.TpSrc, f.key.TpSrc = 0xffff, 8 // echo requests
			if rng.IntN(2) == 0 {
				f.mask.ICMPID, f.key.ICMPID = 0xffff, testPorts[rng.IntN(len(testPorts))]
			}
		}
		if rng.IntN(2) == 0 {
			f.actions = append(f.actions, datapath.SetEthernet(datapath.EthernetSet{
				Src: testMACs[rng.IntN(len(testMACs))], Dst: testMACs[rng.IntN(len(testMACs))], Fields: uint8(1 + rng.IntN(3))}))
		}
		if rng.IntN(2) == 0 {
			s := datapath.IPv4Set{Src: [4]byte{192, 0, 2, byte(rng.IntN(256))}, Dst: [4]byte{198, 51, 100, byte(rng.IntN(256))},
				TOS: uint8(rng.IntN(256)), TTL: uint8(rng.IntN(256)), Fields: uint8(1 + rng.IntN(15))}
			f.actions = append(f.actions, datapath.SetIPv4(s))
		}
		if f.mask.NwProto == 0xff && (proto == 6 || proto == 17) && rng.IntN(2) == 0 {
			s := datapath.L4Set{Src: uint16(rng.IntN(65536)), Dst: uint16(rng.IntN(65536)), Fields: uint8(1 + rng.IntN(3))}
			if proto == 6 {
				f.actions = append(f.actions, datapath.SetTCP(s))
			} else {
				f.actions = append(f.actions, datapath.SetUDP(s))
			}
		}
		switch rng.IntN(8) {
		case 0: // a drop
		case 1: // the kernel cannot send to the agent: stays in userspace
			f.actions = append(f.actions, datapath.Userspace(7), datapath.Output(r.pb))
		default:
			f.actions = append(f.actions, datapath.Output(r.pb))
		}
		flows = append(flows, f)
		putFlow(t, r.d, f.key, f.mask, f.actions...)
	}
	t.Logf("kernel holds %d of %d flows", r.d.Stats().KernelFlows, nflows)

	out := rawSocket(t, r.nsA, "a0")
	in := rawSocket(t, r.nsB, "b0")
	const nframes = 1000
	rx0 := portStats(t, r.d, r.pa).RxPackets
	want := make(map[uint32][]byte)
	which := make(map[uint32]int)
	for seq := uint32(1); seq <= nframes; seq++ {
		frame := randomFrame(rng, seq)
		var key packet.FlowKey
		packet.ExtractFlowKey(frame, uint32(r.pa), &key)
		capture.frames = nil
		for i, f := range flows {
			if key.Masked(&f.mask) == f.key {
				which[seq] = i
				if err := ref.Execute(bytes.Clone(frame), f.actions, r.pa); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		if len(capture.frames) > 0 {
			want[seq] = capture.frames[0]
		}
		if _, err := unix.Write(out, frame); err != nil {
			t.Fatalf("send frame %d: %v", seq, err)
		}
		// In batches the port's ring holds: wait until the datapath
		// (socket or kernel) has taken every frame sent so far.
		if seq%32 == 0 || seq == nframes {
			if !poll.Until(func() bool { return portStats(t, r.d, r.pa).RxPackets >= rx0+uint64(seq) }, 5*time.Second) {
				t.Fatalf("the datapath took %d of the first %d frames", portStats(t, r.d, r.pa).RxPackets-rx0, seq)
			}
		}
	}
	got := make(map[uint32][]byte)
	buf := make([]byte, 4096)
	for deadline := time.Now().Add(2 * time.Second); len(got) < len(want) && time.Now().Before(deadline); {
		n, _, err := unix.Recvfrom(in, buf, 0)
		if err != nil {
			continue
		}
		if seq, ok := frameSeq(buf[:n]); ok {
			got[seq] = bytes.Clone(buf[:n])
		}
	}
	for seq := uint32(1); seq <= nframes; seq++ {
		w, g := want[seq], got[seq]
		switch {
		case w == nil && g != nil:
			t.Errorf("frame %d: sent although the engine drops it:\n got %x", seq, g)
		case w != nil && g == nil:
			t.Errorf("frame %d: lost; the engine sends\n%x\nflow %+v", seq, w, flows[which[seq]])
		case !bytes.Equal(w, g):
			t.Errorf("frame %d differs from the engine's:\n got %x\nwant %x", seq, g, w)
		}
	}
	s := r.d.Stats()
	t.Logf("%d frames, %d sent by the engine's rules, %d through the kernel", nframes, len(want), s.KernelPackets)
	if s.KernelPackets == 0 {
		t.Error("no frame went through the kernel")
	}
}

var (
	testMACs  = [][6]byte{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3}}
	testPorts = []uint16{53, 80, 4000}
)

// randomFrame builds an IPv4 frame to one of the flows' destinations (or
// just past them) whose payload ends with a marker and seq.
func randomFrame(rng *rand.Rand, seq uint32) []byte {
	payload := make([]byte, 8+rng.IntN(40))
	copy(payload[len(payload)-8:], "MNFP")
	binary.BigEndian.PutUint32(payload[len(payload)-4:], seq)
	ip := &layers.IPv4{Version: 4, TTL: []uint8{1, 64, 200}[rng.IntN(3)], TOS: []uint8{0, 0x10}[rng.IntN(2)],
		SrcIP: net.IP{10, 9, byte(rng.IntN(2)), byte(1 + rng.IntN(3))}, DstIP: net.IP{10, 9, 1, byte(rng.IntN(27))}, Id: uint16(seq)}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(testMACs[rng.IntN(len(testMACs))][:]), DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 0xb}, EthernetType: layers.EthernetTypeIPv4}
	var ls []gopacket.SerializableLayer
	switch rng.IntN(6) {
	case 0, 1:
		ip.Protocol = layers.IPProtocolTCP
		tcp := &layers.TCP{SrcPort: layers.TCPPort(testPorts[rng.IntN(3)]), DstPort: layers.TCPPort(testPorts[rng.IntN(3)]), Seq: seq, ACK: true, SYN: rng.IntN(2) == 0, Window: 1000}
		tcp.SetNetworkLayerForChecksum(ip)
		ls = []gopacket.SerializableLayer{eth, ip, tcp}
	case 2, 3:
		ip.Protocol = layers.IPProtocolUDP
		udp := &layers.UDP{SrcPort: layers.UDPPort(testPorts[rng.IntN(3)]), DstPort: layers.UDPPort(testPorts[rng.IntN(3)])}
		udp.SetNetworkLayerForChecksum(ip)
		ls = []gopacket.SerializableLayer{eth, ip, udp}
	case 4:
		ip.Protocol = layers.IPProtocolICMPv4
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode([]uint8{8, 0, 3}[rng.IntN(3)], uint8(rng.IntN(2))), Id: testPorts[rng.IntN(3)], Seq: uint16(seq)}
		ls = []gopacket.SerializableLayer{eth, ip, icmp}
	default:
		ip.Protocol = 47
		ls = []gopacket.SerializableLayer{eth, ip}
	}
	switch rng.IntN(10) {
	case 0:
		ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
	case 1:
		ip.Flags = layers.IPv4MoreFragments
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
		append(ls, gopacket.Payload(payload))...); err != nil {
		panic(err)
	}
	f := buf.Bytes()
	if rng.IntN(20) == 0 && ip.Protocol == layers.IPProtocolUDP {
		binary.BigEndian.PutUint16(f[ethLenIPv4UDPCsum(ip):], 0) // no UDP checksum
	}
	return f
}

func ethLenIPv4UDPCsum(ip *layers.IPv4) int { return 14 + int(ip.IHL)*4 + 6 }

// frameSeq finds the marker and sequence number near a frame's end
// (Ethernet padding may follow).
func frameSeq(f []byte) (uint32, bool) {
	i := bytes.LastIndex(f, []byte("MNFP"))
	if i < 0 || i+8 > len(f) {
		return 0, false
	}
	return binary.BigEndian.Uint32(f[i+4:]), true
}

type nopTx struct{}

func (nopTx) Transmit([]byte, *datapath.TunnelSet) error { return nil }

type captureTx struct{ frames [][]byte }

func (c *captureTx) Transmit(f []byte, _ *datapath.TunnelSet) error {
	c.frames = append(c.frames, bytes.Clone(f))
	return nil
}

// Two datapaths joined by an underlay: flows into the overlay and tunnel
// keys' flows run in the kernel, which pushes and pops the VXLAN headers
// as the agent's VXLAN port does. With a peer that has no fast path, the
// frames the kernel sent with their checksums left to offload reach that
// peer's agent, which finishes them.
func TestFastPathOverlay(t *testing.T) {
	for _, peerFast := range []bool{true, false} {
		t.Run(fmt.Sprintf("peer-fast-path=%v", peerFast), func(t *testing.T) { fastPathOverlay(t, peerFast) })
	}
}

func fastPathOverlay(t *testing.T, peerFast bool) {
	dp1NS, dp2NS, nsA, nsB, u1, u2 := twoHosts(t, 1500)
	const vni = 4242
	tunMask := packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0)}
	setup := func(ns netns.NsHandle, local, remote netip.Addr, vm string, fast bool) (*Datapath, datapath.PortNo) {
		d := newDatapathConfig(t, Config{NetNS: ns, NetNSSet: true, FastPath: fast})
		p := addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: vm})
		vx := addPort(t, d, datapath.PortSpec{Kind: datapath.PortVXLAN, LocalAddr: local, UDPPort: 6677})
		putFlow(t, d, fromPort(p), inPortMask,
			datapath.SetTunnel(datapath.TunnelSet{VNI: vni, Dst: remote, TOS: 0x10}), datapath.Output(vx))
		putFlow(t, d, packet.FlowKey{InPort: uint32(vx), TunID: vni}, tunMask, datapath.Output(p))
		if fast && d.Stats().KernelFlows != 2 {
			t.Fatalf("kernel holds %d flows, want 2 (into the overlay, out of it)", d.Stats().KernelFlows)
		}
		return d, vx
	}
	d1, vx1 := setup(dp1NS, u1, u2, "a1", true)
	d2, _ := setup(dp2NS, u2, u1, "b1", peerFast)

	underlay := rawSocket(t, dp2NS, "u2")
	ca := udpConn(t, nsA, "10.9.0.1:7003")
	cb := udpConn(t, nsB, "10.9.0.2:7003")
	for i := range 10 {
		exchange(t, ca, "10.9.0.2:7003", cb, fmt.Sprintf("over the overlay %d", i))
		exchange(t, cb, "10.9.0.1:7003", ca, fmt.Sprintf("and back %d", i))
	}
	if s := d1.Stats(); s.KernelPackets < 10 {
		t.Errorf("datapath 1's kernel sent %d packets, want the 10 datagrams at least", s.KernelPackets)
	}
	if s := d2.Stats(); peerFast && s.KernelPackets < 10 {
		t.Errorf("datapath 2's kernel handled %d packets, want the 10 datagrams each way at least", s.KernelPackets)
	}
	// What the kernel put on the underlay is what the VXLAN port sends.
	buf := make([]byte, 4096)
	seen := 0
	for deadline := time.Now().Add(5 * time.Second); seen < 3 && time.Now().Before(deadline); {
		ca.WriteToUDP([]byte("look"), &net.UDPAddr{IP: net.IP{10, 9, 0, 2}, Port: 7003})
		_, ip, udp, n, ok := recvIPv4UDP(underlay, buf)
		if !ok || ip == nil || udp == nil || !ip.SrcIP.Equal(net.IP{10, 1, 0, 1}) {
			continue
		}
		if udp.DstPort != 6677 || ip.TOS != 0x10 || ip.TTL != datapath.DefaultTunnelTTL ||
			!ip.DstIP.Equal(net.IP{10, 1, 0, 2}) || ip.Flags&layers.IPv4DontFragment != 0 || int(ip.Length) != n-14 ||
			int(udp.Length) != n-14-20 {
			t.Errorf("outer %v:%d → %v:%d TOS %#x TTL %d flags %v lengths %d/%d of %d", ip.SrcIP, udp.SrcPort, ip.DstIP, udp.DstPort,
				ip.TOS, ip.TTL, ip.Flags, ip.Length, udp.Length, n)
		}
		if !packet.IPv4(buf[14:n]).IsChecksumValid() {
			t.Errorf("outer IPv4 checksum %#04x does not verify", ip.Checksum)
		}
		vx := gopacket.NewPacket(udp.Payload, layers.LayerTypeVXLAN, gopacket.Default)
		v, _ := vx.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		if v == nil || !v.ValidIDFlag || v.VNI != vni {
			t.Fatalf("VXLAN %+v, want VNI %d", v, vni)
		}
		if inner, _ := vx.Layer(layers.LayerTypeUDP).(*layers.UDP); inner == nil || inner.DstPort != 7003 {
			continue // ARP, which the agent encapsulates
		}
		if udp.SrcPort < 49152 {
			t.Errorf("outer source port %d, want one from the inner flow's hash (49152-65535)", udp.SrcPort)
		}
		seen++
	}
	if seen < 3 {
		t.Fatalf("saw %d encapsulated datagrams on the underlay, want 3", seen)
	}
	if peerFast {
		// What a peer's agent sends (from its VXLAN port) takes this
		// agent's socket even when the key has a kernel flow: it may
		// follow flow state the reply needs, which must come first.
		bl, err := nlHandle(t, nsB).LinkByName("b0")
		if err != nil {
			t.Fatal(err)
		}
		before := d2.Stats().KernelPackets
		frame := udpFrame(t, bl.Attrs().HardwareAddr, 7003, "from the agent")
		if err := d1.Execute(frame, []datapath.Action{datapath.SetTunnel(datapath.TunnelSet{VNI: vni, Dst: u2}), datapath.Output(vx1)}, 0); err != nil {
			t.Fatal(err)
		}
		cb.SetReadDeadline(time.Now().Add(5 * time.Second))
		for { // past the "look" datagrams above
			n, _, err := cb.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("the agent's datagram did not arrive: %v", err)
			}
			if string(buf[:n]) == "from the agent" {
				break
			}
		}
		if after := d2.Stats().KernelPackets; after != before {
			t.Errorf("the peer's kernel took %d packets the agent sent", after-before)
		}
	}
	var kernelDecap uint64
	d2.DumpFlows(func(f *datapath.Flow) bool {
		if f.Key.TunID == vni {
			kernelDecap = f.Stats.Packets
		}
		return true
	})
	if kernelDecap < 10 {
		t.Errorf("the tunnel key's flow on datapath 2 counted %d packets, want 10 at least", kernelDecap)
	}
}

// udpFrame builds a UDP datagram from 10.9.0.1:7003 to 10.9.0.2:port.
func udpFrame(t *testing.T, dst net.HardwareAddr, port uint16, payload string) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 9, 0, 1}, DstIP: net.IP{10, 9, 0, 2}}
	udp := &layers.UDP{SrcPort: 7003, DstPort: layers.UDPPort(port)}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
		eth, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A TCP transfer over the overlay with TSO on: super-frames take the
// agent's path (it segments or batches them), the rest the kernel's.
func TestFastPathOverlayTCP(t *testing.T) {
	for _, underlayMTU := range []int{1500, 9000} {
		t.Run(fmt.Sprintf("underlay-mtu-%d", underlayMTU), func(t *testing.T) {
			dp1NS, dp2NS, nsA, nsB, u1, u2 := twoHosts(t, underlayMTU)
			const vni = 78
			var dps []*Datapath
			for _, h := range []struct {
				ns            netns.NsHandle
				local, remote netip.Addr
				vm            string
			}{{dp1NS, u1, u2, "a1"}, {dp2NS, u2, u1, "b1"}} {
				d := newDatapathConfig(t, Config{NetNS: h.ns, NetNSSet: true, Offload: true, FastPath: true, RingBlockSize: 256 << 10, RingBlocks: 16})
				vm := addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: h.vm})
				vx := addPort(t, d, datapath.PortSpec{Kind: datapath.PortVXLAN, LocalAddr: h.local})
				putFlow(t, d, fromPort(vm), inPortMask, datapath.SetTunnel(datapath.TunnelSet{VNI: vni, Dst: h.remote}), datapath.Output(vx))
				putFlow(t, d, packet.FlowKey{InPort: uint32(vx), TunID: vni}, packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0)}, datapath.Output(vm))
				dps = append(dps, d)
			}
			tcpTransfer(t, nsA, nsB, "10.9.0.2:7013", 16<<20)
			if s := dps[1].Stats(); s.KernelPackets == 0 {
				t.Error("no acknowledgement went through the kernel")
			}
		})
	}
}

// A flow replaced by a drop, as an invalidation followed by a new
// simulation does, stops the kernel's forwarding at once: after PutFlow
// returns, no datagram sent later gets through.
func TestFastPathFlowReplacedByDrop(t *testing.T) {
	r := newFastVMs(t, Config{})
	r.connect(t)
	ca, cb := r.udpPair(t, 7005, "before")
	key, mask := fromPort(r.pa), inPortMask
	if err := r.d.PutFlow(&key, &mask, nil, datapath.FlowModify); err != nil {
		t.Fatal(err)
	}
	if s := r.d.Stats(); s.KernelFlows != 2 {
		t.Fatalf("kernel holds %d flows, want the drop and the reverse flow", s.KernelFlows)
	}
	for i := range 20 {
		ca.WriteToUDP([]byte(fmt.Sprintf("after %d", i)), &net.UDPAddr{IP: net.IP{10, 9, 0, 2}, Port: 7005})
	}
	buf := make([]byte, 100)
	cb.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := cb.ReadFromUDP(buf); err == nil {
		t.Fatalf("%q got through the dropping flow", buf[:n])
	}
	// And back: forwarding again once the flow outputs.
	if err := r.d.PutFlow(&key, &mask, []datapath.Action{datapath.Output(r.pb)}, datapath.FlowModify); err != nil {
		t.Fatal(err)
	}
	exchange(t, ca, "10.9.0.2:7005", cb, "forwarded again")
}

// A rate-limited port's flows leave the kernel (which has no policer) and
// stay out while the limit lasts, and what the port receives through the
// engine is held to the rate: a UDP flood from vmA at well over 8 Mbit/s
// arrives at vmB at 8 Mbit/s.
func TestRateLimitedPortStaysOutOfTheKernel(t *testing.T) {
	r := newFastVMs(t, Config{})
	arpMask := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff}
	putFlow(t, r.d, packet.FlowKey{InPort: uint32(r.pa), EthType: 0x0806}, arpMask, datapath.Output(r.pb))
	putFlow(t, r.d, packet.FlowKey{InPort: uint32(r.pa), EthType: 0x0800}, arpMask, datapath.Output(r.pb))
	putFlow(t, r.d, fromPort(r.pb), inPortMask, datapath.Output(r.pa))
	if s := r.d.Stats(); s.KernelFlows != 2 {
		t.Fatalf("kernel holds %d flows, want 2 (IPv4 from a1, all from b1)", s.KernelFlows)
	}
	const rate = 8_000_000
	if err := r.d.SetPortRateLimit(r.pa, datapath.RateLimit{BitsPerSecond: rate, BurstBytes: 16 << 10}); err != nil {
		t.Fatal(err)
	}
	if s := r.d.Stats(); s.KernelFlows != 1 {
		t.Fatalf("kernel holds %d flows after a limit on a1, want 1 (b1's)", s.KernelFlows)
	}
	putFlow(t, r.d, packet.FlowKey{InPort: uint32(r.pa), EthType: 0x0800}, arpMask, datapath.Output(r.pb))
	if s := r.d.Stats(); s.KernelFlows != 1 {
		t.Fatalf("a limited port's flow put again went to the kernel (%d flows)", s.KernelFlows)
	}

	ca := udpConn(t, r.nsA, "10.9.0.1:7002")
	cb := udpConn(t, r.nsB, "10.9.0.2:7002")
	dst := &net.UDPAddr{IP: net.IP{10, 9, 0, 2}, Port: 7002}
	payload := make([]byte, 1400)
	const window = 2 * time.Second
	done := make(chan struct{})
	go func() {
		defer close(done)
		// About 40 Mbit/s offered: five times the limit.
		for start := time.Now(); time.Since(start) < window; {
			for range 36 {
				ca.WriteToUDP(payload, dst)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var got int
	buf := make([]byte, 2048)
	cb.SetReadDeadline(time.Now().Add(window + 500*time.Millisecond))
	for {
		n, _, err := cb.ReadFromUDP(buf)
		if err != nil {
			break
		}
		got += n + 42 // the frame on the wire
	}
	<-done
	want := float64(rate)/8*window.Seconds() + 16<<10
	if g := float64(got); g < 0.8*want || g > 1.2*want {
		t.Errorf("received %d bytes in %s through an %d bit/s limit; want %.0f ±20%%", got, window, rate, want)
	}
	st := r.d.Ports()
	for _, p := range st {
		if p.No == r.pa && p.Stats.RxLimited == 0 {
			t.Error("a1 counted nothing over its limit")
		}
	}
	t.Logf("%.2f Mbit/s through an 8 Mbit/s limit", float64(got)*8/window.Seconds()/1e6)
	if err := r.d.SetPortRateLimit(r.pa, datapath.RateLimit{}); err != nil {
		t.Fatal(err)
	}
	putFlow(t, r.d, packet.FlowKey{InPort: uint32(r.pa), EthType: 0x0800}, arpMask, datapath.Output(r.pb))
	if s := r.d.Stats(); s.KernelFlows != 2 {
		t.Errorf("kernel holds %d flows once the limit is gone and the IPv4 flow is put again, want 2", s.KernelFlows)
	}
}
