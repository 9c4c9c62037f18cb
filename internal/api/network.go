package api

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"net/http"
	"slices"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

type (
	bridgeRes = resource[topology.Bridge, *topology.Bridge]
	routerRes = resource[topology.Router, *topology.Router]
	portRes   = resource[topology.Port, *topology.Port]
	routeRes  = resource[topology.Route, *topology.Route]
)

func (s *Server) networkRoutes() {
	bridges := &bridgeRes{
		s: s, kind: topology.KindBridge, media: []string{"Bridge-v4", "Bridge-v5", "Bridge-v3"},
		defaults: func(b *topology.Bridge) { b.AdminStateUp = true },
		filter:   func(r *http.Request, b *topology.Bridge) bool { return tenantFilter(r, b.TenantID) },
		links: func(base string, b *topology.Bridge, v view) {
			u := base + "/bridges/" + b.ID.String()
			v["uri"] = u
			v["inboundFilter"] = link(base, "/chains/", b.InboundFilterID)
			v["outboundFilter"] = link(base, "/chains/", b.OutboundFilterID)
			v["ports"] = u + "/ports"
			v["peerPorts"] = u + "/peer_ports"
			v["vxLanPorts"] = u + "/vxlan_ports"
			v["macTable"] = u + "/mac_table"
			v["arpTable"] = u + "/arp_table"
			v["dhcpSubnets"] = u + "/dhcp"
			v["dhcpSubnet6s"] = u + "/dhcpV6"
			v["vlanMacTableTemplate"] = u + "/vlans/{vlanId}/mac_table"
			v["macPortTemplate"] = u + "/mac_table/{macAddress}_{portId}"
			v["vlanMacPortTemplate"] = u + "/vlans/{vlanId}/mac_table/{macAddress}_{portId}"
		},
		onCreate: func(tx *nsdb.Tx, r *http.Request, b *topology.Bridge) error {
			if len(b.VxLanPortIDs) > 0 {
				return badRequest("VXLAN port ID cannot be set directly; bind the bridge to a VTEP instead")
			}
			return nil
		},
		onUpdate: func(tx *nsdb.Tx, r *http.Request, old, b *topology.Bridge) error {
			if b.VxLanPortIDs != nil && !slices.Equal(b.VxLanPortIDs, old.VxLanPortIDs) {
				return badRequest("VXLAN port ID cannot be set directly; bind the bridge to a VTEP instead")
			}
			b.VxLanPortIDs = old.VxLanPortIDs
			return nil
		},
	}
	bridges.onDelete = func(tx *nsdb.Tx, id string) error {
		if err := tx.DeleteStatePrefix(nsdb.BridgeMACsPrefix(id)); err != nil {
			return err
		}
		return tx.DeleteStatePrefix(nsdb.BridgeARPPrefix(id))
	}
	crudRoutes(s, bridges, "LCGUD")

	routers := &routerRes{
		s: s, kind: topology.KindRouter, media: []string{"Router-v3", "Router-v2", "Router-v1"},
		defaults: func(x *topology.Router) { x.AdminStateUp = true },
		filter:   func(r *http.Request, x *topology.Router) bool { return tenantFilter(r, x.TenantID) },
		links: func(base string, x *topology.Router, v view) {
			u := base + "/routers/" + x.ID.String()
			v["uri"] = u
			v["inboundFilter"] = link(base, "/chains/", x.InboundFilterID)
			v["outboundFilter"] = link(base, "/chains/", x.OutboundFilterID)
			v["localRedirectChain"] = link(base, "/chains/", x.LocalRedirectChainID)
			v["forwardChain"] = link(base, "/chains/", x.ForwardChainID)
			v["loadBalancer"] = link(base, "/load_balancers/", x.LoadBalancerID)
			v["ports"] = u + "/ports"
			v["peerPorts"] = u + "/peer_ports"
			v["routes"] = u + "/routes"
			v["bgpNetworks"] = u + "/bgp_networks"
			v["bgpPeers"] = u + "/bgp_peers"
		},
		onCreate: func(tx *nsdb.Tx, r *http.Request, x *topology.Router) error {
			return s.attachLoadBalancer(tx, x, nil)
		},
		onUpdate: func(tx *nsdb.Tx, r *http.Request, old, x *topology.Router) error {
			return s.attachLoadBalancer(tx, x, old)
		},
	}
	routers.onDelete = func(tx *nsdb.Tx, id string) error {
		return tx.DeleteStatePrefix(nsdb.RouterARPPrefix(id))
	}
	crudRoutes(s, routers, "LCGUD")

	ports := &portRes{
		s: s, kind: topology.KindPort, media: []string{"Port-v3", "Port-v4", "Port-v2"},
		defaults: func(p *topology.Port) { p.AdminStateUp = true },
		links:    portLinks,
		onUpdate: s.updatePort,
		enrich: func(r *http.Request, ports []*topology.Port) error {
			if err := s.portsActive(r, ports); err != nil {
				return err
			}
			return s.portInsertions(r, ports)
		},
	}
	crudRoutes(s, ports, "LGUD")
	s.handle("POST /ports/{id}/link", s.linkPorts)
	s.handle("DELETE /ports/{id}/link", s.unlinkPorts)
	for _, dev := range []struct {
		path, kind, portType string
	}{{"/bridges", topology.KindBridge, topology.PortTypeBridge}, {"/routers", topology.KindRouter, topology.PortTypeRouter}} {
		s.handle("GET "+dev.path+"/{id}/ports", subList(s, ports, dev.kind,
			func(p *topology.Port, device topology.ID) bool { return p.DeviceID == device }))
		s.handle("GET "+dev.path+"/{id}/peer_ports", func(w http.ResponseWriter, r *http.Request) error {
			return s.peerPorts(w, r, ports, dev.kind)
		})
		s.handle("POST "+dev.path+"/{id}/ports", func(w http.ResponseWriter, r *http.Request) error {
			devID, err := pathID(r, "id")
			if err != nil {
				return err
			}
			return ports.create(w, r, func(tx *nsdb.Tx, p *topology.Port) error {
				return s.prepareNewPort(tx, p, dev.kind, dev.portType, devID)
			})
		})
	}

	routes := &routeRes{
		s: s, kind: topology.KindRoute, media: []string{"Route-v1"},
		links: func(base string, x *topology.Route, v view) {
			v["uri"] = base + "/routes/" + x.ID.String()
			v["router"] = base + "/routers/" + x.RouterID.String()
		},
	}
	routes.more = s.learnedRoutes
	crudRoutes(s, routes, "GD")
	s.handle("GET /routers/{id}/routes", subList(s, routes, topology.KindRouter,
		func(x *topology.Route, rt topology.ID) bool { return x.RouterID == rt }))
	s.handle("POST /routers/{id}/routes", func(w http.ResponseWriter, r *http.Request) error {
		rid, err := pathID(r, "id")
		if err != nil {
			return err
		}
		return routes.create(w, r, func(tx *nsdb.Tx, x *topology.Route) error {
			if err := requireExists(tx, topology.KindRouter, rid, http.StatusNotFound); err != nil {
				return err
			}
			x.RouterID, x.Learned = rid, false
			if err := x.Validate(); err != nil {
				return err
			}
			if x.NextHopPort != nil {
				var p topology.Port
				err := tx.Get(topology.KindPort, x.NextHopPort.String(), &p)
				if err != nil && !errors.Is(err, topology.ErrNotFound) {
					return err
				}
				if err != nil || p.DeviceID != rid {
					return badRequest("This type of route requires a next hop port that is a port on the same router.")
				}
			} else if x.Type == topology.RouteNormal {
				return badRequest("This type of route requires a next hop port that is a port on the same router.")
			}
			return nil
		})
	})
}

// parentExists checks the {id} of a sub-collection path names an object of
// kind (404 otherwise).
func (s *Server) parentExists(r *http.Request, kind string) (topology.ID, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return id, err
	}
	err = s.store.View(r.Context(), func(tx *nsdb.Tx) error {
		return requireExists(tx, kind, id, http.StatusNotFound)
	})
	return id, err
}

// attachLoadBalancer checks a router's loadBalancerId and keeps the load
// balancer's routerId in step with it.
func (s *Server) attachLoadBalancer(tx *nsdb.Tx, x, old *topology.Router) error {
	var oldLB *topology.ID
	if old != nil {
		oldLB = old.LoadBalancerID
	}
	if x.LoadBalancerID != nil && (oldLB == nil || *oldLB != *x.LoadBalancerID) {
		var lb topology.LoadBalancer
		if err := tx.Get(topology.KindLoadBalancer, x.LoadBalancerID.String(), &lb); err != nil {
			if errors.Is(err, topology.ErrNotFound) {
				return notFound("loadBalancerId: load balancer %s does not exist", x.LoadBalancerID)
			}
			return err
		}
		if lb.RouterID != nil && *lb.RouterID != x.ID {
			return conflict("load balancer %s is already attached to router %s", lb.ID, lb.RouterID)
		}
		lb.RouterID = topology.IDPtr(x.ID)
		if err := tx.Put(&lb); err != nil {
			return err
		}
	}
	if oldLB != nil && (x.LoadBalancerID == nil || *x.LoadBalancerID != *oldLB) {
		var lb topology.LoadBalancer
		if err := tx.Get(topology.KindLoadBalancer, oldLB.String(), &lb); err == nil {
			lb.RouterID = nil
			if err := tx.Put(&lb); err != nil {
				return err
			}
		} else if !errors.Is(err, topology.ErrNotFound) {
			return err
		}
	}
	return nil
}

// routerPortFields are the fields only a router port shows.
var routerPortFields = []string{"portAddress", "networkAddress", "networkLength", "portSubnet", "portMac",
	"rtrPortVni", "offRampVxlan", "serviceContainerId", "bgpStatus"}

func portLinks(base string, p *topology.Port, v view) {
	u := base + "/ports/" + p.ID.String()
	v["uri"] = u
	devPath := "/bridges/"
	if p.Type == topology.PortTypeRouter {
		devPath = "/routers/"
	}
	v["device"] = base + devPath + p.DeviceID.String()
	v["host"] = link(base, "/hosts/", p.HostID)
	v["peer"] = link(base, "/ports/", p.PeerID)
	v["link"] = u + "/link"
	v["portGroups"] = u + "/port_groups"
	if p.HostID != nil {
		v["hostInterfacePort"] = base + "/hosts/" + p.HostID.String() + "/ports/" + p.ID.String()
	} else {
		v["hostInterfacePort"] = nil
	}
	v["inboundFilter"] = link(base, "/chains/", p.InboundFilterID)
	v["outboundFilter"] = link(base, "/chains/", p.OutboundFilterID)
	// Each kind of port shows its own fields only.
	switch p.Type {
	case topology.PortTypeRouter:
		delete(v, "vlanId")
		delete(v, "vtepId")
		v["peeringTable"] = base + "/routers/" + p.DeviceID.String() + "/ports/" + p.ID.String() + "/peering_table"
		v["serviceContainer"] = link(base, "/service_containers/", p.ServiceContainerID)
	case topology.PortTypeVxlan:
		delete(v, "vlanId")
		for _, k := range routerPortFields {
			delete(v, k)
		}
	default:
		delete(v, "vtepId")
		for _, k := range routerPortFields {
			delete(v, k)
		}
	}
}

// prepareNewPort fills the server-managed fields of a new port and, for a
// router port, creates its Local /32 routes.
func (s *Server) prepareNewPort(tx *nsdb.Tx, p *topology.Port, devKind, portType string, devID topology.ID) error {
	if err := requireExists(tx, devKind, devID, http.StatusNotFound); err != nil {
		return err
	}
	t, ok := topology.NormalizeType(p.Type)
	if p.Type == "" {
		return badRequest("the port's type is missing: send \"type\": %q", portType)
	}
	if !ok || t != portType {
		if portType == topology.PortTypeBridge {
			return badRequest("Not a bridge port.")
		}
		return badRequest("Not a router port.")
	}
	p.Type = t
	p.DeviceID = devID
	p.HostID, p.InterfaceName, p.PeerID, p.Active = nil, nil, nil, false
	p.InsertionIDs, p.ServiceContainerID, p.BGPStatus, p.VtepID = nil, nil, nil, nil
	if err := topology.AllocateTunnelKey(tx, p, mrand.Int64N); err != nil {
		return err
	}
	if t == topology.PortTypeRouter {
		p.PrepareRouterPort()
		if p.PortMAC == nil {
			var b [3]byte
			rand.Read(b[:])
			p.PortMAC = topology.Str(topology.RandomPortMAC(b))
		}
		if err := p.Validate(); err != nil {
			return err
		}
		for _, rt := range topology.LocalRoutes(p, topology.NewID) {
			if err := tx.Create(&rt); err != nil {
				return err
			}
		}
	}
	return nil
}

// updatePort keeps what a PUT of a port preserves and refreshes the Local
// routes of a router port whose addresses changed.
func (s *Server) updatePort(tx *nsdb.Tx, r *http.Request, old, p *topology.Port) error {
	t, ok := topology.NormalizeType(p.Type)
	if !ok || t != old.Type {
		return badRequest("the body's type %q does not match port %s, a %s port", p.Type, old.ID, old.Type)
	}
	p.Type = t
	p.DeviceID, p.TunnelKey, p.Active = old.DeviceID, old.TunnelKey, old.Active
	if old.HostID != nil || p.HostID == nil {
		p.HostID, p.InterfaceName = old.HostID, old.InterfaceName
	}
	if old.PeerID != nil || p.PeerID != nil {
		p.PeerID = old.PeerID
	}
	p.InsertionIDs, p.ServiceContainerID, p.VtepID, p.BGPStatus = old.InsertionIDs, old.ServiceContainerID, old.VtepID, old.BGPStatus
	if t != topology.PortTypeRouter {
		return nil
	}
	p.PrepareRouterPort()
	if p.PortMAC == nil {
		p.PortMAC = old.PortMAC
	}
	if slices.Equal(p.PortSubnet, old.PortSubnet) {
		return nil
	}
	if err := p.Validate(); err != nil {
		return err
	}
	routes, err := topology.ListOf[topology.Route](tx)
	if err != nil {
		return err
	}
	for _, rt := range routes {
		if rt.Type == topology.RouteLocal && rt.NextHopPort != nil && *rt.NextHopPort == p.ID {
			if err := tx.Delete(topology.KindRoute, rt.ID.String()); err != nil {
				return err
			}
		}
	}
	for _, rt := range topology.LocalRoutes(p, topology.NewID) {
		if err := tx.Create(&rt); err != nil {
			return err
		}
	}
	return nil
}

// peerPorts lists the ports linked to the ports of a device.
func (s *Server) peerPorts(w http.ResponseWriter, r *http.Request, ports *portRes, kind string) error {
	id, err := s.parentExists(r, kind)
	if err != nil {
		return err
	}
	var peers map[topology.ID]bool
	err = s.store.View(r.Context(), func(tx *nsdb.Tx) error {
		all, err := topology.ListOf[topology.Port](tx)
		if err != nil {
			return err
		}
		peers = map[topology.ID]bool{}
		for _, p := range all {
			if p.DeviceID == id && p.PeerID != nil {
				peers[*p.PeerID] = true
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return ports.list(w, r, func(p *topology.Port) bool { return peers[p.ID] })
}

type portLink struct {
	PeerID *topology.ID `json:"peerId"`
}

func (s *Server) linkPorts(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var body portLink
	if err := decode(r, &body); err != nil {
		return err
	}
	var c topology.Checks
	if c.Required("peerId", body.PeerID != nil); c.Err() != nil {
		return c.Err()
	}
	err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
		var a, b topology.Port
		if err := tx.Get(topology.KindPort, id.String(), &a); err != nil {
			return err
		}
		if err := tx.Get(topology.KindPort, body.PeerID.String(), &b); err != nil {
			return err
		}
		if a.PeerID != nil || b.PeerID != nil || a.ID == b.ID {
			return conflict("Ports are not linkable.")
		}
		a.PeerID, b.PeerID = topology.IDPtr(b.ID), topology.IDPtr(a.ID)
		if err := tx.Put(&a); err != nil {
			return err
		}
		return tx.Put(&b)
	})
	if err != nil {
		return err
	}
	return created(w, baseURI(r)+"/ports/"+id.String()+"/link")
}

func (s *Server) unlinkPorts(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	err = s.store.Update(r.Context(), func(tx *nsdb.Tx) error {
		var a topology.Port
		if err := tx.Get(topology.KindPort, id.String(), &a); err != nil {
			return err
		}
		if a.PeerID == nil {
			return nil
		}
		var b topology.Port
		if err := tx.Get(topology.KindPort, a.PeerID.String(), &b); err == nil {
			b.PeerID = nil
			if err := tx.Put(&b); err != nil {
				return err
			}
		} else if !errors.Is(err, topology.ErrNotFound) {
			return err
		}
		a.PeerID = nil
		return tx.Put(&a)
	})
	if err != nil {
		return err
	}
	return noContent(w)
}

// portInsertions fills the insertionIds of ports: the L2 insertions that
// protect them.
func (s *Server) portInsertions(r *http.Request, ports []*topology.Port) error {
	return s.store.View(r.Context(), func(tx *nsdb.Tx) error {
		all, err := topology.ListOf[topology.L2Insertion](tx)
		if err != nil || len(all) == 0 {
			return err
		}
		for _, p := range ports {
			p.InsertionIDs = nil
			for _, x := range all {
				if eqID(x.PortID, p.ID) {
					p.InsertionIDs = append(p.InsertionIDs, x.ID)
				}
			}
		}
		return nil
	})
}

// portsActive sets the active flag of ports from the state their agents
// publish (a port is active while its agent has it plugged and up), and a
// router port's bgpStatus from the state of its BGP speaker.
func (s *Server) portsActive(r *http.Request, ports []*topology.Port) error {
	if len(ports) == 0 {
		return nil
	}
	var entries []nsdb.StateEntry
	if len(ports) == 1 {
		for _, key := range []string{nsdb.PortActiveKey(ports[0].ID.String()), nsdb.PortBGPKey(ports[0].ID.String())} {
			e, err := s.store.GetState(r.Context(), key)
			if errors.Is(err, topology.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			entries = append(entries, e)
		}
	} else {
		var err error
		if entries, _, err = s.store.ListState(r.Context(), "/state/ports/"); err != nil {
			return err
		}
	}
	active := make(map[string]bool, len(entries))
	status := map[string]string{}
	for _, e := range entries {
		if id, ok := nsdb.ParsePortActiveKey(e.Key); ok {
			active[id+"/"+string(e.Value)] = true
		} else if id, ok := nsdb.ParsePortBGPKey(e.Key); ok {
			status[id] = string(e.Value)
		}
	}
	for _, p := range ports {
		p.Active = p.HostID != nil && active[p.ID.String()+"/"+p.HostID.String()]
		if st, ok := status[p.ID.String()]; ok && p.Type == topology.PortTypeRouter {
			p.BGPStatus = &st
		} else {
			p.BGPStatus = nil
		}
	}
	return nil
}

// learnedRoutes lists the routes agents learned by BGP: state keys, shown
// with the stored routes as MidoNet did ("learned": true).
func (s *Server) learnedRoutes(r *http.Request) ([]*topology.Route, error) {
	entries, _, err := s.store.ListState(r.Context(), nsdb.LearnedRoutesPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]*topology.Route, 0, len(entries))
	for _, e := range entries {
		if _, _, ok := nsdb.ParsePortRouteKey(e.Key); !ok {
			continue
		}
		var rt topology.Route
		if err := json.Unmarshal(e.Value, &rt); err != nil {
			continue // not ours to fix: an agent writes it
		}
		rt.Learned = true
		out = append(out, &rt)
	}
	return out, nil
}
