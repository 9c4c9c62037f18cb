package trace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// ErrNotFound is what a Reader's errors wrap when the API answers 404.
var ErrNotFound = errors.New("not found")

// Reader reads MidoNet's REST API. The CLI reads it over HTTP; the
// cluster reads its own API in process, with the caller's credentials, so
// that a trace sees exactly what its caller may see.
type Reader interface {
	// Collection returns the URI of the API root's collection key, e.g.
	// "bridges".
	Collection(ctx context.Context, key string) (string, error)
	// Get reads the JSON at url, asking for the media type accept, into
	// out. Its error wraps ErrNotFound when the API answers 404.
	Get(ctx context.Context, url, accept string, out any) error
}

func vendor(name string) string { return "application/vnd.org.midonet." + name + "+json" }

// links are the URIs an item of the API points to.
type links map[string]any

func (l links) get(key string) (string, error) {
	if u, ok := l[key].(string); ok && u != "" {
		return u, nil
	}
	return "", fmt.Errorf("%v: the API gave no %q link", l["id"], key)
}

// listAs reads a collection and decodes each item into T, also returning
// each item's links.
func listAs[T any](ctx context.Context, rd Reader, url, media string) ([]T, []links, error) {
	var raws []json.RawMessage
	if err := rd.Get(ctx, url, vendor("collection."+media), &raws); err != nil {
		return nil, nil, err
	}
	items := make([]T, len(raws))
	ls := make([]links, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &items[i]); err != nil {
			return nil, nil, fmt.Errorf("GET %s: item %d is not a %s: %w", url, i, media, err)
		}
		if err := json.Unmarshal(raw, &ls[i]); err != nil {
			return nil, nil, fmt.Errorf("GET %s: item %d: %w", url, i, err)
		}
	}
	return items, ls, nil
}

// listRoot reads the Application root's collection key.
func listRoot[T any](ctx context.Context, rd Reader, key, media string) ([]T, []links, error) {
	u, err := rd.Collection(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	return listAs[T](ctx, rd, u, media)
}

// listSub reads the collection an item links to. An item deleted since it
// was listed has no sub-collection any more: ok is false, and the caller
// leaves it out, as if it had been deleted a moment earlier.
func listSub[T any](ctx context.Context, rd Reader, l links, key, media string) (items []T, ok bool, err error) {
	u, err := l.get(key)
	if err != nil {
		return nil, false, err
	}
	items, _, err = listAs[T](ctx, rd, u, media)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	return items, err == nil, err
}

type tableEntry struct {
	IP  string `json:"ip"`
	MAC string `json:"mac"`
}

// Load reads everything a simulation needs from the API.
func Load(ctx context.Context, rd Reader) (*Topology, error) {
	t := &Topology{ports: map[topology.ID]*topology.Port{}, devices: map[topology.ID]string{},
		kinds: map[topology.ID]string{}, rules: map[topology.ID]ruleRef{}}
	in := &t.in
	in.BridgeARP = true // as the agent runs

	// Ports first: a device created after this read has no ports we miss,
	// and ports of a device deleted meanwhile are left out below.
	ports, _, err := listRoot[topology.Port](ctx, rd, "ports", "Port-v3")
	if err != nil {
		return nil, err
	}
	bridges, bridgeLinks, err := listRoot[topology.Bridge](ctx, rd, "bridges", "Bridge-v4")
	if err != nil {
		return nil, err
	}
	routers, routerLinks, err := listRoot[topology.Router](ctx, rd, "routers", "Router-v3")
	if err != nil {
		return nil, err
	}
	chains, chainLinks, err := listRoot[topology.Chain](ctx, rd, "chains", "Chain-v1")
	if err != nil {
		return nil, err
	}
	groups, groupLinks, err := listRoot[topology.PortGroup](ctx, rd, "portGroups", "PortGroup-v1")
	if err != nil {
		return nil, err
	}
	in.IPAddrGroups, _, err = listRoot[topology.IPAddrGroup](ctx, rd, "ipAddrGroups", "IpAddrGroup-v1")
	if err != nil {
		return nil, err
	}

	for i, b := range bridges {
		t.kinds[b.ID], t.devices[b.ID] = "bridge", deref(b.Name)
		macs, ok, err := listSub[struct {
			MAC  string      `json:"macAddr"`
			Port topology.ID `json:"portId"`
			VLAN uint16      `json:"vlanId"`
		}](ctx, rd, bridgeLinks[i], "macTable", "MacPort-v2")
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		for _, e := range macs {
			if mac, ok := topology.ParseMAC(e.MAC); ok {
				in.MACTable = append(in.MACTable, sim.MACEntry{Bridge: b.ID, VLAN: e.VLAN, MAC: mac, Port: e.Port})
			}
		}
		arps, ok, err := listSub[tableEntry](ctx, rd, bridgeLinks[i], "arpTable", "IP4Mac-v1")
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		for _, e := range arps {
			ip, okIP := topology.ParseIPv4(e.IP)
			mac, okMAC := topology.ParseMAC(e.MAC)
			if okIP && okMAC {
				in.IPMACTable = append(in.IPMACTable, sim.IPMACEntry{Bridge: b.ID, IP: ip, MAC: mac})
			}
		}
		subnets, err := dhcpSubnets(ctx, rd, b.ID, bridgeLinks[i])
		if err != nil {
			return nil, err
		}
		in.DHCPSubnets = append(in.DHCPSubnets, subnets...)
		in.Bridges = append(in.Bridges, b)
	}
	for i, r := range routers {
		t.kinds[r.ID], t.devices[r.ID] = "router", deref(r.Name)
		routes, ok, err := listSub[topology.Route](ctx, rd, routerLinks[i], "routes", "Route-v1")
		if err != nil {
			return nil, err
		}
		if ok {
			in.Routers = append(in.Routers, r)
			in.Routes = append(in.Routes, routes...)
		}
		// The ARP entries the agents learned, where the server shows them.
		if u, err := routerLinks[i].get("uri"); err == nil {
			arps, _, err := listAs[tableEntry](ctx, rd, u+"/arp_table", "IP4Mac-v1")
			if err == nil {
				for _, e := range arps {
					ip, okIP := topology.ParseIPv4(e.IP)
					mac, okMAC := topology.ParseMAC(e.MAC)
					if okIP && okMAC {
						in.ARPTable = append(in.ARPTable, sim.ARPEntry{Router: r.ID, IP: ip, MAC: mac})
					}
				}
			}
		}
	}
	for i, c := range chains {
		t.kinds[c.ID], t.devices[c.ID] = "chain", deref(c.Name)
		rules, ok, err := listSub[topology.Rule](ctx, rd, chainLinks[i], "rules", "Rule-v2")
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		// The API lists a chain's rules in evaluation order; the chain's
		// own rule list is not part of its JSON.
		c.RuleIDs = make([]topology.ID, len(rules))
		for j, r := range rules {
			c.RuleIDs[j] = r.ID
			t.kinds[r.ID] = "rule"
			t.rules[r.ID] = ruleRef{chain: c.ID, position: j + 1}
		}
		in.Chains = append(in.Chains, c)
		in.Rules = append(in.Rules, rules...)
	}
	for i, g := range groups {
		members, ok, err := listSub[struct {
			Port topology.ID `json:"portId"`
		}](ctx, rd, groupLinks[i], "ports", "PortGroupPort-v1")
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		g.PortIDs = make([]topology.ID, len(members))
		for j, m := range members {
			g.PortIDs[j] = m.Port
		}
		in.PortGroups = append(in.PortGroups, g)
	}

	kept := map[topology.ID]bool{}
	for _, b := range in.Bridges {
		kept[b.ID] = true
	}
	for _, r := range in.Routers {
		kept[r.ID] = true
	}
	for i := range ports {
		p := &ports[i]
		if !kept[p.DeviceID] {
			continue
		}
		in.Ports = append(in.Ports, *p)
	}
	for i := range in.Ports {
		p := &in.Ports[i]
		t.ports[p.ID], t.kinds[p.ID] = p, "port"
		// The API cannot tell whether the host's agent runs: take every
		// bound port as active, as it is once its agent is up.
		if p.IsExterior() {
			in.PortBinding = append(in.PortBinding, sim.PortBinding{Port: p.ID, Host: *p.HostID, TunnelKey: uint32(p.TunnelKey)})
		}
	}
	if err := loadServices(ctx, rd, in); err != nil {
		return nil, err
	}
	return t, nil
}

// dhcpSubnets reads a bridge's DHCP subnets with their hosts. A subnet
// deleted meanwhile is left out.
func dhcpSubnets(ctx context.Context, rd Reader, bridge topology.ID, l links) ([]topology.DHCPSubnet, error) {
	u, err := l.get("dhcpSubnets")
	if err != nil {
		return nil, err
	}
	subnets, subnetLinks, err := listAs[topology.DHCPSubnet](ctx, rd, u, "DhcpSubnet-v2")
	if errors.Is(err, ErrNotFound) {
		return nil, nil // the bridge went meanwhile
	}
	if err != nil {
		return nil, err
	}
	out := subnets[:0]
	for i := range subnets {
		hosts, ok, err := listSub[topology.DHCPHost](ctx, rd, subnetLinks[i], "hosts", "DhcpHost-v2")
		if err != nil {
			return nil, err
		}
		if ok {
			subnets[i].BridgeID, subnets[i].Hosts = bridge, hosts
			out = append(out, subnets[i])
		}
	}
	return out, nil
}

// loadServices reads what the agents simulate besides devices and chains:
// load balancers, mirrors, QoS DSCP marks and L2 insertions.
func loadServices(ctx context.Context, rd Reader, in *sim.SnapshotInput) error {
	var err error
	if in.LoadBalancers, _, err = listRoot[topology.LoadBalancer](ctx, rd, "loadBalancers", "LoadBalancer-v1"); err != nil {
		return err
	}
	if in.Pools, _, err = listRoot[topology.Pool](ctx, rd, "pools", "Pool-v1"); err != nil {
		return err
	}
	if in.PoolMembers, _, err = listRoot[topology.PoolMember](ctx, rd, "poolMembers", "PoolMember-v1"); err != nil {
		return err
	}
	if in.VIPs, _, err = listRoot[topology.VIP](ctx, rd, "vips", "VIP-v1"); err != nil {
		return err
	}
	if in.Mirrors, _, err = listRoot[topology.Mirror](ctx, rd, "mirrors", "Mirror-v1"); err != nil {
		return err
	}
	if in.L2Insertions, _, err = listRoot[topology.L2Insertion](ctx, rd, "l2insertions", "L2Insertion-v1"); err != nil {
		return err
	}
	_, policies, err := listRoot[topology.QOSPolicy](ctx, rd, "qosPolicies", "QOSPolicy-v1")
	if err != nil {
		return err
	}
	for _, pol := range policies {
		dscp, ok, err := listSub[topology.QOSDSCPRule](ctx, rd, pol, "dscpRules", "QOSRuleDSCP-v1")
		if err != nil {
			return err
		}
		if ok {
			in.DSCPRules = append(in.DSCPRules, dscp...)
		}
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// routerPortPrefix returns a router port's address and subnet.
func routerPortPrefix(p *topology.Port) (netip.Prefix, bool) {
	for _, sub := range p.PortSubnet {
		if pfx, err := netip.ParsePrefix(sub); err == nil && pfx.Addr().Is4() {
			return pfx, true
		}
	}
	if p.PortAddress != nil {
		if a, ok := topology.ParseIPv4(*p.PortAddress); ok {
			return netip.PrefixFrom(a, p.NetworkLength), true
		}
	}
	return netip.Prefix{}, false
}
