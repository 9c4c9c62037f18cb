package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/midonet/midonet/internal/dhcp"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

type dhcpRes = resource[topology.DHCPSubnet, *topology.DHCPSubnet]

func dhcpSubnetURI(base string, d *topology.DHCPSubnet) string {
	return base + "/bridges/" + d.BridgeID.String() + "/dhcp/" + d.SubnetKey()
}

func dhcpHostView(subnetURI string, h topology.DHCPHost) view {
	h.Normalize()
	v := toView(h)
	v["uri"] = subnetURI + "/hosts/" + derefString(h.MacAddr)
	return v
}

func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (s *Server) dhcpRoutes() {
	subnets := &dhcpRes{
		s: s, kind: topology.KindDHCPSubnet, media: []string{"DhcpSubnet-v2", "DhcpSubnet-v1"},
		defaults: func(d *topology.DHCPSubnet) { d.Enabled = true },
		links: func(base string, d *topology.DHCPSubnet, v view) {
			u := dhcpSubnetURI(base, d)
			v["uri"] = u
			v["hosts"] = u + "/hosts"
		},
	}
	// loadSubnet reads the subnet named in the URL of a bridge.
	loadSubnet := func(tx *nsdb.Tx, r *http.Request) (*topology.DHCPSubnet, error) {
		bid, err := pathID(r, "id")
		if err != nil {
			return nil, err
		}
		if err := requireExists(tx, topology.KindBridge, bid, http.StatusNotFound); err != nil {
			return nil, err
		}
		key := r.PathValue("subnet")
		d, err := subnets.load(tx, topology.DHCPSubnetID(bid, key))
		if err != nil {
			return nil, notFound("bridge %s has no DHCP subnet %s", bid, strings.Replace(key, "_", "/", 1))
		}
		return d, nil
	}
	s.handle("GET /bridges/{id}/dhcp", subList(s, subnets, topology.KindBridge,
		func(d *topology.DHCPSubnet, bid topology.ID) bool { return d.BridgeID == bid }))
	(&dhcpSubnets[topology.DHCPSubnet, *topology.DHCPSubnet]{
		res: subnets, path: "/bridges/{id}/dhcp", param: "subnet", subnet: "DHCP subnet",
		load: loadSubnet, uri: dhcpSubnetURI,
		describe: func(d *topology.DHCPSubnet) string {
			return derefString(d.SubnetPrefix) + "/" + strconv.Itoa(d.SubnetLength)
		},
		attach: func(d *topology.DHCPSubnet, bridge topology.ID) { d.BridgeID, d.Hosts = bridge, nil },
		keepIdent: func(d, old *topology.DHCPSubnet) {
			d.BridgeID, d.SubnetPrefix, d.SubnetLength, d.Hosts = old.BridgeID, old.SubnetPrefix, old.SubnetLength, old.Hosts
		},
	}).register(s)

	decodeHost := func(r *http.Request) (topology.DHCPHost, error) {
		var h topology.DHCPHost
		if err := decode(r, &h); err != nil {
			return h, err
		}
		if err := h.Validate(); err != nil {
			return h, err
		}
		// An option the agents could not encode would be left out of every
		// answer: refuse it here, saying why.
		var v []topology.Violation
		for i, o := range h.ExtraDHCPOpts {
			if _, _, err := dhcp.ParseOption4(o.OptName, o.OptValue); err != nil {
				v = append(v, topology.Violation{Property: "extraDhcpOpts[" + strconv.Itoa(i) + "]", Message: err.Error()})
			}
		}
		if len(v) > 0 {
			return h, &topology.ValidationError{Violations: v}
		}
		return h, nil
	}
	(&dhcpHosts[*topology.DHCPSubnet, topology.DHCPHost]{
		path: "/bridges/{id}/dhcp/{subnet}/hosts", param: "mac", subnet: "DHCP subnet", keyName: "MAC",
		media: []string{"DhcpHost-v2", "DhcpHost-v1"}, load: loadSubnet,
		hosts:     func(d *topology.DHCPSubnet) *[]topology.DHCPHost { return &d.Hosts },
		key:       func(h topology.DHCPHost) string { return *h.MacAddr },
		hostURI:   func(subnetURI, mac string) string { return subnetURI + "/hosts/" + mac },
		subnetURI: dhcpSubnetURI, view: dhcpHostView, decode: decodeHost,
	}).register(s)
}
