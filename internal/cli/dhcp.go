package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/midonet/midonet/internal/topology"
)

const (
	dhcpSubnetMedia = "DhcpSubnet-v2"
	dhcpHostMedia   = "DhcpHost-v2"
)

// The DHCP kinds are reached only through a bridge's links, so they have no
// collection or template of their own.
var (
	dhcpSubnetKind = &kind{noun: "DHCP subnet", media: dhcpSubnetMedia}
	dhcpHostKind   = &kind{noun: "DHCP host", media: dhcpHostMedia}
)

// dhcpSubnetFields are the writable fields of a DHCP subnet besides its prefix.
func dhcpSubnetFields() []field {
	return []field{
		{flag: "gateway", key: "defaultGateway", kind: kIP, usage: "default gateway offered to clients"},
		{flag: "server-addr", key: "serverAddr", kind: kIP, usage: "address the DHCP server answers from"},
		{flag: "dns", key: "dnsServerAddrs", kind: kIPList, usage: "DNS server addresses (repeatable or comma-separated)"},
		{flag: "mtu", key: "interfaceMTU", kind: kInt, usage: "interface MTU offered to clients"},
		{flag: "enabled", key: "enabled", kind: kBool, usage: "serve DHCP on the subnet (default true)"},
	}
}

// findSubnet returns the DHCP subnet of bridge b whose prefix is cidr,
// reached through the bridge's dhcpSubnets link.
func (s *session) findSubnet(b Object, cidr string) (Object, error) {
	want, err := parsePrefix(cidr)
	if err != nil {
		return nil, err
	}
	u, err := link(bridgeKind, b, "dhcpSubnets")
	if err != nil {
		return nil, err
	}
	list, err := s.client.List(s.ctx, u, dhcpSubnetMedia)
	if err != nil {
		return nil, err
	}
	for _, o := range list {
		a, err := netip.ParseAddr(o.Str("subnetPrefix"))
		if err != nil {
			continue
		}
		var bits int
		fmt.Sscan(format(o["subnetLength"]), &bits)
		if p, err := a.Prefix(bits); err == nil && p == want.Masked() {
			return o, nil
		}
	}
	return nil, fmt.Errorf("bridge %s has no DHCP subnet %s (see `midonet dhcp list --bridge %s`)", b.Str("id"), cidr, b.Str("id"))
}

func dhcpCommand(o *options) *cobra.Command {
	bridgeFlag := refField("bridge", "", bridgeKind, "bridge name or id")
	subnets := &children{
		o:      o,
		parent: bridgeFlag,
		link:   "dhcpSubnets",
		media:  dhcpSubnetMedia,
		columns: []column{prefixCol("SUBNET", "subnetPrefix", "subnetLength"), col("GATEWAY", "defaultGateway"),
			col("SERVER", "serverAddr"), col("DNS", "dnsServerAddrs"), col("MTU", "interfaceMTU"), col("ENABLED", "enabled")},
	}
	fields := dhcpSubnetFields()
	root := group("dhcp", "DHCP subnets of a bridge (hosts: see dhcp-host)")

	// withSubnet runs fn with the bridge and the subnet named by args[0].
	withSubnet := func(fn func(s *session, cmd *cobra.Command, b, sub Object) error) func(*cobra.Command, []string) error {
		return o.run(func(s *session, cmd *cobra.Command, args []string) error {
			b, err := s.flagObject(cmd, "bridge", bridgeKind)
			if err != nil {
				return err
			}
			sub, err := s.findSubnet(b, args[0])
			if err != nil {
				return err
			}
			return fn(s, cmd, b, sub)
		})
	}

	list := subnets.list(&cobra.Command{
		Use:     "list --bridge NAME|ID",
		Short:   "List the DHCP subnets of a bridge",
		Example: "  midonet dhcp list --bridge tenant-net",
	})

	show := &cobra.Command{
		Use:     "show --bridge NAME|ID CIDR",
		Short:   "Show one DHCP subnet",
		Example: "  midonet dhcp show --bridge tenant-net 10.0.0.0/24",
		Args:    cobra.ExactArgs(1),
		RunE: withSubnet(func(s *session, _ *cobra.Command, _, sub Object) error {
			return s.printObject(sub)
		}),
	}
	requiredFlags(show, bridgeFlag)

	create := subnets.add(&cobra.Command{
		Use:     "create --bridge NAME|ID --subnet CIDR",
		Short:   "Serve DHCP on a subnet of a bridge",
		Example: "  midonet dhcp create --bridge tenant-net --subnet 10.0.0.0/24 --gateway 10.0.0.1 --dns 192.0.2.53",
	}, func(s *session, cmd *cobra.Command) (Object, error) {
		body := Object{}
		all := append([]field{{flag: "subnet", key: "subnetPrefix", key2: "subnetLength", kind: kPrefix}}, fields...)
		if err := s.applyFields(cmd, all, body); err != nil {
			return nil, err
		}
		return body, nil
	})
	requiredFlags(create, field{flag: "subnet", kind: kPrefix, usage: "the subnet, e.g. 10.0.0.0/24"})
	addFlags(create, fields...)

	update := &cobra.Command{
		Use:     "update --bridge NAME|ID CIDR",
		Short:   "Change fields of a DHCP subnet (flags not given keep their value)",
		Example: "  midonet dhcp update --bridge tenant-net 10.0.0.0/24 --gateway 10.0.0.254 --enabled=false",
		Args:    cobra.ExactArgs(1),
		RunE: withSubnet(func(s *session, cmd *cobra.Command, _, sub Object) error {
			if err := s.applyFields(cmd, fields, sub); err != nil {
				return err
			}
			return s.putAndShow(sub, dhcpSubnetKind)
		}),
	}
	requiredFlags(update, bridgeFlag)
	addFlags(update, fields...)

	del := &cobra.Command{
		Use:     "delete --bridge NAME|ID CIDR",
		Short:   "Stop serving DHCP on a subnet (its hosts go too)",
		Example: "  midonet dhcp delete --bridge tenant-net 10.0.0.0/24",
		Args:    cobra.ExactArgs(1),
		RunE: withSubnet(func(s *session, _ *cobra.Command, _, sub Object) error {
			return s.deleteObject(sub, dhcpSubnetKind)
		}),
	}
	requiredFlags(del, bridgeFlag)
	root.AddCommand(list, show, create, update, del, leasesCommand(o))
	return root
}

// Lease is one row of `midonet dhcp leases`: a DHCP subnet of a bridge and
// one of its hosts (or none, for a subnet without hosts).
type Lease struct {
	Bridge     string   `json:"bridgeId"`
	BridgeName string   `json:"bridgeName,omitempty"`
	Subnet     string   `json:"subnet"`
	Enabled    bool     `json:"enabled"`
	Gateway    string   `json:"defaultGateway,omitempty"`
	Server     string   `json:"serverAddr"` // the server identifier clients see
	DNS        []string `json:"dnsServerAddrs,omitempty"`
	// MTU is the subnet's interfaceMTU, or "auto": the agents offer the
	// underlay's MTU minus the overlay's 50 bytes, shown as "auto (N)"
	// when the agents have published their hosts' interfaces.
	MTU     string   `json:"mtu"`
	Routes  []string `json:"opt121Routes,omitempty"`
	MAC     string   `json:"macAddr,omitempty"`
	IP      string   `json:"ipAddr,omitempty"`
	Name    string   `json:"name,omitempty"`
	Options []string `json:"extraDhcpOpts,omitempty"`
}

// leasesCommand lists subnets and hosts together: what each VM is offered.
func leasesCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "leases [--bridge NAME|ID]",
		Short: "List every static lease: each subnet with its hosts and what they are offered",
		Long: `List the DHCP subnets of one bridge (or of all bridges) together with their
hosts: one line per host with the address, name and extra options it gets, and
the subnet's gateway, server identifier, DNS servers, MTU and option-121
routes. The agent hosting a VM's port answers its DHCP requests from these
entries; a MAC without an entry, or a disabled subnet, gets no answer.`,
		Example: "  midonet dhcp leases\n  midonet dhcp leases --bridge tenant-net -o json",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			var bridges []Object
			if cmd.Flags().Changed("bridge") {
				b, err := s.flagObject(cmd, "bridge", bridgeKind)
				if err != nil {
					return err
				}
				bridges = []Object{b}
			} else {
				u, err := s.client.Collection(s.ctx, bridgeKind.collection)
				if err != nil {
					return err
				}
				if bridges, err = s.client.List(s.ctx, u, bridgeKind.media); err != nil {
					return err
				}
			}
			auto := "auto"
			if mtu := underlayMTU(s); mtu > 0 {
				auto = "auto (" + strconv.Itoa(mtu-50) + ")"
			}
			rows := []Lease{}
			for _, b := range bridges {
				subnets, err := fetchDHCP(s, topology.ID{}, b)
				if err != nil {
					return err
				}
				slices.SortFunc(subnets, func(x, y topology.DHCPSubnet) int { return cmp.Compare(x.SubnetKey(), y.SubnetKey()) })
				for _, d := range subnets {
					rows = append(rows, leaseRows(b, &d, auto)...)
				}
			}
			if s.json {
				return writeJSON(s.out, rows)
			}
			tw := tabwriter.NewWriter(s.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "BRIDGE\tSUBNET\tENABLED\tMAC\tIP\tNAME\tGATEWAY\tSERVER\tDNS\tMTU\tROUTES\tOPTIONS")
			for _, r := range rows {
				bridge := r.BridgeName
				if bridge == "" {
					bridge = r.Bridge
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", bridge, r.Subnet, r.Enabled,
					dash(r.MAC), dash(r.IP), dash(r.Name), dash(r.Gateway), r.Server, dash(strings.Join(r.DNS, ",")),
					r.MTU, dash(strings.Join(r.Routes, ",")), dash(strings.Join(r.Options, ",")))
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().String("bridge", "", "only this bridge (name or id)")
	return cmd
}

// underlayMTU computes, as the agents do, the underlay MTU from the tunnel
// zones' members and the interfaces their agents publish; 0 when unknown
// (or unreadable: the listing then says "auto" alone).
func underlayMTU(s *session) int {
	u, err := s.client.Collection(s.ctx, tunnelZoneKind.collection)
	if err != nil {
		return 0
	}
	zoneObjs, err := s.client.List(s.ctx, u, tunnelZoneKind.media)
	if err != nil {
		return 0
	}
	zones, err := decodeAs[topology.TunnelZone](zoneObjs)
	if err != nil {
		return 0
	}
	var ifaces []topology.Interface
	seen := map[topology.ID]bool{}
	for i := range zones {
		mu, err := link(tunnelZoneKind, zoneObjs[i], "hosts")
		if err != nil {
			continue
		}
		memberObjs, err := s.client.List(s.ctx, mu, "TunnelZoneHost-v1")
		if err != nil {
			continue
		}
		members, err := decodeAs[topology.TunnelZoneMember](memberObjs)
		if err != nil {
			continue
		}
		zones[i].Members = members
		for _, m := range members {
			if seen[m.HostID] {
				continue
			}
			seen[m.HostID] = true
			hu, err := s.client.Item(s.ctx, hostKind.template, m.HostID.String())
			if err != nil {
				continue
			}
			host, err := s.client.Get(s.ctx, hu, hostKind.media)
			if err != nil {
				continue
			}
			iu, err := link(hostKind, host, "interfaces")
			if err != nil {
				continue
			}
			objs, err := s.client.List(s.ctx, iu, "Interface-v1")
			if err != nil {
				continue
			}
			if list, err := decodeAs[topology.Interface](objs); err == nil {
				ifaces = append(ifaces, list...)
			}
		}
	}
	return topology.UnderlayMTU(zones, ifaces)
}

// leaseRows renders a subnet and its hosts.
func leaseRows(b Object, d *topology.DHCPSubnet, auto string) []Lease {
	base := Lease{Bridge: b.Str("id"), BridgeName: b.Str("name"), Subnet: deref(d.SubnetPrefix) + "/" + strconv.Itoa(d.SubnetLength),
		Enabled: d.Enabled, Gateway: deref(d.DefaultGateway), DNS: d.DNSServerAddrs, MTU: auto}
	// The server identifier the agents send: serverAddr, else the gateway,
	// else the subnet's first address.
	switch {
	case deref(d.ServerAddr) != "" && deref(d.ServerAddr) != "0.0.0.0":
		base.Server = *d.ServerAddr
	case base.Gateway != "":
		base.Server = base.Gateway
	default:
		if p, ok := topology.Prefix4(deref(d.SubnetPrefix), d.SubnetLength); ok {
			base.Server = p.Addr().Next().String()
		}
	}
	if d.InterfaceMTU != nil && *d.InterfaceMTU > 0 {
		base.MTU = strconv.Itoa(*d.InterfaceMTU)
	}
	for _, r := range d.Opt121Routes {
		base.Routes = append(base.Routes, fmt.Sprintf("%s/%d via %s", deref(r.DestinationPrefix), r.DestinationLength, deref(r.GatewayAddr)))
	}
	if len(base.Routes) > 0 && base.Gateway != "" {
		base.Routes = append(base.Routes, "0.0.0.0/0 via "+base.Gateway)
	}
	if len(d.Hosts) == 0 {
		return []Lease{base}
	}
	hosts := slices.Clone(d.Hosts)
	slices.SortFunc(hosts, func(x, y topology.DHCPHost) int { return cmp.Compare(deref(x.IPAddr), deref(y.IPAddr)) })
	out := make([]Lease, 0, len(hosts))
	for _, h := range hosts {
		r := base
		r.MAC, r.IP, r.Name = deref(h.MacAddr), deref(h.IPAddr), deref(h.Name)
		for _, o := range h.ExtraDHCPOpts {
			r.Options = append(r.Options, o.OptName+"="+o.OptValue)
		}
		out = append(out, r)
	}
	return out
}

const optionUsage = "extra DHCP option NAME=VALUE (repeatable), by name (dns-server, domain-search, " +
	"interface-mtu, ntp-server, bootfile-name, ...) or number: e.g. --option domain-search=example.org"

// applyOptions sets a host's extraDhcpOpts from the --option flags, when
// given.
func applyOptions(cmd *cobra.Command, h Object) error {
	if !cmd.Flags().Changed("option") {
		return nil
	}
	list, _ := cmd.Flags().GetStringArray("option")
	opts := []any{}
	for _, o := range list {
		if o == "" {
			continue
		}
		name, value, ok := strings.Cut(o, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return fmt.Errorf("--option %q: want NAME=VALUE, e.g. dns-server=10.0.0.2", o)
		}
		opts = append(opts, map[string]any{"optName": strings.TrimSpace(name), "optValue": value})
	}
	h["extraDhcpOpts"] = opts
	return nil
}

func dhcpHostCommand(o *options) *cobra.Command {
	cols := []column{col("MAC", "macAddr"), col("IP", "ipAddr"), col("NAME", "name"), {"OPTIONS", func(o Object) string {
		var parts []string
		if l, ok := o["extraDhcpOpts"].([]any); ok {
			for _, e := range l {
				if m, ok := e.(map[string]any); ok {
					parts = append(parts, format(m["optName"])+"="+format(m["optValue"]))
				}
			}
		}
		return dash(strings.Join(parts, ","))
	}}}
	bridgeFlag := refField("bridge", "", bridgeKind, "bridge name or id")
	subnetFlag := field{flag: "subnet", kind: kPrefix, usage: "the bridge's DHCP subnet, e.g. 10.0.0.0/24"}
	fields := []field{
		{flag: "ip", key: "ipAddr", kind: kIP, usage: "fixed address given to the host"},
		{flag: "name", key: "name", usage: "host name given to the host"},
	}
	root := group("dhcp-host", "Fixed DHCP assignments (MAC → IP) of a bridge's DHCP subnet")

	// hostsURL returns the hosts link of the subnet named by the flags.
	hostsURL := func(s *session, cmd *cobra.Command) (string, error) {
		b, err := s.flagObject(cmd, "bridge", bridgeKind)
		if err != nil {
			return "", err
		}
		cidr, err := flagText(cmd, "subnet")
		if err != nil {
			return "", err
		}
		sub, err := s.findSubnet(b, cidr)
		if err != nil {
			return "", err
		}
		return link(&kind{noun: "DHCP subnet " + cidr}, sub, "hosts")
	}
	withHost := func(fn func(s *session, cmd *cobra.Command, h Object) error) func(*cobra.Command, []string) error {
		return o.run(func(s *session, cmd *cobra.Command, args []string) error {
			u, err := hostsURL(s, cmd)
			if err != nil {
				return err
			}
			h, err := s.member(u, dhcpHostMedia, "macAddr", args[0])
			if err != nil {
				return err
			}
			if h == nil {
				return fmt.Errorf("no DHCP host with MAC %s in subnet %s", args[0], cmd.Flag("subnet").Value)
			}
			return fn(s, cmd, h)
		})
	}

	list := &cobra.Command{
		Use:     "list --bridge NAME|ID --subnet CIDR",
		Short:   "List the DHCP hosts of a subnet",
		Example: "  midonet dhcp-host list --bridge tenant-net --subnet 10.0.0.0/24",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			u, err := hostsURL(s, cmd)
			if err != nil {
				return err
			}
			return s.printCollection(u, dhcpHostMedia, cols)
		}),
	}
	requiredFlags(list, bridgeFlag, subnetFlag)

	show := &cobra.Command{
		Use:     "show --bridge NAME|ID --subnet CIDR MAC",
		Short:   "Show one DHCP host",
		Example: "  midonet dhcp-host show --bridge tenant-net --subnet 10.0.0.0/24 aa:bb:cc:00:00:01",
		Args:    cobra.ExactArgs(1),
		RunE: withHost(func(s *session, _ *cobra.Command, h Object) error {
			return s.printObject(h)
		}),
	}
	requiredFlags(show, bridgeFlag, subnetFlag)

	create := &cobra.Command{
		Use:     "create --bridge NAME|ID --subnet CIDR --mac MAC --ip IP",
		Short:   "Give a MAC address a fixed IP address",
		Example: "  midonet dhcp-host create --bridge tenant-net --subnet 10.0.0.0/24 --mac aa:bb:cc:00:00:01 --ip 10.0.0.5 --name vm1",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			u, err := hostsURL(s, cmd)
			if err != nil {
				return err
			}
			body := Object{}
			all := append([]field{{flag: "mac", key: "macAddr", kind: kMAC}}, fields...)
			if err := s.applyFields(cmd, all, body); err != nil {
				return err
			}
			if err := applyOptions(cmd, body); err != nil {
				return err
			}
			return s.createAndShow(u, dhcpHostMedia, body)
		}),
	}
	requiredFlags(create, bridgeFlag, subnetFlag, field{flag: "mac", kind: kMAC, usage: "the client's MAC address"})
	addFlags(create, fields...)
	create.Flags().StringArray("option", nil, optionUsage)
	create.MarkFlagRequired("ip")

	update := &cobra.Command{
		Use:     "update --bridge NAME|ID --subnet CIDR MAC",
		Short:   "Change a DHCP host (flags not given keep their value)",
		Example: "  midonet dhcp-host update --bridge tenant-net --subnet 10.0.0.0/24 aa:bb:cc:00:00:01 --ip 10.0.0.6",
		Args:    cobra.ExactArgs(1),
		RunE: withHost(func(s *session, cmd *cobra.Command, h Object) error {
			if err := s.applyFields(cmd, fields, h); err != nil {
				return err
			}
			if err := applyOptions(cmd, h); err != nil {
				return err
			}
			return s.putAndShow(h, dhcpHostKind)
		}),
	}
	requiredFlags(update, bridgeFlag, subnetFlag)
	addFlags(update, fields...)
	update.Flags().StringArray("option", nil, optionUsage+"; replaces the host's options, --option= clears them")

	del := &cobra.Command{
		Use:     "delete --bridge NAME|ID --subnet CIDR MAC",
		Short:   "Remove a DHCP host",
		Example: "  midonet dhcp-host delete --bridge tenant-net --subnet 10.0.0.0/24 aa:bb:cc:00:00:01",
		Args:    cobra.ExactArgs(1),
		RunE: withHost(func(s *session, _ *cobra.Command, h Object) error {
			return s.deleteObject(h, dhcpHostKind)
		}),
	}
	requiredFlags(del, bridgeFlag, subnetFlag)
	root.AddCommand(list, show, create, update, del)
	return root
}

// decodeAs converts objects the API listed into T.
func decodeAs[T any](objs []Object) ([]T, error) {
	out := make([]T, len(objs))
	for i, o := range objs {
		b, err := json.Marshal(o)
		if err == nil {
			err = json.Unmarshal(b, &out[i])
		}
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
	}
	return out, nil
}

// fetchDHCP reads a bridge's DHCP subnets with their hosts. A subnet
// deleted meanwhile is left out.
func fetchDHCP(s *session, bridge topology.ID, b Object) ([]topology.DHCPSubnet, error) {
	u, err := link(bridgeKind, b, "dhcpSubnets")
	if err != nil {
		return nil, err
	}
	objs, err := s.client.List(s.ctx, u, dhcpSubnetMedia)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	subnets, err := decodeAs[topology.DHCPSubnet](objs)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	out := subnets[:0]
	for i := range subnets {
		hu, err := link(dhcpSubnetKind, objs[i], "hosts")
		if err != nil {
			return nil, err
		}
		hostObjs, err := s.client.List(s.ctx, hu, dhcpHostMedia)
		if IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		hosts, err := decodeAs[topology.DHCPHost](hostObjs)
		if err != nil {
			return nil, fmt.Errorf("GET %s: %w", hu, err)
		}
		subnets[i].BridgeID, subnets[i].Hosts = bridge, hosts
		out = append(out, subnets[i])
	}
	return out, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
