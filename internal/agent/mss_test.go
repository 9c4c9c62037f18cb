package agent

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// tcpFrame is a TCP segment from vm1 (mac 1) to vm2 (mac 2) with flags and,
// for a SYN, an MSS option among others, built with gopacket.
func tcpFrame(t *testing.T, sport uint16, syn bool, mss uint16) []byte {
	t.Helper()
	return tcpFrameIP(t, false, sport, syn, mss)
}

// tcpFrameIP is tcpFrame over IPv4 or, with v6, over IPv6 (fd00::1 to
// fd00::2).
func tcpFrameIP(t *testing.T, v6 bool, sport uint16, syn bool, mss uint16) []byte {
	t.Helper()
	src, dst := mac(1), mac(2)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: layers.EthernetTypeIPv4}
	var ip interface {
		gopacket.SerializableLayer
		gopacket.NetworkLayer
	} = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{10, 1, 0, 1}, DstIP: net.IP{10, 1, 0, 2}}
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: net.ParseIP("fd00::1"), DstIP: net.ParseIP("fd00::2")}
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, Seq: 1, Window: 65535, SYN: syn, ACK: !syn}
	if syn {
		tcp.Options = []layers.TCPOption{
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{byte(mss >> 8), byte(mss)}},
			{OptionType: layers.TCPOptionKindNop},
		}
	}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// udpOut waits for the UDP datagram from sport on port.
func udpOut(t *testing.T, a *testAgent, port datapath.PortNo, sport uint16) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for {
		f, err := a.dp.Read(ctx, port)
		if err != nil {
			t.Fatalf("no datagram from port %d: %v", sport, err)
		}
		p := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
		if udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP); ok && uint16(udp.SrcPort) == sport {
			return
		}
	}
}

// segmentOut waits for the TCP segment from sport on port and returns its
// MSS option (0 without one), checking its checksum with gopacket.
func segmentOut(t *testing.T, a *testAgent, port datapath.PortNo, sport uint16) uint16 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for {
		f, err := a.dp.Read(ctx, port)
		if err != nil {
			t.Fatalf("no segment from port %d: %v", sport, err)
		}
		p := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
		tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok || uint16(tcp.SrcPort) != sport {
			continue
		}
		tcp.SetNetworkLayerForChecksum(p.NetworkLayer())
		// Over the segment as it is, a valid checksum sums to zero.
		if c, err := tcp.ComputeChecksum(); err != nil || c != 0 {
			t.Errorf("TCP checksum %#04x is wrong (the sum over the segment is %#04x)", tcp.Checksum, c)
		}
		for _, o := range tcp.Options {
			if o.OptionType == layers.TCPOptionKindMSS {
				return uint16(o.OptionData[0])<<8 | uint16(o.OptionData[1])
			}
		}
		return 0
	}
}

// TestMSSClamping: a VM whose interface MTU (9000) exceeds what the
// overlay carries (an underlay of 1550 bytes, minus 50) has the MSS of its
// SYNs to another host lowered to 1460, without a flow for the SYN; the
// rest of the connection gets a flow of its own.
func TestMSSClamping(t *testing.T) {
	c := newCloud(t)
	var mu sync.Mutex
	vmMTU := map[string]int{"vm1": 9000, "vm2": 9000, "vm3": 1500}
	stub := func(cfg *Config) {
		cfg.InterfaceMTU = func(name string) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return vmMTU[name], nil
		}
	}
	h1, h2 := c.addAgentWith("h1", "10.9.0.1", stub), c.addAgentWith("h2", "10.9.0.2", stub)
	for _, h := range []*testAgent{h1, h2} {
		itf, _ := json.Marshal(topology.Interface{HostID: h.HostID(), Name: "eth0", MTU: 1550, Addresses: []string{h.addr.String()}})
		if err := c.store.PutState(context.Background(), nsdb.HostInterfaceKey(h.HostID().String(), "eth0"), itf); err != nil {
			t.Fatal(err)
		}
	}
	bridge := topology.NewID()
	c.update(func(tx topology.Store) error { return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}) })
	p1, p2 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h2, "vm2")
	dp1, dp2 := h1.dpPort(t, "vm1", p1), h2.dpPort(t, "vm2", p2)
	c.seedMAC(context.Background(), bridge.String(), 0, mac(2), p2.String())
	c.settle()
	h1.waitActive(t, p2)

	flows := func() uint64 { return h1.flows.Stats().Installed }
	// Other traffic first (a bridge's flow for it would match on the MACs
	// alone): its flow must keep later SYNs out.
	h1.dp.Inject(dp1, udpFrame(mac(1), mac(2), "10.1.0.1", "10.1.0.2", 2000, 53))
	udpOut(t, h2, dp2, 2000)
	before := flows()
	h1.dp.Inject(dp1, tcpFrame(t, 1000, true, 8960))
	if got := segmentOut(t, h2, dp2, 1000); got != 1460 {
		t.Errorf("SYN's MSS %d on the other host, want 1460 (1550 - 50 - 40)", got)
	}
	if flows() != before {
		t.Errorf("%d flows installed for a clamped SYN", flows()-before)
	}
	if got := counterValue(h1.metrics.mssClamped); got != 1 {
		t.Errorf("clamped SYNs counted %v, want 1", got)
	}
	// The connection's next segment installs a flow for it alone: another
	// connection's SYN still misses and is clamped.
	h1.dp.Inject(dp1, tcpFrame(t, 1000, false, 0))
	segmentOut(t, h2, dp2, 1000)
	if flows() != before+1 {
		t.Errorf("%d flows after the connection's ACK, want 1", flows()-before)
	}
	h1.dp.Inject(dp1, tcpFrame(t, 1001, true, 8960))
	if got := segmentOut(t, h2, dp2, 1001); got != 1460 {
		t.Errorf("another connection's SYN: MSS %d, want 1460", got)
	}
	// A SYN already within the path, or from a VM whose MTU fits, passes.
	h1.dp.Inject(dp1, tcpFrame(t, 1002, true, 1400))
	if got := segmentOut(t, h2, dp2, 1002); got != 1400 {
		t.Errorf("a SYN with MSS 1400: %d on the other host", got)
	}
	p3 := c.bridgePort(bridge, h1, "vm3")
	dp3 := h1.dpPort(t, "vm3", p3)
	h1.waitActive(t, p3)
	f := tcpFrame(t, 1003, true, 8960)
	copy(f[6:12], []byte{2, 0, 0, 0, 0, 3})
	h1.dp.Inject(dp3, f)
	if got := segmentOut(t, h2, dp2, 1003); got != 8960 {
		t.Errorf("a VM whose MTU fits the overlay: MSS %d, want 8960 untouched", got)
	}

	// IPv6 alike, with its 40-byte header: 1550 - 50 - 60.
	before = flows()
	h1.dp.Inject(dp1, tcpFrameIP(t, true, 2000, true, 8940))
	if got := segmentOut(t, h2, dp2, 2000); got != 1440 {
		t.Errorf("IPv6 SYN's MSS %d on the other host, want 1440 (1550 - 50 - 60)", got)
	}
	if flows() != before {
		t.Errorf("%d flows installed for a clamped IPv6 SYN", flows()-before)
	}
	h1.dp.Inject(dp1, tcpFrameIP(t, true, 2000, false, 0))
	segmentOut(t, h2, dp2, 2000)
	if flows() != before+1 {
		t.Errorf("%d flows after the IPv6 connection's ACK, want 1", flows()-before)
	}
	h1.dp.Inject(dp1, tcpFrameIP(t, true, 2001, true, 8940))
	if got := segmentOut(t, h2, dp2, 2001); got != 1440 {
		t.Errorf("another IPv6 connection's SYN: MSS %d, want 1440", got)
	}
}
