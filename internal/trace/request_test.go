package trace

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

func intp(v int) *int { return &v }

func TestRequestCheck(t *testing.T) {
	const port = "6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21"
	base := func(f func(r *Request)) Request {
		r := Request{PortID: port, SrcIP: "10.0.0.1", DstIP: "10.0.0.2"}
		f(&r)
		return r
	}
	cases := []struct {
		name      string
		req       Request
		field     string // "" when the request is valid
		wantInMsg string
	}{
		{"icmp by default", base(func(r *Request) {}), "", ""},
		{"tcp from a port", base(func(r *Request) { r.DstPort = intp(22) }), "", ""},
		{"arp", base(func(r *Request) { r.ARP = true }), "", ""},
		{"port missing", base(func(r *Request) { r.PortID = "" }), "portId", "portId is required"},
		{"port not a uuid", base(func(r *Request) { r.PortID = "vm1" }), "portId", "not a port id"},
		{"unknown datapath", base(func(r *Request) { r.Datapath = "dpdk" }), "datapath", `datapath "dpdk"`},
		{"source missing", base(func(r *Request) { r.SrcIP = "" }), "srcIp", "srcIp is required"},
		{"ipv6 destination", base(func(r *Request) { r.DstIP = "2001:db8::1" }), "dstIp", "IPv6 is not simulated"},
		{"bad mac", base(func(r *Request) { r.SrcMAC = "02:00" }), "srcMac", "not a MAC"},
		{"vlan too big", base(func(r *Request) { r.VLAN = intp(4096) }), "vlan", "vlan 4096"},
		{"ttl too big", base(func(r *Request) { r.TTL = intp(256) }), "ttl", "ttl 256"},
		{"tcp without port", base(func(r *Request) { r.Proto = "tcp" }), "dstPort", "dstPort is required with proto tcp"},
		{"port out of range", base(func(r *Request) { r.DstPort = intp(70000) }), "dstPort", "dstPort 70000"},
		{"unknown protocol", base(func(r *Request) { r.Proto = "sctpx" }), "proto", `proto "sctpx"`},
		{"icmp fields on tcp", base(func(r *Request) { r.DstPort, r.ICMPType = intp(1), intp(0) }), "icmpType", "apply to proto icmp only"},
		{"icmp type too big", base(func(r *Request) { r.ICMPType = intp(300) }), "icmpType", "icmpType 300"},
		{"ports on icmp", base(func(r *Request) { r.Proto, r.DstPort = "icmp", intp(1) }), "srcPort", "apply to proto tcp and udp only"},
		{"ports on a raw protocol", base(func(r *Request) { r.Proto, r.SrcPort = "47", intp(1) }), "proto", "do not apply to proto 47"},
		{"proto with arp", base(func(r *Request) { r.ARP, r.Proto = true, "udp" }), "proto", "proto does not apply to arp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.req.Check()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Check: %v, want nil", err)
				}
				return
			}
			fe, ok := err.(*FieldError)
			if !ok {
				t.Fatalf("Check: %v (%T), want a *FieldError on %s", err, err, tc.field)
			}
			if fe.Field != tc.field || !strings.Contains(fe.Error(), tc.wantInMsg) {
				t.Errorf("error on %s: %q, want one on %s containing %q", fe.Field, fe.Error(), tc.field, tc.wantInMsg)
			}
			flags := fe.Render(func(f string) string { return "--" + f })
			if !strings.Contains(flags, "--"+tc.field) {
				t.Errorf("rendered %q does not name --%s", flags, tc.field)
			}
		})
	}
}

func TestProbeFrame(t *testing.T) {
	mac := func(s string) [6]byte { m, _ := topology.ParseMAC(s); return m }
	base := probe{srcMAC: mac("02:00:00:00:00:01"), dstMAC: mac("02:00:00:00:00:02"),
		src: netip.MustParseAddr("10.0.0.1"), dst: netip.MustParseAddr("10.0.1.2"), ttl: 9}
	with := func(f func(p *probe)) probe { p := base; f(&p); return p }
	cases := []struct {
		name string
		p    probe
	}{
		{"tcp", with(func(p *probe) { p.proto, p.srcPort, p.dstPort = packet.IPProtoTCP, 1234, 80 })},
		{"udp with vlan", with(func(p *probe) { p.proto, p.srcPort, p.dstPort, p.vlan = packet.IPProtoUDP, 5353, 53, 7 })},
		{"icmp echo", with(func(p *probe) { p.proto, p.icmpType = packet.IPProtoICMP, packet.ICMPEchoRequest })},
		{"icmp unreachable", with(func(p *probe) { p.proto, p.icmpType, p.icmpCode = packet.IPProtoICMP, 3, 1 })},
		{"gre", with(func(p *probe) { p.proto = 47 })},
		{"arp", with(func(p *probe) { p.arp = true })},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.p
			frame := p.frame()
			m, ok := sim.MatchFromFrame(frame)
			if !ok {
				t.Fatal("frame does not decode")
			}
			if m.EthSrc != p.srcMAC || m.EthDst != p.dstMAC || m.NwSrc != p.src.As4() || m.NwDst != p.dst.As4() {
				t.Errorf("addresses %+v, want the probe's", m)
			}
			wantVLAN := uint16(0)
			if p.vlan != 0 {
				wantVLAN = p.vlan | packet.VLANPresent
			}
			if m.VLAN != wantVLAN {
				t.Errorf("vlan %#x, want %#x", m.VLAN, wantVLAN)
			}
			if p.arp {
				if m.EthType != packet.EtherTypeARP || m.NwProto != uint8(packet.ARPRequest) || m.ARPSHA != p.srcMAC {
					t.Errorf("arp match %+v, want a request from the probe", m)
				}
				return
			}
			if m.EthType != packet.EtherTypeIPv4 || m.NwProto != p.proto || m.NwTTL != p.ttl {
				t.Errorf("ip match %+v, want proto %d ttl %d", m, p.proto, p.ttl)
			}
			wantSrc, wantDst := p.srcPort, p.dstPort
			if p.proto == packet.IPProtoICMP {
				wantSrc, wantDst = uint16(p.icmpType), uint16(p.icmpCode)
			}
			if m.TpSrc != wantSrc || m.TpDst != wantDst {
				t.Errorf("l4 %d → %d, want %d → %d", m.TpSrc, m.TpDst, wantSrc, wantDst)
			}
			// Checksums: the IPv4 header's and the L4 one (with its pseudo
			// header for TCP and UDP) sum to zero when valid.
			off := packet.EthernetHeaderLen
			if p.vlan != 0 {
				off += 4
			}
			ip := frame[off:]
			if packet.Checksum(ip[:packet.IPv4MinHeaderLen], 0) != 0 {
				t.Error("bad IPv4 header checksum")
			}
			l4 := ip[packet.IPv4MinHeaderLen:]
			var pseudo uint32
			if p.proto == packet.IPProtoTCP || p.proto == packet.IPProtoUDP {
				pseudo = packet.PseudoHeaderSum4(p.src.As4(), p.dst.As4(), p.proto, uint16(len(l4)))
			}
			if len(l4) > 0 && packet.Checksum(l4, pseudo) != 0 {
				t.Error("bad L4 checksum")
			}
		})
	}
}
