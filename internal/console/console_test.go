package console_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/cluster"
	"github.com/midonet/midonet/internal/trace"
)

func TestAssetsServed(t *testing.T) {
	t.Parallel()
	base := strings.TrimSuffix(theRig.api, "/midonet-api")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	cases := []struct {
		name, method, path string
		status             int
		contentType        string // prefix
		body               string // a part of it
	}{
		{"root redirects to the console", "GET", "/", http.StatusFound, "", ""},
		{"the page", "GET", "/ui/", http.StatusOK, "text/html", "MidoNet"},
		{"its script", "GET", "/ui/app.js", http.StatusOK, "text/javascript", "midonet-api"},
		{"its style", "GET", "/ui/app.css", http.StatusOK, "text/css", ":root"},
		{"the graph library", "GET", "/ui/vendor/cytoscape.min.js", http.StatusOK, "text/javascript", "cytoscape"},
		{"the layout", "GET", "/ui/vendor/cytoscape-dagre.min.js", http.StatusOK, "text/javascript", "dagre"},
		{"the API stays", "GET", "/midonet-api", http.StatusOK, "application/vnd.org.midonet.Application", "bridges"},
		{"the cluster's own metrics", "GET", "/metrics", http.StatusOK, "text/plain", "midonet_console_event_streams"},
		{"unknown page", "GET", "/nope", http.StatusNotFound, "", ""},
		{"unknown asset", "GET", "/ui/nope.js", http.StatusNotFound, "", ""},
		{"the console is read-only", "POST", "/ui/", http.StatusMethodNotAllowed, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, base+tc.path, nil)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s: %s, want %d", tc.method, tc.path, resp.Status, tc.status)
			}
			if tc.status == http.StatusFound && resp.Header.Get("Location") != "/ui/" {
				t.Errorf("redirect to %q, want /ui/", resp.Header.Get("Location"))
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
				t.Errorf("Content-Type %q, want %s…", ct, tc.contentType)
			}
			if !strings.Contains(string(body), tc.body) {
				t.Errorf("body does not contain %q", tc.body)
			}
		})
	}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	event, id, data string
}

// openStream opens the event stream; events arrive on the channel until
// the test ends.
func openStream(t *testing.T, query string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, theRig.api+"/events"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		t.Fatalf("GET /events%s: %s %s", query, resp.Status, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 256)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.event != "" {
					select {
					case out <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.event = line[len("event: "):]
			case strings.HasPrefix(line, "id: "):
				ev.id = line[len("id: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[len("data: "):]
			}
		}
	}()
	return out
}

// waitEvent returns the first event for which match holds.
func waitEvent(t *testing.T, ch <-chan sseEvent, timeout time.Duration, what string, match func(sseEvent) bool) sseEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("%s: the stream ended", what)
			}
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("%s: no such event within %v", what, timeout)
		}
	}
}

type change struct {
	Type, Kind, ID, URI string
	Revision            int64
}

func isChange(typ, kind, id string) func(sseEvent) bool {
	return func(ev sseEvent) bool {
		var c change
		return ev.event == "change" && json.Unmarshal([]byte(ev.data), &c) == nil && c.Type == typ && c.Kind == kind && c.ID == id
	}
}

func TestEventStream(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	events := openStream(t, "")
	ready := waitEvent(t, events, 5*time.Second, "ready", func(ev sseEvent) bool { return ev.event == "ready" })
	if ready.id == "" {
		t.Fatal("the ready event carries no revision id to resume from")
	}

	start := time.Now()
	id, err := theRig.post(ctx, "/bridges", map[string]any{"name": "stream-br", "tenantId": "acme"})
	if err != nil {
		t.Fatal(err)
	}
	ev := waitEvent(t, events, time.Second, "the new bridge's change event", isChange("put", "bridges", id))
	t.Logf("bridge created → change event in %v", time.Since(start).Round(time.Millisecond))
	var c change
	json.Unmarshal([]byte(ev.data), &c)
	if c.URI != theRig.api+"/bridges/"+id || ev.id == "" {
		t.Errorf("change event %+v (id %q): want the bridge's REST URI and the revision as id", c, ev.id)
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, theRig.api+"/bridges/"+id, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode >= 300 {
		t.Fatalf("delete the bridge: %v %v", err, resp)
	}
	waitEvent(t, events, time.Second, "the deleted bridge's change event", isChange("delete", "bridges", id))

	// A stream resumed from the ready event's revision sees the create
	// again: nothing is lost across a reconnection.
	resumed := openStream(t, "?since="+ready.id)
	waitEvent(t, resumed, 5*time.Second, "the create, resumed", isChange("put", "bridges", id))

	resp, err := http.Get(theRig.api + "/events?since=-1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("GET /events?since=-1: %s, want 400", resp.Status)
	}
}

func TestStateEvents(t *testing.T) {
	t.Parallel()
	events := openStream(t, "?since=1")
	// Replayed from revision 1: the agent's liveness and its ports'
	// activation.
	waitEvent(t, events, 5*time.Second, "host alive", func(ev sseEvent) bool {
		return ev.event == "state" && strings.Contains(ev.data, `"kind":"hosts","id":"`+theRig.ids["host"]+`","key":"alive"`)
	})
	waitEvent(t, events, 5*time.Second, "port active", func(ev sseEvent) bool {
		return ev.event == "state" && strings.Contains(ev.data, `"kind":"ports","id":"`+theRig.ids["vm-a"]+`","key":"active"`)
	})
}

// simulate posts a trace request.
func simulate(t *testing.T, body any) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(theRig.api+"/simulate", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func TestSimulate(t *testing.T) {
	t.Parallel()
	ids := theRig.ids
	t.Run("blocked packet names its rule", func(t *testing.T) {
		resp, body := simulate(t, map[string]any{"portId": ids["vm-a"], "srcIp": "10.71.1.5", "dstIp": "10.71.2.5",
			"proto": "tcp", "dstPort": 22})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", resp.Status, body)
		}
		var rep trace.Report
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Result != "drop" {
			t.Fatalf("result %s (%s), want drop\n%s", rep.Result, rep.Reason, body)
		}
		var matched *trace.Step
		for i := range rep.Steps {
			if s := &rep.Steps[i]; s.DeviceType == "rule" && s.Event == "matched" {
				matched = s
			}
		}
		if matched == nil || matched.Device != ids["drop-ssh"] || matched.Name != "chain console-guard rule #1" {
			t.Errorf("matched rule %+v, want rule %s named chain console-guard rule #1", matched, ids["drop-ssh"])
		}
	})
	t.Run("forwarded packet leaves by vm-b", func(t *testing.T) {
		resp, body := simulate(t, map[string]any{"portId": ids["vm-a"], "srcIp": "10.71.1.5", "dstIp": "10.71.2.5",
			"proto": "udp", "dstPort": 53})
		var rep trace.Report
		json.Unmarshal(body, &rep)
		if resp.StatusCode != http.StatusOK || rep.Result != "forward" || len(rep.Egress) != 1 || rep.Egress[0].Port != ids["vm-b"] {
			t.Fatalf("%s: result %s egress %+v, want forward to vm-b\n%s", resp.Status, rep.Result, rep.Egress, body)
		}
		if len(rep.Egress[0].Set) == 0 {
			t.Errorf("egress %+v: routing rewrites nothing (MACs, TTL)", rep.Egress[0])
		}
	})
	t.Run("same report as a client reading the API over HTTP", func(t *testing.T) {
		req := &trace.Request{PortID: ids["vm-a"], SrcIP: "10.71.1.5", DstIP: "10.71.2.5", Proto: "tcp", DstPort: intp(22),
			SrcMAC: "02:00:0a:47:01:05"}
		over, err := trace.Run(t.Context(), httpReader{}, req)
		if err != nil {
			t.Fatal(err)
		}
		_, body := simulate(t, req)
		var in trace.Report
		json.Unmarshal(body, &in)
		if !reflect.DeepEqual(normalize(over), normalize(&in)) {
			t.Errorf("in-process trace differs from the HTTP one:\nin process %+v\nover HTTP  %+v", in, *over)
		}
	})
	cases := []struct {
		name     string
		body     any
		status   int
		property string
	}{
		{"source missing", map[string]any{"portId": ids["vm-a"], "dstIp": "10.71.2.5"}, http.StatusBadRequest, "srcIp"},
		{"tcp without a port", map[string]any{"portId": ids["vm-a"], "srcIp": "10.71.1.5", "dstIp": "10.71.2.5", "proto": "tcp"}, http.StatusBadRequest, "dstPort"},
		{"unknown field", map[string]any{"portId": ids["vm-a"], "srcIp": "10.71.1.5", "dstIp": "10.71.2.5", "colour": "red"}, http.StatusBadRequest, ""},
		{"no such port", map[string]any{"portId": "6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21", "srcIp": "10.71.1.5", "dstIp": "10.71.2.5"}, http.StatusNotFound, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := simulate(t, tc.body)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s: %s, want %d", resp.Status, body, tc.status)
			}
			var ent struct {
				Message    string `json:"message"`
				Violations []struct{ Property, Message string }
			}
			if err := json.Unmarshal(body, &ent); err != nil {
				t.Fatalf("error body %q is not MidoNet's error entity", body)
			}
			if tc.property != "" && (len(ent.Violations) != 1 || ent.Violations[0].Property != tc.property) {
				t.Errorf("violations %+v, want one on %s", ent.Violations, tc.property)
			}
		})
	}
}

func intp(v int) *int { return &v }

// normalize clears what may differ between two runs of one trace.
func normalize(r *trace.Report) *trace.Report {
	c := *r
	c.Egress = nil
	return &c
}

// httpReader reads the API over HTTP, as `midonet trace` does.
type httpReader struct{}

func (httpReader) Collection(ctx context.Context, key string) (string, error) {
	var root map[string]any
	if err := (httpReader{}).Get(ctx, theRig.api, "application/json", &root); err != nil {
		return "", err
	}
	u, _ := root[key].(string)
	if u == "" {
		return "", errors.New("no " + key)
	}
	return u, nil
}

func (httpReader) Get(ctx context.Context, url, accept string, out any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return trace.ErrNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// metricsOf reads a host's metrics through the API.
type hostMetrics struct {
	HostID               string  `json:"hostId"`
	Address              string  `json:"address"`
	Available            bool    `json:"available"`
	Error                string  `json:"error"`
	Flows                float64 `json:"flows"`
	Simulations          float64 `json:"simulations"`
	SimulationsPerSecond float64 `json:"simulationsPerSecond"`
	Ports                []struct {
		Interface string  `json:"interface"`
		RxPackets float64 `json:"rxPackets"`
	} `json:"ports"`
	History []struct {
		T                    int64   `json:"t"`
		SimulationsPerSecond float64 `json:"simulationsPerSecond"`
	} `json:"history"`
}

func metricsOf(t *testing.T, host string) hostMetrics {
	t.Helper()
	var m hostMetrics
	if err := theRig.get(t.Context(), "/hosts/"+host+"/metrics", &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHostMetrics(t *testing.T) {
	t.Parallel()
	host := theRig.ids["host"]
	events := openStream(t, "")
	theRig.send(t, 20)
	var m hostMetrics
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last metrics: %+v", m)
		}
	})
	eventually(t, 20*time.Second, "the agent's counters through the console", func() bool {
		m = metricsOf(t, host)
		rx := 0.0
		for _, p := range m.Ports {
			if p.Interface == "vm-a" {
				rx = p.RxPackets
			}
		}
		return m.Available && m.Simulations >= 1 && m.Flows > 0 && rx >= 20 && len(m.History) >= 2
	})
	if !strings.HasPrefix(m.Address, "127.0.0.1:") {
		t.Errorf("address %q: want the agent's :port read at its tunnel-zone address 127.0.0.1", m.Address)
	}
	waitEvent(t, events, 10*time.Second, "a metrics event", func(ev sseEvent) bool {
		return ev.event == "metrics" && strings.Contains(ev.data, `"hostId":"`+host+`"`)
	})

	resp, err := http.Get(theRig.api + "/hosts/6c0e7a1c-5b0e-4c44-9a4f-3f4a1f0b9d21/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("metrics of an unknown host: %s, want 404", resp.Status)
	}
}

// TestCloseEndsStreams: an open event stream does not hold the cluster's
// shutdown.
func TestCloseEndsStreams(t *testing.T) {
	t.Parallel()
	c, err := cluster.Start(t.Context(), cluster.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), NSDBListen: "127.0.0.1:0", FastStore: true})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(c.APIURL + "/events")
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ended := make(chan struct{})
	go func() { io.Copy(io.Discard, resp.Body); close(ended) }()
	start := time.Now()
	c.Close()
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Close took %v with a stream open, want it to end the stream at once", d)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Error("the stream is still open after Close")
	}
}
