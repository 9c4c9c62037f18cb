package api

import (
	"net/http"
	"slices"

	"github.com/midonet/midonet/internal/topology"
)

// notImplemented is the error for what the API would store but no agent
// acts on: MidoNet's contract has it, this implementation does not do it
// yet, and storing it silently would let a user believe it works.
func notImplemented(format string, args ...any) error {
	return errStatus(http.StatusNotImplemented, format, args...)
}

// notActedOn refuses, with 501 naming it, the part of a create (old nil) or
// update that would take effect but that no agent acts on yet. It looks at
// what makes an object take effect (a load balancer attached to a router, a
// mirror attached to a device), not at the objects themselves, which do
// nothing until attached, as in MidoNet. Values that were stored before are
// kept on update.
func notActedOn(o, old any) error {
	switch x := o.(type) {
	case *topology.Router:
		var was topology.Router
		if y, ok := old.(*topology.Router); ok {
			was = *y
		}
		if newRef(x.LoadBalancerID, was.LoadBalancerID) {
			return notImplemented("loadBalancerId: the agents do not load-balance yet, so a load balancer attached to router %s would not balance; leave loadBalancerId null", x.ID)
		}
		if newIDs(x.InboundMirrorIDs, was.InboundMirrorIDs) || newIDs(x.OutboundMirrorIDs, was.OutboundMirrorIDs) {
			return notImplemented("inboundMirrorIds/outboundMirrorIds: the agents do not mirror traffic yet; leave router %s's mirror lists empty", x.ID)
		}
	case *topology.Bridge:
		var was topology.Bridge
		if y, ok := old.(*topology.Bridge); ok {
			was = *y
		}
		if newIDs(x.InboundMirrorIDs, was.InboundMirrorIDs) || newIDs(x.OutboundMirrorIDs, was.OutboundMirrorIDs) {
			return notImplemented("inboundMirrorIds/outboundMirrorIds: the agents do not mirror traffic yet; leave bridge %s's mirror lists empty", x.ID)
		}
		if newRef(x.QOSPolicyID, was.QOSPolicyID) {
			return notImplemented("qosPolicyId: the agents do not apply QoS policies yet; leave bridge %s's qosPolicyId null", x.ID)
		}
	case *topology.Port:
		var was topology.Port
		if y, ok := old.(*topology.Port); ok {
			was = *y
		}
		if newIDs(x.InboundMirrorIDs, was.InboundMirrorIDs) || newIDs(x.OutboundMirrorIDs, was.OutboundMirrorIDs) ||
			newIDs(x.PostInFilterMirrorIDs, was.PostInFilterMirrorIDs) || newIDs(x.PreOutFilterMirrorIDs, was.PreOutFilterMirrorIDs) {
			return notImplemented("inboundMirrorIds/outboundMirrorIds/postInFilterMirrorIds/preOutFilterMirrorIds: the agents do not mirror traffic yet; leave port %s's mirror lists empty", x.ID)
		}
		if newRef(x.QOSPolicyID, was.QOSPolicyID) {
			return notImplemented("qosPolicyId: the agents do not apply QoS policies yet; leave port %s's qosPolicyId null", x.ID)
		}
	case *topology.Pool:
		var was topology.Pool
		if y, ok := old.(*topology.Pool); ok {
			was = *y
		}
		if newRef(x.HealthMonitorID, was.HealthMonitorID) {
			return notImplemented("healthMonitorId: no agent runs health monitors yet; leave pool %s's healthMonitorId null", x.ID)
		}
	case *topology.L2Insertion:
		return notImplemented("L2 insertions: the agents do not insert services in a port's path yet")
	case *topology.Rule:
		if x.Type == topology.RuleL2Transform {
			return notImplemented("rule type l2_transform: the agents do not apply L2 transform and redirect rules yet; use another rule type")
		}
	}
	return nil
}

// newIDs reports whether ids holds an id that was not in before.
func newIDs(ids, before []topology.ID) bool {
	for _, id := range ids {
		if !slices.Contains(before, id) {
			return true
		}
	}
	return false
}

// newRef reports whether ref is set and differs from before.
func newRef(ref, before *topology.ID) bool {
	return ref != nil && (before == nil || *before != *ref)
}
