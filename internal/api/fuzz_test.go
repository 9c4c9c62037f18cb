package api_test

import (
	"bufio"
	"bytes"
	"hash/fnv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/api"
)

// fuzzLimit is the body limit of the fuzzed server, small so that bodies
// over it stay cheap.
const fuzzLimit = 16 << 10

// fuzzContentTypes are the Content-Type headers a fuzz input picks from.
var fuzzContentTypes = []string{
	"application/json",
	"application/vnd.org.midonet.Bridge-v4+json",
	"", // none
	"text/plain",
	"application/json; charset=UTF-8",
	"*/*",
	"multipart/form-data; boundary=x",
	"application/vnd.org.midonet.Bridge-v4+xml",
	"application/json; =",
}

// fuzzMethods are the methods an input picks from when it does not use the
// route's own.
var fuzzMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND"}

// FuzzAPI sends generated requests to the real handler in-process, over
// the embedded store holding a fixture with an object of every kind, and
// checks after each: no 5xx (the store is up), no panic, an error answer
// is MidoNet's error entity, and a 4xx (or any read) leaves the store
// exactly as it was. Successful writes are undone before the next input.
//
// The route comes from the server's own list (Server.Routes), so routes
// added later are covered: route names one exactly, or is hashed onto one
// (or onto a raw path made of extra). Each wildcard of the path takes the
// fixture's object, an unknown id, or extra as is or escaped, by two bits
// of fill. "@name" in the body, the query or extra stands for the
// fixture's id of that collection (@bridges, @ports, @rport, ...).
//
// The seed corpus (every route with a valid body or none, and the bad
// bodies of issue 20) runs with go test. Longer runs:
//
//	go test -run '^$' -fuzz FuzzAPI -fuzztime 10m ./internal/api
func FuzzAPI(f *testing.F) {
	rg := newRig(f, fuzzLimit)
	routes := rg.srv.Routes()
	for _, route := range routes {
		f.Add(route, uint8(0), uint8(0), "", "", uint8(0), []byte(validBodies[route]))
	}
	for _, path := range []string{"/bridges", "/chains", "/hosts", "/qos_policies", "/load_balancers"} {
		f.Add("POST "+path, uint8(0), uint8(0), "", "", uint8(0), []byte("null"))
	}
	f.Add("POST /hosts", uint8(0), uint8(0), "", "", uint8(0), []byte("{}"))
	f.Add("PUT /bridges/{id}", uint8(0), uint8(0), "", "", uint8(0), []byte("null"))
	f.Add("POST /bridges", uint8(0), uint8(0), "", "", uint8(0), []byte(`{"name":"`+strings.Repeat("x", fuzzLimit)+`"}`))
	f.Add("POST /bridges", uint8(0), uint8(0), "", "", uint8(3), []byte(`{}`))
	f.Add("POST /bridges", uint8(0), uint8(0), "", "", uint8(0), []byte(strings.Repeat("[", 3000)))
	f.Add("POST /routers/{id}/ports", uint8(0), uint8(0), "", "", uint8(0), []byte(`{"type":"Router","portAddress":"10.9.0.1","networkLength":"24","portSubnet":[5]}`))
	f.Add("POST /chains/{id}/rules", uint8(0), uint8(0x55), "", "", uint8(0), []byte(`{"type":"jump","jumpChainId":"@chains","position":-1}`))
	f.Add("GET /bridges/{id}/ports", uint8(0), uint8(2), "..%2f..", "", uint8(0), []byte(nil))
	f.Add("GET /bridges", uint8(0), uint8(0), "", "tenant_id=%zz&tenant_id=", uint8(0), []byte(nil))
	f.Add("GET /port_groups", uint8(0), uint8(0), "", "port_id=nope", uint8(0x80), []byte(nil))
	f.Add("GET /port_groups", uint8(0), uint8(0), "", "tenant_id=t&port_id=@ports", uint8(0), []byte(nil))
	f.Add("GET /traces", uint8(0), uint8(0), "", "tenant_id=t", uint8(0), []byte(nil))
	f.Add("GET /pools", uint8(0), uint8(0), "", "hm_id=@health_monitors", uint8(0), []byte(nil))
	f.Add("PUT /routers/{id}", uint8(0), uint8(0), "", "", uint8(0), []byte(`{"name": "r", "loadBalancerId": "@load_balancers"}`))
	f.Add("PUT /qos_policies/{id}", uint8(0), uint8(0), "", "", uint8(0), []byte(`{"rules": [{"id": "@qos_dscp_rules", "type": "bandwidth_limit", "max_kbps": 1}]}`))
	f.Add("POST /ports/{id}/link", uint8(0), uint8(0), "", "", uint8(0), []byte(`{"peerId": "@ports"}`))
	f.Add("PUT /ports/{id}", uint8(0), uint8(2), "@rport", "", uint8(0), []byte(`{"type": "Router", "portSubnet": ["10.1.0.9/24", "fd00::1/64"], "portMac": "02:00:00:00:00:99"}`))
	f.Add("POST /bridges/{id}/ports", uint8(0), uint8(0), "", "", uint8(0), []byte(`{"type": "Bridge", "vlanId": 1e2, "tunnelKey": 18446744073709551616}`))
	f.Add("raw", uint8(0), uint8(0), "bridges//x/../hosts", "", uint8(0), []byte(nil))
	f.Add("DELETE /bridges/{id}", uint8(200), uint8(0), "", "", uint8(0), []byte(`{}`))
	f.Add("GET /bridges/{id}/dhcp/{subnet}/hosts/{mac}", uint8(0), uint8(0x28), "AA:BB:CC:DD:EE:FF", "", uint8(0), []byte(nil))

	f.Fuzz(func(t *testing.T, route string, method uint8, fill uint8, extra, query string, ctype uint8, body []byte) {
		rg.t = t
		// A failing input leaves the store as it found it, so that the
		// minimizer's reruns see the fixture, not the failure's trace.
		defer func() {
			if t.Failed() {
				rg.restore()
			}
		}()
		query, extra = rg.symbols().Replace(query), rg.symbols().Replace(extra)
		rawPath := false
		m, pattern, ok := strings.Cut(route, " ")
		if !ok || !slices.Contains(routes, route) {
			h := fnv.New32a()
			h.Write([]byte(route))
			i := int(h.Sum32() % uint32(len(routes)+1))
			if i == len(routes) {
				m, pattern, rawPath = "GET", "/"+extra, true
			} else {
				m, pattern, _ = strings.Cut(routes[i], " ")
			}
		}
		if !rawPath {
			pattern = rg.fill(pattern, func(i int, v string) string {
				switch (fill >> (2 * (i % 4))) & 3 {
				case 1:
					return "5b4cb2f1-0000-4000-8000-0000000000ff"
				case 2:
					return extra
				case 3:
					return url.PathEscape(extra)
				}
				return v
			})
		}
		target := api.BasePath + pattern
		if query != "" {
			target += "?" + query
		}
		if method >= 128 {
			m = fuzzMethods[int(method)%len(fuzzMethods)]
		}
		body = []byte(rg.symbols().Replace(string(body)))
		var raw bytes.Buffer
		raw.WriteString(m + " " + target + " HTTP/1.1\r\nHost: fuzz\r\n")
		if ct := fuzzContentTypes[int(ctype&0x7f)%len(fuzzContentTypes)]; ct != "" {
			raw.WriteString("Content-Type: " + ct + "\r\n")
		}
		if ctype&0x80 != 0 {
			raw.WriteString("Accept: text/html\r\n")
		}
		raw.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil {
			return // the server refuses it before any handler
		}
		r := rg.serve(req)
		what := m + " " + target
		if r.status >= 500 && r.status != http.StatusNotImplemented { // 501: a value no agent acts on, refused
			t.Fatalf("%s with %q: %d %s", what, clip(body), r.status, r.body)
		}
		if bad := checkErrorEntity(r); bad != "" {
			t.Fatalf("%s with %q: %d: error entity: %s: %s", what, clip(body), r.status, bad, r.body)
		}
		if diff := rg.changes(); diff != "" {
			if r.status >= 400 || m == "GET" || m == "HEAD" || m == "OPTIONS" {
				t.Fatalf("%s with %q answered %d and changed the store:\n%s", what, clip(body), r.status, diff)
			}
			rg.restore()
		}
	})
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}
