package sim

import (
	"net/netip"
	"strconv"

	"github.com/midonet/midonet/internal/dhcp"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

// DHCPEvent says what a bridge's DHCP server did with a packet; it is a
// counter label.
type DHCPEvent uint8

// DHCP events.
const (
	DHCPNone      DHCPEvent = iota // not a DHCP request on a bridge with DHCP
	DHCPOffer                      // a DISCOVER answered with an OFFER, a SOLICIT with an ADVERTISE
	DHCPAck                        // a REQUEST or INFORM answered with an ACK, a DHCPv6 message with a REPLY
	DHCPNak                        // a REQUEST for an address that is not the client's
	DHCPIgnored                    // RELEASE, DECLINE, or a REQUEST for another server: consumed
	DHCPNoLease                    // no entry for the client's MAC: simulated on, without a flow
	DHCPDisabled                   // the client's subnet is disabled: simulated on, without a flow
	DHCPMalformed                  // dropped and counted
)

var dhcpEventNames = [...]string{"", "offer", "ack", "nak", "ignored", "no-lease", "disabled", "malformed"}

// String returns the event's name.
func (e DHCPEvent) String() string {
	if int(e) < len(dhcpEventNames) {
		return dhcpEventNames[e]
	}
	return "dhcp(" + strconv.Itoa(int(e)) + ")"
}

// MarshalText implements encoding.TextMarshaler.
func (e DHCPEvent) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// compileDHCP gives bridge b the DHCP servers of its subnets. The MTU a
// subnet without interfaceMTU offers is the underlay's minus the overlay's
// overhead, so that VMs never send frames the overlay must fragment.
func compileDHCP(b *bridge, v4 []topology.DHCPSubnet, v6 []topology.DHCPSubnetV6, underlayMTU int) {
	if len(v4) > 0 {
		underlay := underlayMTU
		if underlay <= 0 {
			underlay = dhcp.DefaultUnderlayMTU
		}
		// 68 is the smallest MTU an IPv4 host must accept (RFC 791).
		defaults := dhcp.Defaults{MTU: max(underlay-dhcp.OverlayOverhead, 68)}
		// Hosts and options the API would refuse are left out.
		b.dhcp4, _ = dhcp.NewServer4(v4, defaults)
		b.dhcpServers = b.dhcp4.ServerAddrs()
	}
	if len(v6) > 0 {
		b.dhcp6, _ = dhcp.NewServer6(v6)
	}
}

// dhcpIngress answers a DHCP request entering bridge port p from a VM, as
// MidoNet does before simulating a packet (PacketWorkflow.handleDHCP): the
// request is consumed and the reply emitted back out of p, without a flow.
// handled is false when the packet is not one the server takes: it is
// simulated as usual. A bridge with DHCP reads the ethertype, protocol and
// ports of every packet from its VMs, so that no flow installed for other
// traffic ever catches a DHCP request.
func (s *Simulator) dhcpIngress(p *port) (v verdict, handled bool) {
	b := s.snap.bridge(p.bridge)
	if s.vlan() != 0 {
		return 0, false // a trunk's tagged frames are bridged, never answered
	}
	switch s.ethType() {
	case packet.EtherTypeIPv4:
		if b.dhcp4 == nil || s.nwProto() != packet.IPProtoUDP || s.nwFrag() != packet.FragNone ||
			s.tpSrc() != dhcp.ClientPort4 || s.tpDst() != dhcp.ServerPort4 {
			return 0, false
		}
	case packet.EtherTypeIPv6:
		if b.dhcp6 == nil || s.nwProto() != packet.IPProtoUDP || s.nwFrag() != packet.FragNone ||
			s.tpSrc() != dhcp.ClientPort6 || s.tpDst() != dhcp.ServerPort6 {
			return 0, false
		}
		return s.dhcp6Ingress(p)
	default:
		return 0, false
	}
	var parsed packet.Parsed
	parsed.Decode(s.pkt.Frame)
	if parsed.Layer < packet.Layer4 || parsed.IPProto != packet.IPProtoUDP {
		return 0, false // a trace without a frame: simulated as any packet
	}
	var req dhcp.Request4
	var ans dhcp.Answer4
	if err := req.Decode(parsed.Payload()); err != nil {
		if err == dhcp.ErrNotRequest {
			return 0, false
		}
		s.res.DHCP = DHCPMalformed
		s.userspace = true
		if s.tracing {
			s.trace("bridge", b.id, "dhcp", "malformed request: "+err.Error())
		}
		s.device = b.id
		return s.drop(ReasonDHCPMalformed), true
	}
	start := len(s.genBuf)
	// Appending may move the buffer to a new array; frames generated
	// before keep the old one alive, as with alloc.
	s.genBuf, ans = b.dhcp4.AppendAnswer(s.genBuf, s.wc.EthSrc, &req)
	switch ans.Outcome {
	case dhcp.NoLease, dhcp.Disabled:
		s.res.DHCP = DHCPNoLease
		if ans.Outcome == dhcp.Disabled {
			s.res.DHCP = DHCPDisabled
		}
		// Forwarded like any packet (another server on the bridge may
		// answer), but never by a flow: an entry added later answers the
		// client's next try.
		s.userspace = true
		if s.tracing {
			s.trace("bridge", b.id, "dhcp", req.Type.String()+": "+ans.Outcome.String()+", not answered")
		}
		return 0, false
	case dhcp.Ignored:
		s.res.DHCP = DHCPIgnored
		if s.tracing {
			s.trace("bridge", b.id, "dhcp", req.Type.String()+" consumed")
		}
		return vConsumed, true
	}
	switch ans.Reply {
	case dhcp.Offer:
		s.res.DHCP = DHCPOffer
	case dhcp.Ack:
		s.res.DHCP = DHCPAck
	default:
		s.res.DHCP = DHCPNak
	}
	n := len(s.genBuf)
	s.generate(p, s.genBuf[start:n:n])
	if s.tracing {
		s.trace("bridge", b.id, "dhcp", req.Type.String()+" answered by the agent: "+ans.Reply.String()+" "+
			addr4(ans.Addr).String()+" (subnet "+ans.Subnet+")")
	}
	return vConsumed, true
}

// dhcp6Ingress is dhcpIngress for a DHCPv6 client message.
func (s *Simulator) dhcp6Ingress(p *port) (v verdict, handled bool) {
	b := s.snap.bridge(p.bridge)
	var parsed packet.Parsed
	parsed.Decode(s.pkt.Frame)
	if parsed.Layer < packet.Layer4 || parsed.IPVersion != 6 || parsed.IPProto != packet.IPProtoUDP {
		return 0, false
	}
	var req dhcp.Request6
	if err := req.Decode(parsed.Payload()); err != nil {
		if err == dhcp.ErrNotClient6 {
			return 0, false // relayed or a server's: the bridge forwards it
		}
		s.res.DHCP = DHCPMalformed
		s.userspace = true
		if s.tracing {
			s.trace("bridge", b.id, "dhcpv6", "malformed message: "+err.Error())
		}
		s.device = b.id
		return s.drop(ReasonDHCPMalformed), true
	}
	start := len(s.genBuf)
	var ans dhcp.Answer6
	s.genBuf, ans = b.dhcp6.AppendAnswer(s.genBuf, s.wc.EthSrc, parsed.Src.As16(), &req)
	switch ans.Outcome {
	case dhcp.NoLease:
		s.res.DHCP = DHCPNoLease
		s.userspace = true
		if s.tracing {
			s.trace("bridge", b.id, "dhcpv6", req.Type.String()+": no-lease, not answered")
		}
		return 0, false
	case dhcp.Ignored:
		s.res.DHCP = DHCPIgnored
		if s.tracing {
			s.trace("bridge", b.id, "dhcpv6", req.Type.String()+" for another server, consumed")
		}
		return vConsumed, true
	}
	s.res.DHCP = DHCPAck
	if ans.Reply == dhcp.MsgAdvertise {
		s.res.DHCP = DHCPOffer
	}
	n := len(s.genBuf)
	s.generate(p, s.genBuf[start:n:n])
	if s.tracing {
		s.trace("bridge", b.id, "dhcpv6", req.Type.String()+" answered by the agent: "+ans.Reply.String()+" "+
			netip.AddrFrom16(ans.Addr).String()+" (subnet "+ans.Subnet+")")
	}
	return vConsumed, true
}
