package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/midonet/midonet/internal/dhcp"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// The DHCPv6 resources (MidoNet's /bridges/{id}/dhcpV6): subnets keyed by
// prefix, hosts by client id, written in URLs with '-' for ':'.

type dhcp6Res = resource[topology.DHCPSubnetV6, *topology.DHCPSubnetV6]

func dhcp6SubnetURI(base string, d *topology.DHCPSubnetV6) string {
	return base + "/bridges/" + d.BridgeID.String() + "/dhcpV6/" + d.SubnetKey()
}

func dhcp6HostView(subnetURI string, h topology.DHCPHostV6) view {
	v := toView(h)
	v["uri"] = subnetURI + "/hostsV6/" + strings.ReplaceAll(derefString(h.ClientID), ":", "-")
	return v
}

// decodeHost6 reads and checks a DHCPv6 host body.
func decodeHost6(r *http.Request) (topology.DHCPHostV6, error) {
	var h topology.DHCPHostV6
	if err := decode(r, &h); err != nil {
		return h, err
	}
	if err := h.Validate(); err != nil {
		return h, err
	}
	if _, err := dhcp.ParseClientID6(*h.ClientID); err != nil {
		return h, &topology.ValidationError{Violations: []topology.Violation{{Property: "clientId", Message: err.Error()}}}
	}
	return h, nil
}

func (s *Server) dhcp6Routes() {
	subnets := &dhcp6Res{
		s: s, kind: topology.KindDHCPSubnetV6, media: []string{"DhcpV6Subnet-v1"},
		links: func(base string, d *topology.DHCPSubnetV6, v view) {
			u := dhcp6SubnetURI(base, d)
			v["uri"] = u
			v["hosts"] = u + "/hostsV6"
		},
	}
	loadSubnet := func(tx *nsdb.Tx, r *http.Request) (*topology.DHCPSubnetV6, error) {
		bid, err := pathID(r, "id")
		if err != nil {
			return nil, err
		}
		if err := requireExists(tx, topology.KindBridge, bid, http.StatusNotFound); err != nil {
			return nil, err
		}
		key := r.PathValue("subnet6")
		// The same subnet spelt another way (2001:DB8:0::_64) is found.
		if addr, length, ok := strings.Cut(key, "_"); ok {
			if n, err := strconv.Atoi(length); err == nil {
				probe := topology.DHCPSubnetV6{Prefix: &addr, PrefixLength: n}
				probe.Normalize()
				key = probe.SubnetKey()
			}
		}
		d, err := subnets.load(tx, topology.DHCPSubnetID(bid, key))
		if err != nil {
			return nil, notFound("bridge %s has no DHCPv6 subnet %s", bid, strings.Replace(key, "_", "/", 1))
		}
		return d, nil
	}
	s.handle("GET /bridges/{id}/dhcpV6", subList(s, subnets, topology.KindBridge,
		func(d *topology.DHCPSubnetV6, bid topology.ID) bool { return d.BridgeID == bid }))
	(&dhcpSubnets[topology.DHCPSubnetV6, *topology.DHCPSubnetV6]{
		res: subnets, path: "/bridges/{id}/dhcpV6", param: "subnet6", subnet: "DHCPv6 subnet",
		load: loadSubnet, uri: dhcp6SubnetURI,
		describe: func(d *topology.DHCPSubnetV6) string {
			return derefString(d.Prefix) + "/" + strconv.Itoa(d.PrefixLength)
		},
		attach: func(d *topology.DHCPSubnetV6, bridge topology.ID) { d.BridgeID, d.Hosts = bridge, nil },
		keepIdent: func(d, old *topology.DHCPSubnetV6) {
			d.BridgeID, d.Prefix, d.PrefixLength, d.Hosts = old.BridgeID, old.Prefix, old.PrefixLength, old.Hosts
		},
	}).register(s)

	(&dhcpHosts[*topology.DHCPSubnetV6, topology.DHCPHostV6]{
		path: "/bridges/{id}/dhcpV6/{subnet6}/hostsV6", param: "client", subnet: "DHCPv6 subnet", keyName: "client id",
		media: []string{"DhcpV6Host-v1"}, load: loadSubnet,
		hosts: func(d *topology.DHCPSubnetV6) *[]topology.DHCPHostV6 { return &d.Hosts },
		key:   func(h topology.DHCPHostV6) string { return *h.ClientID },
		hostURI: func(subnetURI, client string) string {
			return subnetURI + "/hostsV6/" + strings.ReplaceAll(client, ":", "-")
		},
		subnetURI: dhcp6SubnetURI, view: dhcp6HostView, decode: decodeHost6,
	}).register(s)
}
