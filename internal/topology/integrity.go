package topology

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Object is a stored object.
type Object interface {
	Kind() string
	ObjectID() string
}

// Store is what integrity checks need from a transaction of the NSDB. Get
// returns an error wrapping ErrNotFound for a missing object.
type Store interface {
	Get(kind, id string, out any) error
	Exists(kind, id string) (bool, error)
	Create(o Object) error
	Put(o Object) error
	Delete(kind, id string) error
	ListRaw(kind string) ([][]byte, error)
	NextSequence(name string) (int64, error)
}

// ListOf decodes every object of a kind.
func ListOf[T Object](s Store) ([]T, error) {
	var zero T
	raws, err := s.ListRaw(zero.Kind())
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(raws))
	for _, b := range raws {
		var o T
		if err := json.Unmarshal(b, &o); err != nil {
			return nil, fmt.Errorf("decode %s: %w", Singular(zero.Kind()), err)
		}
		out = append(out, o)
	}
	return out, nil
}

// GetOf decodes one object.
func GetOf[T Object](s Store, id string) (T, error) {
	var o T
	err := s.Get(o.Kind(), id, &o)
	return o, err
}

// mustExist returns a 404 naming the field when a referenced object is absent.
func mustExist(s Store, kind string, id *ID, field string) error {
	if id == nil {
		return nil
	}
	ok, err := s.Exists(kind, id.String())
	if err != nil {
		return err
	}
	if !ok {
		return Errorf(ErrNotFound, "%s: %s %s does not exist", field, Singular(kind), id)
	}
	return nil
}

func mustExistAll(s Store, kind string, l []ID, field string) error {
	for i := range l {
		if err := mustExist(s, kind, &l[i], field); err != nil {
			return err
		}
	}
	return nil
}

// CheckRefs verifies that every bound reference of o names an existing
// object (404 otherwise). Ids inside rule conditions are not checked, as in
// MidoNet.
func CheckRefs(s Store, o Object) error {
	var errs []error
	chk := func(kind string, id *ID, field string) { errs = append(errs, mustExist(s, kind, id, field)) }
	chkAll := func(kind string, l []ID, field string) { errs = append(errs, mustExistAll(s, kind, l, field)) }
	switch x := o.(type) {
	case *Bridge:
		chk(KindChain, x.InboundFilterID, "inboundFilterId")
		chk(KindChain, x.OutboundFilterID, "outboundFilterId")
		chkAll(KindMirror, x.InboundMirrorIDs, "inboundMirrorIds")
		chkAll(KindMirror, x.OutboundMirrorIDs, "outboundMirrorIds")
		chk(KindQOSPolicy, x.QOSPolicyID, "qosPolicyId")
	case *Router:
		chk(KindChain, x.InboundFilterID, "inboundFilterId")
		chk(KindChain, x.OutboundFilterID, "outboundFilterId")
		chk(KindChain, x.LocalRedirectChainID, "localRedirectChainId")
		chk(KindChain, x.ForwardChainID, "forwardChainId")
		chk(KindLoadBalancer, x.LoadBalancerID, "loadBalancerId")
		chkAll(KindMirror, x.InboundMirrorIDs, "inboundMirrorIds")
		chkAll(KindMirror, x.OutboundMirrorIDs, "outboundMirrorIds")
	case *Port:
		chk(KindChain, x.InboundFilterID, "inboundFilterId")
		chk(KindChain, x.OutboundFilterID, "outboundFilterId")
		chkAll(KindMirror, x.InboundMirrorIDs, "inboundMirrorIds")
		chkAll(KindMirror, x.OutboundMirrorIDs, "outboundMirrorIds")
		chkAll(KindMirror, x.PostInFilterMirrorIDs, "postInFilterMirrorIds")
		chkAll(KindMirror, x.PreOutFilterMirrorIDs, "preOutFilterMirrorIds")
		chk(KindQOSPolicy, x.QOSPolicyID, "qosPolicyId")
		chk(KindHost, x.HostID, "hostId")
	case *Rule:
		if x.Type == RuleJump {
			chk(KindChain, x.JumpChainID, "jumpChainId")
		}
	case *IPAddrGroup:
		chk(KindChain, x.InboundChainID, "inboundChainId")
		chk(KindChain, x.OutboundChainID, "outboundChainId")
	case *Pool:
		chk(KindLoadBalancer, x.LoadBalancerID, "loadBalancerId")
		chk(KindHealthMonitor, x.HealthMonitorID, "healthMonitorId")
	case *PoolMember:
		chk(KindPool, x.PoolID, "poolId")
	case *Mirror:
		chk(KindPort, x.ToPortID, "toPortId")
	case *QOSBWLimitRule:
		chk(KindQOSPolicy, x.PolicyID, "policyId")
	case *QOSDSCPRule:
		chk(KindQOSPolicy, x.PolicyID, "policyId")
	case *L2Insertion:
		chk(KindPort, x.PortID, "portId")
		chk(KindPort, x.SrvPortID, "srvPortId")
	}
	return errors.Join(errs...)
}

// Delete removes an object and applies MidoNet's referential rules:
// cascade to the objects it owns, clear references to it, or refuse.
// Deleting an absent object returns an error wrapping ErrNotFound.
func Delete(s Store, kind, id string) error {
	switch kind {
	case KindBridge:
		return deleteBridge(s, id)
	case KindRouter:
		return deleteRouter(s, id)
	case KindPort:
		return deletePort(s, id)
	case KindChain:
		return deleteChain(s, id)
	case KindRule:
		return deleteRule(s, id)
	case KindHost:
		return deleteHost(s, id)
	case KindTunnelZone, KindPortGroup, KindIPAddrGroup, KindRoute, KindBGPPeer, KindBGPNetwork,
		KindTrace, KindDHCPSubnet, KindDHCPSubnetV6, KindPoolMember, KindVIP, KindQOSBWLimitRule, KindQOSDSCPRule, KindL2Insertion:
		return deletePlain(s, kind, id)
	case KindLoadBalancer:
		return deleteLoadBalancer(s, id)
	case KindPool:
		return deletePool(s, id)
	case KindHealthMonitor:
		return deleteHealthMonitor(s, id)
	case KindQOSPolicy:
		return deleteQOSPolicy(s, id)
	case KindMirror:
		return deleteMirror(s, id)
	}
	return fmt.Errorf("delete: unknown kind %q", kind)
}

func deletePlain(s Store, kind, id string) error {
	ok, err := s.Exists(kind, id)
	if err != nil {
		return err
	}
	if !ok {
		return notFound(kind, id)
	}
	return s.Delete(kind, id)
}

// deleteWhere deletes (with cascades) every object of type T for which
// match holds.
func deleteWhere[T Object](s Store, match func(*T) bool) error {
	l, err := ListOf[T](s)
	if err != nil {
		return err
	}
	for i := range l {
		if match(&l[i]) {
			if err := Delete(s, l[i].Kind(), l[i].ObjectID()); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
	}
	return nil
}

// updateWhere rewrites every object of type T that change modifies
// (change reports whether it did).
func updateWhere[T Object](s Store, change func(*T) bool) error {
	l, err := ListOf[T](s)
	if err != nil {
		return err
	}
	for i := range l {
		if change(&l[i]) {
			if err := s.Put(any(&l[i]).(Object)); err != nil {
				return err
			}
		}
	}
	return nil
}

func isID(p *ID, id ID) bool { return p != nil && *p == id }

func tracesOn(s Store, dev ID) error {
	return deleteWhere(s, func(t *TraceRequest) bool { return isID(t.DeviceID, dev) })
}

func deleteBridge(s Store, id string) error {
	b, err := GetOf[Bridge](s, id)
	if err != nil {
		return err
	}
	if len(b.VxLanPortIDs) > 0 {
		return Errorf(ErrConflict, "bridge %s has VTEP bindings; remove them first", id)
	}
	if err := deleteWhere(s, func(p *Port) bool { return p.DeviceID == b.ID }); err != nil {
		return err
	}
	if err := deleteWhere(s, func(d *DHCPSubnet) bool { return d.BridgeID == b.ID }); err != nil {
		return err
	}
	if err := deleteWhere(s, func(d *DHCPSubnetV6) bool { return d.BridgeID == b.ID }); err != nil {
		return err
	}
	if err := tracesOn(s, b.ID); err != nil {
		return err
	}
	return s.Delete(KindBridge, id)
}

func deleteRouter(s Store, id string) error {
	r, err := GetOf[Router](s, id)
	if err != nil {
		return err
	}
	if r.LoadBalancerID != nil {
		return Errorf(ErrConflict, "router %s has load balancer %s attached; detach it first (PUT the router without loadBalancerId)", id, r.LoadBalancerID)
	}
	if err := deleteWhere(s, func(p *Port) bool { return p.DeviceID == r.ID }); err != nil {
		return err
	}
	if err := deleteWhere(s, func(x *Route) bool { return x.RouterID == r.ID }); err != nil {
		return err
	}
	if err := deleteWhere(s, func(x *BGPPeer) bool { return x.RouterID == r.ID }); err != nil {
		return err
	}
	if err := deleteWhere(s, func(x *BGPNetwork) bool { return x.RouterID == r.ID }); err != nil {
		return err
	}
	if err := tracesOn(s, r.ID); err != nil {
		return err
	}
	return s.Delete(KindRouter, id)
}

func deletePort(s Store, id string) error {
	p, err := GetOf[Port](s, id)
	if err != nil {
		return err
	}
	if p.Type == PortTypeVxlan {
		return Errorf(ErrConflict, "port %s is a VXLAN port; remove the VTEP binding instead", id)
	}
	if p.PeerID != nil {
		var peer Port
		if err := s.Get(KindPort, p.PeerID.String(), &peer); err == nil && isID(peer.PeerID, p.ID) {
			peer.PeerID = nil
			if err := s.Put(&peer); err != nil {
				return err
			}
		} else if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	if err := deleteWhere(s, func(r *Route) bool { return isID(r.NextHopPort, p.ID) }); err != nil {
		return err
	}
	if err := deleteWhere(s, func(m *Mirror) bool { return isID(m.ToPortID, p.ID) }); err != nil {
		return err
	}
	if err := deleteWhere(s, func(x *L2Insertion) bool { return isID(x.PortID, p.ID) || isID(x.SrvPortID, p.ID) }); err != nil {
		return err
	}
	if err := tracesOn(s, p.ID); err != nil {
		return err
	}
	if p.TunnelKey != 0 {
		if err := s.Delete(KindTunnelKey, strconv.FormatInt(p.TunnelKey, 10)); err != nil {
			return err
		}
	}
	if err := updateWhere(s, func(g *PortGroup) bool {
		if !hasID(g.PortIDs, p.ID) {
			return false
		}
		g.PortIDs = removeID(g.PortIDs, p.ID)
		return true
	}); err != nil {
		return err
	}
	return s.Delete(KindPort, id)
}

func deleteChain(s Store, id string) error {
	c, err := GetOf[Chain](s, id)
	if err != nil {
		return err
	}
	for _, r := range c.RuleIDs {
		if err := s.Delete(KindRule, r.String()); err != nil {
			return err
		}
	}
	// Jump rules in other chains that target this chain go too.
	if err := deleteWhere(s, func(r *Rule) bool { return r.ChainID != c.ID && isID(r.JumpChainID, c.ID) }); err != nil {
		return err
	}
	clear := func(p **ID) bool {
		if isID(*p, c.ID) {
			*p = nil
			return true
		}
		return false
	}
	if err := updateWhere(s, func(b *Bridge) bool {
		a, b2 := clear(&b.InboundFilterID), clear(&b.OutboundFilterID)
		return a || b2
	}); err != nil {
		return err
	}
	if err := updateWhere(s, func(r *Router) bool {
		a, b, c2, d := clear(&r.InboundFilterID), clear(&r.OutboundFilterID), clear(&r.LocalRedirectChainID), clear(&r.ForwardChainID)
		return a || b || c2 || d
	}); err != nil {
		return err
	}
	if err := updateWhere(s, func(p *Port) bool {
		a, b := clear(&p.InboundFilterID), clear(&p.OutboundFilterID)
		return a || b
	}); err != nil {
		return err
	}
	if err := updateWhere(s, func(g *IPAddrGroup) bool {
		a, b := clear(&g.InboundChainID), clear(&g.OutboundChainID)
		return a || b
	}); err != nil {
		return err
	}
	return s.Delete(KindChain, id)
}

func deleteRule(s Store, id string) error {
	r, err := GetOf[Rule](s, id)
	if err != nil {
		return err
	}
	var c Chain
	if err := s.Get(KindChain, r.ChainID.String(), &c); err == nil {
		c.RuleIDs = removeID(c.RuleIDs, r.ID)
		if err := s.Put(&c); err != nil {
			return err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	return s.Delete(KindRule, id)
}

func deleteHost(s Store, id string) error {
	h, err := GetOf[Host](s, id)
	if err != nil {
		return err
	}
	ports, err := ListOf[Port](s)
	if err != nil {
		return err
	}
	for _, p := range ports {
		if isID(p.HostID, h.ID) {
			return Errorf(ErrForbidden, "host %s has port %s bound to it; unbind its ports first", id, p.ID)
		}
	}
	if err := updateWhere(s, func(z *TunnelZone) bool {
		n := len(z.Members)
		out := z.Members[:0:0]
		for _, m := range z.Members {
			if m.HostID != h.ID {
				out = append(out, m)
			}
		}
		z.Members = out
		return len(out) != n
	}); err != nil {
		return err
	}
	return s.Delete(KindHost, id)
}

func deleteLoadBalancer(s Store, id string) error {
	lb, err := GetOf[LoadBalancer](s, id)
	if err != nil {
		return err
	}
	if err := deleteWhere(s, func(p *Pool) bool { return isID(p.LoadBalancerID, lb.ID) }); err != nil {
		return err
	}
	if err := updateWhere(s, func(r *Router) bool {
		if isID(r.LoadBalancerID, lb.ID) {
			r.LoadBalancerID = nil
			return true
		}
		return false
	}); err != nil {
		return err
	}
	return s.Delete(KindLoadBalancer, id)
}

func deletePool(s Store, id string) error {
	p, err := GetOf[Pool](s, id)
	if err != nil {
		return err
	}
	if err := deleteWhere(s, func(m *PoolMember) bool { return isID(m.PoolID, p.ID) }); err != nil {
		return err
	}
	if err := deleteWhere(s, func(v *VIP) bool { return isID(v.PoolID, p.ID) }); err != nil {
		return err
	}
	return s.Delete(KindPool, id)
}

func deleteHealthMonitor(s Store, id string) error {
	h, err := GetOf[HealthMonitor](s, id)
	if err != nil {
		return err
	}
	if err := updateWhere(s, func(p *Pool) bool {
		if isID(p.HealthMonitorID, h.ID) {
			p.HealthMonitorID = nil
			return true
		}
		return false
	}); err != nil {
		return err
	}
	return s.Delete(KindHealthMonitor, id)
}

func deleteQOSPolicy(s Store, id string) error {
	q, err := GetOf[QOSPolicy](s, id)
	if err != nil {
		return err
	}
	if err := deleteWhere(s, func(r *QOSBWLimitRule) bool { return isID(r.PolicyID, q.ID) }); err != nil {
		return err
	}
	if err := deleteWhere(s, func(r *QOSDSCPRule) bool { return isID(r.PolicyID, q.ID) }); err != nil {
		return err
	}
	clear := func(p **ID) bool {
		if isID(*p, q.ID) {
			*p = nil
			return true
		}
		return false
	}
	if err := updateWhere(s, func(b *Bridge) bool { return clear(&b.QOSPolicyID) }); err != nil {
		return err
	}
	if err := updateWhere(s, func(p *Port) bool { return clear(&p.QOSPolicyID) }); err != nil {
		return err
	}
	return s.Delete(KindQOSPolicy, id)
}

func deleteMirror(s Store, id string) error {
	m, err := GetOf[Mirror](s, id)
	if err != nil {
		return err
	}
	drop := func(lists ...*[]ID) bool {
		changed := false
		for _, l := range lists {
			if hasID(*l, m.ID) {
				*l = removeID(*l, m.ID)
				changed = true
			}
		}
		return changed
	}
	if err := updateWhere(s, func(b *Bridge) bool { return drop(&b.InboundMirrorIDs, &b.OutboundMirrorIDs) }); err != nil {
		return err
	}
	if err := updateWhere(s, func(r *Router) bool { return drop(&r.InboundMirrorIDs, &r.OutboundMirrorIDs) }); err != nil {
		return err
	}
	if err := updateWhere(s, func(p *Port) bool {
		return drop(&p.InboundMirrorIDs, &p.OutboundMirrorIDs, &p.PostInFilterMirrorIDs, &p.PreOutFilterMirrorIDs)
	}); err != nil {
		return err
	}
	return s.Delete(KindMirror, id)
}
