package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

func TestTraceRequestVerbs(t *testing.T) {
	br := unique("traced")
	must(t, "bridge", "create", "--name", br)
	name := unique("dns")
	tr := object(t, "trace-request", "create", "--name", name, "--bridge", br, "--proto", "udp", "--tp-dst", "53", "--limit", "20")
	b := object(t, "bridge", "show", br)
	checkFields(t, "created", tr, map[string]string{"deviceType": "BRIDGE", "deviceId": b.Str("id"), "enabled": "false", "limit": "20"})
	cond, _ := tr["condition"].(map[string]any)
	if format(cond["nwProto"]) != "17" || format(cond["tpDst"]) == "-" {
		t.Errorf("condition %v", cond)
	}
	if _, err := run(t, "trace-request", "create", "--name", unique("x"), "--bridge", br, "--router", "nope"); err == nil {
		t.Error("two devices were accepted")
	}
	if _, err := run(t, "trace-request", "create", "--name", unique("x")); err == nil ||
		!strings.Contains(err.Error(), "--bridge, --router or --port") {
		t.Errorf("no device: %v", err)
	}
	checkFields(t, "enabled", object(t, "trace-request", "enable", name), map[string]string{"enabled": "true"})
	if out := must(t, "trace-request", "list"); !strings.Contains(out, name) || !strings.Contains(out, "proto=udp tp-dst=53") {
		t.Errorf("list:\n%s", out)
	}
	if out := must(t, "trace-request", "packets", name); !strings.Contains(out, "no packet traced") {
		t.Errorf("packets before any: %q", out)
	}

	// What an agent publishes is what `packets` shows.
	host, port := uuid.New(), uuid.New()
	v, _ := json.Marshal([]topology.TracedPacket{{Time: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), HostID: host, PortID: port,
		TraceRequestIDs: []uuid.UUID{uuid.MustParse(tr.Str("id"))}, Packet: "udp 10.0.0.1:1000 > 8.8.8.8:53", Result: "drop", Reason: "chain",
		Trace: []topology.TraceStep{{DeviceType: "bridge", Device: uuid.MustParse(b.Str("id")), Name: br, Event: "process"}}}})
	if err := testStore.PutState(context.Background(), nsdb.TracedPacketsKey(tr.Str("id"), host.String()), v); err != nil {
		t.Fatal(err)
	}
	out := must(t, "trace-request", "packets", name)
	for _, want := range []string{"host " + host.String(), "udp 10.0.0.1:1000 > 8.8.8.8:53 → drop (chain)",
		"    bridge " + br + " (" + b.Str("id") + "): process"} {
		if !strings.Contains(out, want) {
			t.Errorf("packets lacks %q:\n%s", want, out)
		}
	}
	if l := objects(t, "trace-request", "packets", name); len(l) != 1 || l[0].Str("result") != "drop" {
		t.Errorf("packets -o json: %v", l)
	}
	checkFields(t, "disabled", object(t, "trace-request", "disable", name), map[string]string{"enabled": "false"})
	must(t, "trace-request", "delete", name)
}
