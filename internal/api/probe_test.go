package api_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/api"
)

// probeLimit is the body limit of the probe's server: small, so that a
// body over it is cheap to send to every route.
const probeLimit = 64 << 10

// badBodies are the bodies of issue 20's probe and their kin: not an
// object, not JSON, not a JSON type, over the limit. Every create and
// update must refuse each with its status and store nothing.
var badBodies = []struct {
	name, contentType, body string
	status                  int
}{
	{"null", "application/json", "null", 400},
	{"array", "application/json", "[]", 400},
	{"array of an object", "application/json", `[{"name":"x"}]`, 400},
	{"string", "application/json", `"bridge"`, 400},
	{"number", "application/json", "42", 400},
	{"boolean", "application/json", "true", 400},
	{"empty", "application/json", "", 400},
	{"blank", "application/json", " \r\n\t", 400},
	{"truncated", "application/json", `{"name":`, 400},
	{"two values", "application/json", `{} {}`, 400},
	{"nested too deep", "application/json", strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000), 400},
	{"plain text", "text/plain", `{}`, 415},
	{"form", "application/x-www-form-urlencoded", "name=x", 415},
	{"vendor xml", "application/vnd.org.midonet.Bridge-v4+xml", `{}`, 415},
	{"unparsable content type", "application/json; =", `{}`, 415},
	{"over the limit", "application/json", `{"name":"` + strings.Repeat("x", probeLimit) + `"}`, 413},
}

// TestProbeEveryWriteRouteStoresNothing sends the bad bodies to every POST
// and PUT route the server registered, with the fixture's ids in the path
// so that the body is what decides: each answers its 4xx with the error
// entity, and the store is unchanged. An empty object is then either
// taken (2xx) or refused without a trace.
func TestProbeEveryWriteRouteStoresNothing(t *testing.T) {
	t.Parallel() // its own store, or its own prefix of the shared one
	rg := newRig(t, probeLimit)
	probed := 0
	for _, route := range rg.srv.Routes() {
		method, pattern, _ := strings.Cut(route, " ")
		if method != "POST" && method != "PUT" {
			continue
		}
		path := rg.fill(pattern, nil)
		// Routes that refuse the method outright (405) or take no body
		// (login) answer whatever the body: only "4xx, nothing stored"
		// holds for them.
		takesBody := true
		if r := rg.call(method, path, `{}`); r.status == http.StatusMethodNotAllowed || pattern == "/login" {
			takesBody = false
		} else if r.status < 400 {
			rg.restore()
		} else if diff := rg.changes(); diff != "" {
			t.Errorf("%s {} answered %d and changed the store:\n%s", route, r.status, diff)
			rg.restore()
		}
		for _, tc := range badBodies {
			req := httptest.NewRequest(method, "http://probe"+api.BasePath+path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.contentType)
			r := rg.serve(req)
			switch {
			case r.status < 400 || r.status >= 500:
				t.Errorf("%s with %s: %d %s", route, tc.name, r.status, r.body)
			case takesBody && r.status != tc.status && !(tc.status == 413 || r.status == 413):
				t.Errorf("%s with %s: %d, want %d: %s", route, tc.name, r.status, tc.status, r.body)
			case tc.status == 413 && r.status != 413:
				t.Errorf("%s with %s: %d, want 413: %s", route, tc.name, r.status, r.body)
			}
			if bad := checkErrorEntity(r); bad != "" {
				t.Errorf("%s with %s: %d: error entity: %s: %s", route, tc.name, r.status, bad, r.body)
			}
			if diff := rg.changes(); diff != "" {
				t.Errorf("%s with %s answered %d and changed the store:\n%s", route, tc.name, r.status, diff)
				rg.restore()
			}
		}
		probed++
	}
	if probed < 40 {
		t.Fatalf("probed %d write routes; the server registers more (Routes: %v)", probed, rg.srv.Routes())
	}
	t.Logf("%d write routes probed with %d bad bodies each", probed, len(badBodies))
}

// TestIssue20Cases checks the exact answers issue 20 asked for.
func TestIssue20Cases(t *testing.T) {
	rg := newRig(t, 0)
	for _, path := range []string{"/bridges", "/chains", "/hosts", "/qos_policies", "/load_balancers"} {
		r := rg.call("POST", path, "null")
		expect(t, r, http.StatusBadRequest)
		if m := r.obj(t); m["code"] != float64(400) || !strings.Contains(m["message"].(string), "JSON object") {
			t.Errorf("POST %s null: %s", path, r.body)
		}
	}
	// A host's id is required on POST.
	r := rg.call("POST", "/hosts", "{}")
	expectViolation(t, r, "id")
	r = rg.call("POST", "/hosts", map[string]any{"name": "no-id"})
	expectViolation(t, r, "id")
	// PUT of null replaces nothing.
	expect(t, rg.call("PUT", "/bridges/"+rg.ids["bridges"], "null"), http.StatusBadRequest)
	if diff := rg.changes(); diff != "" {
		t.Fatalf("refused requests changed the store:\n%s", diff)
	}
	// Wrong types, malformed ids and out-of-range numbers name the field.
	for _, tc := range []struct {
		path, body, property string
	}{
		{"/bridges", `{"name": 5}`, "name"},
		{"/bridges", `{"inboundFilterId": "not-a-uuid"}`, "inboundFilterId"},
		{"/bridges", `{"inboundMirrorIds": ["5b4cb2f1-0000-4000-8000-0000000000ff", 7]}`, "inboundMirrorIds[1]"},
		{"/bridges", `{"adminStateUp": "yes"}`, "adminStateUp"},
		{"/bridges/" + rg.ids["bridges"] + "/ports", `{"type": "Bridge", "vlanId": 70000}`, "vlanId"},
		{"/bridges/" + rg.ids["bridges"] + "/ports", `{"type": "Bridge", "vlanId": 5000}`, "vlanId"},
		{"/routers/" + rg.ids["routers"] + "/ports", `{"type": "Router", "portAddress": "10.5.0.1", "networkLength": 2.5}`, "networkLength"},
		{"/chains/" + rg.ids["chains"] + "/rules", `{"type": "dnat", "flowAction": "accept", "natTargets": [{"addressFrom": "1.1.1.1", "addressTo": "1.1.1.1", "portFrom": "x"}]}`, "natTargets[0].portFrom"},
		{"/chains/" + rg.ids["chains"] + "/rules", `{"type": "accept", "tpDst": {"start": true, "end": 80}}`, "tpDst.start"},
		{"/traces", `{"name": "t", "deviceType": "BRIDGE", "deviceId": "` + rg.ids["bridges"] + `", "condition": []}`, "condition"},
	} {
		expectViolation(t, rg.call("POST", tc.path, tc.body), tc.property)
	}
	// A reference to an object that does not exist is a 404.
	expect(t, rg.call("POST", "/bridges", map[string]any{"inboundFilterId": "5b4cb2f1-0000-4000-8000-0000000000ff"}), 404)
	expect(t, rg.call("POST", "/mirrors", map[string]any{"toPortId": "5b4cb2f1-0000-4000-8000-0000000000ff"}), 404)
	if diff := rg.changes(); diff != "" {
		t.Fatalf("refused requests changed the store:\n%s", diff)
	}
	// Unknown keys, keys of another case and the store's hidden fields
	// are ignored; a number in a string is taken (python-midonetclient).
	r = rg.call("POST", "/tunnel_zones", `{"name": "tz2", "type": "vxlan", "Name": "x", "color": "blue",
		"_members": [{"hostId": "`+rg.ids["hosts"]+`", "ipAddress": "1.1.1.1"}]}`)
	expect(t, r, http.StatusCreated)
	tz := expect(t, rg.call("GET", r.header.Get("Location")[len("http://rig"+api.BasePath):], nil), 200).obj(t)
	if tz["name"] != "tz2" {
		t.Errorf("tunnel zone name %v, want tz2", tz["name"])
	}
	members := expect(t, rg.call("GET", "/tunnel_zones/"+tz["id"].(string)+"/hosts", nil), 200).list(t)
	if len(members) != 0 {
		t.Errorf("a body's _members became members: %v", members)
	}
	r = rg.call("POST", "/routers/"+rg.ids["routers"]+"/ports", `{"type": "Router", "portAddress": "10.6.0.1", "networkLength": "24"}`)
	expect(t, r, http.StatusCreated)
	p := expect(t, rg.call("GET", r.header.Get("Location")[len("http://rig"+api.BasePath):], nil), 200).obj(t)
	if p["networkLength"] != float64(24) {
		t.Errorf("networkLength %v, want 24", p["networkLength"])
	}
}

// TestUnknownRoutesAnswerTheErrorEntity checks the answers of paths and
// methods no route takes.
func TestUnknownRoutesAnswerTheErrorEntity(t *testing.T) {
	rg := newRig(t, 0)
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/nonsense", 404, ""},
		{"GET", "/bridges/" + rg.ids["bridges"] + "/nonsense", 404, ""},
		{"PATCH", "/bridges/" + rg.ids["bridges"], 405, "GET, PUT, DELETE"},
		{"POST", "/bridges/" + rg.ids["bridges"], 405, "GET, PUT, DELETE"},
		{"DELETE", "/bridges", 405, "GET, POST"},
		{"PUT", "/chains/" + rg.ids["chains"], 405, "GET, DELETE"},
	} {
		r := rg.call(tc.method, tc.path, nil)
		if r.status != tc.status || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want %d Allow %q", tc.method, tc.path, r.status, r.header.Get("Allow"), tc.status, tc.allow)
		}
		if bad := checkErrorEntity(r); bad != "" || len(r.body) == 0 {
			t.Errorf("%s %s: error entity: %q: %s", tc.method, tc.path, bad, r.body)
		}
	}
}

// TestValidBodiesAreTaken checks the table of valid bodies the fuzzer and
// the store-failure tests start from: each write route takes its body on
// the fixture (2xx), or refuses the method outright (405). A write route
// added without a body in the table fails here.
func TestValidBodiesAreTaken(t *testing.T) {
	t.Parallel() // its own store, or its own prefix of the shared one
	rg := newRig(t, 0)
	for _, route := range rg.srv.Routes() {
		method, pattern, _ := strings.Cut(route, " ")
		if method != "POST" && method != "PUT" {
			continue
		}
		body := rg.validBody(route)
		req := httptest.NewRequest(method, "http://rig"+api.BasePath+rg.fill(pattern, nil), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if pattern == "/login" {
			req.SetBasicAuth("admin", "admin")
		}
		r := rg.serve(req)
		switch {
		case r.status == http.StatusMethodNotAllowed:
		case body == "":
			t.Errorf("%s answers %d and has no valid body in validBodies; add one", route, r.status)
		case r.status >= 300:
			t.Errorf("%s with %s: %d %s", route, body, r.status, r.body)
		}
		rg.restore()
	}
}
