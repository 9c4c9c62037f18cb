package sim

import (
	"cmp"
	"slices"
)

type routeKind uint8

const (
	routePort routeKind = iota
	routeLocal
	routeBlackhole
	routeReject
)

var routeKindNames = [...]string{"port", "local", "blackhole", "reject"}

func (k routeKind) String() string { return routeKindNames[k] }

type route struct {
	id         ID
	tag        Tag
	src, dst   prefix4
	kind       routeKind
	port       handle[port] // next-hop port (PORT and LOCAL routes)
	portID     ID
	gateway    [4]byte
	hasGateway bool
	weight     int
}

// routingTable finds routes by longest destination prefix. Routes are
// grouped by prefix length, each group a map from the masked destination to
// its routes sorted by weight; lookups try lengths from longest to shortest.
type routingTable struct {
	lengths []uint8 // distinct prefix lengths, longest first
	byLen   [33]map[uint32][]*route
}

func newRoutingTable(routes []*route) routingTable {
	var t routingTable
	for _, r := range routes {
		m := t.byLen[r.dst.bits]
		if m == nil {
			m = map[uint32][]*route{}
			t.byLen[r.dst.bits] = m
			t.lengths = append(t.lengths, r.dst.bits)
		}
		m[r.dst.addr] = append(m[r.dst.addr], r)
	}
	slices.SortFunc(t.lengths, func(a, b uint8) int { return cmp.Compare(b, a) })
	for _, m := range t.byLen {
		for _, rs := range m {
			// By weight, then id, so ECMP picks among a stable order.
			slices.SortFunc(rs, func(a, b *route) int {
				if c := cmp.Compare(a.weight, b.weight); c != 0 {
					return c
				}
				return slices.Compare(a.id[:], b.id[:])
			})
		}
	}
	return t
}

// lookup finds the longest destination prefix containing dst that has a
// route whose source prefix contains src, and returns that prefix's routes
// and the lowest weight among the matching ones; when none of a prefix's
// routes matches src, shorter prefixes are tried. The candidates are the
// returned routes with that weight whose source matches (see candidates).
// The slice aliases the table: callers must not modify it.
func (t *routingTable) lookup(src, dst uint32) (rs []*route, weight int, ok bool) {
	for _, l := range t.lengths {
		key := uint32(0)
		if l > 0 {
			key = dst &^ (^uint32(0) >> l)
		}
		rs := t.byLen[l][key]
		for _, r := range rs {
			if r.src.contains(src) {
				return rs, r.weight, true
			}
		}
	}
	return nil, 0, false
}

// candidates counts the routes of rs with the given weight that match src.
func candidates(rs []*route, src uint32, weight int) int {
	n := 0
	for _, r := range rs {
		if r.weight == weight && r.src.contains(src) {
			n++
		}
	}
	return n
}

// nthCandidate returns the i-th route counted by candidates.
func nthCandidate(rs []*route, src uint32, weight, i int) *route {
	for _, r := range rs {
		if r.weight == weight && r.src.contains(src) {
			if i == 0 {
				return r
			}
			i--
		}
	}
	return nil
}
