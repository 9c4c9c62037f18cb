// Package trace simulates a packet the operator describes through the
// virtual topology, exactly as an agent would simulate the first packet of
// a flow, and reports what each device did: the ports crossed, each chain
// evaluated and rule matched, NAT applied, the route chosen, then where the
// packet leaves and with which rewrites, or why it is dropped, and the flow
// the agent would install.
//
// It needs no agent: it reads the topology and the state tables through
// MidoNet's REST API (a Reader), compiles the snapshot an agent would, and
// asks the simulator for a traced result. `midonet trace` runs it against
// the API over HTTP; the cluster runs it for `POST /midonet-api/simulate`
// (the web console's trace) against its own API in process, with the
// caller's credentials, so both give the same report.
package trace

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// seed seeds the simulator's random choices (NAT ports, DNAT targets) so
// that two traces of one packet report the same thing.
const seed = 1

// ErrNoSuchPort is wrapped by Run's error when the request's port does
// not exist (or the caller may not see it).
var ErrNoSuchPort = errors.New("no such port")

// Topology is the topology read from the API: the simulator's input plus
// what the report needs to name objects.
type Topology struct {
	in      sim.SnapshotInput
	ports   map[topology.ID]*topology.Port
	devices map[topology.ID]string // bridge, router and chain names
	kinds   map[topology.ID]string // "bridge", "router", "port", "chain", "rule"
	rules   map[topology.ID]ruleRef
}

// ruleRef places a rule in its chain.
type ruleRef struct {
	chain    topology.ID
	position int
}

// Run checks the request, reads the topology through rd and simulates the
// packet. A bad request gives a *FieldError.
func Run(ctx context.Context, rd Reader, req *Request) (*Report, error) {
	p, err := req.probe()
	if err != nil {
		return nil, err
	}
	t, err := Load(ctx, rd)
	if err != nil {
		return nil, err
	}
	return t.simulate(p)
}

// simulate fills the probe's MACs from the topology and runs it.
func (t *Topology) simulate(p *probe) (*Report, error) {
	if _, ok := t.ports[p.port]; !ok {
		return nil, &FieldError{Field: "portId", msg: fmt.Sprintf("{portId} %s: %s", p.port, ErrNoSuchPort), err: ErrNoSuchPort}
	}
	if err := t.defaultMACs(p); err != nil {
		return nil, err
	}
	snap, err := sim.NewSnapshot(t.in)
	if err != nil {
		return nil, fmt.Errorf("compile the topology: %w", err)
	}
	frame := p.frame()
	m, ok := sim.MatchFromFrame(frame)
	if !ok {
		return nil, errors.New("the probe frame does not decode") // a bug of frame()
	}
	sm := sim.NewSimulator(seed)
	sm.MatchICMPID(p.matchICMPID)
	res := sm.Simulate(snap, nil, &sim.Packet{Port: p.port, Match: m, Frame: frame, Trace: true}, time.Now())
	rep := t.report(p.port, &m, res)
	if p.userspace {
		k, why := t.inKernel(p.port, &m, res)
		rep.InKernel, rep.Where = &k, why
	}
	return rep, nil
}

// defaultMACs fills the MACs the request left out, as Request documents.
func (t *Topology) defaultMACs(p *probe) error {
	in := t.ports[p.port]
	if !p.srcSet {
		p.srcMAC = [6]byte{}
		found := false
		for _, e := range t.in.IPMACTable {
			if e.Bridge == in.DeviceID && e.IP == p.src {
				p.srcMAC, found = e.MAC, true
				break
			}
		}
		if !found {
			if _, err := rand.Read(p.srcMAC[:]); err != nil {
				return err
			}
			p.srcMAC[0] = p.srcMAC[0]&^1 | 2 // unicast, locally administered
		}
	}
	if p.dstSet {
		return nil
	}
	p.dstMAC = packet.BroadcastMAC
	switch {
	case p.arp:
	case in.IsRouterPort():
		if in.PortMAC != nil {
			if mac, ok := topology.ParseMAC(*in.PortMAC); ok {
				p.dstMAC = mac
			}
		}
	default:
		if mac, ok := t.gatewayMAC(in.DeviceID, p.src, p.dst); ok {
			p.dstMAC = mac
			return nil
		}
		for _, e := range t.in.IPMACTable {
			if e.Bridge == in.DeviceID && e.IP == p.dst {
				p.dstMAC = e.MAC
				break
			}
		}
	}
	return nil
}

// gatewayMAC returns the MAC of the router port linked to bridge that owns
// dst, or else of one whose subnet holds src but not dst.
func (t *Topology) gatewayMAC(bridge topology.ID, src, dst netip.Addr) ([6]byte, bool) {
	var gw *topology.Port
	// Map order is random: visit the ports by id so the choice is stable.
	ids := make([]topology.ID, 0, len(t.ports))
	for id := range t.ports {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b topology.ID) int { return cmp.Compare(a.String(), b.String()) })
	for _, id := range ids {
		bp := t.ports[id]
		if bp.DeviceID != bridge || bp.PeerID == nil {
			continue
		}
		rp, ok := t.ports[*bp.PeerID]
		if !ok || !rp.IsRouterPort() || rp.PortMAC == nil {
			continue
		}
		pfx, ok := routerPortPrefix(rp)
		if !ok {
			continue
		}
		if pfx.Addr() == dst {
			gw = rp
			break
		}
		if gw == nil && pfx.Contains(src) && !pfx.Contains(dst) {
			gw = rp
		}
	}
	if gw == nil {
		return [6]byte{}, false
	}
	return topology.ParseMAC(*gw.PortMAC)
}
