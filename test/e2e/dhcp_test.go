package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/sandbox"
	"github.com/midonet/midonet/internal/testenv"
)

// The DHCP tests plug VMs of their own into the sandbox's hosts: namespaces
// named dhcpt-*, whose eth0 is one end of a veth pair and whose other end,
// dt-*, is in a host's namespace, bound to a new port of a bridge. Their
// DHCP client is Debian's dhclient, as in a guest.

const testVMPrefix = "dhcpt-"

// testVM is a VM of these tests.
type testVM struct {
	name, ns, tap string
	host          int
	mac           string
	port          string
}

var testVMSeq atomic.Int32

// newTestVM plugs a VM with MAC mac into host (0-based) on bridge, binds
// its port and waits until the host's agent reports it active. Everything
// goes when the test ends.
func newTestVM(t testing.TB, host int, bridge, mac string) *testVM {
	t.Helper()
	n := testVMSeq.Add(1)
	v := &testVM{name: fmt.Sprintf("vm%d", n), host: host, mac: mac}
	v.ns, v.tap = testVMPrefix+v.name, fmt.Sprintf("dt-vm%d", n)
	ipCmd := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	exec.Command("ip", "netns", "del", v.ns).Run() // a crashed run's
	t.Cleanup(func() {
		stopDHClients(v)
		exec.Command("ip", "netns", "del", v.ns).Run()
		os.RemoveAll(filepath.Join("/etc/netns", v.ns))
		if v.port != "" {
			req, _ := http.NewRequest("DELETE", sb.APIURL()+"/ports/"+v.port, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	})
	ipCmd("netns", "add", v.ns)
	ipCmd("link", "add", v.tap, "netns", sandbox.HostNS(host), "type", "veth", "peer", "name", "eth0", "netns", v.ns)
	ipCmd("-n", v.ns, "link", "set", "eth0", "address", mac)
	ipCmd("-n", v.ns, "link", "set", "lo", "up")
	ipCmd("-n", sandbox.HostNS(host), "link", "set", v.tap, "up")
	// dhclient-script writes resolv.conf: keep it in the VM's /etc.
	if err := os.MkdirAll(filepath.Join("/etc/netns", v.ns), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join("/etc/netns", v.ns, "resolv.conf"), nil, 0o644)
	v.port = location(t, api(t, "POST", "/bridges/"+bridge+"/ports", map[string]any{"type": "Bridge"}))
	api(t, "POST", "/hosts/"+sb.ID(fmt.Sprintf("host:host%d", host+1))+"/ports",
		map[string]any{"portId": v.port, "interfaceName": v.tap})
	eventually(t, 10*time.Second, "the test VM's port active", func() bool {
		var p struct {
			Active bool `json:"active"`
		}
		return readJSON(sb.APIURL()+"/ports/"+v.port, &p) == nil && p.Active
	})
	return v
}

func location(t testing.TB, resp *http.Response) string {
	t.Helper()
	l := resp.Header.Get("Location")
	if l == "" {
		t.Fatal("no Location in the API's answer")
	}
	return filepath.Base(l)
}

func readJSON(url string, out any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// needDHClient skips (in CI fails) a test when dhclient is missing.
func needDHClient(t testing.TB) {
	t.Helper()
	need(t)
	testenv.RequireTool(t, "dhclient", "isc-dhcp-client")
}

func (v *testVM) pidFile(tag string) string {
	return filepath.Join(os.TempDir(), v.ns+"-"+tag+".pid")
}

// stopDHClients kills the dhclients a test VM started: those its pid
// files name and those running in its namespace (a dhclient that has just
// gone to the background may not have written its pid file yet).
func stopDHClients(v *testVM) {
	var pids []int
	files, _ := filepath.Glob(filepath.Join(os.TempDir(), v.ns+"-*.pid"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			var pid int
			fmt.Sscan(strings.TrimSpace(string(b)), &pid)
			pids = append(pids, pid)
		}
		os.Remove(f)
	}
	out, _ := exec.Command("ip", "netns", "pids", v.ns).Output()
	for _, f := range strings.Fields(string(out)) {
		var pid int
		fmt.Sscan(f, &pid)
		pids = append(pids, pid)
	}
	for _, pid := range pids {
		if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); pid > 0 && strings.HasPrefix(string(cmdline), "dhclient\x00") {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		}
	}
}

// up sets the VM's eth0 up.
func (v *testVM) up(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", v.ns, "link", "set", "eth0", "up").CombinedOutput(); err != nil {
		t.Fatalf("link up: %v %s", err, out)
	}
}

// dhclient runs dhclient once (-1) in the VM with args, and returns its
// output and exit error.
func (v *testVM) dhclient(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", v.ns, "dhclient", "-1", "-v"}, args...)...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		return string(out), fmt.Errorf("dhclient did not finish within %s", timeout)
	}
	return string(out), err
}

// envScript writes a dhclient-script that records what dhclient received
// (its environment) instead of configuring the VM, and returns it and the
// file it writes.
func envScript(t *testing.T) (script, out string) {
	t.Helper()
	dir := t.TempDir()
	script, out = filepath.Join(dir, "print-env.sh"), filepath.Join(dir, "env")
	body := "#!/bin/sh\necho \"reason=$reason\" >> " + out + "\nenv | grep -E '^(new_|old_)' | sort >> " + out + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, out
}

// envOf reads the variables of the last reason the script recorded.
func envOf(t *testing.T, file, reason string) map[string]string {
	t.Helper()
	env, b := envBlock(file, reason)
	if len(env) == 0 {
		t.Fatalf("dhclient reported no %s:\n%s", reason, b)
	}
	return env
}

// envBlock returns the variables recorded with the last event of reason,
// and the whole record.
func envBlock(file, reason string) (map[string]string, []byte) {
	b, _ := os.ReadFile(file)
	env := map[string]string{}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		k, val, _ := strings.Cut(line, "=")
		if k == "reason" {
			in = val == reason
			if in {
				env = map[string]string{}
			}
			continue
		}
		if in && k != "" {
			env[k] = val
		}
	}
	return env, b
}

// vmIP returns `ip -n ns args` output on one line, space padded.
func vmIP(t testing.TB, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
	}
	return " " + strings.Join(strings.Fields(string(out)), " ") + " "
}

// TestDHCPLeasesOnTwoHosts checks what dhclient configured in the
// sandbox's VMs, on three hosts, from the agents' answers: the static
// address, the default route, the option-121 route and the MTU; then that
// the VMs reach each other and their gateway.
func TestDHCPLeasesOnTwoHosts(t *testing.T) {
	needDHClient(t)
	vms := []struct{ name, addr, gw string }{
		{"vm-a1", "10.0.1.10", "10.0.1.1"}, {"vm-a2", "10.0.1.11", "10.0.1.1"},
		{"vm-b1", "10.0.2.10", "10.0.2.1"}, {"vm-b2", "10.0.2.11", "10.0.2.1"},
	}
	for _, l := range sb.Leases() {
		if l.Err != nil {
			t.Errorf("%s: %v", l.VM, l.Err)
		}
	}
	for _, v := range vms {
		ns := sandbox.VMNS(v.name)
		if got := vmIP(t, ns, "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(got, " "+v.addr+"/24 ") {
			t.Errorf("%s: addresses%s, want %s/24", v.name, got, v.addr)
		}
		routes := vmIP(t, ns, "-4", "route", "show")
		for _, want := range []string{"default via " + v.gw + " ", "169.254.169.254 via " + v.gw + " "} {
			if !strings.Contains(routes, want) {
				t.Errorf("%s: routes%s lack %q", v.name, routes, want)
			}
		}
		if link := vmIP(t, ns, "-o", "link", "show", "eth0"); !strings.Contains(link, " mtu 1500 ") {
			t.Errorf("%s: %s, want mtu 1500", v.name, link)
		}
		if n := pingCount(ns, v.gw, 3); n < 2 {
			t.Errorf("%s: %d of 3 pings to its gateway %s", v.name, n, v.gw)
		}
	}
	if n := pingCount(sandbox.VMNS("vm-a1"), "10.0.1.11", 3); n < 2 {
		t.Errorf("vm-a1 (host1) → vm-a2 (host2): %d of 3 pings", n)
	}
	if n := pingCount(sandbox.VMNS("vm-b1"), "10.0.2.11", 3); n < 2 {
		t.Errorf("vm-b1 (host2) → vm-b2 (host3): %d of 3 pings", n)
	}
}

// dhcpBridge creates a bridge with a DHCP subnet 10.77.<n>.0/24 whose
// gateway is .1, DNS .2, an option-121 route to 10.99.0.0/16 via .254, no
// interfaceMTU, and returns its id and the subnet's hosts URL.
func dhcpBridge(t testing.TB, n int) (bridge, hosts string) {
	t.Helper()
	bridge = location(t, api(t, "POST", "/bridges", map[string]any{"name": fmt.Sprintf("dhcp-e2e-%d", n), "tenantId": "e2e"}))
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", sb.APIURL()+"/bridges/"+bridge, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	net := fmt.Sprintf("10.77.%d.", n)
	api(t, "POST", "/bridges/"+bridge+"/dhcp", map[string]any{"subnetPrefix": net + "0", "subnetLength": 24,
		"defaultGateway": net + "1", "dnsServerAddrs": []string{net + "2"},
		"opt121Routes": []any{map[string]any{"destinationPrefix": "10.99.0.0", "destinationLength": 16, "gatewayAddr": net + "254"}}})
	return bridge, "/bridges/" + bridge + "/dhcp/" + net + "0_24/hosts"
}

// TestDHCPOptionsFromARealClient checks every option dhclient received,
// through its script's environment: address, mask, router, DNS, option
// 121 with the default route, the MTU the agents derive from the underlay
// (9000, minus the overlay's 50), lease time, server identifier, host name,
// domain and an extra option.
func TestDHCPOptionsFromARealClient(t *testing.T) {
	needDHClient(t)
	bridge, hosts := dhcpBridge(t, 1)
	mac := "02:00:0a:4d:01:05"
	api(t, "POST", hosts, map[string]any{"macAddr": mac, "ipAddr": "10.77.1.5", "name": "vm5.example.org",
		"extraDhcpOpts": []any{map[string]any{"optName": "ntp-server", "optValue": "10.77.1.3"}}})
	v := newTestVM(t, 0, bridge, mac)
	v.up(t)
	script, out := envScript(t)
	if o, err := v.dhclient(t, 20*time.Second, "-sf", script, "-lf", filepath.Join(t.TempDir(), "leases"),
		"-pf", v.pidFile("opts"), "eth0"); err != nil {
		t.Fatalf("dhclient: %v\n%s", err, o)
	}
	env := envOf(t, out, "BOUND")
	want := map[string]string{
		"new_ip_address": "10.77.1.5", "new_subnet_mask": "255.255.255.0", "new_broadcast_address": "10.77.1.255",
		"new_routers": "10.77.1.1", "new_domain_name_servers": "10.77.1.2",
		"new_rfc3442_classless_static_routes": "16 10 99 10 77 1 254 0 10 77 1 1",
		"new_interface_mtu":                   "8950", "new_dhcp_lease_time": "86400", "new_dhcp_server_identifier": "10.77.1.1",
		"new_host_name": "vm5", "new_domain_name": "example.org", "new_ntp_servers": "10.77.1.3",
	}
	for k, w := range want {
		if env[k] != w {
			t.Errorf("%s=%q, want %q", k, env[k], w)
		}
	}
}

// TestDHCPRenew binds a lease with Debian's dhclient-script (through a
// wrapper that records each event), then lets the client renew it by
// unicast to the server (a 6-second lease from an extra option: it renews
// after about 3 s), and checks the VM still reaches its peer on another
// host; then that the client's RELEASE reaches the agent.
func TestDHCPRenew(t *testing.T) {
	needDHClient(t)
	bridge, hosts := dhcpBridge(t, 2)
	mac := "02:00:0a:4d:02:05"
	api(t, "POST", hosts, map[string]any{"macAddr": mac, "ipAddr": "10.77.2.5",
		"extraDhcpOpts": []any{map[string]any{"optName": "lease-time", "optValue": "6"}}})
	v := newTestVM(t, 1, bridge, mac)
	peer := newTestVM(t, 2, bridge, "02:00:0a:4d:02:06")
	api(t, "POST", hosts, map[string]any{"macAddr": peer.mac, "ipAddr": "10.77.2.6"})
	v.up(t)
	peer.up(t)
	if o, err := peer.dhclient(t, 20*time.Second, "-lf", filepath.Join(t.TempDir(), "peer"), "-pf", peer.pidFile("peer"), "eth0"); err != nil {
		t.Fatalf("peer's dhclient: %v\n%s", err, o)
	}
	script, events := wrapScript(t)
	leases := filepath.Join(t.TempDir(), "leases")
	if o, err := v.dhclient(t, 20*time.Second, "-sf", script, "-lf", leases, "-pf", v.pidFile("renew"), "eth0"); err != nil {
		t.Fatalf("dhclient: %v\n%s", err, o)
	}
	if got := vmIP(t, v.ns, "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(got, " 10.77.2.5/24 ") {
		t.Fatalf("addresses%s, want 10.77.2.5/24", got)
	}
	// dhclient, now in the background, renews: a unicast REQUEST to the
	// server address, which the bridge answers ARP for.
	var env map[string]string
	eventually(t, 15*time.Second, "dhclient renewing its lease", func() bool {
		env, _ = envBlock(events, "RENEW")
		return env["new_ip_address"] != ""
	})
	if env["new_ip_address"] != "10.77.2.5" || env["new_dhcp_lease_time"] != "6" {
		t.Errorf("renewed lease %v, want 10.77.2.5 for 6 s", env)
	}
	if n := pingCount(v.ns, "10.77.2.6", 3); n < 2 {
		t.Errorf("after the renewal: %d of 3 pings to the peer on host3", n)
	}
	// The VM gives its lease back (dhclient -r stops the running client
	// and sends a RELEASE): the agent consumes it without an answer.
	before := agentMetric(t, 1, `midonet_agent_dhcp_total{event="ignored"}`)
	if o, err := v.dhclient(t, 20*time.Second, "-r", "-sf", script, "-lf", leases, "-pf", v.pidFile("renew"), "eth0"); err != nil {
		t.Fatalf("dhclient -r: %v\n%s", err, o)
	}
	eventually(t, 5*time.Second, "the agent counting the RELEASE", func() bool {
		return agentMetric(t, 1, `midonet_agent_dhcp_total{event="ignored"}`) > before
	})
}

// TestDHCPStaleLeaseNAK: a client restarted with a lease for an address
// that is no longer its own asks for it back (INIT-REBOOT) and is refused
// at once (NAK): it takes its new address without waiting out retries.
func TestDHCPStaleLeaseNAK(t *testing.T) {
	needDHClient(t)
	bridge, hosts := dhcpBridge(t, 4)
	mac := "02:00:0a:4d:04:05"
	entry := hosts + "/" + mac
	api(t, "POST", hosts, map[string]any{"macAddr": mac, "ipAddr": "10.77.4.5"})
	v := newTestVM(t, 1, bridge, mac)
	v.up(t)
	leases := filepath.Join(t.TempDir(), "leases")
	if o, err := v.dhclient(t, 20*time.Second, "-lf", leases, "-pf", v.pidFile("first"), "eth0"); err != nil {
		t.Fatalf("dhclient: %v\n%s", err, o)
	}
	stopDHClients(v)
	api(t, "PUT", entry, map[string]any{"macAddr": mac, "ipAddr": "10.77.4.7"})
	exec.Command("ip", "-n", v.ns, "addr", "flush", "dev", "eth0").Run()
	start := time.Now()
	o, err := v.dhclient(t, 30*time.Second, "-lf", leases, "-pf", v.pidFile("stale"), "eth0")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("dhclient with a stale lease: %v\n%s", err, o)
	}
	if !strings.Contains(o, "DHCPREQUEST for 10.77.4.5") || !strings.Contains(o, "DHCPNAK") {
		t.Errorf("no REQUEST for the old address answered by a NAK:\n%s", o)
	}
	if got := vmIP(t, v.ns, "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(got, " 10.77.4.7/24 ") {
		t.Errorf("addresses%s, want the new 10.77.4.7/24", got)
	}
	// Without the NAK, dhclient would wait out its INIT-REBOOT retries
	// (seconds) before falling back to DISCOVER.
	if took > 5*time.Second {
		t.Errorf("the stale lease took %s to replace: the NAK did not come at once\n%s", took, o)
	}
	t.Logf("stale lease replaced in %s", took.Round(time.Millisecond))
}

// wrapScript writes a dhclient-script that records each event's reason
// and variables, then runs Debian's dhclient-script to configure the VM.
func wrapScript(t *testing.T) (script, out string) {
	t.Helper()
	real, err := exec.LookPath("dhclient-script")
	if err != nil {
		t.Fatal("dhclient-script is missing (isc-dhcp-client installs it)")
	}
	dir := t.TempDir()
	script, out = filepath.Join(dir, "wrap.sh"), filepath.Join(dir, "events")
	body := "#!/bin/sh\necho \"reason=$reason\" >> " + out + "\nenv | grep -E '^(new_|old_)' | sort >> " + out +
		"\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, out
}

// TestDHCPUnknownMACGetsNothing: a client whose MAC has no entry gets no
// answer (and the bridge installs no flow for its requests).
func TestDHCPUnknownMACGetsNothing(t *testing.T) {
	needDHClient(t)
	bridge, _ := dhcpBridge(t, 3)
	v := newTestVM(t, 0, bridge, "02:00:0a:4d:03:99")
	v.up(t)
	conf := filepath.Join(t.TempDir(), "dhclient.conf")
	os.WriteFile(conf, []byte("timeout 4;\n"), 0o644)
	script, out := envScript(t)
	before := agentMetric(t, 0, `midonet_agent_dhcp_total{event="no-lease"}`)
	o, err := v.dhclient(t, 20*time.Second, "-cf", conf, "-sf", script, "-lf", filepath.Join(t.TempDir(), "leases"),
		"-pf", v.pidFile("unknown"), "eth0")
	if err == nil {
		t.Fatalf("dhclient got a lease for a MAC without an entry:\n%s", o)
	}
	if b, _ := os.ReadFile(out); strings.Contains(string(b), "reason=BOUND") {
		t.Errorf("the client was offered something:\n%s", b)
	}
	if after := agentMetric(t, 0, `midonet_agent_dhcp_total{event="no-lease"}`); after <= before {
		t.Errorf("the agent counted %d requests without a lease before and %d after", before, after)
	}
}

// TestDHCPv6 gives two VMs on two hosts their fixed IPv6 addresses with
// dhclient -6, checks the DNS servers of an information request, and pings
// one from the other over IPv6 through the bridge (neighbour discovery
// flooded across the overlay).
func TestDHCPv6(t *testing.T) {
	needDHClient(t)
	testenv.RequireTool(t, "ping", "iputils-ping")
	bridge := location(t, api(t, "POST", "/bridges", map[string]any{"name": "dhcp6-e2e", "tenantId": "e2e"}))
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", sb.APIURL()+"/bridges/"+bridge, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	sub := "/bridges/" + bridge + "/dhcpV6"
	api(t, "POST", sub, map[string]any{"prefix": "2001:db8:77::", "prefixLength": 64, "dnsServerAddrs": []string{"2001:db8:77::53"}})
	hosts := sub + "/2001:db8:77::_64/hostsV6"
	vms := []*testVM{newTestVM(t, 0, bridge, "02:00:0a:4d:06:01"), newTestVM(t, 1, bridge, "02:00:0a:4d:06:02")}
	addrs := []string{"2001:db8:77::11", "2001:db8:77::12"}
	for i, v := range vms {
		api(t, "POST", hosts, map[string]any{"clientId": v.mac, "fixedAddress": addrs[i]})
		// No duplicate address detection: the link-local address is usable
		// at once, as dhclient -6 needs.
		exec.Command("ip", "netns", "exec", v.ns, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0").Run()
		v.up(t)
	}
	for i, v := range vms {
		eventually(t, 5*time.Second, "a link-local address", func() bool {
			return strings.Contains(vmIP(t, v.ns, "-6", "-o", "addr", "show", "dev", "eth0"), " fe80::")
		})
		if o, err := v.dhclient(t, 20*time.Second, "-6", "-lf", filepath.Join(t.TempDir(), "leases6"),
			"-pf", v.pidFile("v6"), "eth0"); err != nil {
			t.Fatalf("dhclient -6 in %s: %v\n%s", v.name, err, o)
		}
		if got := vmIP(t, v.ns, "-6", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(got, " "+addrs[i]+"/128 ") {
			t.Fatalf("%s: addresses%s, want %s/128", v.name, got, addrs[i])
		}
		// DHCPv6 gives a /128; the on-link prefix comes from router
		// advertisements, which no router here sends.
		exec.Command("ip", "-n", v.ns, "-6", "route", "add", "2001:db8:77::/64", "dev", "eth0").Run()
	}
	if n := pingCount(vms[0].ns, addrs[1], 4); n < 3 {
		t.Errorf("%d of 4 IPv6 pings from host1's VM to host2's", n)
	}
	script, out := envScript(t)
	if o, err := vms[0].dhclient(t, 20*time.Second, "-6", "-S", "-sf", script, "-lf", filepath.Join(t.TempDir(), "info"),
		"-pf", vms[0].pidFile("info"), "eth0"); err != nil {
		t.Fatalf("dhclient -6 -S: %v\n%s", err, o)
	}
	// dhclient reports a stateless reply as RENEW6.
	if env := envOf(t, out, "RENEW6"); env["new_dhcp6_name_servers"] != "2001:db8:77::53" {
		t.Errorf("information request: DNS %q, want 2001:db8:77::53 (%v)", env["new_dhcp6_name_servers"], env)
	}
}
