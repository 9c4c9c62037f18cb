package neutron

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/midonet/midonet/internal/topology"
)

// The endpoints, as MidoNet's cluster served them under
// <base>/neutron: bare Neutron JSON, MidoNet's
// application/vnd.org.midonet.neutron.* media types (application/json is
// accepted too), POST 201 with Location and the stored object, PUT 200
// with the object, add/remove_router_interface and DELETE 204, a JSON
// array on POST for a bulk create.

// mediaNames are the vendor names of each collection: one object, many.
var mediaNames = map[string][2]string{
	"networks":             {"Network", "Networks"},
	"subnets":              {"Subnet", "Subnets"},
	"ports":                {"Port", "Ports"},
	"routers":              {"Router", "Routers"},
	"floating_ips":         {"FloatingIp", "FloatingIps"},
	"security_groups":      {"SecurityGroup", "SecurityGroups"},
	"security_group_rules": {"SecurityGroupRule", "SecurityGroupRules"},
}

// templateKeys name each collection's item template in the root.
var templateKeys = map[string]string{
	"networks": "network_template", "subnets": "subnet_template", "ports": "port_template",
	"routers": "router_template", "floating_ips": "floating_ip_template",
	"security_groups": "security_group_template", "security_group_rules": "security_group_rule_template",
}

// unsupportedColls are MidoNet's other Neutron collections (root key,
// template key, path): listed in the root so that clients discover them,
// answered with 501 naming the service.
var unsupportedColls = []struct{ key, template, path, what string }{
	{"load_balancers_v2", "load_balancer_v2_template", "lbs_v2", "LBaaS v2"},
	{"pools_v2", "pool_v2_template", "pools_v2", "LBaaS v2"},
	{"pool_members_v2", "pool_member_v2_template", "pool_members_v2", "LBaaS v2"},
	{"listeners_v2", "listener_v2_template", "listeners_v2", "LBaaS v2"},
	{"health_monitors_v2", "health_monitor_v2_template", "health_monitors_v2", "LBaaS v2"},
	{"firewalls", "firewall_template", "firewalls", "FWaaS"},
	{"vpn_services", "vpn_service_template", "vpnservices", "VPNaaS"},
	{"ipsec_site_conns", "ipsec_site_conn_template", "ipsec_site_connections", "VPNaaS"},
	{"l2_gateway_connections", "l2_gateway_connection_template", "l2_gateway_connections", "L2 gateways"},
	{"gateway_devices", "gateway_device_template", "gateway_devices", "gateway devices"},
	{"remote_mac_entries", "remote_mac_entry_template", "remote_mac_entries", "gateway devices"},
	{"bgp_speakers", "bgp_speaker_template", "bgp_speakers", "Neutron dynamic routing"},
	{"bgp_peers", "bgp_peer_template", "bgp_peers", "Neutron dynamic routing"},
	{"tap_flows", "tap_flow_template", "tap_flows", "Tap-as-a-Service"},
	{"tap_services", "tap_service_template", "tap_services", "Tap-as-a-Service"},
	{"firewall_logs", "firewall_log_template", "firewall_logs", "FWaaS logging"},
	{"logging_resources", "logging_resource_template", "logging_resources", "FWaaS logging"},
}

// lbaasV1 are the LBaaS v1 collections under lb/.
var lbaasV1 = []struct{ key, template, path string }{
	{"vips", "vip_template", "vips"}, {"pools", "pool_template", "pools"},
	{"members", "member_template", "members"}, {"health_monitors", "health_monitor_template", "health_monitors"},
}

// Handler serves the Neutron endpoints; base is the API's path (e.g.
// /midonet-api), baseURI builds absolute URIs from a request.
func (s *Service) Handler(base string, baseURI func(*http.Request) string) http.Handler {
	mux := http.NewServeMux()
	h := func(pattern string, f func(w http.ResponseWriter, r *http.Request) error) {
		method, path, _ := strings.Cut(pattern, " ")
		if method != "" {
			method += " "
		}
		mux.HandleFunc(method+base+"/neutron"+path, func(w http.ResponseWriter, r *http.Request) {
			if err := f(w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
	}
	root := func(w http.ResponseWriter, r *http.Request) error {
		u := baseURI(r) + "/neutron"
		doc := map[string]any{"uri": u}
		for _, c := range s.Collections() {
			doc[c] = u + "/" + c
			doc[templateKeys[c]] = u + "/" + c + "/{id}"
		}
		doc["add_router_interface_template"] = u + "/routers/{id}/add_router_interface"
		doc["remove_router_interface_template"] = u + "/routers/{id}/remove_router_interface"
		lb := map[string]any{"uri": u + "/lb"}
		for _, c := range lbaasV1 {
			lb[c.key] = u + "/lb/" + c.path
			lb[c.template] = u + "/lb/" + c.path + "/{id}"
		}
		lb["pool_health_monitor"] = u + "/lb/pool_health_monitor"
		doc["load_balancer"] = lb
		for _, c := range unsupportedColls {
			doc[c.key] = u + "/" + c.path
			doc[c.template] = u + "/" + c.path + "/{id}"
		}
		return writeJSON(w, r, http.StatusOK, "Neutron-v3", doc)
	}
	h("GET /{$}", root)
	h("GET ", root)
	for _, c := range unsupportedColls {
		f := func(w http.ResponseWriter, r *http.Request) error {
			return unsupported("%s is not supported by this cluster (%s %s)", c.what, r.Method, r.URL.Path)
		}
		h(" /"+c.path, f)
		h(" /"+c.path+"/", f)
	}
	h(" /lb/", func(w http.ResponseWriter, r *http.Request) error {
		return unsupported("LBaaS v1 is not supported by this cluster (%s %s)", r.Method, r.URL.Path)
	})
	for _, name := range s.Collections() {
		c, _ := s.collection(name)
		media := mediaNames[name]
		loc := func(r *http.Request, id string) string { return baseURI(r) + "/neutron/" + name + "/" + id }
		h("POST /"+name, func(w http.ResponseWriter, r *http.Request) error {
			body, err := readBody(r)
			if err != nil {
				return err
			}
			bulk := strings.HasPrefix(strings.TrimSpace(string(body)), "[")
			out, err := c.create(r.Context(), body, bulk)
			if err != nil {
				return err
			}
			if bulk {
				w.Header().Set("Location", baseURI(r)+"/neutron/"+name)
				return writeJSON(w, r, http.StatusCreated, media[1], out)
			}
			var obj struct {
				ID string `json:"id"`
			}
			json.Unmarshal(out[0], &obj)
			w.Header().Set("Location", loc(r, obj.ID))
			return writeJSON(w, r, http.StatusCreated, media[0], out[0])
		})
		h("GET /"+name, func(w http.ResponseWriter, r *http.Request) error {
			out, err := c.list(r.Context())
			if err != nil {
				return err
			}
			return writeJSON(w, r, http.StatusOK, media[1], out)
		})
		h("GET /"+name+"/{id}", func(w http.ResponseWriter, r *http.Request) error {
			id, err := pathID(r)
			if err != nil {
				return err
			}
			out, err := c.get(r.Context(), id)
			if err != nil {
				return err
			}
			return writeJSON(w, r, http.StatusOK, media[0], out)
		})
		h("PUT /"+name+"/{id}", func(w http.ResponseWriter, r *http.Request) error {
			id, err := pathID(r)
			if err != nil {
				return err
			}
			if !c.canUpdate() {
				return &statusError{http.StatusMethodNotAllowed, "a " + c.kindName() + " cannot be updated; delete it and create another"}
			}
			body, err := readBody(r)
			if err != nil {
				return err
			}
			out, err := c.update(r.Context(), id, body)
			if err != nil {
				return err
			}
			w.Header().Set("Location", loc(r, id.String()))
			return writeJSON(w, r, http.StatusOK, media[0], out)
		})
		h("DELETE /"+name+"/{id}", func(w http.ResponseWriter, r *http.Request) error {
			id, err := pathID(r)
			if err != nil {
				return err
			}
			if err := c.delete(r.Context(), id); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
	}
	for _, op := range []struct {
		path string
		f    func(context.Context, ID, RouterInterface) error
	}{{"add_router_interface", s.AddRouterInterface}, {"remove_router_interface", s.RemoveRouterInterface}} {
		h("PUT /routers/{id}/"+op.path, func(w http.ResponseWriter, r *http.Request) error {
			id, err := pathID(r)
			if err != nil {
				return err
			}
			body, err := readBody(r)
			if err != nil {
				return err
			}
			var ri RouterInterface
			if err := json.Unmarshal(body, &ri); err != nil {
				return invalid("router interface: malformed body: %v", err)
			}
			if ri.ID != (ID{}) && ri.ID != id {
				return invalid("router interface: the body's id %s (the router) differs from the URL's %s", ri.ID, id)
			}
			if err := op.f(r.Context(), id, ri); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		})
	}
	return mux
}

// pathID parses the {id} of a path; a malformed id names no object.
func pathID(r *http.Request) (ID, error) {
	id, err := topology.ParseID(r.PathValue("id"))
	if err != nil {
		return id, notFound("%q is not a valid id", r.PathValue("id"))
	}
	return id, nil
}

// maxBody bounds request bodies (a bulk create of many ports).
const maxBody = 16 << 20

func readBody(r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || strings.HasPrefix(mt, "application/vnd.org.midonet.")) {
			return nil, &statusError{http.StatusUnsupportedMediaType, "Content-Type " + ct + " is not supported; send application/json or a MidoNet Neutron media type"}
		}
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, invalid("reading the request body: %v", err)
	}
	if len(b) > maxBody {
		return nil, &statusError{http.StatusRequestEntityTooLarge, "the request body exceeds 16 MiB; split the bulk request"}
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, invalid("the request has no body; send the Neutron object as JSON")
	}
	return b, nil
}

// statusError is an error with its HTTP status.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// Status returns the HTTP status an error of this package maps to.
func Status(err error) int {
	var se *statusError
	switch {
	case errors.As(err, &se):
		return se.status
	case errors.Is(err, ErrUnsupported):
		return http.StatusNotImplemented
	case errors.Is(err, topology.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, topology.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, topology.ErrExists), errors.Is(err, topology.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, topology.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, topology.ErrBusy), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The store did not answer in time, or the client left first
		// (then nobody reads the answer), as the REST API says.
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// writeError writes MidoNet's error entity, and logs a server-side
// failure with its cause: the client sees only the status.
func (s *Service) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := Status(err)
	if status >= 500 && status != http.StatusNotImplemented && !errors.Is(err, context.Canceled) {
		s.log.Error("neutron request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	msg := err.Error()
	var ve *topology.ValidationError
	body := map[string]any{"message": msg, "code": status}
	if errors.As(err, &ve) {
		body["violations"] = ve.Violations
	}
	w.Header().Set("Content-Type", "application/vnd.org.midonet.Error-v1+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// writeJSON writes v as the vendor type name (application/json when the
// client asks for it).
func writeJSON(w http.ResponseWriter, r *http.Request, status int, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ct := "application/vnd.org.midonet.neutron." + name + "-v1+json"
	if name == "Neutron-v3" {
		ct = "application/vnd.org.midonet.neutron.Neutron-v3+json"
	}
	if accept := r.Header.Get("Accept"); strings.Contains(accept, "application/json") && !strings.Contains(accept, "vnd.org.midonet") {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	w.Write(b)
	return nil
}
