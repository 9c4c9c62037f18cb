package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/sandbox"
	"github.com/midonet/midonet/internal/topology"
)

// tracedPackets reads what the agents traced for a trace request.
func tracedPackets(t *testing.T, id string) []topology.TracedPacket {
	t.Helper()
	resp, err := http.Get(sb.APIURL() + "/traces/" + id + "/packets")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /traces/%s/packets: %s", id, resp.Status)
	}
	var out []topology.TracedPacket
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestTraceRequest: a trace request on net-a for pings to vm-b2 makes
// host1's agent trace vm-a1's pings there, up to the request's limit: each
// traced packet is in the agent's log with the request's id, counted in
// its metrics, and readable through the API with its device-by-device
// trace. Pings are new flows each (a new ICMP identifier, which vm-b2's
// security group tracks), so each is simulated, and traced while the limit
// allows.
func TestTraceRequest(t *testing.T) {
	need(t)
	const limit = 2
	id := post(t, "/traces", map[string]any{"name": "e2e-icmp", "deviceType": "BRIDGE", "deviceId": sb.ID("net-a"),
		"condition": map[string]any{"nwProto": 1, "nwDstAddress": "10.0.2.11", "nwDstLength": 32}, "limit": limit, "enabled": true})
	t.Cleanup(func() { del("/traces/" + id) })
	series := `midonet_agent_traced_packets_total{request="` + id + `"}`

	var pkts []topology.TracedPacket
	eventually(t, 20*time.Second, "a traced ping published", func() bool {
		pingCount(sandbox.VMNS("vm-a1"), "10.0.2.11", 1)
		pkts = tracedPackets(t, id)
		return len(pkts) > 0
	})
	p := pkts[0]
	if p.HostID.String() != sb.ID("host:host1") || p.PortID.String() != sb.ID("port:vm-a1") ||
		!slices.ContainsFunc(p.TraceRequestIDs, func(x topology.ID) bool { return x.String() == id }) {
		t.Errorf("traced packet from host %s port %s for %v; want host1, vm-a1's port, the request", p.HostID, p.PortID, p.TraceRequestIDs)
	}
	if !strings.Contains(p.Packet, "icmp 10.0.1.10 > 10.0.2.11 type 8") || (p.Result != "forward" && p.Result != "userspace-only") {
		t.Errorf("traced packet %q → %s %s", p.Packet, p.Result, p.Reason)
	}
	var steps []string
	for _, s := range p.Trace {
		steps = append(steps, s.DeviceType+" "+s.Device.String()+" "+s.Event)
	}
	trace := strings.Join(steps, "\n")
	for _, want := range []string{"trace-request " + id + " matched", "bridge " + sb.ID("net-a") + " process",
		"router " + sb.ID("tenant-router") + " process", "bridge " + sb.ID("net-b") + " process"} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}

	// Up to the limit, then no more: pings go on, untraced.
	eventually(t, 20*time.Second, "the limit's worth of traced pings", func() bool {
		if agentMetric(t, 0, series) >= limit {
			return true
		}
		pingCount(sandbox.VMNS("vm-a1"), "10.0.2.11", 1)
		return false
	})
	if n := pingCount(sandbox.VMNS("vm-a1"), "10.0.2.11", 3); n < 2 {
		t.Errorf("%d of 3 pings once the trace's limit was reached", n)
	}
	if n := agentMetric(t, 0, series); n != limit {
		t.Errorf("host1 traced %d pings, want the limit %d", n, limit)
	}
	eventually(t, 5*time.Second, "both traced pings published", func() bool { return len(tracedPackets(t, id)) == limit })

	// One log record per traced packet, with the request's id.
	log, err := os.ReadFile(sb.AgentLog(0))
	if err != nil {
		t.Fatal(err)
	}
	records := 0
	for _, line := range strings.Split(string(log), "\n") {
		if strings.Contains(line, `msg="packet traced"`) && strings.Contains(line, "trace_request_ids="+id) {
			records++
		}
	}
	if records != limit {
		t.Errorf("host1's log holds %d \"packet traced\" records of the request, want %d", records, limit)
	}
}
