package agent

import (
	"encoding/json"

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
}

func newDHCPCache() dhcpCache {
	return dhcpCache{v4: map[string]topology.DHCPSubnet{}, v6: map[string]topology.DHCPSubnetV6{},
		ifaces: map[string]topology.Interface{}}
}

// applyObject applies a put (value non-nil) or delete of a DHCP subnet. The
// flows of its bridge are invalidated: a bridge with DHCP masks its VMs'
// flows so that they never catch a DHCP request, one without does not.
func (c *dhcpCache) applyObject(kind, id string, value []byte, tags []sim.Tag) []sim.Tag {
	if kind == topology.KindDHCPSubnetV6 {
		return applyOwned(c.v6, id, value, tags, func(d topology.DHCPSubnetV6) topology.ID { return d.BridgeID })
	}
	return applyOwned(c.v4, id, value, tags, func(d topology.DHCPSubnet) topology.ID { return d.BridgeID })
}

// applyInterface applies a change of a host's published interface
// (/state/hosts/<id>/interfaces/<name>); other host keys are ignored.
func (c *dhcpCache) applyInterface(key string, value []byte) {
	if _, _, ok := nsdb.ParseHostInterfaceKey(key); !ok {
		return
	}
	if value == nil {
		delete(c.ifaces, key)
		return
	}
	var itf topology.Interface
	if json.Unmarshal(value, &itf) == nil {
		c.ifaces[key] = itf
	}
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
