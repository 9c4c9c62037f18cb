package engine

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/poll"
)

// capture is a Transmitter that keeps copies of what it is given.
type capture struct {
	mu     sync.Mutex
	frames [][]byte
	tuns   []*datapath.TunnelSet
}

func (c *capture) Transmit(frame []byte, tun *datapath.TunnelSet) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frames = append(c.frames, append([]byte(nil), frame...))
	if tun != nil {
		t := *tun
		tun = &t
	}
	c.tuns = append(c.tuns, tun)
	return nil
}

func (c *capture) last(t *testing.T) []byte {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.frames) == 0 {
		t.Fatal("nothing was transmitted")
	}
	return c.frames[len(c.frames)-1]
}

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

// frame builds an Ethernet/IPv4 frame with correct checksums using gopacket.
func frame(t testing.TB, l4 string, opts ...func(*layers.IPv4)) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, TOS: 0x10, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	for _, o := range opts {
		o(ip)
	}
	payload := gopacket.Payload([]byte("hello, datapath"))
	var ls []gopacket.SerializableLayer
	switch l4 {
	case "tcp":
		ip.Protocol = layers.IPProtocolTCP
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1, SYN: true, ACK: true, Window: 1000}
		tcp.SetNetworkLayerForChecksum(ip)
		ls = []gopacket.SerializableLayer{eth, ip, tcp, payload}
	case "udp":
		ip.Protocol = layers.IPProtocolUDP
		udp := &layers.UDP{SrcPort: 40001, DstPort: 7000}
		udp.SetNetworkLayerForChecksum(ip)
		ls = []gopacket.SerializableLayer{eth, ip, udp, payload}
	case "icmp":
		ip.Protocol = layers.IPProtocolICMPv4
		ls = []gopacket.SerializableLayer{eth, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1}, payload}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkChecksums decodes f with gopacket, re-serializes its layers with
// checksums recomputed, and fails if that changes any byte.
func checkChecksums(t *testing.T, f []byte) gopacket.Packet {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode the output: %v", el.Error())
	}
	var ls []gopacket.SerializableLayer
	var ip *layers.IPv4
	for _, l := range p.Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			ip = l
		case *layers.TCP:
			l.SetNetworkLayerForChecksum(ip)
		case *layers.UDP:
			if l.Checksum == 0 { // absent: keep it so
				ls = append(ls, gopacket.Payload(l.LayerContents()))
				continue
			}
			l.SetNetworkLayerForChecksum(ip)
		}
		if sl, ok := l.(gopacket.SerializableLayer); ok {
			ls = append(ls, sl)
		} else {
			ls = append(ls, gopacket.Payload(l.LayerContents()))
		}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	// Ethernet padding past the IP datagram is not re-serialized.
	if !bytes.Equal(buf.Bytes(), f[:min(len(f), len(buf.Bytes()))]) {
		t.Errorf("checksums wrong:\n got %x\nwant %x", f, buf.Bytes())
	}
	return p
}

type rig struct {
	e    *Engine
	in   *Port
	outs []*capture
	out  []*Port
	w    *Worker
}

func newRig(t *testing.T, nOut int) *rig {
	t.Helper()
	e := New(Config{UpcallQueueLen: 8})
	t.Cleanup(e.Close)
	r := &rig{e: e}
	var err error
	if r.in, err = e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "in"}, &capture{}); err != nil {
		t.Fatal(err)
	}
	for i := range nOut {
		c := &capture{}
		kind := datapath.PortNetdev
		if i == nOut-1 {
			kind = datapath.PortVXLAN
		}
		p, err := e.AddPort(datapath.PortSpec{Kind: kind, Name: "out" + string(rune('0'+i))}, c)
		if err != nil {
			t.Fatal(err)
		}
		r.outs = append(r.outs, c)
		r.out = append(r.out, p)
	}
	r.w = e.NewWorker()
	t.Cleanup(r.w.Close)
	return r
}

// wildcard installs actions for everything from the rig's in-port.
func (r *rig) wildcard(t *testing.T, actions ...datapath.Action) {
	t.Helper()
	key := packet.FlowKey{InPort: uint32(r.in.No)}
	mask := packet.FlowKey{InPort: ^uint32(0)}
	if err := r.e.PutFlow(&key, &mask, actions, datapath.FlowCreate|datapath.FlowModify); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) receive(f []byte) {
	r.w.Begin()
	r.w.Receive(r.in, f, nil)
	r.w.Flush()
}

func TestActionsRewriteWithCorrectChecksums(t *testing.T) {
	newSrc, newDst := [4]byte{192, 168, 1, 1}, [4]byte{172, 16, 0, 9}
	tests := []struct {
		name    string
		l4      string
		ipOpts  []func(*layers.IPv4)
		actions []datapath.Action
		check   func(t *testing.T, p gopacket.Packet)
	}{
		{
			name: "snat tcp source address and port",
			l4:   "tcp",
			actions: []datapath.Action{
				datapath.SetIPv4(datapath.IPv4Set{Src: newSrc, Fields: datapath.SetSrc}),
				datapath.SetTCP(datapath.L4Set{Src: 1234, Fields: datapath.SetSrc}),
			},
			check: func(t *testing.T, p gopacket.Packet) {
				ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
				if !ip.SrcIP.Equal(net.IP(newSrc[:])) || tcp.SrcPort != 1234 || tcp.DstPort != 80 {
					t.Errorf("got %v:%d -> %v:%d", ip.SrcIP, tcp.SrcPort, ip.DstIP, tcp.DstPort)
				}
			},
		},
		{
			name: "dnat udp destination address and port",
			l4:   "udp",
			actions: []datapath.Action{
				datapath.SetIPv4(datapath.IPv4Set{Dst: newDst, Fields: datapath.SetDst}),
				datapath.SetUDP(datapath.L4Set{Dst: 5300, Fields: datapath.SetDst}),
			},
			check: func(t *testing.T, p gopacket.Packet) {
				ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
				if !ip.DstIP.Equal(net.IP(newDst[:])) || udp.DstPort != 5300 || udp.SrcPort != 40001 {
					t.Errorf("got %v:%d -> %v:%d", ip.SrcIP, udp.SrcPort, ip.DstIP, udp.DstPort)
				}
			},
		},
		{
			name: "decrement ttl and set tos on icmp",
			l4:   "icmp",
			actions: []datapath.Action{
				datapath.SetIPv4(datapath.IPv4Set{TTL: 63, TOS: 0xb8, Fields: datapath.SetTTL | datapath.SetTOS}),
			},
			check: func(t *testing.T, p gopacket.Packet) {
				ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if ip.TTL != 63 || ip.TOS != 0xb8 {
					t.Errorf("ttl %d tos %#x, want 63 0xb8", ip.TTL, ip.TOS)
				}
			},
		},
		{
			name: "both addresses on a first fragment",
			l4:   "udp",
			ipOpts: []func(*layers.IPv4){func(ip *layers.IPv4) {
				ip.Flags = layers.IPv4MoreFragments
			}},
			actions: []datapath.Action{
				datapath.SetIPv4(datapath.IPv4Set{Src: newSrc, Dst: newDst, Fields: datapath.SetSrc | datapath.SetDst}),
			},
			check: func(t *testing.T, p gopacket.Packet) {
				ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
				if !ip.SrcIP.Equal(net.IP(newSrc[:])) || !ip.DstIP.Equal(net.IP(newDst[:])) {
					t.Errorf("got %v -> %v", ip.SrcIP, ip.DstIP)
				}
			},
		},
		{
			name: "ethernet addresses",
			l4:   "tcp",
			actions: []datapath.Action{
				datapath.SetEthernet(datapath.EthernetSet{Src: [6]byte{2, 1, 1, 1, 1, 1}, Dst: [6]byte{2, 2, 2, 2, 2, 2}, Fields: datapath.SetSrc | datapath.SetDst}),
			},
			check: func(t *testing.T, p gopacket.Packet) {
				eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
				if eth.SrcMAC.String() != "02:01:01:01:01:01" || eth.DstMAC.String() != "02:02:02:02:02:02" {
					t.Errorf("got %v -> %v", eth.SrcMAC, eth.DstMAC)
				}
			},
		},
		{
			name:    "push vlan",
			l4:      "udp",
			actions: []datapath.Action{datapath.PushVLAN(0x2064)},
			check: func(t *testing.T, p gopacket.Packet) {
				d, ok := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
				if !ok || d.VLANIdentifier != 100 || d.Priority != 1 || d.Type != layers.EthernetTypeIPv4 {
					t.Errorf("dot1q = %+v", d)
				}
				if p.Layer(layers.LayerTypeUDP) == nil {
					t.Error("no UDP after the tag")
				}
			},
		},
		{
			name:    "push then pop vlan restores the frame",
			l4:      "tcp",
			actions: []datapath.Action{datapath.PushVLAN(7), datapath.PopVLAN(), datapath.SetTCP(datapath.L4Set{Dst: 8080, Fields: datapath.SetDst})},
			check: func(t *testing.T, p gopacket.Packet) {
				if p.Layer(layers.LayerTypeDot1Q) != nil {
					t.Error("tag still present")
				}
				if tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP); tcp.DstPort != 8080 {
					t.Errorf("dst port %d", tcp.DstPort)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 2)
			r.wildcard(t, append(tc.actions, datapath.Output(r.out[0].No))...)
			in := frame(t, tc.l4, tc.ipOpts...)
			orig := append([]byte(nil), in...)
			r.receive(in)
			if !bytes.Equal(in, orig) {
				t.Error("the received frame was modified in place")
			}
			tc.check(t, checkChecksums(t, r.outs[0].last(t)))
		})
	}
}

func TestSetUDPKeepsAbsentChecksum(t *testing.T) {
	r := newRig(t, 2)
	r.wildcard(t, datapath.SetUDP(datapath.L4Set{Src: 9, Fields: datapath.SetSrc}),
		datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{1, 2, 3, 4}, Fields: datapath.SetSrc}),
		datapath.Output(r.out[0].No))
	f := frame(t, "udp")
	f[14+20+6], f[14+20+7] = 0, 0 // sender sent no UDP checksum
	r.receive(f)
	out := r.outs[0].last(t)
	if out[14+20+6] != 0 || out[14+20+7] != 0 {
		t.Errorf("UDP checksum became %x, want it absent (0)", out[14+20+6:14+20+8])
	}
	checkChecksums(t, out)
}

func TestOutputSequenceAndTunnel(t *testing.T) {
	r := newRig(t, 2)
	vx := r.out[1]
	tun := datapath.TunnelSet{VNI: 0x123456, Dst: netip.MustParseAddr("192.0.2.2"), TOS: 4}
	r.wildcard(t,
		datapath.Output(r.out[0].No),
		datapath.SetIPv4(datapath.IPv4Set{TTL: 9, Fields: datapath.SetTTL}),
		datapath.SetTunnel(tun),
		datapath.Output(vx.No))
	r.receive(frame(t, "udp"))
	if got := r.outs[0].last(t)[14+8]; got != 64 {
		t.Errorf("first output TTL %d, want the original 64", got)
	}
	if got := r.outs[1].last(t)[14+8]; got != 9 {
		t.Errorf("tunnel output TTL %d, want 9", got)
	}
	if tt := r.outs[1].tuns[0]; tt == nil || *tt != tun {
		t.Errorf("tunnel metadata %+v, want %+v", tt, tun)
	}
}

func TestVXLANOutputWithoutTunnelIsDropped(t *testing.T) {
	r := newRig(t, 2)
	r.wildcard(t, datapath.Output(r.out[1].No))
	r.receive(frame(t, "udp"))
	if n := len(r.outs[1].frames); n != 0 {
		t.Fatalf("%d frames sent to the vxlan port without a tunnel", n)
	}
	if got := r.out[1].Stats().TxDropped; got != 1 {
		t.Errorf("TxDropped = %d, want 1", got)
	}
}

// upcallRecorder collects upcalls, copying them.
type upcallRecorder struct {
	mu  sync.Mutex
	got []datapath.Upcall
	ch  chan struct{}
}

func newRecorder() *upcallRecorder { return &upcallRecorder{ch: make(chan struct{}, 1<<16)} }

func (u *upcallRecorder) HandleUpcall(up *datapath.Upcall) {
	c := *up
	c.Packet = append([]byte(nil), up.Packet...)
	u.mu.Lock()
	u.got = append(u.got, c)
	u.mu.Unlock()
	u.ch <- struct{}{}
}

func (u *upcallRecorder) wait(t *testing.T, n int) []datapath.Upcall {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-u.ch:
		case <-timeout:
			t.Fatalf("got %d upcalls, want %d", i, n)
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]datapath.Upcall(nil), u.got...)
}

func TestMissAndUserspaceUpcalls(t *testing.T) {
	r := newRig(t, 2)
	rec := newRecorder()
	r.e.SetUpcallHandler(rec)
	f := frame(t, "tcp")
	r.receive(f)
	ups := rec.wait(t, 1)
	u := ups[0]
	if u.Kind != datapath.UpcallMiss || u.InPort != r.in.No || !bytes.Equal(u.Packet, f) {
		t.Fatalf("miss upcall = %v port %d, %d bytes", u.Kind, u.InPort, len(u.Packet))
	}
	if u.Key.InPort != uint32(r.in.No) || u.Key.NwDst != [4]byte{10, 0, 0, 2} || u.Key.TpDst != 80 || u.Key.NwProto != 6 {
		t.Errorf("miss key = %+v", u.Key)
	}
	r.wildcard(t, datapath.SetIPv4(datapath.IPv4Set{TTL: 1, Fields: datapath.SetTTL}), datapath.Userspace(42), datapath.Output(r.out[0].No))
	r.receive(f)
	ups = rec.wait(t, 1)
	u = ups[1]
	if u.Kind != datapath.UpcallUserspace || u.Cookie != 42 || u.InPort != r.in.No {
		t.Fatalf("userspace upcall = %v cookie %d port %d", u.Kind, u.Cookie, u.InPort)
	}
	if u.Packet[14+8] != 1 {
		t.Errorf("userspace upcall packet TTL %d, want the rewritten 1", u.Packet[14+8])
	}
	st := r.e.Stats()
	if st.Misses != 1 || st.Hits != 1 || st.Upcalls != 2 {
		t.Errorf("stats = %+v, want 1 miss, 1 hit, 2 upcalls", st)
	}
}

// A port flooding misses fills only its own queue: the quiet port's miss is
// still delivered, and the noisy port's excess is counted as dropped.
func TestUpcallQueuesArePerPort(t *testing.T) {
	e := New(Config{UpcallQueueLen: 4})
	t.Cleanup(e.Close)
	noisy, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "noisy"}, &capture{})
	quiet, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "quiet"}, &capture{})
	release := make(chan struct{})
	var mu sync.Mutex
	perPort := map[datapath.PortNo]int{}
	delivered := make(chan struct{}, 100)
	e.SetUpcallHandler(datapath.UpcallHandlerFunc(func(u *datapath.Upcall) {
		<-release
		mu.Lock()
		perPort[u.InPort]++
		mu.Unlock()
		delivered <- struct{}{}
	}))
	w := e.NewWorker()
	defer w.Close()
	f := frame(t, "udp")
	for range 50 {
		w.Receive(noisy, f, nil)
	}
	w.Receive(quiet, f, nil)
	close(release)
	// At most 4 queued per port, plus one in the handler when the flood began.
	want := 0
	timeout := time.After(5 * time.Second)
	for {
		mu.Lock()
		q := perPort[quiet.No]
		mu.Unlock()
		if q == 1 {
			break
		}
		select {
		case <-delivered:
			want++
		case <-timeout:
			t.Fatal("the quiet port's upcall was never delivered")
		}
	}
	dropped := noisy.Stats().UpcallDropped
	if dropped < 50-5 {
		t.Errorf("noisy port dropped %d upcalls, want at least 45", dropped)
	}
	if quiet.Stats().UpcallDropped != 0 {
		t.Errorf("quiet port dropped %d upcalls", quiet.Stats().UpcallDropped)
	}
	if st := e.Stats(); st.UpcallDropped != dropped {
		t.Errorf("Stats().UpcallDropped = %d, want %d", st.UpcallDropped, dropped)
	}
}

func TestFlowCountersAndDump(t *testing.T) {
	r := newRig(t, 2)
	key := packet.FlowKey{InPort: uint32(r.in.No), EthType: 0x0800, NwProto: 6}
	mask := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwProto: 0xff}
	if err := r.e.PutFlow(&key, &mask, []datapath.Action{datapath.Output(r.out[0].No)}, datapath.FlowCreate); err != nil {
		t.Fatal(err)
	}
	if err := r.e.PutFlow(&key, &mask, nil, datapath.FlowCreate); err == nil {
		t.Fatal("second create succeeded")
	}
	other := key
	other.NwProto = 17
	if err := r.e.PutFlow(&other, &mask, nil, datapath.FlowModify); err != datapath.ErrFlowNotFound {
		t.Fatalf("modify of a missing flow: %v", err)
	}
	f := frame(t, "tcp")
	before := time.Now()
	r.receive(f)
	r.receive(f)
	var dumped []datapath.Flow
	r.e.DumpFlows(func(fl *datapath.Flow) bool { dumped = append(dumped, *fl); return true })
	if len(dumped) != 1 {
		t.Fatalf("dumped %d flows, want 1", len(dumped))
	}
	st := dumped[0].Stats
	if st.Packets != 2 || st.Bytes != uint64(2*len(f)) || st.LastUsed.Before(before.Add(-time.Second)) || st.TCPFlags != 0x12 {
		t.Errorf("stats %+v, want 2 packets, %d bytes, used now, flags SYN|ACK", st, 2*len(f))
	}
	// Replace the actions: traffic follows the new ones at once (EMC too).
	if err := r.e.PutFlow(&key, &mask, []datapath.Action{datapath.Output(r.out[1].No)}, datapath.FlowModify); err != nil {
		t.Fatal(err)
	}
	r.receive(f)
	if n := len(r.outs[0].frames); n != 2 {
		t.Errorf("old output port got %d frames after the modify, want 2", n)
	}
	if got := r.out[1].Stats().TxDropped; got != 1 {
		t.Errorf("vxlan port TxDropped %d, want 1 (output without tunnel)", got)
	}
	fs, err := r.e.DeleteFlow(&key, &mask)
	if err != nil || fs.Packets != 3 {
		t.Fatalf("DeleteFlow = %+v, %v; want 3 packets", fs, err)
	}
	r.receive(f)
	if s := r.e.Stats(); s.Misses != 1 || s.Flows != 0 {
		t.Errorf("after delete: %+v, want 1 miss and no flows", s)
	}
}

func TestReceiveHitDoesNotAllocate(t *testing.T) {
	r := newRig(t, 2)
	f := frame(t, "tcp")
	for _, tc := range []struct {
		name    string
		actions []datapath.Action
	}{
		{"output", []datapath.Action{datapath.Output(r.out[0].No)}},
		{"nat and output", []datapath.Action{
			datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{1, 1, 1, 1}, TTL: 63, Fields: datapath.SetSrc | datapath.SetTTL}),
			datapath.SetTCP(datapath.L4Set{Src: 1, Fields: datapath.SetSrc}),
			datapath.Output(r.out[0].No)}},
	} {
		r.wildcard(t, tc.actions...)
		r.outs[0] = nil
		e := r.e
		p := e.Port(r.out[0].No)
		p.tx = discard{}
		r.receive(f)
		if n := testing.AllocsPerRun(100, func() { r.receive(f) }); n != 0 {
			t.Errorf("%s: %v allocs per received frame, want 0", tc.name, n)
		}
	}
}

type discard struct{}

func (discard) Transmit([]byte, *datapath.TunnelSet) error { return nil }

func BenchmarkReceiveHit(b *testing.B) {
	e := New(Config{})
	defer e.Close()
	in, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "in"}, discard{})
	out, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "out"}, discard{})
	key := packet.FlowKey{InPort: uint32(in.No)}
	mask := packet.FlowKey{InPort: ^uint32(0)}
	e.PutFlow(&key, &mask, []datapath.Action{datapath.Output(out.No)}, 0)
	w := e.NewWorker()
	defer w.Close()
	f := frame(b, "udp")
	w.Begin()
	b.ReportAllocs()
	for b.Loop() {
		w.Receive(in, f, nil)
	}
}

// A jumbo frame grows the worker's copy buffer and is rewritten correctly.
func TestJumboFrameRewrite(t *testing.T) {
	r := newRig(t, 2)
	r.wildcard(t, datapath.SetIPv4(datapath.IPv4Set{Src: [4]byte{1, 2, 3, 4}, Fields: datapath.SetSrc}),
		datapath.PushVLAN(7), datapath.Output(r.out[0].No))
	eth := &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	udp := &layers.UDP{SrcPort: 40001, DstPort: 7000}
	udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, udp, gopacket.Payload(bytes.Repeat([]byte{0xab}, 9000))); err != nil {
		t.Fatal(err)
	}
	r.receive(buf.Bytes())
	out := r.outs[0].last(t)
	if len(out) != len(buf.Bytes())+4 {
		t.Fatalf("output %d bytes, want %d", len(out), len(buf.Bytes())+4)
	}
	checkChecksums(t, out)
}

// With InlineUpcalls a miss reaches an idle handler before Receive returns,
// with its pending checksum finished; while the handler is busy, misses
// queue and the dispatcher delivers them after it, in order.
func TestInlineUpcalls(t *testing.T) {
	e := New(Config{InlineUpcalls: true})
	t.Cleanup(e.Close)
	in, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "in"}, &capture{})
	var (
		mu     sync.Mutex
		got    []uint16 // TCP destination ports, in delivery order
		inline []bool   // whether each was delivered by its receiver
		onRecv = make(chan struct{})
		block  = make(chan struct{})
		first  = true
	)
	e.SetUpcallHandler(datapath.UpcallHandlerFunc(func(u *datapath.Upcall) {
		byReceiver := strings.Contains(string(debug.Stack()), "ReceiveOffload")
		mu.Lock()
		got = append(got, u.Key.TpDst)
		inline = append(inline, byReceiver)
		isFirst := first
		first = false
		mu.Unlock()
		if len(u.Packet) > 34+16 && packet.Checksum(u.Packet[34:], packet.PseudoHeaderSum4([4]byte(u.Packet[26:30]), [4]byte(u.Packet[30:34]), 6, uint16(len(u.Packet)-34))) != 0 {
			t.Errorf("upcall to port %d has a bad TCP checksum", u.Key.TpDst)
		}
		if isFirst {
			close(onRecv)
			<-block
		}
	}))
	w := e.NewWorker()
	defer w.Close()
	tcpTo := func(port uint16) []byte {
		f := frame(t, "tcp")
		binary.BigEndian.PutUint16(f[34+2:], port)
		ip := f[14:]
		l4len := int(binary.BigEndian.Uint16(ip[2:])) - 20
		sum := packet.PseudoHeaderSum4([4]byte(ip[12:16]), [4]byte(ip[16:20]), 6, uint16(l4len))
		binary.BigEndian.PutUint16(f[34+16:], uint16(sum)) // left to offload
		return f
	}
	pending := Offload{NeedsCsum: true, CsumStart: 34, CsumOffset: 16}
	// The first miss blocks the handler on the receiving goroutine.
	go func() {
		o := pending
		w.ReceiveOffload(in, tcpTo(1), nil, &o)
	}()
	<-onRecv
	// Meanwhile another receiver's misses on the port queue behind it...
	w2 := e.NewWorker()
	defer w2.Close()
	for p := uint16(2); p <= 4; p++ {
		o := pending
		w2.ReceiveOffload(in, tcpTo(p), nil, &o)
	}
	mu.Lock()
	if len(got) != 1 {
		t.Errorf("%d upcalls of the port delivered while its first was with the handler, want 1", len(got))
	}
	mu.Unlock()
	// ...while another port's miss goes to the handler at once: no lock
	// is held across ports.
	other, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "other"}, &capture{})
	w3 := e.NewWorker()
	defer w3.Close()
	o := pending
	w3.ReceiveOffload(other, tcpTo(100), nil, &o)
	mu.Lock()
	if len(got) != 2 || got[1] != 100 || !inline[1] {
		t.Errorf("another port's miss: delivered %v (by its receiver: %v), want it delivered inline at once", got, inline)
	}
	mu.Unlock()
	close(block)
	delivered := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	if !poll.Until(func() bool { return delivered() == 5 && e.queued.Load() == 0 }, 5*time.Second) {
		t.Fatalf("%d of 5 upcalls delivered", delivered())
	}
	// Once the port's queue is empty, a miss is delivered inline again.
	o = pending
	w2.ReceiveOffload(in, tcpTo(5), nil, &o)
	mu.Lock()
	defer mu.Unlock()
	if want := []uint16{1, 100, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("delivery order %v, want %v", got, want)
	}
	if want := []bool{true, true, false, false, false, true}; !slices.Equal(inline, want) {
		t.Errorf("delivered by the receiver: %v, want %v", inline, want)
	}
}

// Upcalls left in a removed port's queue are dropped and counted.
func TestRemovedPortQueueIsDiscarded(t *testing.T) {
	e := New(Config{InlineUpcalls: true})
	t.Cleanup(e.Close)
	in, _ := e.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "in"}, &capture{})
	block := make(chan struct{})
	entered := make(chan struct{}, 10)
	e.SetUpcallHandler(datapath.UpcallHandlerFunc(func(u *datapath.Upcall) {
		entered <- struct{}{}
		<-block
	}))
	w := e.NewWorker()
	defer w.Close()
	f := frame(t, "udp")
	go w.Receive(in, f, nil) // held in the handler
	<-entered
	w2 := e.NewWorker()
	defer w2.Close()
	w2.Receive(in, f, nil)
	w2.Receive(in, f, nil)
	if _, err := e.RemovePort(in.No); err != nil {
		t.Fatal(err)
	}
	w2.Receive(in, f, nil) // a receiver still running after the removal
	close(block)
	// The dispatcher may have begun delivering one of the two queued
	// before the removal; the rest are dropped, as is the late push.
	settled := func() bool {
		delivered := uint64(len(entered)) // after the first, inline one
		return e.queued.Load() == 0 && in.Stats().UpcallDropped+delivered == 3
	}
	if !poll.Until(settled, 5*time.Second) {
		t.Fatalf("queued %d, dropped %d, delivered %d: want 0 queued, 3 dropped or delivered",
			e.queued.Load(), in.Stats().UpcallDropped, len(entered))
	}
}
