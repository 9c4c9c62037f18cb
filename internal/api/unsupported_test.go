package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// expectRefused checks an answer is status with a message naming field,
// and returns it.
func expectRefused(t *testing.T, r response, status int, field string) {
	t.Helper()
	expect(t, r, status)
	m := r.obj(t)
	msg, _ := m["message"].(string)
	if !strings.Contains(msg, field) || m["code"] != float64(status) {
		t.Errorf("%d answer %v does not name %q", status, m, field)
	}
}

// TestRefusedNotIgnored: the values no agent acts on are refused, naming
// the field (501, or 409 for a second QoS rule of a type in a policy),
// and nothing is stored; the defaults MidoNet's clients send are taken.
func TestRefusedNotIgnored(t *testing.T) {
	r := create(t, "/routers", map[string]any{"name": "refusals"})
	b := create(t, "/bridges", map[string]any{"name": "refusals"})
	c := create(t, "/chains", map[string]any{"name": "refusals"})
	rport := create(t, r["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.61.0.1", "networkLength": 24})
	hostID := uuid.NewString()
	host := create(t, "/hosts", map[string]any{"id": hostID, "name": "refusals"})
	tz := create(t, "/tunnel_zones", map[string]any{"name": "refusals", "type": "vxlan"})
	create(t, tz["hosts"].(string), map[string]any{"hostId": hostID, "ipAddress": "192.0.2.61"})
	bound := create(t, b["ports"].(string), map[string]any{"type": "Bridge"})
	expect(t, do(t, "POST", host["ports"].(string), map[string]any{"portId": id(bound), "interfaceName": "refusals0"}), 201)
	tagged := create(t, b["ports"].(string), map[string]any{"type": "Bridge", "vlanId": 10}) // an interior port-to-be
	policy := create(t, "/qos_policies", map[string]any{"name": "refusals"})
	bw := create(t, policy["bwLimitRules"].(string), map[string]any{"maxKbps": 1000})
	create(t, policy["dscpRules"].(string), map[string]any{"dscpMark": 10})
	other := create(t, "/qos_policies", map[string]any{"name": "refusals-2"})
	otherBW := create(t, other["bwLimitRules"].(string), map[string]any{"maxKbps": 2000})
	group := create(t, "/ip_addr_groups", map[string]any{"name": "refusals"})
	hostPut := func(fpw, cw, cl int, enforce bool) map[string]any {
		return map[string]any{"floodingProxyWeight": fpw, "containerWeight": cw, "containerLimit": cl, "enforceContainerLimit": enforce}
	}

	tests := []struct {
		name         string
		method, path string
		body         any
		status       int
		field        string // named in the refusal
	}{
		{"GRE tunnel zone", "POST", "/tunnel_zones", map[string]any{"name": "gre", "type": "gre"}, 501, "type gre"},
		{"VTEP tunnel zone", "POST", "/tunnel_zones", map[string]any{"name": "vtep", "type": "vtep"}, 501, "type vtep"},
		{"tunnel zone turned GRE", "PUT", tz["uri"].(string), map[string]any{"name": "refusals", "type": "gre"}, 501, "type gre"},
		{"FIP64 route", "POST", r["routes"].(string), map[string]any{"type": "Fip64", "srcNetworkAddr": "0.0.0.0",
			"dstNetworkAddr": "10.62.0.0", "dstNetworkLength": 16, "nextHopPort": id(rport)}, 501, "Fip64"},
		{"rule with a meter", "POST", c["rules"].(string), map[string]any{"type": "accept", "meterName": "web"}, 501, "meterName"},
		{"VTEP router port VNI", "POST", r["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.63.0.1",
			"networkLength": 24, "rtrPortVni": 5000}, 501, "rtrPortVni"},
		{"VTEP router port off-ramp", "POST", r["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.63.0.1",
			"networkLength": 24, "offRampVxlan": true}, 501, "offRampVxlan"},
		{"IPv6 router port address", "POST", r["ports"].(string), map[string]any{"type": "Router",
			"portSubnet": []string{"10.64.0.1/24", "2001:db8::1/64"}}, 501, "portSubnet[1]"},
		{"IPv6 address put on a router port", "PUT", rport["uri"].(string), map[string]any{"type": "Router",
			"portSubnet": []string{"2001:db8::1/64"}}, 501, "portSubnet[0]"},
		{"VLAN on a bound port", "PUT", bound["uri"].(string), map[string]any{"type": "Bridge", "vlanId": 20}, 501, "vlanId 20"},
		{"binding a port with a VLAN", "POST", host["ports"].(string), map[string]any{"portId": id(tagged), "interfaceName": "refusals1"},
			501, "vlanId 10"},
		{"flooding proxy weight", "PUT", host["uri"].(string), hostPut(5, 1, -1, false), 501, "floodingProxyWeight"},
		{"container weight", "PUT", host["uri"].(string), hostPut(1, 3, -1, false), 501, "containerWeight"},
		{"container limit", "PUT", host["uri"].(string), hostPut(1, 1, 4, false), 501, "containerLimit"},
		{"enforced container limit", "PUT", host["uri"].(string), hostPut(1, 1, -1, true), 501, "enforceContainerLimit"},
		{"host created with a weight", "POST", "/hosts", map[string]any{"id": uuid.NewString(), "name": "w", "floodingProxyWeight": 7},
			501, "floodingProxyWeight"},
		{"second bandwidth limit", "POST", policy["bwLimitRules"].(string), map[string]any{"maxKbps": 5}, 409, "bandwidth-limit rule " + id(bw)},
		{"second DSCP mark", "POST", policy["dscpRules"].(string), map[string]any{"dscpMark": 12}, 409, "DSCP rule"},
		{"bandwidth limit moved into a policy that has one", "PUT", otherBW["uri"].(string),
			map[string]any{"maxKbps": 2000, "policyId": id(policy)}, 409, "bandwidth-limit rule " + id(bw)},
		{"IPv6 group member", "POST", group["addrs"].(string), map[string]any{"addr": "2001:db8::5", "version": 6}, 501, "version 6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expectRefused(t, do(t, tc.method, tc.path, tc.body), tc.status, tc.field)
		})
	}
	// Nothing refused was stored.
	if l := expect(t, do(t, "GET", r["routes"].(string), nil), 200).list(t); len(l) != 1 {
		t.Errorf("routes %v, want the port's Local route only", l)
	}
	if l := expect(t, do(t, "GET", c["rules"].(string), nil), 200).list(t); len(l) != 0 {
		t.Errorf("rules %v, want none", l)
	}
	if l := expect(t, do(t, "GET", r["ports"].(string), nil), 200).list(t); len(l) != 1 {
		t.Errorf("router ports %v, want one", l)
	}
	if got := expect(t, do(t, "GET", tz["uri"].(string), nil), 200).obj(t); got["type"] != "vxlan" {
		t.Errorf("tunnel zone %v", got)
	}
	if got := expect(t, do(t, "GET", host["uri"].(string), nil), 200).obj(t); got["floodingProxyWeight"] != float64(1) ||
		got["containerLimit"] != float64(-1) {
		t.Errorf("host %v", got)
	}
	if got := expect(t, do(t, "GET", tagged["uri"].(string), nil), 200).obj(t); got["hostId"] != nil {
		t.Errorf("the tagged port was bound: %v", got)
	}
	if l := expect(t, do(t, "GET", policy["bwLimitRules"].(string), nil), 200).list(t); len(l) != 1 {
		t.Errorf("bandwidth limits %v, want one", l)
	}
	if l := expect(t, do(t, "GET", other["bwLimitRules"].(string), nil), 200).list(t); len(l) != 1 {
		t.Errorf("the moved rule left its policy: %v", l)
	}

	// What MidoNet's clients send by default is taken.
	for _, tc := range []struct {
		name string
		path string
		body any
	}{
		{"rule with python-midonetclient's nulls", c["rules"].(string), map[string]any{"type": "accept", "meterName": nil,
			"jumpChainId": nil, "invTpSrc": nil, "nwSrcLength": nil, "position": nil}},
		{"router port with null VTEP fields", r["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.65.0.1",
			"networkLength": 24, "rtrPortVni": nil, "offRampVxlan": nil}},
		{"router port with VNI 0", r["ports"].(string), map[string]any{"type": "Router", "portAddress": "10.66.0.1",
			"networkLength": 24, "rtrPortVni": 0, "offRampVxlan": false}},
		{"VXLAN tunnel zone", "/tunnel_zones", map[string]any{"name": "refusals-vxlan", "type": "vxlan"}},
	} {
		expect(t, do(t, "POST", tc.path, tc.body), http.StatusCreated)
	}
	expect(t, do(t, "PUT", host["uri"].(string), hostPut(1, 1, -1, false)), http.StatusOK)
	expect(t, do(t, "PUT", host["uri"].(string), hostPut(0, 0, 0, false)), http.StatusOK)
	expect(t, do(t, "PUT", bound["uri"].(string), map[string]any{"type": "Bridge", "vlanId": 0}), http.StatusNoContent)
	// A policy's inline rules hold one of each type.
	expectViolation(t, do(t, "POST", "/qos_policies", map[string]any{"name": "two", "rules": []any{
		map[string]any{"id": uuid.NewString(), "type": "bandwidth_limit", "max_kbps": 1},
		map[string]any{"id": uuid.NewString(), "type": "bandwidth_limit", "max_kbps": 2}}}), "rules[1].type")
}
