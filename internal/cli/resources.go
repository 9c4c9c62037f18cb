package cli

import (
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// The resource kinds, with the Application keys they are reached through.
var (
	bridgeKind      = &kind{noun: "bridge", collection: "bridges", template: "bridgeTemplate", media: "Bridge-v4", named: true}
	routerKind      = &kind{noun: "router", collection: "routers", template: "routerTemplate", media: "Router-v3", named: true}
	portKind        = &kind{noun: "port", collection: "ports", template: "portTemplate", media: "Port-v3"}
	routeKind       = &kind{noun: "route", template: "routeTemplate", media: "Route-v1"}
	chainKind       = &kind{noun: "chain", collection: "chains", template: "chainTemplate", media: "Chain-v1", named: true}
	ruleKind        = &kind{noun: "rule", template: "ruleTemplate", media: "Rule-v2"}
	portGroupKind   = &kind{noun: "port-group", collection: "portGroups", template: "portGroupTemplate", media: "PortGroup-v1", named: true}
	hostKind        = &kind{noun: "host", collection: "hosts", template: "hostTemplate", media: "Host-v3", named: true}
	tunnelZoneKind  = &kind{noun: "tunnel-zone", collection: "tunnelZones", template: "tunnelZoneTemplate", media: "TunnelZone-v1", named: true}
	ipAddrGroupKind = &kind{noun: "ip-addr-group", collection: "ipAddrGroups", template: "ipAddrGroupTemplate", media: "IpAddrGroup-v1", named: true}
)

// refField is a flag naming one object of kind k by UUID or unique name.
func refField(flag, key string, k *kind, usage string) field {
	return field{flag: flag, key: key, kind: kRef, ref: k, usage: usage}
}

// commands returns every client verb.
func commands(o *options) []*cobra.Command {
	deviceFields := func(noun string) []field {
		return []field{
			{flag: "name", key: "name", usage: "name of the " + noun},
			{flag: "tenant", key: "tenantId", usage: "tenant (project) id"},
			{flag: "admin-state-up", key: "adminStateUp", kind: kBool, usage: "administrative state (default true)"},
			refField("inbound-filter", "inboundFilterId", chainKind, "chain applied to traffic entering the "+noun+" (\"none\" to detach)"),
			refField("outbound-filter", "outboundFilterId", chainKind, "chain applied to traffic leaving the "+noun+" (\"none\" to detach)"),
		}
	}
	// Bridges and routers are devices: they share their columns and most flags.
	deviceColumns := []column{col("ID", "id"), col("NAME", "name"), col("TENANT", "tenantId"), col("UP", "adminStateUp"),
		col("IN-FILTER", "inboundFilterId"), col("OUT-FILTER", "outboundFilterId")}
	bridgeParent := refField("bridge", "", bridgeKind, "bridge name or id")
	routerParent := refField("router", "", routerKind, "router name or id")
	chainParent := refField("chain", "", chainKind, "chain name or id")

	resources := []*resource{
		{
			kind: bridgeKind, use: "bridge", short: "Virtual L2 switches",
			columns: deviceColumns,
			fields:  append(deviceFields("bridge"), serviceDeviceFields("bridge", true)...),
			examples: map[string]string{
				"list":   "  midonet bridge list -o json",
				"show":   "  midonet bridge show tenant-net",
				"create": "  midonet bridge create --name tenant-net --tenant acme",
				"update": "  midonet bridge update tenant-net --inbound-filter web-in --admin-state-up=false",
				"delete": "  midonet bridge delete tenant-net",
			},
		},
		{
			kind: routerKind, use: "router", short: "Virtual L3 routers (and their BGP: router bgp ...)",
			columns: append(slices.Clone(deviceColumns), col("AS", "asNumber")),
			fields: append(append(append(deviceFields("router"), serviceDeviceFields("router", false)...),
				refField("load-balancer", "loadBalancerId", loadBalancerKind, "L4 load balancer of the router's VIPs (\"none\" to detach)")),
				field{flag: "as-number", key: "asNumber", kind: kInt, usage: "the router's BGP AS number (0: no BGP)"}),
			examples: map[string]string{
				"list":   "  midonet router list",
				"show":   "  midonet router show edge",
				"create": "  midonet router create --name edge --tenant acme",
				"update": "  midonet router update edge --name edge-1 --outbound-filter nat-out\n  midonet router update edge --as-number 65000",
				"delete": "  midonet router delete edge",
			},
		},
		{
			kind: portKind, use: "port", short: "Ports of bridges and routers (create, link, unlink)",
			columns: []column{col("ID", "id"), col("TYPE", "type"), col("DEVICE", "deviceId"), col("SUBNET", "portSubnet"),
				col("MAC", "portMac"), col("VLAN", "vlanId"), col("PEER", "peerId"), col("HOST", "hostId"),
				col("INTERFACE", "interfaceName"), col("UP", "adminStateUp"), col("ACTIVE", "active")},
			parents: []parent{
				{flag: &bridgeParent, link: "ports", body: func(b Object) { b["type"] = "Bridge" }},
				{flag: &routerParent, link: "ports", body: func(b Object) { b["type"] = "Router" }},
			},
			createOnly: []field{
				{flag: "address", kind: kPortAddr, usage: "router port: address and subnet, e.g. 10.0.0.1/24"},
				{flag: "mac", key: "portMac", kind: kMAC, usage: "router port: MAC address (default: random, Midokura OUI)"},
				{flag: "vlan", key: "vlanId", kind: kInt, usage: "bridge port: VLAN id carried by the port (0 = untagged)"},
			},
			fields: []field{
				{flag: "admin-state-up", key: "adminStateUp", kind: kBool, usage: "administrative state (default true)"},
				refField("inbound-filter", "inboundFilterId", chainKind, "chain applied to traffic entering through the port (\"none\" to detach)"),
				refField("outbound-filter", "outboundFilterId", chainKind, "chain applied to traffic leaving through the port (\"none\" to detach)"),
				{flag: "inbound-mirrors", key: "inboundMirrorIds", kind: kRefList, ref: mirrorKind, usage: "mirrors of the traffic entering, before the inbound filter"},
				{flag: "post-in-filter-mirrors", key: "postInFilterMirrorIds", kind: kRefList, ref: mirrorKind, usage: "mirrors of the traffic entering, after the inbound filter"},
				{flag: "pre-out-filter-mirrors", key: "preOutFilterMirrorIds", kind: kRefList, ref: mirrorKind, usage: "mirrors of the traffic leaving, before the outbound filter"},
				{flag: "outbound-mirrors", key: "outboundMirrorIds", kind: kRefList, ref: mirrorKind, usage: "mirrors of the traffic leaving, after the outbound filter"},
				refField("qos-policy", "qosPolicyId", qosPolicyKind, "QoS policy of the port, over its bridge's (\"none\" to detach)"),
			},
			examples: map[string]string{
				"list":   "  midonet port list --bridge tenant-net\n  midonet port list",
				"show":   "  midonet port show 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f",
				"create": "  midonet port create --bridge tenant-net\n  midonet port create --router edge --address 10.0.0.1/24",
				"update": "  midonet port update 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f --inbound-filter web-in",
				"delete": "  midonet port delete 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f",
			},
		},
		{
			kind: routeKind, use: "route", short: "Routes of a router",
			columns: []column{col("ID", "id"), col("TYPE", "type"), prefixCol("SRC", "srcNetworkAddr", "srcNetworkLength"),
				prefixCol("DST", "dstNetworkAddr", "dstNetworkLength"), col("NEXT-HOP-PORT", "nextHopPort"),
				col("GATEWAY", "nextHopGateway"), col("WEIGHT", "weight"), col("LEARNED", "learned")},
			parents: []parent{{flag: &routerParent, link: "routes"}},
			createOnly: []field{
				{flag: "type", key: "type", kind: kEnum, enum: []string{"Normal", "BlackHole", "Reject", "Local"}, usage: "route type (default Normal)"},
				{flag: "src", key: "srcNetworkAddr", key2: "srcNetworkLength", kind: kPrefix, usage: "source prefix (default 0.0.0.0/0)"},
				{flag: "dst", key: "dstNetworkAddr", key2: "dstNetworkLength", kind: kPrefix, usage: "destination prefix (required)"},
				refField("next-hop-port", "nextHopPort", portKind, "port of this router the traffic leaves through"),
				{flag: "gateway", key: "nextHopGateway", kind: kIP, usage: "next-hop gateway address"},
				{flag: "weight", key: "weight", kind: kInt, usage: "weight; the lowest wins among equal prefixes"},
			},
			required: []string{"dst"},
			noUpdate: true,
			prepare: func(_ *session, b Object) error {
				if b["type"] == nil {
					b["type"] = "Normal"
				}
				if b["srcNetworkAddr"] == nil {
					b["srcNetworkAddr"], b["srcNetworkLength"] = "0.0.0.0", 0
				}
				return nil
			},
			examples: map[string]string{
				"list":   "  midonet route list --router edge",
				"show":   "  midonet route show 7c1e5a3b-0f4d-4e2a-8b6c-1d2e3f4a5b6c",
				"create": "  midonet route create --router edge --dst 0.0.0.0/0 --next-hop-port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f --gateway 192.0.2.1",
				"delete": "  midonet route delete 7c1e5a3b-0f4d-4e2a-8b6c-1d2e3f4a5b6c",
			},
		},
		{
			kind: chainKind, use: "chain", short: "Rule chains (filters)",
			columns:    []column{col("ID", "id"), col("NAME", "name"), col("TENANT", "tenantId")},
			createOnly: []field{{flag: "name", key: "name", usage: "name of the chain"}, {flag: "tenant", key: "tenantId", usage: "tenant (project) id"}},
			noUpdate:   true,
			examples: map[string]string{
				"list":   "  midonet chain list",
				"show":   "  midonet chain show web-in",
				"create": "  midonet chain create --name web-in --tenant acme",
				"delete": "  midonet chain delete web-in",
			},
		},
		{
			kind: ruleKind, use: "rule", short: "Rules of a chain",
			columns:    []column{col("POSITION", "position"), col("ID", "id"), col("TYPE", "type"), {"ACTION", ruleAction}, {"MATCH", ruleMatch}},
			parents:    []parent{{flag: &chainParent, link: "rules"}},
			createOnly: ruleFields(),
			required:   []string{"type"},
			noUpdate:   true,
			examples: map[string]string{
				"list": "  midonet rule list --chain web-in",
				"show": "  midonet rule show 9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
				"create": "  midonet rule create --chain web-in --type accept --proto tcp --tp-dst 80 --nw-dst 10.0.0.0/24 --position 1\n" +
					"  midonet rule create --chain nat-out --type snat --flow-action accept --nat-target 192.0.2.10:1024-65535 --nw-src 10.0.0.0/24\n" +
					"  midonet rule create --chain web-in --type jump --jump-chain common-in",
				"delete": "  midonet rule delete 9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
			},
		},
		{
			kind: portGroupKind, use: "port-group", short: "Port groups (add-port, remove-port, ports)",
			columns: []column{col("ID", "id"), col("NAME", "name"), col("TENANT", "tenantId"), col("STATEFUL", "stateful")},
			fields: []field{
				{flag: "name", key: "name", usage: "name of the group"},
				{flag: "tenant", key: "tenantId", usage: "tenant (project) id"},
				{flag: "stateful", key: "stateful", kind: kBool, usage: "members share connection state"},
			},
			examples: map[string]string{
				"list":   "  midonet port-group list",
				"show":   "  midonet port-group show web-servers",
				"create": "  midonet port-group create --name web-servers --stateful",
				"update": "  midonet port-group update web-servers --stateful=false",
				"delete": "  midonet port-group delete web-servers",
			},
		},
		{
			kind: hostKind, use: "host", short: "Hosts running agents (bind, unbind, bindings)",
			columns: []column{col("ID", "id"), col("NAME", "name"), col("ALIVE", "alive"), col("ADDRESSES", "addresses")},
			createOnly: []field{
				{flag: "id", key: "id", usage: "host id, as the agent reports it (default: a new random UUID)"},
				{flag: "name", key: "name", usage: "host name"},
			},
			required: []string{"name"},
			// The host's writable fields are scheduling weights of hardware
			// VTEP flooding proxies and service containers, which this
			// implementation does not have: the API refuses any but the
			// defaults, so there is nothing to update.
			noUpdate: true,
			prepare: func(_ *session, b Object) error {
				if b["id"] == nil {
					b["id"] = newUUID()
				} else if id, _ := b["id"].(string); !isUUID(id) {
					return fmt.Errorf("--id %q: want a UUID", id)
				}
				return nil
			},
			examples: map[string]string{
				"list":   "  midonet host list",
				"show":   "  midonet host show compute-1",
				"create": "  midonet host create --name compute-1 --id 4d7c0e1a-2b3c-4d5e-8f90-a1b2c3d4e5f6",
				"delete": "  midonet host delete compute-1",
			},
		},
		{
			kind: tunnelZoneKind, use: "tunnel-zone", short: "Tunnel zones (add-member, remove-member, members)",
			columns: []column{col("ID", "id"), col("NAME", "name"), col("TYPE", "type")},
			fields: []field{
				{flag: "name", key: "name", usage: "name of the zone (unique)"},
				{flag: "type", key: "type", kind: kEnum, enum: []string{"vxlan"}, usage: "encapsulation (default vxlan; the API refuses MidoNet's gre and vtep, which no agent builds)"},
			},
			required: []string{"name"},
			prepare: func(_ *session, b Object) error {
				if b["type"] == nil {
					b["type"] = "vxlan"
				}
				return nil
			},
			examples: map[string]string{
				"list":   "  midonet tunnel-zone list",
				"show":   "  midonet tunnel-zone show overlay",
				"create": "  midonet tunnel-zone create --name overlay --type vxlan",
				"update": "  midonet tunnel-zone update overlay --name overlay-1",
				"delete": "  midonet tunnel-zone delete overlay",
			},
		},
		{
			kind: ipAddrGroupKind, use: "ip-addr-group", short: "IP address groups (add-addr, remove-addr, addrs)",
			columns:    []column{col("ID", "id"), col("NAME", "name"), {"ADDRESSES", ipGroupAddrs}},
			createOnly: []field{{flag: "name", key: "name", usage: "name of the group (required)"}},
			required:   []string{"name"},
			noUpdate:   true,
			examples: map[string]string{
				"list":   "  midonet ip-addr-group list",
				"show":   "  midonet ip-addr-group show web-clients",
				"create": "  midonet ip-addr-group create --name web-clients",
				"delete": "  midonet ip-addr-group delete web-clients",
			},
		},
	}

	resources = append(resources, serviceResources()...)
	resources = append(resources, traceRequestResource())
	cmds := make([]*cobra.Command, 0, len(resources)+2)
	byUse := map[string]*cobra.Command{}
	for _, r := range resources {
		c := r.command(o)
		byUse[r.use] = c
		cmds = append(cmds, c)
	}
	addPortVerbs(o, byUse["port"])
	addRouterBGPVerbs(o, byUse["router"])
	addPortGroupVerbs(o, byUse["port-group"])
	addHostVerbs(o, byUse["host"])
	addTunnelZoneVerbs(o, byUse["tunnel-zone"])
	addIPAddrGroupVerbs(o, byUse["ip-addr-group"])
	addTraceRequestVerbs(o, byUse["trace-request"])
	cmds = append(cmds, dhcpCommand(o), dhcpHostCommand(o), dhcp6Command(o), dhcp6HostCommand(o), traceCommand(o))
	return cmds
}

// ruleFields are the create flags of a rule: its type, action and the common
// condition fields.
func ruleFields() []field {
	return []field{
		{flag: "type", key: "type", kind: kEnum, enum: []string{"accept", "drop", "reject", "return", "jump", "dnat", "snat", "rev_dnat", "rev_snat", "l2_transform"}, usage: "rule type (required)"},
		{flag: "position", key: "position", kind: kInt, usage: "1-based place in the chain; the rule goes before the one there (default 1, the head)"},
		refField("jump-chain", "jumpChainId", chainKind, "jump: the chain to evaluate"),
		{flag: "flow-action", key: "flowAction", kind: kEnum, enum: []string{"accept", "continue", "return", "redirect"}, usage: "NAT and l2_transform rules: what follows the rule"},
		{flag: "nat-target", key: "natTargets", kind: kNATTargets, usage: "dnat/snat: addr[-addr][:port[-port]] (repeatable)"},
		{flag: "nw-src", key: "nwSrcAddress", key2: "nwSrcLength", kind: kPrefix, usage: "source IP prefix"},
		{flag: "inv-nw-src", key: "invNwSrc", kind: kBool, usage: "negate --nw-src"},
		{flag: "nw-dst", key: "nwDstAddress", key2: "nwDstLength", kind: kPrefix, usage: "destination IP prefix"},
		{flag: "inv-nw-dst", key: "invNwDst", kind: kBool, usage: "negate --nw-dst"},
		{flag: "proto", key: "nwProto", kind: kProto, usage: "IP protocol: tcp, udp, icmp, ... or a number"},
		{flag: "inv-proto", key: "invNwProto", kind: kBool, usage: "negate --proto"},
		{flag: "tp-src", key: "tpSrc", kind: kRange, usage: "L4 source port or range (ICMP: type)"},
		{flag: "inv-tp-src", key: "invTpSrc", kind: kBool, usage: "negate --tp-src"},
		{flag: "tp-dst", key: "tpDst", kind: kRange, usage: "L4 destination port or range (ICMP: code)"},
		{flag: "inv-tp-dst", key: "invTpDst", kind: kBool, usage: "negate --tp-dst"},
		{flag: "dl-type", key: "dlType", kind: kEthertype, usage: "ethertype: ipv4, arp, ipv6 or a number"},
		{flag: "dl-src", key: "dlSrc", kind: kMAC, usage: "source MAC"},
		{flag: "dl-dst", key: "dlDst", kind: kMAC, usage: "destination MAC"},
		{flag: "nw-tos", key: "nwTos", kind: kInt, usage: "IP TOS byte"},
		{flag: "in-ports", key: "inPorts", kind: kRefList, ref: portKind, usage: "ingress port ids (repeatable or comma-separated)"},
		{flag: "inv-in-ports", key: "invInPorts", kind: kBool, usage: "negate --in-ports"},
		{flag: "out-ports", key: "outPorts", kind: kRefList, ref: portKind, usage: "egress port ids (repeatable or comma-separated)"},
		{flag: "inv-out-ports", key: "invOutPorts", kind: kBool, usage: "negate --out-ports"},
		refField("port-group", "portGroup", portGroupKind, "packet entered through a port of this group"),
		refField("ip-addr-group-src", "ipAddrGroupSrc", ipAddrGroupKind, "source address in this IP address group"),
		refField("ip-addr-group-dst", "ipAddrGroupDst", ipAddrGroupKind, "destination address in this IP address group"),
		{flag: "match-forward-flow", key: "matchForwardFlow", kind: kBool, usage: "match only the forward direction of connections"},
		{flag: "match-return-flow", key: "matchReturnFlow", kind: kBool, usage: "match only return traffic of connections"},
		{flag: "cond-invert", key: "condInvert", kind: kBool, usage: "negate the whole condition"},
		{flag: "fragment-policy", key: "fragmentPolicy", kind: kEnum, enum: []string{"any", "header", "nonheader", "unfragmented"}, usage: "which IP fragments match (default chosen by the API)"},
	}
}

// ruleAction summarises what a rule does after matching.
func ruleAction(o Object) string {
	switch o.Str("type") {
	case "jump":
		if n := o.Str("jumpChainName"); n != "" {
			return "jump " + n
		}
		return "jump " + format(o["jumpChainId"])
	case "dnat", "snat":
		var targets []string
		if list, ok := o["natTargets"].([]any); ok {
			for _, t := range list {
				if m, ok := t.(map[string]any); ok {
					targets = append(targets, natTarget(Object(m)))
				}
			}
		}
		return format(o["flowAction"]) + " to " + strings.Join(targets, ",")
	}
	return format(o["flowAction"])
}

// natTarget renders a natTargets element as addr[-addr][:port[-port]].
func natTarget(t Object) string {
	s := t.Str("addressFrom")
	if to := t.Str("addressTo"); to != "" && to != s {
		s += "-" + to
	}
	from, to := format(t["portFrom"]), format(t["portTo"])
	if from != "0" || to != "0" {
		s += ":" + from
		if to != from {
			s += "-" + to
		}
	}
	return s
}

// ruleMatch summarises the condition fields a rule sets.
func ruleMatch(o Object) string {
	var parts []string
	add := func(name, value, inv string) {
		if value == "-" || value == "" {
			return
		}
		if inv != "" && o[inv] == true {
			name = "!" + name
		}
		parts = append(parts, name+"="+value)
	}
	portRange := func(key string) string {
		m, ok := o[key].(map[string]any)
		if !ok {
			return "-"
		}
		lo, hi := format(m["start"]), format(m["end"])
		if lo == hi {
			return lo
		}
		return lo + "-" + hi
	}
	add("dl-type", format(o["dlType"]), "invDlType")
	add("dl-src", format(o["dlSrc"]), "invDlSrc")
	add("dl-dst", format(o["dlDst"]), "invDlDst")
	add("proto", protoName(format(o["nwProto"])), "invNwProto")
	add("nw-src", prefix(o, "nwSrcAddress", "nwSrcLength"), "invNwSrc")
	add("nw-dst", prefix(o, "nwDstAddress", "nwDstLength"), "invNwDst")
	add("tp-src", portRange("tpSrc"), "invTpSrc")
	add("tp-dst", portRange("tpDst"), "invTpDst")
	add("in-ports", format(o["inPorts"]), "invInPorts")
	add("out-ports", format(o["outPorts"]), "invOutPorts")
	add("port-group", format(o["portGroup"]), "invPortGroup")
	add("ip-addr-group-src", format(o["ipAddrGroupSrc"]), "invIpAddrGroupSrc")
	add("ip-addr-group-dst", format(o["ipAddrGroupDst"]), "invIpAddrGroupDst")
	if o["matchForwardFlow"] == true {
		parts = append(parts, "forward-flow")
	}
	if o["matchReturnFlow"] == true {
		parts = append(parts, "return-flow")
	}
	if len(parts) == 0 {
		return "*"
	}
	s := strings.Join(parts, " ")
	if o["condInvert"] == true {
		s = "!(" + s + ")"
	}
	return s
}

// ipGroupAddrs lists the member addresses of an IP address group.
func ipGroupAddrs(o Object) string {
	list, _ := o["ipAddrPorts"].([]any)
	var addrs []string
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			addrs = append(addrs, Object(m).Str("ipAddress"))
		}
	}
	if len(addrs) == 0 {
		return "-"
	}
	return strings.Join(addrs, ",")
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// protoName turns an IP protocol number into the name --proto accepts.
func protoName(num string) string {
	for name, n := range protocols {
		if strconv.Itoa(n) == num {
			return name
		}
	}
	return num
}
