package sim

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
)

// LearnedRoute is a route a router learned through one of its ports (by
// BGP): from anywhere to Dst via Gateway out of Port.
type LearnedRoute struct {
	ID      ID
	Router  ID
	Port    ID
	Dst     netip.Prefix
	Gateway netip.Addr
	Weight  int
}

// learnedShards splits each prefix length's map, so that a change copies
// the shards it touches rather than the whole table.
const learnedShards = 1024

// LearnedTable is the immutable table of one router's learned routes. With
// returns a new table that shares every part the change does not touch, so
// that a router can hold a full BGP table (hundreds of thousands of
// prefixes) and each change costs what it changes, not what the table
// holds; the snapshot takes the table as it is, without compiling it. Its
// routes name their port by id: the snapshot they are used in resolves it,
// and a route through a port that is gone, down or inactive is skipped, as
// compiled routes are.
type LearnedTable struct {
	n       int
	counts  [33]int32 // prefixes of each length
	lengths []uint8   // lengths with prefixes, longest first
	byLen   [33]*learnedLevel
}

// learnedLevel holds the prefixes of one length: masked address → routes,
// sorted by weight then id.
type learnedLevel struct {
	shards [learnedShards]map[uint32][]*route
}

func shardOf(addr uint32) int { return int((addr * 2654435761) >> 22) } // Fibonacci hashing to 10 bits

// Len is the number of routes in the table.
func (t *LearnedTable) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// With returns the table with the routes of del removed and those of put
// added or replaced (matched by id). t is not changed; a nil t is empty.
// Routes that are not IPv4 are ignored.
func (t *LearnedTable) With(put, del []LearnedRoute) *LearnedTable {
	nt := &LearnedTable{}
	if t != nil {
		*nt = *t
	}
	// Copy-on-write: a level and a shard are copied the first time this
	// change touches them.
	copiedLevel := [33]bool{}
	copiedShard := map[[2]int]bool{}
	shard := func(bits uint8, addr uint32) map[uint32][]*route {
		if !copiedLevel[bits] {
			l := &learnedLevel{}
			if nt.byLen[bits] != nil {
				*l = *nt.byLen[bits]
			}
			nt.byLen[bits] = l
			copiedLevel[bits] = true
		}
		l := nt.byLen[bits]
		i := shardOf(addr)
		if k := [2]int{int(bits), i}; !copiedShard[k] {
			if l.shards[i] == nil {
				l.shards[i] = map[uint32][]*route{}
			} else {
				l.shards[i] = maps.Clone(l.shards[i])
			}
			copiedShard[k] = true
		}
		return l.shards[i]
	}
	for _, lr := range del {
		if !lr.Dst.Addr().Is4() {
			continue
		}
		dst := toPrefix4(lr.Dst)
		m := shard(dst.bits, dst.addr)
		rs := m[dst.addr]
		i := slices.IndexFunc(rs, func(r *route) bool { return r.id == lr.ID })
		if i < 0 {
			continue
		}
		rs = slices.Delete(slices.Clone(rs), i, i+1)
		nt.n--
		if len(rs) == 0 {
			delete(m, dst.addr)
			nt.counts[dst.bits]--
		} else {
			m[dst.addr] = rs
		}
	}
	for _, lr := range put {
		if !lr.Dst.Addr().Is4() {
			continue
		}
		dst := toPrefix4(lr.Dst)
		m := shard(dst.bits, dst.addr)
		r := &route{id: lr.ID, tag: RouteTag(lr.ID), dst: dst, kind: routePort, portID: lr.Port, weight: lr.Weight}
		if lr.Gateway.Is4() && !lr.Gateway.IsUnspecified() {
			r.gateway, r.hasGateway = lr.Gateway.As4(), true
		}
		rs := slices.Clone(m[dst.addr])
		if i := slices.IndexFunc(rs, func(x *route) bool { return x.id == lr.ID }); i >= 0 {
			rs[i] = r
		} else {
			if len(rs) == 0 {
				nt.counts[dst.bits]++
			}
			rs = append(rs, r)
			nt.n++
		}
		slices.SortFunc(rs, func(a, b *route) int {
			if c := cmp.Compare(a.weight, b.weight); c != 0 {
				return c
			}
			return slices.Compare(a.id[:], b.id[:])
		})
		m[dst.addr] = rs
	}
	nt.lengths = nil
	for l := 32; l >= 0; l-- {
		if nt.counts[l] > 0 {
			nt.lengths = append(nt.lengths, uint8(l))
		}
	}
	return nt
}

// learnedLookup finds the longest prefix of r's learned table containing
// dst that has a usable route, and returns that prefix's routes, its
// length and the lowest weight among its usable routes.
func (s *Simulator) learnedLookup(r *router, dst uint32) (rs []*route, bits uint8, weight int, ok bool) {
	t := r.learned
	if t == nil {
		return nil, 0, 0, false
	}
	for _, l := range t.lengths {
		key := uint32(0)
		if l > 0 {
			key = dst &^ (^uint32(0) >> l)
		}
		lvl := t.byLen[l]
		if lvl == nil {
			continue
		}
		rs := lvl.shards[shardOf(key)][key]
		for _, rt := range rs { // sorted by weight: the first usable is the lowest
			if s.learnedUsable(r, rt) {
				return rs, l, rt.weight, true
			}
		}
	}
	return nil, 0, 0, false
}

// learnedUsable reports whether a learned route can be used now: its port
// is one of the router's and, if exterior, up and active (as compiled
// routes are kept only then).
func (s *Simulator) learnedUsable(r *router, rt *route) bool {
	p := s.snap.portByID(rt.portID)
	return p != nil && p.device == r.id && p.router != 0 && (!p.exterior || (p.adminUp && p.active))
}

// learnedCandidates counts the usable routes of rs with the given weight.
func (s *Simulator) learnedCandidates(r *router, rs []*route, weight int) int {
	n := 0
	for _, rt := range rs {
		if rt.weight == weight && s.learnedUsable(r, rt) {
			n++
		}
	}
	return n
}

// nthLearned returns the i-th route counted by learnedCandidates.
func (s *Simulator) nthLearned(r *router, rs []*route, weight, i int) *route {
	for _, rt := range rs {
		if rt.weight == weight && s.learnedUsable(r, rt) {
			if i == 0 {
				return rt
			}
			i--
		}
	}
	return nil
}

// routeLookup picks the route of a packet from src to dst through r: the
// longest prefix among the compiled and the learned routes; at equal
// lengths the lowest weight; among equal routes of both, the connection's
// hash picks one, so that a connection keeps its path. A learned route is
// returned in scratch, with its port resolved.
func (s *Simulator) routeLookup(r *router, src, dst uint32, scratch *route) (*route, bool) {
	rs, weight, ok := r.table.lookup(src, dst)
	lrs, lbits, lweight, lok := s.learnedLookup(r, dst)
	if ok && lok {
		switch bits := rs[0].dst.bits; {
		case lbits > bits:
			ok = false
		case lbits < bits:
			lok = false
		case lweight < weight:
			ok = false
		case weight < lweight:
			lok = false
		}
	}
	n1, n2 := 0, 0
	if ok {
		n1 = candidates(rs, src, weight)
	}
	if lok {
		n2 = s.learnedCandidates(r, lrs, lweight)
	}
	if n1+n2 == 0 {
		return nil, false
	}
	choice := 0
	if n1+n2 > 1 {
		choice = int(s.connHash() % uint32(n1+n2))
	}
	if choice < n1 {
		return nthCandidate(rs, src, weight, choice), true
	}
	*scratch = *s.nthLearned(r, lrs, lweight, choice-n1)
	scratch.port = s.snap.ix.ports.get(scratch.portID)
	return scratch, true
}

// LearnedRoutes is the number of learned routes router holds.
func (s *Snapshot) LearnedRoutes(router ID) int {
	if r := s.routerByID(router); r != nil {
		return r.learned.Len()
	}
	return 0
}
