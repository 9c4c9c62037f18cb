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

// insertionPlan is what the L2 insertions compile to: MidoNet's cluster
// translates them into redirect chains (reference §2.12). Each protected
// port gets an inbound chain before its own and an outbound chain after its
// own, each service port an inbound chain before its own. A frame from the
// protected port's MAC entering the port, or to that MAC leaving it, is
// redirected out of the first service port; what the service sends back is
// redirected out of the next one, and after the last one back into the
// protected port (marked so that its chain lets it through) or out of it.
// Insertions are few per cloud: a change to any of them, or to a port one
// names, compiles the plan again and the ports it names.
type insertionPlan struct {
	chains    map[ID]*chain // the generated chains, by id
	protected map[ID]*protectedPort
	service   map[ID]ID // service port → its generated inbound chain
}

type protectedPort struct {
	in, out      ID // generated chains
	servicePorts []ID
}

// ports returns every port the plan changes.
func (pl *insertionPlan) ports() idSet {
	out := idSet{}
	if pl == nil {
		return out
	}
	for id := range pl.protected {
		out[id] = struct{}{}
	}
	for id := range pl.service {
		out[id] = struct{}{}
	}
	return out
}

// apply puts the plan's chains on compiled port p.
func (pl *insertionPlan) apply(ix *indexes, p *port) {
	if pl == nil {
		return
	}
	if pr, ok := pl.protected[p.id]; ok {
		p.inChains = append([]handle[chain]{ix.chains.of(pr.in)}, p.inChains...)
		p.outChains = append(p.outChains, ix.chains.of(pr.out))
		p.servicePorts = slices.Clone(pr.servicePorts)
	}
	if sc, ok := pl.service[p.id]; ok {
		// MidoNet's service ports have no outbound chains.
		p.inChains = append([]handle[chain]{ix.chains.of(sc)}, p.inChains...)
		p.service, p.outChains = true, nil
	}
}

// compileInsertions makes the insertion plan from the builder's insertions
// and ports. An insertion that names a missing port, a router port or no
// MAC is left out.
func (b *Builder) compileInsertions() *insertionPlan {
	pl := &insertionPlan{chains: map[ID]*chain{}, protected: map[ID]*protectedPort{}, service: map[ID]ID{}}
	bridgePort := func(id ID) bool {
		tp := b.ports[id]
		return tp != nil && tp.Type != topology.PortTypeRouter
	}
	byPort := map[ID][]*topology.L2Insertion{}
	for _, x := range b.insertions {
		if x.PortID == nil || x.SrvPortID == nil || x.MAC == nil {
			continue
		}
		if _, mok := topology.ParseMAC(*x.MAC); !mok || !bridgePort(*x.PortID) || !bridgePort(*x.SrvPortID) {
			continue
		}
		byPort[*x.PortID] = append(byPort[*x.PortID], x)
	}
	portH := b.ix.ports.of
	for pid, list := range byPort {
		slices.SortFunc(list, func(a, b *topology.L2Insertion) int {
			return cmp.Or(cmp.Compare(a.Position, b.Position), cmp.Compare(a.PortID.String(), b.PortID.String()),
				cmp.Compare(a.SrvPortID.String(), b.SrvPortID.String()), cmp.Compare(a.ID.String(), b.ID.String()))
		})
		in := pl.internalChain(pid, "InboundRedirect")
		out := pl.internalChain(pid, "OutboundRedirect")
		pp := &protectedPort{in: in.id, out: out.id}
		pl.protected[pid] = pp
		n := len(list)
		last := list[n-1]
		lastSrv := *last.SrvPortID
		lastMAC, _ := topology.ParseMAC(*last.MAC)
		// Back from the last service: into the protected port, marked
		// final; the port's chain then lets it through, tag removed.
		final := insertionRule(in, "final", condMAC(lastMAC, true).inPort(pid).vlanTCI(pcpFinal))
		final.popVLAN, final.action = true, actAccept
		back := insertionRule(in, "back", condMAC(lastMAC, true).inPort(lastSrv).vlanTCI(tagOf(last.VLAN, pcpIn)))
		back.popVLAN = last.VLAN != 0
		back.pushVLAN, back.action, back.redirect, back.redirectID, back.ingress = pcpFinal, actRedirect, portH(pid), pid, true
		backOut := insertionRule(out, "back", condMAC(lastMAC, false).inPort(lastSrv).vlanTCI(tagOf(last.VLAN, pcpOut)))
		backOut.popVLAN = last.VLAN != 0
		backOut.action, backOut.redirect, backOut.redirectID = actRedirect, portH(pid), pid
		in.rules = append(in.rules, final, back)
		out.rules = append(out.rules, backOut)
		// To each service, the latest first, as MidoNet orders them.
		for k := n - 1; k >= 0; k-- {
			x := list[k]
			m, _ := topology.ParseMAC(*x.MAC)
			srv := *x.SrvPortID
			ri := insertionRule(in, "to "+x.ID.String(), condMAC(m, true))
			ro := insertionRule(out, "to "+x.ID.String(), condMAC(m, false))
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
				r.action, r.redirect, r.redirectID, r.failOpen = actRedirect, portH(srv), srv, x.FailOpen
			}
			in.rules = append(in.rules, ri)
			out.rules = append(out.rules, ro)
			// The service port hands what comes back to the protected
			// port's chains.
			scID, ok := pl.service[srv]
			if !ok {
				scID = pl.internalChain(srv, "InboundRedirect").id
				pl.service[srv] = scID
			}
			sc := pl.chains[scID]
			ji := insertionRule(sc, "in "+x.ID.String(), condMAC(m, true).vlanTCI(tagOf(x.VLAN, pcpIn)))
			jo := insertionRule(sc, "out "+x.ID.String(), condMAC(m, false).vlanTCI(tagOf(x.VLAN, pcpOut)))
			ji.transform, jo.transform, ji.typ, jo.typ = false, false, topology.RuleJump, topology.RuleJump
			ji.action, ji.jump, ji.jumpID = actJump, b.ix.chains.of(in.id), in.id
			jo.action, jo.jump, jo.jumpID = actJump, b.ix.chains.of(out.id), out.id
			sc.rules = append(sc.rules, ji, jo)
			if !slices.Contains(pp.servicePorts, srv) {
				pp.servicePorts = append(pp.servicePorts, srv)
			}
		}
	}
	return pl
}

// tagOf is the TCI an insertion with VLAN vlan pushes with direction mark
// pcp, or 0 (no tag) for an insertion without VLAN.
func tagOf(vlan int, pcp uint16) uint16 {
	if vlan == 0 {
		return 0
	}
	return uint16(vlan)&0x0fff | pcp
}

// internalChain makes a chain the plan generates for port, with an id
// derived from it, so traces and flow tags name it stably.
func (pl *insertionPlan) internalChain(port ID, what string) *chain {
	id := uuid.NewSHA1(port, []byte(what))
	c := &chain{id: id, tag: DeviceTag(id), name: what + port.String()}
	pl.chains[id] = c
	return c
}

// insertionRule returns a transform rule of c with condition cd and an id
// derived from the chain and label.
func insertionRule(c *chain, label string, cd cond) rule {
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
