package cli

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/midonet/midonet/internal/auth"
	"github.com/midonet/midonet/internal/cluster"
)

// TestAuthenticatedCluster drives a cluster with local authentication: the
// admin's credential file, a token from `midonet login`, users made with
// `midonet user`, and a fresh login when a token is refused.
func TestAuthenticatedCluster(t *testing.T) {
	dir := t.TempDir()
	defaultCredentials = filepath.Join(dir, "none") // not this machine's file
	t.Cleanup(func() { defaultCredentials = DefaultCredentials })
	cred := filepath.Join(dir, "admin.credentials")
	c, err := cluster.Start(context.Background(), cluster.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "nsdb"),
		NSDBListen: "127.0.0.1:0", FastStore: true, Auth: cluster.AuthLocal, AdminCredentials: cred,
		Local: auth.LocalConfig{Iterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	at := func(args ...string) (string, error) {
		t.Helper()
		root := &cobra.Command{Use: "midonet", SilenceUsage: true, SilenceErrors: true}
		Register(root)
		var out strings.Builder
		root.SetOut(&out)
		root.SetArgs(append(slices.Clone(args), "--api", c.APIURL))
		err := root.ExecuteContext(t.Context())
		return out.String(), err
	}
	if _, err := at("bridge", "list"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("without credentials: %v, want a 401", err)
	}
	if _, err := at("bridge", "create", "--name", "admin-net", "--credentials", cred); err != nil {
		t.Errorf("with the admin's credential file: %v", err)
	}
	out, err := at("login", "--credentials", cred)
	token, ok := strings.CutPrefix(strings.TrimSpace(out), "export "+EnvToken+"=")
	if err != nil || !ok || token == "" {
		t.Fatalf("login = %q, %v", out, err)
	}
	t.Setenv(EnvToken, token)
	if out, err := at("bridge", "list", "-o", "json"); err != nil || !strings.Contains(out, "admin-net") {
		t.Errorf("with %s: %q, %v", EnvToken, out, err)
	}
	t.Setenv(EnvToken, "")

	if _, err := at("user", "create", "alice", "--tenant", "acme", "--role", "tenant_admin", "--user-password", "alice-pass",
		"--credentials", cred); err != nil {
		t.Fatalf("user create: %v", err)
	}
	if out, _ := at("user", "list", "--credentials", cred); !strings.Contains(out, "alice") || !strings.Contains(out, "tenant_admin") {
		t.Errorf("user list = %q", out)
	}
	alice := []string{"--user", "alice", "--password", "alice-pass", "--project", "acme"}
	if _, err := at(append([]string{"bridge", "create", "--name", "acme-net"}, alice...)...); err != nil {
		t.Errorf("alice creating a bridge: %v", err)
	}
	out, err = at(append([]string{"bridge", "list", "-o", "json"}, alice...)...)
	if err != nil || !strings.Contains(out, `"tenantId": "acme"`) || strings.Contains(out, "admin-net") {
		t.Errorf("alice's bridges: %q, %v; want hers, of tenant acme, only", out, err)
	}
	// A refused token with a user known: log in again once, and go on.
	if _, err := at(append([]string{"bridge", "list", "--token", "expired-or-forged"}, alice...)...); err != nil {
		t.Errorf("a refused token and a user: %v, want a fresh login", err)
	}
	if _, err := at("user", "delete", "alice", "--credentials", cred); err != nil {
		t.Errorf("user delete: %v", err)
	}
	if _, err := at(append([]string{"bridge", "list"}, alice...)...); err == nil {
		t.Error("a deleted user still logs in")
	}
}
