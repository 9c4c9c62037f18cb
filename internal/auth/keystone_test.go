package auth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/auth"
	"github.com/midonet/midonet/internal/testenv"
)

// recordedKeystone serves Keystone answers recorded from Debian's keystone
// 22 (testdata/keystone-validate-*.json): the token "token-<user>"
// validates as the recorded token of that user, any other token as
// Keystone's answer to a forged one.
func recordedKeystone(t *testing.T) (url string, issued time.Time) {
	t.Helper()
	bodies := map[string][]byte{}
	for _, u := range []string{"admin", "alice", "bob", "forged"} {
		b, err := os.ReadFile(filepath.Join("testdata", "keystone-validate-"+u+".json"))
		if err != nil {
			t.Fatal(err)
		}
		bodies[u] = b
	}
	var tok struct {
		Token struct {
			IssuedAt string `json:"issued_at"`
		} `json:"token"`
	}
	json.Unmarshal(bodies["alice"], &tok)
	issued, _ = time.Parse(time.RFC3339Nano, tok.Token.IssuedAt)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "GET" && r.URL.Path == "/v3/auth/tokens":
			user, ok := strings.CutPrefix(r.Header.Get("X-Subject-Token"), "token-")
			if b, known := bodies[user]; ok && known && user != "forged" {
				w.Write(b)
				return
			}
			w.WriteHeader(http.StatusNotFound)
			w.Write(bodies["forged"])
		case r.Method == "POST" && r.URL.Path == "/v3/auth/tokens":
			var req struct {
				Auth struct {
					Identity struct {
						Password struct {
							User struct{ Name, Password string } `json:"user"`
						} `json:"password"`
					} `json:"identity"`
				} `json:"auth"`
			}
			json.NewDecoder(r.Body).Decode(&req)
			u := req.Auth.Identity.Password.User
			if b, ok := bodies[u.Name]; ok && u.Password == u.Name+"-password" {
				w.Header().Set("X-Subject-Token", "token-"+u.Name)
				w.WriteHeader(http.StatusCreated)
				w.Write(b)
				return
			}
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":401,"message":"The request you have made requires authentication.","title":"Unauthorized"}}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, issued
}

func TestKeystoneRecorded(t *testing.T) {
	url, issued := recordedKeystone(t)
	now := issued.Add(time.Minute)
	ks, err := auth.NewKeystone(auth.KeystoneConfig{URL: url + "/v3", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		token string
		role  auth.Role
	}{{"token-admin", auth.RoleAdmin}, {"token-alice", auth.RoleTenantAdmin}, {"token-bob", auth.RoleTenantUser}} {
		id, err := ks.Validate(ctx, c.token)
		if err != nil || id.Role != c.role || id.Tenant == "" {
			t.Errorf("Validate(%s) = %+v, %v; want role %s with a project", c.token, id, err, c.role)
		}
	}
	if _, err := ks.Validate(ctx, "token-forged"); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("forged token: %v, want ErrUnauthorized", err)
	}
	tok, err := ks.Login(ctx, "alice", "alice-password", "acme")
	if err != nil || tok.Key != "token-alice" {
		t.Errorf("Login(alice) = %+v, %v", tok, err)
	}
	if _, err := ks.Login(ctx, "alice", "wrong", "acme"); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("Login with a wrong password: %v, want ErrUnauthorized", err)
	}
	// Past its expiry a token is refused, whatever Keystone would say.
	late, _ := auth.NewKeystone(auth.KeystoneConfig{URL: url, Now: func() time.Time { return issued.Add(2 * time.Hour) }})
	if _, err := late.Validate(ctx, "token-alice"); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("expired token: %v, want ErrUnauthorized", err)
	}
	// Keystone down: 503, not 401.
	down, _ := auth.NewKeystone(auth.KeystoneConfig{URL: "http://127.0.0.1:1", Timeout: time.Second})
	if _, err := down.Validate(ctx, "token-alice"); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("Keystone unreachable: %v, want ErrUnavailable", err)
	}
}

// TestKeystoneReal runs Debian's keystone (SQLite, fernet tokens, its
// WSGI test server), creates a project with a member and a reader, and
// checks the provider and the API against it: roles, scoping, revoked
// and forged tokens.
func TestKeystoneReal(t *testing.T) {
	testenv.RequireTool(t, "keystone-manage", "python3-keystone")
	t.Parallel()
	ks := startKeystone(t)
	ctx := context.Background()
	p, err := auth.NewKeystone(auth.KeystoneConfig{URL: ks.url, CacheTTL: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	project := ks.project("acme")
	ks.user("alice", project, "member")
	ks.user("bob", project, "reader")
	for _, c := range []struct {
		user string
		role auth.Role
	}{{"alice", auth.RoleTenantAdmin}, {"bob", auth.RoleTenantUser}} {
		tok, err := p.Login(ctx, c.user, c.user+"-password", "acme")
		if err != nil {
			t.Fatalf("login %s: %v", c.user, err)
		}
		id, err := p.Validate(ctx, tok.Key)
		if err != nil || id.Role != c.role || id.Tenant != project || id.User != c.user {
			t.Errorf("%s: %+v, %v; want %s of project %s", c.user, id, err, c.role, project)
		}
	}
	if _, err := p.Login(ctx, "alice", "wrong-password", "acme"); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("login with a wrong password: %v", err)
	}
	if _, err := p.Validate(ctx, "gAAAAABforgedtoken"); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("forged token: %v", err)
	}
	// A revoked token stops working.
	tok, err := p.Login(ctx, "alice", "alice-password", "acme")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("DELETE", ks.url+"/v3/auth/tokens", nil)
	req.Header.Set("X-Auth-Token", ks.admin)
	req.Header.Set("X-Subject-Token", tok.Key)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatalf("revoking: %v %v", resp, err)
	}
	time.Sleep(5 * time.Millisecond) // past the provider's 1ms cache
	if _, err := p.Validate(ctx, tok.Key); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("revoked token: %v, want ErrUnauthorized", err)
	}

	// The API behind Keystone: MidoNet's login flow, then scoping.
	st := store(t)
	srv := httptest.NewServer(auth.Handler(api.New(api.Config{Store: st}), auth.Config{Provider: p, Store: st, BasePath: api.BasePath}))
	t.Cleanup(srv.Close)
	login := func(user string) string {
		req, _ := http.NewRequest("POST", srv.URL+api.BasePath+"/login", nil)
		req.SetBasicAuth(user, user+"-password")
		req.Header.Set("X-Auth-Project", "acme")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("login %s through the API: %v %v", user, resp, err)
		}
		defer resp.Body.Close()
		var b struct{ Key string }
		json.NewDecoder(resp.Body).Decode(&b)
		return b.Key
	}
	call := func(tok, method, path string, body any) int {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, srv.URL+api.BasePath+path, rd)
		req.Header.Set("X-Auth-Token", tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	alice, bob := login("alice"), login("bob")
	if s := call(alice, "POST", "/bridges", map[string]any{"name": "acme-net"}); s != 201 {
		t.Errorf("alice (member) creating a bridge: %d", s)
	}
	if s := call(bob, "POST", "/bridges", map[string]any{"name": "x"}); s != 403 {
		t.Errorf("bob (reader) creating a bridge: %d, want 403", s)
	}
	if s := call(bob, "GET", "/bridges", nil); s != 200 {
		t.Errorf("bob (reader) listing bridges: %d", s)
	}
	if s := call("gAAAAABforged", "GET", "/bridges", nil); s != 401 {
		t.Errorf("forged token through the API: %d, want 401", s)
	}
}

// keystone is a running Debian keystone.
type keystone struct {
	t     *testing.T
	url   string
	admin string // an admin token
}

func startKeystone(t *testing.T) *keystone {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"fernet", "cred"} {
		os.MkdirAll(filepath.Join(dir, d), 0o700)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(dir, "keystone.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`[DEFAULT]
log_file = %[1]s/keystone.log
[database]
connection = sqlite:///%[1]s/keystone.db
[fernet_tokens]
key_repository = %[1]s/fernet
[fernet_receipts]
key_repository = %[1]s/fernet
[credential]
key_repository = %[1]s/cred
`, dir)), 0o600)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	for _, args := range [][]string{
		{"db_sync"},
		{"fernet_setup", "--keystone-user", "root", "--keystone-group", "root"},
		{"credential_setup", "--keystone-user", "root", "--keystone-group", "root"},
		{"bootstrap", "--bootstrap-password", "admin-password", "--bootstrap-public-url", url + "/v3", "--bootstrap-region-id", "RegionOne"},
	} {
		cmd := exec.Command("keystone-manage", append([]string{"--config-file", conf}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("keystone-manage %s: %v\n%s", args[0], err, out)
		}
	}
	cmd := exec.Command("keystone-wsgi-public", "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--", "--config-file", conf)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	k := &keystone{t: t, url: url}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p, _ := auth.NewKeystone(auth.KeystoneConfig{URL: url})
		tok, err := p.Login(context.Background(), "admin", "admin-password", "admin")
		if err == nil {
			k.admin = tok.Key
			return k
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "keystone.log"))
			t.Fatalf("keystone did not start: %v\n%s", err, b)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// do calls Keystone's API as its admin.
func (k *keystone) do(method, path string, body any) map[string]any {
	k.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, k.url+"/v3"+path, rd)
	req.Header.Set("X-Auth-Token", k.admin)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		k.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		b, _ := io.ReadAll(resp.Body)
		k.t.Fatalf("keystone %s %s: %d %s", method, path, resp.StatusCode, b)
	}
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return out
}

func (k *keystone) project(name string) string {
	return k.do("POST", "/projects", map[string]any{"project": map[string]any{"name": name, "domain_id": "default"}})["project"].(map[string]any)["id"].(string)
}

func (k *keystone) user(name, project, role string) {
	u := k.do("POST", "/users", map[string]any{"user": map[string]any{"name": name, "domain_id": "default",
		"password": name + "-password"}})["user"].(map[string]any)["id"].(string)
	var roleID string
	for _, r := range k.do("GET", "/roles", nil)["roles"].([]any) {
		if rm := r.(map[string]any); rm["name"] == role {
			roleID = rm["id"].(string)
		}
	}
	k.do("PUT", "/projects/"+project+"/users/"+u+"/roles/"+roleID, nil)
}
