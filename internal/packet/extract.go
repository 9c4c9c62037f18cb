package packet

// ExtractFlowKey fills key with the flow match of frame received on datapath
// port inPort, without allocating. It reports false, leaving key reset to
// just InPort, when the frame is too short to hold an Ethernet header; the
// caller counts and drops it. Headers beyond a truncated or malformed one
// leave their fields zero.
//
// Every field is overwritten except the tunnel metadata (TunID, TunSrc,
// TunDst, TunTOS, TunTTL), which comes from the outer headers of a
// decapsulated packet and stays as the caller set it.
//
// Conventions follow the OVS datapath and FlowKey's documentation: VLAN is
// the tag's TCI with VLANPresent set; for ARP, NwSrc/NwDst are the sender and
// target protocol addresses, NwProto the opcode when it fits a byte, and
// ARPSHA/ARPTHA the hardware addresses; later IPv4 fragments have no ports;
// ICMP type and code go in TpSrc and TpDst, and an ICMPv4 echo's
// identifier in ICMPID. IPv6 extension headers
// (hop-by-hop, routing, destination options, fragment) are walked to find
// the transport protocol.
func ExtractFlowKey(frame []byte, inPort uint32, key *FlowKey) bool {
	tunID, tunSrc, tunDst, tunTOS, tunTTL := key.TunID, key.TunSrc, key.TunDst, key.TunTOS, key.TunTTL
	var p Parsed
	p.Decode(frame)
	p.FlowKey(inPort, key)
	key.TunID, key.TunSrc, key.TunDst, key.TunTOS, key.TunTTL = tunID, tunSrc, tunDst, tunTOS, tunTTL
	return p.Layer >= Layer2
}

// FlowKey overwrites key with the flow match of the decoded frame received
// on inPort, tunnel fields included (left zero). See ExtractFlowKey for the
// conventions.
func (p *Parsed) FlowKey(inPort uint32, key *FlowKey) {
	*key = FlowKey{InPort: inPort}
	if p.Layer < Layer2 {
		return
	}
	key.EthSrc, key.EthDst = p.EthSrc, p.EthDst
	key.EthType = p.EthType
	if p.HasVLAN {
		key.VLAN = p.VLANTCI | VLANPresent
	}
	if p.Layer < Layer3 {
		return
	}
	switch {
	case p.EthType == EtherTypeARP:
		key.NwSrc, key.NwDst = p.ARPSPA, p.ARPTPA
		if p.ARPOp <= 0xff {
			key.NwProto = uint8(p.ARPOp)
		}
		key.ARPSHA, key.ARPTHA = p.ARPSHA, p.ARPTHA
		return
	case p.IPVersion == 4:
		key.NwSrc, key.NwDst = p.Src.As4(), p.Dst.As4()
	case p.IPVersion == 6:
		key.IPv6Src, key.IPv6Dst = p.Src.As16(), p.Dst.As16()
	}
	key.NwProto = p.IPProto
	key.NwTOS = p.TOS
	key.NwTTL = p.TTL
	key.NwFrag = p.Frag
	if p.Layer < Layer4 {
		return
	}
	switch p.IPProto {
	case IPProtoTCP, IPProtoUDP:
		key.TpSrc, key.TpDst = p.SrcPort, p.DstPort
	case IPProtoICMP, IPProtoICMPv6:
		key.TpSrc, key.TpDst = uint16(p.ICMPType), uint16(p.ICMPCode)
		key.ICMPID = p.ICMPIdent
	}
}
