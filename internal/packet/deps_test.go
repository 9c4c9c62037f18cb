package packet

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies holds the line drawn in ARCHITECTURE.md: packet sits at
// the bottom and uses the standard library only (gopacket is for tests).
func TestDependencies(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found; cannot list dependencies")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		if dep == "github.com/midonet/midonet/internal/packet" {
			continue
		}
		if first, _, _ := strings.Cut(dep, "/"); strings.Contains(first, ".") {
			t.Errorf("packet depends on %s; it must use the standard library only", dep)
		}
	}
}
