package auth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// KeystoneConfig configures the Keystone v3 provider.
type KeystoneConfig struct {
	// URL is Keystone's base URL, e.g. http://keystone:5000 (the /v3 is
	// added).
	URL string
	// Domain is the domain of users and projects that log in through
	// MidoNet's login (default "Default").
	Domain string
	// DefaultProject is the project a login without X-Auth-Project asks
	// for; empty: the user's default scope.
	DefaultProject string
	// The Keystone role names that map onto MidoNet's roles (defaults
	// admin, member, reader: Keystone's own default roles).
	AdminRole, TenantAdminRole, TenantUserRole string
	// CAFile is the CA of Keystone's TLS certificate (https URL).
	CAFile string
	// CacheTTL is how long a validated token is trusted without asking
	// Keystone again (default 30s; never past the token's expiry).
	CacheTTL time.Duration
	Timeout  time.Duration
	Now      func() time.Time
}

// Keystone validates tokens against Keystone's v3 API
// (GET /v3/auth/tokens with the token as X-Subject-Token; a token may
// validate itself under Keystone's default policy) and logs users in with
// the password method. The tenant is the token's project id, the role the
// highest MidoNet role the project roles map onto.
type Keystone struct {
	cfg KeystoneConfig
	hc  *http.Client

	mu    sync.Mutex
	cache map[string]cachedIdentity // guarded by mu: token hash → identity
}

// NewKeystone returns a Keystone provider.
func NewKeystone(cfg KeystoneConfig) (*Keystone, error) {
	if !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://") {
		return nil, fmt.Errorf("--keystone-url %q: want Keystone's http:// or https:// URL, e.g. http://keystone:5000", cfg.URL)
	}
	cfg.URL = strings.TrimSuffix(strings.TrimSuffix(cfg.URL, "/"), "/v3")
	if cfg.Domain == "" {
		cfg.Domain = "Default"
	}
	if cfg.AdminRole == "" {
		cfg.AdminRole = "admin"
	}
	if cfg.TenantAdminRole == "" {
		cfg.TenantAdminRole = "member"
	}
	if cfg.TenantUserRole == "" {
		cfg.TenantUserRole = "reader"
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("keystone CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("keystone CA %s: no PEM certificate in it", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &Keystone{cfg: cfg, hc: &http.Client{Transport: tr, Timeout: cfg.Timeout}, cache: map[string]cachedIdentity{}}, nil
}

// keystoneToken is the part of Keystone's token body this provider reads.
type keystoneToken struct {
	Token struct {
		ExpiresAt string `json:"expires_at"`
		User      struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"user"`
		Project *struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"project"`
		Roles []struct {
			Name string `json:"name"`
		} `json:"roles"`
	} `json:"token"`
}

func (k *Keystone) identity(t keystoneToken) (Identity, error) {
	exp, err := time.Parse(time.RFC3339Nano, t.Token.ExpiresAt)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: keystone token expiry %q: %v", ErrUnauthorized, t.Token.ExpiresAt, err)
	}
	id := Identity{User: t.Token.User.Name, Expires: exp}
	if t.Token.Project != nil {
		id.Tenant = t.Token.Project.ID
	}
	rank := map[Role]int{RoleTenantUser: 1, RoleTenantAdmin: 2, RoleAdmin: 3}
	for _, r := range t.Token.Roles {
		var role Role
		switch {
		case strings.EqualFold(r.Name, k.cfg.AdminRole):
			role = RoleAdmin
		case strings.EqualFold(r.Name, k.cfg.TenantAdminRole):
			role = RoleTenantAdmin
		case strings.EqualFold(r.Name, k.cfg.TenantUserRole):
			role = RoleTenantUser
		default:
			continue
		}
		if rank[role] > rank[id.Role] {
			id.Role = role
		}
	}
	if id.Role == "" {
		return Identity{}, fmt.Errorf("%w: user %s has none of the roles %s, %s, %s in its project", ErrUnauthorized,
			id.User, k.cfg.AdminRole, k.cfg.TenantAdminRole, k.cfg.TenantUserRole)
	}
	if id.Tenant == "" && id.Role != RoleAdmin {
		return Identity{}, fmt.Errorf("%w: the token of user %s is not scoped to a project", ErrUnauthorized, id.User)
	}
	return id, nil
}

// Validate implements Provider.
func (k *Keystone) Validate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrUnauthorized
	}
	h := hashToken(token)
	now := k.cfg.Now()
	k.mu.Lock()
	c, ok := k.cache[h]
	k.mu.Unlock()
	if ok && now.Before(c.until) && now.Before(c.id.Expires) {
		return c.id, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.cfg.URL+"/v3/auth/tokens?nocatalog", nil)
	if err != nil {
		return Identity{}, err
	}
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("X-Subject-Token", token)
	resp, err := k.hc.Do(req)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: keystone at %s: %v", ErrUnavailable, k.cfg.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden:
		return Identity{}, ErrUnauthorized
	default:
		return Identity{}, fmt.Errorf("%w: keystone answered %s", ErrUnavailable, resp.Status)
	}
	var t keystoneToken
	if err := json.Unmarshal(body, &t); err != nil {
		return Identity{}, fmt.Errorf("%w: keystone's token body: %v", ErrUnavailable, err)
	}
	id, err := k.identity(t)
	if err != nil {
		return Identity{}, err
	}
	if !now.Before(id.Expires) {
		return Identity{}, ErrUnauthorized
	}
	k.mu.Lock()
	if len(k.cache) > 100_000 {
		clear(k.cache)
	}
	k.cache[h] = cachedIdentity{id: id, until: now.Add(k.cfg.CacheTTL)}
	k.mu.Unlock()
	return id, nil
}

// Login implements Provider with Keystone's password method, scoped to
// project (or the configured default project).
func (k *Keystone) Login(ctx context.Context, user, password, project string) (Token, error) {
	if project == "" {
		project = k.cfg.DefaultProject
	}
	dom := map[string]string{"name": k.cfg.Domain}
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"},
			"password": map[string]any{"user": map[string]any{"name": user, "domain": dom, "password": password}}},
	}}
	if project != "" {
		body["auth"].(map[string]any)["scope"] = map[string]any{"project": map[string]any{"name": project, "domain": dom}}
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.cfg.URL+"/v3/auth/tokens?nocatalog", bytes.NewReader(b))
	if err != nil {
		return Token{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := k.hc.Do(req)
	if err != nil {
		return Token{}, fmt.Errorf("%w: keystone at %s: %v", ErrUnavailable, k.cfg.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusBadRequest:
		return Token{}, ErrUnauthorized
	default:
		return Token{}, fmt.Errorf("%w: keystone answered %s", ErrUnavailable, resp.Status)
	}
	key := resp.Header.Get("X-Subject-Token")
	var t keystoneToken
	if key == "" || json.Unmarshal(raw, &t) != nil {
		return Token{}, fmt.Errorf("%w: keystone's login answer has no token", ErrUnavailable)
	}
	exp, err := time.Parse(time.RFC3339Nano, t.Token.ExpiresAt)
	if err != nil {
		return Token{}, fmt.Errorf("%w: keystone token expiry %q", ErrUnavailable, t.Token.ExpiresAt)
	}
	return Token{Key: key, Expires: exp}, nil
}
