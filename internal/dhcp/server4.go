package dhcp

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

// ServerMAC is the Ethernet source of every reply, MidoNet's fixed DHCP
// server MAC. Bridges answer ARP for a subnet's server address with it, so
// that a client renewing by unicast reaches the agent.
var ServerMAC = [6]byte{0x02, 0xa8, 0x9c, 0xde, 0x39, 0x27}

// LeaseTime is the lease every answer grants, in seconds (MidoNet's one
// day); a host's extra option 51 overrides it.
const LeaseTime = 86400

// OverlayOverhead is what the VXLAN overlay adds to a VM's frame on the
// underlay: outer Ethernet, IPv4, UDP and VXLAN headers.
const OverlayOverhead = 50

// DefaultUnderlayMTU is the underlay MTU assumed until agents publish theirs.
const DefaultUnderlayMTU = 1500

// Server4 answers DHCPv4 for one bridge: its subnets, each host's options
// encoded once. It is immutable, safe for concurrent use.
type Server4 struct {
	subnets []*subnet4 // by subnet key: the first holding a MAC answers for it
}

type subnet4 struct {
	key      string // 10.0.0.0_24, as in the API
	enabled  bool
	serverID [4]byte
	hosts    map[[6]byte]*host4
}

// host4 is a static lease with its options ready to copy.
type host4 struct {
	subnet *subnet4
	addr   [4]byte
	// opts are the encoded options of an OFFER or ACK after the message
	// type and server identifier; informOpts the same without the lease
	// times, for the ACK of an INFORM.
	opts, informOpts []byte
}

// Defaults are what answers depend on besides the subnet.
type Defaults struct {
	// MTU is offered when a subnet sets no interfaceMTU: the underlay MTU
	// minus the overlay's overhead. Zero means DefaultUnderlayMTU minus
	// OverlayOverhead.
	MTU int
}

// NewServer4 compiles a bridge's DHCP subnets. Hosts without a valid MAC or
// address, and extra options that do not parse (the API refuses both, so
// only old data has them), are left out and reported in problems.
func NewServer4(subnets []topology.DHCPSubnet, d Defaults) (s *Server4, problems []error) {
	if d.MTU <= 0 {
		d.MTU = DefaultUnderlayMTU - OverlayOverhead
	}
	s = &Server4{}
	for i := range subnets {
		sub, p := compileSubnet4(&subnets[i], d)
		problems = append(problems, p...)
		if sub != nil {
			s.subnets = append(s.subnets, sub)
		}
	}
	slices.SortFunc(s.subnets, func(a, b *subnet4) int { return cmp.Compare(a.key, b.key) })
	return s, problems
}

func compileSubnet4(d *topology.DHCPSubnet, defaults Defaults) (*subnet4, []error) {
	var problems []error
	prefix, ok := topology.Prefix4(deref(d.SubnetPrefix), d.SubnetLength)
	if !ok {
		return nil, []error{fmt.Errorf("DHCP subnet %s: not an IPv4 prefix", d.SubnetKey())}
	}
	sub := &subnet4{key: d.SubnetKey(), enabled: d.Enabled, hosts: map[[6]byte]*host4{}}
	gw, hasGW := topology.ParseIPv4(deref(d.DefaultGateway))
	hasGW = hasGW && gw.IsValid() && !gw.IsUnspecified()
	switch server, ok := topology.ParseIPv4(deref(d.ServerAddr)); {
	case ok && !server.IsUnspecified():
		sub.serverID = server.As4()
	case hasGW:
		sub.serverID = gw.As4()
	default:
		// No server address and no gateway: the subnet's first address.
		sub.serverID = prefix.Masked().Addr().Next().As4()
	}
	mtu := defaults.MTU
	if d.InterfaceMTU != nil && *d.InterfaceMTU > 0 {
		mtu = *d.InterfaceMTU
	}

	// The options every host of the subnet gets, by code.
	common := map[uint8][]byte{}
	bits := prefix.Bits()
	mask := uint32(0)
	if bits > 0 {
		mask = ^uint32(0) << (32 - bits)
	}
	common[OptSubnetMask] = binary.BigEndian.AppendUint32(nil, mask)
	common[OptLeaseTime] = binary.BigEndian.AppendUint32(nil, LeaseTime)
	common[OptInterfaceMTU] = binary.BigEndian.AppendUint16(nil, uint16(min(mtu, 0xffff)))
	if hasGW {
		a := gw.As4()
		common[OptRouter] = a[:]
	}
	var dns []byte
	for _, s := range d.DNSServerAddrs {
		if a, ok := topology.ParseIPv4(s); ok {
			dns = append(dns, a.AsSlice()...)
		}
	}
	if len(dns) > 0 {
		common[OptDNS] = dns
	}
	var routes []byte
	for _, r := range d.Opt121Routes {
		p, ok := topology.Prefix4(deref(r.DestinationPrefix), r.DestinationLength)
		via, ok2 := topology.ParseIPv4(deref(r.GatewayAddr))
		if !ok || !ok2 {
			problems = append(problems, fmt.Errorf("DHCP subnet %s: opt121 route %s/%d via %s is not valid",
				sub.key, deref(r.DestinationPrefix), r.DestinationLength, deref(r.GatewayAddr)))
			continue
		}
		routes = appendClasslessRoute(routes, p, via.As4())
	}
	if len(routes) > 0 {
		// Clients that honour option 121 ignore the router option (RFC
		// 3442): the default route goes in it too.
		if hasGW {
			routes = appendClasslessRoute(routes, netip.PrefixFrom(netip.IPv4Unspecified(), 0), gw.As4())
		}
		common[OptClasslessRoute] = routes
	}

	for i := range d.Hosts {
		h := &d.Hosts[i]
		mac, ok := topology.ParseMAC(deref(h.MacAddr))
		addr, ok2 := topology.ParseIPv4(deref(h.IPAddr))
		if !ok || !ok2 {
			problems = append(problems, fmt.Errorf("DHCP subnet %s: host %q: MAC or address not valid",
				sub.key, deref(h.MacAddr)))
			continue
		}
		if _, dup := sub.hosts[mac]; dup {
			continue
		}
		opts := make(map[uint8][]byte, len(common)+4)
		for c, v := range common {
			opts[c] = v
		}
		a := addr.As4()
		bcast := binary.BigEndian.Uint32(a[:]) | ^mask
		opts[OptBroadcast] = binary.BigEndian.AppendUint32(nil, bcast)
		if name, domain, ok := splitHostName(deref(h.Name)); ok {
			opts[OptHostName] = []byte(name)
			if domain != "" {
				opts[OptDomainName] = []byte(domain)
			}
		}
		for _, o := range h.ExtraDHCPOpts {
			code, v, err := ParseOption4(o.OptName, o.OptValue)
			if err != nil {
				problems = append(problems, fmt.Errorf("DHCP subnet %s: host %s: %w", sub.key, topology.FormatMAC(mac), err))
				continue
			}
			opts[code] = v // extra options override the subnet's
		}
		ho := &host4{subnet: sub, addr: a}
		ho.opts = encodeOptions(opts, nil)
		ho.informOpts = encodeOptions(opts, map[uint8]bool{OptLeaseTime: true, 58: true, 59: true})
		sub.hosts[mac] = ho
	}
	return sub, problems
}

// splitHostName splits a host's name into a host name (option 12) and a
// domain (option 15) when it is a valid DNS name: "vm1.example.org" gives
// "vm1" and "example.org". Names that are not host names are not sent.
func splitHostName(n string) (host, domain string, ok bool) {
	n = strings.TrimSuffix(strings.TrimSpace(n), ".")
	if n == "" || len(n) > 253 {
		return "", "", false
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", "", false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return "", "", false
			}
		}
	}
	host, domain, _ = strings.Cut(n, ".")
	return host, domain, true
}

// encodeOptions encodes opts in code order, leaving out skip, splitting
// values longer than 255 bytes into consecutive options (RFC 3396).
func encodeOptions(opts map[uint8][]byte, skip map[uint8]bool) []byte {
	codes := make([]int, 0, len(opts))
	for c := range opts {
		if !skip[c] {
			codes = append(codes, int(c))
		}
	}
	slices.Sort(codes)
	var b []byte
	for _, c := range codes {
		b = appendOption(b, uint8(c), opts[uint8(c)])
	}
	return b
}

func appendOption(b []byte, code uint8, v []byte) []byte {
	for {
		n := min(len(v), maxOptionValue)
		b = append(b, code, byte(n))
		b = append(b, v[:n]...)
		v = v[n:]
		if len(v) == 0 {
			return b
		}
	}
}

// Outcome is what the server did with a request.
type Outcome uint8

const (
	// NoLease: no subnet of the bridge has a host entry for the client's
	// MAC. The request is the virtual network's to forward, like any
	// packet (another DHCP server on the bridge may answer it).
	NoLease Outcome = iota
	// Disabled: the subnet holding the client's entry is disabled; the
	// request is forwarded like NoLease.
	Disabled
	// Answered: the reply is in the returned frame.
	Answered
	// Ignored: the request needs no answer (a RELEASE or DECLINE, or a
	// REQUEST for another server's offer); it is consumed.
	Ignored
)

var outcomeNames = [...]string{"no-lease", "disabled", "answered", "ignored"}

// String returns the outcome's name.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "outcome(?)"
}

// Answer4 describes what AppendAnswer did.
type Answer4 struct {
	Outcome Outcome
	Reply   MessageType // OFFER, ACK or NAK when Answered
	Addr    [4]byte     // the client's address in its entry, unless NoLease
	Subnet  string      // the subnet's key (10.0.0.0_24), unless NoLease
}

// AppendAnswer answers req, a request that arrived in a frame from ethSrc,
// appending the reply frame (Ethernet, IPv4, UDP, DHCP) to dst when it
// answers. The client is looked up by ethSrc, or by the request's chaddr
// when it came through a relay (giaddr set). It does not allocate when dst
// has room for the reply (600 bytes are enough unless extra options are
// large).
func (s *Server4) AppendAnswer(dst []byte, ethSrc [6]byte, req *Request4) ([]byte, Answer4) {
	key := ethSrc
	relayed := req.GIAddr != [4]byte{}
	if relayed {
		key = req.CHAddr
	}
	var h *host4
	for _, sub := range s.subnets {
		if x, ok := sub.hosts[key]; ok {
			h = x
			break
		}
	}
	if h == nil {
		return dst, Answer4{Outcome: NoLease}
	}
	ans := Answer4{Addr: h.addr, Subnet: h.subnet.key}
	if !h.subnet.enabled {
		ans.Outcome = Disabled
		return dst, ans
	}
	server := h.subnet.serverID
	var reply MessageType
	switch req.Type {
	case Discover:
		reply = Offer
	case Request:
		switch {
		case req.HasServerID && req.ServerID != server:
			// The client took another server's offer (RFC 2131 4.3.2).
			ans.Outcome = Ignored
			return dst, ans
		case req.HasRequestedIP && req.RequestedIP != h.addr,
			!req.HasRequestedIP && req.CIAddr != [4]byte{} && req.CIAddr != h.addr:
			// A stale lease (or someone else's address): NAK at once, so
			// the client starts over instead of waiting for a timeout.
			reply = Nak
		default:
			reply = Ack
		}
	case Inform:
		reply = Ack
	default:
		// RELEASE and DECLINE need no answer: the static lease stays.
		ans.Outcome = Ignored
		return dst, ans
	}
	ans.Outcome, ans.Reply = Answered, reply
	return appendReply4(dst, ethSrc, req, h, reply), ans
}

// appendReply4 appends the frame carrying the reply to req.
func appendReply4(dst []byte, ethSrc [6]byte, req *Request4, h *host4, reply MessageType) []byte {
	server := h.subnet.serverID
	inform := req.Type == Inform
	var opts []byte
	switch {
	case reply == Nak:
	case inform:
		opts = h.informOpts
	default:
		opts = h.opts
	}
	optLen := 3 + 6 + len(opts) + 1 // type, server id, options, end
	if req.RelayInfo != nil {
		optLen += 2 + len(req.RelayInfo)
	}
	msgLen := max(optionsOff+optLen, minReplyLen)

	// Where the reply goes (RFC 2131 4.1): back to a relay; else NAKs are
	// broadcast; else to the address the client already uses; else
	// broadcast when the client asks for it; else to the address offered.
	flags := req.Flags
	ethDst, ipDst, udpDst := req.CHAddr, h.addr, ClientPort4
	switch {
	case req.GIAddr != [4]byte{}:
		ethDst, ipDst, udpDst = ethSrc, req.GIAddr, ServerPort4
		if reply == Nak {
			flags |= flagBroadcast
		}
	case reply == Nak:
		ethDst, ipDst = packet.BroadcastMAC, [4]byte{255, 255, 255, 255}
	case req.CIAddr != [4]byte{}:
		ethDst, ipDst = ethSrc, req.CIAddr
	case req.Broadcast():
		ethDst, ipDst = packet.BroadcastMAC, [4]byte{255, 255, 255, 255}
	}

	const hdrs = packet.EthernetHeaderLen + packet.IPv4MinHeaderLen + packet.UDPHeaderLen
	total := hdrs + msgLen
	dst = slices.Grow(dst, total)
	start := len(dst)
	dst = dst[:start+total]
	f := dst[start:]
	clear(f)
	packet.Ethernet(f).Encode(packet.EthernetFields{Dst: ethDst, Src: ServerMAC, EtherType: packet.EtherTypeIPv4})
	ip := f[packet.EthernetHeaderLen:]
	packet.IPv4(ip).Encode(packet.IPv4Fields{TotalLen: uint16(packet.IPv4MinHeaderLen + packet.UDPHeaderLen + msgLen),
		TTL: packet.DefaultTTL, Protocol: packet.IPProtoUDP, Src: server, Dst: ipDst})
	udp := ip[packet.IPv4MinHeaderLen:]
	m := udp[packet.UDPHeaderLen:]

	m[0], m[1], m[2] = opReply, htypeEthernet, 6
	binary.BigEndian.PutUint32(m[4:], req.XID)
	binary.BigEndian.PutUint16(m[10:], flags)
	if req.CIAddr != [4]byte{} && reply != Nak {
		copy(m[12:16], req.CIAddr[:])
	}
	if reply != Nak && !inform {
		copy(m[16:20], h.addr[:])
	}
	copy(m[20:24], server[:])
	copy(m[24:28], req.GIAddr[:])
	copy(m[28:34], req.CHAddr[:])
	binary.BigEndian.PutUint32(m[bootpLen:], magicCookie)
	o := m[optionsOff:optionsOff]
	o = append(o, OptMessageType, 1, byte(reply), OptServerID, 4, server[0], server[1], server[2], server[3])
	o = append(o, opts...)
	if req.RelayInfo != nil {
		o = append(o, OptRelayAgentInfo, byte(len(req.RelayInfo)))
		o = append(o, req.RelayInfo...)
	}
	_ = append(o, OptEnd) // the rest of the message is zero padding

	udpLen := uint16(packet.UDPHeaderLen + msgLen)
	packet.UDP(udp).Encode(packet.UDPFields{SrcPort: ServerPort4, DstPort: udpDst, Length: udpLen})
	c := packet.Checksum(udp[:udpLen], packet.PseudoHeaderSum4(server, ipDst, packet.IPProtoUDP, udpLen))
	if c == 0 {
		c = 0xffff
	}
	packet.UDP(udp).SetChecksum(c)
	return dst
}

// ServerAddrs returns the server addresses of the enabled subnets: the
// bridge answers ARP for them with ServerMAC.
func (s *Server4) ServerAddrs() [][4]byte {
	var out [][4]byte
	for _, sub := range s.subnets {
		if sub.enabled && len(sub.hosts) > 0 && !slices.Contains(out, sub.serverID) {
			out = append(out, sub.serverID)
		}
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
