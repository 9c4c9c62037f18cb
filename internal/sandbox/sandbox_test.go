package sandbox

import (
	"os"
	"path/filepath"
	"testing"
)

// A data directory given again keeps the logs but not the store and agents'
// state: the demo is rebuilt from scratch and its old objects would
// conflict with it (409 on the tunnel zone's name).
func TestClearStateKeepsOnlyLogs(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"nsdb/member/snap/db", "host1/host-id", "host3/flowstate", "host1.log", "notes.txt"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sb := &Sandbox{cfg: Config{DataDir: dir}}
	if err := sb.clearState(); err != nil {
		t.Fatal(err)
	}
	for p, kept := range map[string]bool{"nsdb": false, "host1": false, "host3": false, "host1.log": true, "notes.txt": true} {
		_, err := os.Stat(filepath.Join(dir, p))
		if exists := err == nil; exists != kept {
			t.Errorf("%s: exists=%v, want %v", p, exists, kept)
		}
	}
}
