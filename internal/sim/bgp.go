package sim

import (
	"github.com/google/uuid"

	"github.com/midonet/midonet/internal/packet"
)

// bgpTCPPort is BGP's TCP port.
const bgpTCPPort = 179

// BGPHelperPort is the id the egress of a port's BGP helper carries in a
// result; the agent of the port's host maps it to the helper's datapath
// port.
func BGPHelperPort(port ID) ID { return uuid.NewSHA1(port, []byte("bgp helper")) }

// bgpDivert sends a port's BGP traffic to its helper instead of through
// the router, as MidoNet's RoutingWorkflow did: TCP to or from port 179
// between a peer and the port's address, and (copied, the router learning
// them too) ARP replies from a peer to the port. ok is false for anything
// else, which the router handles. Only the fields that decide are read:
// the ports only of TCP from a peer to the port.
func (s *Simulator) bgpDivert(p *port) (verdict, bool) {
	switch s.ethType() {
	case packet.EtherTypeARP:
		if s.nwProto() != arpOpReply || s.nwDst() != p.addr || !p.isBGPPeer(s.nwSrc()) {
			return 0, false
		}
		// The router learns the peer's MAC as from any reply; the helper
		// gets a copy, without a flow that would keep the next replies
		// from the router.
		s.res.LearnedARP = append(s.res.LearnedARP, ARPLearning{Device: p.device, IP: addr4(s.nwSrc()), MAC: s.arpSHA()})
		s.userspace = true
	case packet.EtherTypeIPv4:
		if s.nwDst() != p.addr || s.nwProto() != packet.IPProtoTCP || !p.isBGPPeer(s.nwSrc()) {
			return 0, false
		}
		if s.tpDst() != bgpTCPPort && s.tpSrc() != bgpTCPPort {
			return 0, false
		}
	default:
		return 0, false
	}
	if r := s.snap.router(p.router); r != nil {
		s.tag(r.tag) // the router's BGP configuration decided
	}
	if s.tracing {
		s.trace("port", p.id, "bgp", "to the port's BGP speaker")
	}
	s.res.Egress = append(s.res.Egress, Egress{Port: p.bgpHelper})
	return vForward, true
}

func (p *port) isBGPPeer(a [4]byte) bool {
	for _, x := range p.bgpPeers {
		if x == a {
			return true
		}
	}
	return false
}
