package trace

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// Report is what a trace found. `midonet trace` prints it (Write);
// `midonet trace -o json` and `POST /midonet-api/simulate` give it as JSON.
type Report struct {
	Packet Packet `json:"packet"`
	Steps  []Step `json:"steps"`
	// Result is the simulation's kind: forward, drop, temporary-drop,
	// userspace-only, consumed or arp-needed.
	Result string   `json:"result"`
	Reason string   `json:"reason,omitempty"`
	Egress []Egress `json:"egress"`
	// Generated lists the packets devices answered with (ICMP errors,
	// echo and ARP replies, ARP requests).
	Generated []Generated `json:"generated,omitempty"`
	// DHCP says what the bridge's DHCP server in the agent did with a DHCP
	// request: offer, ack, nak, ignored (consumed without an answer),
	// no-lease or disabled (not answered, simulated on without a flow),
	// malformed.
	DHCP string `json:"dhcp,omitempty"`
	// ARPNeeded is the next hop a router could not resolve.
	ARPNeeded *UnresolvedHop `json:"arpNeeded,omitempty"`
	// Match lists the header fields the installed flow matches exactly,
	// besides the input port (the megaflow mask).
	Match []string `json:"megaflowMatch"`
	// AssumedActive lists the bound ports on the path (in and out) that
	// no agent reports active: the trace takes them as up.
	AssumedActive      []string `json:"assumedActive,omitempty"`
	FlowTags           int      `json:"flowTags"`
	HardTimeout        string   `json:"hardTimeout"`
	HardTimeoutSeconds float64  `json:"hardTimeoutSeconds"`
	// InKernel says, when the agents run the userspace datapath, whether
	// its kernel fast path runs the flow, and Where why.
	InKernel *bool  `json:"inKernel,omitempty"`
	Where    string `json:"where,omitempty"`
}

// inKernel says whether the userspace datapath's kernel fast path would
// run the flow of this result (package fastpath): untagged IPv4 entering a
// bound port, dropped or sent to one bound port, on this host or through
// the overlay.
func (t *Topology) inKernel(port topology.ID, m *sim.Match, res *sim.Result) (bool, string) {
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

// Packet describes a packet by its header fields.
type Packet struct {
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

// Step is one event of the simulation.
type Step struct {
	DeviceType string `json:"deviceType"`
	Device     string `json:"device"`
	// Name says which object Device is: a device's or chain's name, a
	// rule's chain and position, a port's device and interface.
	Name   string `json:"name,omitempty"`
	Event  string `json:"event"`
	Detail string `json:"detail,omitempty"`
}

// Egress is one port the packet leaves by and the header fields set
// before it does.
type Egress struct {
	Port      string            `json:"port"`
	Name      string            `json:"name,omitempty"`
	Host      string            `json:"host,omitempty"`
	Interface string            `json:"interface,omitempty"`
	Set       map[string]string `json:"set"`
	setOrder  []string
}

// Generated is a packet a device emitted.
type Generated struct {
	Port   string `json:"port"`
	Name   string `json:"name,omitempty"`
	Packet Packet `json:"packet"`
}

// UnresolvedHop names the next hop the agent would ARP for.
type UnresolvedHop struct {
	Router string `json:"router"`
	Port   string `json:"port"`
	IP     string `json:"ip"`
}

// report turns a traced result into a Report. It copies everything
// out of res, which belongs to the simulator.
func (t *Topology) report(port topology.ID, m *sim.Match, res *sim.Result) *Report {
	rep := &Report{
		Packet: describe(m), Steps: make([]Step, 0, len(res.Trace)), Result: res.Kind.String(),
		Egress: []Egress{}, FlowTags: len(res.Tags),
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
		rep.Steps = append(rep.Steps, Step{DeviceType: typ, Device: e.Device.String(), Name: t.name(e.Device),
			Event: e.Event, Detail: e.Detail})
	}
	for _, eg := range res.Egress {
		out := Egress{Port: eg.Port.String(), Name: t.name(eg.Port), Set: map[string]string{}}
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
		rep.Generated = append(rep.Generated, Generated{Port: g.Port.String(), Name: t.name(g.Port), Packet: describe(&gm)})
	}
	if res.DHCP != sim.DHCPNone {
		rep.DHCP = res.DHCP.String()
	}
	if res.Kind == sim.ARPNeeded {
		rep.ARPNeeded = &UnresolvedHop{Router: res.ARP.Router.String(), Port: res.ARP.Port.String(), IP: res.ARP.IP.String()}
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
func (t *Topology) name(id topology.ID) string {
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
func describe(m *sim.Match) Packet {
	p := Packet{EthSrc: macString(m.EthSrc), EthDst: macString(m.EthDst), EthType: fmt.Sprintf("0x%04x", m.EthType)}
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
func (p Packet) summary() string {
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

// Write prints the report for people, as `midonet trace` does.
func (r *Report) Write(w io.Writer) error {
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
	if r.Result == sim.Consumed.String() && r.DHCP != "" {
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
