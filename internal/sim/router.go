package sim

import (
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

// routerProcess routes a packet that entered router r through s.inPort
// (MidoNet's RouterBase.scala and Router.scala, reference §2.6).
func (s *Simulator) routerProcess(r *router) verdict {
	s.enterDevice(r.id, r.tag, "router")
	if r.traces != nil {
		s.checkTraces(r.traces)
	}
	in := s.inPort
	if v := s.vlan(); v != 0 {
		// A priority tag (VLAN 0) is stripped; other tags are not routed.
		if v&0x0fff != 0 {
			return s.drop(ReasonVLAN)
		}
		s.setVLAN(0)
	}
	et := s.ethType()
	if et != packet.EtherTypeIPv4 && et != packet.EtherTypeARP {
		return s.drop(ReasonNotIPv4)
	}
	if !r.adminUp {
		s.icmpError(in, packet.ICMPDestUnreachable, packet.ICMPCodeAdminProhibited)
		return s.drop(ReasonDeviceAdminDown)
	}
	s.mirrorTo(r.mirrorsIn)
	dst := s.ethDst()
	if isMulticastMAC(dst) {
		if et != packet.EtherTypeARP {
			return s.drop(ReasonNotForRouter)
		}
	} else if dst != in.mac {
		return s.drop(ReasonNotForRouter)
	}
	if et == packet.EtherTypeARP {
		return s.routerARP(r, in)
	}

	lbv := lbContinue
	if r.lb != nil {
		if lbv = s.lbInbound(r.lb); lbv == lbDrop {
			return s.drop(ReasonLoadBalancer)
		}
	}
	inFilter := actAccept
	if lbv != lbAccept {
		inFilter = s.runChains(r.inChains)
	}
	switch inFilter {
	case actDrop:
		// A dropped first fragment gets "fragmentation needed" and a short
		// drop, so the sender hears it again (reference §2.18).
		if s.nwFrag() == packet.FragFirst {
			s.icmpError(in, packet.ICMPDestUnreachable, packet.ICMPCodeFragNeeded)
			return s.tempDrop(ReasonChain)
		}
		return s.drop(s.chainDropReason())
	case actReject:
		s.icmpError(in, packet.ICMPDestUnreachable, packet.ICMPCodeAdminProhibited)
		return s.drop(ReasonChain)
	}

	src, dstIP := s.nwSrc(), s.nwDst()
	var learned route
	rt, ok := s.routeLookup(r, u32(src), u32(dstIP), &learned)
	if !ok {
		s.icmpError(in, packet.ICMPDestUnreachable, packet.ICMPCodeNetUnreachable)
		return s.tempDrop(ReasonNoRoute)
	}
	s.tag(rt.tag)
	if rt.dst.bits != 32 {
		s.tag(DstIPTag(r.id, addr4(dstIP)))
	}
	if s.tracing {
		s.trace("router", r.id, "route", rt.id.String()+" "+rt.kind.String()+" for "+addr4(dstIP).String())
	}
	switch rt.kind {
	case routeLocal:
		if s.isICMPEcho() && uint8(s.wc.TpSrc) == packet.ICMPEchoRequest {
			s.echoReply(in)
			return vConsumed
		}
		return s.tempDrop(ReasonLocalRoute)
	case routeBlackhole:
		return s.tempDrop(ReasonBlackhole)
	case routeReject:
		s.icmpError(in, packet.ICMPDestUnreachable, packet.ICMPCodeAdminProhibited)
		return s.tempDrop(ReasonRejectRoute)
	}
	ttl := s.nwTTL()
	if ttl <= 1 {
		s.icmpError(in, packet.ICMPTimeExceeded, packet.ICMPCodeTTLExceeded)
		return s.tempDrop(ReasonTTLExceeded)
	}
	s.setNwTTL(ttl - 1)

	out := s.snap.port(rt.port)
	if out == nil || !out.hasAddr || dstIP == out.addr {
		return s.drop(ReasonBadEgressPort)
	}
	s.outPort = out
	outFilter := actAccept
	lbv = lbContinue
	if r.lb != nil {
		if lbv = s.lbOutbound(r.lb); lbv == lbDrop {
			return s.drop(ReasonLoadBalancer)
		}
	}
	if lbv != lbAccept {
		outFilter = s.runChains(r.outChains)
	}
	switch outFilter {
	case actDrop:
		return s.drop(s.chainDropReason())
	case actReject:
		s.icmpError(in, packet.ICMPDestUnreachable, packet.ICMPCodeAdminProhibited)
		return s.drop(ReasonChain)
	}

	gw := s.wc.NwDst
	if rt.hasGateway {
		gw = rt.gateway
	}
	mac, ok := s.nextHopMAC(r, out, gw)
	if !ok && s.pkt.ARPFailed {
		code := packet.ICMPCodeHostUnreachable
		if rt.hasGateway {
			code = packet.ICMPCodeNetUnreachable
		}
		s.icmpError(in, packet.ICMPDestUnreachable, code)
		return s.tempDrop(ReasonARPTimeout)
	}
	if !ok {
		s.res.ARP = ARPRequest{Router: r.id, Port: out.id, IP: addr4(gw)}
		s.generate(out, s.buildARP(arpOpRequest, out.mac, out.addr, [6]byte{}, gw, broadcastMAC))
		if s.tracing {
			s.trace("router", r.id, "arp needed", addr4(gw).String())
		}
		return vARP
	}
	s.setEthSrc(out.mac)
	s.setEthDst(mac)
	s.mirrorTo(r.mirrorsOut)
	return s.portEgress(out)
}

// nextHopMAC resolves the MAC of next hop gw behind port out: a linked
// router port's MAC, a bridge's knowledge of its router ports and its ARP
// suppression table, then the router's ARP table. A stale entry is used,
// and the request that refreshes it is added to Result.ARPRefresh.
func (s *Simulator) nextHopMAC(r *router, out *port, gw [4]byte) ([6]byte, bool) {
	if peer := s.snap.port(out.peer); peer != nil {
		if peer.router != 0 {
			return peer.mac, true
		}
		if b := s.snap.bridge(peer.bridge); b != nil {
			if bp, ok := b.rtrIPs[gw]; ok {
				return bp.mac, true
			}
			if m, ok := b.ipMAC[gw]; ok {
				return m, true
			}
		}
	}
	s.tag(ARPTag(r.id, addr4(gw)))
	e, ok := r.arp[gw]
	if !ok || (e.expiry != 0 && e.expiry <= s.now) {
		return [6]byte{}, false
	}
	if e.stale != 0 && e.stale <= s.now {
		frame := s.buildARP(arpOpRequest, out.mac, out.addr, [6]byte{}, gw, broadcastMAC)
		s.res.ARPRefresh = append(s.res.ARPRefresh, ARPRefresh{ARPRequest: ARPRequest{Router: r.id, Port: out.id,
			IP: addr4(gw)}, Frame: frame})
		if s.tracing {
			s.trace("router", r.id, "arp stale", addr4(gw).String()+" is-at "+topology.FormatMAC(e.mac)+": asking again")
		}
	}
	return e.mac, true
}

// routerARP handles ARP addressed to the router: requests for the ingress
// port's address from its subnet are answered (and the sender learned),
// gratuitous ARPs and replies from the subnet are learned.
func (s *Simulator) routerARP(r *router, in *port) verdict {
	op := s.nwProto()
	spa, tpa := s.nwSrc(), s.nwDst()
	sha := s.arpSHA()
	inSubnet := in.hasAddr && in.subnet.contains(u32(spa))
	learn := func() {
		s.res.LearnedARP = append(s.res.LearnedARP, ARPLearning{Device: r.id, IP: addr4(spa), MAC: sha})
	}
	switch {
	case op == arpOpRequest && spa == tpa, op == arpOpReply && spa == tpa:
		if inSubnet {
			learn()
			return vConsumed
		}
	case op == arpOpRequest:
		if inSubnet && tpa == in.addr {
			learn()
			s.generate(in, s.buildARP(arpOpReply, in.mac, in.addr, sha, spa, sha))
			if s.tracing {
				s.trace("router", r.id, "arp reply", addr4(tpa).String()+" is-at "+topology.FormatMAC(in.mac))
			}
			return vConsumed
		}
	case op == arpOpReply:
		if inSubnet && tpa == in.addr {
			learn()
			return vConsumed
		}
	}
	return s.drop(ReasonARP)
}

// connHash hashes the packet's 5-tuple to pick among equal-cost routes, so
// that a connection sticks to one path.
func (s *Simulator) connHash() uint32 {
	src, dst := s.nwSrc(), s.nwDst()
	h := uint32(2166136261)
	mix := func(b byte) { h = (h ^ uint32(b)) * 16777619 }
	for _, b := range src {
		mix(b)
	}
	for _, b := range dst {
		mix(b)
	}
	proto := s.nwProto()
	mix(proto)
	if proto == packet.IPProtoTCP || proto == packet.IPProtoUDP {
		sp, dp := s.tpSrc(), s.tpDst()
		mix(byte(sp >> 8))
		mix(byte(sp))
		mix(byte(dp >> 8))
		mix(byte(dp))
	}
	return h
}
