// Package testenv lets tests state what they need from the machine: root,
// and programs from Debian's packages. On a developer's machine a test whose
// needs are not met skips, saying what to install; in CI (.ci/run exports
// MIDONET_REQUIRE_TOOLS=1 after installing every package the tests use) the
// same test fails instead, so that a skip is never counted as a pass there.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Required reports whether missing prerequisites fail tests instead of
// skipping them (MIDONET_REQUIRE_TOOLS set, as in CI).
func Required() bool { return os.Getenv("MIDONET_REQUIRE_TOOLS") != "" }

// unmet skips t, or fails it when prerequisites are required.
func unmet(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s (MIDONET_REQUIRE_TOOLS is set: CI must provide it)", why)
	}
	t.Skip(why)
}

// RequireRoot skips (or in CI fails) t unless it runs as root, which
// network namespaces, links and datapaths need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unmet(t, "needs root to create network namespaces and links")
	}
}

// RequireTool skips (or in CI fails) t unless the program is on PATH;
// pkg names the Debian package that provides it.
func RequireTool(t testing.TB, program, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		unmet(t, program+" is missing (apt-get install "+pkg+")")
	}
	return path
}
