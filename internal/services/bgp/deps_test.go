package bgp

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps GoBGP in package speaker alone: the agent and this
// package run speakers as processes and never link GoBGP, so that an
// agent-only build can leave it out.
func TestDependencies(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found; cannot list dependencies")
	}
	for _, pkg := range []string{".", "../../agent"} {
		out, err := exec.Command(gobin, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for dep := range strings.FieldsSeq(string(out)) {
			if strings.HasPrefix(dep, "github.com/osrg/gobgp") {
				t.Errorf("%s depends on %s: only package speaker may import GoBGP", pkg, dep)
			}
		}
	}
}
