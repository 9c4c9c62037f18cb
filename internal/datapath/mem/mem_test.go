package mem

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

// udpFrame builds an Ethernet/IPv4/UDP frame (checksums are not needed
// here; the engine tests check rewrites).
func udpFrame(src, dst [4]byte, sport, dport uint16) []byte {
	f := make([]byte, 14+20+8+4)
	copy(f[0:6], []byte{2, 0, 0, 0, 0, 2})
	copy(f[6:12], []byte{2, 0, 0, 0, 0, 1})
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 32)
	ip[8], ip[9] = 64, 17
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], packet.Checksum(ip[:20], 0))
	binary.BigEndian.PutUint16(ip[20:], sport)
	binary.BigEndian.PutUint16(ip[22:], dport)
	binary.BigEndian.PutUint16(ip[24:], 12)
	return f
}

func newDP(t testing.TB, cfg Config) *Datapath {
	t.Helper()
	d := New(cfg)
	t.Cleanup(func() { d.Close() })
	return d
}

func addPort(t testing.TB, d *Datapath, spec datapath.PortSpec) datapath.PortNo {
	t.Helper()
	no, err := d.AddPort(spec)
	if err != nil {
		t.Fatal(err)
	}
	return no
}

func inPortFlow(t testing.TB, d *Datapath, in datapath.PortNo, actions ...datapath.Action) {
	t.Helper()
	key := packet.FlowKey{InPort: uint32(in)}
	mask := packet.FlowKey{InPort: ^uint32(0)}
	if err := d.PutFlow(&key, &mask, actions, datapath.FlowCreate|datapath.FlowModify); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, d *Datapath, no datapath.PortNo) Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	f, err := d.Read(ctx, no)
	if err != nil {
		t.Fatalf("read port %d: %v", no, err)
	}
	return f
}

func TestForwardBetweenPorts(t *testing.T) {
	d := newDP(t, Config{})
	a := addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "a"})
	b := addPort(t, d, datapath.PortSpec{Kind: datapath.PortInternal, Name: "b"})
	if _, err := d.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "a"}); err == nil {
		t.Fatal("a second port named a was accepted")
	}
	inPortFlow(t, d, a, datapath.Output(b))
	f := udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1, 2)
	if err := d.Inject(a, f); err != nil {
		t.Fatal(err)
	}
	if got := read(t, d, b); !bytes.Equal(got.Data, f) || got.HasTunnel {
		t.Fatalf("port b got %x (tunnel %v), want %x", got.Data, got.HasTunnel, f)
	}
	ports := d.Ports()
	if len(ports) != 2 || ports[0].Stats.RxPackets != 1 || ports[1].Stats.TxPackets != 1 {
		t.Errorf("ports = %+v", ports)
	}
}

func TestVXLANFabricCarriesTunnelKey(t *testing.T) {
	fab := NewFabric()
	h1 := newDP(t, Config{Fabric: fab})
	h2 := newDP(t, Config{Fabric: fab})
	u1, u2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	vm1 := addPort(t, h1, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "vm1"})
	vx1 := addPort(t, h1, datapath.PortSpec{Kind: datapath.PortVXLAN, LocalAddr: u1})
	vm2 := addPort(t, h2, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "vm2"})
	vx2 := addPort(t, h2, datapath.PortSpec{Kind: datapath.PortVXLAN, LocalAddr: u2})
	inPortFlow(t, h1, vm1, datapath.SetTunnel(datapath.TunnelSet{VNI: 77, Dst: u2, TOS: 8}), datapath.Output(vx1))

	// On h2, tunnel key 77 from h1 goes to vm2; anything else misses.
	key := packet.FlowKey{InPort: uint32(vx2), TunID: 77, TunSrc: u1.As4()}
	mask := packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0), TunSrc: [4]byte{255, 255, 255, 255}}
	if err := h2.PutFlow(&key, &mask, []datapath.Action{datapath.Output(vm2)}, datapath.FlowCreate); err != nil {
		t.Fatal(err)
	}
	f := udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1, 2)
	if err := h1.Inject(vm1, f); err != nil {
		t.Fatal(err)
	}
	if got := read(t, h2, vm2); !bytes.Equal(got.Data, f) {
		t.Fatalf("vm2 got %x, want %x", got.Data, f)
	}

	// A different VNI misses on h2 and the upcall shows the tunnel key.
	ups := make(chan datapath.Upcall, 1)
	h2.SetUpcallHandler(datapath.UpcallHandlerFunc(func(u *datapath.Upcall) { ups <- *u }))
	inPortFlow(t, h1, vm1, datapath.SetTunnel(datapath.TunnelSet{VNI: 78, Dst: u2, TTL: 5}), datapath.Output(vx1))
	h1.Inject(vm1, f)
	select {
	case u := <-ups:
		if u.InPort != vx2 || u.Key.TunID != 78 || u.Key.TunSrc != u1.As4() || u.Key.TunDst != u2.As4() || u.Key.TunTTL != 5 {
			t.Errorf("upcall on port %d with tunnel key %d %v->%v ttl %d", u.InPort, u.Key.TunID, u.Key.TunSrc, u.Key.TunDst, u.Key.TunTTL)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no upcall for the unknown VNI")
	}
}

func TestPortEvents(t *testing.T) {
	d := newDP(t, Config{})
	a := addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "a"})
	var mu sync.Mutex
	var evs []datapath.PortEvent
	d.SetPortEventHandler(datapath.PortEventHandlerFunc(func(ev datapath.PortEvent) {
		mu.Lock()
		evs = append(evs, ev)
		mu.Unlock()
	}))
	d.SetLinkState(a, false)
	d.SetLinkState(a, true)
	d.RemoveInterface(a)
	want := []datapath.PortEvent{
		{Kind: datapath.PortDown, Port: a, Name: "a"},
		{Kind: datapath.PortUp, Port: a, Name: "a"},
		{Kind: datapath.PortRemoved, Port: a, Name: "a"},
	}
	mu.Lock()
	defer mu.Unlock()
	if len(evs) != len(want) {
		t.Fatalf("events %v, want %v", evs, want)
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d = %v, want %v", i, evs[i], want[i])
		}
	}
	if len(d.Ports()) != 0 {
		t.Error("port still listed after its interface was removed")
	}
	if err := d.Inject(a, udpFrame([4]byte{}, [4]byte{}, 1, 1)); err == nil {
		t.Error("inject on a removed port succeeded")
	}
}

func TestExecute(t *testing.T) {
	d := newDP(t, Config{})
	a := addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "a"})
	b := addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "b"})
	f := udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1, 2)
	err := d.Execute(f, []datapath.Action{datapath.PushVLAN(5), datapath.Output(b)}, a)
	if err != nil {
		t.Fatal(err)
	}
	got := read(t, d, b)
	if len(got.Data) != len(f)+4 || binary.BigEndian.Uint16(got.Data[12:]) != 0x8100 || binary.BigEndian.Uint16(got.Data[14:]) != 5 {
		t.Errorf("executed frame %x, want a tag with VID 5", got.Data)
	}
	if err := d.Execute(f, []datapath.Action{datapath.Output(99)}, a); err != nil {
		t.Errorf("output to a missing port: %v, want it dropped and counted", err)
	}
	if d.Stats().Lost != 1 {
		t.Errorf("Lost = %d, want 1", d.Stats().Lost)
	}
	if err := d.Execute(f, []datapath.Action{{Kind: 200}}, a); err == nil {
		t.Error("an unknown action was accepted")
	}
}

// BenchmarkFlowPut measures flow installation; flows/s is the rate.
func BenchmarkFlowPut(b *testing.B) {
	d := newDP(b, Config{})
	actions := []datapath.Action{datapath.SetIPv4(datapath.IPv4Set{TTL: 63, Fields: datapath.SetTTL}), datapath.Output(2)}
	mask := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwSrc: [4]byte{255, 255, 255, 255}, NwDst: [4]byte{255, 255, 255, 255}, NwProto: 0xff, TpSrc: 0xffff, TpDst: 0xffff}
	key := packet.FlowKey{InPort: 1, EthType: 0x0800, NwProto: 6, TpDst: 80}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		binary.BigEndian.PutUint32(key.NwSrc[:], uint32(n))
		key.TpSrc = uint16(n >> 16)
		if err := d.PutFlow(&key, &mask, actions, datapath.FlowCreate); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "flows/s")
}

// BenchmarkUpcall measures miss-to-handler delivery; misses/s is the rate.
func BenchmarkUpcall(b *testing.B) {
	d := newDP(b, Config{Engine: engineConfig(4096)})
	a := addPort(b, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "a"})
	var got atomic.Uint64
	d.SetUpcallHandler(datapath.UpcallHandlerFunc(func(u *datapath.Upcall) { got.Add(1) }))
	f := udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1, 2)
	b.ReportAllocs()
	sent := uint64(0)
	for b.Loop() {
		d.Inject(a, f)
		sent++
	}
	for got.Load()+d.Stats().UpcallDropped < sent {
		time.Sleep(time.Millisecond) // draining the last queued upcalls
	}
	b.ReportMetric(float64(got.Load())/b.Elapsed().Seconds(), "misses/s")
	b.ReportMetric(float64(d.Stats().UpcallDropped), "dropped")
}

// A hundred hosts on one fabric, each tunnelling to the next: every VM
// receives its neighbour's frame, and Close leaves nothing running.
func TestHundredHostsOnAFabric(t *testing.T) {
	const n = 100
	fab := NewFabric()
	type host struct {
		d      *Datapath
		vm, vx datapath.PortNo
		addr   netip.Addr
	}
	hosts := make([]host, n)
	for i := range hosts {
		h := &hosts[i]
		h.d = newDP(t, Config{Fabric: fab})
		h.addr = netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
		h.vm = addPort(t, h.d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "vm"})
		h.vx = addPort(t, h.d, datapath.PortSpec{Kind: datapath.PortVXLAN, LocalAddr: h.addr})
	}
	for i := range hosts {
		h, next := &hosts[i], &hosts[(i+1)%n]
		inPortFlow(t, h.d, h.vm, datapath.SetTunnel(datapath.TunnelSet{VNI: uint32(i + 1), Dst: next.addr}), datapath.Output(h.vx))
		key := packet.FlowKey{InPort: uint32(next.vx), TunID: uint32(i + 1)}
		mask := packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0)}
		if err := next.d.PutFlow(&key, &mask, []datapath.Action{datapath.Output(next.vm)}, datapath.FlowCreate); err != nil {
			t.Fatal(err)
		}
	}
	for i := range hosts {
		f := udpFrame([4]byte{10, 0, 0, byte(i)}, [4]byte{10, 0, 1, byte(i)}, uint16(i), 9)
		if err := hosts[i].d.Inject(hosts[i].vm, f); err != nil {
			t.Fatal(err)
		}
	}
	for i := range hosts {
		got := read(t, hosts[i].d, hosts[i].vm)
		from := (i + n - 1) % n
		if got.Data[14+12+3] != byte(from) {
			t.Errorf("host %d received a frame from 10.0.0.%d, want from host %d", i, got.Data[14+12+3], from)
		}
	}
}

// A port's rate limit drops what it receives beyond its burst (frames
// offered all at once here), counts it, and goes when removed.
func TestPortRateLimit(t *testing.T) {
	d := newDP(t, Config{})
	a := addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "a"})
	b := addPort(t, d, datapath.PortSpec{Kind: datapath.PortNetdev, Name: "b"})
	inPortFlow(t, d, a, datapath.Output(b))
	var _ datapath.PortRateLimiter = d
	frame := udpFrame([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1, 2) // 46 bytes
	// 1 kbit/s: nothing refills during the test; the burst holds 40 frames.
	if err := d.SetPortRateLimit(a, datapath.RateLimit{BitsPerSecond: 1000, BurstBytes: 40 * 46}); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		d.Inject(a, frame)
	}
	st := portStats(t, d, a)
	if st.RxLimited != 60 {
		t.Errorf("limited %d of 100 frames, want 60 beyond a 40-frame burst", st.RxLimited)
	}
	for range 40 {
		read(t, d, b)
	}
	if err := d.SetPortRateLimit(a, datapath.RateLimit{}); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		d.Inject(a, frame)
	}
	if st := portStats(t, d, a); st.RxLimited != 60 {
		t.Errorf("limited %d after the limit was removed, want still 60", st.RxLimited)
	}
	if err := d.SetPortRateLimit(99, datapath.RateLimit{BitsPerSecond: 1e6, BurstBytes: 2000}); err == nil {
		t.Error("a limit on a port that does not exist was accepted")
	}
}

func portStats(t *testing.T, d *Datapath, no datapath.PortNo) datapath.PortStats {
	t.Helper()
	for _, p := range d.Ports() {
		if p.No == no {
			return p.Stats
		}
	}
	t.Fatalf("no port %d", no)
	return datapath.PortStats{}
}
