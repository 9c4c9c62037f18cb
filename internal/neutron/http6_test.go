package neutron_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/api"
	"github.com/midonet/midonet/internal/topology"
)

// TestSubnet6Endpoint posts an IPv6 subnet through the HTTP endpoint: 201
// and the DHCPv6 subnet in the MidoNet API; SLAAC answers 501.
func TestSubnet6Endpoint(t *testing.T) {
	srv := apiServer(t)
	nURL := srv.URL + api.BasePath + "/neutron"
	net := topology.NewID().String()
	if c := call(t, "POST", nURL+"/networks", "application/json", "", map[string]any{"id": net, "name": "n6"}); c.status != http.StatusCreated {
		t.Fatalf("POST network = %d %s", c.status, c.body)
	}
	sub := map[string]any{"id": topology.NewID().String(), "network_id": net, "ip_version": 6, "cidr": "2001:db8:5::/64",
		"gateway_ip": "2001:db8:5::1", "enable_dhcp": true, "ipv6_address_mode": "dhcpv6-stateful", "ipv6_ra_mode": nil,
		"dns_nameservers": []string{"2001:db8:5::53"}}
	if c := call(t, "POST", nURL+"/subnets", vnd("Subnet"), vnd("Subnet"), sub); c.status != http.StatusCreated ||
		!strings.Contains(string(c.body), `"ipv6_address_mode":"dhcpv6-stateful"`) {
		t.Fatalf("POST IPv6 subnet = %d %s", c.status, c.body)
	}
	g := call(t, "GET", srv.URL+api.BasePath+"/bridges/"+net+"/dhcpV6", "", "", nil)
	if g.status != 200 || !strings.Contains(string(g.body), `"prefix":"2001:db8:5::"`) || !strings.Contains(string(g.body), "2001:db8:5::53") {
		t.Errorf("GET the bridge's DHCPv6 subnets = %d %s", g.status, g.body)
	}
	sub["id"], sub["cidr"], sub["ipv6_address_mode"], sub["gateway_ip"] = topology.NewID().String(), "2001:db8:6::/64", "slaac", "2001:db8:6::1"
	if c := call(t, "POST", nURL+"/subnets", "application/json", "", sub); c.status != http.StatusNotImplemented ||
		!strings.Contains(string(c.body), "router advertisements") {
		t.Errorf("POST SLAAC subnet = %d %s, want 501 naming router advertisements", c.status, c.body)
	}
}
