package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/trace"
)

// traceNet is a router between two bridges, each with one bound VM port:
//
//	vm1 (10.61.1.5) ── b1 ── rp1 10.61.1.1/24 ┐
//	                                           router, inbound filter "in"
//	vm2 (10.61.2.5) ── b2 ── rp2 10.61.2.1/24 ┘
//
// The router's inbound filter holds, in order: accept udp (#1), drop tcp to
// 10.61.2.5:22 (#2).
type traceNet struct {
	router, chain, dropRule string
	vm1, vm2, rp1, rp2      string
	rp1MAC, rp2MAC          string
	vm1MAC, vm2MAC          string
	host                    string
}

func newTraceNet(t *testing.T) *traceNet {
	t.Helper()
	n := &traceNet{vm1MAC: "02:00:0a:3d:01:05", vm2MAC: "02:00:0a:3d:02:05"}
	hostName, zone := unique("trace-host"), unique("trace-tz")
	n.host = postHost(t, hostName)
	must(t, "tunnel-zone", "create", "--name", zone)
	must(t, "tunnel-zone", "add-member", "--tunnel-zone", zone, "--host", hostName, "--address", "192.0.2.61")

	chainName := unique("trace-in")
	n.chain = object(t, "chain", "create", "--name", chainName).Str("id")
	n.dropRule = object(t, "rule", "create", "--chain", n.chain, "--type", "drop", "--proto", "tcp",
		"--nw-dst", "10.61.2.5/32", "--tp-dst", "22").Str("id")
	must(t, "rule", "create", "--chain", n.chain, "--type", "accept", "--proto", "udp", "--position", "1")

	n.router = object(t, "router", "create", "--name", unique("trace-rtr"), "--inbound-filter", n.chain).Str("id")
	b1 := object(t, "bridge", "create", "--name", unique("trace-b1"))
	b2 := object(t, "bridge", "create", "--name", unique("trace-b2"))
	rp1 := object(t, "port", "create", "--router", n.router, "--address", "10.61.1.1/24")
	rp2 := object(t, "port", "create", "--router", n.router, "--address", "10.61.2.1/24")
	n.rp1, n.rp2, n.rp1MAC, n.rp2MAC = rp1.Str("id"), rp2.Str("id"), rp1.Str("portMac"), rp2.Str("portMac")
	for _, l := range []struct{ bridge, rp string }{{b1.Str("id"), n.rp1}, {b2.Str("id"), n.rp2}} {
		bp := object(t, "port", "create", "--bridge", l.bridge).Str("id")
		must(t, "port", "link", "--port", l.rp, "--peer", bp)
	}
	n.vm1 = object(t, "port", "create", "--bridge", b1.Str("id")).Str("id")
	n.vm2 = object(t, "port", "create", "--bridge", b2.Str("id")).Str("id")
	must(t, "host", "bind", "--host", hostName, "--port", n.vm1, "--interface", unique("vm1"))
	must(t, "host", "bind", "--host", hostName, "--port", n.vm2, "--interface", unique("vm2"))

	// What agents would have learned: each VM's MAC and address.
	c := NewClient(apiURL, nil)
	for _, e := range []struct {
		bridge  Object
		mac, vm string
		ip      string
	}{{b1, n.vm1MAC, n.vm1, "10.61.1.5"}, {b2, n.vm2MAC, n.vm2, "10.61.2.5"}} {
		if _, err := c.Create(t.Context(), e.bridge.Str("macTable"), "MacPort-v2", Object{"macAddr": e.mac, "portId": e.vm}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Create(t.Context(), e.bridge.Str("arpTable"), "IP4Mac-v1", Object{"ip": e.ip, "mac": e.mac}); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// traceJSON runs `midonet trace args... -o json` and decodes the report.
func traceJSON(t *testing.T, args ...string) *trace.Report {
	t.Helper()
	out := must(t, append([]string{"trace"}, append(args, "-o", "json")...)...)
	var r trace.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("trace -o json: %v\n%s", err, out)
	}
	return &r
}

// step returns the first step with the event on the device, or nil.
func step(r *trace.Report, device, event string) *trace.Step {
	for i := range r.Steps {
		if r.Steps[i].Device == device && r.Steps[i].Event == event {
			return &r.Steps[i]
		}
	}
	return nil
}

func TestTrace(t *testing.T) {
	t.Parallel()
	n := newTraceNet(t)

	t.Run("forward across the router", func(t *testing.T) {
		r := traceJSON(t, "--port", n.vm1, "--src-ip", "10.61.1.5", "--dst-ip", "10.61.2.5", "--proto", "tcp", "--dst-port", "80")
		if r.Result != "forward" || r.Reason != "" {
			t.Fatalf("result %s (%s), want forward\n%+v", r.Result, r.Reason, r.Steps)
		}
		// The defaults: the VM's MAC from the bridge's ARP table, and the
		// gateway's MAC since 10.61.2.5 is off the VM's subnet.
		if r.Packet.EthSrc != n.vm1MAC || r.Packet.EthDst != n.rp1MAC {
			t.Errorf("packet %s → %s, want %s → %s (VM → gateway)", r.Packet.EthSrc, r.Packet.EthDst, n.vm1MAC, n.rp1MAC)
		}
		if r.Packet.Proto != "tcp" || r.Packet.TpSrc != trace.DefaultSrcPort || r.Packet.TpDst != 80 || r.Packet.TTL != 64 {
			t.Errorf("packet %+v, want tcp 49152 → 80 ttl 64", r.Packet)
		}
		if len(r.Egress) != 1 {
			t.Fatalf("egress %+v, want vm2 only", r.Egress)
		}
		eg := r.Egress[0]
		if eg.Port != n.vm2 || eg.Host != n.host || eg.Interface == "" {
			t.Errorf("egress %+v, want port %s on host %s", eg, n.vm2, n.host)
		}
		want := map[string]string{"eth_src": n.rp2MAC, "eth_dst": n.vm2MAC, "nw_ttl": "63"}
		for k, v := range want {
			if eg.Set[k] != v {
				t.Errorf("egress sets %s=%q, want %q (all: %v)", k, eg.Set[k], v, eg.Set)
			}
		}
		route := step(r, n.router, "route")
		if route == nil || !strings.Contains(route.Detail, "10.61.2.5") || route.DeviceType != "router" || route.Name == "" {
			t.Errorf("no route step naming the router and 10.61.2.5: %+v", r.Steps)
		}
		if step(r, n.chain, "evaluate") == nil {
			t.Errorf("the router's inbound filter was not evaluated: %+v", r.Steps)
		}
		if !slices.Contains(r.Match, "nw_dst") || !slices.Contains(r.Match, "tp_dst") {
			t.Errorf("megaflow matches %v, want nw_dst (route) and tp_dst (rule #2)", r.Match)
		}
		// No agent runs in the test cluster: both VM ports are assumed up.
		if !slices.Equal(r.AssumedActive, []string{n.vm1, n.vm2}) {
			t.Errorf("assumed active %v, want [%s %s]", r.AssumedActive, n.vm1, n.vm2)
		}
		if r.FlowTags == 0 || r.HardTimeout != "1m0s" || r.HardTimeoutSeconds != 60 {
			t.Errorf("flow tags %d, hard timeout %s (%v s), want tags and 1m0s", r.FlowTags, r.HardTimeout, r.HardTimeoutSeconds)
		}
		// Both VMs are bound on one host: the flow runs in the kernel.
		if r.InKernel == nil || !*r.InKernel || !strings.HasPrefix(r.Where, "the kernel fast path of host ") {
			t.Errorf("runs in %v %q, want the kernel fast path", r.InKernel, r.Where)
		}
		if o := traceJSON(t, "--datapath", "ovs", "--port", n.vm1, "--src-ip", "10.61.1.5", "--dst-ip", "10.61.2.5", "--proto", "tcp", "--dst-port", "80"); o.InKernel != nil {
			t.Errorf("with the ovs datapath, runs in %v %q: want nothing said", *o.InKernel, o.Where)
		}
	})

	t.Run("dropped by a rule", func(t *testing.T) {
		r := traceJSON(t, "--port", n.vm1, "--src-ip", "10.61.1.5", "--dst-ip", "10.61.2.5", "--dst-port", "22")
		if r.Result != "drop" || r.Reason != "chain" {
			t.Fatalf("result %s (%s), want drop (chain)\n%+v", r.Result, r.Reason, r.Steps)
		}
		if len(r.Egress) != 0 {
			t.Errorf("a dropped packet has egress %+v", r.Egress)
		}
		hit := step(r, n.dropRule, "matched")
		if hit == nil {
			t.Fatalf("no step names the drop rule %s: %+v", n.dropRule, r.Steps)
		}
		if hit.DeviceType != "rule" || !strings.HasSuffix(hit.Name, "rule #2") || !strings.Contains(hit.Detail, "drop") {
			t.Errorf("rule step %+v, want type rule, name ending in \"rule #2\", detail with drop", hit)
		}
	})

	t.Run("no route", func(t *testing.T) {
		r := traceJSON(t, "--port", n.vm1, "--src-ip", "10.61.1.5", "--dst-ip", "198.51.100.9", "--proto", "udp", "--dst-port", "53")
		if r.Result != "temporary-drop" || r.Reason != "no-route" {
			t.Fatalf("result %s (%s), want temporary-drop (no-route)\n%+v", r.Result, r.Reason, r.Steps)
		}
		if r.HardTimeout != "5s" || r.FlowTags != 0 {
			t.Errorf("hard timeout %s, tags %d; want 5s and none", r.HardTimeout, r.FlowTags)
		}
		// The router answers with "network unreachable" to the sender.
		if len(r.Generated) != 1 {
			t.Fatalf("generated %+v, want one ICMP error", r.Generated)
		}
		g := r.Generated[0].Packet
		if g.Proto != "icmp" || g.TpSrc != int(packet.ICMPDestUnreachable) || g.TpDst != int(packet.ICMPCodeNetUnreachable) ||
			g.NwSrc != "10.61.1.1" || g.NwDst != "10.61.1.5" || r.Generated[0].Port != n.rp1 {
			t.Errorf("generated %+v out of %s, want ICMP net unreachable 10.61.1.1 → 10.61.1.5 out of %s", g, r.Generated[0].Port, n.rp1)
		}
	})

	t.Run("through a VIP", func(t *testing.T) {
		// A load balancer built from the command line: VIP 10.61.9.1:80
		// over vm2's port 8080.
		lb := object(t, "load-balancer", "create").Str("id")
		must(t, "router", "update", n.router, "--load-balancer", lb)
		defer must(t, "router", "update", n.router, "--load-balancer", "none")
		pool := object(t, "pool", "create", "--load-balancer", lb).Str("id")
		must(t, "pool-member", "create", "--pool", pool, "--address", "10.61.2.5", "--protocol-port", "8080")
		must(t, "vip", "create", "--pool", pool, "--address", "10.61.9.1", "--protocol-port", "80")
		r := traceJSON(t, "--port", n.vm1, "--src-ip", "10.61.1.5", "--dst-ip", "10.61.9.1", "--proto", "tcp", "--dst-port", "80")
		if r.Result != "forward" || len(r.Egress) != 1 || r.Egress[0].Port != n.vm2 {
			t.Fatalf("result %s (%s) egress %+v, want forward to vm2\n%+v", r.Result, r.Reason, r.Egress, r.Steps)
		}
		if set := r.Egress[0].Set; set["nw_dst"] != "10.61.2.5" || set["tp_dst"] != "8080" {
			t.Errorf("egress sets %v, want the back end 10.61.2.5:8080", set)
		}
		if step(r, lb, "balance") == nil {
			t.Errorf("no step shows the load balancer balancing: %+v", r.Steps)
		}
	})

	t.Run("arp for the gateway", func(t *testing.T) {
		r := traceJSON(t, "--port", n.vm1, "--src-ip", "10.61.1.5", "--dst-ip", "10.61.1.1", "--arp")
		if r.Result != "consumed" || r.Packet.EthType != "arp" || r.Packet.EthDst != "ff:ff:ff:ff:ff:ff" {
			t.Fatalf("result %s for %+v, want the broadcast request consumed\n%+v", r.Result, r.Packet, r.Steps)
		}
		if len(r.Generated) != 1 || r.Generated[0].Packet.Proto != "reply" || r.Generated[0].Packet.EthSrc != n.rp1MAC {
			t.Errorf("generated %+v, want an ARP reply from %s", r.Generated, n.rp1MAC)
		}
	})

	t.Run("table output", func(t *testing.T) {
		cases := []struct {
			name string
			args []string
			want []string
		}{
			{"drop", []string{"--dst-port", "22"}, []string{"tcp 10.61.1.5:49152 → 10.61.2.5:22 ttl 64", n.dropRule,
				"rule #2", "matched", "result          drop (chain)", "flow matches", "hard timeout    1m0s"}},
			{"forward", []string{"--dst-port", "80"}, []string{"result          forward",
				"egress          port " + n.vm2, "set eth_src=" + n.rp2MAC + " eth_dst=" + n.vm2MAC + " nw_ttl=63",
				"assumed active  " + n.vm1 + " " + n.vm2}},
		}
		for _, tc := range cases {
			args := append([]string{"trace", "--port", n.vm1, "--src-ip", "10.61.1.5", "--dst-ip", "10.61.2.5"}, tc.args...)
			out := must(t, args...)
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("%s: output lacks %q:\n%s", tc.name, want, out)
				}
			}
			t.Logf("%s:\n%s", tc.name, out)
		}
	})

	// Last, as it adds a rule: a conntrack rule reads an echo's identifier,
	// which only the userspace datapath's flows can match.
	t.Run("ping through conntrack", func(t *testing.T) {
		must(t, "rule", "create", "--chain", n.chain, "--type", "accept", "--match-return-flow")
		args := []string{"--port", n.vm1, "--src-ip", "10.61.1.5", "--dst-ip", "10.61.2.5"}
		for _, tc := range []struct {
			datapath, result string
			matchesID        bool
		}{{"userspace", "forward", true}, {"ovs", "userspace-only", true}} {
			r := traceJSON(t, append(args, "--datapath", tc.datapath)...)
			if r.Result != tc.result || slices.Contains(r.Match, "icmp_id") != tc.matchesID {
				t.Errorf("--datapath %s: result %s, flow matches %v; want %s, icmp_id matched %v",
					tc.datapath, r.Result, r.Match, tc.result, tc.matchesID)
			}
		}
		if out := must(t, append([]string{"trace", "--datapath", "ovs"}, args...)...); !strings.Contains(out, "flow            none: every such packet is simulated") {
			t.Errorf("table output of a userspace-only result does not say no flow is installed:\n%s", out)
		}
	})

	t.Run("unknown port", func(t *testing.T) {
		_, err := run(t, "trace", "--port", newUUID(), "--src-ip", "10.61.1.5", "--dst-ip", "10.61.2.5")
		if err == nil || !strings.Contains(err.Error(), "no such port") {
			t.Errorf("trace from a missing port: %v, want no such port", err)
		}
	})
}

func TestTraceFlagErrors(t *testing.T) {
	port := "--port=" + newUUID()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"port missing", []string{"--src-ip=10.0.0.1", "--dst-ip=10.0.0.2"}, "--port is required"},
		{"unknown datapath", []string{port, "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2", "--datapath=dpdk"}, "--datapath \"dpdk\""},
		{"port not a uuid", []string{"--port=vm1", "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2"}, "not a port id"},
		{"source missing", []string{port, "--dst-ip=10.0.0.2"}, "--src-ip is required"},
		{"ipv6 destination", []string{port, "--src-ip=10.0.0.1", "--dst-ip=2001:db8::1"}, "IPv6 is not simulated"},
		{"bad mac", []string{port, "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2", "--src-mac=02:00"}, "not a MAC"},
		{"vlan too big", []string{port, "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2", "--vlan=4096"}, "--vlan 4096"},
		{"tcp without port", []string{port, "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2", "--proto=tcp"}, "--dst-port is required"},
		{"port out of range", []string{port, "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2", "--dst-port=70000"}, "--dst-port 70000"},
		{"unknown protocol", []string{port, "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2", "--proto=sctpx"}, "--proto \"sctpx\""},
		{"icmp fields on tcp", []string{port, "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2", "--dst-port=1", "--icmp-type=0"}, "apply to --proto icmp only"},
		{"ports on icmp", []string{port, "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2", "--proto=icmp", "--dst-port=1"}, "apply to --proto tcp and udp only"},
		{"ports on a raw protocol", []string{port, "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2", "--proto=47", "--src-port=1"}, "do not apply to --proto 47"},
		{"proto with arp", []string{port, "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2", "--arp", "--proto=udp"}, "--proto does not apply to --arp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := parseTestProbe(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// parseTestProbe checks trace flags without running the command.
func parseTestProbe(t *testing.T, args ...string) error {
	t.Helper()
	f := &traceFlags{}
	cmd := traceCommandWith(&options{}, f)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return traceError(traceRequest(cmd, f).Check())
}
