package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDHCPTraceAndLeases sets up a bridge serving DHCP with one host, then
// traces DHCP requests through it and lists its leases.
func TestDHCPTraceAndLeases(t *testing.T) {
	t.Parallel()
	hostName := unique("dhcp-host")
	postHost(t, hostName)
	zone := unique("dhcp-tz")
	must(t, "tunnel-zone", "create", "--name", zone)
	must(t, "tunnel-zone", "add-member", "--tunnel-zone", zone, "--host", hostName, "--address", "192.0.2.62")
	bridge := unique("dhcp-br")
	b := object(t, "bridge", "create", "--name", bridge).Str("id")
	vm := object(t, "port", "create", "--bridge", b).Str("id")
	must(t, "host", "bind", "--host", hostName, "--port", vm, "--interface", unique("tap"))
	must(t, "dhcp", "create", "--bridge", bridge, "--subnet", "10.62.0.0/24", "--gateway", "10.62.0.1", "--dns", "10.62.0.2")
	must(t, "dhcp-host", "create", "--bridge", bridge, "--subnet", "10.62.0.0/24", "--mac", "02:00:0a:3e:00:05",
		"--ip", "10.62.0.5", "--name", "vm5", "--option", "domain-search=example.org", "--option", "ntp-server=10.62.0.3")
	must(t, "dhcp", "create", "--bridge", bridge, "--subnet", "10.63.0.0/24", "--enabled=false")

	t.Run("discover answered by the agent", func(t *testing.T) {
		r := traceJSON(t, "--port", vm, "--dhcp", "discover", "--src-mac", "02:00:0a:3e:00:05")
		if r.Result != "consumed" || r.DHCP != "offer" {
			t.Fatalf("result %s dhcp %q, want consumed with an offer\n%+v", r.Result, r.DHCP, r.Steps)
		}
		if len(r.Generated) != 1 || r.Generated[0].Packet.TpSrc != 67 || r.Generated[0].Packet.NwDst != "10.62.0.5" ||
			r.Generated[0].Packet.NwSrc != "10.62.0.1" {
			t.Errorf("generated %+v, want the offer from 10.62.0.1:67 to 10.62.0.5", r.Generated)
		}
		if s := step(r, b, "dhcp"); s == nil || !strings.Contains(s.Detail, "OFFER 10.62.0.5") {
			t.Errorf("no dhcp step offering 10.62.0.5: %+v", r.Steps)
		}
	})
	t.Run("stale lease nakked", func(t *testing.T) {
		r := traceJSON(t, "--port", vm, "--dhcp", "request", "--src-mac", "02:00:0a:3e:00:05", "--requested-ip", "10.62.0.99")
		if r.Result != "consumed" || r.DHCP != "nak" {
			t.Fatalf("result %s dhcp %q, want a NAK", r.Result, r.DHCP)
		}
	})
	t.Run("unknown MAC not answered, no flow", func(t *testing.T) {
		r := traceJSON(t, "--port", vm, "--dhcp", "discover", "--src-mac", "02:00:0a:3e:00:77")
		if r.Result != "userspace-only" || r.DHCP != "no-lease" || len(r.Generated) != 0 {
			t.Fatalf("result %s dhcp %q generated %d, want no answer and no flow", r.Result, r.DHCP, len(r.Generated))
		}
	})
	t.Run("table output", func(t *testing.T) {
		out := must(t, "trace", "--port", vm, "--dhcp", "discover", "--src-mac", "02:00:0a:3e:00:05")
		for _, want := range []string{"dhcp            answered by the agent on the ingress host: OFFER",
			"flow            none: the agent answers every such packet itself", "udp 10.62.0.1:67 → 10.62.0.5:68"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("leases", func(t *testing.T) {
		var rows []Lease
		out := must(t, "dhcp", "leases", "--bridge", bridge, "-o", "json")
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if len(rows) != 2 {
			t.Fatalf("%d rows, want the host of 10.62.0.0/24 and the empty 10.63.0.0/24:\n%s", len(rows), out)
		}
		h := rows[0]
		if h.Subnet != "10.62.0.0/24" || h.MAC != "02:00:0a:3e:00:05" || h.IP != "10.62.0.5" || h.Name != "vm5" ||
			h.Server != "10.62.0.1" || h.MTU != "auto" || !h.Enabled ||
			strings.Join(h.Options, " ") != "domain-search=example.org ntp-server=10.62.0.3" {
			t.Errorf("host row %+v", h)
		}
		if e := rows[1]; e.Subnet != "10.63.0.0/24" || e.Enabled || e.MAC != "" || e.Server != "10.63.0.1" {
			t.Errorf("empty subnet row %+v", e)
		}
		table := must(t, "dhcp", "leases", "--bridge", bridge)
		for _, want := range []string{"SUBNET", "10.62.0.5", "vm5", "domain-search=example.org", "10.63.0.0/24"} {
			if !strings.Contains(table, want) {
				t.Errorf("table lacks %q:\n%s", want, table)
			}
		}
		if all := must(t, "dhcp", "leases"); !strings.Contains(all, "10.62.0.5") {
			t.Errorf("leases of all bridges lacks this one:\n%s", all)
		}
	})
	t.Run("bad option refused by the API", func(t *testing.T) {
		_, err := run(t, "dhcp-host", "create", "--bridge", bridge, "--subnet", "10.62.0.0/24", "--mac", "02:00:0a:3e:00:06",
			"--ip", "10.62.0.6", "--option", "mtu=huge")
		if err == nil || !strings.Contains(err.Error(), "extraDhcpOpts[0]") {
			t.Errorf("a bad option gives %v, want a violation naming it", err)
		}
	})
}

func TestDHCPTraceFlagErrors(t *testing.T) {
	port := "--port=" + newUUID()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown type", []string{port, "--dhcp=offer", "--src-mac=02:00:00:00:00:01"}, "--dhcp \"offer\""},
		{"no MAC", []string{port, "--dhcp=discover"}, "needs --src-mac"},
		{"with arp", []string{port, "--dhcp=discover", "--src-mac=02:00:00:00:00:01", "--arp"}, "two different packets"},
		{"with ports", []string{port, "--dhcp=discover", "--src-mac=02:00:00:00:00:01", "--dst-port=1"}, "--dst-port does not apply"},
		{"requested without dhcp", []string{port, "--src-ip=10.0.0.1", "--dst-ip=10.0.0.2", "--requested-ip=10.0.0.3"}, "applies to --dhcp only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := parseTestProbe(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestDHCP6Commands(t *testing.T) {
	t.Parallel()
	bridge := unique("dhcp6-br")
	must(t, "bridge", "create", "--name", bridge)
	sub := object(t, "dhcp6", "create", "--bridge", bridge, "--subnet", "2001:db8:62::/64", "--dns", "2001:db8:62::53")
	if sub.Str("prefix") != "2001:db8:62::" || format(sub["prefixLength"]) != "64" {
		t.Fatalf("subnet %v", sub)
	}
	h := object(t, "dhcp6-host", "create", "--bridge", bridge, "--subnet", "2001:db8:62::/64", "--client-id", "02:00:00:00:62:05",
		"--ip", "2001:db8:62::5", "--name", "vm5")
	if h.Str("fixedAddress") != "2001:db8:62::5" || h.Str("clientId") != "02:00:00:00:62:05" {
		t.Fatalf("host %v", h)
	}
	if out := must(t, "dhcp6-host", "list", "--bridge", bridge, "--subnet", "2001:db8:62::/64"); !strings.Contains(out, "2001:db8:62::5") {
		t.Errorf("host list:\n%s", out)
	}
	if out := must(t, "dhcp6", "list", "--bridge", bridge); !strings.Contains(out, "2001:db8:62::/64") {
		t.Errorf("subnet list:\n%s", out)
	}
	if _, err := run(t, "dhcp6-host", "create", "--bridge", bridge, "--subnet", "2001:db8:62::/64", "--client-id", "vm6",
		"--ip", "2001:db8:62::6"); err == nil || !strings.Contains(err.Error(), "clientId") {
		t.Errorf("a client id that is no DUID or MAC: %v", err)
	}
	must(t, "dhcp6-host", "delete", "--bridge", bridge, "--subnet", "2001:db8:62::/64", "02:00:00:00:62:05")
	must(t, "dhcp6", "delete", "--bridge", bridge, "2001:db8:62::/64")
	if out := must(t, "dhcp6", "list", "--bridge", bridge); strings.Contains(out, "2001:db8:62::") {
		t.Errorf("the subnet is still listed:\n%s", out)
	}
}
