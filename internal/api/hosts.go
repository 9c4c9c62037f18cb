package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

type (
	hostRes       = resource[topology.Host, *topology.Host]
	tunnelZoneRes = resource[topology.TunnelZone, *topology.TunnelZone]
)

// hostState reads what agents publish about a host: whether it is alive
// and its interfaces.
func (s *Server) hostState(ctx context.Context, h *topology.Host) error {
	id := h.ID.String()
	_, err := s.store.GetState(ctx, nsdb.HostAliveKey(id))
	if err != nil && !errors.Is(err, topology.ErrNotFound) {
		return err
	}
	h.Alive = err == nil
	entries, _, err := s.store.ListState(ctx, nsdb.HostInterfacesPrefix(id))
	if err != nil {
		return err
	}
	h.HostInterfaces = []topology.Interface{}
	h.Addresses = []string{}
	for _, e := range entries {
		var itf topology.Interface
		if json.Unmarshal(e.Value, &itf) != nil {
			continue
		}
		itf.HostID = h.ID
		if itf.Addresses == nil {
			itf.Addresses = []string{}
		}
		h.HostInterfaces = append(h.HostInterfaces, itf)
		h.Addresses = append(h.Addresses, itf.Addresses...)
	}
	return nil
}

func interfaceView(base string, itf topology.Interface) view {
	v := toView(itf)
	v["uri"] = base + "/hosts/" + itf.HostID.String() + "/interfaces/" + itf.Name
	return v
}

func bindingView(r *http.Request, p *topology.Port) view {
	base := baseURI(r)
	h := p.HostID.String()
	return view{
		"hostId": h, "portId": p.ID.String(), "interfaceName": derefStr(p.InterfaceName),
		"uri":  base + "/hosts/" + h + "/ports/" + p.ID.String(),
		"host": base + "/hosts/" + h, "port": base + "/ports/" + p.ID.String(),
	}
}

func derefStr(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func (s *Server) hostRoutes() {
	hosts := &hostRes{
		s: s, kind: topology.KindHost, media: []string{"Host-v3", "Host-v2"},
		idRequired: true,
		defaults: func(h *topology.Host) {
			h.FloodingProxyWeight, h.ContainerWeight, h.ContainerLimit = 1, 1, -1
		},
		links: func(base string, h *topology.Host, v view) {
			u := base + "/hosts/" + h.ID.String()
			v["uri"] = u
			v["interfaces"] = u + "/interfaces"
			v["ports"] = u + "/ports"
			itfs := make([]view, len(h.HostInterfaces))
			for i, itf := range h.HostInterfaces {
				itfs[i] = interfaceView(base, itf)
			}
			v["hostInterfaces"] = itfs
		},
		onCreate: func(tx *nsdb.Tx, r *http.Request, h *topology.Host) error {
			h.Alive, h.Addresses, h.HostInterfaces = false, nil, nil
			return nil
		},
		enrich: func(r *http.Request, hs []*topology.Host) error {
			for _, h := range hs {
				if err := s.hostState(r.Context(), h); err != nil {
					return err
				}
			}
			return nil
		},
	}
	s.handle("GET /hosts", func(w http.ResponseWriter, r *http.Request) error { return hosts.list(w, r, nil) })
	s.handle("POST /hosts", hosts.post)
	s.handle("GET /hosts/{id}", hosts.get)
	s.handle("PUT /hosts/{id}", func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, "id")
		if err != nil {
			return err
		}
		var body struct {
			FloodingProxyWeight   *int  `json:"floodingProxyWeight"`
			ContainerWeight       *int  `json:"containerWeight"`
			ContainerLimit        *int  `json:"containerLimit"`
			EnforceContainerLimit *bool `json:"enforceContainerLimit"`
		}
		if err := decode(r, &body); err != nil {
			return err
		}
		var c topology.Checks
		c.Required("floodingProxyWeight", body.FloodingProxyWeight != nil)
		c.Required("containerWeight", body.ContainerWeight != nil)
		c.Required("containerLimit", body.ContainerLimit != nil)
		c.Required("enforceContainerLimit", body.EnforceContainerLimit != nil)
		if err := c.Err(); err != nil {
			return err
		}
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			h, err := hosts.load(tx, id.String())
			if err != nil {
				return err
			}
			was := *h
			h.FloodingProxyWeight, h.ContainerWeight = *body.FloodingProxyWeight, *body.ContainerWeight
			h.ContainerLimit, h.EnforceContainerLimit = *body.ContainerLimit, *body.EnforceContainerLimit
			if err := h.Validate(); err != nil {
				return err
			}
			if err := refuseHostWeights(h, &was); err != nil {
				return err
			}
			return tx.Put(h)
		})
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
	s.handle("DELETE /hosts/{id}", func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, "id")
		if err != nil {
			return err
		}
		h := &topology.Host{ID: id}
		if err := s.hostState(r.Context(), h); err != nil {
			return err
		}
		if h.Alive {
			return errStatus(http.StatusForbidden, "host %s is alive; stop its agent before deleting it", id)
		}
		return hosts.deleteID(w, r, id.String(), http.StatusOK)
	})
	s.handle("GET /hosts/{id}/interfaces", func(w http.ResponseWriter, r *http.Request) error {
		id, err := s.parentExists(r, topology.KindHost)
		if err != nil {
			return err
		}
		h := &topology.Host{ID: id}
		if err := s.hostState(r.Context(), h); err != nil {
			return err
		}
		out := make([]view, len(h.HostInterfaces))
		for i, itf := range h.HostInterfaces {
			out[i] = interfaceView(baseURI(r), itf)
		}
		return writeJSON(w, r, http.StatusOK, []string{"collection.Interface-v1"}, out)
	})
	s.handle("GET /hosts/{id}/interfaces/{name}", func(w http.ResponseWriter, r *http.Request) error {
		id, err := s.parentExists(r, topology.KindHost)
		if err != nil {
			return err
		}
		h := &topology.Host{ID: id}
		if err := s.hostState(r.Context(), h); err != nil {
			return err
		}
		for _, itf := range h.HostInterfaces {
			if itf.Name == r.PathValue("name") {
				return writeJSON(w, r, http.StatusOK, []string{"Interface-v1"}, interfaceView(baseURI(r), itf))
			}
		}
		return notFound("host %s has no interface %q", id, r.PathValue("name"))
	})

	// Port bindings.
	s.handle("GET /hosts/{id}/ports", func(w http.ResponseWriter, r *http.Request) error {
		id, err := s.parentExists(r, topology.KindHost)
		if err != nil {
			return err
		}
		var out []view
		err = s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			ports, err := topology.ListOf[topology.Port](tx)
			if err != nil {
				return err
			}
			out = []view{}
			for i := range ports {
				if p := &ports[i]; p.HostID != nil && *p.HostID == id && p.InterfaceName != nil {
					out = append(out, bindingView(r, p))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return writeJSON(w, r, http.StatusOK, []string{"collection.HostInterfacePort-v1"}, out)
	})
	s.handle("POST /hosts/{id}/ports", s.bindPort)
	s.handle("GET /hosts/{id}/ports/{portId}", func(w http.ResponseWriter, r *http.Request) error {
		id, pid, err := memberIDs(r, "portId")
		if err != nil {
			return err
		}
		var p topology.Port
		err = s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			if err := tx.Get(topology.KindPort, pid.String(), &p); err != nil {
				return err
			}
			if p.HostID == nil || *p.HostID != id {
				return notFound("port %s is not bound to host %s", pid, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return writeJSON(w, r, http.StatusOK, []string{"HostInterfacePort-v1"}, bindingView(r, &p))
	})
	s.handle("DELETE /hosts/{id}/ports/{portId}", func(w http.ResponseWriter, r *http.Request) error {
		id, pid, err := memberIDs(r, "portId")
		if err != nil {
			return err
		}
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			var p topology.Port
			if err := tx.Get(topology.KindPort, pid.String(), &p); err != nil {
				if errors.Is(err, topology.ErrNotFound) {
					return nil
				}
				return err
			}
			if p.HostID == nil || *p.HostID != id {
				return nil
			}
			p.HostID, p.InterfaceName = nil, nil
			return tx.Put(&p)
		})
		if err != nil {
			return err
		}
		return noContent(w)
	})

	s.tunnelZoneRoutes()
}

// bindPort binds a port to an interface of a host: the agent of that host
// then plugs the interface into its datapath as the port.
func (s *Server) bindPort(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var body struct {
		PortID        *topology.ID `json:"portId"`
		InterfaceName *string      `json:"interfaceName"`
	}
	if err := decode(r, &body); err != nil {
		return err
	}
	var c topology.Checks
	c.Required("portId", body.PortID != nil)
	c.Required("interfaceName", body.InterfaceName != nil && *body.InterfaceName != "")
	if err := c.Err(); err != nil {
		return err
	}
	err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
		if err := requireExists(tx, topology.KindHost, id, http.StatusNotFound); err != nil {
			return err
		}
		var p topology.Port
		if err := tx.Get(topology.KindPort, body.PortID.String(), &p); err != nil {
			return err
		}
		zones, err := topology.ListOf[topology.TunnelZone](tx)
		if err != nil {
			return err
		}
		member := false
		for i := range zones {
			if _, ok := zones[i].Member(id); ok {
				member = true
				if err := tx.Get(topology.KindTunnelZone, zones[i].ID.String(), &zones[i]); err != nil {
					return err // read it so a concurrent removal conflicts
				}
				break
			}
		}
		if !member {
			return conflict("host %s is not a member of any tunnel zone; add it to one (POST /tunnel_zones/{id}/hosts) first", id)
		}
		if p.InterfaceName != nil {
			return conflict("port %s is already bound to interface %s", p.ID, *p.InterfaceName)
		}
		ports, err := topology.ListOf[topology.Port](tx)
		if err != nil {
			return err
		}
		for _, o := range ports {
			if o.HostID != nil && *o.HostID == id && o.InterfaceName != nil && *o.InterfaceName == *body.InterfaceName {
				return conflict("interface %s of host %s is already bound to port %s", *body.InterfaceName, id, o.ID)
			}
		}
		was := p
		p.HostID, p.InterfaceName = topology.IDPtr(id), body.InterfaceName
		if err := refusePort(&p, &was); err != nil {
			return err
		}
		return tx.Put(&p)
	})
	if err != nil {
		return err
	}
	return created(w, baseURI(r)+"/hosts/"+id.String()+"/ports/"+body.PortID.String())
}

func (s *Server) tunnelZoneRoutes() {
	zones := &tunnelZoneRes{
		s: s, kind: topology.KindTunnelZone, media: []string{"TunnelZone-v1"},
		links: func(base string, z *topology.TunnelZone, v view) {
			v["uri"] = base + "/tunnel_zones/" + z.ID.String()
			v["hosts"] = base + "/tunnel_zones/" + z.ID.String() + "/hosts"
		},
	}
	uniqueName := func(tx *nsdb.Tx, z *topology.TunnelZone) error {
		all, err := topology.ListOf[topology.TunnelZone](tx)
		if err != nil {
			return err
		}
		for _, o := range all {
			if o.ID != z.ID && o.Name != nil && z.Name != nil && *o.Name == *z.Name {
				return conflict("Tunnel zone name already exists.")
			}
		}
		return nil
	}
	zones.onCreate = func(tx *nsdb.Tx, r *http.Request, z *topology.TunnelZone) error {
		z.Members = nil
		return uniqueName(tx, z)
	}
	zones.onUpdate = func(tx *nsdb.Tx, r *http.Request, old, z *topology.TunnelZone) error {
		z.Members = old.Members
		return uniqueName(tx, z)
	}
	crudRoutes(s, zones, "LCGUD")

	memberMedia := []string{"TunnelZoneHost-v1", "GreTunnelZoneHost-v1"}
	memberView := func(r *http.Request, z topology.ID, m topology.TunnelZoneMember) view {
		base := baseURI(r)
		return view{
			"tunnelZoneId": z.String(), "hostId": m.HostID.String(), "ipAddress": m.IPAddress,
			"uri":        base + "/tunnel_zones/" + z.String() + "/hosts/" + m.HostID.String(),
			"host":       base + "/hosts/" + m.HostID.String(),
			"tunnelZone": base + "/tunnel_zones/" + z.String(),
		}
	}
	s.handle("GET /tunnel_zones/{id}/hosts", zones.contents([]string{"collection.TunnelZoneHost-v1", "collection.GreTunnelZoneHost-v1"},
		func(_ *nsdb.Tx, r *http.Request, z *topology.TunnelZone) ([]view, error) {
			out := make([]view, len(z.Members))
			for i, m := range z.Members {
				out[i] = memberView(r, z.ID, m)
			}
			return out, nil
		}))
	s.handle("POST /tunnel_zones/{id}/hosts", func(w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r, "id")
		if err != nil {
			return err
		}
		var body struct {
			HostID    *topology.ID `json:"hostId"`
			IPAddress *string      `json:"ipAddress"`
		}
		if err := decode(r, &body); err != nil {
			return err
		}
		var c topology.Checks
		c.Required("hostId", body.HostID != nil)
		c.IPv4("ipAddress", body.IPAddress)
		if err := c.Err(); err != nil {
			return err
		}
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			z, err := zones.load(tx, id.String())
			if err != nil {
				return err
			}
			if err := requireExists(tx, topology.KindHost, *body.HostID, http.StatusNotFound); err != nil {
				return err
			}
			if _, ok := z.Member(*body.HostID); ok {
				return &httpError{status: http.StatusConflict, msg: "already a member", emptyBody: true}
			}
			z.Members = append(z.Members, topology.TunnelZoneMember{HostID: *body.HostID, IPAddress: *body.IPAddress})
			return tx.Put(z)
		})
		if err != nil {
			return err
		}
		return created(w, baseURI(r)+"/tunnel_zones/"+id.String()+"/hosts/"+body.HostID.String())
	})
	s.handle("GET /tunnel_zones/{id}/hosts/{hostId}", func(w http.ResponseWriter, r *http.Request) error {
		id, hid, err := memberIDs(r, "hostId")
		if err != nil {
			return err
		}
		var m topology.TunnelZoneMember
		err = s.store.View(r.Context(), func(tx *nsdb.Tx) error {
			z, err := zones.load(tx, id.String())
			if err != nil {
				return err
			}
			var ok bool
			if m, ok = z.Member(hid); !ok {
				return notFound("host %s is not a member of tunnel zone %s", hid, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return writeJSON(w, r, http.StatusOK, memberMedia, memberView(r, id, m))
	})
	s.handle("DELETE /tunnel_zones/{id}/hosts/{hostId}", func(w http.ResponseWriter, r *http.Request) error {
		id, hid, err := memberIDs(r, "hostId")
		if err != nil {
			return err
		}
		err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
			z, err := zones.load(tx, id.String())
			if err != nil {
				return err
			}
			if _, ok := z.Member(hid); !ok {
				return &httpError{status: http.StatusNotFound, msg: "not a member", emptyBody: true}
			}
			z.Members = slices.DeleteFunc(z.Members, func(m topology.TunnelZoneMember) bool { return m.HostID == hid })
			return tx.Put(z)
		})
		if err != nil {
			return err
		}
		return noContent(w)
	})
}
