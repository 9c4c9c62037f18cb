// Package auth authenticates and authorizes the REST API's callers as
// MidoNet did: a token in X-Auth-Token on every call, obtained from
// MidoNet's login (POST <api>/login with Basic credentials) or from the
// identity service directly; three roles (admin: everything; tenant
// admin: read and write its tenant's objects; tenant user: read them);
// and providers that know the users: Local (users and tokens in the store,
// managed with the CLI), Keystone (v3 tokens validated against Keystone)
// and Mock (MidoNet's mock mode: any login succeeds and every call, with
// or without a token, is the admin).
//
// A tenant reaching an object of another tenant gets 404, as if the
// object did not exist, so that ids leak nothing; a call its role may not
// make gets 403; a missing, forged or expired token 401.
package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Role is what a user may do.
type Role string

// The roles, as MidoNet names them.
const (
	RoleAdmin       Role = "admin"
	RoleTenantAdmin Role = "tenant_admin"
	RoleTenantUser  Role = "tenant_user"
)

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(strings.TrimSpace(s))); r {
	case RoleAdmin, RoleTenantAdmin, RoleTenantUser:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want admin, tenant_admin or tenant_user", s)
}

// Identity is who makes a call.
type Identity struct {
	User   string
	Tenant string
	Role   Role
	// Expires is when the token stops being valid.
	Expires time.Time
}

// IsAdmin reports whether the identity may do everything.
func (id Identity) IsAdmin() bool { return id.Role == RoleAdmin }

// CanWrite reports whether the identity may change its tenant's objects.
func (id Identity) CanWrite() bool { return id.Role == RoleAdmin || id.Role == RoleTenantAdmin }

// Token is what a login returns.
type Token struct {
	Key     string
	Expires time.Time
}

// Errors providers return.
var (
	// ErrUnauthorized: bad credentials, or a missing, forged or expired
	// token (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: the identity service could not be asked (503).
	ErrUnavailable = errors.New("identity service unavailable")
)

// Provider authenticates users.
type Provider interface {
	// Login checks a user's credentials (project: the tenant asked for,
	// X-Auth-Project) and returns a new token.
	Login(ctx context.Context, user, password, project string) (Token, error)
	// Validate returns the identity a token stands for.
	Validate(ctx context.Context, token string) (Identity, error)
}

// Mock is MidoNet's mock mode: every login succeeds with the token
// 00000000 and every call, with any token or none, is the admin of the
// tenant "admin".
type Mock struct {
	Now func() time.Time
}

// MockToken is the token of the mock mode.
const MockToken = "00000000"

func (m Mock) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Login implements Provider.
func (m Mock) Login(ctx context.Context, user, password, project string) (Token, error) {
	return Token{Key: MockToken, Expires: m.now().UTC().Add(24 * time.Hour)}, nil
}

// Validate implements Provider.
func (m Mock) Validate(ctx context.Context, token string) (Identity, error) {
	return Identity{User: "admin", Tenant: "admin", Role: RoleAdmin, Expires: m.now().Add(24 * time.Hour)}, nil
}
