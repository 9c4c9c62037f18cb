package cli

import (
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/midonet/midonet/internal/dhcp"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// `midonet trace` runs the agent's simulation on a packet the operator
// describes, against the topology the API serves, and prints what each
// device did. It needs no agent: the CLI fetches the topology and state
// tables over HTTP, compiles the same snapshot an agent would, and asks the
// simulator for a traced result.

// traceSeed seeds the simulator's random choices (NAT ports, DNAT targets)
// so that two traces of one packet print the same thing.
const traceSeed = 1

// defaultTCPSrcPort is the source port of a TCP or UDP probe without
// --src-port: the first port of the dynamic range.
const defaultTCPSrcPort = 49152

// traceFlags are the flags of `midonet trace`.
type traceFlags struct {
	port             string
	srcMAC, dstMAC   string
	vlan             int
	srcIP, dstIP     string
	proto            string
	srcPort, dstPort int
	icmpType         int
	icmpCode         int
	ttl              int
	arp              bool
	dhcp             string
	requestedIP      string
	datapath         string
}

func traceCommand(o *options) *cobra.Command { return traceCommandWith(o, &traceFlags{}) }

// traceCommandWith builds the command around f, which tests read.
func traceCommandWith(o *options, f *traceFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trace --port ID --src-ip A --dst-ip B [flags]",
		Short: "Simulate a packet through the virtual topology and show what each device does with it",
		Long: `Simulate a packet entering the virtual network at --port, exactly as an agent
would simulate the first packet of a flow, against the topology and the bridge
MAC/ARP tables the API holds now. It prints, device by device, the ports
crossed, each chain evaluated and rule matched, NAT applied, the route chosen,
then the result: where the packet leaves and with which header rewrites, or
why it is dropped; and the flow the agent would install (the header fields
its megaflow matches, its tag count and hard timeout). Give --datapath ovs
when the agents run the Open vSwitch kernel module: its flows cannot match an
ICMP echo's identifier, so pings through NAT or conntrack get no flow there.

Every port bound to a host interface is taken as active; the bound ports on
the path that no agent reports up are listed as "assumed active". Routers' ARP caches
live in the agents and are not visible through the API: a next hop that no
bridge ARP table knows gives "arp-needed" (the agent would send an ARP request
and simulate the packet again when the reply arrives).

Packet defaults:
  --proto       tcp when --src-port or --dst-port is given, else icmp
  --icmp-type   8 (echo request), --icmp-code 0
  --src-port    49152 (TCP/UDP); --dst-port is required for TCP and UDP
  --ttl         64
  --src-mac     the MAC the port's bridge has for --src-ip in its ARP table,
                else a random locally administered MAC
  --dst-mac     on a router port: the port's MAC. On a bridge port: the MAC of
                the router port on the bridge whose address is --dst-ip, or
                whose subnet holds --src-ip but not --dst-ip (the gateway);
                else the bridge's ARP table entry for --dst-ip; else broadcast
                (the bridge floods). With --arp: broadcast.
  --arp         sends an ARP request from --src-ip asking for --dst-ip
                instead of an IPv4 packet.
  --dhcp TYPE   sends a DHCP request (discover, request, inform, release or
                decline) from --src-mac (required): UDP 68 → 67 from
                --src-ip (default 0.0.0.0, the client's address when
                renewing or informing) to 255.255.255.255; --requested-ip
                sets option 50. A bridge with DHCP subnets answers it in the
                agent: the trace shows the answer and that no flow is
                installed.`,
		Example: `  midonet trace --port 6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21 --src-ip 10.0.0.5 --dst-ip 8.8.8.8 --proto udp --dst-port 53
  midonet trace --port 6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21 --src-ip 10.0.0.5 --dst-ip 10.0.1.7 -o json
  midonet trace --port 6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21 --src-ip 10.0.0.5 --dst-ip 10.0.0.1 --arp
  midonet trace --port 6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21 --dhcp discover --src-mac 02:00:00:00:00:05`,
		Args: cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			return runTrace(s, cmd, f)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.port, "port", "", "id of the port the packet enters by (required)")
	fl.StringVar(&f.srcMAC, "src-mac", "", "source MAC (default: see above)")
	fl.StringVar(&f.dstMAC, "dst-mac", "", "destination MAC (default: see above)")
	fl.IntVar(&f.vlan, "vlan", 0, "802.1Q VLAN id to tag the frame with (0 = untagged)")
	fl.StringVar(&f.srcIP, "src-ip", "", "source IPv4 address (required)")
	fl.StringVar(&f.dstIP, "dst-ip", "", "destination IPv4 address (required)")
	fl.StringVar(&f.proto, "proto", "", "IP protocol: tcp, udp, icmp or a number (default: see above)")
	fl.IntVar(&f.srcPort, "src-port", 0, "TCP/UDP source port (default 49152)")
	fl.IntVar(&f.dstPort, "dst-port", 0, "TCP/UDP destination port")
	fl.IntVar(&f.icmpType, "icmp-type", int(packet.ICMPEchoRequest), "ICMP type")
	fl.IntVar(&f.icmpCode, "icmp-code", 0, "ICMP code")
	fl.IntVar(&f.ttl, "ttl", int(packet.DefaultTTL), "IP time to live")
	fl.BoolVar(&f.arp, "arp", false, "send an ARP request for --dst-ip instead of an IPv4 packet")
	fl.StringVar(&f.dhcp, "dhcp", "", "send a DHCP request of this type from --src-mac: discover, request, inform, release or decline")
	fl.StringVar(&f.requestedIP, "requested-ip", "", "with --dhcp: the address the client asks for (option 50)")
	fl.StringVar(&f.datapath, "datapath", "userspace", "the agents' datapath, whose flows the trace shows: userspace, "+
		"or ovs (its flows cannot match ICMP echo identifiers: pings through NAT and conntrack are simulated one by one)")
	return cmd
}

// probe is the packet to simulate, fully resolved.
type probe struct {
	port             topology.ID
	srcMAC, dstMAC   [6]byte
	vlan             uint16 // VLAN id; 0 = untagged
	src, dst         netip.Addr
	arp              bool
	dhcp             dhcp.MessageType // a DHCP request instead of the packet above
	requestedIP      netip.Addr
	proto            uint8
	srcPort, dstPort uint16
	icmpType         uint8
	icmpCode         uint8
	ttl              uint8
	// matchICMPID: the agents' datapath matches ICMP echo identifiers
	// (the userspace datapath does, the OVS kernel module does not).
	matchICMPID bool
}

// parseProbe checks the flags that do not need the topology; MACs left
// empty are chosen later by defaultMACs.
func parseProbe(cmd *cobra.Command, f *traceFlags) (*probe, error) {
	p := &probe{}
	if f.port == "" {
		return nil, errors.New("--port is required: the id of the port the packet enters by")
	}
	id, err := topology.ParseID(f.port)
	if err != nil {
		return nil, fmt.Errorf("--port %q: not a port id (a UUID)", f.port)
	}
	p.port = id
	switch f.datapath {
	case "userspace":
		p.matchICMPID = true
	case "ovs":
	default:
		return nil, fmt.Errorf("--datapath %q: want userspace or ovs, the agents' datapath", f.datapath)
	}
	if f.dhcp != "" {
		if err := parseDHCPProbe(cmd, f, p); err != nil {
			return nil, err
		}
	}
	if p.dhcp == 0 || f.srcIP != "" {
		if p.src, err = parseIPv4Flag("src-ip", f.srcIP); err != nil {
			return nil, err
		}
	}
	if p.dhcp == 0 || f.dstIP != "" {
		if p.dst, err = parseIPv4Flag("dst-ip", f.dstIP); err != nil {
			return nil, err
		}
	}
	for _, m := range []struct {
		flag, text string
		dst        *[6]byte
	}{{"src-mac", f.srcMAC, &p.srcMAC}, {"dst-mac", f.dstMAC, &p.dstMAC}} {
		if m.text == "" {
			continue
		}
		mac, ok := topology.ParseMAC(m.text)
		if !ok {
			return nil, fmt.Errorf("--%s %q: not a MAC address such as 02:00:00:00:00:01", m.flag, m.text)
		}
		*m.dst = mac
	}
	if f.vlan < 0 || f.vlan > 4095 {
		return nil, fmt.Errorf("--vlan %d: want 0 (untagged) to 4095", f.vlan)
	}
	p.vlan = uint16(f.vlan)
	if f.ttl < 0 || f.ttl > 255 {
		return nil, fmt.Errorf("--ttl %d: want 0 to 255", f.ttl)
	}
	p.ttl = uint8(f.ttl)
	p.arp = f.arp
	changed := cmd.Flags().Changed
	if p.dhcp != 0 {
		return p, nil
	}
	if changed("requested-ip") {
		return nil, errors.New("--requested-ip applies to --dhcp only")
	}
	if p.arp {
		for _, name := range []string{"proto", "src-port", "dst-port", "icmp-type", "icmp-code", "ttl"} {
			if changed(name) {
				return nil, fmt.Errorf("--%s does not apply to --arp", name)
			}
		}
		return p, nil
	}
	proto := strings.ToLower(f.proto)
	if proto == "" {
		proto = "icmp"
		if changed("src-port") || changed("dst-port") {
			proto = "tcp"
		}
	}
	switch proto {
	case "tcp":
		p.proto = packet.IPProtoTCP
	case "udp":
		p.proto = packet.IPProtoUDP
	case "icmp":
		p.proto = packet.IPProtoICMP
	default:
		n, err := strconv.Atoi(proto)
		if err != nil || n < 0 || n > 255 {
			return nil, fmt.Errorf("--proto %q: want tcp, udp, icmp or a protocol number 0-255", f.proto)
		}
		p.proto = uint8(n)
	}
	switch p.proto {
	case packet.IPProtoTCP, packet.IPProtoUDP:
		if !changed("dst-port") {
			return nil, fmt.Errorf("--dst-port is required with --proto %s", proto)
		}
		src := f.srcPort
		if !changed("src-port") {
			src = defaultTCPSrcPort
		}
		for _, x := range []struct {
			flag string
			v    int
			dst  *uint16
		}{{"src-port", src, &p.srcPort}, {"dst-port", f.dstPort, &p.dstPort}} {
			if x.v < 0 || x.v > 65535 {
				return nil, fmt.Errorf("--%s %d: want 0 to 65535", x.flag, x.v)
			}
			*x.dst = uint16(x.v)
		}
		if changed("icmp-type") || changed("icmp-code") {
			return nil, errors.New("--icmp-type and --icmp-code apply to --proto icmp only")
		}
	case packet.IPProtoICMP:
		if f.icmpType < 0 || f.icmpType > 255 || f.icmpCode < 0 || f.icmpCode > 255 {
			return nil, fmt.Errorf("--icmp-type %d --icmp-code %d: want 0 to 255", f.icmpType, f.icmpCode)
		}
		p.icmpType, p.icmpCode = uint8(f.icmpType), uint8(f.icmpCode)
		if changed("src-port") || changed("dst-port") {
			return nil, errors.New("--src-port and --dst-port apply to --proto tcp and udp only")
		}
	default:
		if changed("src-port") || changed("dst-port") || changed("icmp-type") || changed("icmp-code") {
			return nil, fmt.Errorf("ports and ICMP fields do not apply to --proto %d", p.proto)
		}
	}
	return p, nil
}

// parseDHCPProbe checks the flags of a DHCP request probe.
func parseDHCPProbe(cmd *cobra.Command, f *traceFlags, p *probe) error {
	types := map[string]dhcp.MessageType{"discover": dhcp.Discover, "request": dhcp.Request, "inform": dhcp.Inform,
		"release": dhcp.Release, "decline": dhcp.Decline}
	t, ok := types[strings.ToLower(f.dhcp)]
	if !ok {
		return fmt.Errorf("--dhcp %q: want discover, request, inform, release or decline", f.dhcp)
	}
	p.dhcp = t
	if f.srcMAC == "" {
		return errors.New("--dhcp needs --src-mac: the client's MAC, which its DHCP host entry names")
	}
	if f.arp {
		return errors.New("--dhcp and --arp are two different packets: give one")
	}
	for _, name := range []string{"proto", "src-port", "dst-port", "icmp-type", "icmp-code", "vlan"} {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--%s does not apply to --dhcp", name)
		}
	}
	p.src, p.dst = netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255})
	if f.requestedIP != "" {
		a, err := parseIPv4Flag("requested-ip", f.requestedIP)
		if err != nil {
			return err
		}
		p.requestedIP = a
	}
	return nil
}

func parseIPv4Flag(flag, text string) (netip.Addr, error) {
	if text == "" {
		return netip.Addr{}, fmt.Errorf("--%s is required", flag)
	}
	a, err := netip.ParseAddr(text)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("--%s %q: want an IPv4 address (IPv6 is not simulated)", flag, text)
	}
	return a, nil
}

// frame builds the probe's Ethernet frame, with valid lengths and
// checksums, so that devices can quote it in ICMP errors or answer it.
func (p *probe) frame() []byte {
	if p.dhcp != 0 {
		f := dhcp.RequestFields{Type: p.dhcp, XID: 1, CHAddr: p.srcMAC, CIAddr: p.src.As4()}
		if p.requestedIP.IsValid() {
			f.RequestedIP = p.requestedIP.As4()
		}
		b := dhcp.AppendRequest4(nil, f)
		packet.Ethernet(b).SetDst(p.dstMAC)
		if p.dst != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			// A renewal unicast to the server: readdress the frame.
			var pp packet.Parsed
			pp.Decode(b)
			pp.SetIPv4Dst(p.dst.As4())
		}
		return b
	}
	b := make([]byte, 0, 128)
	b = append(b, p.dstMAC[:]...)
	b = append(b, p.srcMAC[:]...)
	if p.vlan != 0 {
		b = binary.BigEndian.AppendUint16(b, packet.EtherTypeVLAN)
		b = binary.BigEndian.AppendUint16(b, p.vlan)
	}
	if p.arp {
		b = binary.BigEndian.AppendUint16(b, packet.EtherTypeARP)
		n := len(b)
		b = append(b, make([]byte, packet.ARPIPv4Len)...)
		packet.ARP(b[n:]).Encode(packet.ARPFields{Op: packet.ARPRequest, SHA: p.srcMAC, SPA: p.src.As4(), TPA: p.dst.As4()})
		return b
	}
	b = binary.BigEndian.AppendUint16(b, packet.EtherTypeIPv4)
	var l4 []byte
	src, dst := p.src.As4(), p.dst.As4()
	switch p.proto {
	case packet.IPProtoTCP:
		l4 = make([]byte, packet.TCPMinHeaderLen)
		packet.TCP(l4).Encode(packet.TCPFields{SrcPort: p.srcPort, DstPort: p.dstPort, Seq: 1, Flags: packet.TCPFlagSYN, Window: 65535})
		packet.TCP(l4).SetChecksum(packet.Checksum(l4, packet.PseudoHeaderSum4(src, dst, p.proto, uint16(len(l4)))))
	case packet.IPProtoUDP:
		l4 = make([]byte, packet.UDPHeaderLen)
		packet.UDP(l4).Encode(packet.UDPFields{SrcPort: p.srcPort, DstPort: p.dstPort, Length: uint16(len(l4))})
		c := packet.Checksum(l4, packet.PseudoHeaderSum4(src, dst, p.proto, uint16(len(l4))))
		if c == 0 {
			c = 0xffff
		}
		packet.UDP(l4).SetChecksum(c)
	case packet.IPProtoICMP:
		// Echo requests and replies carry identifier 1, sequence 1.
		l4 = make([]byte, packet.ICMPv4HeaderLen)
		l4[0], l4[1] = p.icmpType, p.icmpCode
		if p.icmpType == packet.ICMPEchoRequest || p.icmpType == packet.ICMPEchoReply {
			binary.BigEndian.PutUint16(l4[4:], 1)
			binary.BigEndian.PutUint16(l4[6:], 1)
		}
		packet.ICMPv4(l4).SetChecksum(packet.Checksum(l4, 0))
	}
	n := len(b)
	b = append(b, make([]byte, packet.IPv4MinHeaderLen)...)
	packet.IPv4(b[n:]).Encode(packet.IPv4Fields{TotalLen: uint16(packet.IPv4MinHeaderLen + len(l4)), ID: 1,
		Flags: packet.IPv4FlagDontFragment, TTL: p.ttl, Protocol: p.proto, Src: src, Dst: dst})
	return append(b, l4...)
}

// topo is the topology fetched from the API: the simulator's input plus
// what the report needs to name objects.
type topo struct {
	in      sim.SnapshotInput
	ports   map[topology.ID]*topology.Port
	devices map[topology.ID]string // bridge, router and chain names
	kinds   map[topology.ID]string // "bridge", "router", "port", "chain", "rule"
	rules   map[topology.ID]ruleRef
}

// ruleRef places a rule in its chain.
type ruleRef struct {
	chain    topology.ID
	position int
}

// listAs reads a collection and decodes each item into T, also returning
// the items as Objects for their links.
func listAs[T any](s *session, url, media string) ([]T, []Object, error) {
	var raws []json.RawMessage
	if err := s.client.do(s.ctx, http.MethodGet, url, vendor("collection."+media), nil, "", &raws); err != nil {
		return nil, nil, err
	}
	items := make([]T, len(raws))
	objs := make([]Object, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &items[i]); err != nil {
			return nil, nil, fmt.Errorf("GET %s: item %d is not a %s: %w", url, i, media, err)
		}
		if err := json.Unmarshal(raw, &objs[i]); err != nil {
			return nil, nil, fmt.Errorf("GET %s: item %d: %w", url, i, err)
		}
	}
	return items, objs, nil
}

// listRoot reads the Application root's collection of kind k.
func listRoot[T any](s *session, k *kind) ([]T, []Object, error) {
	u, err := s.client.Collection(s.ctx, k.collection)
	if err != nil {
		return nil, nil, err
	}
	return listAs[T](s, u, k.media)
}

// listSub reads the collection an object links to. An object deleted since
// it was listed has no sub-collection any more: ok is false, and the caller
// leaves it out, as if it had been deleted a moment earlier.
func listSub[T any](s *session, k *kind, o Object, key, media string) (items []T, ok bool, err error) {
	u, err := link(k, o, key)
	if err != nil {
		return nil, false, err
	}
	items, _, err = listAs[T](s, u, media)
	if IsNotFound(err) {
		return nil, false, nil
	}
	return items, err == nil, err
}

// fetchTopology reads everything a simulation needs from the API.
func fetchTopology(s *session) (*topo, error) {
	t := &topo{ports: map[topology.ID]*topology.Port{}, devices: map[topology.ID]string{},
		kinds: map[topology.ID]string{}, rules: map[topology.ID]ruleRef{}}
	in := &t.in
	in.BridgeARP = true // as the agent runs

	// Ports first: a device created after this read has no ports we miss,
	// and ports of a device deleted meanwhile are left out below.
	ports, _, err := listRoot[topology.Port](s, portKind)
	if err != nil {
		return nil, err
	}
	bridges, bridgeObjs, err := listRoot[topology.Bridge](s, bridgeKind)
	if err != nil {
		return nil, err
	}
	routers, routerObjs, err := listRoot[topology.Router](s, routerKind)
	if err != nil {
		return nil, err
	}
	chains, chainObjs, err := listRoot[topology.Chain](s, chainKind)
	if err != nil {
		return nil, err
	}
	groups, groupObjs, err := listRoot[topology.PortGroup](s, portGroupKind)
	if err != nil {
		return nil, err
	}
	in.IPAddrGroups, _, err = listRoot[topology.IPAddrGroup](s, ipAddrGroupKind)
	if err != nil {
		return nil, err
	}

	for i, b := range bridges {
		t.kinds[b.ID], t.devices[b.ID] = "bridge", deref(b.Name)
		macs, ok, err := listSub[struct {
			MAC  string      `json:"macAddr"`
			Port topology.ID `json:"portId"`
			VLAN uint16      `json:"vlanId"`
		}](s, bridgeKind, bridgeObjs[i], "macTable", "MacPort-v2")
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		for _, e := range macs {
			if mac, ok := topology.ParseMAC(e.MAC); ok {
				in.MACTable = append(in.MACTable, sim.MACEntry{Bridge: b.ID, VLAN: e.VLAN, MAC: mac, Port: e.Port})
			}
		}
		arps, ok, err := listSub[struct {
			IP  string `json:"ip"`
			MAC string `json:"mac"`
		}](s, bridgeKind, bridgeObjs[i], "arpTable", "IP4Mac-v1")
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		for _, e := range arps {
			ip, okIP := topology.ParseIPv4(e.IP)
			mac, okMAC := topology.ParseMAC(e.MAC)
			if okIP && okMAC {
				in.IPMACTable = append(in.IPMACTable, sim.IPMACEntry{Bridge: b.ID, IP: ip, MAC: mac})
			}
		}
		subnets, err := fetchDHCP(s, b.ID, bridgeObjs[i])
		if err != nil {
			return nil, err
		}
		in.DHCPSubnets = append(in.DHCPSubnets, subnets...)
		in.Bridges = append(in.Bridges, b)
	}
	for i, r := range routers {
		t.kinds[r.ID], t.devices[r.ID] = "router", deref(r.Name)
		routes, ok, err := listSub[topology.Route](s, routerKind, routerObjs[i], "routes", routeKind.media)
		if err != nil {
			return nil, err
		}
		if ok {
			in.Routers = append(in.Routers, r)
			in.Routes = append(in.Routes, routes...)
		}
		// The ARP entries the agents learned, where the server shows them.
		if u, err := link(routerKind, routerObjs[i], "uri"); err == nil {
			arps, _, err := listAs[struct {
				IP  string `json:"ip"`
				MAC string `json:"mac"`
			}](s, u+"/arp_table", "IP4Mac-v1")
			if err == nil {
				for _, e := range arps {
					ip, okIP := topology.ParseIPv4(e.IP)
					mac, okMAC := topology.ParseMAC(e.MAC)
					if okIP && okMAC {
						in.ARPTable = append(in.ARPTable, sim.ARPEntry{Router: r.ID, IP: ip, MAC: mac})
					}
				}
			}
		}
	}
	for i, c := range chains {
		t.kinds[c.ID], t.devices[c.ID] = "chain", deref(c.Name)
		rules, ok, err := listSub[topology.Rule](s, chainKind, chainObjs[i], "rules", ruleKind.media)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		// The API lists a chain's rules in evaluation order; the chain's
		// own rule list is not part of its JSON.
		c.RuleIDs = make([]topology.ID, len(rules))
		for j, r := range rules {
			c.RuleIDs[j] = r.ID
			t.kinds[r.ID] = "rule"
			t.rules[r.ID] = ruleRef{chain: c.ID, position: j + 1}
		}
		in.Chains = append(in.Chains, c)
		in.Rules = append(in.Rules, rules...)
	}
	for i, g := range groups {
		members, ok, err := listSub[struct {
			Port topology.ID `json:"portId"`
		}](s, portGroupKind, groupObjs[i], "ports", "PortGroupPort-v1")
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		g.PortIDs = make([]topology.ID, len(members))
		for j, m := range members {
			g.PortIDs[j] = m.Port
		}
		in.PortGroups = append(in.PortGroups, g)
	}

	kept := map[topology.ID]bool{}
	for _, b := range in.Bridges {
		kept[b.ID] = true
	}
	for _, r := range in.Routers {
		kept[r.ID] = true
	}
	for i := range ports {
		p := &ports[i]
		if !kept[p.DeviceID] {
			continue
		}
		in.Ports = append(in.Ports, *p)
	}
	for i := range in.Ports {
		p := &in.Ports[i]
		t.ports[p.ID], t.kinds[p.ID] = p, "port"
		// The API cannot tell whether the host's agent runs: take every
		// bound port as active, as it is once its agent is up.
		if p.IsExterior() {
			in.PortBinding = append(in.PortBinding, sim.PortBinding{Port: p.ID, Host: *p.HostID, TunnelKey: uint32(p.TunnelKey)})
		}
	}
	return t, nil
}

// fetchDHCP reads a bridge's DHCP subnets with their hosts. A subnet
// deleted meanwhile is left out.
func fetchDHCP(s *session, bridge topology.ID, b Object) ([]topology.DHCPSubnet, error) {
	u, err := link(bridgeKind, b, "dhcpSubnets")
	if err != nil {
		return nil, err
	}
	subnets, objs, err := listAs[topology.DHCPSubnet](s, u, dhcpSubnetMedia)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := subnets[:0]
	for i := range subnets {
		hosts, ok, err := listSub[topology.DHCPHost](s, dhcpSubnetKind, objs[i], "hosts", dhcpHostMedia)
		if err != nil {
			return nil, err
		}
		if ok {
			subnets[i].BridgeID, subnets[i].Hosts = bridge, hosts
			out = append(out, subnets[i])
		}
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// routerPortPrefix returns a router port's address and subnet.
func routerPortPrefix(p *topology.Port) (netip.Prefix, bool) {
	for _, sub := range p.PortSubnet {
		if pfx, err := netip.ParsePrefix(sub); err == nil && pfx.Addr().Is4() {
			return pfx, true
		}
	}
	if p.PortAddress != nil {
		if a, ok := topology.ParseIPv4(*p.PortAddress); ok {
			return netip.PrefixFrom(a, p.NetworkLength), true
		}
	}
	return netip.Prefix{}, false
}

// defaultMACs fills the MACs the operator left out, as documented in the
// command's help.
func (t *topo) defaultMACs(p *probe, f *traceFlags) error {
	in := t.ports[p.port]
	var zero [6]byte
	if f.srcMAC == "" {
		p.srcMAC = zero
		for _, e := range t.in.IPMACTable {
			if e.Bridge == in.DeviceID && e.IP == p.src {
				p.srcMAC = e.MAC
				break
			}
		}
		if p.srcMAC == zero {
			if _, err := rand.Read(p.srcMAC[:]); err != nil {
				return err
			}
			p.srcMAC[0] = p.srcMAC[0]&^1 | 2 // unicast, locally administered
		}
	}
	if f.dstMAC != "" {
		return nil
	}
	p.dstMAC = packet.BroadcastMAC
	switch {
	case p.arp:
	case in.IsRouterPort():
		if in.PortMAC != nil {
			if mac, ok := topology.ParseMAC(*in.PortMAC); ok {
				p.dstMAC = mac
			}
		}
	default:
		if mac, ok := t.gatewayMAC(in.DeviceID, p.src, p.dst); ok {
			p.dstMAC = mac
			return nil
		}
		for _, e := range t.in.IPMACTable {
			if e.Bridge == in.DeviceID && e.IP == p.dst {
				p.dstMAC = e.MAC
				break
			}
		}
	}
	return nil
}

// gatewayMAC returns the MAC of the router port linked to bridge that owns
// dst, or else of one whose subnet holds src but not dst.
func (t *topo) gatewayMAC(bridge topology.ID, src, dst netip.Addr) ([6]byte, bool) {
	var gw *topology.Port
	// Map order is random: visit the ports by id so the choice is stable.
	ids := make([]topology.ID, 0, len(t.ports))
	for id := range t.ports {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b topology.ID) int { return cmp.Compare(a.String(), b.String()) })
	for _, id := range ids {
		bp := t.ports[id]
		if bp.DeviceID != bridge || bp.PeerID == nil {
			continue
		}
		rp, ok := t.ports[*bp.PeerID]
		if !ok || !rp.IsRouterPort() || rp.PortMAC == nil {
			continue
		}
		pfx, ok := routerPortPrefix(rp)
		if !ok {
			continue
		}
		if pfx.Addr() == dst {
			gw = rp
			break
		}
		if gw == nil && pfx.Contains(src) && !pfx.Contains(dst) {
			gw = rp
		}
	}
	if gw == nil {
		return [6]byte{}, false
	}
	return topology.ParseMAC(*gw.PortMAC)
}

// runTrace fetches the topology, simulates the probe and prints the report.
func runTrace(s *session, cmd *cobra.Command, f *traceFlags) error {
	p, err := parseProbe(cmd, f)
	if err != nil {
		return err
	}
	t, err := fetchTopology(s)
	if err != nil {
		return err
	}
	if _, ok := t.ports[p.port]; !ok {
		return fmt.Errorf("--port %s: no such port (see `midonet port list`)", p.port)
	}
	if err := t.defaultMACs(p, f); err != nil {
		return err
	}
	snap, err := sim.NewSnapshot(t.in)
	if err != nil {
		return fmt.Errorf("compile the topology: %w", err)
	}
	frame := p.frame()
	m, ok := sim.MatchFromFrame(frame)
	if !ok {
		return errors.New("the probe frame does not decode") // a bug of frame()
	}
	sm := sim.NewSimulator(traceSeed)
	sm.MatchICMPID(p.matchICMPID)
	res := sm.Simulate(snap, nil, &sim.Packet{Port: p.port, Match: m, Frame: frame, Trace: true}, time.Now())
	rep := t.report(p.port, &m, res)
	if f.datapath == "userspace" {
		k, why := t.inKernel(p.port, &m, res)
		rep.InKernel, rep.Where = &k, why
	}
	if s.json {
		return writeJSON(s.out, rep)
	}
	return rep.write(s.out)
}

// TraceReport is what `midonet trace` prints; -o json gives it as JSON.
type TraceReport struct {
	Packet TracePacket `json:"packet"`
	Steps  []TraceStep `json:"steps"`
	// Result is the simulation's kind: forward, drop, temporary-drop,
	// userspace-only, consumed or arp-needed.
	Result string        `json:"result"`
	Reason string        `json:"reason,omitempty"`
	Egress []TraceEgress `json:"egress"`
	// Generated lists the packets devices answered with (ICMP errors,
	// echo and ARP replies, ARP requests).
	Generated []TraceGenerated `json:"generated,omitempty"`
	// DHCP says what the bridge's DHCP server in the agent did with a DHCP
	// request: offer, ack, nak, ignored (consumed without an answer),
	// no-lease or disabled (not answered, simulated on without a flow),
	// malformed.
	DHCP string `json:"dhcp,omitempty"`
	// ARPNeeded is the next hop a router could not resolve.
	ARPNeeded *TraceARP `json:"arpNeeded,omitempty"`
	// Match lists the header fields the installed flow matches exactly,
	// besides the input port (the megaflow mask).
	Match []string `json:"megaflowMatch"`
	// AssumedActive lists the bound ports on the path (in and out) that
	// no agent reports active: the trace takes them as up.
	AssumedActive      []string `json:"assumedActive,omitempty"`
	FlowTags           int      `json:"flowTags"`
	HardTimeout        string   `json:"hardTimeout"`
	HardTimeoutSeconds float64  `json:"hardTimeoutSeconds"`
	// InKernel says whether the userspace datapath runs the flow in its
	// kernel fast path (with --datapath userspace), and Where why.
	InKernel *bool  `json:"inKernel,omitempty"`
	Where    string `json:"where,omitempty"`
}

// inKernel says whether the userspace datapath's kernel fast path would
// run the flow of this result (package fastpath): untagged IPv4 entering a
// bound port, dropped or sent to one bound port, on this host or through
// the overlay.
func (t *topo) inKernel(port topology.ID, m *sim.Match, res *sim.Result) (bool, string) {
	switch {
	case res.Kind != sim.Forward && res.Kind != sim.Drop && res.Kind != sim.TemporaryDrop:
		return false, "no flow: every such packet goes through the agent"
	case m.EthType != packet.EtherTypeIPv4 || m.VLAN != 0:
		return false, "the agent's receivers: the kernel fast path takes untagged IPv4 only"
	case m.NwFrag != packet.FragNone:
		return false, "the agent's receivers: the kernel fast path takes no fragments"
	}
	in, ok := t.ports[port]
	if !ok || !in.IsExterior() {
		return false, "the agent's receivers: the packet does not enter through a bound port"
	}
	if res.Kind != sim.Forward {
		return true, "the kernel fast path: dropped there, on host " + in.HostID.String()
	}
	if len(res.Egress) != 1 {
		return false, "the agent's receivers: the kernel fast path sends to one port only"
	}
	out, ok := t.ports[res.Egress[0].Port]
	switch {
	case !ok || !out.IsExterior():
		return false, "the agent's receivers: the packet leaves through no bound port"
	case *out.HostID != *in.HostID:
		return true, "the kernel fast path of host " + in.HostID.String() + ", into the overlay, and of host " +
			out.HostID.String() + ", out of it; TCP segments over 1 KiB and GSO super-frames go through the agents"
	}
	return true, "the kernel fast path of host " + in.HostID.String() + " (its agent's receivers never see the packets)"
}

// TracePacket describes a packet by its header fields.
type TracePacket struct {
	Port    string `json:"port,omitempty"`
	EthSrc  string `json:"ethSrc"`
	EthDst  string `json:"ethDst"`
	VLAN    int    `json:"vlan,omitempty"`
	EthType string `json:"ethType"`
	NwSrc   string `json:"nwSrc,omitempty"`
	NwDst   string `json:"nwDst,omitempty"`
	Proto   string `json:"proto,omitempty"`
	TpSrc   int    `json:"tpSrc,omitempty"`
	TpDst   int    `json:"tpDst,omitempty"`
	TTL     int    `json:"ttl,omitempty"`
}

// TraceStep is one event of the simulation.
type TraceStep struct {
	DeviceType string `json:"deviceType"`
	Device     string `json:"device"`
	// Name says which object Device is: a device's or chain's name, a
	// rule's chain and position, a port's device and interface.
	Name   string `json:"name,omitempty"`
	Event  string `json:"event"`
	Detail string `json:"detail,omitempty"`
}

// TraceEgress is one port the packet leaves by and the header fields set
// before it does.
type TraceEgress struct {
	Port      string            `json:"port"`
	Name      string            `json:"name,omitempty"`
	Host      string            `json:"host,omitempty"`
	Interface string            `json:"interface,omitempty"`
	Set       map[string]string `json:"set"`
	setOrder  []string
}

// TraceGenerated is a packet a device emitted.
type TraceGenerated struct {
	Port   string      `json:"port"`
	Name   string      `json:"name,omitempty"`
	Packet TracePacket `json:"packet"`
}

// TraceARP names the next hop the agent would ARP for.
type TraceARP struct {
	Router string `json:"router"`
	Port   string `json:"port"`
	IP     string `json:"ip"`
}

// report turns a traced result into a TraceReport. It copies everything
// out of res, which belongs to the simulator.
func (t *topo) report(port topology.ID, m *sim.Match, res *sim.Result) *TraceReport {
	rep := &TraceReport{
		Packet: describe(m), Steps: make([]TraceStep, 0, len(res.Trace)), Result: res.Kind.String(),
		Egress: []TraceEgress{}, FlowTags: len(res.Tags),
		HardTimeout: res.HardTimeout.String(), HardTimeoutSeconds: res.HardTimeout.Seconds(),
	}
	rep.Packet.Port = port.String()
	if res.Kind == sim.Drop || res.Kind == sim.TemporaryDrop {
		rep.Reason = res.Reason.String()
	}
	for _, e := range res.Trace {
		typ := e.DeviceType
		if typ == "device" {
			// NAT, conntrack and drops name the device whose chains ran.
			if k, ok := t.kinds[e.Device]; ok {
				typ = k
			}
		}
		rep.Steps = append(rep.Steps, TraceStep{DeviceType: typ, Device: e.Device.String(), Name: t.name(e.Device),
			Event: e.Event, Detail: e.Detail})
	}
	for _, eg := range res.Egress {
		out := TraceEgress{Port: eg.Port.String(), Name: t.name(eg.Port), Set: map[string]string{}}
		if p, ok := t.ports[eg.Port]; ok && p.IsExterior() {
			out.Host, out.Interface = p.HostID.String(), *p.InterfaceName
		}
		for bit := sim.FieldEthSrc; bit <= sim.FieldICMPData && bit != 0; bit <<= 1 {
			if eg.Set&bit != 0 {
				k := bit.String()
				out.Set[k] = setValue(bit, &eg.Values)
				out.setOrder = append(out.setOrder, k)
			}
		}
		rep.Egress = append(rep.Egress, out)
	}
	for _, g := range res.Generated {
		gm, _ := sim.MatchFromFrame(g.Frame)
		rep.Generated = append(rep.Generated, TraceGenerated{Port: g.Port.String(), Name: t.name(g.Port), Packet: describe(&gm)})
	}
	if res.DHCP != sim.DHCPNone {
		rep.DHCP = res.DHCP.String()
	}
	if res.Kind == sim.ARPNeeded {
		rep.ARPNeeded = &TraceARP{Router: res.ARP.Router.String(), Port: res.ARP.Port.String(), IP: res.ARP.IP.String()}
	}
	for _, id := range append([]topology.ID{port}, egressPorts(res)...) {
		if p, ok := t.ports[id]; ok && p.IsExterior() && !p.Active && !slices.Contains(rep.AssumedActive, id.String()) {
			rep.AssumedActive = append(rep.AssumedActive, id.String())
		}
	}
	rep.Match = []string{}
	if res.Seen != 0 {
		rep.Match = strings.Split(res.Seen.String(), ",")
	}
	return rep
}

func egressPorts(res *sim.Result) []topology.ID {
	ids := make([]topology.ID, len(res.Egress))
	for i, e := range res.Egress {
		ids[i] = e.Port
	}
	return ids
}

// name says which object id is, for people.
func (t *topo) name(id topology.ID) string {
	switch t.kinds[id] {
	case "bridge", "router", "chain":
		return t.devices[id]
	case "rule":
		r := t.rules[id]
		return "chain " + quoteName(t.devices[r.chain], r.chain) + " rule #" + strconv.Itoa(r.position)
	case "port":
		p := t.ports[id]
		s := t.kinds[p.DeviceID] + " " + quoteName(t.devices[p.DeviceID], p.DeviceID)
		if pfx, ok := routerPortPrefix(p); ok && p.IsRouterPort() {
			s += " " + pfx.String()
		}
		if p.IsExterior() {
			s += " if " + *p.InterfaceName
		}
		if p.PeerID != nil {
			if peer, ok := t.ports[*p.PeerID]; ok {
				s += " → " + t.kinds[peer.DeviceID] + " " + quoteName(t.devices[peer.DeviceID], peer.DeviceID)
			}
		}
		return s
	}
	return ""
}

// quoteName is an object's name, or its id when it has none.
func quoteName(name string, id topology.ID) string {
	if name == "" {
		return id.String()
	}
	return name
}

func macString(m [6]byte) string { return topology.FormatMAC(m) }

// describe renders a match's header fields.
func describe(m *sim.Match) TracePacket {
	p := TracePacket{EthSrc: macString(m.EthSrc), EthDst: macString(m.EthDst), EthType: fmt.Sprintf("0x%04x", m.EthType)}
	if m.VLAN != 0 {
		p.VLAN = int(m.VLAN & 0x0fff)
	}
	switch m.EthType {
	case packet.EtherTypeIPv4:
		p.EthType = "ipv4"
		p.NwSrc, p.NwDst = netip.AddrFrom4(m.NwSrc).String(), netip.AddrFrom4(m.NwDst).String()
		p.Proto, p.TTL = ipProtoName(m.NwProto), int(m.NwTTL)
		switch m.NwProto {
		case packet.IPProtoTCP, packet.IPProtoUDP, packet.IPProtoICMP:
			p.TpSrc, p.TpDst = int(m.TpSrc), int(m.TpDst)
		}
	case packet.EtherTypeARP:
		p.EthType = "arp"
		p.NwSrc, p.NwDst = netip.AddrFrom4(m.NwSrc).String(), netip.AddrFrom4(m.NwDst).String()
		p.Proto = "request"
		if m.NwProto == 2 {
			p.Proto = "reply"
		}
	}
	return p
}

func ipProtoName(p uint8) string {
	switch p {
	case packet.IPProtoTCP:
		return "tcp"
	case packet.IPProtoUDP:
		return "udp"
	case packet.IPProtoICMP:
		return "icmp"
	}
	return strconv.Itoa(int(p))
}

// setValue renders the value a set-action gives field f.
func setValue(f sim.Field, v *sim.Match) string {
	switch f {
	case sim.FieldEthSrc:
		return macString(v.EthSrc)
	case sim.FieldEthDst:
		return macString(v.EthDst)
	case sim.FieldVLAN:
		if v.VLAN == 0 {
			return "pop"
		}
		return strconv.Itoa(int(v.VLAN & 0x0fff))
	case sim.FieldEthType:
		return fmt.Sprintf("0x%04x", v.EthType)
	case sim.FieldNwSrc:
		return netip.AddrFrom4(v.NwSrc).String()
	case sim.FieldNwDst:
		return netip.AddrFrom4(v.NwDst).String()
	case sim.FieldNwProto:
		return ipProtoName(v.NwProto)
	case sim.FieldNwTOS:
		return strconv.Itoa(int(v.NwTOS))
	case sim.FieldNwTTL:
		return strconv.Itoa(int(v.NwTTL))
	case sim.FieldNwFrag:
		return strconv.Itoa(int(v.NwFrag))
	case sim.FieldTpSrc:
		return strconv.Itoa(int(v.TpSrc))
	case sim.FieldTpDst:
		return strconv.Itoa(int(v.TpDst))
	case sim.FieldARPSHA:
		return macString(v.ARPSHA)
	case sim.FieldARPTHA:
		return macString(v.ARPTHA)
	case sim.FieldICMPID:
		return strconv.Itoa(int(v.ICMPID))
	case sim.FieldICMPData:
		d := &v.ICMPData
		return fmt.Sprintf("quoted %s:%d → %s:%d", netip.AddrFrom4(d.Src), d.SrcPort, netip.AddrFrom4(d.Dst), d.DstPort)
	}
	return ""
}

// summary renders a packet on one line.
func (p TracePacket) summary() string {
	var b strings.Builder
	switch p.EthType {
	case "ipv4":
		switch p.Proto {
		case "tcp", "udp":
			fmt.Fprintf(&b, "%s %s:%d → %s:%d", p.Proto, p.NwSrc, p.TpSrc, p.NwDst, p.TpDst)
		case "icmp":
			fmt.Fprintf(&b, "icmp type %d code %d %s → %s", p.TpSrc, p.TpDst, p.NwSrc, p.NwDst)
		default:
			fmt.Fprintf(&b, "proto %s %s → %s", p.Proto, p.NwSrc, p.NwDst)
		}
		fmt.Fprintf(&b, " ttl %d", p.TTL)
	case "arp":
		if p.Proto == "request" {
			fmt.Fprintf(&b, "arp who-has %s tell %s", p.NwDst, p.NwSrc)
		} else {
			fmt.Fprintf(&b, "arp reply %s is-at %s to %s", p.NwSrc, p.EthSrc, p.NwDst)
		}
	default:
		fmt.Fprintf(&b, "ethertype %s", p.EthType)
	}
	fmt.Fprintf(&b, ", %s → %s", p.EthSrc, p.EthDst)
	if p.VLAN != 0 {
		fmt.Fprintf(&b, " vlan %d", p.VLAN)
	}
	return b.String()
}

// write prints the report for people.
func (r *TraceReport) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "packet\t%s\n", r.Packet.summary())
	fmt.Fprintf(tw, "in port\t%s\n", r.Packet.Port)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tTYPE\tID\tNAME\tEVENT\tDETAIL")
	for i, s := range r.Steps {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, s.DeviceType, s.Device, dash(s.Name), s.Event, dash(s.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	result := r.Result
	if r.Reason != "" {
		result += " (" + r.Reason + ")"
	}
	fmt.Fprintf(tw, "result\t%s\n", result)
	for _, e := range r.Egress {
		line := "port " + e.Port
		if e.Name != "" {
			line += " (" + e.Name + ")"
		}
		if e.Host != "" {
			line += " on host " + e.Host
		}
		sets := make([]string, len(e.setOrder))
		for i, k := range e.setOrder {
			sets[i] = k + "=" + e.Set[k]
		}
		if len(sets) > 0 {
			line += "; set " + strings.Join(sets, " ")
		}
		fmt.Fprintf(tw, "egress\t%s\n", line)
	}
	for _, g := range r.Generated {
		fmt.Fprintf(tw, "generated\t%s out of port %s (%s)\n", g.Packet.summary(), g.Port, dash(g.Name))
	}
	if a := r.ARPNeeded; a != nil {
		fmt.Fprintf(tw, "arp needed\trouter %s has no MAC for %s on port %s: the agent would ARP for it and simulate again\n", a.Router, a.IP, a.Port)
	}
	if len(r.AssumedActive) > 0 {
		fmt.Fprintf(tw, "assumed active\t%s (bound, but no agent reports them up)\n", strings.Join(r.AssumedActive, " "))
	}
	switch r.DHCP {
	case "":
	case sim.DHCPOffer.String(), sim.DHCPAck.String(), sim.DHCPNak.String():
		fmt.Fprintf(tw, "dhcp\tanswered by the agent on the ingress host: %s\n", strings.ToUpper(r.DHCP))
	case sim.DHCPIgnored.String():
		fmt.Fprintf(tw, "dhcp\tconsumed by the agent, no answer needed\n")
	case sim.DHCPMalformed.String():
		fmt.Fprintf(tw, "dhcp\tmalformed: dropped and counted by the agent\n")
	default:
		fmt.Fprintf(tw, "dhcp\tnot answered (%s): the request goes on through the bridge\n", r.DHCP)
	}
	if r.Result == sim.Consumed.String() {
		fmt.Fprintf(tw, "flow\tnone: the agent answers every such packet itself\n")
		return tw.Flush()
	}
	if r.Result == sim.UserspaceOnly.String() {
		fmt.Fprintf(tw, "flow\tnone: every such packet is simulated, as the result depends on %s, which the datapath's flows cannot match\n",
			strings.Join(r.Match, " "))
		return tw.Flush()
	}
	fmt.Fprintf(tw, "flow matches\tin_port %s\n", strings.Join(r.Match, " "))
	fmt.Fprintf(tw, "flow tags\t%d\n", r.FlowTags)
	fmt.Fprintf(tw, "hard timeout\t%s\n", r.HardTimeout)
	if r.InKernel != nil {
		fmt.Fprintf(tw, "runs in\t%s\n", r.Where)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
