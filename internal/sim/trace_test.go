package sim

import (
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
)

func TestTracePacket(t *testing.T) {
	tp, ids := referenceTopo(t)
	snap := tp.snapshot()
	r, err := TracePacket(snap, nil, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != Forward {
		t.Fatalf("kind %v %v", r.Kind, r.Reason)
	}
	text := r.Trace.String()
	for _, want := range []string{
		"port vm1 (", ": ingress",
		"chain vm1-in (", "bridge net (", "router tenant (", "router provider (",
		": route", ": nat: snat", "port uplink (", ": emit", "result: forward",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("trace lacks %q:\n%s", want, text)
		}
	}
	b, err := json.Marshal(r.Trace)
	if err != nil {
		t.Fatal(err)
	}
	var back Trace
	if err := json.Unmarshal(b, &back); err != nil || len(back) != len(r.Trace) || back[0] != r.Trace[0] {
		t.Fatalf("trace does not round-trip through JSON: %v", err)
	}
	whole, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Kind":"forward"`, `"Set":"eth_src,eth_dst,nw_src,nw_ttl,tp_src"`} {
		if !strings.Contains(string(whole), want) {
			t.Errorf("JSON result lacks %s: %s", want, whole)
		}
	}
	// A dropped packet says why.
	r, _ = TracePacket(snap, nil, ids["vm1"], tcp(vmMAC, rtrMAC, "10.0.0.99", "8.8.8.8", 1, 2), testNow)
	if !strings.Contains(r.Trace.String(), "result: drop (chain)") {
		t.Errorf("drop trace:\n%s", r.Trace)
	}
}

func TestTracingIsOffByDefault(t *testing.T) {
	tp, ids := bridgeTopo(t)
	r := NewSimulator(1).Simulate(tp.snapshot(), nil, mkPacket(t, ids["vm1"], udp(vmMAC, "02:00:00:00:00:02", vmIP, "10.0.0.12", 1, 2)), testNow)
	if len(r.Trace) != 0 {
		t.Fatalf("untraced simulation recorded %d events", len(r.Trace))
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestTraceGolden pins the trace of the reference path: a change in what
// the simulation does, or in how traces read, shows in the diff of
// testdata/reference.trace.golden (rewrite it with -update).
func TestTraceGolden(t *testing.T) {
	tp, ids := referenceTopo(t)
	r, err := TracePacket(tp.snapshot(), nil, ids["vm1"], tcp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 40000, 443), testNow)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Trace.String()
	const golden = "testdata/reference.trace.golden"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("trace differs from %s (rerun with -update if intended):\n%s", golden, got)
	}
}
