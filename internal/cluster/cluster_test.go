package cluster_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/auth"
	"github.com/midonet/midonet/internal/cluster"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/tlstest"
)

func start(t *testing.T, cfg cluster.Config) *cluster.Cluster {
	t.Helper()
	cfg.Listen, cfg.DataDir, cfg.FastStore = "127.0.0.1:0", filepath.Join(t.TempDir(), "nsdb"), true
	if cfg.NSDBListen == "" {
		cfg.NSDBListen = "127.0.0.1:0"
	}
	c, err := cluster.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func status(t *testing.T, hc *http.Client, method, url, token string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestMockModeIsTodaysBehaviour: without --auth, no token is needed and any
// login succeeds, as in MidoNet's mock mode.
func TestMockModeIsTodaysBehaviour(t *testing.T) {
	c := start(t, cluster.Config{})
	if s := status(t, http.DefaultClient, "GET", c.APIURL+"/bridges", ""); s != 200 {
		t.Errorf("GET /bridges without a token in mock mode: %d", s)
	}
	req, _ := http.NewRequest("POST", c.APIURL+"/login", nil)
	req.SetBasicAuth("anyone", "anything")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "sessionId="+auth.MockToken) {
		t.Errorf("mock login: %d %s", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
}

// TestLocalAuthAndTLS runs the API over HTTPS with local authentication,
// and the embedded store over TLS with client certificates: the API needs
// a token from the credential the fresh cluster wrote, and the store lets
// in only clients with a certificate of the CA.
func TestLocalAuthAndTLS(t *testing.T) {
	dir := t.TempDir()
	f := tlstest.Write(t, dir, "127.0.0.1")
	cred := filepath.Join(dir, "admin.credentials")
	c := start(t, cluster.Config{
		Auth: cluster.AuthLocal, AdminCredentials: cred, Local: auth.LocalConfig{Iterations: 1000},
		TLSCert: f.Cert, TLSKey: f.Key,
		NSDBTLSCert: f.Cert, NSDBTLSKey: f.Key, NSDBClientCA: f.CA, NSDBCA: f.CA, NSDBCert: f.ClientCert, NSDBKey: f.ClientKey,
	})
	if !strings.HasPrefix(c.APIURL, "https://") || !strings.HasPrefix(c.NSDBURLs[0], "https://") || c.AdminCredentials != cred {
		t.Fatalf("API %s, store %v, credential %q", c.APIURL, c.NSDBURLs, c.AdminCredentials)
	}
	pem, _ := os.ReadFile(f.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}

	if s := status(t, hc, "GET", c.APIURL+"/bridges", ""); s != 401 {
		t.Errorf("GET /bridges without a token: %d, want 401", s)
	}
	m, err := auth.ReadCredentials(cred)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", c.APIURL+"/login", nil)
	req.SetBasicAuth(m[auth.CredUser], m[auth.CredPassword])
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tok, _, _ := strings.Cut(strings.TrimPrefix(resp.Header.Get("Set-Cookie"), "sessionId="), ";")
	if s := status(t, hc, "GET", c.APIURL+"/bridges", tok); s != 200 {
		t.Errorf("GET /bridges with the admin's token: %d", s)
	}
	// Go's TLS server answers a plain HTTP request with a 400.
	if s := status(t, http.DefaultClient, "GET", "http"+strings.TrimPrefix(c.APIURL, "https")+"/bridges", tok); s != 400 {
		t.Errorf("plain HTTP to the TLS API: %d, want 400", s)
	}

	open := func(tlsCfg *tls.Config, url string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s, err := nsdb.Open(ctx, nsdb.Config{Endpoints: []string{url}, TLS: tlsCfg, DialTimeout: 2 * time.Second})
		if err == nil {
			s.Close()
		}
		return err
	}
	withCert, err := nsdb.ClientTLS(f.CA, f.ClientCert, f.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := open(withCert, c.NSDBURLs[0]); err != nil {
		t.Errorf("an agent with the CA and a client certificate cannot reach the store: %v", err)
	}
	noCert, _ := nsdb.ClientTLS(f.CA, "", "")
	if err := open(noCert, c.NSDBURLs[0]); err == nil {
		t.Error("a client without a certificate reached the store")
	}
	if err := open(nil, "http"+strings.TrimPrefix(c.NSDBURLs[0], "https")); err == nil {
		t.Error("a plain-text client reached the TLS store")
	}
}
