package sandbox

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/midonet/midonet/internal/datapath/userspace"
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

func TestSwitchCPU(t *testing.T) {
	for _, tc := range []struct {
		allowed []int
		want    int
		ok      bool
	}{
		{[]int{0}, 0, false},         // one processor: nothing to leave to the VMs
		{[]int{3}, 0, false},         // one processor under taskset
		{[]int{0, 1}, 1, true},       // the last one
		{[]int{0, 2, 5, 7}, 7, true}, // sparse
		{[]int{1, 1023}, 1023, true}, // the end of the set
		{[]int{4, 5, 6, 7}, 7, true}, // under taskset -c 4-7
	} {
		got, ok := switchCPU(tc.allowed)
		if got != tc.want || ok != tc.ok {
			t.Errorf("allowed %v: got %d, %v; want %d, %v", tc.allowed, got, ok, tc.want, tc.ok)
		}
	}
}

// The sandbox pins the datapath unless told not to, or told where.
func TestDatapathCPUArgs(t *testing.T) {
	allowed, err := userspace.AllowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	pins := len(allowed) > 1
	for _, tc := range []struct {
		name string
		cfg  Config
		pin  bool
	}{
		{"default", Config{Datapath: "userspace", PinDatapath: true}, pins},
		{"auto", Config{Datapath: "auto", PinDatapath: true}, pins},
		{"off", Config{Datapath: "userspace"}, false},
		{"ovs", Config{Datapath: "ovs", PinDatapath: true}, false},
		{"operator's list", Config{Datapath: "userspace", PinDatapath: true, AgentArgs: []string{"--datapath-cpus=0"}}, false},
		{"operator's list, two args", Config{Datapath: "userspace", PinDatapath: true, AgentArgs: []string{"--busy-poll=0", "--datapath-cpus", "0"}}, false},
	} {
		args := (&Sandbox{cfg: tc.cfg}).datapathCPUArgs()
		if got := len(args) > 0; got != tc.pin {
			t.Errorf("%s: args %q; want pinned=%v", tc.name, args, tc.pin)
		}
		if len(args) > 0 && args[0] != "--datapath-cpus" {
			t.Errorf("%s: args %q", tc.name, args)
		}
	}
}
