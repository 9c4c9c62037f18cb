package sim

import (
	"cmp"
	"slices"

	"github.com/google/uuid"

	"github.com/midonet/midonet/internal/topology"
)

// The priority bits of the VLAN tags an L2 insertion pushes mark which way
// a frame goes (MidoNet's L2InsertionTranslation): towards the protected
// port's VM (in), from it (out), or back into the protected port once past
// every service (final).
const (
	pcpIn    uint16 = 1 << 13
	pcpOut   uint16 = 2 << 13
	pcpFinal uint16 = 1 << 15
)

// compileInsertions turns the L2 insertions into redirect chains, as
// MidoNet's cluster translates them (reference §2.12): each protected port
// gets an inbound chain before its own and an outbound chain after its
// own, each service port an inbound chain before its own. A frame from
// the protected port's MAC entering the port, or to that MAC leaving it, is
// redirected out of the first service port; what the service sends back is
// redirected out of the next one, and after the last one back into the
// protected port (marked so that its chain lets it through) or out of it.
func (s *Snapshot) compileInsertions(ins []topology.L2Insertion) {
	byPort := map[ID][]*topology.L2Insertion{}
	for i := range ins {
		x := &ins[i]
		if x.PortID == nil || x.SrvPortID == nil || x.MAC == nil {
			continue
		}
		p, ok := s.ports[*x.PortID]
		sp, sok := s.ports[*x.SrvPortID]
		if _, mok := topology.ParseMAC(*x.MAC); !ok || !sok || !mok || p.bridge == nil || sp.bridge == nil {
			continue
		}
		byPort[p.id] = append(byPort[p.id], x)
	}
	srvChains := map[ID]*chain{}
	for pid, list := range byPort {
		slices.SortFunc(list, func(a, b *topology.L2Insertion) int {
			return cmp.Or(cmp.Compare(a.Position, b.Position), cmp.Compare(a.PortID.String(), b.PortID.String()),
				cmp.Compare(a.SrvPortID.String(), b.SrvPortID.String()))
		})
		p := s.ports[pid]
		in := s.internalChain(pid, "InboundRedirect")
		out := s.internalChain(pid, "OutboundRedirect")
		n := len(list)
		last := list[n-1]
		lastSrv := s.ports[*last.SrvPortID]
		lastMAC, _ := topology.ParseMAC(*last.MAC)
		// Back from the last service: into the protected port, marked
		// final; the port's chain then lets it through, tag removed.
		final := s.insertionRule(in, "final", condMAC(lastMAC, true).inPort(pid).vlanTCI(pcpFinal))
		final.popVLAN, final.action = true, actAccept
		back := s.insertionRule(in, "back", condMAC(lastMAC, true).inPort(lastSrv.id).vlanTCI(tagOf(last.VLAN, pcpIn)))
		back.popVLAN = last.VLAN != 0
		back.pushVLAN, back.action, back.redirect, back.redirectID, back.ingress = pcpFinal, actRedirect, p, pid, true
		backOut := s.insertionRule(out, "back", condMAC(lastMAC, false).inPort(lastSrv.id).vlanTCI(tagOf(last.VLAN, pcpOut)))
		backOut.popVLAN = last.VLAN != 0
		backOut.action, backOut.redirect, backOut.redirectID = actRedirect, p, pid
		in.rules = append(in.rules, final, back)
		out.rules = append(out.rules, backOut)
		// To each service, the latest first, as MidoNet orders them.
		for k := n - 1; k >= 0; k-- {
			x := list[k]
			m, _ := topology.ParseMAC(*x.MAC)
			srv := s.ports[*x.SrvPortID]
			ri := s.insertionRule(in, "to "+x.ID.String(), condMAC(m, true))
			ro := s.insertionRule(out, "to "+x.ID.String(), condMAC(m, false))
			if k == 0 {
				ri.cond = ri.cond.inPort(pid)
			} else {
				prev := list[k-1]
				ri.cond = ri.cond.inPort(*prev.SrvPortID).vlanTCI(tagOf(prev.VLAN, pcpIn))
				ro.cond = ro.cond.inPort(*prev.SrvPortID).vlanTCI(tagOf(prev.VLAN, pcpOut))
				ri.popVLAN, ro.popVLAN = prev.VLAN != 0, prev.VLAN != 0
			}
			if x.VLAN != 0 {
				ri.pushVLAN, ro.pushVLAN = tagOf(x.VLAN, pcpIn), tagOf(x.VLAN, pcpOut)
			}
			for _, r := range []*rule{&ri, &ro} {
				r.action, r.redirect, r.redirectID, r.failOpen = actRedirect, srv, srv.id, x.FailOpen
			}
			in.rules = append(in.rules, ri)
			out.rules = append(out.rules, ro)
			// The service port hands what comes back to the protected
			// port's chains.
			sc, ok := srvChains[srv.id]
			if !ok {
				sc = s.internalChain(srv.id, "InboundRedirect")
				srvChains[srv.id] = sc
				srv.inChains = append([]*chain{sc}, srv.inChains...)
			}
			ji := s.insertionRule(sc, "in "+x.ID.String(), condMAC(m, true).vlanTCI(tagOf(x.VLAN, pcpIn)))
			jo := s.insertionRule(sc, "out "+x.ID.String(), condMAC(m, false).vlanTCI(tagOf(x.VLAN, pcpOut)))
			ji.transform, jo.transform, ji.typ, jo.typ = false, false, topology.RuleJump, topology.RuleJump
			ji.action, ji.jump, ji.jumpID = actJump, in, in.id
			jo.action, jo.jump, jo.jumpID = actJump, out, out.id
			sc.rules = append(sc.rules, ji, jo)
			srv.service = true
			if !slices.Contains(p.servicePorts, srv.id) {
				p.servicePorts = append(p.servicePorts, srv.id)
			}
		}
		p.inChains = append([]*chain{in}, p.inChains...)
		p.outChains = append(p.outChains, out)
	}
	// MidoNet's service ports have no outbound chains.
	for _, p := range s.ports {
		if p.service {
			p.outChains = nil
		}
	}
}

// tagOf is the TCI an insertion with VLAN vlan pushes with direction mark
// pcp, or 0 (no tag) for an insertion without VLAN.
func tagOf(vlan int, pcp uint16) uint16 {
	if vlan == 0 {
		return 0
	}
	return uint16(vlan)&0x0fff | pcp
}

// internalChain makes a chain the snapshot generates for port, with an id
// derived from it, so traces and flow tags name it stably.
func (s *Snapshot) internalChain(port ID, what string) *chain {
	id := uuid.NewSHA1(port, []byte(what))
	c := &chain{id: id, tag: DeviceTag(id), name: what + port.String()}
	s.chains[id] = c
	s.names[id] = c.name
	return c
}

// insertionRule returns a transform rule of c with condition cd and an id
// derived from the chain and label.
func (s *Snapshot) insertionRule(c *chain, label string, cd cond) rule {
	return rule{id: uuid.NewSHA1(c.id, []byte(label)), typ: topology.RuleL2Transform, cond: cd, transform: true}
}

// condMAC matches frames from (src) or to mac.
func condMAC(mac [6]byte, src bool) cond {
	if src {
		return cond{set: cfDlSrc, dlSrc: mac, dlSrcMask: broadcastMAC}
	}
	return cond{set: cfDlDst, dlDst: mac, dlDstMask: broadcastMAC}
}

func (c cond) inPort(id ID) cond {
	c.set |= cfInPorts
	c.inPorts = []ID{id}
	return c
}

// vlanTCI adds a match on the whole tag (priority and VLAN id) when tci is
// not 0.
func (c cond) vlanTCI(tci uint16) cond {
	if tci == 0 {
		return c
	}
	c.set |= cfVLAN
	c.vlan, c.vlanMask = tci, 0xefff
	return c
}
