package translate

import (
	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
)

// Reply returns the match of the reply that the peer behind egress e
// sends back to a packet like orig, as it will arrive on the datapath port
// inPort: the emitted packet's addresses and ports swapped, its Ethernet
// addresses swapped (the next hop answers), its VLAN, and the fields the
// emitted packet cannot tell (TOS and TTL) guessed from orig, whose
// sender's defaults the peer most likely shares. It reports false for what
// has no predictable reply: anything but an unfragmented IPv4 TCP or UDP
// packet.
//
// A guess that turns out wrong costs nothing but the saving: the real
// reply then misses the flow built for the guessed one and is simulated.
func Reply(orig *sim.Match, e *sim.Egress, inPort datapath.PortNo) (sim.Match, bool) {
	if orig.EthType != packet.EtherTypeIPv4 || orig.NwFrag != packet.FragNone ||
		(orig.NwProto != packet.IPProtoTCP && orig.NwProto != packet.IPProtoUDP) {
		return sim.Match{}, false
	}
	out := *orig
	apply(&out, e.Set, &e.Values)
	var r sim.Match
	r.InPort = uint32(inPort)
	r.EthSrc, r.EthDst = out.EthDst, out.EthSrc
	r.VLAN, r.EthType = out.VLAN, out.EthType
	r.NwSrc, r.NwDst = out.NwDst, out.NwSrc
	r.NwProto, r.NwTOS, r.NwTTL, r.NwFrag = out.NwProto, orig.NwTOS, orig.NwTTL, packet.FragNone
	r.TpSrc, r.TpDst = out.TpDst, out.TpSrc
	return r, true
}
