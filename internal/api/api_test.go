package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
)

// srv is one API server over an embedded store, shared by the tests; each
// test creates its own objects. testStore is that store, for state that
// only agents write.
var (
	srv       *httptest.Server
	testStore *nsdb.Store
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "api-test")
	if err != nil {
		panic(err)
	}
	// Tests skip fsync for speed; MIDONET_BENCH_FSYNC=1 measures the
	// benchmarks against a durable store, as `midonet cluster` runs it.
	fast := os.Getenv("MIDONET_BENCH_FSYNC") == ""
	member, err := embedded.Start(embedded.Config{DataDir: dir, ClientURL: "http://127.0.0.1:0", Fast: fast})
	if err != nil {
		panic(err)
	}
	store, err := nsdb.Open(context.Background(), nsdb.Config{Endpoints: []string{member.ClientURL}})
	if err != nil {
		panic(err)
	}
	testStore = store
	srv = httptest.NewServer(api.New(api.Config{Store: store}))
	code := m.Run()
	srv.Close()
	store.Close()
	member.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// response is an HTTP answer with its decoded JSON body.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) obj(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

func (r response) list(t *testing.T) []map[string]any {
	t.Helper()
	var l []map[string]any
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("body is not a JSON array: %v: %s", err, r.body)
	}
	return l
}

// do sends a request; body may be a string or a value to encode.
func do(t *testing.T, method, path string, body any, headers ...string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		enc, _ := json.Marshal(b)
		rd = bytes.NewReader(enc)
	}
	url := path
	if !strings.HasPrefix(path, "http") {
		url = srv.URL + "/midonet-api" + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func expect(t *testing.T, r response, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// create POSTs and returns the created object (following Location as the
// python client does).
func create(t *testing.T, path string, body any) map[string]any {
	t.Helper()
	r := expect(t, do(t, "POST", path, body), http.StatusCreated)
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, "http://") {
		t.Fatalf("Location %q is not absolute", loc)
	}
	return expect(t, do(t, "GET", loc, nil), http.StatusOK).obj(t)
}

func id(m map[string]any) string { return m["id"].(string) }

// expectViolation checks a 400 with a violation on property.
func expectViolation(t *testing.T, r response, property string) {
	t.Helper()
	expect(t, r, http.StatusBadRequest)
	m := r.obj(t)
	if m["code"] != float64(400) {
		t.Fatalf("error entity code %v, want 400", m["code"])
	}
	vs, _ := m["violations"].([]any)
	for _, v := range vs {
		if v.(map[string]any)["property"] == property {
			return
		}
	}
	t.Fatalf("no violation on %q in %s", property, r.body)
}

func TestApplicationRoot(t *testing.T) {
	for _, path := range []string{srv.URL + "/midonet-api", srv.URL + "/midonet-api/"} {
		m := expect(t, do(t, "GET", path, nil), 200).obj(t)
		if m["version"] != "v5.0" {
			t.Errorf("version %v", m["version"])
		}
		if m["uri"] != srv.URL+"/midonet-api/" {
			t.Errorf("uri %v", m["uri"])
		}
		for _, k := range []string{"bridges", "chains", "healthMonitors", "hosts", "ipAddrGroups", "loadBalancers",
			"mirrors", "poolMembers", "pools", "portGroups", "ports", "qosPolicies", "routers", "systemState",
			"traceRequests", "tunnelZones", "vips"} {
			v, _ := m[k].(string)
			if !strings.HasPrefix(v, srv.URL+"/midonet-api/") {
				t.Errorf("%s = %q, want an absolute collection URI", k, v)
			}
		}
		for _, k := range []string{"bridgeTemplate", "routeTemplate", "ruleTemplate", "portTemplate", "bgpPeerTemplate"} {
			if v, _ := m[k].(string); !strings.HasSuffix(v, "/{id}") {
				t.Errorf("%s = %q, want a template ending in /{id}", k, v)
			}
		}
		if m["traceRequests"] != srv.URL+"/midonet-api/traces" || m["systemState"] != srv.URL+"/midonet-api/system_state" {
			t.Errorf("traceRequests/systemState %v %v", m["traceRequests"], m["systemState"])
		}
	}
}

func TestLoginMockAuth(t *testing.T) {
	r := do(t, "POST", "/login", nil, "Authorization", "Basic YWRtaW46YWRtaW4=")
	expect(t, r, 200)
	if c := r.header.Get("Set-Cookie"); !strings.HasPrefix(c, "sessionId=00000000") {
		t.Errorf("Set-Cookie %q", c)
	}
	if r.obj(t)["key"] != "00000000" {
		t.Errorf("token %s", r.body)
	}
	r = do(t, "POST", "/login", nil)
	expect(t, r, 401)
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
}

func TestSystemState(t *testing.T) {
	m := expect(t, do(t, "GET", "/system_state", nil), 200).obj(t)
	if m["state"] != "ACTIVE" || m["availability"] != "READWRITE" {
		t.Errorf("system state %v", m)
	}
}

// goldenCase is one row of the per-resource cycle of §8.3: create, get
// with the exact key set and defaults, list, PUT with one field changed,
// delete, get 404.
type goldenCase struct {
	name       string
	collection string // where to POST and list
	body       map[string]any
	keys       []string       // the exact key set of the object
	defaults   map[string]any // values a GET must show after create
	put        map[string]any // a PUT body (nil: no PUT)
	putCheck   map[string]any
	deleteGone bool
}

func TestGoldenCycle(t *testing.T) {
	chain := create(t, "/chains", map[string]any{"name": "golden-filter"})
	cases := []goldenCase{{
		name: "bridge", collection: "/bridges",
		body: map[string]any{"name": "b", "tenantId": "t"},
		keys: []string{"id", "tenantId", "name", "adminStateUp", "inboundFilterId", "outboundFilterId",
			"inboundMirrorIds", "outboundMirrorIds", "qosPolicyId", "vxLanPortIds", "uri", "inboundFilter",
			"outboundFilter", "ports", "peerPorts", "vxLanPorts", "macTable", "arpTable", "dhcpSubnets",
			"dhcpSubnet6s", "vlanMacTableTemplate", "macPortTemplate", "vlanMacPortTemplate"},
		defaults: map[string]any{"adminStateUp": true, "inboundFilterId": nil, "inboundMirrorIds": []any{}},
		put:      map[string]any{"name": "b2", "inboundFilterId": id(chain)},
		putCheck: map[string]any{"name": "b2", "tenantId": nil, "inboundFilterId": id(chain), "adminStateUp": true},
	}, {
		name: "router", collection: "/routers",
		body: map[string]any{"name": "r", "tenantId": "t"},
		keys: []string{"id", "tenantId", "name", "adminStateUp", "inboundFilterId", "outboundFilterId",
			"localRedirectChainId", "forwardChainId", "loadBalancerId", "asNumber", "inboundMirrorIds",
			"outboundMirrorIds", "uri", "inboundFilter", "outboundFilter", "localRedirectChain", "forwardChain",
			"loadBalancer", "ports", "peerPorts", "routes", "bgpNetworks", "bgpPeers"},
		defaults: map[string]any{"adminStateUp": true, "asNumber": float64(0)},
		put:      map[string]any{"name": "r2", "adminStateUp": false},
		putCheck: map[string]any{"name": "r2", "adminStateUp": false, "tenantId": nil},
	}, {
		name: "chain", collection: "/chains",
		body:     map[string]any{"name": "c", "tenantId": "t"},
		keys:     []string{"id", "tenantId", "name", "uri", "rules"},
		defaults: map[string]any{"name": "c"},
	}, {
		name: "port group", collection: "/port_groups",
		body:     map[string]any{"name": "pg", "tenantId": "t"},
		keys:     []string{"id", "tenantId", "name", "stateful", "uri", "ports"},
		defaults: map[string]any{"stateful": false},
		put:      map[string]any{"name": "pg2", "stateful": true},
		putCheck: map[string]any{"name": "pg2", "stateful": true},
	}, {
		name: "ip addr group", collection: "/ip_addr_groups",
		body:     map[string]any{"name": "ipg"},
		keys:     []string{"id", "name", "inboundChainId", "outboundChainId", "ipAddrPorts", "ruleIds", "uri", "addrs"},
		defaults: map[string]any{"ipAddrPorts": []any{}, "ruleIds": []any{}},
	}, {
		name: "tunnel zone", collection: "/tunnel_zones",
		body:     map[string]any{"name": "golden-tz", "type": "vxlan"},
		keys:     []string{"id", "name", "type", "uri", "hosts"},
		defaults: map[string]any{"type": "vxlan"},
		put:      map[string]any{"name": "golden-tz2", "type": "vxlan"},
		putCheck: map[string]any{"name": "golden-tz2", "type": "vxlan"},
	}, {
		name: "load balancer", collection: "/load_balancers",
		body:     map[string]any{},
		keys:     []string{"id", "routerId", "adminStateUp", "uri", "router", "pools", "vips"},
		defaults: map[string]any{"adminStateUp": true, "routerId": nil},
		put:      map[string]any{"adminStateUp": false},
		putCheck: map[string]any{"adminStateUp": false},
	}, {
		name: "health monitor", collection: "/health_monitors",
		body:     map[string]any{"type": "TCP", "delay": 5},
		keys:     []string{"id", "type", "delay", "timeout", "maxRetries", "adminStateUp", "urlPath", "expectedCodes", "uri", "pools"},
		defaults: map[string]any{"delay": float64(5), "adminStateUp": true},
		put:      map[string]any{"type": "TCP", "timeout": 3},
		putCheck: map[string]any{"timeout": float64(3), "delay": float64(0)},
	}, {
		name: "qos policy", collection: "/qos_policies",
		body:     map[string]any{"name": "q", "tenant_id": "t"},
		keys:     []string{"id", "name", "description", "shared", "tenant_id", "rules", "uri", "bwLimitRules", "dscpRules"},
		defaults: map[string]any{"rules": nil, "tenant_id": "t"},
		put:      map[string]any{"name": "q2"},
		putCheck: map[string]any{"name": "q2", "tenant_id": nil},
	}, {
		name: "trace request", collection: "/traces",
		body:     map[string]any{"name": "tr", "deviceType": "ROUTER", "deviceId": nil, "condition": map[string]any{}},
		keys:     []string{"id", "name", "deviceType", "deviceId", "condition", "limit", "enabled", "creationTimestampMs", "uri"},
		defaults: map[string]any{"enabled": false},
	}}
	router := create(t, "/routers", map[string]any{"name": "trace-target"})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.collection == "/traces" {
				tc.body["deviceId"] = id(router)
			}
			obj := create(t, tc.collection, tc.body)
			checkKeys(t, obj, tc.keys)
			for k, v := range tc.defaults {
				if fmt.Sprint(obj[k]) != fmt.Sprint(v) {
					t.Errorf("%s = %v, want %v", k, obj[k], v)
				}
			}
			found := false
			for _, o := range expect(t, do(t, "GET", tc.collection, nil), 200).list(t) {
				found = found || o["id"] == obj["id"]
			}
			if !found {
				t.Errorf("list of %s lacks %s", tc.collection, id(obj))
			}
			if tc.put != nil {
				expect(t, do(t, "PUT", obj["uri"].(string), tc.put), 204)
				got := expect(t, do(t, "GET", obj["uri"].(string), nil), 200).obj(t)
				for k, v := range tc.putCheck {
					if fmt.Sprint(got[k]) != fmt.Sprint(v) {
						t.Errorf("after PUT %s = %v, want %v", k, got[k], v)
					}
				}
				if got["id"] != obj["id"] {
					t.Errorf("PUT changed the id")
				}
			}
			expect(t, do(t, "DELETE", obj["uri"].(string), nil), 204)
			r := expect(t, do(t, "GET", obj["uri"].(string), nil), 404)
			if r.obj(t)["code"] != float64(404) {
				t.Errorf("404 body %s", r.body)
			}
		})
	}
}

func checkKeys(t *testing.T, obj map[string]any, keys []string) {
	t.Helper()
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
		if _, ok := obj[k]; !ok {
			t.Errorf("key %q missing", k)
		}
	}
	for k := range obj {
		if !want[k] {
			t.Errorf("unexpected key %q", k)
		}
	}
}
