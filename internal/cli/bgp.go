package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

const (
	bgpPeerMedia    = "BgpPeer-v1"
	bgpNetworkMedia = "BgpNetwork-v1"
)

// bgpPeerKind is reached through routers' links and its own template.
var bgpPeerKind = &kind{noun: "BGP peer", template: "bgpPeerTemplate", media: bgpPeerMedia}

// bgpPeerFields are a peer's writable fields besides its address.
func bgpPeerFields() []field {
	return []field{
		{flag: "as", key: "asNumber", kind: kInt, usage: "the peer's AS number"},
		{flag: "keepalive", key: "keepAlive", kind: kInt, usage: "keepalive interval in seconds, 5-3600 (default 60)"},
		{flag: "hold-time", key: "holdTime", kind: kInt, usage: "hold time in seconds, 5-7200 (default 180)"},
		{flag: "connect-retry", key: "connectRetry", kind: kInt, usage: "connect retry interval in seconds, 5-3600 (default 120)"},
		{flag: "password", key: "password", usage: "TCP MD5 password (\"\" for none)"},
	}
}

// status reads a field of a peer's session status ("-" without one).
func status(o Object, key string) string {
	st, ok := o["status"].(map[string]any)
	if !ok {
		return "-"
	}
	return format(st[key])
}

// bgpPeerColumns show a peer with its session.
var bgpPeerColumns = []column{
	col("ID", "id"), col("ADDRESS", "address"), col("AS", "asNumber"),
	{"STATE", func(o Object) string { return status(o, "state") }},
	{"SINCE", func(o Object) string { return status(o, "since") }},
	{"PREFIXES", func(o Object) string { return status(o, "routes") }},
	{"PORT", func(o Object) string { return status(o, "portId") }},
	{"HOST", func(o Object) string { return status(o, "hostId") }},
	{"TIMERS", func(o Object) string {
		return format(o["keepAlive"]) + "/" + format(o["holdTime"]) + "/" + format(o["connectRetry"])
	}},
	{"MD5", func(o Object) string { return strconv.FormatBool(o.Str("password") != "") }},
}

var bgpNetworkColumns = []column{col("ID", "id"), prefixCol("NETWORK", "subnetAddress", "subnetLength")}

var learnedRouteColumns = []column{prefixCol("DST", "dstNetworkAddr", "dstNetworkLength"),
	col("GATEWAY", "nextHopGateway"), col("PORT", "nextHopPort"), col("WEIGHT", "weight"), col("ID", "id")}

// addRouterBGPVerbs adds `midonet router bgp ...`: the router's peers, its
// announced networks, the sessions' states and the routes learned.
func addRouterBGPVerbs(o *options, router *cobra.Command) {
	bgp := group("bgp", "BGP of a router: peers, announced networks, sessions and learned routes")
	routerFlag := refField("router", "", routerKind, "router name or id")
	peers := &children{o: o, parent: routerFlag, link: "bgpPeers", key: "address", media: bgpPeerMedia, columns: bgpPeerColumns}
	nets := &children{o: o, parent: routerFlag, link: "bgpNetworks", media: bgpNetworkMedia, columns: bgpNetworkColumns}

	show := &cobra.Command{
		Use:   "show --router NAME|ID",
		Short: "Show a router's BGP: its AS, peers and their sessions, networks, learned routes",
		Example: "  midonet router bgp show --router edge\n" +
			"  midonet router bgp show --router edge -o json",
		Args: cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			r, err := s.flagObject(cmd, "router", routerKind)
			if err != nil {
				return err
			}
			var ps, ns, routes []Object
			for _, l := range []struct {
				link, media string
				into        *[]Object
			}{{"bgpPeers", bgpPeerMedia, &ps}, {"bgpNetworks", bgpNetworkMedia, &ns}, {"routes", routeKind.media, &routes}} {
				u, err := link(routerKind, r, l.link)
				if err != nil {
					return err
				}
				if *l.into, err = s.client.List(s.ctx, u, l.media); err != nil {
					return err
				}
			}
			learned := learnedOnly(routes)
			if s.json {
				return writeJSON(s.out, Object{"router": r.Str("id"), "asNumber": r["asNumber"], "peers": orEmpty(ps),
					"networks": orEmpty(ns), "learnedRoutes": orEmpty(learned)})
			}
			fmt.Fprintf(s.out, "Router %s (%s), AS %s\n\nPeers:\n", r.Str("name"), r.Str("id"), format(r["asNumber"]))
			if err := writeTable(s.out, bgpPeerColumns, ps); err != nil {
				return err
			}
			printReasons(s.out, ps)
			fmt.Fprintln(s.out, "\nAnnounced networks:")
			if err := writeTable(s.out, bgpNetworkColumns, ns); err != nil {
				return err
			}
			fmt.Fprintf(s.out, "\nLearned routes (%d):\n", len(learned))
			return writeTable(s.out, learnedRouteColumns, learned)
		}),
	}
	requiredFlags(show, routerFlag)

	addPeer := peers.add(&cobra.Command{
		Use:     "add-peer --router NAME|ID --address IP --as N",
		Short:   "Add a BGP peer; the agent of the uplink port whose subnet holds its address speaks to it",
		Example: "  midonet router bgp add-peer --router edge --address 192.0.2.1 --as 65001 --keepalive 5 --hold-time 15 --password s3cret",
	}, func(s *session, cmd *cobra.Command) (Object, error) {
		a, err := flagAddr(cmd, "address")
		if err != nil {
			return nil, err
		}
		if !cmd.Flags().Changed("as") {
			return nil, fmt.Errorf("--as is required")
		}
		body := Object{"address": a.String()}
		return body, s.applyFields(cmd, bgpPeerFields(), body)
	})
	requiredText(addPeer, "address", "the peer's IPv4 address, on the subnet of one of the router's uplink ports")
	addFlags(addPeer, bgpPeerFields()...)

	updatePeer := &cobra.Command{
		Use:     "update-peer --peer ID",
		Short:   "Change a BGP peer (flags not given keep their value); its session follows at once",
		Example: "  midonet router bgp update-peer --peer 5b1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f --hold-time 30",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			p, err := s.flagObject(cmd, "peer", bgpPeerKind)
			if err != nil {
				return err
			}
			if err := s.applyFields(cmd, bgpPeerFields(), p); err != nil {
				return err
			}
			delete(p, "status") // read-only
			return s.putAndShow(p, bgpPeerKind)
		}),
	}
	requiredFlags(updatePeer, field{flag: "peer", kind: kRef, ref: bgpPeerKind, usage: "peer id"})
	addFlags(updatePeer, bgpPeerFields()...)

	removePeer := peers.remove(&cobra.Command{
		Use:     "remove-peer --router NAME|ID --address IP",
		Short:   "Remove a BGP peer: its session ends and its routes are withdrawn",
		Example: "  midonet router bgp remove-peer --router edge --address 192.0.2.1",
	}, func(_ *session, cmd *cobra.Command, r Object) (string, string, error) {
		a, err := flagAddr(cmd, "address")
		return a.String(), fmt.Sprintf("BGP peer %s of router %s", a, r.Str("name")), err
	})
	requiredText(removePeer, "address", "the peer's address")

	listPeers := peers.list(&cobra.Command{
		Use:     "peers --router NAME|ID",
		Short:   "List a router's BGP peers and the state of their sessions",
		Example: "  midonet router bgp peers --router edge",
	})

	addNet := nets.add(&cobra.Command{
		Use:     "add-network --router NAME|ID --network CIDR",
		Short:   "Announce a prefix to the router's BGP peers",
		Example: "  midonet router bgp add-network --router edge --network 203.0.113.0/24",
	}, func(_ *session, cmd *cobra.Command) (Object, error) {
		text, err := flagText(cmd, "network")
		if err != nil {
			return nil, err
		}
		p, err := parsePrefix(text)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("--network %q: want an IPv4 CIDR such as 203.0.113.0/24", text)
		}
		return Object{"subnetAddress": p.Masked().Addr().String(), "subnetLength": p.Bits()}, nil
	})
	requiredText(addNet, "network", "IPv4 prefix to announce")

	removeNet := &cobra.Command{
		Use:     "remove-network --router NAME|ID --network CIDR",
		Short:   "Stop announcing a prefix: the peers see it withdrawn",
		Example: "  midonet router bgp remove-network --router edge --network 203.0.113.0/24",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			r, err := s.flagObject(cmd, "router", routerKind)
			if err != nil {
				return err
			}
			text, err := flagText(cmd, "network")
			if err != nil {
				return err
			}
			want, err := parsePrefix(text)
			if err != nil {
				return err
			}
			u, err := nets.collection(r)
			if err != nil {
				return err
			}
			list, err := s.client.List(s.ctx, u, bgpNetworkMedia)
			if err != nil {
				return err
			}
			for _, n := range list {
				if prefix(n, "subnetAddress", "subnetLength") == want.Masked().String() {
					return s.deleteObject(n, &kind{noun: "BGP network"})
				}
			}
			return fmt.Errorf("router %s announces no network %s (see `midonet router bgp networks --router %s`)",
				r.Str("name"), want.Masked(), r.Str("id"))
		}),
	}
	requiredFlags(removeNet, routerFlag)
	requiredText(removeNet, "network", "announced prefix to withdraw")

	listNets := nets.list(&cobra.Command{
		Use:     "networks --router NAME|ID",
		Short:   "List the prefixes a router announces",
		Example: "  midonet router bgp networks --router edge",
	})

	routes := &cobra.Command{
		Use:     "routes --router NAME|ID",
		Short:   "List the routes a router learned by BGP",
		Example: "  midonet router bgp routes --router edge",
		Args:    cobra.NoArgs,
		RunE: o.run(func(s *session, cmd *cobra.Command, _ []string) error {
			r, err := s.flagObject(cmd, "router", routerKind)
			if err != nil {
				return err
			}
			u, err := link(routerKind, r, "routes")
			if err != nil {
				return err
			}
			all, err := s.client.List(s.ctx, u, routeKind.media)
			if err != nil {
				return err
			}
			return s.printList(learnedRouteColumns, learnedOnly(all))
		}),
	}
	requiredFlags(routes, routerFlag)

	bgp.AddCommand(show, addPeer, updatePeer, removePeer, listPeers, addNet, removeNet, listNets, routes)
	router.AddCommand(bgp)
}

func learnedOnly(routes []Object) []Object {
	var out []Object
	for _, r := range routes {
		if r["learned"] == true {
			out = append(out, r)
		}
	}
	return out
}

func orEmpty(l []Object) []Object {
	if l == nil {
		return []Object{}
	}
	return l
}

// printReasons prints why sessions are down, when their agents said.
func printReasons(w io.Writer, peers []Object) {
	for _, p := range peers {
		if r := status(p, "reason"); r != "-" && status(p, "state") != "Established" {
			fmt.Fprintf(w, "  %s: %s\n", p.Str("address"), strings.TrimSpace(r))
		}
	}
}
