package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func ruleIDs(t *testing.T, chain map[string]any) []string {
	t.Helper()
	var out []string
	for i, r := range expect(t, do(t, "GET", chain["rules"].(string), nil), 200).list(t) {
		if r["position"] != float64(i+1) {
			t.Errorf("rule %d reports position %v", i+1, r["position"])
		}
		out = append(out, id(r))
	}
	return out
}

func TestRulePositions(t *testing.T) {
	c := create(t, "/chains", map[string]any{"name": "order"})
	rules := c["rules"].(string)
	r1 := create(t, rules, map[string]any{"type": "accept"})
	r2 := create(t, rules, map[string]any{"type": "drop"})
	if got := ruleIDs(t, c); strings.Join(got, ",") != id(r2)+","+id(r1) {
		t.Fatalf("default position inserts at the head: got %v", got)
	}
	r3 := create(t, rules, map[string]any{"type": "accept", "position": 2})
	r4 := create(t, rules, map[string]any{"type": "return", "position": 4})
	if got := ruleIDs(t, c); strings.Join(got, ",") != strings.Join([]string{id(r2), id(r3), id(r1), id(r4)}, ",") {
		t.Fatalf("after inserts: %v", got)
	}
	r := do(t, "POST", rules, map[string]any{"type": "accept", "position": 6})
	expect(t, r, 400)
	expectViolation(t, do(t, "POST", rules, map[string]any{"type": "accept", "position": -1}), "position")
	// python-midonetclient sends null for unset ints: position null is the head.
	r5 := create(t, rules, map[string]any{"type": "accept", "position": nil, "invTpSrc": nil, "nwSrcLength": nil, "jumpChainId": nil})
	if got := ruleIDs(t, c); got[0] != id(r5) {
		t.Fatalf("null position should insert at the head: %v", got)
	}
	if p := expect(t, do(t, "GET", r1["uri"].(string), nil), 200).obj(t)["position"]; p != float64(4) {
		t.Errorf("GET /rules/{id} reports position %v, want the live 4", p)
	}
	expect(t, do(t, "DELETE", r2["uri"].(string), nil), 204)
	if got := ruleIDs(t, c); len(got) != 4 || got[1] != id(r3) {
		t.Errorf("delete should shift positions: %v", got)
	}
}

func TestRuleFragmentPolicy(t *testing.T) {
	c := create(t, "/chains", map[string]any{"name": "frag"})
	rules := c["rules"].(string)
	nat := func(from, to string, pf, pt int) []any {
		return []any{map[string]any{"addressFrom": from, "addressTo": to, "portFrom": pf, "portTo": pt}}
	}
	cases := []struct {
		name   string
		body   map[string]any
		status int
		policy string
	}{
		{"l4 rule defaults to header", map[string]any{"type": "accept", "tpDst": map[string]any{"start": 80, "end": 80}}, 201, "header"},
		{"plain rule defaults to any", map[string]any{"type": "drop"}, 201, "any"},
		{"l4 rule refuses any", map[string]any{"type": "accept", "tpDst": map[string]any{"start": 80, "end": 80}, "fragmentPolicy": "any"}, 400, ""},
		{"dynamic snat defaults to unfragmented", map[string]any{"type": "snat", "flowAction": "accept", "natTargets": nat("1.1.1.1", "1.1.1.1", 1000, 2000)}, 201, "unfragmented"},
		{"dynamic snat refuses any", map[string]any{"type": "snat", "flowAction": "accept", "natTargets": nat("1.1.1.1", "1.1.1.1", 1000, 2000), "fragmentPolicy": "any"}, 400, ""},
		{"static dnat defaults to any", map[string]any{"type": "dnat", "flowAction": "accept", "natTargets": nat("10.0.0.5", "10.0.0.5", 0, 0)}, 201, "any"},
		{"unknown policy", map[string]any{"type": "drop", "fragmentPolicy": "some"}, 400, ""},
		{"unknown rule type", map[string]any{"type": "allow"}, 400, ""},
		{"missing type", map[string]any{}, 400, ""},
		{"jump without chain", map[string]any{"type": "jump"}, 400, ""},
		{"jump to a missing chain", map[string]any{"type": "jump", "jumpChainId": uuid.NewString()}, 404, ""},
		{"nat without flow action", map[string]any{"type": "dnat", "natTargets": nat("10.0.0.5", "10.0.0.5", 0, 0)}, 400, ""},
		{"tp range reversed", map[string]any{"type": "accept", "tpSrc": map[string]any{"start": 90, "end": 80}}, 400, ""},
		{"bad dl type", map[string]any{"type": "accept", "dlType": 12}, 400, ""},
		{"bad mac", map[string]any{"type": "accept", "dlSrc": "zz:00:00:00:00:01"}, 400, ""},
		{"wrong json type", map[string]any{"type": "accept", "condInvert": "yes"}, 400, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "POST", rules, tc.body)
			expect(t, r, tc.status)
			if tc.status != 201 {
				if r.obj(t)["code"] != float64(tc.status) {
					t.Errorf("error entity %s", r.body)
				}
				return
			}
			got := expect(t, do(t, "GET", r.header.Get("Location"), nil), 200).obj(t)
			if got["fragmentPolicy"] != tc.policy {
				t.Errorf("fragmentPolicy %v, want %s", got["fragmentPolicy"], tc.policy)
			}
		})
	}
	// Failed creates changed nothing.
	if n := len(expect(t, do(t, "GET", rules, nil), 200).list(t)); n != 4 {
		t.Errorf("chain has %d rules, want the 4 created", n)
	}
}

func TestRuleKeysByType(t *testing.T) {
	c := create(t, "/chains", map[string]any{"name": "keys"})
	target := create(t, "/chains", map[string]any{"name": "target"})
	accept := create(t, c["rules"].(string), map[string]any{"type": "accept"})
	for _, k := range []string{"jumpChainId", "natTargets", "flowAction"} {
		if _, ok := accept[k]; ok {
			t.Errorf("accept rule shows %s", k)
		}
	}
	for _, k := range []string{"condInvert", "inPorts", "nwSrcAddress", "tpSrc", "fragmentPolicy", "chainId", "position", "uri", "meterName"} {
		if _, ok := accept[k]; !ok {
			t.Errorf("accept rule lacks %s", k)
		}
	}
	jump := create(t, c["rules"].(string), map[string]any{"type": "jump", "jumpChainId": id(target)})
	if jump["jumpChainId"] != id(target) {
		t.Errorf("jump rule %v", jump)
	}
	// Deleting the target chain deletes the jump rule pointing at it.
	expect(t, do(t, "DELETE", target["uri"].(string), nil), 204)
	expect(t, do(t, "GET", jump["uri"].(string), nil), 404)
	if got := ruleIDs(t, c); len(got) != 1 || got[0] != id(accept) {
		t.Errorf("rules after target delete: %v", got)
	}
}

func TestRouterPortAndLocalRoute(t *testing.T) {
	r := create(t, "/routers", map[string]any{"name": "rp"})
	p := create(t, r["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.0.0.1", "networkAddress": "10.0.0.0", "networkLength": 24})
	if s := p["portSubnet"].([]any); len(s) != 1 || s[0] != "10.0.0.1/24" {
		t.Errorf("portSubnet %v", p["portSubnet"])
	}
	if !strings.HasPrefix(p["portMac"].(string), "ac:ca:ba:") {
		t.Errorf("portMac %v lacks the Midokura OUI", p["portMac"])
	}
	if p["networkAddress"] != "10.0.0.0" || p["networkLength"] != float64(24) || p["portAddress"] != "10.0.0.1" {
		t.Errorf("addresses %v %v %v", p["portAddress"], p["networkAddress"], p["networkLength"])
	}
	if _, ok := p["vlanId"]; ok {
		t.Error("router port shows vlanId")
	}
	if p["tunnelKey"].(float64) < 1 {
		t.Errorf("tunnelKey %v", p["tunnelKey"])
	}
	routes := expect(t, do(t, "GET", r["routes"].(string), nil), 200).list(t)
	if len(routes) != 1 || routes[0]["type"] != "Local" || routes[0]["dstNetworkAddr"] != "10.0.0.1" ||
		routes[0]["dstNetworkLength"] != float64(32) || routes[0]["nextHopPort"] != id(p) || routes[0]["routerId"] != id(r) {
		t.Fatalf("routes %v", routes)
	}
	// A Normal route needs a next-hop port of this router.
	route := map[string]any{"type": "Normal", "srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": "10.1.0.0", "dstNetworkLength": 16}
	expect(t, do(t, "POST", r["routes"].(string), route), 400)
	other := create(t, "/routers", map[string]any{"name": "other"})
	op := create(t, other["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.9.0.1", "networkLength": 24})
	route["nextHopPort"] = id(op)
	expect(t, do(t, "POST", r["routes"].(string), route), 400)
	route["nextHopPort"] = id(p)
	rt := create(t, r["routes"].(string), route)
	expectViolation(t, do(t, "POST", r["routes"].(string), map[string]any{"type": "Normal", "dstNetworkAddr": "10.1.0.0", "nextHopPort": id(p)}), "srcNetworkAddr")
	expectViolation(t, do(t, "POST", r["routes"].(string), map[string]any{"type": "Normal", "srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": "10.1.0.300", "nextHopPort": id(p)}), "dstNetworkAddr")
	expect(t, do(t, "POST", r["routes"].(string), map[string]any{"type": "Sideways", "srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": "10.1.0.0"}), 400)
	// Deleting the port deletes its routes.
	expect(t, do(t, "DELETE", p["uri"].(string), nil), 204)
	expect(t, do(t, "GET", rt["uri"].(string), nil), 404)
	if n := len(expect(t, do(t, "GET", r["routes"].(string), nil), 200).list(t)); n != 0 {
		t.Errorf("%d routes left after port delete", n)
	}
	// Router port validation.
	expectViolation(t, do(t, "POST", r["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.0.0.256", "networkLength": 24}), "portAddress")
	expectViolation(t, do(t, "POST", r["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.0.0.1", "networkLength": 33}), "networkLength")
	expect(t, do(t, "POST", r["ports"].(string), map[string]any{"type": "Router"}), 400)
	expect(t, do(t, "POST", r["ports"].(string), map[string]any{"type": "Bridge"}), 400)
	expect(t, do(t, "POST", r["ports"].(string), map[string]any{}), 400)
}

func TestLinkAndUnlink(t *testing.T) {
	b := create(t, "/bridges", map[string]any{"name": "lb"})
	r := create(t, "/routers", map[string]any{"name": "lr"})
	bp := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	rp := create(t, r["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.0.0.1", "networkLength": 24})
	r2 := do(t, "POST", bp["link"].(string), map[string]any{"peerId": id(rp)}, "Content-Type", "application/vnd.org.midonet.PortLink-v1+json")
	expect(t, r2, 201)
	if loc := r2.header.Get("Location"); loc != bp["uri"].(string)+"/link" {
		t.Errorf("link Location %q", loc)
	}
	for _, p := range []map[string]any{bp, rp} {
		got := expect(t, do(t, "GET", p["uri"].(string), nil), 200).obj(t)
		if got["peerId"] == nil {
			t.Errorf("port %s has no peer after link", id(p))
		}
	}
	// Relinking either side is a conflict.
	other := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	expect(t, do(t, "POST", other["link"].(string), map[string]any{"peerId": id(rp)}), 409)
	expect(t, do(t, "POST", bp["link"].(string), map[string]any{"peerId": id(other)}), 409)
	peers := expect(t, do(t, "GET", b["peerPorts"].(string), nil), 200).list(t)
	if len(peers) != 1 || id(peers[0]) != id(rp) {
		t.Errorf("peer ports %v", peers)
	}
	// A PUT cannot clear the peer.
	expect(t, do(t, "PUT", bp["uri"].(string), map[string]any{"type": "Bridge"}), 204)
	if got := expect(t, do(t, "GET", bp["uri"].(string), nil), 200).obj(t); got["peerId"] != id(rp) {
		t.Errorf("PUT cleared peerId")
	}
	expect(t, do(t, "DELETE", bp["link"].(string), nil), 204)
	for _, p := range []map[string]any{bp, rp} {
		if got := expect(t, do(t, "GET", p["uri"].(string), nil), 200).obj(t); got["peerId"] != nil {
			t.Errorf("port %s keeps peer %v after unlink", id(p), got["peerId"])
		}
	}
	// Deleting a linked port clears its peer.
	expect(t, do(t, "POST", bp["link"].(string), map[string]any{"peerId": id(rp)}), 201)
	expect(t, do(t, "DELETE", bp["uri"].(string), nil), 204)
	if got := expect(t, do(t, "GET", rp["uri"].(string), nil), 200).obj(t); got["peerId"] != nil {
		t.Errorf("peer keeps peerId after the port's delete")
	}
	expect(t, do(t, "POST", rp["link"].(string), map[string]any{}), 400)
}

func TestHostBinding(t *testing.T) {
	hostID := uuid.NewString()
	h := create(t, "/hosts", map[string]any{"id": hostID, "name": "bind-host"})
	if h["alive"] != false || h["floodingProxyWeight"] != float64(1) || h["containerLimit"] != float64(-1) {
		t.Errorf("host defaults %v", h)
	}
	b := create(t, "/bridges", map[string]any{"name": "hb"})
	p := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	p2 := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	bind := map[string]any{"portId": id(p), "interfaceName": "vm1"}
	// The host must be in a tunnel zone first.
	expect(t, do(t, "POST", h["ports"].(string), bind), 409)
	tz := create(t, "/tunnel_zones", map[string]any{"name": "bind-tz", "type": "vxlan"})
	expectViolation(t, do(t, "POST", tz["hosts"].(string), map[string]any{"hostId": hostID, "ipAddress": "10.0.0.300"}), "ipAddress")
	expect(t, do(t, "POST", tz["hosts"].(string), map[string]any{"hostId": uuid.NewString(), "ipAddress": "10.0.0.3"}), 404)
	expect(t, do(t, "POST", tz["hosts"].(string), map[string]any{"hostId": hostID, "ipAddress": "192.168.0.1"}, "Content-Type", "application/vnd.org.midonet.TunnelZoneHost-v1+json"), 201)
	expect(t, do(t, "POST", tz["hosts"].(string), map[string]any{"hostId": hostID, "ipAddress": "192.168.0.1"}), 409)
	r := expect(t, do(t, "POST", h["ports"].(string), bind), 201)
	if r.header.Get("Location") != h["ports"].(string)+"/"+id(p) {
		t.Errorf("binding Location %q", r.header.Get("Location"))
	}
	got := expect(t, do(t, "GET", p["uri"].(string), nil), 200).obj(t)
	if got["hostId"] != hostID || got["interfaceName"] != "vm1" {
		t.Errorf("port after bind: hostId %v interfaceName %v", got["hostId"], got["interfaceName"])
	}
	// Same interface twice, or the same port twice: conflict.
	expect(t, do(t, "POST", h["ports"].(string), map[string]any{"portId": id(p2), "interfaceName": "vm1"}), 409)
	expect(t, do(t, "POST", h["ports"].(string), map[string]any{"portId": id(p), "interfaceName": "vm9"}), 409)
	if l := expect(t, do(t, "GET", h["ports"].(string), nil), 200).list(t); len(l) != 1 || l[0]["interfaceName"] != "vm1" {
		t.Errorf("bindings %v", l)
	}
	// A host with bindings cannot be deleted.
	expect(t, do(t, "DELETE", h["uri"].(string), nil), 403)
	expect(t, do(t, "DELETE", h["ports"].(string)+"/"+id(p), nil), 204)
	got = expect(t, do(t, "GET", p["uri"].(string), nil), 200).obj(t)
	if got["hostId"] != nil || got["interfaceName"] != nil {
		t.Errorf("unbind left %v %v", got["hostId"], got["interfaceName"])
	}
	expect(t, do(t, "DELETE", h["uri"].(string), nil), 200)
	if l := expect(t, do(t, "GET", tz["hosts"].(string), nil), 200).list(t); len(l) != 0 {
		t.Errorf("deleted host still in its tunnel zone: %v", l)
	}
	expect(t, do(t, "POST", "/tunnel_zones", map[string]any{"name": "bind-tz", "type": "vxlan"}), 409)
	expectViolation(t, do(t, "POST", "/tunnel_zones", map[string]any{"type": "vxlan"}), "name")
	expectViolation(t, do(t, "POST", "/tunnel_zones", map[string]any{"name": "x", "type": "ipsec"}), "type")
}

func TestTenantFilter(t *testing.T) {
	tenant := "tenant-" + uuid.NewString()
	mine := create(t, "/bridges", map[string]any{"name": "mine", "tenantId": tenant})
	create(t, "/bridges", map[string]any{"name": "theirs", "tenantId": "other"})
	for _, coll := range []string{"/routers", "/chains", "/port_groups"} {
		create(t, coll, map[string]any{"name": "x", "tenantId": tenant})
		l := expect(t, do(t, "GET", coll+"?tenant_id="+tenant, nil), 200).list(t)
		if len(l) != 1 || l[0]["tenantId"] != tenant {
			t.Errorf("%s?tenant_id: %v", coll, l)
		}
	}
	l := expect(t, do(t, "GET", "/bridges?tenant_id="+tenant, nil), 200).list(t)
	if len(l) != 1 || id(l[0]) != id(mine) {
		t.Errorf("bridges?tenant_id: %v", l)
	}
}

func TestBridgeDeleteCascades(t *testing.T) {
	b := create(t, "/bridges", map[string]any{"name": "cascade"})
	p := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	pg := create(t, "/port_groups", map[string]any{"name": "pg"})
	expect(t, do(t, "POST", pg["ports"].(string), map[string]any{"portId": id(p)}), 201)
	expect(t, do(t, "POST", pg["ports"].(string), map[string]any{"portId": id(p)}), 409)
	expect(t, do(t, "POST", b["dhcpSubnets"].(string), map[string]any{"subnetPrefix": "10.0.0.0", "subnetLength": 24}), 201)
	expect(t, do(t, "POST", b["macTable"].(string), map[string]any{"macAddr": "02:00:00:00:00:09", "portId": id(p)}), 201)
	expect(t, do(t, "POST", b["arpTable"].(string), map[string]any{"ip": "10.0.0.9", "mac": "02:00:00:00:00:09"}), 201)
	expect(t, do(t, "DELETE", b["uri"].(string), nil), 204)
	expect(t, do(t, "GET", p["uri"].(string), nil), 404)
	if l := expect(t, do(t, "GET", pg["ports"].(string), nil), 200).list(t); len(l) != 0 {
		t.Errorf("deleted port still in its port group: %v", l)
	}
	expect(t, do(t, "GET", b["dhcpSubnets"].(string), nil), 404)
	// A bridge made again with the same id starts with empty tables.
	again := create(t, "/bridges", map[string]any{"id": id(b), "name": "cascade"})
	for _, table := range []string{"macTable", "arpTable"} {
		if l := expect(t, do(t, "GET", again[table].(string), nil), 200).list(t); len(l) != 0 {
			t.Errorf("%s of a deleted bridge survived: %v", table, l)
		}
	}
}

func TestChainDeleteClearsFilters(t *testing.T) {
	c := create(t, "/chains", map[string]any{"name": "filter"})
	b := create(t, "/bridges", map[string]any{"name": "filtered", "inboundFilterId": id(c)})
	expect(t, do(t, "DELETE", c["uri"].(string), nil), 204)
	if got := expect(t, do(t, "GET", b["uri"].(string), nil), 200).obj(t); got["inboundFilterId"] != nil {
		t.Errorf("inboundFilterId %v after chain delete", got["inboundFilterId"])
	}
	// A reference to a missing chain is a 404 and stores nothing.
	r := do(t, "POST", "/bridges", map[string]any{"name": "dangling", "inboundFilterId": uuid.NewString()})
	expect(t, r, 404)
	for _, o := range expect(t, do(t, "GET", "/bridges", nil), 200).list(t) {
		if o["name"] == "dangling" {
			t.Error("failed create stored a bridge")
		}
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name, method, path, body string
		status                   int
	}{
		{"malformed json", "POST", "/bridges", `{"name": `, 400},
		{"wrong type", "POST", "/bridges", `{"name": 5}`, 400},
		{"name too long", "POST", "/bridges", `{"name": "` + strings.Repeat("x", 256) + `"}`, 400},
		{"unknown item", "GET", "/bridges/" + uuid.NewString(), "", 404},
		{"id not a uuid", "GET", "/bridges/not-a-uuid", "", 404},
		{"unknown parent", "GET", "/bridges/" + uuid.NewString() + "/ports", "", 404},
		{"post under unknown parent", "POST", "/routers/" + uuid.NewString() + "/ports", `{"type":"Router","portAddress":"10.0.0.1","networkLength":24}`, 404},
		{"method not allowed", "PUT", "/chains/" + uuid.NewString(), `{}`, 405},
		{"no top-level route list", "GET", "/routes", "", 405},
		{"no top-level rule create", "POST", "/rules", `{"type":"accept"}`, 405},
		{"no route update", "PUT", "/routes/" + uuid.NewString(), `{}`, 405},
		{"foreign content type", "POST", "/bridges", `{}`, 415},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			headers := []string{}
			if tc.name == "foreign content type" {
				headers = []string{"Content-Type", "text/plain"}
			}
			r := do(t, tc.method, tc.path, body, headers...)
			expect(t, r, tc.status)
			if tc.status != 405 && r.obj(t)["code"] != float64(tc.status) {
				t.Errorf("error entity %s", r.body)
			}
		})
	}
	// A duplicate id is a conflict.
	b := create(t, "/bridges", map[string]any{"name": "dup"})
	expect(t, do(t, "POST", "/bridges", map[string]any{"id": id(b)}), 409)
}

func TestMediaTypes(t *testing.T) {
	b := create(t, "/bridges", map[string]any{"name": "media"})
	for _, accept := range []string{
		"application/vnd.org.midonet.Bridge-v4+json",
		"application/vnd.org.midonet.Bridge-v5+json; charset=UTF-8",
		"application/json", "*/*", "",
	} {
		r := do(t, "GET", b["uri"].(string), nil, "Accept", accept)
		expect(t, r, 200)
		if accept == "application/json" && r.header.Get("Content-Type") != "application/json" {
			t.Errorf("Accept %q: Content-Type %q", accept, r.header.Get("Content-Type"))
		}
	}
	expect(t, do(t, "GET", "/bridges", nil, "Accept", "text/html"), http.StatusNotAcceptable)
	// python-midonetclient sends {} bodies on GET and DELETE.
	expect(t, do(t, "GET", b["uri"].(string), "{}"), 200)
	expect(t, do(t, "DELETE", b["uri"].(string), "{}"), 204)
}
