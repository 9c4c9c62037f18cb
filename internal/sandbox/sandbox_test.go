package sandbox

import (
	"os"
	"path/filepath"
	"slices"
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

func TestSwitchCPUs(t *testing.T) {
	for _, tc := range []struct {
		allowed []int
		want    []int
	}{
		{[]int{0}, nil},                     // one processor: pinning would only keep the receivers from moving
		{[]int{3}, nil},                     // one processor under taskset
		{[]int{0, 1}, []int{1, 0, 1}},       // two: host1 and host3 share the last one
		{[]int{0, 1, 2}, []int{2, 1, 0}},    // one each
		{[]int{0, 2, 5, 7}, []int{7, 5, 2}}, // sparse; the first is left to the VMs
		{[]int{1, 1023}, []int{1023, 1, 1023}},
		{[]int{4, 5, 6, 7}, []int{7, 6, 5}}, // under taskset -c 4-7
	} {
		if got := switchCPUs(tc.allowed, 3); !slices.Equal(got, tc.want) {
			t.Errorf("allowed %v: got %v, want %v", tc.allowed, got, tc.want)
		}
	}
}

// The sandbox pins the datapath unless told not to, or told where.
func TestDatapathCPUs(t *testing.T) {
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
		cpus := (&Sandbox{cfg: tc.cfg}).datapathCPUs()
		if got := cpus != nil; got != tc.pin {
			t.Errorf("%s: processors %v; want pinned=%v", tc.name, cpus, tc.pin)
		}
		if cpus != nil && len(cpus) != len(hosts) {
			t.Errorf("%s: processors %v for %d hosts", tc.name, cpus, len(hosts))
		}
	}
}
