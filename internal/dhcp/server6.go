package dhcp

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

// Lifetimes of DHCPv6 leases, in seconds: addresses are valid for a day
// like DHCPv4 leases; clients renew at half of it (T1) and rebind at 80%.
const (
	validLifetime6     = LeaseTime
	preferredLifetime6 = LeaseTime
	t1Lifetime6        = LeaseTime / 2
	t2Lifetime6        = LeaseTime * 4 / 5
)

// ServerLinkLocal6 is the IPv6 source of every DHCPv6 reply: the
// link-local address of ServerMAC (modified EUI-64).
var ServerLinkLocal6 = [16]byte{0xfe, 0x80, 8: 0x00, 9: 0xa8, 10: 0x9c, 11: 0xff, 12: 0xfe, 13: 0xde, 14: 0x39, 15: 0x27}

// serverDUID is the server's identifier: a DUID-LL of ServerMAC.
var serverDUID = append([]byte{0, duidLL, 0, 1}, ServerMAC[:]...)

// Server6 answers DHCPv6 for one bridge from its DHCPv6 subnets' hosts.
// It is immutable, safe for concurrent use.
type Server6 struct {
	subnets []*subnet6
	byDUID  map[string]*host6  // hosts whose clientId is a DUID
	byMAC   map[[6]byte]*host6 // hosts whose clientId is a MAC address
}

type subnet6 struct {
	key    string // 2001:db8::_64, as in the API
	prefix netip.Prefix
	dns    []byte // the DNS servers option value, or nil
}

type host6 struct {
	subnet *subnet6
	addr   [16]byte
}

// ParseClientID6 parses a DHCPv6 host's clientId: hexadecimal bytes
// separated by ':' or '-' (as the API writes them in URLs). Six bytes are
// a MAC address, which matches the client's DUID-LL or DUID-LLT, or else
// the Ethernet source of its requests; more are the client's whole DUID.
func ParseClientID6(s string) ([]byte, error) {
	parts := strings.FieldsFunc(strings.TrimSpace(s), func(r rune) bool { return r == ':' || r == '-' })
	if len(parts) < 2 || len(parts) > 130 {
		return nil, fmt.Errorf("client id %q: want a DUID or a MAC as hex bytes separated by ':', e.g. 00:03:00:01:02:00:00:00:00:01", s)
	}
	out := make([]byte, len(parts))
	for i, p := range parts {
		if len(p) > 2 {
			return nil, fmt.Errorf("client id %q: %q is not one hex byte", s, p)
		}
		b, err := hex.DecodeString(fmt.Sprintf("%02s", p))
		if err != nil {
			return nil, fmt.Errorf("client id %q: %q is not one hex byte", s, p)
		}
		out[i] = b[0]
	}
	return out, nil
}

// NewServer6 compiles a bridge's DHCPv6 subnets. Hosts whose client id or
// address does not parse are left out and reported in problems.
func NewServer6(subnets []topology.DHCPSubnetV6) (s *Server6, problems []error) {
	s = &Server6{byDUID: map[string]*host6{}, byMAC: map[[6]byte]*host6{}}
	sorted := slices.Clone(subnets)
	slices.SortFunc(sorted, func(a, b topology.DHCPSubnetV6) int { return cmp.Compare(a.SubnetKey(), b.SubnetKey()) })
	for i := range sorted {
		d := &sorted[i]
		pfx, err := netip.ParsePrefix(deref(d.Prefix) + "/" + strconv.Itoa(d.PrefixLength))
		if err != nil || !pfx.Addr().Is6() || pfx.Addr().Is4In6() {
			problems = append(problems, fmt.Errorf("DHCPv6 subnet %s: not an IPv6 prefix", d.SubnetKey()))
			continue
		}
		sub := &subnet6{key: d.SubnetKey(), prefix: pfx.Masked()}
		for _, a := range d.DNSServerAddrs {
			if ip, err := netip.ParseAddr(a); err == nil && ip.Is6() && !ip.Is4In6() {
				sub.dns = append(sub.dns, ip.AsSlice()...)
			}
		}
		s.subnets = append(s.subnets, sub)
		for j := range d.Hosts {
			h := &d.Hosts[j]
			id, err := ParseClientID6(deref(h.ClientID))
			addr, err2 := netip.ParseAddr(deref(h.FixedAddress))
			if err != nil || err2 != nil || !addr.Is6() || addr.Is4In6() {
				problems = append(problems, fmt.Errorf("DHCPv6 subnet %s: host %q: client id or address not valid", sub.key, deref(h.ClientID)))
				continue
			}
			ho := &host6{subnet: sub, addr: addr.As16()}
			if len(id) == 6 {
				if _, dup := s.byMAC[[6]byte(id)]; !dup {
					s.byMAC[[6]byte(id)] = ho
				}
			} else if _, dup := s.byDUID[string(id)]; !dup {
				s.byDUID[string(id)] = ho
			}
		}
	}
	return s, problems
}

// Answer6 describes what Server6.AppendAnswer did.
type Answer6 struct {
	Outcome Outcome
	Reply   MessageType6 // ADVERTISE or REPLY when Answered
	Addr    [16]byte     // the client's address in its entry, unless NoLease
	Subnet  string       // the entry's subnet key, unless NoLease
}

// lookup finds the client's entry: by its DUID, by the MAC in its DUID,
// then by the Ethernet source of the request.
func (s *Server6) lookup(ethSrc [6]byte, req *Request6) *host6 {
	if req.ClientID != nil {
		if h, ok := s.byDUID[string(req.ClientID)]; ok {
			return h
		}
		if m, ok := duidMAC(req.ClientID); ok {
			if h, ok := s.byMAC[m]; ok {
				return h
			}
		}
	}
	return s.byMAC[ethSrc]
}

// AppendAnswer answers req, a client message that arrived from ethSrc and
// IPv6 address ipSrc, appending the reply frame (Ethernet, IPv6, UDP,
// DHCPv6) to dst when it answers: ADVERTISE to a SOLICIT (REPLY with rapid
// commit), REPLY to REQUEST, RENEW, REBIND, CONFIRM, RELEASE, DECLINE and
// INFORMATION-REQUEST. Messages for another server are ignored. It does not
// allocate when dst has room.
func (s *Server6) AppendAnswer(dst []byte, ethSrc [6]byte, ipSrc [16]byte, req *Request6) ([]byte, Answer6) {
	h := s.lookup(ethSrc, req)
	if h == nil {
		return dst, Answer6{Outcome: NoLease}
	}
	ans := Answer6{Addr: h.addr, Subnet: h.subnet.key}
	switch req.Type {
	case MsgRequest, MsgRenew, MsgRelease, MsgDecline:
		if string(req.ServerID) != string(serverDUID) {
			ans.Outcome = Ignored // for another server (RFC 8415 16)
			return dst, ans
		}
	case MsgInfoRequest:
		if req.ServerID != nil && string(req.ServerID) != string(serverDUID) {
			ans.Outcome = Ignored
			return dst, ans
		}
	}
	reply := MsgReply
	if req.Type == MsgSolicit && !req.RapidCommit {
		reply = MsgAdvertise
	}
	ans.Outcome, ans.Reply = Answered, reply

	const hdrs = packet.EthernetHeaderLen + packet.IPv6HeaderLen + packet.UDPHeaderLen
	start := len(dst)
	dst = slices.Grow(dst, hdrs+512)
	dst = dst[:start+hdrs]
	f := dst[start:]
	clear(f)
	packet.Ethernet(f).Encode(packet.EthernetFields{Dst: ethSrc, Src: ServerMAC, EtherType: packet.EtherTypeIPv6})

	// The message, appended after the headers.
	dst = append(dst, byte(reply), req.XID[0], req.XID[1], req.XID[2])
	dst = appendOpt6(dst, Opt6ServerID, serverDUID)
	if req.ClientID != nil {
		dst = appendOpt6(dst, Opt6ClientID, req.ClientID)
	}
	switch req.Type {
	case MsgSolicit, MsgRequest, MsgRenew, MsgRebind:
		if req.RapidCommit && req.Type == MsgSolicit {
			dst = appendOpt6(dst, Opt6RapidCommit, nil)
		}
		for i := 0; i < req.NIA; i++ {
			dst = appendIANA(dst, &req.IAs[i], h, req.Type != MsgSolicit)
		}
		if req.NIA == 0 {
			dst = appendStatus6(dst, status6NoAddrs, "no IA_NA in the request")
		}
		if h.subnet.dns != nil {
			dst = appendOpt6(dst, Opt6DNSServers, h.subnet.dns)
		}
	case MsgConfirm:
		onLink := true
		for i := 0; i < req.NIA; i++ {
			if ia := &req.IAs[i]; ia.HasAddr && !h.subnet.prefix.Contains(netip.AddrFrom16(ia.Addr)) {
				onLink = false
			}
		}
		if onLink {
			dst = appendStatus6(dst, status6Success, "")
		} else {
			dst = appendStatus6(dst, status6NotOnLink, "not on this link")
		}
	case MsgRelease, MsgDecline:
		dst = appendStatus6(dst, status6Success, "")
	case MsgInfoRequest:
		if h.subnet.dns != nil {
			dst = appendOpt6(dst, Opt6DNSServers, h.subnet.dns)
		}
	}

	f = dst[start:]
	ip := f[packet.EthernetHeaderLen:]
	udp := ip[packet.IPv6HeaderLen:]
	udpLen := len(udp)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(udpLen))
	ip[6], ip[7] = packet.IPProtoUDP, 255 // link-local traffic: hop limit 255, as routers send ND
	copy(ip[8:24], ServerLinkLocal6[:])
	copy(ip[24:40], ipSrc[:])
	packet.UDP(udp).Encode(packet.UDPFields{SrcPort: ServerPort6, DstPort: ClientPort6, Length: uint16(udpLen)})
	sum := packet.ChecksumCombine(0, ip[8:40])
	var tail [8]byte
	binary.BigEndian.PutUint32(tail[0:], uint32(udpLen))
	tail[7] = packet.IPProtoUDP
	sum = packet.ChecksumCombine(sum, tail[:])
	c := packet.Checksum(udp, sum)
	if c == 0 {
		c = 0xffff
	}
	packet.UDP(udp).SetChecksum(c)
	return dst, ans
}

func appendOpt6(b []byte, code uint16, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, code)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func appendStatus6(b []byte, code uint16, msg string) []byte {
	b = binary.BigEndian.AppendUint16(b, Opt6StatusCode)
	b = binary.BigEndian.AppendUint16(b, uint16(2+len(msg)))
	b = binary.BigEndian.AppendUint16(b, code)
	return append(b, msg...)
}

// appendIANA appends the IA_NA answering ia: the host's address with its
// lifetimes and, when the client holds another address (a stale lease),
// that one with lifetimes 0 so that it stops using it at once.
func appendIANA(b []byte, ia *IA6, h *host6, withdraw bool) []byte {
	n := 12 + 28
	stale := withdraw && ia.HasAddr && ia.Addr != h.addr
	if stale {
		n += 28
	}
	b = binary.BigEndian.AppendUint16(b, Opt6IANA)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = binary.BigEndian.AppendUint32(b, ia.IAID)
	b = binary.BigEndian.AppendUint32(b, t1Lifetime6)
	b = binary.BigEndian.AppendUint32(b, t2Lifetime6)
	b = appendIAAddr(b, h.addr, preferredLifetime6, validLifetime6)
	if stale {
		b = appendIAAddr(b, ia.Addr, 0, 0)
	}
	return b
}

func appendIAAddr(b []byte, addr [16]byte, preferred, valid uint32) []byte {
	b = binary.BigEndian.AppendUint16(b, Opt6IAAddr)
	b = binary.BigEndian.AppendUint16(b, 24)
	b = append(b, addr[:]...)
	b = binary.BigEndian.AppendUint32(b, preferred)
	return binary.BigEndian.AppendUint32(b, valid)
}
