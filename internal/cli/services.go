package cli

import (
	"slices"
)

// The service kinds: load balancing, mirrors, QoS and L2 insertion.
var (
	loadBalancerKind  = &kind{noun: "load-balancer", collection: "loadBalancers", template: "loadBalancerTemplate", media: "LoadBalancer-v1"}
	poolKind          = &kind{noun: "pool", collection: "pools", template: "poolTemplate", media: "Pool-v1"}
	poolMemberKind    = &kind{noun: "pool-member", collection: "poolMembers", template: "poolMemberTemplate", media: "PoolMember-v1"}
	vipKind           = &kind{noun: "vip", collection: "vips", template: "vipTemplate", media: "VIP-v1"}
	healthMonitorKind = &kind{noun: "health-monitor", collection: "healthMonitors", template: "healthMonitorTemplate", media: "HealthMonitor-v1"}
	mirrorKind        = &kind{noun: "mirror", collection: "mirrors", template: "mirrorTemplate", media: "Mirror-v1"}
	qosPolicyKind     = &kind{noun: "qos-policy", collection: "qosPolicies", template: "qosPolicyTemplate", media: "QOSPolicy-v1", named: true}
	qosBWRuleKind     = &kind{noun: "qos-bw-limit", template: "qosBwLimitRuleTemplate", media: "QOSRuleBWLimit-v1"}
	qosDSCPRuleKind   = &kind{noun: "qos-dscp", template: "qosDscpRuleTemplate", media: "QOSRuleDSCP-v1"}
	l2InsertionKind   = &kind{noun: "l2-insertion", collection: "l2insertions", template: "l2InsertionTemplate", media: "L2Insertion-v1"}
)

// serviceDeviceFields are the flags that attach services to a bridge or a
// router.
func serviceDeviceFields(noun string, qos bool) []field {
	f := []field{
		{flag: "inbound-mirrors", key: "inboundMirrorIds", kind: kRefList, ref: mirrorKind, usage: "mirrors of the traffic entering the " + noun + " (repeatable; \"\" to clear)"},
		{flag: "outbound-mirrors", key: "outboundMirrorIds", kind: kRefList, ref: mirrorKind, usage: "mirrors of the traffic leaving the " + noun + " (repeatable; \"\" to clear)"},
	}
	if qos {
		f = append(f, refField("qos-policy", "qosPolicyId", qosPolicyKind, "QoS policy of the "+noun+"'s ports that have none of their own (\"none\" to detach)"))
	}
	return f
}

// mirrorConditionFlags are the rule flags a mirror's condition takes.
var mirrorConditionFlags = []string{"nw-src", "inv-nw-src", "nw-dst", "inv-nw-dst", "proto", "inv-proto", "tp-src",
	"inv-tp-src", "tp-dst", "inv-tp-dst", "dl-type", "dl-src", "dl-dst", "nw-tos", "in-ports", "inv-in-ports",
	"out-ports", "inv-out-ports", "match-forward-flow", "match-return-flow", "cond-invert", "fragment-policy"}

func mirrorConditionFields() []field {
	var out []field
	for _, f := range ruleFields() {
		if slices.Contains(mirrorConditionFlags, f.flag) {
			out = append(out, f)
		}
	}
	return out
}

// serviceResources are the service verbs.
func serviceResources() []*resource {
	lbParent := refField("load-balancer", "", loadBalancerKind, "load balancer id")
	poolParent := refField("pool", "", poolKind, "pool id")
	policyParent := refField("policy", "", qosPolicyKind, "QoS policy name or id")
	upField := field{flag: "admin-state-up", key: "adminStateUp", kind: kBool, usage: "administrative state (default true)"}
	condFields := mirrorConditionFields()
	return []*resource{
		{
			kind: loadBalancerKind, use: "load-balancer", aliases: []string{"lb"},
			short:   "L4 load balancers (attach one to a router with router update --load-balancer)",
			columns: []column{col("ID", "id"), col("ROUTER", "routerId"), col("UP", "adminStateUp")},
			fields:  []field{upField},
			examples: map[string]string{
				"show":   "  midonet load-balancer show 5c0ffee0-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"list":   "  midonet load-balancer list",
				"create": "  midonet load-balancer create\n  midonet router update edge --load-balancer 5c0ffee0-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"update": "  midonet load-balancer update 5c0ffee0-1b2c-4d3e-8f40-a1b2c3d4e5f6 --admin-state-up=false",
				"delete": "  midonet load-balancer delete 5c0ffee0-1b2c-4d3e-8f40-a1b2c3d4e5f6",
			},
		},
		{
			kind: poolKind, use: "pool", short: "Pools of back ends of a load balancer",
			columns: []column{col("ID", "id"), col("LOAD-BALANCER", "loadBalancerId"), col("HEALTH-MONITOR", "healthMonitorId"),
				col("UP", "adminStateUp"), col("STATUS", "status")},
			parents: []parent{{flag: &lbParent, link: "pools"}},
			fields: []field{
				refField("health-monitor", "healthMonitorId", healthMonitorKind, "health monitor checking the members (\"none\" to detach)"),
				upField,
			},
			prepare: func(_ *session, b Object) error {
				b["lbMethod"] = "ROUND_ROBIN"
				return nil
			},
			examples: map[string]string{
				"show":   "  midonet pool show 0d15ea5e-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"list":   "  midonet pool list --load-balancer 5c0ffee0-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"create": "  midonet pool create --load-balancer 5c0ffee0-1b2c-4d3e-8f40-a1b2c3d4e5f6 --health-monitor 7e57ab1e-0000-4000-8000-000000000001",
				"update": "  midonet pool update 0d15ea5e-1b2c-4d3e-8f40-a1b2c3d4e5f6 --admin-state-up=false",
				"delete": "  midonet pool delete 0d15ea5e-1b2c-4d3e-8f40-a1b2c3d4e5f6",
			},
		},
		{
			kind: poolMemberKind, use: "pool-member", aliases: []string{"member"}, short: "Back ends of a pool",
			columns: []column{col("ID", "id"), col("POOL", "poolId"), col("ADDRESS", "address"), col("PORT", "protocolPort"),
				col("WEIGHT", "weight"), col("UP", "adminStateUp"), col("STATUS", "status")},
			parents: []parent{{flag: &poolParent, link: "poolMembers"}},
			createOnly: []field{
				{flag: "address", key: "address", kind: kIP, usage: "back end's IPv4 address (required)"},
				{flag: "protocol-port", key: "protocolPort", kind: kInt, usage: "back end's TCP port (required)"},
			},
			required: []string{"address", "protocol-port"},
			fields: []field{
				{flag: "weight", key: "weight", kind: kInt, usage: "share of new connections, relative to the others' (default 1; 0 takes none)"},
				upField,
			},
			examples: map[string]string{
				"show":   "  midonet pool-member show 8badf00d-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"list":   "  midonet pool-member list --pool 0d15ea5e-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"create": "  midonet pool-member create --pool 0d15ea5e-1b2c-4d3e-8f40-a1b2c3d4e5f6 --address 10.0.2.10 --protocol-port 80 --weight 2",
				"update": "  midonet pool-member update 8badf00d-1b2c-4d3e-8f40-a1b2c3d4e5f6 --admin-state-up=false",
				"delete": "  midonet pool-member delete 8badf00d-1b2c-4d3e-8f40-a1b2c3d4e5f6",
			},
		},
		{
			kind: vipKind, use: "vip", short: "Virtual IPs (address and TCP port) of a pool",
			columns: []column{col("ID", "id"), col("POOL", "poolId"), col("ADDRESS", "address"), col("PORT", "protocolPort"),
				col("PERSISTENCE", "sessionPersistence"), col("UP", "adminStateUp")},
			parents: []parent{{flag: &poolParent, link: "vips"}},
			fields: []field{
				{flag: "address", key: "address", kind: kIP, usage: "the VIP's IPv4 address (required)"},
				{flag: "protocol-port", key: "protocolPort", kind: kInt, usage: "the VIP's TCP port (required)"},
				{flag: "persistence", key: "sessionPersistence", kind: kString, usage: "SOURCE_IP: a client's connections stick to one back end; \"\" for none"},
				upField,
			},
			required: []string{"address", "protocol-port"},
			examples: map[string]string{
				"show":   "  midonet vip show 1eaf1e55-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"list":   "  midonet vip list --pool 0d15ea5e-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"create": "  midonet vip create --pool 0d15ea5e-1b2c-4d3e-8f40-a1b2c3d4e5f6 --address 203.0.113.80 --protocol-port 80 --persistence SOURCE_IP",
				"update": "  midonet vip update 1eaf1e55-1b2c-4d3e-8f40-a1b2c3d4e5f6 --persistence \"\"",
				"delete": "  midonet vip delete 1eaf1e55-1b2c-4d3e-8f40-a1b2c3d4e5f6",
			},
		},
		{
			kind: healthMonitorKind, use: "health-monitor", aliases: []string{"hm"}, short: "Health monitors of pools' members",
			columns: []column{col("ID", "id"), col("TYPE", "type"), col("DELAY", "delay"), col("TIMEOUT", "timeout"),
				col("MAX-RETRIES", "maxRetries"), col("URL-PATH", "urlPath"), col("EXPECTED-CODES", "expectedCodes"), col("UP", "adminStateUp")},
			fields: []field{
				{flag: "type", key: "type", kind: kEnum, enum: []string{"TCP", "HTTP"}, usage: "check: a TCP connection, or an HTTP GET (default TCP)"},
				{flag: "delay", key: "delay", kind: kInt, usage: "seconds between checks"},
				{flag: "timeout", key: "timeout", kind: kInt, usage: "seconds a check may take"},
				{flag: "max-retries", key: "maxRetries", kind: kInt, usage: "failed checks in a row that make a member INACTIVE"},
				{flag: "url-path", key: "urlPath", usage: "HTTP: the path to GET (default /)"},
				{flag: "expected-codes", key: "expectedCodes", usage: "HTTP: statuses that pass, e.g. 200, 200,202 or 200-299 (default 200)"},
				upField,
			},
			prepare: func(_ *session, b Object) error {
				if b["type"] == nil {
					b["type"] = "TCP"
				}
				return nil
			},
			examples: map[string]string{
				"show":   "  midonet health-monitor show 7e57ab1e-0000-4000-8000-000000000001",
				"list":   "  midonet health-monitor list",
				"create": "  midonet health-monitor create --type HTTP --delay 2 --timeout 1 --max-retries 2 --url-path /health --expected-codes 200-299",
				"update": "  midonet health-monitor update 7e57ab1e-0000-4000-8000-000000000001 --delay 5",
				"delete": "  midonet health-monitor delete 7e57ab1e-0000-4000-8000-000000000001",
			},
		},
		{
			kind: mirrorKind, use: "mirror", short: "Mirrors: copies of matching traffic sent to a port",
			columns: []column{col("ID", "id"), col("TO-PORT", "toPortId"), {"CONDITIONS", mirrorConditions}},
			createOnly: append([]field{refField("to-port", "toPortId", portKind, "port the copies leave by (required)")},
				condFields...),
			required: []string{"to-port"},
			noUpdate: true,
			prepare: func(_ *session, b Object) error {
				// The condition flags make the mirror's one condition; none
				// makes a mirror of everything.
				cond := Object{}
				for _, f := range condFields {
					for _, k := range []string{f.key, f.key2} {
						if v, ok := b[k]; ok && k != "" {
							cond[k] = v
							delete(b, k)
						}
					}
				}
				b["conditions"] = []any{cond}
				return nil
			},
			examples: map[string]string{
				"show":   "  midonet mirror show 4d1aa0a0-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"list":   "  midonet mirror list",
				"create": "  midonet mirror create --to-port 3f2a0c57-6a4e-4b8c-9d51-2b3f4c5d6e7f --proto tcp --tp-dst 80\n  midonet bridge update tenant-net --inbound-mirrors <mirror id>",
				"delete": "  midonet mirror delete 4d1aa0a0-1b2c-4d3e-8f40-a1b2c3d4e5f6",
			},
		},
		{
			kind: qosPolicyKind, use: "qos-policy", short: "QoS policies (attach with bridge or port update --qos-policy)",
			columns: []column{col("ID", "id"), col("NAME", "name"), col("DESCRIPTION", "description"), col("SHARED", "shared")},
			fields: []field{
				{flag: "name", key: "name", usage: "name of the policy"},
				{flag: "description", key: "description", usage: "what the policy is for"},
				{flag: "shared", key: "shared", kind: kBool, usage: "shared between tenants"},
			},
			examples: map[string]string{
				"show":   "  midonet qos-policy show gold",
				"list":   "  midonet qos-policy list",
				"create": "  midonet qos-policy create --name gold\n  midonet qos-bw-limit create --policy gold --max-kbps 1000\n  midonet port update <port id> --qos-policy gold",
				"update": "  midonet qos-policy update gold --description \"1 Mbit/s\"",
				"delete": "  midonet qos-policy delete gold",
			},
		},
		{
			kind: qosBWRuleKind, use: "qos-bw-limit", short: "Bandwidth limits of QoS policies (what a VM may send)",
			columns: []column{col("ID", "id"), col("POLICY", "policyId"), col("MAX-KBPS", "maxKbps"), col("MAX-BURST-KB", "maxBurstKb")},
			parents: []parent{{flag: &policyParent, link: "bwLimitRules"}},
			fields: []field{
				{flag: "max-kbps", key: "maxKbps", kind: kInt, usage: "rate in kilobits per second"},
				{flag: "max-burst-kb", key: "maxBurstKb", kind: kInt, usage: "burst in kilobits (default 80% of a second's worth)"},
			},
			required: []string{"max-kbps"},
			examples: map[string]string{
				"show":   "  midonet qos-bw-limit show 5ca1ab1e-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"list":   "  midonet qos-bw-limit list --policy gold",
				"create": "  midonet qos-bw-limit create --policy gold --max-kbps 1000 --max-burst-kb 800",
				"update": "  midonet qos-bw-limit update 5ca1ab1e-1b2c-4d3e-8f40-a1b2c3d4e5f6 --max-kbps 2000",
				"delete": "  midonet qos-bw-limit delete 5ca1ab1e-1b2c-4d3e-8f40-a1b2c3d4e5f6",
			},
		},
		{
			kind: qosDSCPRuleKind, use: "qos-dscp", short: "DSCP marks of QoS policies (set on IPv4 a VM sends)",
			columns:  []column{col("ID", "id"), col("POLICY", "policyId"), col("DSCP", "dscpMark")},
			parents:  []parent{{flag: &policyParent, link: "dscpRules"}},
			fields:   []field{{flag: "mark", key: "dscpMark", kind: kInt, usage: "DSCP value, 0-63"}},
			required: []string{"mark"},
			examples: map[string]string{
				"show":   "  midonet qos-dscp show 5ca1ab1e-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"list":   "  midonet qos-dscp list --policy gold",
				"create": "  midonet qos-dscp create --policy gold --mark 46",
				"update": "  midonet qos-dscp update 5ca1ab1e-1b2c-4d3e-8f40-a1b2c3d4e5f6 --mark 10",
				"delete": "  midonet qos-dscp delete 5ca1ab1e-1b2c-4d3e-8f40-a1b2c3d4e5f6",
			},
		},
		{
			kind: l2InsertionKind, use: "l2-insertion", short: "L2 insertions: a service VM in the path of a VM's traffic",
			columns: []column{col("ID", "id"), col("PORT", "portId"), col("SERVICE-PORT", "srvPortId"), col("MAC", "mac"),
				col("POSITION", "position"), col("VLAN", "vlan"), col("FAIL-OPEN", "failOpen")},
			createOnly: []field{
				refField("port", "portId", portKind, "the protected VM's port (required)"),
				refField("service-port", "srvPortId", portKind, "the service VM's port (required)"),
			},
			fields: []field{
				{flag: "mac", key: "mac", kind: kMAC, usage: "the protected VM's MAC (required)"},
				{flag: "position", key: "position", kind: kInt, usage: "order among the port's services, lowest first"},
				{flag: "vlan", key: "vlan", kind: kInt, usage: "VLAN id that tags frames towards the service (0: untagged)"},
				{flag: "fail-open", key: "failOpen", kind: kBool, usage: "when the service port is down, let traffic skip it rather than drop it"},
			},
			required: []string{"port", "service-port", "mac"},
			examples: map[string]string{
				"show":   "  midonet l2-insertion show 1d5e1e55-1b2c-4d3e-8f40-a1b2c3d4e5f6",
				"list":   "  midonet l2-insertion list",
				"create": "  midonet l2-insertion create --port <vm port> --service-port <ids port> --mac 02:00:00:00:00:01 --fail-open",
				"update": "  midonet l2-insertion update 1d5e1e55-1b2c-4d3e-8f40-a1b2c3d4e5f6 --position 2",
				"delete": "  midonet l2-insertion delete 1d5e1e55-1b2c-4d3e-8f40-a1b2c3d4e5f6",
			},
		},
	}
}

// mirrorConditions summarises a mirror's conditions as rule matches.
func mirrorConditions(o Object) string {
	list, _ := o["conditions"].([]any)
	var parts []string
	for _, c := range list {
		if m, ok := c.(map[string]any); ok {
			parts = append(parts, ruleMatch(Object(m)))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	s := parts[0]
	for _, p := range parts[1:] {
		s += " | " + p
	}
	return s
}
