package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

type (
	lbRes        = resource[topology.LoadBalancer, *topology.LoadBalancer]
	poolRes      = resource[topology.Pool, *topology.Pool]
	memberRes    = resource[topology.PoolMember, *topology.PoolMember]
	vipRes       = resource[topology.VIP, *topology.VIP]
	hmRes        = resource[topology.HealthMonitor, *topology.HealthMonitor]
	mirrorRes    = resource[topology.Mirror, *topology.Mirror]
	qosRes       = resource[topology.QOSPolicy, *topology.QOSPolicy]
	bgpPeerRes   = resource[topology.BGPPeer, *topology.BGPPeer]
	bgpNetRes    = resource[topology.BGPNetwork, *topology.BGPNetwork]
	traceRes     = resource[topology.TraceRequest, *topology.TraceRequest]
	insertionRes = resource[topology.L2Insertion, *topology.L2Insertion]
)

// idempotentDelete answers 204 for an absent object, as MidoNet does for
// these kinds.
func idempotentDelete(del func(w http.ResponseWriter, r *http.Request) error) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := del(w, r)
		if errors.Is(err, topology.ErrNotFound) {
			return noContent(w)
		}
		return err
	}
}

// subCreate creates an object under a parent named by the URL's {id}.
func subCreate[T any, P interface {
	*T
	object
}](rs *resource[T, P], parentKind string, set func(o P, parent topology.ID), missingParent int) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		pid, err := pathID(r, "id")
		if err != nil {
			return err
		}
		return rs.create(w, r, func(tx *nsdb.Tx, o P) error {
			if err := requireExists(tx, parentKind, pid, missingParent); err != nil {
				return err
			}
			set(o, pid)
			return nil
		})
	}
}

// subList lists the objects under a parent named by the URL's {id}.
func subList[T any, P interface {
	*T
	object
}](s *Server, rs *resource[T, P], parentKind string, match func(o P, parent topology.ID) bool) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		pid, err := s.parentExists(r, parentKind)
		if err != nil {
			return err
		}
		return rs.list(w, r, func(o P) bool { return match(o, pid) })
	}
}

func eqID(p *topology.ID, id topology.ID) bool { return p != nil && *p == id }

// crudRoutes registers list/create/get/put/delete for a top-level kind.
func crudRoutes[T any, P interface {
	*T
	object
}](s *Server, rs *resource[T, P], methods string) {
	path := "/" + rs.kind
	for _, m := range methods {
		switch m {
		case 'L':
			s.handle("GET "+path, func(w http.ResponseWriter, r *http.Request) error { return rs.list(w, r, nil) })
		case 'C':
			s.handle("POST "+path, rs.post)
		case 'G':
			s.handle("GET "+path+"/{id}", rs.get)
		case 'U':
			s.handle("PUT "+path+"/{id}", rs.put)
		case 'D':
			s.handle("DELETE "+path+"/{id}", rs.del)
		case 'I':
			s.handle("DELETE "+path+"/{id}", idempotentDelete(rs.del))
		}
	}
}

func (s *Server) serviceRoutes() {
	lbs := &lbRes{
		s: s, kind: topology.KindLoadBalancer, media: []string{"LoadBalancer-v1"},
		defaults: func(l *topology.LoadBalancer) { l.AdminStateUp = true },
		links: func(base string, l *topology.LoadBalancer, v view) {
			u := base + "/load_balancers/" + l.ID.String()
			v["uri"] = u
			v["router"] = link(base, "/routers/", l.RouterID)
			v["pools"] = u + "/pools"
			v["vips"] = u + "/vips"
		},
		onCreate: func(tx *nsdb.Tx, r *http.Request, l *topology.LoadBalancer) error {
			if l.RouterID != nil {
				return badRequest("A load balancer's router ID must be null at creation; attach it with PUT /routers/{id} and loadBalancerId")
			}
			return nil
		},
		onUpdate: func(tx *nsdb.Tx, r *http.Request, old, l *topology.LoadBalancer) error {
			if l.RouterID != nil && (old.RouterID == nil || *l.RouterID != *old.RouterID) {
				return badRequest("Router cannot be modified")
			}
			l.RouterID = old.RouterID
			return nil
		},
	}
	crudRoutes(s, lbs, "LCGUD")

	pools := &poolRes{
		s: s, kind: topology.KindPool, media: []string{"Pool-v1"},
		defaults: func(p *topology.Pool) { p.AdminStateUp = true },
		filter: func(r *http.Request, p *topology.Pool) bool {
			hm := r.URL.Query().Get("hm_id")
			return hm == "" || (p.HealthMonitorID != nil && p.HealthMonitorID.String() == hm)
		},
		links: func(base string, p *topology.Pool, v view) {
			u := base + "/pools/" + p.ID.String()
			v["uri"] = u
			v["healthMonitor"] = link(base, "/health_monitors/", p.HealthMonitorID)
			v["loadBalancer"] = link(base, "/load_balancers/", p.LoadBalancerID)
			v["vips"] = u + "/vips"
			v["poolMembers"] = u + "/pool_members"
		},
		onCreate: func(tx *nsdb.Tx, r *http.Request, p *topology.Pool) error {
			p.Protocol, p.Status = "TCP", "ACTIVE"
			return nil
		},
		onUpdate: func(tx *nsdb.Tx, r *http.Request, old, p *topology.Pool) error {
			p.Protocol, p.Status = "TCP", old.Status
			return nil
		},
	}
	crudRoutes(s, pools, "LCGUI")
	s.handle("GET /load_balancers/{id}/pools", subList(s, pools, topology.KindLoadBalancer,
		func(p *topology.Pool, lb topology.ID) bool { return eqID(p.LoadBalancerID, lb) }))
	s.handle("POST /load_balancers/{id}/pools", subCreate(pools, topology.KindLoadBalancer,
		func(p *topology.Pool, lb topology.ID) { p.LoadBalancerID = topology.IDPtr(lb) }, http.StatusNotFound))

	members := &memberRes{
		s: s, kind: topology.KindPoolMember, media: []string{"PoolMember-v1"},
		defaults: func(m *topology.PoolMember) { m.AdminStateUp, m.Weight = true, 1 },
		links: func(base string, m *topology.PoolMember, v view) {
			v["uri"] = base + "/pool_members/" + m.ID.String()
			v["pool"] = link(base, "/pools/", m.PoolID)
		},
		onCreate: func(tx *nsdb.Tx, r *http.Request, m *topology.PoolMember) error {
			m.AdminStateUp, m.Status = true, "ACTIVE"
			return nil
		},
		onUpdate: func(tx *nsdb.Tx, r *http.Request, old, m *topology.PoolMember) error {
			m.Address, m.ProtocolPort, m.Status = old.Address, old.ProtocolPort, old.Status
			return nil
		},
	}
	crudRoutes(s, members, "LCGUI")
	s.handle("GET /pools/{id}/pool_members", subList(s, members, topology.KindPool,
		func(m *topology.PoolMember, p topology.ID) bool { return eqID(m.PoolID, p) }))
	s.handle("POST /pools/{id}/pool_members", subCreate(members, topology.KindPool,
		func(m *topology.PoolMember, p topology.ID) { m.PoolID = topology.IDPtr(p) }, http.StatusNotFound))

	vips := &vipRes{
		s: s, kind: topology.KindVIP, media: []string{"VIP-v1"},
		defaults: func(x *topology.VIP) { x.AdminStateUp = true },
		links: func(base string, x *topology.VIP, v view) {
			v["uri"] = base + "/vips/" + x.ID.String()
			v["loadBalancer"] = link(base, "/load_balancers/", x.LoadBalancerID)
			v["pool"] = link(base, "/pools/", x.PoolID)
		},
	}
	vipPool := func(tx *nsdb.Tx, x *topology.VIP) error {
		if x.PoolID == nil {
			return nil // Validate names the field
		}
		var p topology.Pool
		if err := tx.Get(topology.KindPool, x.PoolID.String(), &p); err != nil {
			if errors.Is(err, topology.ErrNotFound) {
				return badRequest("poolId: pool %s does not exist", x.PoolID)
			}
			return err
		}
		x.LoadBalancerID = p.LoadBalancerID
		return nil
	}
	vips.onCreate = func(tx *nsdb.Tx, r *http.Request, x *topology.VIP) error { return vipPool(tx, x) }
	vips.onUpdate = func(tx *nsdb.Tx, r *http.Request, old, x *topology.VIP) error { return vipPool(tx, x) }
	crudRoutes(s, vips, "LCGUI")
	s.handle("GET /pools/{id}/vips", subList(s, vips, topology.KindPool,
		func(x *topology.VIP, p topology.ID) bool { return eqID(x.PoolID, p) }))
	s.handle("POST /pools/{id}/vips", subCreate(vips, topology.KindPool,
		func(x *topology.VIP, p topology.ID) { x.PoolID = topology.IDPtr(p) }, http.StatusBadRequest))
	s.handle("GET /load_balancers/{id}/vips", subList(s, vips, topology.KindLoadBalancer,
		func(x *topology.VIP, lb topology.ID) bool { return eqID(x.LoadBalancerID, lb) }))

	hms := &hmRes{
		s: s, kind: topology.KindHealthMonitor, media: []string{"HealthMonitor-v1"},
		defaults: func(h *topology.HealthMonitor) { h.AdminStateUp = true },
		links: func(base string, h *topology.HealthMonitor, v view) {
			v["uri"] = base + "/health_monitors/" + h.ID.String()
			v["pools"] = base + "/health_monitors/" + h.ID.String() + "/pools"
		},
		onCreate: func(tx *nsdb.Tx, r *http.Request, h *topology.HealthMonitor) error {
			h.AdminStateUp = true
			return nil
		},
	}
	crudRoutes(s, hms, "LCGUI")
	s.handle("GET /health_monitors/{id}/pools", subList(s, pools, topology.KindHealthMonitor,
		func(p *topology.Pool, hm topology.ID) bool { return eqID(p.HealthMonitorID, hm) }))

	insertions := &insertionRes{
		s: s, kind: topology.KindL2Insertion, media: []string{"L2Insertion-v1"},
		links: func(base string, x *topology.L2Insertion, v view) {
			v["uri"] = base + "/l2insertions/" + x.ID.String()
		},
		filter: func(r *http.Request, x *topology.L2Insertion) bool {
			q := r.URL.Query()
			if sp := q.Get("srv_port"); sp != "" {
				return x.SrvPortID != nil && x.SrvPortID.String() == sp
			}
			if p := q.Get("port"); p != "" {
				return x.PortID != nil && x.PortID.String() == p
			}
			return true
		},
	}
	insertions.onCreate = func(tx *nsdb.Tx, r *http.Request, x *topology.L2Insertion) error { return checkInsertion(tx, x, nil) }
	insertions.onUpdate = func(tx *nsdb.Tx, r *http.Request, old, x *topology.L2Insertion) error {
		return checkInsertion(tx, x, old)
	}
	crudRoutes(s, insertions, "LCGUD")

	mirrors := &mirrorRes{
		s: s, kind: topology.KindMirror, media: []string{"Mirror-v1"},
		links: func(base string, m *topology.Mirror, v view) { v["uri"] = base + "/mirrors/" + m.ID.String() },
	}
	crudRoutes(s, mirrors, "LCGUD")

	qos := &qosRes{
		s: s, kind: topology.KindQOSPolicy, media: []string{"QOSPolicy-v1"},
		links: func(base string, q *topology.QOSPolicy, v view) {
			u := base + "/qos_policies/" + q.ID.String()
			v["uri"] = u
			v["bwLimitRules"] = u + "/qos_bw_limit_rules"
			v["dscpRules"] = u + "/qos_dscp_rules"
			v["rules"] = nil
		},
	}
	qos.onCreate = func(tx *nsdb.Tx, r *http.Request, q *topology.QOSPolicy) error {
		err := syncQOSRules(tx, q, true)
		q.Rules = nil
		return err
	}
	qos.onUpdate = func(tx *nsdb.Tx, r *http.Request, old, q *topology.QOSPolicy) error {
		err := syncQOSRules(tx, q, q.Rules != nil)
		q.Rules = nil
		return err
	}
	crudRoutes(s, qos, "LCGUD")
	qosRuleRoutes(s, topology.KindQOSBWLimitRule, "QOSRuleBWLimit-v1",
		func(x *topology.QOSBWLimitRule) **topology.ID { return &x.PolicyID })
	qosRuleRoutes(s, topology.KindQOSDSCPRule, "QOSRuleDSCP-v1",
		func(x *topology.QOSDSCPRule) **topology.ID { return &x.PolicyID })

	peers := &bgpPeerRes{
		s: s, kind: topology.KindBGPPeer, media: []string{"BgpPeer-v1"},
		links: func(base string, p *topology.BGPPeer, v view) {
			v["uri"] = base + "/bgp_peers/" + p.ID.String()
			v["router"] = base + "/routers/" + p.RouterID.String()
		},
		onUpdate: func(tx *nsdb.Tx, r *http.Request, old, p *topology.BGPPeer) error {
			p.RouterID, p.Status = old.RouterID, nil
			return nil
		},
		enrich: s.peersStatus,
	}
	crudRoutes(s, peers, "GUD")
	s.handle("GET /routers/{id}/bgp_peers", subList(s, peers, topology.KindRouter,
		func(p *topology.BGPPeer, rt topology.ID) bool { return p.RouterID == rt }))
	s.handle("POST /routers/{id}/bgp_peers", func(w http.ResponseWriter, r *http.Request) error {
		rid, err := pathID(r, "id")
		if err != nil {
			return err
		}
		return peers.create(w, r, func(tx *nsdb.Tx, p *topology.BGPPeer) error {
			if err := requireExists(tx, topology.KindRouter, rid, http.StatusNotFound); err != nil {
				return err
			}
			p.RouterID, p.Status = rid, nil
			if err := p.Validate(); err != nil {
				return err
			}
			all, err := topology.ListOf[topology.BGPPeer](tx)
			if err != nil {
				return err
			}
			for _, o := range all {
				if o.RouterID == rid && o.ASNumber == p.ASNumber && derefString(o.Address) == derefString(p.Address) {
					return badRequest("A BGP peer with address %s and AS number %d already exists.", derefString(p.Address), p.ASNumber)
				}
			}
			return nil
		})
	})
	nets := &bgpNetRes{
		s: s, kind: topology.KindBGPNetwork, media: []string{"BgpNetwork-v1"},
		links: func(base string, n *topology.BGPNetwork, v view) {
			v["uri"] = base + "/bgp_networks/" + n.ID.String()
			v["router"] = base + "/routers/" + n.RouterID.String()
		},
	}
	crudRoutes(s, nets, "GD")
	s.handle("GET /routers/{id}/bgp_networks", subList(s, nets, topology.KindRouter,
		func(n *topology.BGPNetwork, rt topology.ID) bool { return n.RouterID == rt }))
	s.handle("POST /routers/{id}/bgp_networks", subCreate(nets, topology.KindRouter,
		func(n *topology.BGPNetwork, rt topology.ID) { n.RouterID = rt }, http.StatusNotFound))

	traces := &traceRes{
		s: s, kind: topology.KindTrace, media: []string{"TraceRequest-v1"},
		defaults: func(t *topology.TraceRequest) { t.Limit = 1<<63 - 1 },
		links: func(base string, t *topology.TraceRequest, v view) {
			v["uri"] = base + "/traces/" + t.ID.String()
		},
	}
	traceDevice := func(tx *nsdb.Tx, t *topology.TraceRequest) error {
		if t.DeviceType == nil || t.DeviceID == nil {
			return nil
		}
		kind := map[string]string{topology.TraceBridge: topology.KindBridge, topology.TracePort: topology.KindPort,
			topology.TraceRouter: topology.KindRouter}[*t.DeviceType]
		if kind == "" {
			return nil
		}
		if ok, err := tx.Exists(kind, t.DeviceID.String()); err != nil {
			return err
		} else if !ok {
			return notFound("deviceId: %s %s does not exist", topology.Singular(kind), t.DeviceID)
		}
		return nil
	}
	traces.onCreate = func(tx *nsdb.Tx, r *http.Request, t *topology.TraceRequest) error {
		if t.CreationTimestampMs == 0 {
			t.CreationTimestampMs = s.now().UnixMilli()
		}
		return traceDevice(tx, t)
	}
	traces.onUpdate = func(tx *nsdb.Tx, r *http.Request, old, t *topology.TraceRequest) error {
		if t.CreationTimestampMs == 0 {
			t.CreationTimestampMs = old.CreationTimestampMs
		}
		return traceDevice(tx, t)
	}
	traces.filter = func(r *http.Request, t *topology.TraceRequest) bool {
		return !r.URL.Query().Has("tenant_id") || s.traceTenant(r, t) == r.URL.Query().Get("tenant_id")
	}
	traces.onDelete = func(tx *nsdb.Tx, id string) error {
		return tx.DeleteStatePrefix(nsdb.TracedPacketsPrefix(id))
	}
	crudRoutes(s, traces, "LCGUD")
	s.handle("GET /traces/{id}/packets", s.tracedPackets)
}

// tracedPackets lists the packets the agents traced for a trace request:
// the last few each agent keeps and publishes, oldest first. It is not in
// MidoNet's API (MidoNet wrote traces to Cassandra and logs); the request's
// own fields stay exactly MidoNet's.
func (s *Server) tracedPackets(w http.ResponseWriter, r *http.Request) error {
	id, err := s.parentExists(r, topology.KindTrace)
	if err != nil {
		return err
	}
	entries, _, err := s.store.ListState(r.Context(), nsdb.TracedPacketsPrefix(id.String()))
	if err != nil {
		return err
	}
	out := []topology.TracedPacket{}
	for _, e := range entries {
		var list []topology.TracedPacket
		if json.Unmarshal(e.Value, &list) != nil {
			continue // not ours to fix: an agent writes it
		}
		out = append(out, list...)
	}
	slices.SortStableFunc(out, func(a, b topology.TracedPacket) int { return a.Time.Compare(b.Time) })
	return writeJSON(w, r, http.StatusOK, []string{"collection.TracedPacket-v1"}, out)
}

// qosRuleRoutes serves one kind of QoS policy rule: GET, PUT and DELETE of
// a rule, and its list and create under /qos_policies/{id}/<kind>. policy
// gives the rule's policy reference.
func qosRuleRoutes[T any, P interface {
	*T
	object
}](s *Server, kind, media string, policy func(P) **topology.ID) {
	rs := &resource[T, P]{
		s: s, kind: kind, media: []string{media},
		links: func(base string, x P, v view) { v["uri"] = base + "/" + kind + "/" + x.ObjectID() },
	}
	crudRoutes(s, rs, "GUD")
	path := "/" + topology.KindQOSPolicy + "/{id}/" + kind
	s.handle("GET "+path, subList(s, rs, topology.KindQOSPolicy,
		func(x P, q topology.ID) bool { return eqID(*policy(x), q) }))
	s.handle("POST "+path, subCreate(rs, topology.KindQOSPolicy,
		func(x P, q topology.ID) { *policy(x) = topology.IDPtr(q) }, http.StatusNotFound))
}

// traceTenant is the tenant of a trace request's device (of the port's
// device for a port).
func (s *Server) traceTenant(r *http.Request, t *topology.TraceRequest) string {
	if t.DeviceID == nil || t.DeviceType == nil {
		return ""
	}
	var tenant *string
	s.store.View(r.Context(), func(tx *nsdb.Tx) error {
		id := t.DeviceID.String()
		kind := *t.DeviceType
		if kind == topology.TracePort {
			var p topology.Port
			if tx.Get(topology.KindPort, id, &p) != nil {
				return nil
			}
			id, kind = p.DeviceID.String(), topology.TraceBridge
			if p.Type == topology.PortTypeRouter {
				kind = topology.TraceRouter
			}
		}
		if kind == topology.TraceBridge {
			var b topology.Bridge
			if tx.Get(topology.KindBridge, id, &b) == nil {
				tenant = b.TenantID
			}
		} else {
			var x topology.Router
			if tx.Get(topology.KindRouter, id, &x) == nil {
				tenant = x.TenantID
			}
		}
		return nil
	})
	return derefString(tenant)
}

// syncQOSRules creates, updates and deletes a policy's rule objects to match
// the inline list of its body.
func syncQOSRules(tx *nsdb.Tx, q *topology.QOSPolicy, apply bool) error {
	if !apply {
		return nil
	}
	keep := map[topology.ID]bool{}
	for _, spec := range q.Rules {
		id := spec.ID
		if id == (topology.ID{}) {
			id = topology.NewID()
		}
		keep[id] = true
		if err := claimQOSRuleID(tx, id, q.ID, spec.Type); err != nil {
			return err
		}
		switch spec.Type {
		case "bandwidth_limit":
			burst := spec.MaxBurstKbps
			if err := tx.Put(&topology.QOSBWLimitRule{ID: id, MaxKbps: spec.MaxKbps, MaxBurstKb: &burst, PolicyID: topology.IDPtr(q.ID)}); err != nil {
				return err
			}
		case "dscp_marking":
			if err := tx.Put(&topology.QOSDSCPRule{ID: id, DSCPMark: spec.DSCPMark, PolicyID: topology.IDPtr(q.ID)}); err != nil {
				return err
			}
		}
	}
	if err := deleteUnkept(tx, keep, func(x topology.QOSBWLimitRule) (*topology.ID, topology.ID) { return x.PolicyID, x.ID }, q.ID); err != nil {
		return err
	}
	return deleteUnkept(tx, keep, func(x topology.QOSDSCPRule) (*topology.ID, topology.ID) { return x.PolicyID, x.ID }, q.ID)
}

// claimQOSRuleID checks that the id of an inline rule names a rule of
// policy or none: a client-chosen id must not move another policy's rule
// (409). This policy's rule of the other type under that id is deleted: the
// rule changed type.
func claimQOSRuleID(tx *nsdb.Tx, id, policy topology.ID, ruleType string) error {
	for kind, typ := range map[string]string{topology.KindQOSBWLimitRule: "bandwidth_limit", topology.KindQOSDSCPRule: "dscp_marking"} {
		var owner struct {
			PolicyID *topology.ID `json:"policyId"`
		}
		err := tx.Get(kind, id.String(), &owner)
		if errors.Is(err, topology.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if owner.PolicyID != nil && *owner.PolicyID != policy {
			return conflict("rules: QoS rule %s belongs to policy %s; give the rule another id", id, owner.PolicyID)
		}
		if typ != ruleType {
			if err := tx.Delete(kind, id.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteUnkept deletes the rules of one kind that belong to policy and are
// not in keep; ids gives a rule's policy and its own id.
func deleteUnkept[T topology.Object](tx *nsdb.Tx, keep map[topology.ID]bool, ids func(T) (policy *topology.ID, id topology.ID), policy topology.ID) error {
	all, err := topology.ListOf[T](tx)
	if err != nil {
		return err
	}
	for _, x := range all {
		if p, id := ids(x); eqID(p, policy) && !keep[id] {
			if err := tx.Delete(x.Kind(), x.ObjectID()); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkInsertion applies MidoNet's rules to an L2 insertion being created
// (old nil) or updated: both ports are bridge ports, a protected port is
// not a service port and the reverse, one insertion per pair of ports, and
// an update keeps the ports.
func checkInsertion(tx *nsdb.Tx, x, old *topology.L2Insertion) error {
	if x.PortID == nil || x.SrvPortID == nil {
		return nil // Validate names the field
	}
	if old != nil && (!eqID(old.PortID, *x.PortID) || !eqID(old.SrvPortID, *x.SrvPortID)) {
		return badRequest("Port/SrvPort can't be changed for an insertion; delete it and create another")
	}
	for _, pid := range []*topology.ID{x.PortID, x.SrvPortID} {
		var p topology.Port
		if err := tx.Get(topology.KindPort, pid.String(), &p); err != nil {
			if errors.Is(err, topology.ErrNotFound) {
				return notFound("port %s does not exist", pid)
			}
			return err
		}
		if p.Type != topology.PortTypeBridge {
			return badRequest("port %s is a %s port; L2 insertions join bridge ports", pid, p.Type)
		}
	}
	all, err := topology.ListOf[topology.L2Insertion](tx)
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.ID == x.ID {
			continue
		}
		switch {
		case eqID(o.PortID, *x.PortID) && eqID(o.SrvPortID, *x.SrvPortID):
			return conflict("Insertion for same port/srvPort pair already exists: %s", o.ID)
		case eqID(o.SrvPortID, *x.PortID):
			return badRequest("Protected port %s can't have a service: it is the service port of insertion %s", x.PortID, o.ID)
		case eqID(o.PortID, *x.SrvPortID):
			return badRequest("Service port %s can't have an insertion: it is the protected port of insertion %s", x.SrvPortID, o.ID)
		}
	}
	return nil
}

// peersStatus fills each BGP peer's session status from the state its
// agent writes (nil when no agent speaks to it).
func (s *Server) peersStatus(r *http.Request, peers []*topology.BGPPeer) error {
	if len(peers) == 0 {
		return nil
	}
	entries, _, err := s.store.ListState(r.Context(), nsdb.BGPPeerStatusPrefix)
	if err != nil {
		return err
	}
	status := make(map[string]*topology.BGPSessionStatus, len(entries))
	for _, e := range entries {
		id, ok := nsdb.ParseBGPPeerStatusKey(e.Key)
		if !ok {
			continue
		}
		var st topology.BGPSessionStatus
		if json.Unmarshal(e.Value, &st) == nil {
			status[id] = &st
		}
	}
	for _, p := range peers {
		p.Status = status[p.ID.String()]
	}
	return nil
}
