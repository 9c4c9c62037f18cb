package api_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
	"github.com/midonet/midonet/internal/poll"
)

// The API over a store that fails: stopped, or so slow that it does not
// answer in time. Every request answers within the request timeout, with
// 503, the error entity and Retry-After (never another 5xx), and a write
// is applied whole or not at all.

const (
	failRequestTimeout = 700 * time.Millisecond
	failStoreTimeout   = 300 * time.Millisecond
	// failMargin is what a loaded machine may add to an answer's time.
	failMargin = 3 * time.Second
)

// startOwnMember starts an embedded store for one test, which may kill it.
func startOwnMember(t *testing.T) (*embedded.Server, embedded.Config) {
	t.Helper()
	cfg := embedded.Config{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:0", Fast: true}
	m, err := embedded.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The restart keeps the ports, so that the API's client finds it.
	cfg.ClientURL, cfg.PeerURL = m.ClientURL, m.PeerURL
	return m, cfg
}

// routeAnswer is what one route answered while the store failed.
type routeAnswer struct {
	route   string
	r       response
	elapsed time.Duration
}

// callEveryRoute calls every route of the rig's server, 32 at a time,
// writes with their valid body.
func callEveryRoute(rg *rig) []routeAnswer {
	routes := rg.srv.Routes()
	out := make([]routeAnswer, len(routes))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, route := range routes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			method, pattern, _ := strings.Cut(route, " ")
			req := httptest.NewRequest(method, "http://rig"+api.BasePath+rg.fill(pattern, nil), strings.NewReader(rg.validBody(route)))
			req.Header.Set("Content-Type", "application/json")
			start := time.Now()
			r := rg.serve(req)
			out[i] = routeAnswer{route: route, r: r, elapsed: time.Since(start)}
		})
	}
	wg.Wait()
	return out
}

// checkUnavailable checks the answers given while the store failed and
// returns how many were 503.
func checkUnavailable(t *testing.T, answers []routeAnswer) int {
	t.Helper()
	n := 0
	for _, a := range answers {
		if a.elapsed > failRequestTimeout+failMargin {
			t.Errorf("%s answered after %v, over the request timeout %v", a.route, a.elapsed, failRequestTimeout)
		}
		switch {
		case a.r.status == http.StatusServiceUnavailable:
			n++
			if bad := checkErrorEntity(a.r); bad != "" || len(a.r.body) == 0 {
				t.Errorf("%s: 503 entity: %q: %s", a.route, bad, a.r.body)
			}
			if a.r.header.Get("Retry-After") != "2" {
				t.Errorf("%s: 503 with Retry-After %q, want 2", a.route, a.r.header.Get("Retry-After"))
			}
		case a.r.status >= 500:
			t.Errorf("%s: %d %s", a.route, a.r.status, a.r.body)
		default:
			t.Logf("%s answers %d without the store", a.route, a.r.status)
		}
	}
	// Every route that reads or writes the store must have said so; the
	// others are the root, login, system state, tenants and the 405s.
	for _, must := range []string{"GET /bridges", "POST /bridges", "PUT /bridges/{id}", "DELETE /bridges/{id}",
		"POST /routers/{id}/ports", "GET /bridges/{id}/mac_table", "POST /bridges/{id}/mac_table",
		"DELETE /bridges/{id}/mac_table/{entry}", "GET /hosts/{id}", "POST /hosts/{id}/ports", "PUT /hosts/{id}",
		"POST /qos_policies", "DELETE /hosts/{id}", "GET /routers/{id}/arp_table"} {
		for _, a := range answers {
			if a.route == must && a.r.status != http.StatusServiceUnavailable {
				t.Errorf("%s answered %d without a store: %s", must, a.r.status, a.r.body)
			}
		}
	}
	return n
}

// waitForStore polls the API until it reads the store again.
func waitForStore(t *testing.T, rg *rig) {
	t.Helper()
	if !poll.Until(func() bool { return rg.call("GET", "/bridges", nil).status == http.StatusOK }, 30*time.Second) {
		t.Fatal("the API did not read the store again within 30s after it came back")
	}
}

// TestStoreDownAnswers503 kills the store under the API, calls every
// route, then starts the store again: nothing was written, and the API
// serves again by itself.
func TestStoreDownAnswers503(t *testing.T) {
	t.Parallel() // its own store, or its own prefix of the shared one
	member, cfg := startOwnMember(t)
	rg := newRigWith(t, rigConfig{endpoints: []string{member.ClientURL}, storeTimeout: failStoreTimeout,
		api: api.Config{RequestTimeout: failRequestTimeout}})
	member.Kill()
	answers := callEveryRoute(rg)
	n := checkUnavailable(t, answers)
	member, err := embedded.Start(cfg)
	if err != nil {
		t.Fatalf("restarting the store: %v", err)
	}
	t.Cleanup(member.Close)
	waitForStore(t, rg)
	if diff := rg.changes(); diff != "" {
		t.Fatalf("requests refused with the store down changed it:\n%s", diff)
	}
	t.Logf("%d routes, %d answered 503", len(answers), n)
}

// stallProxy forwards connections to a store; while stalled it holds what
// either side sends, as a store too slow to answer would.
type stallProxy struct {
	l      net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	stalled bool              // guarded by mu
	conns   map[net.Conn]bool // guarded by mu
	closed  bool              // guarded by mu
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{l: l, target: strings.TrimPrefix(target, "http://"), conns: map[net.Conn]bool{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Go(p.serve)
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) url() string { return "http://" + p.l.Addr().String() }

func (p *stallProxy) serve() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(out, in) })
		p.wg.Go(func() { p.pipe(in, out) })
	}
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.mu.Lock()
		for p.stalled && !p.closed {
			p.cond.Wait()
		}
		p.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) stall(on bool) {
	p.mu.Lock()
	p.stalled = on
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *stallProxy) close() {
	p.l.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

// TestSlowStoreAnswers503AndWritesWhole stalls the store under the API:
// every route answers 503 in time. Writes of several objects sent during
// the stall may still reach the store once it answers again (their
// outcome was unknown); each is then there whole or not at all.
func TestSlowStoreAnswers503AndWritesWhole(t *testing.T) {
	t.Parallel() // its own store, or its own prefix of the shared one
	member, _ := startOwnMember(t)
	t.Cleanup(member.Close)
	proxy := newStallProxy(t, member.ClientURL)
	rg := newRigWith(t, rigConfig{endpoints: []string{proxy.url()}, storeTimeout: failStoreTimeout,
		api: api.Config{RequestTimeout: failRequestTimeout}})
	proxy.stall(true)
	n := checkUnavailable(t, callEveryRoute(rg))
	proxy.stall(false)
	waitForStore(t, rg)
	rg.restore()

	// Three writes of several objects each, during a stall.
	bridge, router := rg.ids["bridges"], rg.ids["routers"]
	proxy.stall(true)
	writes := []struct {
		method, path, body string
	}{
		{"POST", "/routers/" + router + "/ports", `{"id": "5b4cb2f1-0000-4000-8000-0000000000b1", "type": "Router", "portAddress": "10.9.0.1", "networkLength": 24}`},
		{"DELETE", "/bridges/" + bridge, ""},
		{"POST", "/qos_policies", `{"id": "5b4cb2f1-0000-4000-8000-0000000000b2", "rules": [{"id": "5b4cb2f1-0000-4000-8000-0000000000b3", "type": "dscp_marking", "dscp_mark": 8}]}`},
	}
	for _, w := range writes {
		if r := rg.call(w.method, w.path, w.body); r.status != http.StatusServiceUnavailable {
			t.Errorf("%s %s during a stall: %d %s", w.method, w.path, r.status, r.body)
		}
	}
	proxy.stall(false)
	// A commit held by the stall reaches the store before the reads
	// that follow it on the same connection.
	waitForStore(t, rg)
	keys := map[string]bool{}
	for _, kv := range rg.dump() {
		keys[strings.TrimPrefix(kv.key, rg.store.Prefix())] = true
	}
	whole := func(what string, parts ...string) {
		t.Helper()
		n := 0
		for _, p := range parts {
			if keys[p] {
				n++
			}
		}
		if n != 0 && n != len(parts) {
			t.Errorf("%s is half applied: %d of %d keys %v", what, n, len(parts), parts)
		}
		t.Logf("%s: %s", what, map[bool]string{true: "applied after the stall", false: "not applied"}[n == len(parts)])
	}
	port := "5b4cb2f1-0000-4000-8000-0000000000b1"
	portParts := []string{"/topology/ports/" + port}
	var p struct {
		TunnelKey int64 `json:"tunnelKey"`
	}
	if keys["/topology/ports/"+port] {
		json.Unmarshal([]byte(rg.call("GET", "/ports/"+port, nil).body), &p)
		portParts = append(portParts, "/topology/tunnel_keys/"+strconv.FormatInt(p.TunnelKey, 10))
		for _, rt := range rg.call("GET", "/routers/"+router+"/routes", nil).list(t) {
			if rt["nextHopPort"] == port && rt["type"] == "Local" {
				portParts = append(portParts, "/topology/routes/"+rt["id"].(string))
			}
		}
		if len(portParts) != 3 {
			t.Errorf("router port stored without its tunnel key claim or Local route: %v", portParts)
		}
	}
	whole("the router port with its tunnel key and Local route", portParts...)
	macKey := "/state/bridges/" + bridge + "/vlans/0/mac/" + rigMAC
	arpKey := "/state/bridges/" + bridge + "/arp/" + rigARPIP
	whole("the bridge delete", absentAll(keys, "/topology/bridges/"+bridge, "/topology/ports/"+rg.ids["ports"], macKey, arpKey)...)
	whole("the QoS policy with its rule", "/topology/qos_policies/5b4cb2f1-0000-4000-8000-0000000000b2",
		"/topology/qos_dscp_rules/5b4cb2f1-0000-4000-8000-0000000000b3")
	t.Logf("%d routes answered 503 during the stall", n)
}

// absentAll turns keys a delete removes into markers of the delete having
// happened: "gone:<key>" is in keys when key is not.
func absentAll(keys map[string]bool, deleted ...string) []string {
	out := make([]string, len(deleted))
	for i, k := range deleted {
		out[i] = "gone:" + k
		keys[out[i]] = !keys[k]
	}
	return out
}

// TestSystemStateFollowsTheStore: GET /system_state says READWRITE while
// the store takes writes, READONLY while an alarm (NOSPACE) makes it
// refuse them, and UNAVAILABLE while it is down, with why in information.
func TestSystemStateFollowsTheStore(t *testing.T) {
	t.Parallel() // its own store
	member, _ := startOwnMember(t)
	store, err := nsdb.Open(context.Background(), nsdb.Config{Endpoints: []string{member.ClientURL}, RequestTimeout: failStoreTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := api.New(api.Config{Store: store, RequestTimeout: failRequestTimeout})
	call := func(method, path, body string) response {
		req := httptest.NewRequest(method, "http://sys"+api.BasePath+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return response{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
	}
	state := func() (availability string, info any) {
		t.Helper()
		m := expect(t, call("GET", "/system_state", ""), http.StatusOK).obj(t)
		if m["state"] != "ACTIVE" || m["version"] != "5.0.0" || len(m) != 4 {
			t.Errorf("system state %v: want MidoNet's four keys", m)
		}
		return m["availability"].(string), m["information"]
	}
	if av, info := state(); av != "READWRITE" || info != nil {
		t.Fatalf("store up: %s %v, want READWRITE", av, info)
	}

	// The space quota "full": the store reads but refuses writes.
	cli := store.Client()
	ctx := context.Background()
	st, err := cli.Status(ctx, member.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	alarm := &etcdserverpb.AlarmRequest{Action: etcdserverpb.AlarmRequest_ACTIVATE, MemberID: st.Header.MemberId,
		Alarm: etcdserverpb.AlarmType_NOSPACE}
	if _, err := etcdserverpb.NewMaintenanceClient(cli.ActiveConnection()).Alarm(ctx, alarm); err != nil {
		t.Fatal(err)
	}
	av, info := state()
	if s, _ := info.(string); av != "READONLY" || !strings.Contains(s, "NOSPACE") {
		t.Fatalf("NOSPACE alarm: %s %v, want READONLY naming the alarm", av, info)
	}
	expect(t, call("POST", "/bridges", `{"name": "b"}`), http.StatusServiceUnavailable)
	expect(t, call("GET", "/bridges", ""), http.StatusOK)
	if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: st.Header.MemberId, Alarm: etcdserverpb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	if av, _ := state(); av != "READWRITE" {
		t.Fatalf("alarm disarmed: %s, want READWRITE", av)
	}

	member.Kill()
	start := time.Now()
	av, info = state()
	if s, _ := info.(string); av != "UNAVAILABLE" || s == "" {
		t.Fatalf("store down: %s %v, want UNAVAILABLE saying why", av, info)
	}
	if d := time.Since(start); d > failRequestTimeout+failMargin {
		t.Errorf("system_state took %v with the store down", d)
	}
}
