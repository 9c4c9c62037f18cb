package testenv

import "testing"

func TestRequireToolFindsShell(t *testing.T) {
	if p := RequireTool(t, "sh", "dash"); p == "" {
		t.Fatal("sh not found on PATH, yet RequireTool did not stop the test")
	}
}

func TestRequireToolMissing(t *testing.T) {
	t.Setenv("MIDONET_REQUIRE_TOOLS", "")
	ran := false
	t.Run("missing", func(t *testing.T) {
		defer func() { ran = true }()
		RequireTool(t, "no-such-program-midonet", "none")
		t.Error("RequireTool returned for a missing program")
	})
	if !ran {
		t.Fatal("subtest did not run")
	}
}
