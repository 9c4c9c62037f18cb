package agent

import (
	"slices"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/sim"
)

// arrivalTags returns the tags of the flows that flow-state keys new to
// this host make stale. A simulation that looked a key up and found none
// tagged its flow with the key: a packet taken for a connection's first
// (a reply that conntrack did not know yet), a back end's reply sent on
// without the load balancer's translation (its binding not yet here). When
// the key appears, such flows must go, and so must the flows of a key whose
// binding changes (a 5-tuple re-used through another VIP). A key the host
// held already with the same binding changes nothing. own are the tags of the flow installed with the keys, which must
// not be refused for them (it made or brought them). Call it before the
// keys are committed or imported, and flowstate.Tables.Rebind after.
func arrivalTags(view flowstate.View, conns []flowstate.ConnKey, nats []flowstate.NATEntry, own []sim.Tag) []sim.Tag {
	var tags []sim.Tag
	add := func(t sim.Tag) {
		if !slices.Contains(own, t) && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	for _, k := range conns {
		if !view.HasConn(k) {
			add(sim.ConnTag(k))
		}
	}
	for _, e := range nats {
		if view.NATStale(e.Key, e.Binding) {
			add(sim.NATTag(e.Key))
		}
	}
	return tags
}
