package cli

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"
)

// requiredFlags declares fields' flags on cmd, all required.
func requiredFlags(cmd *cobra.Command, fields ...field) {
	for i := range fields {
		fields[i].addTo(cmd.Flags())
		cmd.MarkFlagRequired(fields[i].flag)
	}
}

// flagObject resolves the object a required kRef flag names.
func (s *session) flagObject(cmd *cobra.Command, flag string, k *kind) (Object, error) {
	fl := cmd.Flags().Lookup(flag)
	if fl == nil || !fl.Changed {
		return nil, fmt.Errorf("--%s is required", flag)
	}
	o, err := s.resolve(k, fl.Value.String())
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	return o, nil
}

// flagText returns a required plain flag's text.
func flagText(cmd *cobra.Command, flag string) (string, error) {
	fl := cmd.Flags().Lookup(flag)
	if fl == nil || !fl.Changed || fl.Value.String() == "" {
		return "", fmt.Errorf("--%s is required", flag)
	}
	return fl.Value.String(), nil
}

// member finds, in the collection at url, the entry whose key equals want,
// so the entry's own uri can be used.
func (s *session) member(url, media, key, want string) (Object, error) {
	list, err := s.client.List(s.ctx, url, media)
	if err != nil {
		return nil, err
	}
	for _, o := range list {
		if strings.EqualFold(o.Str(key), want) {
			return o, nil
		}
	}
	return nil, nil
}

// deleteMember removes the entry whose key equals want from the collection
// at url; what names the entry in the error when it is absent.
func (s *session) deleteMember(url, media, key, want, what string) error {
	o, err := s.member(url, media, key, want)
	if err != nil {
		return err
	}
	if o == nil {
		return fmt.Errorf("%s not found", what)
	}
	u, err := link(&kind{noun: what}, o, "uri")
	if err != nil {
		return err
	}
	return s.client.Delete(s.ctx, u)
}

func addPortVerbs(o *options, port *cobra.Command) {
	linkCmd := &cobra.Command{
		Use:     "link --port ID --peer ID",
		Short:   "Link two ports (a bridge or router port to another one)",
		Example: "  midonet port link --port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f --peer 5b1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			p, err := s.flagObject(cmd, "port", portKind)
			if err != nil {
				return err
			}
			peer, err := s.flagObject(cmd, "peer", portKind)
			if err != nil {
				return err
			}
			u, err := link(portKind, p, "link")
			if err != nil {
				return err
			}
			if _, err := s.client.Create(s.ctx, u, "PortLink-v1", Object{"peerId": peer.Str("id")}); err != nil {
				return err
			}
			return s.showAgain(p, portKind)
		}),
	}
	requiredFlags(linkCmd, refField("port", "", portKind, "port id"), refField("peer", "", portKind, "id of the port to link to"))

	unlink := &cobra.Command{
		Use:     "unlink --port ID",
		Short:   "Remove a port's link (both sides)",
		Example: "  midonet port unlink --port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			p, err := s.flagObject(cmd, "port", portKind)
			if err != nil {
				return err
			}
			u, err := link(portKind, p, "link")
			if err != nil {
				return err
			}
			if err := s.client.Delete(s.ctx, u); err != nil {
				return err
			}
			return s.showAgain(p, portKind)
		}),
	}
	requiredFlags(unlink, refField("port", "", portKind, "port id"))
	port.AddCommand(linkCmd, unlink)
}

// showAgain reads o back from its uri and prints it.
func (s *session) showAgain(o Object, k *kind) error {
	u, err := link(k, o, "uri")
	if err != nil {
		return err
	}
	fresh, err := s.client.Get(s.ctx, u, k.media)
	if err != nil {
		return err
	}
	return s.printObject(fresh)
}

func addPortGroupVerbs(o *options, pg *cobra.Command) {
	const media = "PortGroupPort-v1"
	cols := []column{col("PORT-GROUP", "portGroupId"), col("PORT", "portId")}
	groupFlag := refField("port-group", "", portGroupKind, "port group name or id")
	portFlag := refField("port", "", portKind, "port id")

	add := &cobra.Command{
		Use:     "add-port --port-group NAME|ID --port ID",
		Short:   "Add a port to a port group",
		Example: "  midonet port-group add-port --port-group web-servers --port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			g, err := s.flagObject(cmd, "port-group", portGroupKind)
			if err != nil {
				return err
			}
			p, err := s.flagObject(cmd, "port", portKind)
			if err != nil {
				return err
			}
			u, err := link(portGroupKind, g, "ports")
			if err != nil {
				return err
			}
			return s.createAndShow(u, media, Object{"portId": p.Str("id")})
		}),
	}
	requiredFlags(add, groupFlag, portFlag)

	remove := &cobra.Command{
		Use:     "remove-port --port-group NAME|ID --port ID",
		Short:   "Remove a port from a port group",
		Example: "  midonet port-group remove-port --port-group web-servers --port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			g, err := s.flagObject(cmd, "port-group", portGroupKind)
			if err != nil {
				return err
			}
			portID, err := s.flagID(cmd, "port", portKind)
			if err != nil {
				return err
			}
			u, err := link(portGroupKind, g, "ports")
			if err != nil {
				return err
			}
			return s.deleteMember(u, media, "portId", portID, fmt.Sprintf("port %s in port group %s", portID, g.Str("id")))
		}),
	}
	requiredFlags(remove, groupFlag, portFlag)

	ports := &cobra.Command{
		Use:     "ports --port-group NAME|ID",
		Short:   "List the ports of a port group",
		Example: "  midonet port-group ports --port-group web-servers",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			g, err := s.flagObject(cmd, "port-group", portGroupKind)
			if err != nil {
				return err
			}
			u, err := link(portGroupKind, g, "ports")
			if err != nil {
				return err
			}
			list, err := s.client.List(s.ctx, u, media)
			if err != nil {
				return err
			}
			return s.printList(cols, list)
		}),
	}
	requiredFlags(ports, groupFlag)
	pg.AddCommand(add, remove, ports)
}

// flagID returns the id a kRef flag names. A port that no longer exists
// may still be named by its UUID (to clean up a membership).
func (s *session) flagID(cmd *cobra.Command, flag string, k *kind) (string, error) {
	ref := cmd.Flags().Lookup(flag).Value.String()
	if isUUID(ref) {
		return strings.ToLower(ref), nil
	}
	id, err := s.resolveID(k, ref)
	if err != nil {
		return "", fmt.Errorf("--%s: %w", flag, err)
	}
	return id, nil
}

func addHostVerbs(o *options, host *cobra.Command) {
	const media = "HostInterfacePort-v1"
	cols := []column{col("HOST", "hostId"), col("PORT", "portId"), col("INTERFACE", "interfaceName")}
	hostFlag := refField("host", "", hostKind, "host name or id")
	portFlag := refField("port", "", portKind, "port id")

	bind := &cobra.Command{
		Use:   "bind --host NAME|ID --port ID --interface NAME",
		Short: "Bind a port to an interface of a host (the host must be in a tunnel zone)",
		Example: "  midonet tunnel-zone add-member --tunnel-zone overlay --host compute-1 --address 192.0.2.11\n" +
			"  midonet host bind --host compute-1 --port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f --interface vm1",
		Args: cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			h, err := s.flagObject(cmd, "host", hostKind)
			if err != nil {
				return err
			}
			p, err := s.flagObject(cmd, "port", portKind)
			if err != nil {
				return err
			}
			ifname, err := flagText(cmd, "interface")
			if err != nil {
				return err
			}
			u, err := link(hostKind, h, "ports")
			if err != nil {
				return err
			}
			return s.createAndShow(u, media, Object{"portId": p.Str("id"), "interfaceName": ifname})
		}),
	}
	requiredFlags(bind, hostFlag, portFlag)
	bind.Flags().String("interface", "", "name of the host's interface (e.g. a tap) the port is bound to")
	bind.MarkFlagRequired("interface")

	unbind := &cobra.Command{
		Use:     "unbind --host NAME|ID --port ID",
		Short:   "Remove a port's binding to a host",
		Example: "  midonet host unbind --host compute-1 --port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			h, err := s.flagObject(cmd, "host", hostKind)
			if err != nil {
				return err
			}
			portID, err := s.flagID(cmd, "port", portKind)
			if err != nil {
				return err
			}
			u, err := link(hostKind, h, "ports")
			if err != nil {
				return err
			}
			return s.deleteMember(u, media, "portId", portID, fmt.Sprintf("binding of port %s on host %s", portID, h.Str("name")))
		}),
	}
	requiredFlags(unbind, hostFlag, portFlag)

	bindings := &cobra.Command{
		Use:     "bindings --host NAME|ID",
		Short:   "List the port bindings of a host",
		Example: "  midonet host bindings --host compute-1 -o json",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			h, err := s.flagObject(cmd, "host", hostKind)
			if err != nil {
				return err
			}
			u, err := link(hostKind, h, "ports")
			if err != nil {
				return err
			}
			list, err := s.client.List(s.ctx, u, media)
			if err != nil {
				return err
			}
			return s.printList(cols, list)
		}),
	}
	requiredFlags(bindings, hostFlag)
	host.AddCommand(bind, unbind, bindings)
}

func addTunnelZoneVerbs(o *options, tz *cobra.Command) {
	const media = "TunnelZoneHost-v1"
	cols := []column{col("TUNNEL-ZONE", "tunnelZoneId"), col("HOST", "hostId"), col("ADDRESS", "ipAddress")}
	zoneFlag := refField("tunnel-zone", "", tunnelZoneKind, "tunnel zone name or id")
	hostFlag := refField("host", "", hostKind, "host name or id")

	add := &cobra.Command{
		Use:     "add-member --tunnel-zone NAME|ID --host NAME|ID --address IP",
		Short:   "Add a host to a tunnel zone with its tunnel endpoint address",
		Example: "  midonet tunnel-zone add-member --tunnel-zone overlay --host compute-1 --address 192.0.2.11",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			z, err := s.flagObject(cmd, "tunnel-zone", tunnelZoneKind)
			if err != nil {
				return err
			}
			h, err := s.flagObject(cmd, "host", hostKind)
			if err != nil {
				return err
			}
			addr, err := flagText(cmd, "address")
			if err != nil {
				return err
			}
			a, err := netip.ParseAddr(addr)
			if err != nil {
				return fmt.Errorf("--address %q: not an IP address", addr)
			}
			u, err := link(tunnelZoneKind, z, "hosts")
			if err != nil {
				return err
			}
			return s.createAndShow(u, media, Object{"hostId": h.Str("id"), "ipAddress": a.String()})
		}),
	}
	requiredFlags(add, zoneFlag, hostFlag)
	add.Flags().String("address", "", "the host's tunnel endpoint address in this zone")
	add.MarkFlagRequired("address")

	remove := &cobra.Command{
		Use:     "remove-member --tunnel-zone NAME|ID --host NAME|ID",
		Short:   "Remove a host from a tunnel zone",
		Example: "  midonet tunnel-zone remove-member --tunnel-zone overlay --host compute-1",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			z, err := s.flagObject(cmd, "tunnel-zone", tunnelZoneKind)
			if err != nil {
				return err
			}
			hostID, err := s.flagID(cmd, "host", hostKind)
			if err != nil {
				return err
			}
			u, err := link(tunnelZoneKind, z, "hosts")
			if err != nil {
				return err
			}
			return s.deleteMember(u, media, "hostId", hostID, fmt.Sprintf("host %s in tunnel zone %s", hostID, z.Str("name")))
		}),
	}
	requiredFlags(remove, zoneFlag, hostFlag)

	members := &cobra.Command{
		Use:     "members --tunnel-zone NAME|ID",
		Short:   "List the hosts of a tunnel zone",
		Example: "  midonet tunnel-zone members --tunnel-zone overlay",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			z, err := s.flagObject(cmd, "tunnel-zone", tunnelZoneKind)
			if err != nil {
				return err
			}
			u, err := link(tunnelZoneKind, z, "hosts")
			if err != nil {
				return err
			}
			list, err := s.client.List(s.ctx, u, media)
			if err != nil {
				return err
			}
			return s.printList(cols, list)
		}),
	}
	requiredFlags(members, zoneFlag)
	tz.AddCommand(add, remove, members)
}

func addIPAddrGroupVerbs(o *options, g *cobra.Command) {
	const media = "IpAddrGroupAddr-v1"
	cols := []column{col("GROUP", "ipAddrGroupId"), col("ADDRESS", "addr"), col("VERSION", "version")}
	groupFlag := refField("group", "", ipAddrGroupKind, "IP address group name or id")

	parseAddr := func(cmd *cobra.Command) (netip.Addr, error) {
		text, err := flagText(cmd, "addr")
		if err != nil {
			return netip.Addr{}, err
		}
		a, err := netip.ParseAddr(text)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("--addr %q: not an IP address", text)
		}
		return a, nil
	}

	add := &cobra.Command{
		Use:     "add-addr --group NAME|ID --addr IP",
		Short:   "Add an address to an IP address group",
		Example: "  midonet ip-addr-group add-addr --group web-clients --addr 10.0.0.5",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			grp, err := s.flagObject(cmd, "group", ipAddrGroupKind)
			if err != nil {
				return err
			}
			a, err := parseAddr(cmd)
			if err != nil {
				return err
			}
			u, err := link(ipAddrGroupKind, grp, "addrs")
			if err != nil {
				return err
			}
			version := 4
			if !a.Is4() {
				version = 6
			}
			return s.createAndShow(u, media, Object{"addr": a.String(), "version": version})
		}),
	}
	requiredFlags(add, groupFlag)
	add.Flags().String("addr", "", "IPv4 or IPv6 address")
	add.MarkFlagRequired("addr")

	remove := &cobra.Command{
		Use:     "remove-addr --group NAME|ID --addr IP",
		Short:   "Remove an address from an IP address group",
		Example: "  midonet ip-addr-group remove-addr --group web-clients --addr 10.0.0.5",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			grp, err := s.flagObject(cmd, "group", ipAddrGroupKind)
			if err != nil {
				return err
			}
			a, err := parseAddr(cmd)
			if err != nil {
				return err
			}
			u, err := link(ipAddrGroupKind, grp, "addrs")
			if err != nil {
				return err
			}
			return s.deleteMember(u, media, "addr", a.String(), fmt.Sprintf("address %s in group %s", a, grp.Str("name")))
		}),
	}
	requiredFlags(remove, groupFlag)
	remove.Flags().String("addr", "", "IPv4 or IPv6 address")
	remove.MarkFlagRequired("addr")

	addrs := &cobra.Command{
		Use:     "addrs --group NAME|ID",
		Short:   "List the addresses of an IP address group",
		Example: "  midonet ip-addr-group addrs --group web-clients",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			grp, err := s.flagObject(cmd, "group", ipAddrGroupKind)
			if err != nil {
				return err
			}
			u, err := link(ipAddrGroupKind, grp, "addrs")
			if err != nil {
				return err
			}
			list, err := s.client.List(s.ctx, u, media)
			if err != nil {
				return err
			}
			return s.printList(cols, list)
		}),
	}
	requiredFlags(addrs, groupFlag)
	g.AddCommand(add, remove, addrs)
}
