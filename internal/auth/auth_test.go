package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/auth"
	"github.com/midonet/midonet/internal/neutron"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
	"github.com/midonet/midonet/internal/topology"
)

var testMember *embedded.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "auth-test")
	if err != nil {
		panic(err)
	}
	testMember, err = embedded.Start(embedded.Config{DataDir: dir, ClientURL: "http://127.0.0.1:0", Fast: true})
	if err != nil {
		panic(err)
	}
	code := m.Run()
	testMember.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// store opens a store under a prefix of the test's own.
func store(t *testing.T) *nsdb.Store {
	t.Helper()
	return storeAt(t, "/test/"+topology.NewID().String())
}

// storeAt opens a connection to the store under prefix.
func storeAt(t *testing.T, prefix string) *nsdb.Store {
	t.Helper()
	s, err := nsdb.Open(context.Background(), nsdb.Config{Endpoints: []string{testMember.ClientURL}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Now()} }
func fast(c *clock) auth.LocalConfig {
	return auth.LocalConfig{Iterations: 1000, Now: c.now, TokenTTL: time.Hour}
}
func mustNil(t *testing.T, err error) { t.Helper(); mustNilf(t, err, "unexpected error") }
func mustNilf(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestLocalProvider(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	st := store(t)
	l := auth.NewLocal(st, fast(c))
	mustNil(t, l.CreateUser(ctx, auth.User{Name: "alice", Tenant: "acme", Role: auth.RoleTenantAdmin}, "correct-horse"))
	if err := l.CreateUser(ctx, auth.User{Name: "alice", Tenant: "acme", Role: auth.RoleTenantUser}, "another-one"); !errors.Is(err, auth.ErrUserExists) {
		t.Errorf("creating alice twice: %v, want ErrUserExists", err)
	}
	for name, bad := range map[string]auth.User{
		"no tenant": {Name: "bob", Role: auth.RoleTenantUser},
		"bad role":  {Name: "bob", Tenant: "x", Role: "root"},
		"bad name":  {Name: "bob/../x", Tenant: "x", Role: auth.RoleTenantUser},
	} {
		if err := l.CreateUser(ctx, bad, "long-enough"); err == nil {
			t.Errorf("%s: created", name)
		}
	}
	if err := l.CreateUser(ctx, auth.User{Name: "bob", Tenant: "x", Role: auth.RoleTenantUser}, "short"); err == nil {
		t.Error("a 5-character password was accepted")
	}

	for _, c := range []struct{ user, pw, project string }{
		{"alice", "wrong-password", ""}, {"nobody", "correct-horse", ""}, {"alice", "correct-horse", "other-tenant"},
	} {
		if _, err := l.Login(ctx, c.user, c.pw, c.project); !errors.Is(err, auth.ErrUnauthorized) {
			t.Errorf("login %v: %v, want ErrUnauthorized", c, err)
		}
	}
	tok, err := l.Login(ctx, "alice", "correct-horse", "acme")
	mustNil(t, err)
	id, err := l.Validate(ctx, tok.Key)
	if err != nil || id.User != "alice" || id.Tenant != "acme" || id.Role != auth.RoleTenantAdmin {
		t.Fatalf("Validate = %+v, %v", id, err)
	}
	// Another API server (another provider over the same store) knows it.
	other := auth.NewLocal(storeAt(t, st.Prefix()), fast(c))
	if id, err := other.Validate(ctx, tok.Key); err != nil || id.User != "alice" {
		t.Errorf("another API server's Validate = %+v, %v", id, err)
	}
	for name, forged := range map[string]string{"empty": "", "forged": tok.Key[:len(tok.Key)-2] + "xx", "random": "0123456789"} {
		if _, err := l.Validate(ctx, forged); !errors.Is(err, auth.ErrUnauthorized) {
			t.Errorf("%s token: %v, want ErrUnauthorized", name, err)
		}
	}
	// Expired: past the token's lifetime it is refused, cache or not.
	c.add(time.Hour + time.Second)
	if _, err := l.Validate(ctx, tok.Key); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("expired token: %v, want ErrUnauthorized", err)
	}
	// Deleting the user revokes its tokens.
	tok2, err := l.Login(ctx, "alice", "correct-horse", "")
	mustNil(t, err)
	mustNil(t, l.DeleteUser(ctx, "alice"))
	if _, err := l.Validate(ctx, tok2.Key); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("token of a deleted user: %v, want ErrUnauthorized", err)
	}
}

func TestBootstrapWritesTheFirstAdmin(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	st := store(t)
	l := auth.NewLocal(st, fast(c))
	file := filepath.Join(t.TempDir(), "sub", "admin.credentials")
	created, err := l.Bootstrap(ctx, file)
	if err != nil || !created {
		t.Fatalf("Bootstrap = %v, %v", created, err)
	}
	fi, err := os.Stat(file)
	mustNil(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credential file mode %v, want 0600", fi.Mode().Perm())
	}
	cred, err := auth.ReadCredentials(file)
	mustNil(t, err)
	if _, err := l.Login(ctx, cred[auth.CredUser], cred[auth.CredPassword], cred[auth.CredTenant]); err != nil {
		t.Errorf("the written credential does not log in: %v", err)
	}
	again, err := auth.NewLocal(st, fast(c)).Bootstrap(ctx, file+".2")
	if err != nil || again {
		t.Errorf("second Bootstrap = %v, %v; want nothing done", again, err)
	}
	if _, err := os.Stat(file + ".2"); err == nil {
		t.Error("a second credential file was written")
	}
}

// rig is the API (with the Neutron endpoints) behind local authentication,
// with an admin and users of two tenants.
type rig struct {
	t      *testing.T
	url    string
	tokens map[string]string // user → token
	clock  *clock
}

func newRig(t *testing.T) *rig {
	t.Helper()
	st := store(t)
	c := newClock()
	local := auth.NewLocal(st, fast(c))
	h := auth.Handler(api.New(api.Config{Store: st, Neutron: neutron.New(st, nil).Handler(api.BasePath, api.BaseURI)}),
		auth.Config{Provider: local, Store: st, Users: local, BasePath: api.BasePath})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r := &rig{t: t, url: srv.URL + api.BasePath, tokens: map[string]string{}, clock: c}
	ctx := context.Background()
	for _, u := range []auth.User{
		{Name: "root", Tenant: "admin", Role: auth.RoleAdmin},
		{Name: "a-admin", Tenant: "a", Role: auth.RoleTenantAdmin},
		{Name: "a-user", Tenant: "a", Role: auth.RoleTenantUser},
		{Name: "b-admin", Tenant: "b", Role: auth.RoleTenantAdmin},
	} {
		mustNil(t, local.CreateUser(ctx, u, "password-"+u.Name))
		r.tokens[u.Name] = r.login(u.Name, "password-"+u.Name)
	}
	return r
}

// login goes through MidoNet's login flow and returns the cookie's token.
func (r *rig) login(user, password string) string {
	r.t.Helper()
	req, _ := http.NewRequest("POST", r.url+"/login", nil)
	req.SetBasicAuth(user, password)
	resp, err := http.DefaultClient.Do(req)
	mustNil(r.t, err)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		r.t.Fatalf("login %s: %d", user, resp.StatusCode)
	}
	cookie := resp.Header.Get("Set-Cookie")
	tok, _, _ := strings.Cut(strings.TrimPrefix(cookie, "sessionId="), ";")
	var body struct{ Key string }
	json.NewDecoder(resp.Body).Decode(&body)
	if tok == "" || tok != body.Key || !strings.Contains(cookie, "Expires=") {
		r.t.Fatalf("login %s: cookie %q, body key %q", user, cookie, body.Key)
	}
	return tok
}

// call makes a request as user ("" sends no token) and returns the status
// and body.
func (r *rig) call(user, method, path string, body any) (int, []byte) {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.url+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case user == "":
	case strings.HasPrefix(user, "token:"):
		req.Header.Set("X-Auth-Token", strings.TrimPrefix(user, "token:"))
	default:
		req.Header.Set("X-Auth-Token", r.tokens[user])
	}
	resp, err := http.DefaultClient.Do(req)
	mustNil(r.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (r *rig) create(user, path string, body map[string]any) string {
	r.t.Helper()
	status, b := r.call(user, "POST", path, body)
	if status != 201 {
		r.t.Fatalf("%s POST %s = %d %s", user, path, status, b)
	}
	if id, ok := body["id"].(string); ok {
		return id
	}
	return ""
}

// ids lists the ids of a collection as user sees it.
func (r *rig) ids(user, path string) []string {
	r.t.Helper()
	status, b := r.call(user, "GET", path, nil)
	if status != 200 {
		r.t.Fatalf("%s GET %s = %d %s", user, path, status, b)
	}
	var l []map[string]any
	json.Unmarshal(b, &l)
	var out []string
	for _, o := range l {
		out = append(out, o["id"].(string))
	}
	return out
}

func TestTokens(t *testing.T) {
	r := newRig(t)
	for _, c := range []struct {
		name, user string
		want       int
	}{
		{"missing", "", 401},
		{"forged", "token:not-a-token", 401},
		{"mock token", "token:" + auth.MockToken, 401},
		{"valid", "root", 200},
	} {
		if status, b := r.call(c.user, "GET", "/bridges", nil); status != c.want {
			t.Errorf("%s token: %d %s, want %d", c.name, status, b, c.want)
		}
	}
	req, _ := http.NewRequest("POST", r.url+"/login", nil)
	req.SetBasicAuth("root", "wrong")
	resp, err := http.DefaultClient.Do(req)
	mustNil(t, err)
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("login with a wrong password: %d %v", resp.StatusCode, resp.Header)
	}
	// An expired token is refused.
	r.clock.add(2 * time.Hour)
	if status, _ := r.call("root", "GET", "/bridges", nil); status != 401 {
		t.Errorf("expired token: %d, want 401", status)
	}
}

// TestRolesAndTenants checks each role against each kind of object: an
// admin reaches everything, a tenant admin reads and writes its tenant's
// objects and gets 404 for another tenant's, a tenant user only reads.
func TestRolesAndTenants(t *testing.T) {
	r := newRig(t)
	id := func() string { return topology.NewID().String() }

	// Each tenant admin builds objects of each kind.
	type objs struct{ bridge, port, router, chain, rule, group, nnet, nport, sg string }
	build := func(user string) objs {
		var o objs
		o.bridge = r.create(user, "/bridges", map[string]any{"id": id(), "name": user + "-br"})
		o.port = id()
		r.create(user, "/bridges/"+o.bridge+"/ports", map[string]any{"id": o.port, "type": "Bridge"})
		o.router = r.create(user, "/routers", map[string]any{"id": id(), "name": user + "-rt"})
		o.chain = r.create(user, "/chains", map[string]any{"id": id(), "name": user + "-ch"})
		o.rule = r.create(user, "/chains/"+o.chain+"/rules", map[string]any{"id": id(), "type": "accept"})
		o.group = r.create(user, "/port_groups", map[string]any{"id": id(), "name": user + "-pg"})
		o.nnet = r.create(user, "/neutron/networks", map[string]any{"id": id(), "name": user + "-net"})
		o.nport = id()
		r.create(user, "/neutron/ports", map[string]any{"id": o.nport, "network_id": o.nnet, "mac_address": "fa:16:3e:00:00:01",
			"fixed_ips": []any{}, "device_owner": "compute:nova"})
		o.sg = r.create(user, "/neutron/security_groups", map[string]any{"id": id(), "name": user + "-sg", "security_group_rules": []any{}})
		return o
	}
	a, b := build("a-admin"), build("b-admin")

	items := map[string][2]string{
		"bridge": {"/bridges/", a.bridge + "|" + b.bridge}, "port": {"/ports/", a.port + "|" + b.port},
		"router": {"/routers/", a.router + "|" + b.router}, "chain": {"/chains/", a.chain + "|" + b.chain},
		"rule": {"/rules/", a.rule + "|" + b.rule}, "port group": {"/port_groups/", a.group + "|" + b.group},
		"ip address group": {"/ip_addr_groups/", a.sg + "|" + b.sg},
		"neutron network":  {"/neutron/networks/", a.nnet + "|" + b.nnet}, "neutron port": {"/neutron/ports/", a.nport + "|" + b.nport},
		"neutron security group": {"/neutron/security_groups/", a.sg + "|" + b.sg},
	}
	for kind, it := range items {
		mine, theirs, _ := strings.Cut(it[1], "|")
		for _, c := range []struct {
			user, id string
			want     int
		}{
			{"a-admin", mine, 200}, {"a-user", mine, 200}, {"a-admin", theirs, 404}, {"a-user", theirs, 404},
			{"root", mine, 200}, {"root", theirs, 200},
		} {
			if status, body := r.call(c.user, "GET", it[0]+c.id, nil); status != c.want {
				t.Errorf("%s GET %s of %s: %d %s, want %d", c.user, kind, map[bool]string{true: "its tenant", false: "the other tenant"}[c.id == mine], status, body, c.want)
			}
		}
		// Writes: the other tenant's object is missing; a tenant user may
		// not write; the admin may.
		if status, _ := r.call("a-admin", "DELETE", it[0]+theirs, nil); status != 404 {
			t.Errorf("a-admin DELETE the other tenant's %s: %d, want 404", kind, status)
		}
		if status, _ := r.call("a-user", "DELETE", it[0]+mine, nil); status != 403 {
			t.Errorf("a-user DELETE its tenant's %s: %d, want 403", kind, status)
		}
	}
	// Lists show a tenant its own objects only.
	for _, c := range []struct{ path, mine, theirs string }{
		{"/bridges", a.bridge, b.bridge}, {"/routers", a.router, b.router}, {"/ports", a.port, b.port},
		{"/chains", a.chain, b.chain}, {"/port_groups", a.group, b.group}, {"/neutron/networks", a.nnet, b.nnet},
		{"/neutron/security_groups", a.sg, b.sg},
	} {
		got := strings.Join(r.ids("a-user", c.path), ",")
		if !strings.Contains(got, c.mine) || strings.Contains(got, c.theirs) {
			t.Errorf("a-user GET %s = %s; want its %s and not %s", c.path, got, c.mine, c.theirs)
		}
		all := strings.Join(r.ids("root", c.path), ",")
		if !strings.Contains(all, c.mine) || !strings.Contains(all, c.theirs) {
			t.Errorf("root GET %s = %s; want both tenants'", c.path, all)
		}
	}
	// A tenant's creations are its own: another tenant named in the body
	// is refused, nothing is created under another tenant's object.
	if status, _ := r.call("a-admin", "POST", "/bridges", map[string]any{"name": "x", "tenantId": "b"}); status != 403 {
		t.Errorf("a-admin creating a bridge of tenant b: %d, want 403", status)
	}
	if status, _ := r.call("a-admin", "POST", "/bridges/"+b.bridge+"/ports", map[string]any{"type": "Bridge"}); status != 404 {
		t.Errorf("a-admin creating a port on b's bridge: %d, want 404", status)
	}
	if status, _ := r.call("a-admin", "POST", "/neutron/ports", map[string]any{"id": id(), "network_id": b.nnet,
		"mac_address": "fa:16:3e:00:00:09", "device_owner": "compute:nova"}); status != 404 {
		t.Errorf("a-admin creating a Neutron port on b's network: %d, want 404", status)
	}
	if status, _ := r.call("a-admin", "POST", "/ports/"+a.port+"/link", map[string]any{"peerId": b.port}); status != 404 {
		t.Errorf("a-admin linking its port to b's: %d, want 404", status)
	}
	if status, _ := r.call("a-admin", "POST", "/neutron/ports", map[string]any{"id": id(), "network_id": a.nnet,
		"mac_address": "fa:16:3e:00:00:0a", "device_owner": "compute:nova", "binding:host_id": "host1"}); status != 403 {
		t.Errorf("a-admin binding a Neutron port to a host: %d, want 403", status)
	}
	if status, _ := r.call("a-user", "POST", "/bridges", map[string]any{"name": "x"}); status != 403 {
		t.Errorf("a-user creating a bridge: %d, want 403", status)
	}
	// The admin's objects: hosts, tunnel zones, users.
	for _, p := range []string{"/hosts", "/tunnel_zones", "/users", "/system_state"} {
		if status, _ := r.call("a-admin", "GET", p, nil); status != 403 {
			t.Errorf("a-admin GET %s: %d, want 403", p, status)
		}
		if status, body := r.call("root", "GET", p, nil); status != 200 {
			t.Errorf("root GET %s: %d %s", p, status, body)
		}
	}
	if got := strings.Join(r.ids("a-user", "/tenants"), ","); got != "a" {
		t.Errorf("a-user GET /tenants = %s, want a", got)
	}
	if status, _ := r.call("a-user", "GET", "/tenants/b", nil); status != 404 {
		t.Errorf("a-user GET /tenants/b: %d, want 404", status)
	}
	// The admin manages users through the API.
	if status, body := r.call("root", "POST", "/users", map[string]any{"name": "carol", "tenant": "c", "role": "tenant_user",
		"password": "carol-password"}); status != 201 {
		t.Errorf("root creating a user: %d %s", status, body)
	}
	if r.login("carol", "carol-password") == "" {
		t.Error("the new user cannot log in")
	}
	if status, _ := r.call("root", "DELETE", "/users/carol", nil); status != 204 {
		t.Errorf("root deleting a user: %d", status)
	}
}
