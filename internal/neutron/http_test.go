package neutron_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/neutron"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
	"github.com/midonet/midonet/internal/topology"
)

// apiServer is the REST API with the Neutron endpoints over a store of its
// own (durable, with fsync, when MIDONET_BENCH_FSYNC is set, as `midonet
// cluster` runs it).
func apiServer(t testing.TB) *httptest.Server {
	t.Helper()
	member, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:0",
		Fast: os.Getenv("MIDONET_BENCH_FSYNC") == ""})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(member.Close)
	store, err := nsdb.Open(context.Background(), nsdb.Config{Endpoints: []string{member.ClientURL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	srv := httptest.NewServer(api.New(api.Config{Store: store,
		Neutron: neutron.New(store, nil).Handler(api.BasePath, api.BaseURI)}))
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func call(t *testing.T, method, url, ctype, accept string, body any) answer {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, url, rd)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, b}
}

func vnd(name string) string { return "application/vnd.org.midonet.neutron." + name + "-v1+json" }

func TestEndpoints(t *testing.T) {
	srv := apiServer(t)
	base := srv.URL + api.BasePath

	// Discovery: the API root names the Neutron resource, which names
	// every collection and template.
	root := call(t, "GET", base, "", "application/vnd.org.midonet.Application-v5+json", nil)
	var app map[string]any
	json.Unmarshal(root.body, &app)
	nURL, _ := app["neutron"].(string)
	if nURL != base+"/neutron" {
		t.Fatalf("the API root's neutron = %v, want %s/neutron", app["neutron"], base)
	}
	nr := call(t, "GET", nURL, "", "application/vnd.org.midonet.neutron.Neutron-v3+json", nil)
	var doc map[string]any
	json.Unmarshal(nr.body, &doc)
	if nr.status != 200 || nr.header.Get("Content-Type") != "application/vnd.org.midonet.neutron.Neutron-v3+json" ||
		doc["networks"] != nURL+"/networks" || doc["port_template"] != nURL+"/ports/{id}" ||
		doc["add_router_interface_template"] != nURL+"/routers/{id}/add_router_interface" {
		t.Fatalf("GET neutron = %d %s %s", nr.status, nr.header.Get("Content-Type"), nr.body)
	}

	// Create: 201, Location, the stored object; the vendor type answers.
	id := topology.NewID().String()
	net := map[string]any{"id": id, "name": "n1", "tenant_id": "t1", "admin_state_up": true, "shared": false, "router:external": false}
	c := call(t, "POST", nURL+"/networks", vnd("Network"), vnd("Network"), net)
	if c.status != 201 || c.header.Get("Location") != nURL+"/networks/"+id || c.header.Get("Content-Type") != vnd("Network") ||
		!strings.Contains(string(c.body), `"name":"n1"`) {
		t.Fatalf("POST network = %d %v %s", c.status, c.header, c.body)
	}
	// The MidoNet API shows the translation: a bridge with the id.
	if b := call(t, "GET", base+"/bridges/"+id, "", "", nil); b.status != 200 || !strings.Contains(string(b.body), `"tenantId":"t1"`) {
		t.Errorf("GET the network's bridge = %d %s", b.status, b.body)
	}
	g := call(t, "GET", nURL+"/networks/"+id, "", "application/json", nil)
	if g.status != 200 || g.header.Get("Content-Type") != "application/json" || !strings.Contains(string(g.body), `"router:external":false`) {
		t.Errorf("GET network = %d %s %s", g.status, g.header.Get("Content-Type"), g.body)
	}
	u := call(t, "PUT", nURL+"/networks/"+id, vnd("Network"), "", map[string]any{"id": id, "name": "n2"})
	if u.status != 200 || !strings.Contains(string(u.body), `"name":"n2"`) {
		t.Errorf("PUT network = %d %s", u.status, u.body)
	}
	l := call(t, "GET", nURL+"/networks", "", vnd("Networks"), nil)
	var list []map[string]any
	json.Unmarshal(l.body, &list)
	if l.status != 200 || len(list) != 1 || l.header.Get("Content-Type") != vnd("Networks") {
		t.Errorf("GET networks = %d %s %s", l.status, l.header.Get("Content-Type"), l.body)
	}

	// Bulk create: an array in, an array out, in one transaction.
	a, b := topology.NewID().String(), topology.NewID().String()
	bulk := call(t, "POST", nURL+"/networks", vnd("Networks"), vnd("Networks"), []any{
		map[string]any{"id": a, "name": "a"}, map[string]any{"id": b, "name": "b"}})
	if bulk.status != 201 || !strings.Contains(string(bulk.body), a) || !strings.Contains(string(bulk.body), b) {
		t.Errorf("bulk POST = %d %s", bulk.status, bulk.body)
	}
	// A bulk create with one bad object creates none.
	bad := call(t, "POST", nURL+"/networks", "application/json", "", []any{
		map[string]any{"id": topology.NewID().String(), "name": "ok"},
		map[string]any{"id": topology.NewID().String(), "name": "bad", "provider:network_type": "vlan"}})
	l = call(t, "GET", nURL+"/networks", "", "", nil)
	json.Unmarshal(l.body, &list)
	if bad.status != 501 || len(list) != 3 {
		t.Errorf("bulk POST with a refused object = %d %s; networks now %d, want 3", bad.status, bad.body, len(list))
	}

	// Delete: 204; again: 204; GET: 404 with MidoNet's error entity.
	for range 2 {
		if d := call(t, "DELETE", nURL+"/networks/"+id, "", "", nil); d.status != 204 {
			t.Errorf("DELETE network = %d %s", d.status, d.body)
		}
	}
	nf := call(t, "GET", nURL+"/networks/"+id, "", "", nil)
	var ent map[string]any
	json.Unmarshal(nf.body, &ent)
	if nf.status != 404 || nf.header.Get("Content-Type") != "application/vnd.org.midonet.Error-v1+json" || ent["code"] != float64(404) {
		t.Errorf("GET a deleted network = %d %s %s", nf.status, nf.header.Get("Content-Type"), nf.body)
	}

	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/lbs_v2", map[string]any{"id": topology.NewID().String()}, 501},
		{"PUT", "/firewalls/" + topology.NewID().String(), map[string]any{}, 501},
		{"POST", "/lb/vips", map[string]any{}, 501},
		{"PUT", "/security_group_rules/" + topology.NewID().String(), map[string]any{}, 405},
		{"POST", "/networks", "{not json", 400},
		{"POST", "/networks", map[string]any{"name": "no id"}, 400},
		{"PUT", "/networks/" + topology.NewID().String(), map[string]any{"name": "x"}, 404},
		{"PUT", "/routers/" + topology.NewID().String() + "/add_router_interface", map[string]any{"port_id": topology.NewID().String()}, 400},
	} {
		if got := call(t, c.method, nURL+c.path, "application/json", "", c.body); got.status != c.want {
			t.Errorf("%s %s = %d %s, want %d", c.method, c.path, got.status, got.body, c.want)
		}
	}
	if got := call(t, "POST", nURL+"/networks", "text/plain", "", "x"); got.status != 415 {
		t.Errorf("POST text/plain = %d, want 415", got.status)
	}
}

// TestStatusOfErrors: the HTTP status each kind of failure is answered
// with, as the REST API answers them.
func TestStatusOfErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{topology.Errorf(topology.ErrNotFound, "port x"), http.StatusNotFound},
		{topology.Errorf(topology.ErrInvalid, "bad cidr"), http.StatusBadRequest},
		{topology.Errorf(topology.ErrExists, "port x"), http.StatusConflict},
		{topology.Errorf(topology.ErrConflict, "busy key"), http.StatusConflict},
		{topology.Errorf(topology.ErrForbidden, "not yours"), http.StatusForbidden},
		{topology.Errorf(topology.ErrBusy, "no tunnel key"), http.StatusServiceUnavailable},
		{context.DeadlineExceeded, http.StatusServiceUnavailable},
		{fmt.Errorf("reading: %w", context.Canceled), http.StatusServiceUnavailable},
		{errors.New("unexpected"), http.StatusInternalServerError},
	} {
		if got := neutron.Status(tc.err); got != tc.want {
			t.Errorf("Status(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
