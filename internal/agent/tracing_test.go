package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/topology"
)

// logBuffer collects an agent's JSON log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the log records whose message is msg.
func (b *logBuffer) records(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r map[string]any
		if json.Unmarshal(sc.Bytes(), &r) == nil && r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// labelCount is how many label values a counter vector holds.
func labelCount(v *prometheus.CounterVec) int {
	ch := make(chan prometheus.Metric, 64)
	v.Collect(ch)
	close(ch)
	n := 0
	for range ch {
		n++
	}
	return n
}

// TestTraceRequests: an enabled trace request on a bridge traces the
// packets that match its condition, up to its limit on the host: each is
// logged with the request id and the trace, counted, and published in the
// store. Enabling it invalidates the flows that bypassed it; disabling it
// stops the tracing, enabling it again resets the limit, and deleting it
// removes what was published.
func TestTraceRequests(t *testing.T) {
	c := newCloud(t)
	logs := &logBuffer{}
	h1 := c.addAgentWith("h1", "10.9.0.1", func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	bridge := topology.NewID()
	c.update(func(tx topology.Store) error { return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}) })
	p1, p2 := c.bridgePort(bridge, h1, "vm1"), c.bridgePort(bridge, h1, "vm2")
	dp1, dp2 := h1.dpPort(t, "vm1", p1), h1.dpPort(t, "vm2", p2)

	req := topology.TraceRequest{ID: topology.NewID(), Name: topology.Str("dns"), DeviceType: topology.Str(topology.TraceBridge),
		DeviceID: topology.IDPtr(bridge), Limit: 2,
		Condition: &topology.MirrorCondition{Condition: topology.Condition{NwProto: new(17),
			TpDst: &topology.PortRange{Start: 53, End: 53}}}}
	counted := func() float64 { return counterValue(h1.metrics.traced.WithLabelValues(req.ID.String())) }
	// send sends one packet from source MAC src to UDP port dport and
	// reports whether the agent traced it. Each source MAC makes a flow of
	// its own: the bridge's megaflows match the source MAC, not the port.
	send := func(src byte, dport uint16) bool {
		t.Helper()
		before := counted()
		if err := h1.dp.Inject(dp1, udpFrame(mac(src), mac(2), "10.0.0.1", "10.0.0.2", 1000, dport)); err != nil {
			t.Fatal(err)
		}
		expectFrame(t, h1, dp2, mac(2))
		return counted() > before
	}

	// A flow installed while no request exists...
	send(10, 53)
	if !poll.Until(func() bool { return h1.Flows() > 0 }, 5*time.Second) {
		t.Fatal("no flow installed")
	}
	c.update(func(tx topology.Store) error { return tx.Create(&req) })
	c.settle()
	if send(11, 53) {
		t.Fatal("a disabled request traced a packet")
	}
	req.Enabled = true
	c.update(func(tx topology.Store) error { return tx.Put(&req) })
	// ...does not bypass the request once it is enabled.
	if !poll.Until(func() bool { return send(10, 53) }, 5*time.Second) {
		t.Fatal("the enabled request never traced the flow installed before it")
	}
	if send(12, 80) {
		t.Error("a packet outside the condition was traced")
	}
	if !send(13, 53) {
		t.Error("the second matching flow was not traced")
	}
	if send(14, 53) {
		t.Error("a third flow was traced beyond the limit of 2")
	}
	if got := counted(); got != 2 {
		t.Errorf("traced %v packets, want 2", got)
	}

	// One log record per traced packet, with the request and the trace.
	recs := logs.records("packet traced")
	if len(recs) != 2 {
		t.Fatalf("%d \"packet traced\" records, want 2", len(recs))
	}
	r := recs[0]
	if r["trace_request_ids"] != req.ID.String() || r["port_id"] != p1.String() || r["result"] != "forward" {
		t.Errorf("record %v", r)
	}
	if !strings.Contains(r["packet"].(string), "udp 10.0.0.1:1000 > 10.0.0.2:53") {
		t.Errorf("record's packet %q", r["packet"])
	}
	steps, _ := r["trace"].([]any)
	trace := ""
	for _, s := range steps {
		trace += s.(string) + "\n"
	}
	for _, want := range []string{"trace-request dns (" + req.ID.String() + "): matched", "bridge " + bridge.String() + ": process",
		"port vm2 (" + p2.String() + "): emit"} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}

	// The traced packets are published for the API.
	key := nsdb.TracedPacketsKey(req.ID.String(), h1.HostID().String())
	var published []topology.TracedPacket
	if !poll.Until(func() bool {
		e, err := c.store.GetState(context.Background(), key)
		return err == nil && json.Unmarshal(e.Value, &published) == nil && len(published) == 2
	}, 5*time.Second) {
		t.Fatalf("published %v, want the 2 traced packets", published)
	}
	if p := published[1]; p.HostID != h1.HostID() || p.PortID != p1 || len(p.TraceRequestIDs) != 1 ||
		p.TraceRequestIDs[0] != req.ID || p.Result != "forward" || len(p.Trace) == 0 {
		t.Errorf("published packet %+v", p)
	}

	// Disabled, the request traces nothing; enabled again, it counts anew.
	req.Enabled = false
	c.update(func(tx topology.Store) error { return tx.Put(&req) })
	c.settle()
	if send(15, 53) {
		t.Error("a disabled request traced a packet")
	}
	req.Enabled = true
	c.update(func(tx topology.Store) error { return tx.Put(&req) })
	c.settle()
	if !poll.Until(func() bool { return send(16, 53) }, 5*time.Second) {
		t.Error("the request enabled again traced nothing: its limit was not reset")
	}

	// Deleted, its published packets and its counter go.
	c.update(func(tx topology.Store) error { return topology.Delete(tx, topology.KindTrace, req.ID.String()) })
	if !poll.Until(func() bool {
		_, err := c.store.GetState(context.Background(), key)
		return errors.Is(err, nsdb.ErrNotFound)
	}, 5*time.Second) {
		t.Error("the deleted request's traced packets are still published")
	}
	if n := labelCount(h1.metrics.traced); n != 0 {
		t.Errorf("the counter keeps %d requests after the delete", n)
	}
}

// TestTracedPacketWaitingForASNATBlock: a traced packet that waits for the
// agent to lease a SNAT port block is traced once, when it is simulated
// again with the block, and published as forwarded with its SNAT, not as
// waiting.
func TestTracedPacketWaitingForASNATBlock(t *testing.T) {
	c := newCloud(t)
	h1, h3 := c.addAgent("h1", "10.9.0.1"), c.addAgent("h3", "10.9.0.3")
	n := c.snatNet(h1, h3)
	v := vmClient{h1, h1.dpPort(t, "vm", n.vm), n.vmMAC, "10.0.0.10"}
	dpUp := h3.dpPort(t, "up1", n.up)
	c.waitAllActive(t, n.vm, n.up)
	req := topology.TraceRequest{ID: topology.NewID(), Name: topology.Str("snat"), DeviceType: topology.Str(topology.TraceRouter),
		DeviceID: topology.IDPtr(n.router), Limit: 10, Enabled: true}
	c.update(func(tx topology.Store) error { return tx.Create(&req) })
	c.settle()
	if held := c.blockHolders(n); len(held) != 0 {
		t.Fatalf("blocks leased before the first connection: %v", held)
	}

	v.send(n, 10000) // h1 holds no block yet: the packet waits for one
	if f := readIPv4(t, h3, dpUp); f.Src != natIP {
		t.Fatalf("the connection left from %v, want %v", f.Src, natIP)
	}
	key := nsdb.TracedPacketsKey(req.ID.String(), h1.HostID().String())
	var published []topology.TracedPacket
	if !poll.Until(func() bool {
		e, err := c.store.GetState(context.Background(), key)
		return err == nil && json.Unmarshal(e.Value, &published) == nil && len(published) > 0
	}, 5*time.Second) {
		t.Fatal("the packet was not traced")
	}
	if len(published) != 1 || published[0].Result != "forward" {
		t.Fatalf("traced %+v, want the one packet, forwarded", published)
	}
	trace := strings.Join(func() []string {
		var s []string
		for _, st := range published[0].Trace {
			s = append(s, fmt.Sprintf("%+v", st))
		}
		return s
	}(), "\n")
	if !strings.Contains(trace, "203.0.113.1") {
		t.Errorf("the trace shows no SNAT to 203.0.113.1:\n%s", trace)
	}
}
