package agent

import (
	"encoding/json"
	"net/netip"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// learnedRoutes is the agent's copy of the routes its routers learned by
// BGP (state keys any agent's speaker writes), kept per router in a
// sim.LearnedTable changed route by route: a full table costs each change
// what it changes, not a compilation of the whole table.
type learnedRoutes struct {
	byKey   map[string]sim.LearnedRoute
	pending map[topology.ID]map[topology.ID]learnedOp // router → route → its last change
	byRtr   map[topology.ID]*sim.LearnedTable
}

// learnedOp is a learned route's pending change: put, or delete.
type learnedOp struct {
	route sim.LearnedRoute
	del   bool
}

func newLearnedRoutes() learnedRoutes {
	return learnedRoutes{byKey: map[string]sim.LearnedRoute{}, pending: map[topology.ID]map[topology.ID]learnedOp{},
		byRtr: map[topology.ID]*sim.LearnedTable{}}
}

// apply applies a learned route's state key (value nil: deleted); the
// table changes at the next snapshot. A new route may take flows from
// shorter ones, or share them with equal ones: the router's flows are
// invalidated; a withdrawn one invalidates the flows that used it.
func (l *learnedRoutes) apply(key string, value []byte) []sim.Tag {
	if _, _, ok := nsdb.ParsePortRouteKey(key); !ok {
		return nil
	}
	old, had := l.byKey[key]
	if value == nil {
		if !had {
			return nil
		}
		delete(l.byKey, key)
		l.pend(old, true)
		return []sim.Tag{sim.RouteTag(old.ID)}
	}
	var rt topology.Route
	if err := json.Unmarshal(value, &rt); err != nil || rt.NextHopPort == nil {
		return nil
	}
	lr := sim.LearnedRoute{ID: rt.ID, Router: rt.RouterID, Port: *rt.NextHopPort, Dst: rt.DstPrefix(), Weight: rt.Weight}
	if rt.NextHopGateway != nil {
		lr.Gateway, _ = netip.ParseAddr(*rt.NextHopGateway)
	}
	if had && old == lr {
		return nil // written again (a lease renewal): nothing changes
	}
	if had && old.Router != lr.Router {
		l.pend(old, true)
	}
	l.byKey[key] = lr
	l.pend(lr, false)
	return []sim.Tag{sim.DeviceTag(lr.Router)}
}

// pend records a change for the next snapshot; a route's last change wins.
func (l *learnedRoutes) pend(lr sim.LearnedRoute, del bool) {
	m := l.pending[lr.Router]
	if m == nil {
		m = map[topology.ID]learnedOp{}
		l.pending[lr.Router] = m
	}
	m[lr.ID] = learnedOp{route: lr, del: del}
}

// tables applies the changes since the last call and returns the routers'
// tables (shared with the snapshots: never changed in place).
func (l *learnedRoutes) tables() map[topology.ID]*sim.LearnedTable {
	l.applyPending(nil)
	return l.byRtr
}

// flush applies the changes since the last call and gives the builder the
// tables that changed.
func (l *learnedRoutes) flush(b *sim.Builder) { l.applyPending(b) }

func (l *learnedRoutes) applyPending(b *sim.Builder) {
	for r, ops := range l.pending {
		var put, del []sim.LearnedRoute
		for _, op := range ops {
			if op.del {
				del = append(del, op.route)
			} else {
				put = append(put, op.route)
			}
		}
		if t := l.byRtr[r].With(put, del); t.Len() > 0 {
			l.byRtr[r] = t
		} else {
			delete(l.byRtr, r)
		}
		if b != nil {
			b.SetLearned(r, l.byRtr[r])
		}
	}
	clear(l.pending)
}
