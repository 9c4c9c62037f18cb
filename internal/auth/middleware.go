package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/midonet/midonet/internal/nsdb"
)

// Config configures the HTTP layer.
type Config struct {
	Provider Provider
	// Store answers who owns an object.
	Store *nsdb.Store
	// Users, when the provider is Local, serves <base>/users (admin only)
	// for the CLI to manage users.
	Users *Local
	// BasePath is the API's root path, e.g. /midonet-api.
	BasePath string
	Logger   *slog.Logger
	Now      func() time.Time
}

// Handler authenticates every call to next (except login, which it
// answers) and lets it through only when the caller's role and tenant
// allow it; collections a tenant lists are narrowed to its objects.
func Handler(next http.Handler, cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &handler{next: next, cfg: cfg, owners: &owners{store: cfg.Store}}
}

type handler struct {
	next   http.Handler
	cfg    Config
	owners *owners
}

type ctxKey struct{}

// FromContext returns the identity of the caller of a request that went
// through Handler.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(ctxKey{}).(Identity)
	return id, ok
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, h.cfg.BasePath)
	if !ok || r.Method == http.MethodOptions {
		h.next.ServeHTTP(w, r)
		return
	}
	segs := splitPath(rest)
	if len(segs) == 1 && segs[0] == "login" && r.Method == http.MethodPost {
		h.login(w, r)
		return
	}
	token := r.Header.Get("X-Auth-Token")
	if token == "" {
		if c, err := r.Cookie("sessionId"); err == nil {
			token = c.Value
		}
	}
	id, err := h.cfg.Provider.Validate(r.Context(), token)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			h.cfg.Logger.Warn("token not validated", "err", err)
			writeError(w, http.StatusServiceUnavailable, "the identity service cannot validate tokens now: "+err.Error())
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="MidoNet"`)
		msg := "a valid X-Auth-Token is required; log in with POST " + h.cfg.BasePath + "/login"
		if token != "" {
			msg = "the X-Auth-Token is unknown or expired; log in again with POST " + h.cfg.BasePath + "/login"
		}
		writeError(w, http.StatusUnauthorized, msg)
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, id))
	if len(segs) > 0 && segs[0] == "users" {
		h.users(w, r, id, segs[1:])
		return
	}
	if id.IsAdmin() {
		h.next.ServeHTTP(w, r)
		return
	}
	h.tenantCall(w, r, id, segs)
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// login answers MidoNet's login: Basic credentials (and X-Auth-Project)
// in, the token in a sessionId cookie and the body out.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	user, password, ok := basicAuth(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="MidoNet"`)
		writeError(w, http.StatusUnauthorized, "login needs an Authorization: Basic header with user:password")
		return
	}
	tok, err := h.cfg.Provider.Login(r.Context(), user, password, r.Header.Get("X-Auth-Project"))
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		h.cfg.Logger.Info("login refused", "user", user, "err", err)
		w.Header().Set("WWW-Authenticate", `Basic realm="MidoNet"`)
		writeError(w, http.StatusUnauthorized, "login refused: wrong user, password or project")
		return
	}
	WriteToken(w, tok)
}

// WriteToken writes a login's answer in MidoNet's exact shape: clients
// take the token from the cookie.
func WriteToken(w http.ResponseWriter, tok Token) {
	exp := tok.Expires.UTC()
	w.Header().Set("Set-Cookie", "sessionId="+tok.Key+"; Expires="+exp.Format("Mon, 02-01-2006 15:04:05 MST"))
	w.Header().Set("Content-Type", "application/vnd.org.midonet.Token-v1+json")
	json.NewEncoder(w).Encode(map[string]any{"key": tok.Key, "expires": exp.Format("2006-01-02T15:04:05Z")})
}

// basicAuth decodes an Authorization: Basic header (any case).
func basicAuth(r *http.Request) (user, password string, ok bool) {
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	user, password, ok = strings.Cut(string(dec), ":")
	return user, password, ok
}

// writeError writes MidoNet's error entity.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/vnd.org.midonet.Error-v1+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"message": msg, "code": status})
}

// tenantCall lets a tenant's call through when it concerns the tenant's
// objects.
func (h *handler) tenantCall(w http.ResponseWriter, r *http.Request, id Identity, segs []string) {
	if len(segs) == 0 {
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "the API root is read-only")
			return
		}
		h.next.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodGet && !id.CanWrite() {
		writeError(w, http.StatusForbidden, fmt.Sprintf("user %s has the role %s, which may only read", id.User, id.Role))
		return
	}
	coll, rest := segs[0], segs[1:]
	if coll == "tenants" {
		h.tenants(w, r, id, rest)
		return
	}
	if coll == "neutron" {
		if len(rest) == 0 {
			h.next.ServeHTTP(w, r)
			return
		}
		coll, rest = "neutron/"+rest[0], rest[1:]
	}
	if !tenantCollections[coll] {
		writeError(w, http.StatusForbidden, fmt.Sprintf("%s needs the admin role; user %s is %s of tenant %s", r.URL.Path, id.User, id.Role, id.Tenant))
		return
	}
	if len(rest) == 0 {
		switch r.Method {
		case http.MethodGet:
			h.filtered(w, r, id, coll)
		case http.MethodPost:
			h.createOwned(w, r, id, coll)
		default:
			h.next.ServeHTTP(w, r)
		}
		return
	}
	owner, exists, err := h.owners.of(r.Context(), coll, rest[0])
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if !exists || owner != id.Tenant {
		// Another tenant's object is reported as missing: ids leak nothing.
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s %s does not exist", strings.TrimPrefix(coll, "neutron/"), rest[0]))
		return
	}
	if r.Method != http.MethodGet {
		if err := h.checkBodyRefs(r, id); err != nil {
			refusal(w, err)
			return
		}
	}
	h.next.ServeHTTP(w, r)
}

// tenantCollections are the collections a tenant may reach (its own
// objects in them); everything else (hosts, tunnel zones, traces,
// mirrors, the system state...) is the admin's.
var tenantCollections = map[string]bool{
	"bridges": true, "routers": true, "chains": true, "port_groups": true, "ports": true, "routes": true,
	"rules": true, "ip_addr_groups": true, "qos_policies": true, "load_balancers": true, "pools": true,
	"pool_members": true, "vips": true,
	"neutron/networks": true, "neutron/subnets": true, "neutron/ports": true, "neutron/routers": true,
	"neutron/floating_ips": true, "neutron/security_groups": true, "neutron/security_group_rules": true,
}

// tenantField is the field that names the tenant of the objects a tenant
// may create at the top of a collection.
var tenantField = map[string]string{
	"bridges": "tenantId", "routers": "tenantId", "chains": "tenantId", "port_groups": "tenantId",
	"qos_policies":     "tenant_id",
	"neutron/networks": "tenant_id", "neutron/subnets": "tenant_id", "neutron/ports": "tenant_id",
	"neutron/routers": "tenant_id", "neutron/floating_ips": "tenant_id", "neutron/security_groups": "tenant_id",
	"neutron/security_group_rules": "tenant_id",
}

// createOwned lets a tenant create objects of its own: the body's tenant
// is set to the caller's (another tenant's is refused).
func (h *handler) createOwned(w http.ResponseWriter, r *http.Request, id Identity, coll string) {
	field, ok := tenantField[coll]
	if !ok {
		writeError(w, http.StatusForbidden, fmt.Sprintf("objects of %s carry no tenant: creating one needs the admin role", coll))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return
	}
	var one map[string]any
	var many []map[string]any
	bulk := bytes.HasPrefix(bytes.TrimSpace(body), []byte("["))
	if bulk {
		err = json.Unmarshal(body, &many)
	} else {
		err = json.Unmarshal(body, &one)
		many = []map[string]any{one}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
		return
	}
	for _, o := range many {
		for _, f := range []string{field, "project_id"} {
			if v, ok := o[f].(string); ok && v != "" && v != id.Tenant {
				writeError(w, http.StatusForbidden, fmt.Sprintf("%s %q: user %s may only create objects of its tenant %s", f, v, id.User, id.Tenant))
				return
			}
		}
		o[field] = id.Tenant
	}
	if bulk {
		body, _ = json.Marshal(many)
	} else {
		body, _ = json.Marshal(one)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	if err := h.checkBodyRefsBytes(r.Context(), body, id); err != nil {
		refusal(w, err)
		return
	}
	h.next.ServeHTTP(w, r)
}

// bodyRefs are the fields of request bodies that name other objects a
// tenant may only name if they are its own.
var bodyRefs = map[string]string{
	"peerId": "ports", "portId": "ports", "inboundFilterId": "chains", "outboundFilterId": "chains",
	"jumpChainId": "chains", "deviceId": "", "network_id": "neutron/networks", "router_id": "neutron/routers",
}

// forbiddenField is a refusal of a field the caller's role may not set
// (403, where a reference to another tenant's object is a 404).
type forbiddenField string

func (f forbiddenField) Error() string { return string(f) }

// refusal writes a body check's error: 403 for a forbidden field, 404 for
// another tenant's object.
func refusal(w http.ResponseWriter, err error) {
	var ff forbiddenField
	if errors.As(err, &ff) {
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	writeError(w, http.StatusNotFound, err.Error())
}

// adminFields are fields only the admin may set (Neutron's policy keeps
// port bindings to admins too).
var adminFields = []string{"binding:host_id", "binding:profile", "hostId", "interfaceName"}

func isEmptyMap(v any) bool {
	m, ok := v.(map[string]any)
	return ok && len(m) == 0
}

func (h *handler) checkBodyRefs(r *http.Request, id Identity) error {
	if r.Body == nil {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return h.checkBodyRefsBytes(r.Context(), body, id)
}

// checkBodyRefsBytes refuses a body that names another tenant's object.
func (h *handler) checkBodyRefsBytes(ctx context.Context, body []byte, id Identity) error {
	var objs []map[string]any
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("[")) {
		json.Unmarshal(body, &objs)
	} else {
		var o map[string]any
		if json.Unmarshal(body, &o) == nil {
			objs = append(objs, o)
		}
	}
	for _, o := range objs {
		for _, f := range adminFields {
			if v, ok := o[f]; ok && v != nil && v != "" && !isEmptyMap(v) {
				return forbiddenField(f + ": only the admin binds ports to hosts")
			}
		}
		for f, coll := range bodyRefs {
			v, ok := o[f].(string)
			if !ok || v == "" || coll == "" {
				continue
			}
			owner, exists, err := h.owners.of(ctx, coll, v)
			if err != nil {
				return err
			}
			if !exists || owner != id.Tenant {
				return fmt.Errorf("%s: %s %s does not exist", f, strings.TrimPrefix(coll, "neutron/"), v)
			}
		}
	}
	return nil
}

// filtered serves a collection with the objects of other tenants left
// out.
func (h *handler) filtered(w http.ResponseWriter, r *http.Request, id Identity, coll string) {
	rec := &recorder{header: http.Header{}}
	h.next.ServeHTTP(rec, r)
	if rec.status != http.StatusOK {
		rec.flush(w)
		return
	}
	var items []map[string]any
	if err := json.Unmarshal(rec.body.Bytes(), &items); err != nil {
		rec.flush(w)
		return
	}
	out := make([]map[string]any, 0, len(items))
	for _, it := range items {
		oid, _ := it["id"].(string)
		owner, exists, err := h.owners.of(r.Context(), coll, oid)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		if exists && owner == id.Tenant {
			out = append(out, it)
		}
	}
	b, _ := json.Marshal(out)
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// tenants shows a tenant its own tenant only.
func (h *handler) tenants(w http.ResponseWriter, r *http.Request, id Identity, rest []string) {
	if r.Method != http.MethodGet {
		h.next.ServeHTTP(w, r)
		return
	}
	if len(rest) > 0 {
		if rest[0] != id.Tenant {
			writeError(w, http.StatusNotFound, "tenant "+rest[0]+" does not exist")
			return
		}
		h.next.ServeHTTP(w, r)
		return
	}
	tenant := id.Tenant
	b, _ := json.Marshal([]map[string]any{{"id": tenant, "name": tenant, "description": "", "enabled": true}})
	w.Header().Set("Content-Type", "application/vnd.org.midonet.collection.Tenant-v2+json")
	w.Write(b)
}

// recorder buffers a response.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) flush(w http.ResponseWriter) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	if r.status == 0 {
		r.status = http.StatusOK
	}
	w.WriteHeader(r.status)
	w.Write(r.body.Bytes())
}

// users serves <base>/users for the Local provider: list, create, delete.
func (h *handler) users(w http.ResponseWriter, r *http.Request, id Identity, rest []string) {
	if h.cfg.Users == nil {
		writeError(w, http.StatusNotImplemented, "users are managed by the identity service (run the cluster with --auth local to manage them here)")
		return
	}
	if !id.IsAdmin() {
		writeError(w, http.StatusForbidden, "managing users needs the admin role")
		return
	}
	ctx := r.Context()
	switch {
	case r.Method == http.MethodGet && len(rest) == 0:
		users, err := h.cfg.Users.Users(ctx)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(users)
	case r.Method == http.MethodPost && len(rest) == 0:
		var in struct {
			User
			Password string `json:"password"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
			writeError(w, http.StatusBadRequest, "malformed JSON body: "+err.Error())
			return
		}
		err := h.cfg.Users.CreateUser(ctx, in.User, in.Password)
		switch {
		case errors.Is(err, ErrUserExists):
			writeError(w, http.StatusConflict, err.Error())
		case errors.Is(err, ErrUnavailable):
			writeError(w, http.StatusServiceUnavailable, err.Error())
		case err != nil:
			writeError(w, http.StatusBadRequest, err.Error())
		default:
			w.Header().Set("Location", r.URL.Path+"/"+in.Name)
			w.WriteHeader(http.StatusCreated)
		}
	case r.Method == http.MethodDelete && len(rest) == 1:
		err := h.cfg.Users.DeleteUser(ctx, rest[0])
		switch {
		case errors.Is(err, ErrNoUser):
			writeError(w, http.StatusNotFound, err.Error())
		case err != nil:
			writeError(w, http.StatusServiceUnavailable, err.Error())
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	default:
		writeError(w, http.StatusMethodNotAllowed, r.Method+" is not supported on "+r.URL.Path)
	}
}
