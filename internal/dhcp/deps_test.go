package dhcp

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the package pure and low: the simulation calls
// it, so it must not reach the network, the store or the agent.
func TestDependencies(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found; cannot list dependencies")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	bad := map[string]string{
		"net/http": "answers are computed, not sent: the agent does the I/O",
		"github.com/midonet/midonet/internal/sim":   "sim calls dhcp, not the other way",
		"github.com/midonet/midonet/internal/nsdb":  "the store is the agent's",
		"github.com/midonet/midonet/internal/agent": "the agent calls the simulation",
	}
	for dep := range strings.FieldsSeq(string(out)) {
		if why, ok := bad[dep]; ok {
			t.Errorf("dhcp depends on %s: %s", dep, why)
		}
	}
}
