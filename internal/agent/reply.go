package agent

import (
	"slices"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/flows"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
	"github.com/midonet/midonet/internal/translate"
)

// The reply of a stateful connection (SNAT, conntrack) is exact-match: each
// new connection's first reply misses the datapath, goes up and is
// simulated (reverse NAT, the conntrack lookup), a second upcall per
// connection. When the forward packet leaves through a port bound here,
// its reply arrives on that port with a match the forward simulation
// determines, so the worker simulates that reply at once, with the state it
// just committed, and installs its flow beside the forward one, both
// before the forward packet leaves: the reply then never leaves the
// datapath, even when the peer answers while the worker is still busy.
// This is MidoNet's semantics unchanged: the reply's flow is what
// simulating the reply would install (only a simulation with no side
// effect is installed), and it carries the forward flow's tags too and
// expires with it, so it goes whenever the forward flow is invalidated.
// Flow state was replicated by the forward packet as always, so a reply
// arriving on another host is simulated there.

// replyPlan is what the forward simulation says about its reply.
type replyPlan struct {
	ok      bool
	port    topology.ID // the forward egress, where the reply enters
	match   sim.Match   // the reply's (translate.Reply)
	tags    []sim.Tag   // the forward flow's
	expires time.Time   // the forward flow's
	// The forward packet, sent once the reply's flow is in.
	frame  []byte
	acts   []datapath.Action
	inPort datapath.PortNo
}

// planReply returns the reply plan of a stateful forward result that
// leaves through one port bound here.
func planReply(orig *sim.Match, res *sim.Result, local map[topology.ID]datapath.PortNo, e *flows.Entry) replyPlan {
	if !res.IsStateful() || len(res.Egress) != 1 {
		return replyPlan{}
	}
	dp, ok := local[res.Egress[0].Port]
	if !ok {
		return replyPlan{}
	}
	m, ok := translate.Reply(orig, &res.Egress[0], dp)
	if !ok {
		return replyPlan{}
	}
	return replyPlan{ok: true, port: res.Egress[0].Port, match: m, tags: e.Tags, expires: e.Expires}
}

// installReply simulates the planned reply and installs its flow, unless
// the simulation has effects only a real packet may have: creating flow
// state, learning, generating packets, asking for ARP, tracing.
func (w *worker) installReply(p *replyPlan, now time.Time) {
	// A simulation of its own, reading the tables afresh: the forward
	// packet's state arrived (arrivalTags) after the forward flow's
	// generation, which would refuse a flow that depends on it.
	since := w.a.flows.Generation()
	t, snap := w.a.ports.Load(), w.a.snap.Load()
	if snap == nil {
		return
	}
	pkt := sim.Packet{Port: p.port, Match: p.match}
	start := time.Now()
	res := w.sim.Simulate(snap, w.view, &pkt, now)
	w.a.metrics.simulated(res.Kind)
	w.a.metrics.simLatency.Observe(time.Since(start).Seconds())
	if !replyInstallable(res) {
		w.a.metrics.repliesSkipped.Inc()
		return
	}
	acts, drops := translate.Flow(nil, &pkt.Match, res.Egress, &t.Ports, snap)
	if drops != (translate.Drops{}) {
		w.a.metrics.repliesSkipped.Inc()
		return
	}
	tags := slices.Clone(p.tags)
	for _, tag := range res.Tags {
		if !slices.Contains(tags, tag) {
			tags = append(tags, tag)
		}
	}
	if w.a.flows.Add(&flows.Entry{Key: p.match.FlowKey, Mask: res.Mask, Actions: acts, Tags: tags, Expires: p.expires, Since: since}) {
		w.a.metrics.repliesInstalled.Inc()
	} else {
		w.a.metrics.repliesSkipped.Inc()
	}
}

// replyInstallable reports whether a reply simulated ahead of its packet
// may be installed as a flow: forwarded, and nothing done that only the
// packet itself may do.
func replyInstallable(res *sim.Result) bool {
	return res.Kind == sim.Forward && len(res.Egress) > 0 && !res.IsStateful() && len(res.StatePorts) == 0 &&
		len(res.LearnedMACs) == 0 && len(res.LearnedARP) == 0 && len(res.Generated) == 0 &&
		len(res.ARPRefresh) == 0 && len(res.TraceRequests) == 0 && res.DHCP == sim.DHCPNone
}
