package cli

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/spf13/cobra"
)

const (
	dhcp6SubnetMedia = "DhcpV6Subnet-v1"
	dhcp6HostMedia   = "DhcpV6Host-v1"
)

var (
	dhcp6SubnetKind = &kind{noun: "DHCPv6 subnet", media: dhcp6SubnetMedia}
	dhcp6HostKind   = &kind{noun: "DHCPv6 host", media: dhcp6HostMedia}
)

// findSubnet6 returns the DHCPv6 subnet of bridge b whose prefix is cidr.
func (s *session) findSubnet6(b Object, cidr string) (Object, error) {
	want, err := netip.ParsePrefix(cidr)
	if err != nil || !want.Addr().Is6() {
		return nil, fmt.Errorf("%q is not an IPv6 prefix such as 2001:db8::/64", cidr)
	}
	u, err := link(bridgeKind, b, "dhcpSubnet6s")
	if err != nil {
		return nil, err
	}
	list, err := s.client.List(s.ctx, u, dhcp6SubnetMedia)
	if err != nil {
		return nil, err
	}
	for _, o := range list {
		a, err := netip.ParseAddr(o.Str("prefix"))
		bits, err2 := strconv.Atoi(format(o["prefixLength"]))
		if err != nil || err2 != nil {
			continue
		}
		if p, err := a.Prefix(bits); err == nil && p == want.Masked() {
			return o, nil
		}
	}
	return nil, fmt.Errorf("bridge %s has no DHCPv6 subnet %s (see `midonet dhcp6 list --bridge %s`)", b.Str("id"), cidr, b.Str("id"))
}

func dhcp6Command(o *options) *cobra.Command {
	bridgeFlag := refField("bridge", "", bridgeKind, "bridge name or id")
	subnets := &children{
		o: o, parent: bridgeFlag, link: "dhcpSubnet6s", media: dhcp6SubnetMedia,
		columns: []column{prefixCol("SUBNET", "prefix", "prefixLength"), col("DNS", "dnsServerAddrs")},
	}
	fields := []field{{flag: "dns", key: "dnsServerAddrs", kind: kIPList, usage: "DNS server IPv6 addresses (repeatable or comma-separated)"}}
	root := group("dhcp6", "DHCPv6 subnets of a bridge (hosts: see dhcp6-host)")
	list := subnets.list(&cobra.Command{
		Use:     "list --bridge NAME|ID",
		Short:   "List the DHCPv6 subnets of a bridge",
		Example: "  midonet dhcp6 list --bridge tenant-net",
	})
	create := subnets.add(&cobra.Command{
		Use:     "create --bridge NAME|ID --subnet CIDR",
		Short:   "Serve DHCPv6 on an IPv6 subnet of a bridge",
		Example: "  midonet dhcp6 create --bridge tenant-net --subnet 2001:db8:1::/64 --dns 2001:db8:1::53",
	}, func(s *session, cmd *cobra.Command) (Object, error) {
		body := Object{}
		all := append([]field{{flag: "subnet", key: "prefix", key2: "prefixLength", kind: kPrefix}}, fields...)
		if err := s.applyFields(cmd, all, body); err != nil {
			return nil, err
		}
		return body, nil
	})
	requiredFlags(create, field{flag: "subnet", kind: kPrefix, usage: "the subnet, e.g. 2001:db8:1::/64"})
	addFlags(create, fields...)
	del := &cobra.Command{
		Use:     "delete --bridge NAME|ID CIDR",
		Short:   "Stop serving DHCPv6 on a subnet (its hosts go too)",
		Example: "  midonet dhcp6 delete --bridge tenant-net 2001:db8:1::/64",
		Args:    cobra.ExactArgs(1),
		RunE: o.run(func(s *session, cmd *cobra.Command, args []string) error {
			b, err := s.flagObject(cmd, "bridge", bridgeKind)
			if err != nil {
				return err
			}
			sub, err := s.findSubnet6(b, args[0])
			if err != nil {
				return err
			}
			return s.deleteObject(sub, dhcp6SubnetKind)
		}),
	}
	requiredFlags(del, bridgeFlag)
	root.AddCommand(list, create, del)
	return root
}

func dhcp6HostCommand(o *options) *cobra.Command {
	cols := []column{col("CLIENT ID", "clientId"), col("ADDRESS", "fixedAddress"), col("NAME", "name")}
	bridgeFlag := refField("bridge", "", bridgeKind, "bridge name or id")
	subnetFlag := field{flag: "subnet", kind: kPrefix, usage: "the bridge's DHCPv6 subnet, e.g. 2001:db8:1::/64"}
	root := group("dhcp6-host", "Fixed DHCPv6 addresses (client DUID or MAC → IPv6) of a bridge's DHCPv6 subnet")
	hostsURL := func(s *session, cmd *cobra.Command) (string, error) {
		b, err := s.flagObject(cmd, "bridge", bridgeKind)
		if err != nil {
			return "", err
		}
		cidr, err := flagText(cmd, "subnet")
		if err != nil {
			return "", err
		}
		sub, err := s.findSubnet6(b, cidr)
		if err != nil {
			return "", err
		}
		return link(dhcp6SubnetKind, sub, "hosts")
	}
	list := &cobra.Command{
		Use:     "list --bridge NAME|ID --subnet CIDR",
		Short:   "List the DHCPv6 hosts of a subnet",
		Example: "  midonet dhcp6-host list --bridge tenant-net --subnet 2001:db8:1::/64",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			u, err := hostsURL(s, cmd)
			if err != nil {
				return err
			}
			return s.printCollection(u, dhcp6HostMedia, cols)
		}),
	}
	requiredFlags(list, bridgeFlag, subnetFlag)
	create := &cobra.Command{
		Use:   "create --bridge NAME|ID --subnet CIDR --client-id ID --ip ADDRESS",
		Short: "Give a DHCPv6 client a fixed address",
		Long: `Give a DHCPv6 client a fixed address. The client id is the client's DUID as
hex bytes (00:01:00:01:...), or a MAC address, which matches the MAC in the
client's DUID-LL or DUID-LLT (what dhclient -6 sends by default) or else the
Ethernet source of its requests.`,
		Example: "  midonet dhcp6-host create --bridge tenant-net --subnet 2001:db8:1::/64 --client-id 02:00:00:00:00:05 --ip 2001:db8:1::5",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			u, err := hostsURL(s, cmd)
			if err != nil {
				return err
			}
			body := Object{}
			if err := s.applyFields(cmd, []field{{flag: "client-id", key: "clientId"}, {flag: "ip", key: "fixedAddress", kind: kIP},
				{flag: "name", key: "name"}}, body); err != nil {
				return err
			}
			return s.createAndShow(u, dhcp6HostMedia, body)
		}),
	}
	requiredFlags(create, bridgeFlag, subnetFlag, field{flag: "client-id", usage: "the client's DUID or MAC"},
		field{flag: "ip", kind: kIP, usage: "the fixed IPv6 address"})
	addFlags(create, field{flag: "name", usage: "a name for the host"})
	del := &cobra.Command{
		Use:     "delete --bridge NAME|ID --subnet CIDR CLIENT-ID",
		Short:   "Remove a DHCPv6 host",
		Example: "  midonet dhcp6-host delete --bridge tenant-net --subnet 2001:db8:1::/64 02:00:00:00:00:05",
		Args:    cobra.ExactArgs(1),
		RunE: o.run(func(s *session, cmd *cobra.Command, args []string) error {
			u, err := hostsURL(s, cmd)
			if err != nil {
				return err
			}
			h, err := s.member(u, dhcp6HostMedia, "clientId", args[0])
			if err != nil {
				return err
			}
			if h == nil {
				return fmt.Errorf("no DHCPv6 host with client id %s in subnet %s", args[0], cmd.Flag("subnet").Value)
			}
			return s.deleteObject(h, dhcp6HostKind)
		}),
	}
	requiredFlags(del, bridgeFlag, subnetFlag)
	root.AddCommand(list, create, del)
	return root
}
