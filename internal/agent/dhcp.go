package agent

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// DHCP is answered inside the simulation (package sim, package dhcp): the
// agent only keeps what the snapshot needs — the bridges' DHCP subnets and
// the hosts' published interfaces, whose MTUs give the underlay's — and
// counts what the bridges' servers did.

// dhcpCache is the part of the topology cache DHCP reads.
type dhcpCache struct {
	v4     map[string]topology.DHCPSubnet
	v6     map[string]topology.DHCPSubnetV6
	ifaces map[string]topology.Interface // by state key
	// byBridge are the ids of each bridge's subnets, v4 and v6.
	byBridge map[topology.ID]map[string]struct{}
}

func newDHCPCache() dhcpCache {
	return dhcpCache{v4: map[string]topology.DHCPSubnet{}, v6: map[string]topology.DHCPSubnetV6{},
		ifaces: map[string]topology.Interface{}, byBridge: map[topology.ID]map[string]struct{}{}}
}

// bridgeOf returns the bridge of the cached subnet kind/id.
func (c *dhcpCache) bridgeOf(kind, id string) (topology.ID, bool) {
	if kind == topology.KindDHCPSubnetV6 {
		d, ok := c.v6[id]
		return d.BridgeID, ok
	}
	d, ok := c.v4[id]
	return d.BridgeID, ok
}

// ofBridge returns the subnets of bridge br, in id order.
func (c *dhcpCache) ofBridge(br topology.ID) ([]topology.DHCPSubnet, []topology.DHCPSubnetV6) {
	var v4 []topology.DHCPSubnet
	var v6 []topology.DHCPSubnetV6
	for _, id := range slices.Sorted(maps.Keys(c.byBridge[br])) {
		if d, ok := c.v4[id]; ok && d.BridgeID == br {
			v4 = append(v4, d)
		}
		if d, ok := c.v6[id]; ok && d.BridgeID == br {
			v6 = append(v6, d)
		}
	}
	return v4, v6
}

// index moves subnet id from bridge from (if had) to bridge to (if has).
func (c *dhcpCache) index(id string, from topology.ID, had bool, to topology.ID, has bool) {
	if had {
		if m := c.byBridge[from]; m != nil {
			delete(m, id)
			if len(m) == 0 {
				delete(c.byBridge, from)
			}
		}
	}
	if has {
		m := c.byBridge[to]
		if m == nil {
			m = map[string]struct{}{}
			c.byBridge[to] = m
		}
		m[id] = struct{}{}
	}
}

// applyObject applies a put (value non-nil) or delete of a DHCP subnet. The
// flows of its bridge are invalidated: a bridge with DHCP masks its VMs'
// flows so that they never catch a DHCP request, one without does not.
func (c *dhcpCache) applyObject(kind, id string, value []byte, tags []sim.Tag) []sim.Tag {
	from, had := c.bridgeOf(kind, id)
	if kind == topology.KindDHCPSubnetV6 {
		tags = applyOwned(c.v6, id, value, tags, func(d topology.DHCPSubnetV6) topology.ID { return d.BridgeID })
	} else {
		tags = applyOwned(c.v4, id, value, tags, func(d topology.DHCPSubnet) topology.ID { return d.BridgeID })
	}
	to, has := c.bridgeOf(kind, id)
	c.index(id, from, had, to, has)
	return tags
}

// applyInterface applies a change of a host's published interface
// (/state/hosts/<id>/interfaces/<name>) and reports whether it was one;
// other host keys are ignored.
func (c *dhcpCache) applyInterface(key string, value []byte) bool {
	if _, _, ok := nsdb.ParseHostInterfaceKey(key); !ok {
		return false
	}
	if value == nil {
		delete(c.ifaces, key)
		return true
	}
	var itf topology.Interface
	if json.Unmarshal(value, &itf) == nil {
		c.ifaces[key] = itf
	}
	return true
}

// fill adds the DHCP subnets and the underlay MTU to the simulation's input.
func (c *dhcpCache) fill(in *sim.SnapshotInput, zones map[string]topology.TunnelZone) {
	in.DHCPSubnets, in.DHCPSubnetsV6 = values(c.v4), values(c.v6)
	in.UnderlayMTU = topology.UnderlayMTU(values(zones), values(c.ifaces))
}

// registerDHCP creates the DHCP counters, one per event, resolved once.
func (m *Metrics) registerDHCP(register func(prometheus.Collector)) {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "agent", Name: "dhcp_total",
		Help: "DHCP requests from this host's VMs, by what the bridge's server did: offer, ack, nak, ignored " +
			"(consumed, no answer needed), no-lease and disabled (not answered), malformed (dropped)."}, []string{"event"})
	register(v)
	for e := sim.DHCPOffer; e <= sim.DHCPMalformed; e++ {
		m.dhcp[e] = v.WithLabelValues(e.String())
	}
	m.mssClamped = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "midonet", Subsystem: "agent",
		Name: "mss_clamped_total", Help: "TCP SYNs from local VMs towards the overlay whose MSS was lowered to fit the overlay."})
	register(m.mssClamped)
}

// dhcpEvent counts what a bridge's DHCP server did with a packet.
func (m *Metrics) dhcpEvent(e sim.DHCPEvent) {
	if e != sim.DHCPNone && int(e) < len(m.dhcp) {
		m.dhcp[e].Inc()
	}
}
