package sim

import (
	"slices"

	"github.com/midonet/midonet/internal/dhcp"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

// bridgeProcess is a bridge's forwarding decision for a frame that entered
// through s.inPort (MidoNet's Bridge.scala, reference §2.5).
func (s *Simulator) bridgeProcess(b *bridge) verdict {
	s.enterDevice(b.id, b.tag, "bridge")
	if b.traces != nil {
		s.checkTraces(b.traces)
	}
	in := s.inPort
	src := s.ethSrc()
	if isMulticastMAC(src) {
		return s.drop(ReasonMulticastSource)
	}
	if !b.adminUp {
		return s.drop(ReasonDeviceAdminDown)
	}
	s.mirrorTo(b.mirrorsIn)
	// A frame entering a VLAN-aware bridge from an interior port with a
	// VLAN id gets that tag; trunk frames keep theirs.
	if in.vlan != 0 && in.peer != 0 {
		if s.vlan() != 0 {
			return s.drop(ReasonVLAN)
		}
		s.setVLAN(in.vlan | packet.VLANPresent)
	}
	tci := s.vlan()
	vid := tci & 0x0fff
	// VLAN-tagged frames bypass the bridge's chains.
	filter := actAccept
	if tci == 0 {
		filter = s.runChains(b.inChains)
	}
	// MAC learning happens even when the inbound chain drops, except for
	// the MACs of linked router ports, which the bridge knows already.
	if _, isRouter := b.rtrMACs[src]; !isRouter {
		s.res.LearnedMACs = append(s.res.LearnedMACs, MACLearning{Bridge: b.id, VLAN: vid, MAC: src, Port: in.id})
		s.tag(MACTag(b.id, vid, src, in.id))
	}
	if filter != actAccept {
		return s.drop(s.chainDropReason())
	}
	dst := s.ethDst()
	if isMulticastMAC(dst) {
		if s.isARP() {
			return s.bridgeARP(b, vid, dst == broadcastMAC)
		}
		s.tag(BroadcastTag(b.id))
		return s.flood(b, vid)
	}
	if rp, ok := b.rtrMACs[dst]; ok {
		return s.bridgeUnicastTo(b, rp)
	}
	h, ok := b.macs[macKey{vid, dst}]
	out := s.snap.port(h)
	if !ok || out == nil {
		s.tag(FloodTag(b.id, vid, dst))
		return s.flood(b, vid)
	}
	if out.id == in.id {
		return s.tempDrop(ReasonSameInOutPort)
	}
	s.tag(MACTag(b.id, vid, dst, out.id))
	return s.bridgeUnicast(b, out)
}

// bridgeARP handles a broadcast or multicast ARP frame: the bridge answers
// requests for addresses it knows, sends requests for a linked router's
// address to that router only, and floods the rest.
func (s *Simulator) bridgeARP(b *bridge, vid uint16, broadcast bool) verdict {
	op := s.nwProto()
	spa, tpa := s.nwSrc(), s.nwDst()
	if op == arpOpRequest && broadcast && s.wc.VLAN == 0 && spa != tpa {
		var mac [6]byte
		known := false
		if rp, ok := b.rtrIPs[tpa]; ok {
			mac, known = rp.mac, true
		} else if m, ok := b.ipMAC[tpa]; ok && b.answerARP {
			mac, known = m, true
		} else if slices.Contains(b.dhcpServers, tpa) {
			// The DHCP server's address: clients renew by unicast to it.
			mac, known = dhcp.ServerMAC, true
		}
		if known {
			sha := s.arpSHA()
			frame := s.buildARP(arpOpReply, mac, tpa, sha, spa, sha)
			s.generate(s.inPort, frame)
			if s.tracing {
				s.trace("bridge", b.id, "arp reply", addr4(tpa).String()+" is-at "+topology.FormatMAC(mac))
			}
			return vConsumed
		}
	}
	if rp, ok := b.rtrIPs[tpa]; ok {
		return s.bridgeUnicastTo(b, rp.port)
	}
	if spa == tpa {
		// Gratuitous ARP: learn the address, flood, and see every such
		// packet in userspace. The routers on the bridge whose subnet holds
		// the address get it too, so that a VM that moved, or an address
		// that moved to another VM, is followed at once.
		s.res.LearnedARP = append(s.res.LearnedARP, ARPLearning{Device: b.id, IP: addr4(spa), MAC: s.arpSHA()})
		s.userspace = true
		v := s.flood(b, vid)
		if vid == 0 {
			s.garpToRouters(b, spa)
		}
		return v
	}
	s.tag(ARPRequestsTag(b.id))
	return s.flood(b, vid)
}

// bridgeUnicastTo is bridgeUnicast to the port of a handle.
func (s *Simulator) bridgeUnicastTo(b *bridge, h handle[port]) verdict {
	out := s.snap.port(h)
	if out == nil {
		return s.tempDrop(ReasonUnknownPort)
	}
	return s.bridgeUnicast(b, out)
}

// bridgeUnicast applies the bridge's outbound chains (untagged frames only)
// and sends the frame out of port out.
func (s *Simulator) bridgeUnicast(b *bridge, out *port) verdict {
	if !s.bridgeOutbound(b, out) {
		return s.drop(s.chainDropReason())
	}
	return s.portEgress(out)
}

// bridgeOutbound runs the bridge's outbound chains on an untagged frame
// leaving through out (nil when flooding), then its outbound mirrors; false
// means the chains did not accept the frame.
func (s *Simulator) bridgeOutbound(b *bridge, out *port) bool {
	if s.wc.VLAN == 0 && len(b.outChains) > 0 {
		s.outPort = out
		if s.runChains(b.outChains) != actAccept {
			return false
		}
	}
	s.mirrorTo(b.mirrorsOut)
	return true
}

// flood sends the frame out of every exterior port of the bridge but the
// ingress one, for a tagged frame out of the interior port with its VLAN,
// and out of the ports linking the bridge to a VLAN-aware bridge. Branches are simulated one after the other from the same state; a
// dropped branch does not affect the others.
func (s *Simulator) flood(b *bridge, vid uint16) verdict {
	if !s.bridgeOutbound(b, nil) {
		return s.drop(s.chainDropReason())
	}
	if s.tracing {
		s.trace("bridge", b.id, "flood", "")
	}
	saved := s.save()
	// out sends a branch out of port h, unless it is the ingress port.
	out := func(h handle[port]) {
		p := s.snap.port(h)
		if p == nil || (saved.inPort != nil && p.id == saved.inPort.id) {
			return
		}
		s.restore(&saved)
		s.portEgress(p)
	}
	for _, h := range b.flood {
		out(h)
	}
	if vid != 0 {
		if h, ok := b.vlanPorts[vid]; ok {
			out(h)
		}
	}
	// A bridge linked to a VLAN-aware bridge floods to it too.
	for _, h := range b.vabPeers {
		out(h)
	}
	s.restore(&saved)
	return vForward
}

// garpToRouters hands a gratuitous ARP for addr to the router ports linked
// to b whose subnet holds it, which learn it (routerARP).
func (s *Simulator) garpToRouters(b *bridge, addr [4]byte) {
	saved := s.save()
	for _, rtr := range b.rtrIPs {
		bp := s.snap.port(rtr.port)
		if bp == nil || bp == saved.inPort || !rtr.subnet.contains(u32(addr)) {
			continue
		}
		s.restore(&saved)
		s.portEgress(bp)
	}
	s.restore(&saved)
}
