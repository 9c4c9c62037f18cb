package agent

import (
	"errors"
	"slices"
	"strings"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// serviceCache is the agent's copy of what it acts on besides devices,
// ports and chains: L4 load balancers, mirrors, QoS rules and L2
// insertions. The simulation reads all but the bandwidth limits, which the
// agent applies to the datapath ports of its host.
type serviceCache struct {
	lbs        map[string]topology.LoadBalancer
	pools      map[string]topology.Pool
	members    map[string]topology.PoolMember
	vips       map[string]topology.VIP
	mirrors    map[string]topology.Mirror
	bwRules    map[string]topology.QOSBWLimitRule
	dscpRules  map[string]topology.QOSDSCPRule
	insertions map[string]topology.L2Insertion
}

func newServiceCache() serviceCache {
	return serviceCache{
		lbs: map[string]topology.LoadBalancer{}, pools: map[string]topology.Pool{},
		members: map[string]topology.PoolMember{}, vips: map[string]topology.VIP{},
		mirrors: map[string]topology.Mirror{}, bwRules: map[string]topology.QOSBWLimitRule{},
		dscpRules: map[string]topology.QOSDSCPRule{}, insertions: map[string]topology.L2Insertion{},
	}
}

// apply applies a put (value non-nil) or delete of a service object and
// returns the tags of the flows it may change; ok is false for a kind that
// is not a service's. topo gives the devices a QoS rule reaches.
func (c *serviceCache) apply(kind, id string, value []byte, topo *topoCache) (tags []sim.Tag, ok bool) {
	dev := func(ids ...*topology.ID) {
		for _, x := range ids {
			if x != nil {
				tags = append(tags, sim.DeviceTag(*x))
			}
		}
	}
	switch kind {
	case topology.KindLoadBalancer:
		old, had := c.lbs[id]
		apply(c.lbs, id, value)
		x, has := c.lbs[id]
		for _, l := range []struct {
			l  topology.LoadBalancer
			ok bool
		}{{old, had}, {x, has}} {
			if l.ok {
				dev(&l.l.ID, l.l.RouterID)
			}
		}
	case topology.KindPool:
		old, had := c.pools[id]
		apply(c.pools, id, value)
		x, has := c.pools[id]
		if had {
			dev(&old.ID, old.LoadBalancerID)
		}
		if has {
			dev(&x.ID, x.LoadBalancerID)
		}
	case topology.KindPoolMember:
		old, had := c.members[id]
		apply(c.members, id, value)
		x, has := c.members[id]
		if had {
			dev(old.PoolID)
		}
		if has {
			dev(x.PoolID)
		}
	case topology.KindVIP:
		old, had := c.vips[id]
		apply(c.vips, id, value)
		x, has := c.vips[id]
		if had {
			dev(old.LoadBalancerID, old.PoolID)
		}
		if has {
			dev(x.LoadBalancerID, x.PoolID)
		}
	case topology.KindMirror:
		apply(c.mirrors, id, value)
		if uid, err := topology.ParseID(id); err == nil {
			dev(&uid)
		}
	case topology.KindQOSDSCPRule:
		old, had := c.dscpRules[id]
		apply(c.dscpRules, id, value)
		x, has := c.dscpRules[id]
		if had {
			tags = append(tags, policyTags(old.PolicyID, topo)...)
		}
		if has {
			tags = append(tags, policyTags(x.PolicyID, topo)...)
		}
	case topology.KindQOSBWLimitRule:
		apply(c.bwRules, id, value) // applied to the datapath, not simulated
	case topology.KindL2Insertion:
		old, had := c.insertions[id]
		apply(c.insertions, id, value)
		x, has := c.insertions[id]
		if had {
			dev(old.PortID, old.SrvPortID)
		}
		if has {
			dev(x.PortID, x.SrvPortID)
		}
	default:
		return nil, false
	}
	return tags, true
}

// policyTags are the tags of the flows a QoS policy's DSCP mark affects:
// the ports that have it, and the bridges that have it (every flow
// through a bridge carries its tag).
func policyTags(policy *topology.ID, topo *topoCache) []sim.Tag {
	if policy == nil {
		return nil
	}
	var tags []sim.Tag
	for _, p := range topo.ports {
		if p.QOSPolicyID != nil && *p.QOSPolicyID == *policy {
			tags = append(tags, sim.DeviceTag(p.ID))
		}
	}
	for _, b := range topo.bridges {
		if b.QOSPolicyID != nil && *b.QOSPolicyID == *policy {
			tags = append(tags, sim.DeviceTag(b.ID))
		}
	}
	return tags
}

// fill puts the services into a snapshot's input.
func (c *serviceCache) fill(in *sim.SnapshotInput) {
	in.LoadBalancers, in.Pools, in.PoolMembers, in.VIPs = values(c.lbs), values(c.pools), values(c.members), values(c.vips)
	in.Mirrors, in.DSCPRules, in.L2Insertions = values(c.mirrors), values(c.dscpRules), values(c.insertions)
}

// rateLimit is the bandwidth limit of port p: its QoS policy's, or if it
// has none its bridge's (reference §2.11); zero for none. A policy's
// limit is its first bandwidth-limit rule by id, as MidoNet keeps one.
// The burst is the rule's (in kilobits) or, if unset, 80% of a second's
// worth (Neutron's default), and at least two full frames.
func (c *serviceCache) rateLimit(p *topology.Port, bridges map[string]topology.Bridge) datapath.RateLimit {
	policy := p.QOSPolicyID
	if policy == nil && p.Type == topology.PortTypeBridge {
		if b, ok := bridges[p.DeviceID.String()]; ok {
			policy = b.QOSPolicyID
		}
	}
	if policy == nil {
		return datapath.RateLimit{}
	}
	var rules []topology.QOSBWLimitRule
	for _, r := range c.bwRules {
		if r.PolicyID != nil && *r.PolicyID == *policy && r.MaxKbps > 0 {
			rules = append(rules, r)
		}
	}
	if len(rules) == 0 {
		return datapath.RateLimit{}
	}
	slices.SortFunc(rules, func(a, b topology.QOSBWLimitRule) int { return strings.Compare(a.ID.String(), b.ID.String()) })
	r := rules[0]
	l := datapath.RateLimit{BitsPerSecond: uint64(r.MaxKbps) * 1000}
	burstKb := uint64(r.MaxKbps) * 8 / 10
	if r.MaxBurstKb != nil && *r.MaxBurstKb > 0 {
		burstKb = uint64(*r.MaxBurstKb)
	}
	l.BurstBytes = max(burstKb*1000/8, 2*1514)
	return l
}

// applyRateLimits gives each port bound here the bandwidth limit of its
// QoS policy, changing only what changed. A datapath that cannot police
// its ports gets none, and the agent says so for each limited port.
func (a *Agent) applyRateLimits() {
	rl, ok := a.dp.(datapath.PortRateLimiter)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.limits == nil {
		a.limits = map[datapath.PortNo]datapath.RateLimit{}
	}
	want := map[datapath.PortNo]datapath.RateLimit{}
	for id, b := range a.bound {
		p, found := a.topo.ports[id.String()]
		if !found {
			continue
		}
		if l := a.topo.svc.rateLimit(&p, a.topo.bridges); l.BitsPerSecond != 0 {
			want[b.dp] = l
		}
	}
	for no, l := range want {
		if a.limits[no] == l {
			continue
		}
		// Recorded even when it fails, so that the error is logged once
		// per change rather than at every rebuild.
		a.limits[no] = l
		if !ok {
			a.log.Error("bandwidth limit not enforced: this datapath cannot police its ports", "dp_port", no,
				"kbps", l.BitsPerSecond/1000)
			continue
		}
		if err := rl.SetPortRateLimit(no, l); err != nil {
			a.log.Error("bandwidth limit not enforced", "dp_port", no, "kbps", l.BitsPerSecond/1000, "err", err)
			continue
		}
		a.log.Info("bandwidth limit set", "dp_port", no, "kbps", l.BitsPerSecond/1000, "burst_bytes", l.BurstBytes)
	}
	for no := range a.limits {
		if _, keep := want[no]; keep {
			continue
		}
		if ok {
			if err := rl.SetPortRateLimit(no, datapath.RateLimit{}); err != nil && !errors.Is(err, datapath.ErrPortNotFound) {
				a.log.Warn("bandwidth limit not removed", "dp_port", no, "err", err)
			}
		}
		delete(a.limits, no)
		a.log.Info("bandwidth limit removed", "dp_port", no)
	}
}
