package api

import (
	"encoding/base64"
	"net/http"
	"strings"
)

// routes registers every path of the API.
func (s *Server) routes() {
	root := func(w http.ResponseWriter, r *http.Request) error { s.root(w, r); return nil }
	s.handle("GET ", root)
	s.handle("GET /{$}", root)
	s.handle("POST /login", s.login)
	s.handle("GET /system_state", s.systemState)
	s.handle("GET /tenants", s.tenants)
	s.handle("GET /tenants/{id}", s.tenant)
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		s.handle(m+" /tenants", s.tenantsReadOnly)
		s.handle(m+" /tenants/{id}", s.tenantsReadOnly)
	}
	// Collections that exist only under their parent: the top-level path
	// answers 405, as MidoNet does.
	for _, p := range []string{"/routes", "/rules", "/bgp_peers", "/bgp_networks", "/qos_bw_limit_rules", "/qos_dscp_rules"} {
		for _, m := range []string{"GET", "POST"} {
			s.handle(m+" "+p, s.methodNotAllowed)
		}
	}
	if s.neutron != nil {
		s.mux.Handle(BasePath+"/neutron", s.neutron)
		s.mux.Handle(BasePath+"/neutron/", s.neutron)
	}
	s.networkRoutes()
	s.filterRoutes()
	s.hostRoutes()
	s.dhcpRoutes()
	s.dhcp6Routes()
	s.tableRoutes()
	s.serviceRoutes()
}

// collections maps the Application keys to their path segments.
var collections = map[string]string{
	"bridges": "bridges", "chains": "chains", "healthMonitors": "health_monitors", "hosts": "hosts",
	"ipAddrGroups": "ip_addr_groups", "l2insertions": "l2insertions", "loadBalancers": "load_balancers", "mirrors": "mirrors",
	"poolMembers": "pool_members", "pools": "pools", "portGroups": "port_groups", "ports": "ports",
	"qosPolicies": "qos_policies", "routers": "routers", "systemState": "system_state", "tenants": "tenants",
	"traceRequests": "traces", "tunnelZones": "tunnel_zones", "vips": "vips",
}

// templates maps the Application template keys to their path segments.
var templates = map[string]string{
	"bgpNetworkTemplate": "bgp_networks", "bgpPeerTemplate": "bgp_peers", "bridgeTemplate": "bridges",
	"chainTemplate": "chains", "healthMonitorTemplate": "health_monitors", "hostTemplate": "hosts",
	"ipAddrGroupTemplate": "ip_addr_groups", "l2InsertionTemplate": "l2insertions", "loadBalancerTemplate": "load_balancers",
	"mirrorTemplate": "mirrors", "poolMemberTemplate": "pool_members", "poolTemplate": "pools",
	"portGroupTemplate": "port_groups", "portTemplate": "ports", "qosBwLimitRuleTemplate": "qos_bw_limit_rules",
	"qosDscpRuleTemplate": "qos_dscp_rules", "qosPolicyTemplate": "qos_policies", "routeTemplate": "routes",
	"routerTemplate": "routers", "ruleTemplate": "rules", "tenantTemplate": "tenants",
	"traceRequestTemplate": "traces", "tunnelZoneTemplate": "tunnel_zones", "vipTemplate": "vips",
}

// root serves the Application object: the entry point clients discover
// every collection and URI template from.
func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	base := baseURI(r)
	app := map[string]string{"uri": base + "/", "version": "v5.0"}
	for k, seg := range collections {
		app[k] = base + "/" + seg
	}
	for k, seg := range templates {
		app[k] = base + "/" + seg + "/{id}"
	}
	if s.neutron != nil {
		app["neutron"] = base + "/neutron"
	}
	ct := vendor("Application-v5")
	if strings.Contains(r.Header.Get("Accept"), "application/json") {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	writeBody(w, app)
}

// MockToken is the token of the mock authentication MidoNet uses by
// default: any credentials log in, every request is the admin tenant.
const MockToken = "00000000"

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	auth := r.Header.Get("Authorization")
	scheme, cred, ok := strings.Cut(auth, " ")
	if ok && strings.EqualFold(scheme, "Basic") {
		if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred)); err == nil && strings.Contains(string(dec), ":") {
			expires := s.now().UTC().Add(24 * 3600e9)
			http.SetCookie(w, &http.Cookie{Name: "sessionId", Value: MockToken})
			// Rewrite the cookie in MidoNet's exact shape; clients split it.
			w.Header().Set("Set-Cookie", "sessionId="+MockToken+"; Expires="+expires.Format("Mon, 02-01-2006 15:04:05 MST"))
			w.Header().Set("Content-Type", vendor("Token-v1"))
			writeBody(w, map[string]any{"key": MockToken, "expires": expires.Format("2006-01-02T15:04:05Z")})
			return nil
		}
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="midonet"`)
	return errStatus(http.StatusUnauthorized, "login needs an Authorization: Basic header with user:password")
}

// systemState says whether the API can serve: availability is READWRITE
// while the store takes writes, READONLY while it answers reads but
// refuses writes (an alarm such as NOSPACE), and UNAVAILABLE while it does
// not answer, with information saying why. MidoNet's server always said
// ACTIVE and READWRITE. The state stays ACTIVE: it is MidoNet's upgrade
// marker, which this server has no use for.
func (s *Server) systemState(w http.ResponseWriter, r *http.Request) error {
	av, why := s.store.Availability(r.Context())
	var info any
	if why != "" {
		info = why
	}
	return writeJSON(w, r, http.StatusOK, []string{"SystemState-v2", "SystemState-v1"}, map[string]any{
		"state": "ACTIVE", "availability": av.String(), "version": "5.0.0", "information": info,
	})
}

func (s *Server) tenantView(r *http.Request, id, name, desc string) view {
	base := baseURI(r)
	q := "?tenant_id=" + id
	return view{
		"id": id, "name": name, "description": desc, "enabled": true,
		"uri": base + "/tenants/" + id, "routers": base + "/routers" + q, "bridges": base + "/bridges" + q,
		"chains": base + "/chains" + q, "portGroups": base + "/port_groups" + q,
	}
}

func (s *Server) tenants(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, r, http.StatusOK, []string{"collection.Tenant-v2"},
		[]view{s.tenantView(r, "admin", "admin", "Admin Tenant")})
}

func (s *Server) tenant(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	desc := ""
	if id == "admin" {
		desc = "Admin Tenant"
	}
	return writeJSON(w, r, http.StatusOK, []string{"Tenant-v2"}, s.tenantView(r, id, id, desc))
}

func (s *Server) tenantsReadOnly(w http.ResponseWriter, r *http.Request) error {
	return errStatus(http.StatusMethodNotAllowed, "Tenants cannot be created, updated or deleted via the REST API.")
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) error {
	return errStatus(http.StatusMethodNotAllowed, "%s is not supported on %s; use the collection under the parent object", r.Method, r.URL.Path)
}
