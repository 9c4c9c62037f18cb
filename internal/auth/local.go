package auth

import (
	"bufio"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/midonet/midonet/internal/nsdb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Local keeps users and tokens in the store, so that every API server of
// a cluster knows them:
//
//	<prefix>/auth/users/<name>     the user: tenant, role, PBKDF2-SHA256 password hash
//	<prefix>/auth/tokens/<sha256>  a token's identity, under an etcd lease that
//	                               expires with the token
//
// Only a hash of each token is stored. Validated tokens are remembered for
// CacheTTL, so a revoked token or a deleted user may pass that long on an
// API server that saw them just before.
type Local struct {
	store *nsdb.Store
	cfg   LocalConfig

	mu    sync.Mutex
	cache map[string]cachedIdentity // guarded by mu: token hash → identity
}

type cachedIdentity struct {
	id    Identity
	until time.Time
}

// LocalConfig configures a Local provider.
type LocalConfig struct {
	// TokenTTL is how long a token lives; default DefaultTokenTTL.
	TokenTTL time.Duration
	// Iterations of PBKDF2 for new password hashes; default
	// DefaultIterations (tests lower it).
	Iterations int
	// CacheTTL is how long a validated token is trusted without asking the
	// store again; default 5s.
	CacheTTL time.Duration
	Now      func() time.Time
}

// Defaults of LocalConfig.
const (
	DefaultTokenTTL   = 24 * time.Hour
	DefaultIterations = 600_000
	defaultCacheTTL   = 5 * time.Second
)

// User is a user of the Local provider.
type User struct {
	Name   string `json:"name"`
	Tenant string `json:"tenant"`
	Role   Role   `json:"role"`
}

type storedUser struct {
	User
	Salt       string `json:"salt"`
	Hash       string `json:"hash"`
	Iterations int    `json:"iterations"`
}

type storedToken struct {
	User    string    `json:"user"`
	Tenant  string    `json:"tenant"`
	Role    Role      `json:"role"`
	Expires time.Time `json:"expires"`
}

// NewLocal returns a Local provider over store.
func NewLocal(store *nsdb.Store, cfg LocalConfig) *Local {
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.Iterations <= 0 {
		cfg.Iterations = DefaultIterations
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = defaultCacheTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Local{store: store, cfg: cfg, cache: map[string]cachedIdentity{}}
}

func (l *Local) userKey(name string) string  { return l.store.Prefix() + "/auth/users/" + name }
func (l *Local) tokenKey(hash string) string { return l.store.Prefix() + "/auth/tokens/" + hash }

var userName = regexp.MustCompile(`^[A-Za-z0-9_.@-]{1,64}$`)

// ErrUserExists is returned when creating a user whose name is taken.
var ErrUserExists = errors.New("user exists")

// ErrNoUser is returned for a user that does not exist.
var ErrNoUser = errors.New("no such user")

// CreateUser adds a user.
func (l *Local) CreateUser(ctx context.Context, u User, password string) error {
	if !userName.MatchString(u.Name) {
		return fmt.Errorf("user name %q: use 1-64 letters, digits, '_', '.', '@' or '-'", u.Name)
	}
	if u.Tenant == "" {
		return fmt.Errorf("user %s: a tenant is required", u.Name)
	}
	if _, err := ParseRole(string(u.Role)); err != nil {
		return fmt.Errorf("user %s: %w", u.Name, err)
	}
	if len(password) < 8 {
		return fmt.Errorf("user %s: the password must have at least 8 characters", u.Name)
	}
	su, err := l.hash(u, password)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(su)
	key := l.userKey(u.Name)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := l.store.Client().Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).Commit()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("user %s: %w", u.Name, ErrUserExists)
	}
	return nil
}

func (l *Local) hash(u User, password string) (storedUser, error) {
	salt := make([]byte, 16)
	rand.Read(salt)
	h, err := pbkdf2.Key(sha256.New, password, salt, l.cfg.Iterations, 32)
	if err != nil {
		return storedUser{}, err
	}
	return storedUser{User: u, Salt: base64.StdEncoding.EncodeToString(salt),
		Hash: base64.StdEncoding.EncodeToString(h), Iterations: l.cfg.Iterations}, nil
}

// DeleteUser removes a user and revokes its tokens.
func (l *Local) DeleteUser(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := l.store.Client().Delete(ctx, l.userKey(name))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("user %s: %w", name, ErrNoUser)
	}
	toks, err := l.store.Client().Get(ctx, l.tokenKey(""), clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	for _, kv := range toks.Kvs {
		var t storedToken
		if json.Unmarshal(kv.Value, &t) == nil && t.User == name {
			l.store.Client().Delete(ctx, string(kv.Key))
		}
	}
	l.mu.Lock()
	for k, c := range l.cache {
		if c.id.User == name {
			delete(l.cache, k)
		}
	}
	l.mu.Unlock()
	return nil
}

// Users lists the users, by name.
func (l *Local) Users(ctx context.Context) ([]User, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := l.store.Client().Get(ctx, l.userKey(""), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	out := []User{}
	for _, kv := range resp.Kvs {
		var su storedUser
		if json.Unmarshal(kv.Value, &su) == nil {
			out = append(out, su.User)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (l *Local) user(ctx context.Context, name string) (storedUser, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := l.store.Client().Get(ctx, l.userKey(name))
	if err != nil {
		return storedUser{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if len(resp.Kvs) == 0 {
		return storedUser{}, ErrNoUser
	}
	var su storedUser
	if err := json.Unmarshal(resp.Kvs[0].Value, &su); err != nil {
		return storedUser{}, fmt.Errorf("user %s: unreadable record: %w", name, err)
	}
	return su, nil
}

// Login implements Provider: the password is checked against the user's
// hash, and a token bound to the user's tenant and role is stored under a
// lease that expires with it. A project other than the user's tenant is
// refused.
func (l *Local) Login(ctx context.Context, user, password, project string) (Token, error) {
	su, err := l.user(ctx, user)
	if errors.Is(err, ErrNoUser) {
		return Token{}, ErrUnauthorized
	}
	if err != nil {
		return Token{}, err
	}
	salt, _ := base64.StdEncoding.DecodeString(su.Salt)
	want, _ := base64.StdEncoding.DecodeString(su.Hash)
	got, err := pbkdf2.Key(sha256.New, password, salt, su.Iterations, len(want))
	if err != nil || subtle.ConstantTimeCompare(got, want) != 1 {
		return Token{}, ErrUnauthorized
	}
	if project != "" && project != su.Tenant {
		return Token{}, fmt.Errorf("%w: user %s belongs to tenant %s, not %s", ErrUnauthorized, user, su.Tenant, project)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	key := base64.RawURLEncoding.EncodeToString(raw)
	exp := l.cfg.Now().Add(l.cfg.TokenTTL).UTC().Truncate(time.Second)
	b, _ := json.Marshal(storedToken{User: su.Name, Tenant: su.Tenant, Role: su.Role, Expires: exp})
	cli := l.store.Client()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lease, err := cli.Grant(lctx, int64(l.cfg.TokenTTL/time.Second)+1)
	if err != nil {
		return Token{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if _, err := cli.Put(lctx, l.tokenKey(hashToken(key)), string(b), clientv3.WithLease(lease.ID)); err != nil {
		return Token{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return Token{Key: key, Expires: exp}, nil
}

func hashToken(t string) string {
	h := sha256.Sum256([]byte(t))
	return hex.EncodeToString(h[:])
}

// Validate implements Provider.
func (l *Local) Validate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrUnauthorized
	}
	h := hashToken(token)
	now := l.cfg.Now()
	l.mu.Lock()
	c, ok := l.cache[h]
	l.mu.Unlock()
	if ok && now.Before(c.until) && now.Before(c.id.Expires) {
		return c.id, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := l.store.Client().Get(ctx, l.tokenKey(h))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if len(resp.Kvs) == 0 {
		return Identity{}, ErrUnauthorized
	}
	var st storedToken
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil || !now.Before(st.Expires) {
		return Identity{}, ErrUnauthorized
	}
	id := Identity{User: st.User, Tenant: st.Tenant, Role: st.Role, Expires: st.Expires}
	l.mu.Lock()
	if len(l.cache) > 100_000 {
		clear(l.cache)
	}
	l.cache[h] = cachedIdentity{id: id, until: now.Add(l.cfg.CacheTTL)}
	l.mu.Unlock()
	return id, nil
}

// Revoke invalidates a token.
func (l *Local) Revoke(ctx context.Context, token string) error {
	h := hashToken(token)
	l.mu.Lock()
	delete(l.cache, h)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := l.store.Client().Delete(ctx, l.tokenKey(h))
	return err
}

// Credential file keys (shell variable style, also read by the CLI).
const (
	CredUser     = "MIDONET_USER"
	CredPassword = "MIDONET_PASSWORD"
	CredTenant   = "MIDONET_TENANT"
)

// Bootstrap creates the first admin user when the store has none: user
// "admin" of tenant "admin" with a random password, written to file (mode
// 0600) for the operator and the CLI. It reports whether it created one.
func (l *Local) Bootstrap(ctx context.Context, file string) (bool, error) {
	users, err := l.Users(ctx)
	if err != nil {
		return false, err
	}
	if len(users) > 0 {
		return false, nil
	}
	raw := make([]byte, 18)
	rand.Read(raw)
	password := base64.RawURLEncoding.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return false, fmt.Errorf("admin credential: %w", err)
	}
	content := fmt.Sprintf("# The first admin of this midonet cluster (created %s).\n%s=admin\n%s=%s\n%s=admin\n",
		l.cfg.Now().UTC().Format(time.RFC3339), CredUser, CredPassword, password, CredTenant)
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return false, fmt.Errorf("admin credential: %w", err)
	}
	if err := l.CreateUser(ctx, User{Name: "admin", Tenant: "admin", Role: RoleAdmin}, password); err != nil {
		os.Remove(tmp)
		if errors.Is(err, ErrUserExists) {
			return false, nil // another API server made it first
		}
		return false, err
	}
	return true, os.Rename(tmp, file)
}

// ReadCredentials reads a credential file written by Bootstrap (or by
// hand in the same KEY=value form).
func ReadCredentials(file string) (map[string]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
		}
	}
	return out, sc.Err()
}
