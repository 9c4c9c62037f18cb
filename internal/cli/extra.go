package cli

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"
)

// addFlags declares fields' flags on cmd.
func addFlags(cmd *cobra.Command, fields ...field) {
	for i := range fields {
		fields[i].addTo(cmd.Flags())
	}
}

// requiredFlags declares fields' flags on cmd, all required.
func requiredFlags(cmd *cobra.Command, fields ...field) {
	addFlags(cmd, fields...)
	for i := range fields {
		cmd.MarkFlagRequired(fields[i].flag)
	}
}

// requiredText declares a required plain text flag on cmd, read with
// flagText.
func requiredText(cmd *cobra.Command, flag, usage string) {
	cmd.Flags().String(flag, "", usage)
	cmd.MarkFlagRequired(flag)
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

// flagAddr returns the IP address a required plain flag holds.
func flagAddr(cmd *cobra.Command, flag string) (netip.Addr, error) {
	text, err := flagText(cmd, flag)
	if err != nil {
		return netip.Addr{}, err
	}
	a, err := netip.ParseAddr(text)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("--%s %q: not an IP address", flag, text)
	}
	return a, nil
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
	return s.deleteObject(o, &kind{noun: what})
}

// children describes a collection held under a parent object — a port
// group's ports, a host's bindings, a tunnel zone's hosts, an IP address
// group's addresses, a bridge's DHCP subnets — and builds the verbs that add
// to, remove from and list it. Every verb resolves the parent its flag names, reads what else the
// command line says and only then follows the parent's link.
type children struct {
	o       *options
	parent  field  // kRef flag naming the parent object
	link    string // key of the parent's link to the collection
	key     string // field of an entry that remove matches
	media   string
	columns []column
}

// collection returns the URI of the collection under the parent p.
func (m *children) collection(p Object) (string, error) {
	return link(m.parent.ref, p, m.link)
}

// add makes cmd post the entry body builds and print it.
func (m *children) add(cmd *cobra.Command, body func(s *session, cmd *cobra.Command) (Object, error)) *cobra.Command {
	cmd.Args = cobra.NoArgs
	cmd.RunE = m.o.run(func(s *session, cmd *cobra.Command, _ []string) error {
		p, err := s.flagObject(cmd, m.parent.flag, m.parent.ref)
		if err != nil {
			return err
		}
		b, err := body(s, cmd)
		if err != nil {
			return err
		}
		u, err := m.collection(p)
		if err != nil {
			return err
		}
		return s.createAndShow(u, m.media, b)
	})
	requiredFlags(cmd, m.parent)
	return cmd
}

// remove makes cmd delete the entry whose key equals the want entry
// returns; what names it in the error when it is absent.
func (m *children) remove(cmd *cobra.Command, entry func(s *session, cmd *cobra.Command, p Object) (want, what string, err error)) *cobra.Command {
	cmd.Args = cobra.NoArgs
	cmd.RunE = m.o.run(func(s *session, cmd *cobra.Command, _ []string) error {
		p, err := s.flagObject(cmd, m.parent.flag, m.parent.ref)
		if err != nil {
			return err
		}
		want, what, err := entry(s, cmd, p)
		if err != nil {
			return err
		}
		u, err := m.collection(p)
		if err != nil {
			return err
		}
		return s.deleteMember(u, m.media, m.key, want, what)
	})
	requiredFlags(cmd, m.parent)
	return cmd
}

// list makes cmd print the collection.
func (m *children) list(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.NoArgs
	cmd.RunE = m.o.run(func(s *session, cmd *cobra.Command, _ []string) error {
		p, err := s.flagObject(cmd, m.parent.flag, m.parent.ref)
		if err != nil {
			return err
		}
		u, err := m.collection(p)
		if err != nil {
			return err
		}
		return s.printCollection(u, m.media, m.columns)
	})
	requiredFlags(cmd, m.parent)
	return cmd
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

func addPortGroupVerbs(o *options, pg *cobra.Command) {
	m := &children{
		o:       o,
		parent:  refField("port-group", "", portGroupKind, "port group name or id"),
		link:    "ports",
		key:     "portId",
		media:   "PortGroupPort-v1",
		columns: []column{col("PORT-GROUP", "portGroupId"), col("PORT", "portId")},
	}
	portFlag := refField("port", "", portKind, "port id")

	add := m.add(&cobra.Command{
		Use:     "add-port --port-group NAME|ID --port ID",
		Short:   "Add a port to a port group",
		Example: "  midonet port-group add-port --port-group web-servers --port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f",
	}, func(s *session, cmd *cobra.Command) (Object, error) {
		p, err := s.flagObject(cmd, "port", portKind)
		if err != nil {
			return nil, err
		}
		return Object{"portId": p.Str("id")}, nil
	})
	requiredFlags(add, portFlag)

	remove := m.remove(&cobra.Command{
		Use:     "remove-port --port-group NAME|ID --port ID",
		Short:   "Remove a port from a port group",
		Example: "  midonet port-group remove-port --port-group web-servers --port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f",
	}, func(s *session, cmd *cobra.Command, g Object) (string, string, error) {
		portID, err := s.flagID(cmd, "port", portKind)
		return portID, fmt.Sprintf("port %s in port group %s", portID, g.Str("id")), err
	})
	requiredFlags(remove, portFlag)

	ports := m.list(&cobra.Command{
		Use:     "ports --port-group NAME|ID",
		Short:   "List the ports of a port group",
		Example: "  midonet port-group ports --port-group web-servers",
	})
	pg.AddCommand(add, remove, ports)
}

func addHostVerbs(o *options, host *cobra.Command) {
	m := &children{
		o:       o,
		parent:  refField("host", "", hostKind, "host name or id"),
		link:    "ports",
		key:     "portId",
		media:   "HostInterfacePort-v1",
		columns: []column{col("HOST", "hostId"), col("PORT", "portId"), col("INTERFACE", "interfaceName")},
	}
	portFlag := refField("port", "", portKind, "port id")

	bind := m.add(&cobra.Command{
		Use:   "bind --host NAME|ID --port ID --interface NAME",
		Short: "Bind a port to an interface of a host (the host must be in a tunnel zone)",
		Example: "  midonet tunnel-zone add-member --tunnel-zone overlay --host compute-1 --address 192.0.2.11\n" +
			"  midonet host bind --host compute-1 --port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f --interface vm1",
	}, func(s *session, cmd *cobra.Command) (Object, error) {
		p, err := s.flagObject(cmd, "port", portKind)
		if err != nil {
			return nil, err
		}
		ifname, err := flagText(cmd, "interface")
		if err != nil {
			return nil, err
		}
		return Object{"portId": p.Str("id"), "interfaceName": ifname}, nil
	})
	requiredFlags(bind, portFlag)
	requiredText(bind, "interface", "name of the host's interface (e.g. a tap) the port is bound to")

	unbind := m.remove(&cobra.Command{
		Use:     "unbind --host NAME|ID --port ID",
		Short:   "Remove a port's binding to a host",
		Example: "  midonet host unbind --host compute-1 --port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f",
	}, func(s *session, cmd *cobra.Command, h Object) (string, string, error) {
		portID, err := s.flagID(cmd, "port", portKind)
		return portID, fmt.Sprintf("binding of port %s on host %s", portID, h.Str("name")), err
	})
	requiredFlags(unbind, portFlag)

	bindings := m.list(&cobra.Command{
		Use:     "bindings --host NAME|ID",
		Short:   "List the port bindings of a host",
		Example: "  midonet host bindings --host compute-1 -o json",
	})
	host.AddCommand(bind, unbind, bindings)
}

func addTunnelZoneVerbs(o *options, tz *cobra.Command) {
	m := &children{
		o:       o,
		parent:  refField("tunnel-zone", "", tunnelZoneKind, "tunnel zone name or id"),
		link:    "hosts",
		key:     "hostId",
		media:   "TunnelZoneHost-v1",
		columns: []column{col("TUNNEL-ZONE", "tunnelZoneId"), col("HOST", "hostId"), col("ADDRESS", "ipAddress")},
	}
	hostFlag := refField("host", "", hostKind, "host name or id")

	add := m.add(&cobra.Command{
		Use:     "add-member --tunnel-zone NAME|ID --host NAME|ID --address IP",
		Short:   "Add a host to a tunnel zone with its tunnel endpoint address",
		Example: "  midonet tunnel-zone add-member --tunnel-zone overlay --host compute-1 --address 192.0.2.11",
	}, func(s *session, cmd *cobra.Command) (Object, error) {
		h, err := s.flagObject(cmd, "host", hostKind)
		if err != nil {
			return nil, err
		}
		a, err := flagAddr(cmd, "address")
		if err != nil {
			return nil, err
		}
		return Object{"hostId": h.Str("id"), "ipAddress": a.String()}, nil
	})
	requiredFlags(add, hostFlag)
	requiredText(add, "address", "the host's tunnel endpoint address in this zone")

	remove := m.remove(&cobra.Command{
		Use:     "remove-member --tunnel-zone NAME|ID --host NAME|ID",
		Short:   "Remove a host from a tunnel zone",
		Example: "  midonet tunnel-zone remove-member --tunnel-zone overlay --host compute-1",
	}, func(s *session, cmd *cobra.Command, z Object) (string, string, error) {
		hostID, err := s.flagID(cmd, "host", hostKind)
		return hostID, fmt.Sprintf("host %s in tunnel zone %s", hostID, z.Str("name")), err
	})
	requiredFlags(remove, hostFlag)

	list := m.list(&cobra.Command{
		Use:     "members --tunnel-zone NAME|ID",
		Short:   "List the hosts of a tunnel zone",
		Example: "  midonet tunnel-zone members --tunnel-zone overlay",
	})
	tz.AddCommand(add, remove, list)
}

func addIPAddrGroupVerbs(o *options, g *cobra.Command) {
	m := &children{
		o:       o,
		parent:  refField("group", "", ipAddrGroupKind, "IP address group name or id"),
		link:    "addrs",
		key:     "addr",
		media:   "IpAddrGroupAddr-v1",
		columns: []column{col("GROUP", "ipAddrGroupId"), col("ADDRESS", "addr"), col("VERSION", "version")},
	}

	add := m.add(&cobra.Command{
		Use:     "add-addr --group NAME|ID --addr IP",
		Short:   "Add an address to an IP address group",
		Example: "  midonet ip-addr-group add-addr --group web-clients --addr 10.0.0.5",
	}, func(_ *session, cmd *cobra.Command) (Object, error) {
		a, err := flagAddr(cmd, "addr")
		if err != nil {
			return nil, err
		}
		version := 4
		if !a.Is4() {
			version = 6
		}
		return Object{"addr": a.String(), "version": version}, nil
	})
	requiredText(add, "addr", "IPv4 or IPv6 address")

	remove := m.remove(&cobra.Command{
		Use:     "remove-addr --group NAME|ID --addr IP",
		Short:   "Remove an address from an IP address group",
		Example: "  midonet ip-addr-group remove-addr --group web-clients --addr 10.0.0.5",
	}, func(_ *session, cmd *cobra.Command, grp Object) (string, string, error) {
		a, err := flagAddr(cmd, "addr")
		return a.String(), fmt.Sprintf("address %s in group %s", a, grp.Str("name")), err
	})
	requiredText(remove, "addr", "IPv4 or IPv6 address")

	addrs := m.list(&cobra.Command{
		Use:     "addrs --group NAME|ID",
		Short:   "List the addresses of an IP address group",
		Example: "  midonet ip-addr-group addrs --group web-clients",
	})
	g.AddCommand(add, remove, addrs)
}
