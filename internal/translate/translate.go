// Package translate turns the result of a simulation into datapath
// actions: step 4 of the agent's packet path, between the simulation (what
// the virtual network does to the packet) and the datapath (what the host
// does to its bytes).
//
// Its functions are pure: they read the result, the original packet's
// match and where the egress ports are (Ports, and the snapshot's port
// directory), and return actions, without I/O or locks. An egress port
// bound here is an output to its datapath port; one bound on another host
// is a tunnel to that host's underlay address with the port's tunnel key,
// then an output to the overlay port. The header rewrites a device made
// become set actions taking the packet from what it is to what each egress
// wants.
//
// Flow builds the actions of a flow to install; Userspace applies, to one
// packet's own copy, what a datapath cannot (ICMP identifiers and quoted
// headers, which NAT rewrites) and returns the actions for the rest.
// Header bytes are rewritten by package packet in both cases.
package translate

import (
	"net/netip"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// Ports is where this host reaches ports and hosts: an immutable view the
// agent publishes whenever a binding or the overlay changes.
type Ports struct {
	// Local maps the virtual ports plugged in here to their datapath
	// ports.
	Local map[topology.ID]datapath.PortNo
	// Peers maps the other hosts of this host's tunnel zones to their
	// underlay addresses.
	Peers map[topology.ID]netip.Addr
	// Overlay is the VXLAN port, 0 while there is none.
	Overlay datapath.PortNo
	// LocalIP is this host's underlay address, the tunnels' source.
	LocalIP netip.Addr
}

// PortDirectory says which host a port is bound to and its tunnel key;
// *sim.Snapshot implements it.
type PortDirectory interface {
	Port(id topology.ID) (sim.PortInfo, bool)
}

var _ PortDirectory = (*sim.Snapshot)(nil)

// Drops counts the egresses a translation left out.
type Drops struct {
	// Unreachable: the port is neither bound here nor active on a host
	// (or there is no overlay port to reach it).
	Unreachable int
	// NoPeer: the port's host is not in this host's tunnel zones.
	NoPeer int
}

// Tunnel appends the actions that send the packet, as it is then, to host
// through the overlay with tunnel key vni. It reports false, appending
// nothing, when there is no overlay port or host is not a peer.
func (p *Ports) Tunnel(acts []datapath.Action, host topology.ID, vni uint32) ([]datapath.Action, bool) {
	ip, ok := p.Peers[host]
	if !ok || p.Overlay == 0 {
		return acts, false
	}
	return append(acts,
		datapath.SetTunnel(datapath.TunnelSet{VNI: vni, Dst: ip, Src: p.LocalIP}),
		datapath.Output(p.Overlay)), true
}

// output appends the actions that send the packet to a virtual port: an
// output to its datapath port here, or a tunnel to its host.
func (p *Ports) output(acts []datapath.Action, dir PortDirectory, port topology.ID, drops *Drops) []datapath.Action {
	if dp, ok := p.Local[port]; ok {
		return append(acts, datapath.Output(dp))
	}
	info, ok := dir.Port(port)
	if !ok || info.Host == (topology.ID{}) || p.Overlay == 0 {
		drops.Unreachable++
		return acts
	}
	acts, ok = p.Tunnel(acts, info.Host, info.TunnelKey)
	if !ok {
		drops.NoPeer++
	}
	return acts
}

// Flow appends to acts the actions of a flow doing what egress says to
// packets like orig: for each egress in turn, the set actions that turn
// the packet as the previous egress left it into the packet this one
// wants, then its output. Egresses that cannot be reached are left out
// and counted.
func Flow(acts []datapath.Action, orig *sim.Match, egress []sim.Egress, p *Ports, dir PortDirectory) ([]datapath.Action, Drops) {
	var drops Drops
	cur := *orig
	for i := range egress {
		e := &egress[i]
		want := *orig
		apply(&want, e.Set, &e.Values)
		acts = appendSets(acts, &cur, &want)
		cur = want
		acts = p.output(acts, dir, e.Port, &drops)
	}
	return acts, drops
}

// Userspace prepares one egress of a packet that is executed without a
// flow: it rewrites, in frame (the caller's copy of the packet orig
// describes), the fields of e a datapath cannot set, and appends to acts
// the actions that set the others and output the packet. The caller
// executes them on frame.
func Userspace(acts []datapath.Action, frame []byte, orig *sim.Match, e *sim.Egress, p *Ports, dir PortDirectory) ([]datapath.Action, Drops) {
	var drops Drops
	if e.Set&(sim.FieldICMPID|sim.FieldICMPData) != 0 {
		var pk packet.Parsed
		pk.Decode(frame)
		v := &e.Values
		if e.Set&sim.FieldICMPID != 0 {
			pk.SetICMPEchoIdent(v.ICMPID)
		}
		if e.Set&sim.FieldICMPData != 0 && v.ICMPData.Valid {
			pk.SetQuotedIPv4Src(v.ICMPData.Src)
			pk.SetQuotedIPv4Dst(v.ICMPData.Dst)
			pk.SetQuotedSrcPort(v.ICMPData.SrcPort)
			pk.SetQuotedDstPort(v.ICMPData.DstPort)
		}
	}
	want := *orig
	apply(&want, e.Set, &e.Values)
	acts = appendSets(acts, orig, &want)
	return p.output(acts, dir, e.Port, &drops), drops
}

// apply copies the fields of set from v into m.
func apply(m *sim.Match, set sim.FieldSet, v *sim.Match) {
	if set&sim.FieldEthSrc != 0 {
		m.EthSrc = v.EthSrc
	}
	if set&sim.FieldEthDst != 0 {
		m.EthDst = v.EthDst
	}
	if set&sim.FieldVLAN != 0 {
		m.VLAN = v.VLAN
	}
	if set&sim.FieldNwSrc != 0 {
		m.NwSrc = v.NwSrc
	}
	if set&sim.FieldNwDst != 0 {
		m.NwDst = v.NwDst
	}
	if set&sim.FieldNwTOS != 0 {
		m.NwTOS = v.NwTOS
	}
	if set&sim.FieldNwTTL != 0 {
		m.NwTTL = v.NwTTL
	}
	if set&sim.FieldTpSrc != 0 {
		m.TpSrc = v.TpSrc
	}
	if set&sim.FieldTpDst != 0 {
		m.TpDst = v.TpDst
	}
	if set&sim.FieldICMPID != 0 {
		m.ICMPID = v.ICMPID
	}
	if set&sim.FieldICMPData != 0 {
		m.ICMPData = v.ICMPData
	}
}

// appendSets appends the set actions that turn cur into want. Fields a
// datapath cannot set (ICMP identifier and quoted header) are not among
// them; nor are IPv4 fields of a packet that is not IPv4, nor ports of a
// packet without a TCP or UDP header.
func appendSets(acts []datapath.Action, cur, want *sim.Match) []datapath.Action {
	if cur.EthSrc != want.EthSrc || cur.EthDst != want.EthDst {
		var s datapath.EthernetSet
		if cur.EthSrc != want.EthSrc {
			s.Src, s.Fields = want.EthSrc, s.Fields|datapath.SetSrc
		}
		if cur.EthDst != want.EthDst {
			s.Dst, s.Fields = want.EthDst, s.Fields|datapath.SetDst
		}
		acts = append(acts, datapath.SetEthernet(s))
	}
	if cur.EthType == packet.EtherTypeIPv4 {
		var s datapath.IPv4Set
		if cur.NwSrc != want.NwSrc {
			s.Src, s.Fields = want.NwSrc, s.Fields|datapath.SetSrc
		}
		if cur.NwDst != want.NwDst {
			s.Dst, s.Fields = want.NwDst, s.Fields|datapath.SetDst
		}
		if cur.NwTOS != want.NwTOS {
			s.TOS, s.Fields = want.NwTOS, s.Fields|datapath.SetTOS
		}
		if cur.NwTTL != want.NwTTL {
			s.TTL, s.Fields = want.NwTTL, s.Fields|datapath.SetTTL
		}
		if s.Fields != 0 {
			acts = append(acts, datapath.SetIPv4(s))
		}
		if cur.NwFrag != packet.FragLater && (cur.NwProto == packet.IPProtoTCP || cur.NwProto == packet.IPProtoUDP) {
			var l datapath.L4Set
			if cur.TpSrc != want.TpSrc {
				l.Src, l.Fields = want.TpSrc, l.Fields|datapath.SetSrc
			}
			if cur.TpDst != want.TpDst {
				l.Dst, l.Fields = want.TpDst, l.Fields|datapath.SetDst
			}
			if l.Fields != 0 {
				if cur.NwProto == packet.IPProtoTCP {
					acts = append(acts, datapath.SetTCP(l))
				} else {
					acts = append(acts, datapath.SetUDP(l))
				}
			}
		}
	}
	if cur.VLAN != want.VLAN {
		if cur.VLAN&packet.VLANPresent != 0 {
			acts = append(acts, datapath.PopVLAN())
		}
		if want.VLAN&packet.VLANPresent != 0 {
			acts = append(acts, datapath.PushVLAN(want.VLAN))
		}
	}
	return acts
}
