package api

import (
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

type (
	chainRes     = resource[topology.Chain, *topology.Chain]
	ruleRes      = resource[topology.Rule, *topology.Rule]
	portGroupRes = resource[topology.PortGroup, *topology.PortGroup]
	ipGroupRes   = resource[topology.IPAddrGroup, *topology.IPAddrGroup]
)

// ruleTypeFields lists the type-specific fields each rule type shows.
var ruleTypeFields = map[string][]string{
	topology.RuleJump:        {"jumpChainId", "jumpChainName"},
	topology.RuleDNAT:        {"flowAction", "natTargets"},
	topology.RuleSNAT:        {"flowAction", "natTargets"},
	topology.RuleRevDNAT:     {"flowAction"},
	topology.RuleRevSNAT:     {"flowAction"},
	topology.RuleL2Transform: {"flowAction", "popVlan", "pushVlan", "targetPortId", "ingress", "failOpen"},
}

var allRuleTypeFields = []string{"jumpChainId", "jumpChainName", "flowAction", "natTargets", "popVlan",
	"pushVlan", "targetPortId", "ingress", "failOpen"}

func (s *Server) filterRoutes() {
	chains := &chainRes{
		s: s, kind: topology.KindChain, media: []string{"Chain-v1"},
		filter: func(r *http.Request, c *topology.Chain) bool { return tenantFilter(r, c.TenantID) },
		links: func(base string, c *topology.Chain, v view) {
			v["uri"] = base + "/chains/" + c.ID.String()
			v["rules"] = base + "/chains/" + c.ID.String() + "/rules"
		},
		onCreate: func(tx *nsdb.Tx, r *http.Request, c *topology.Chain) error {
			c.RuleIDs = nil
			return nil
		},
	}
	crudRoutes(s, chains, "LCGD")

	rules := &ruleRes{
		s: s, kind: topology.KindRule, media: []string{"Rule-v2", "Rule-v1"},
		links: func(base string, x *topology.Rule, v view) {
			v["uri"] = base + "/rules/" + x.ID.String()
			for _, k := range allRuleTypeFields {
				if !slices.Contains(ruleTypeFields[x.Type], k) {
					delete(v, k)
				}
			}
		},
	}
	s.handle("GET /rules/{id}", func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, "id")
		if err != nil {
			return err
		}
		var out view
		err = s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			x, err := rules.load(tx, id.String())
			if err != nil {
				return err
			}
			var c topology.Chain
			if err := tx.Get(topology.KindChain, x.ChainID.String(), &c); err == nil {
				x.Position = slices.Index(c.RuleIDs, x.ID) + 1
			}
			out = rules.render(r, x)
			return nil
		})
		if err != nil {
			return err
		}
		return writeJSON(w, r, http.StatusOK, rules.media, out)
	})
	s.handle("DELETE /rules/{id}", rules.del)
	s.handle("GET /chains/{id}/rules", chains.contents(rules.collectionMedia(),
		func(tx *nsdb.Tx, r *http.Request, c *topology.Chain) ([]view, error) {
			out := make([]view, 0, len(c.RuleIDs))
			for i, rid := range c.RuleIDs {
				x, err := rules.load(tx, rid.String())
				if err != nil {
					return nil, err
				}
				x.Position = i + 1
				out = append(out, rules.render(r, x))
			}
			return out, nil
		}))
	s.handle("POST /chains/{id}/rules", func(w http.ResponseWriter, r *http.Request) error {
		cid, err := pathID(r, "id")
		if err != nil {
			return err
		}
		return rules.create(w, r, func(tx *nsdb.Tx, x *topology.Rule) error {
			c, err := chains.load(tx, cid.String())
			if err != nil {
				return err
			}
			if x.Type == "" {
				return badRequest("the rule's type is missing: send one of accept, drop, reject, return, jump, dnat, snat, rev_dnat, rev_snat, l2_transform")
			}
			if !topology.ValidRuleType(x.Type) {
				return badRequest("unknown rule type %q: use one of accept, drop, reject, return, jump, dnat, snat, rev_dnat, rev_snat, l2_transform", x.Type)
			}
			if err := x.Validate(); err != nil {
				return err
			}
			x.ChainID = cid
			pos := x.Position
			if pos == 0 {
				pos = 1
			}
			if pos > len(c.RuleIDs)+1 {
				return badRequest("Position exceeds number of rules in chain: chain %s has %d rules, so the position must be between 1 and %d", cid, len(c.RuleIDs), len(c.RuleIDs)+1)
			}
			x.Position = 0 // the live position comes from the chain
			c.RuleIDs = slices.Insert(c.RuleIDs, pos-1, x.ID)
			return tx.Put(c)
		})
	})

	groups := &portGroupRes{
		s: s, kind: topology.KindPortGroup, media: []string{"PortGroup-v1"},
		filter: func(r *http.Request, g *topology.PortGroup) bool {
			if !tenantFilter(r, g.TenantID) {
				return false
			}
			if q := r.URL.Query().Get("port_id"); q != "" {
				id, err := topology.ParseID(q)
				return err == nil && slices.Contains(g.PortIDs, id)
			}
			return true
		},
		links: func(base string, g *topology.PortGroup, v view) {
			v["uri"] = base + "/port_groups/" + g.ID.String()
			v["ports"] = base + "/port_groups/" + g.ID.String() + "/ports"
		},
		onCreate: func(tx *nsdb.Tx, r *http.Request, g *topology.PortGroup) error { g.PortIDs = nil; return nil },
		onUpdate: func(tx *nsdb.Tx, r *http.Request, old, g *topology.PortGroup) error {
			g.PortIDs = old.PortIDs
			return nil
		},
	}
	crudRoutes(s, groups, "LCGUD")
	s.handle("GET /port_groups/{id}/ports", groups.contents([]string{"collection.PortGroupPort-v1"},
		func(_ *nsdb.Tx, r *http.Request, g *topology.PortGroup) ([]view, error) {
			out := make([]view, len(g.PortIDs))
			for i, p := range g.PortIDs {
				out[i] = portGroupPortView(r, g.ID, p)
			}
			return out, nil
		}))
	s.handle("POST /port_groups/{id}/ports", func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, "id")
		if err != nil {
			return err
		}
		var body struct {
			PortID *topology.ID `json:"portId"`
		}
		if err := decode(r, &body); err != nil {
			return err
		}
		var c topology.Checks
		if c.Required("portId", body.PortID != nil); c.Err() != nil {
			return c.Err()
		}
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			g, err := groups.load(tx, id.String())
			if err != nil {
				return err
			}
			if err := requireExists(tx, topology.KindPort, *body.PortID, http.StatusNotFound); err != nil {
				return err
			}
			if slices.Contains(g.PortIDs, *body.PortID) {
				return &httpError{status: http.StatusConflict, msg: "already a member", emptyBody: true}
			}
			g.PortIDs = append(g.PortIDs, *body.PortID)
			return tx.Put(g)
		})
		if err != nil {
			return err
		}
		return created(w, baseURI(r)+"/port_groups/"+id.String()+"/ports/"+body.PortID.String())
	})
	s.handle("GET /port_groups/{id}/ports/{portId}", func(w http.ResponseWriter, r *http.Request) error {
		id, pid, err := memberIDs(r, "portId")
		if err != nil {
			return err
		}
		err = s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			g, err := groups.load(tx, id.String())
			if err != nil {
				return err
			}
			if !slices.Contains(g.PortIDs, pid) {
				return notFound("port %s is not a member of port group %s", pid, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return writeJSON(w, r, http.StatusOK, []string{"PortGroupPort-v1"}, portGroupPortView(r, id, pid))
	})
	s.handle("DELETE /port_groups/{id}/ports/{portId}", func(w http.ResponseWriter, r *http.Request) error {
		id, pid, err := memberIDs(r, "portId")
		if err != nil {
			return err
		}
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			g, err := groups.load(tx, id.String())
			if err != nil {
				return err
			}
			if !slices.Contains(g.PortIDs, pid) {
				if ok, err := tx.Exists(topology.KindPort, pid.String()); err != nil {
					return err
				} else if ok {
					return &httpError{status: http.StatusNotFound, msg: "not a member", emptyBody: true}
				}
				return nil
			}
			g.PortIDs = slices.DeleteFunc(g.PortIDs, func(x topology.ID) bool { return x == pid })
			return tx.Put(g)
		})
		if err != nil {
			return err
		}
		return noContent(w)
	})
	s.handle("GET /ports/{id}/port_groups", func(w http.ResponseWriter, r *http.Request) error {
		pid, err := s.parentExists(r, topology.KindPort)
		if err != nil {
			return err
		}
		var out []view
		err = s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			all, err := topology.ListOf[topology.PortGroup](tx)
			if err != nil {
				return err
			}
			out = []view{}
			for _, g := range all {
				if slices.Contains(g.PortIDs, pid) {
					out = append(out, portGroupPortView(r, g.ID, pid))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return writeJSON(w, r, http.StatusOK, []string{"collection.PortGroupPort-v1"}, out)
	})

	s.ipAddrGroupRoutes()
}

func portGroupPortView(r *http.Request, group, port topology.ID) view {
	base := baseURI(r)
	return view{
		"portGroupId": group.String(), "portId": port.String(),
		"uri":       base + "/port_groups/" + group.String() + "/ports/" + port.String(),
		"port":      base + "/ports/" + port.String(),
		"portGroup": base + "/port_groups/" + group.String(),
	}
}

func (s *Server) ipAddrGroupRoutes() {
	groups := &ipGroupRes{
		s: s, kind: topology.KindIPAddrGroup, media: []string{"IpAddrGroup-v1"},
		links: func(base string, g *topology.IPAddrGroup, v view) {
			v["uri"] = base + "/ip_addr_groups/" + g.ID.String()
			v["addrs"] = base + "/ip_addr_groups/" + g.ID.String() + "/ip_addrs"
		},
		onCreate: func(tx *nsdb.Tx, r *http.Request, g *topology.IPAddrGroup) error {
			g.IPAddrPorts, g.RuleIDs = nil, nil
			return nil
		},
	}
	crudRoutes(s, groups, "LCGD")

	addrView := func(r *http.Request, g topology.ID, addr string) view {
		a, _ := netip.ParseAddr(addr)
		ver := 4
		if a.Is6() && !a.Is4In6() {
			ver = 6
		}
		base := baseURI(r) + "/ip_addr_groups/" + g.String()
		return view{
			"addr": addr, "version": ver, "ipAddrGroupId": g.String(),
			"uri":         base + "/versions/" + strconv.Itoa(ver) + "/ip_addrs/" + url.PathEscape(addr),
			"ipAddrGroup": base,
		}
	}
	s.handle("GET /ip_addr_groups/{id}/ip_addrs", groups.contents([]string{"collection.IpAddrGroupAddr-v1"},
		func(_ *nsdb.Tx, r *http.Request, g *topology.IPAddrGroup) ([]view, error) {
			out := make([]view, len(g.IPAddrPorts))
			for i, a := range g.IPAddrPorts {
				out[i] = addrView(r, g.ID, a.IPAddress)
			}
			return out, nil
		}))
	s.handle("POST /ip_addr_groups/{id}/ip_addrs", func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, "id")
		if err != nil {
			return err
		}
		var body struct {
			Addr    *string `json:"addr"`
			Version *int    `json:"version"`
		}
		if err := decode(r, &body); err != nil {
			return err
		}
		if body.Version == nil {
			return badRequest("the address's version is missing: send \"version\": 4 or 6")
		}
		if *body.Version != 4 && *body.Version != 6 {
			return badRequest("version must be 4 or 6, not %d", *body.Version)
		}
		var c topology.Checks
		if c.Required("addr", body.Addr != nil); c.Err() != nil {
			return c.Err()
		}
		a, err := netip.ParseAddr(*body.Addr)
		if err != nil || (*body.Version == 4) != a.Is4() {
			return &topology.ValidationError{Violations: []topology.Violation{{Property: "addr", Message: "is not a valid IPv" + strconv.Itoa(*body.Version) + " address"}}}
		}
		if err := refuseIPv6Group(*body.Version); err != nil {
			return err
		}
		canon := a.String()
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			g, err := groups.load(tx, id.String())
			if err != nil {
				return err
			}
			if g.HasAddr(a) {
				return conflict("address %s is already in IP address group %s", canon, id)
			}
			g.IPAddrPorts = append(g.IPAddrPorts, topology.IPAddrPort{IPAddress: canon})
			return tx.Put(g)
		})
		if err != nil {
			return err
		}
		return created(w, addrView(r, id, canon)["uri"].(string))
	})
	addrItem := func(r *http.Request) (topology.ID, netip.Addr, error) {
		id, err := pathID(r, "id")
		if err != nil {
			return id, netip.Addr{}, err
		}
		ver := r.PathValue("ver")
		if ver != "4" && ver != "6" {
			return id, netip.Addr{}, badRequest("IP version must be 4 or 6, not %q", ver)
		}
		a, err := netip.ParseAddr(r.PathValue("addr"))
		if err != nil {
			return id, a, badRequest("%q is not an IP address", r.PathValue("addr"))
		}
		return id, a, nil
	}
	s.handle("GET /ip_addr_groups/{id}/versions/{ver}/ip_addrs/{addr}", func(w http.ResponseWriter, r *http.Request) error {
		id, a, err := addrItem(r)
		if err != nil {
			return err
		}
		err = s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			g, err := groups.load(tx, id.String())
			if err != nil {
				return err
			}
			if !g.HasAddr(a) {
				return notFound("address %s is not in IP address group %s", a, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return writeJSON(w, r, http.StatusOK, []string{"IpAddrGroupAddr-v1"}, addrView(r, id, a.String()))
	})
	s.handle("DELETE /ip_addr_groups/{id}/versions/{ver}/ip_addrs/{addr}", func(w http.ResponseWriter, r *http.Request) error {
		id, a, err := addrItem(r)
		if err != nil {
			return err
		}
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			g, err := groups.load(tx, id.String())
			if err != nil {
				var he *httpError
				if errors.As(err, &he) {
					return nil
				}
				return err
			}
			if !g.HasAddr(a) {
				return nil
			}
			g.IPAddrPorts = slices.DeleteFunc(g.IPAddrPorts, func(x topology.IPAddrPort) bool {
				y, err := netip.ParseAddr(x.IPAddress)
				return err == nil && y == a
			})
			return tx.Put(g)
		})
		if err != nil {
			return err
		}
		return noContent(w)
	})
}
