package trace

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/midonet/midonet/internal/dhcp"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

// DefaultSrcPort is the source port of a TCP or UDP probe without one: the
// first port of the dynamic range.
const DefaultSrcPort = 49152

// Request describes the packet to trace, as the console's form and
// `POST /midonet-api/simulate` send it and as `midonet trace` builds it
// from its flags. A nil pointer or an empty string is a field left out,
// which takes the default documented on the field.
type Request struct {
	// PortID is the port the packet enters by (required).
	PortID string `json:"portId"`
	// SrcMAC defaults to the MAC the port's bridge has for SrcIP in its ARP
	// table, else a random locally administered MAC.
	SrcMAC string `json:"srcMac,omitempty"`
	// DstMAC defaults, on a router port, to the port's MAC; on a bridge
	// port, to the MAC of the router port on the bridge whose address is
	// DstIP or whose subnet holds SrcIP but not DstIP (the gateway), else
	// the bridge's ARP entry for DstIP, else broadcast. With ARP: broadcast.
	DstMAC string `json:"dstMac,omitempty"`
	// VLAN tags the frame with an 802.1Q id; 0 or nil is untagged.
	VLAN  *int   `json:"vlan,omitempty"`
	SrcIP string `json:"srcIp"`
	DstIP string `json:"dstIp"`
	// Proto is tcp, udp, icmp or a protocol number; default tcp when a
	// port is given, else icmp.
	Proto string `json:"proto,omitempty"`
	// SrcPort defaults to DefaultSrcPort; DstPort is required for TCP and UDP.
	SrcPort *int `json:"srcPort,omitempty"`
	DstPort *int `json:"dstPort,omitempty"`
	// ICMPType defaults to 8 (echo request), ICMPCode to 0.
	ICMPType *int `json:"icmpType,omitempty"`
	ICMPCode *int `json:"icmpCode,omitempty"`
	// TTL defaults to 64.
	TTL *int `json:"ttl,omitempty"`
	// ARP sends an ARP request from SrcIP for DstIP instead of an IPv4 packet.
	ARP bool `json:"arp,omitempty"`
	// Datapath is the agents' datapath, whose flows the report shows:
	// userspace (the default) or ovs, whose flows cannot match ICMP echo
	// identifiers.
	Datapath string `json:"datapath,omitempty"`
	// DHCP sends a DHCP request of this type (discover, request, inform,
	// release or decline) from SrcMAC (required): UDP 68 to 67, from SrcIP
	// (default 0.0.0.0; the client's address when renewing or informing)
	// to DstIP (default 255.255.255.255), instead of the packet above.
	DHCP string `json:"dhcp,omitempty"`
	// RequestedIP is the address a DHCP request asks for (option 50).
	RequestedIP string `json:"requestedIp,omitempty"`
}

// FieldError is a field of a Request that is missing, malformed or does
// not apply. Its message names fields as {field} (the JSON names), which
// Render turns into the caller's words: the CLI's flags or the API's fields.
type FieldError struct {
	// Field is the JSON name of the field at fault.
	Field string
	msg   string
	err   error // what it wraps, if anything
}

// Unwrap returns the error the field error stands for (ErrNoSuchPort), if any.
func (e *FieldError) Unwrap() error { return e.err }

var fieldRef = regexp.MustCompile(`\{([a-zA-Z]+)\}`)

// Render returns the message with each {field} replaced by name(field).
func (e *FieldError) Render(name func(field string) string) string {
	return fieldRef.ReplaceAllStringFunc(e.msg, func(m string) string { return name(m[1 : len(m)-1]) })
}

// Error renders the message with the JSON field names.
func (e *FieldError) Error() string { return e.Render(func(f string) string { return f }) }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, msg: fmt.Sprintf(format, args...)}
}

// probe is the packet to simulate, fully resolved but for the MACs left
// out, which defaultMACs chooses from the topology.
type probe struct {
	port             topology.ID
	srcMAC, dstMAC   [6]byte
	srcSet, dstSet   bool // the request gave the MAC
	vlan             uint16
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
	userspace   bool
}

// Check reports what is wrong with the request, as a *FieldError; it
// needs no topology. Run checks the request too.
func (r *Request) Check() error {
	_, err := r.probe()
	return err
}

// probe checks the request; it needs no topology.
func (r *Request) probe() (*probe, error) {
	p := &probe{ttl: packet.DefaultTTL, icmpType: packet.ICMPEchoRequest}
	if r.PortID == "" {
		return nil, fieldErr("portId", "{portId} is required: the id of the port the packet enters by")
	}
	id, err := topology.ParseID(r.PortID)
	if err != nil {
		return nil, fieldErr("portId", "{portId} %q: not a port id (a UUID)", r.PortID)
	}
	p.port = id
	switch r.Datapath {
	case "", "userspace":
		p.matchICMPID, p.userspace = true, true
	case "ovs":
	default:
		return nil, fieldErr("datapath", "{datapath} %q: want userspace or ovs, the agents' datapath", r.Datapath)
	}
	if r.DHCP != "" {
		if err := r.dhcpProbe(p); err != nil {
			return nil, err
		}
	}
	if p.dhcp == 0 || r.SrcIP != "" {
		if p.src, err = parseIPv4("srcIp", r.SrcIP); err != nil {
			return nil, err
		}
	}
	if p.dhcp == 0 || r.DstIP != "" {
		if p.dst, err = parseIPv4("dstIp", r.DstIP); err != nil {
			return nil, err
		}
	}
	for _, m := range []struct {
		field, text string
		dst         *[6]byte
		set         *bool
	}{{"srcMac", r.SrcMAC, &p.srcMAC, &p.srcSet}, {"dstMac", r.DstMAC, &p.dstMAC, &p.dstSet}} {
		if m.text == "" {
			continue
		}
		mac, ok := topology.ParseMAC(m.text)
		if !ok {
			return nil, fieldErr(m.field, "{%s} %q: not a MAC address such as 02:00:00:00:00:01", m.field, m.text)
		}
		*m.dst, *m.set = mac, true
	}
	if r.VLAN != nil {
		if *r.VLAN < 0 || *r.VLAN > 4095 {
			return nil, fieldErr("vlan", "{vlan} %d: want 0 (untagged) to 4095", *r.VLAN)
		}
		p.vlan = uint16(*r.VLAN)
	}
	if r.TTL != nil {
		if *r.TTL < 0 || *r.TTL > 255 {
			return nil, fieldErr("ttl", "{ttl} %d: want 0 to 255", *r.TTL)
		}
		p.ttl = uint8(*r.TTL)
	}
	p.arp = r.ARP
	if p.dhcp != 0 {
		return p, nil
	}
	if r.RequestedIP != "" {
		return nil, fieldErr("requestedIp", "{requestedIp} applies to {dhcp} only")
	}
	if p.arp {
		for _, f := range []struct {
			name string
			set  bool
		}{{"proto", r.Proto != ""}, {"srcPort", r.SrcPort != nil}, {"dstPort", r.DstPort != nil},
			{"icmpType", r.ICMPType != nil}, {"icmpCode", r.ICMPCode != nil}, {"ttl", r.TTL != nil}} {
			if f.set {
				return nil, fieldErr(f.name, "{%s} does not apply to {arp}", f.name)
			}
		}
		return p, nil
	}
	return p, r.transport(p)
}

// transport checks the protocol and its ports or ICMP fields.
func (r *Request) transport(p *probe) error {
	proto := strings.ToLower(r.Proto)
	portsGiven := r.SrcPort != nil || r.DstPort != nil
	if proto == "" {
		proto = "icmp"
		if portsGiven {
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
			return fieldErr("proto", "{proto} %q: want tcp, udp, icmp or a protocol number 0-255", r.Proto)
		}
		p.proto = uint8(n)
	}
	icmpGiven := r.ICMPType != nil || r.ICMPCode != nil
	switch p.proto {
	case packet.IPProtoTCP, packet.IPProtoUDP:
		if r.DstPort == nil {
			return fieldErr("dstPort", "{dstPort} is required with {proto} %s", proto)
		}
		src := DefaultSrcPort
		if r.SrcPort != nil {
			src = *r.SrcPort
		}
		for _, x := range []struct {
			field string
			v     int
			dst   *uint16
		}{{"srcPort", src, &p.srcPort}, {"dstPort", *r.DstPort, &p.dstPort}} {
			if x.v < 0 || x.v > 65535 {
				return fieldErr(x.field, "{%s} %d: want 0 to 65535", x.field, x.v)
			}
			*x.dst = uint16(x.v)
		}
		if icmpGiven {
			return fieldErr("icmpType", "{icmpType} and {icmpCode} apply to {proto} icmp only")
		}
	case packet.IPProtoICMP:
		if r.ICMPType != nil {
			if *r.ICMPType < 0 || *r.ICMPType > 255 {
				return fieldErr("icmpType", "{icmpType} %d: want 0 to 255", *r.ICMPType)
			}
			p.icmpType = uint8(*r.ICMPType)
		}
		if r.ICMPCode != nil {
			if *r.ICMPCode < 0 || *r.ICMPCode > 255 {
				return fieldErr("icmpCode", "{icmpCode} %d: want 0 to 255", *r.ICMPCode)
			}
			p.icmpCode = uint8(*r.ICMPCode)
		}
		if portsGiven {
			return fieldErr("srcPort", "{srcPort} and {dstPort} apply to {proto} tcp and udp only")
		}
	default:
		if portsGiven || icmpGiven {
			return fieldErr("proto", "ports and ICMP fields do not apply to {proto} %d", p.proto)
		}
	}
	return nil
}

// dhcpProbe checks the fields of a DHCP request probe.
func (r *Request) dhcpProbe(p *probe) error {
	types := map[string]dhcp.MessageType{"discover": dhcp.Discover, "request": dhcp.Request, "inform": dhcp.Inform,
		"release": dhcp.Release, "decline": dhcp.Decline}
	t, ok := types[strings.ToLower(r.DHCP)]
	if !ok {
		return fieldErr("dhcp", "{dhcp} %q: want discover, request, inform, release or decline", r.DHCP)
	}
	p.dhcp = t
	if r.SrcMAC == "" {
		return fieldErr("srcMac", "{dhcp} needs {srcMac}: the client's MAC, which its DHCP host entry names")
	}
	if r.ARP {
		return fieldErr("arp", "{dhcp} and {arp} are two different packets: give one")
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"proto", r.Proto != ""}, {"srcPort", r.SrcPort != nil}, {"dstPort", r.DstPort != nil},
		{"icmpType", r.ICMPType != nil}, {"icmpCode", r.ICMPCode != nil}, {"vlan", r.VLAN != nil && *r.VLAN != 0}} {
		if f.set {
			return fieldErr(f.name, "{%s} does not apply to {dhcp}", f.name)
		}
	}
	p.src, p.dst = netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255})
	if r.RequestedIP != "" {
		a, err := parseIPv4("requestedIp", r.RequestedIP)
		if err != nil {
			return err
		}
		p.requestedIP = a
	}
	return nil
}

func parseIPv4(field, text string) (netip.Addr, error) {
	if text == "" {
		return netip.Addr{}, fieldErr(field, "{%s} is required", field)
	}
	a, err := netip.ParseAddr(text)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fieldErr(field, "{%s} %q: want an IPv4 address (IPv6 is not simulated)", field, text)
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
