package console

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/nsdb"
)

// The event stream (GET /midonet-api/events) is text/event-stream:
//
//	event: ready    data {"revision":R}: the stream follows the store from R on; load what
//	                you show (REST) after this event and miss nothing
//	event: change   data {"type":"put"|"delete","kind":"bridges","id":…,"uri":…,"revision":…}
//	event: state    data {"kind":"hosts"|"ports"|"bridges"|"routers","id":…,"key":"alive"|…,"revision":…}
//	event: metrics  data a host's new metrics sample (hostMetrics)
//	event: resync   the store's history was compacted past the stream: reload, reconnect
//
// Each change and state event carries the store revision as its SSE id;
// reconnecting with Last-Event-ID (or ?since=R) resumes after it. Events
// name what changed, never its content: the page reads the object through
// the REST API, which decides what its caller may see.

// keepAlive is how often an idle stream sends a comment, so that proxies
// and the browser keep the connection.
const keepAlive = 15 * time.Second

// writeTimeout bounds the write of one event to a client.
const writeTimeout = 10 * time.Second

// streams counts the open event streams and fans the metrics samples out
// to them.
type streams struct {
	max   int
	gauge prometheus.Gauge

	mu   sync.Mutex
	subs map[chan []byte]struct{} // guarded by mu
	wg   sync.WaitGroup
}

func newStreams(max int) *streams {
	return &streams{max: max, subs: map[chan []byte]struct{}{},
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "midonet", Subsystem: "console",
			Name: "event_streams", Help: "Event streams open (GET /midonet-api/events)."})}
}

// join registers a stream; ok is false when too many are open.
func (s *streams) join() (ch chan []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.subs) >= s.max {
		return nil, false
	}
	ch = make(chan []byte, 16)
	s.subs[ch] = struct{}{}
	s.wg.Add(1)
	s.gauge.Inc()
	return ch, true
}

func (s *streams) leave(ch chan []byte) {
	s.mu.Lock()
	delete(s.subs, ch)
	s.mu.Unlock()
	s.gauge.Dec()
	s.wg.Done()
}

// open reports how many streams are open.
func (s *streams) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// publish sends an encoded event to every stream; a stream too slow to
// take it misses it (metrics samples come again).
func (s *streams) publish(ev []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.subs {
		select {
		case ch <- ev:
		default:
		}
	}
}

func (s *streams) wait() { s.wg.Wait() }

// sse encodes one server-sent event.
func sse(event, id string, data any) []byte {
	b, _ := json.Marshal(data)
	var out strings.Builder
	out.WriteString("event: " + event + "\n")
	if id != "" {
		out.WriteString("id: " + id + "\n")
	}
	out.WriteString("data: ")
	out.Write(b)
	out.WriteString("\n\n")
	return []byte(out.String())
}

// changeEvent is the data of a change event.
type changeEvent struct {
	Type     string `json:"type"`
	Kind     string `json:"kind"`
	ID       string `json:"id"`
	URI      string `json:"uri,omitempty"`
	Revision int64  `json:"revision"`
}

// stateEvent is the data of a state event.
type stateEvent struct {
	Kind     string `json:"kind"`
	ID       string `json:"id"`
	Key      string `json:"key"`
	Revision int64  `json:"revision"`
}

// stateOf names the object a state key belongs to:
// /state/<kind>/<id>/<key>[/...].
func stateOf(key string) (kind, id, what string, ok bool) {
	rest, ok := strings.CutPrefix(key, "/state/")
	if !ok {
		return "", "", "", false
	}
	parts := strings.SplitN(rest, "/", 4)
	if len(parts) < 3 {
		return "", "", "", false
	}
	what = parts[2]
	if parts[0] == "bridges" && what == "vlans" {
		what = "mac"
	}
	return parts[0], parts[1], what, true
}

func (c *Console) serveEvents(w http.ResponseWriter, r *http.Request) error {
	var since int64
	last := r.Header.Get("Last-Event-ID")
	if q := r.URL.Query().Get("since"); q != "" {
		last = q
	}
	if last != "" {
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return api.Error(http.StatusBadRequest, "since (or Last-Event-ID) %q: want a store revision, a number from an event's id", last)
		}
		since = n
	}
	rc := http.NewResponseController(w)
	ch, ok := c.streams.join()
	if !ok {
		w.Header().Set("Retry-After", "10")
		return api.Error(http.StatusServiceUnavailable, "too many event streams open (%d); close some consoles or try again later", c.streams.max)
	}
	defer c.streams.leave(ch)
	if since == 0 {
		rev, err := c.store.Revision(r.Context())
		if err != nil {
			return err
		}
		since = rev
	}
	ctx := r.Context()
	events := c.store.Watch(ctx, "/", since)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	base := api.BaseURI(r)
	write := func(b []byte) bool {
		// A client that stops reading must not hold the stream (and the
		// cluster's shutdown) forever.
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write(sse("ready", strconv.FormatInt(since, 10), map[string]int64{"revision": since})) {
		return nil
	}
	c.metrics.watched()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		var out []byte
		select {
		case <-ctx.Done():
			return nil
		case <-c.ctx.Done():
			return nil
		case <-tick.C:
			c.metrics.watched()
			out = []byte(": keep-alive\n\n")
		case b := <-ch:
			out = b
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			out = c.encodeEvent(base, ev)
			if ev.Type == nsdb.EventResync {
				write(out)
				return nil
			}
		}
		if out != nil && !write(out) {
			return nil
		}
	}
}

// encodeEvent turns a store event into a stream event, or nil for keys the
// page has no use for.
func (c *Console) encodeEvent(base string, ev nsdb.Event) []byte {
	id := strconv.FormatInt(ev.ModRevision, 10)
	switch {
	case ev.Type == nsdb.EventResync:
		return sse("resync", "", map[string]string{"reason": "the store's history was compacted; reload and reconnect"})
	case ev.Kind != "":
		typ := "put"
		if ev.Type == nsdb.EventDelete {
			typ = "delete"
		}
		e := changeEvent{Type: typ, Kind: ev.Kind, ID: ev.ID, Revision: ev.ModRevision}
		if restKinds[ev.Kind] {
			e.URI = base + "/" + ev.Kind + "/" + ev.ID
		}
		return sse("change", id, e)
	}
	if kind, oid, what, ok := stateOf(ev.Key); ok {
		return sse("state", id, stateEvent{Kind: kind, ID: oid, Key: what, Revision: ev.ModRevision})
	}
	return nil
}

// restKinds are the store kinds served at /midonet-api/<kind>/<id>.
var restKinds = map[string]bool{
	"bridges": true, "routers": true, "ports": true, "routes": true, "chains": true, "rules": true,
	"port_groups": true, "ip_addr_groups": true, "hosts": true, "tunnel_zones": true, "load_balancers": true,
	"pools": true, "pool_members": true, "vips": true, "health_monitors": true, "mirrors": true,
	"qos_policies": true, "bgp_peers": true, "bgp_networks": true, "traces": true,
}
