package cli

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/midonet/midonet/internal/auth"
)

// Environment variables of the credentials (the credential file a fresh
// cluster writes uses the same names).
const (
	EnvToken       = "MIDONET_TOKEN"
	EnvCredentials = "MIDONET_CREDENTIALS"
)

// DefaultCredentials is read when no token or user is given: the file a
// fresh cluster on this machine writes for its admin.
const DefaultCredentials = "/var/lib/midonet/admin.credentials"

// defaultCredentials is DefaultCredentials; tests point it elsewhere.
var defaultCredentials = DefaultCredentials

// credentials say how the client authenticates.
type credentials struct {
	token, user, password, tenant string
	file, caCert                  string
}

func (c *credentials) flags(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&c.token, "token", "", "X-Auth-Token to send (env "+EnvToken+")")
	pf.StringVar(&c.user, "user", "", "user to log in as (env "+auth.CredUser+")")
	pf.StringVar(&c.password, "password", "", "password of --user (env "+auth.CredPassword+")")
	pf.StringVar(&c.tenant, "project", "", "tenant (project) to log in to (env "+auth.CredTenant+")")
	pf.StringVar(&c.file, "credentials", "", "file of "+auth.CredUser+"=... and "+auth.CredPassword+"=... lines (env "+
		EnvCredentials+"; default "+DefaultCredentials+" when readable and nothing else is given)")
	pf.StringVar(&c.caCert, "ca-cert", "", "CA certificate (PEM) of an https --api")
}

// resolve fills unset credentials from the environment and the credential
// file.
func (c *credentials) resolve(cmd *cobra.Command) error {
	env := func(v *string, flag, name string) {
		if f := cmd.Flag(flag); (f == nil || !f.Changed) && os.Getenv(name) != "" {
			*v = os.Getenv(name)
		}
	}
	env(&c.token, "token", EnvToken)
	env(&c.user, "user", auth.CredUser)
	env(&c.password, "password", auth.CredPassword)
	env(&c.tenant, "project", auth.CredTenant)
	env(&c.file, "credentials", EnvCredentials)
	file, explicit := c.file, c.file != ""
	if !explicit && c.token == "" && c.user == "" {
		file = defaultCredentials
	}
	if file == "" {
		return nil
	}
	m, err := auth.ReadCredentials(file)
	if err != nil {
		if explicit {
			return fmt.Errorf("--credentials: %w", err)
		}
		return nil // no default file, or not ours to read: no credentials
	}
	if c.user == "" {
		c.user, c.password = m[auth.CredUser], m[auth.CredPassword]
	}
	if c.tenant == "" {
		c.tenant = m[auth.CredTenant]
	}
	return nil
}

// transport returns the round tripper that authenticates requests.
func (c *credentials) transport(api string) (http.RoundTripper, error) {
	base := http.DefaultTransport.(*http.Transport).Clone()
	if c.caCert != "" {
		pem, err := os.ReadFile(c.caCert)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-cert %s: no PEM certificate in it", c.caCert)
		}
		base.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &authTransport{base: base, login: strings.TrimSuffix(api, "/") + "/login", creds: *c, token: c.token}, nil
}

// authTransport sends X-Auth-Token with every request. With a user, it
// logs in first and again once when the API answers 401 (an expired
// token), as MidoNet's clients do.
type authTransport struct {
	base  http.RoundTripper
	login string
	creds credentials

	mu    sync.Mutex
	token string // guarded by mu
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.currentToken(req, false)
	if err != nil {
		return nil, err
	}
	resp, err := t.send(req, tok)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || t.creds.user == "" {
		return resp, err
	}
	if req.Body != nil && req.GetBody == nil {
		return resp, nil // the body cannot be sent again
	}
	resp.Body.Close()
	if tok, err = t.currentToken(req, true); err != nil {
		return nil, err
	}
	if req.GetBody != nil {
		if req.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	return t.send(req, tok)
}

func (t *authTransport) send(req *http.Request, tok string) (*http.Response, error) {
	r := req.Clone(req.Context())
	if tok != "" {
		r.Header.Set("X-Auth-Token", tok)
	}
	return t.base.RoundTrip(r)
}

// currentToken returns the token, logging in when there is none yet (or
// fresh is set) and a user is known.
func (t *authTransport) currentToken(req *http.Request, fresh bool) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if (t.token != "" && !fresh) || t.creds.user == "" {
		return t.token, nil
	}
	tok, err := Login(t.base, t.login, t.creds.user, t.creds.password, t.creds.tenant)
	if err != nil {
		return "", err
	}
	t.token = tok
	return tok, nil
}

// Login logs in at loginURL (<api>/login) and returns the token.
func Login(rt http.RoundTripper, loginURL, user, password, tenant string) (string, error) {
	req, err := http.NewRequest(http.MethodPost, loginURL, nil)
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(user, password)
	if tenant != "" {
		req.Header.Set("X-Auth-Project", tenant)
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("login at %s: %w", loginURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var ent struct {
			Message string `json:"message"`
		}
		json.Unmarshal(body, &ent)
		return "", fmt.Errorf("login at %s as %s: %d %s: %s", loginURL, user, resp.StatusCode, http.StatusText(resp.StatusCode), ent.Message)
	}
	var tok struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || tok.Key == "" {
		return "", errors.New("login at " + loginURL + ": the answer carries no token")
	}
	return tok.Key, nil
}
