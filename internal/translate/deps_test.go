package translate

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPure holds the package to its contract: a translation reads its
// arguments and returns actions. It imports no I/O, clock, lock or store.
func TestPure(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found; cannot list imports")
	}
	out, err := exec.Command(gobin, "list", "-f", `{{join .Imports " "}}`, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := map[string]string{
		"os": "I/O", "net": "I/O", "time": "the clock", "sync": "locks", "log/slog": "logging",
		"github.com/midonet/midonet/internal/nsdb":  "the store",
		"github.com/midonet/midonet/internal/agent": "the agent, which calls it",
	}
	for imp := range strings.FieldsSeq(string(out)) {
		if why, ok := forbidden[imp]; ok {
			t.Errorf("translate imports %s (%s); it must stay a pure function of its arguments", imp, why)
		}
	}
}
