package api

import (
	"encoding/json"
	"net/http"
	"net/netip"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// Nothing the API accepts is silently ignored: every field and value it
// stores either acts on packets through the agents, or is bookkeeping that
// had no effect on packets in MidoNet either (names, tenants, vifId, a
// route's attributes), or is refused here with the field named. The
// README's "What the API accepts" table lists each; a value that was
// stored before (by an older server) is kept on update, and the defaults
// MidoNet's clients always send (null, 0, false, the documented default)
// are accepted.

// notImplemented is the error for a value the API would store but no agent
// acts on: MidoNet's contract has it, this implementation does not do it,
// and storing it would let the operator believe it works.
func notImplemented(format string, args ...any) error {
	return errStatus(http.StatusNotImplemented, format, args...)
}

// refuseIgnored refuses, with 501 naming the field, the values of a create
// (old nil) or update that no agent would act on, and with 409 a second QoS
// rule of one type in a policy (only one of each type acts).
func (s *Server) refuseIgnored(tx *nsdb.Tx, o, old any) error {
	switch x := o.(type) {
	case *topology.Port:
		var was topology.Port
		if y, ok := old.(*topology.Port); ok {
			was = *y
		}
		return refusePort(x, &was)
	case *topology.Route:
		if x.Type == topology.RouteFip64 {
			return notImplemented("type Fip64: FIP64 routes (NAT64 through VPP) are not supported; use Normal, BlackHole, Reject or Local")
		}
	case *topology.Rule:
		if x.MeterName != nil && *x.MeterName != "" {
			return notImplemented("meterName %q: user meters (per-meter packet counts) are not supported; leave meterName null", *x.MeterName)
		}
	case *topology.TunnelZone:
		var was *string
		if y, ok := old.(*topology.TunnelZone); ok {
			was = y.Type
		}
		if x.Type != nil && *x.Type != topology.TunnelZoneVXLAN && (was == nil || *was != *x.Type) {
			why := "hosts tunnel with VXLAN only (UDP 6677)"
			if *x.Type == topology.TunnelZoneVTEP {
				why = "VTEP tunnel zones serve hardware VTEP gateways, which are not supported"
			}
			return notImplemented("type %s: %s; create a vxlan tunnel zone", *x.Type, why)
		}
	case *topology.Host:
		var was *topology.Host
		if y, ok := old.(*topology.Host); ok {
			was = y
		}
		return refuseHostWeights(x, was)
	case *topology.QOSBWLimitRule:
		return s.oneRulePerPolicy(tx, topology.KindQOSBWLimitRule, x.ID, x.PolicyID, "bandwidth-limit")
	case *topology.QOSDSCPRule:
		return s.oneRulePerPolicy(tx, topology.KindQOSDSCPRule, x.ID, x.PolicyID, "DSCP")
	}
	return nil
}

// refusePort refuses what a port would carry to no effect: VTEP router
// port fields, IPv6 router port addresses, and a VLAN id on a port bound
// to an interface (MidoNet reads a port's VLAN only on a VLAN-aware
// bridge's interior ports).
func refusePort(p, was *topology.Port) error {
	if p.RtrPortVNI != nil && *p.RtrPortVNI != 0 && (was.RtrPortVNI == nil || *was.RtrPortVNI != *p.RtrPortVNI) {
		return notImplemented("rtrPortVni %d: VTEP router ports (VXLAN towards hardware VTEPs) are not supported; leave rtrPortVni null", *p.RtrPortVNI)
	}
	if p.OffRampVxlan != nil && *p.OffRampVxlan && (was.OffRampVxlan == nil || !*was.OffRampVxlan) {
		return notImplemented("offRampVxlan: VTEP router ports (VXLAN towards hardware VTEPs) are not supported; leave offRampVxlan null or false")
	}
	for i, sub := range p.PortSubnet {
		pfx, err := netip.ParsePrefix(sub)
		if err != nil || pfx.Addr().Is4() || containsString(was.PortSubnet, sub) {
			continue
		}
		return notImplemented("portSubnet[%d] %s: IPv6 addresses on router ports are not supported (the routers route IPv4 only); give IPv4 subnets", i, sub)
	}
	if p.VLANID != 0 && p.IsExterior() && !(was.VLANID == p.VLANID && was.IsExterior()) {
		return notImplemented("vlanId %d on port %s, bound to interface %s: a VLAN id makes a port a VLAN-aware bridge's interior port, "+
			"which is linked, not bound (access ports that tag a bound interface's traffic are not supported); leave vlanId 0 or unbind the port",
			p.VLANID, p.ID, *p.InterfaceName)
	}
	return nil
}

// refuseHostWeights refuses scheduling weights other than the defaults and
// 0: the flooding proxy serves hardware VTEPs and the container weights
// schedule service containers, neither of which this implementation has.
// A 0 ("never here", also what a null decodes to) is true of every host.
func refuseHostWeights(h, was *topology.Host) error {
	changed := func(now, before, def int) bool { return now != def && now != 0 && (was == nil || now != before) }
	var before topology.Host
	if was != nil {
		before = *was
	}
	switch {
	case changed(h.FloodingProxyWeight, before.FloodingProxyWeight, 1):
		return notImplemented("floodingProxyWeight %d: flooding proxies serve hardware VTEP gateways, which are not supported; leave it 1", h.FloodingProxyWeight)
	case changed(h.ContainerWeight, before.ContainerWeight, 1):
		return notImplemented("containerWeight %d: service containers are not supported; leave it 1", h.ContainerWeight)
	case changed(h.ContainerLimit, before.ContainerLimit, -1):
		return notImplemented("containerLimit %d: service containers are not supported; leave it -1", h.ContainerLimit)
	case h.EnforceContainerLimit && (was == nil || !was.EnforceContainerLimit):
		return notImplemented("enforceContainerLimit: service containers are not supported; leave it false")
	}
	return nil
}

// oneRulePerPolicy refuses a second rule of one kind in a QoS policy: the
// agents apply one bandwidth limit and one DSCP mark per policy, as
// Neutron's QoS allows one rule of each type.
func (s *Server) oneRulePerPolicy(tx *nsdb.Tx, kind string, id topology.ID, policy *topology.ID, what string) error {
	if policy == nil {
		return nil
	}
	raws, err := tx.ListRaw(kind)
	if err != nil {
		return err
	}
	for _, b := range raws {
		var r struct {
			ID       topology.ID  `json:"id"`
			PolicyID *topology.ID `json:"policyId"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			continue
		}
		if r.ID != id && r.PolicyID != nil && *r.PolicyID == *policy {
			return conflict("QoS policy %s already has %s rule %s, and a policy applies one rule of each type; update that rule instead", policy, what, r.ID)
		}
	}
	return nil
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// refuseIPv6Group refuses an IPv6 member of an IP address group: conditions
// match IPv4 addresses only, so the member would match nothing.
func refuseIPv6Group(version int) error {
	if version == 6 {
		return notImplemented("version 6: IPv6 members of IP address groups are not supported (rules match IPv4 addresses only); add IPv4 addresses")
	}
	return nil
}
