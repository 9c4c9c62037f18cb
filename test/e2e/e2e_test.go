// Package e2e runs the sandbox (real agents in host namespaces, VMs as
// namespaces, real packets) and checks the virtual network's behaviour
// end to end. It needs root; without it the tests skip, saying why.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/agent"
	"github.com/midonet/midonet/internal/sandbox"
	"github.com/midonet/midonet/internal/testenv"
)

var (
	sb       *sandbox.Sandbox
	skipWhy  string
	startErr error
)

func TestMain(m *testing.M) {
	switch {
	case os.Geteuid() != 0:
		skipWhy = "end-to-end tests need root to build network namespaces"
	default:
		if _, err := exec.LookPath("ping"); err != nil {
			skipWhy = "ping is missing (apt-get install iputils-ping)"
		}
		if _, err := exec.LookPath("dhclient"); err != nil {
			skipWhy = "dhclient is missing: the sandbox's VMs get their addresses by DHCP (apt-get install isc-dhcp-client)"
		}
	}
	code := 0
	if skipWhy == "" {
		code = run(m)
	} else {
		code = m.Run()
	}
	os.Exit(code)
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "midonet-e2e-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "midonet")
	midonetBin = bin
	build := exec.Command("go", "build", "-o", bin, "github.com/midonet/midonet/cmd/midonet")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building midonet: %v\n%s", err, out)
		return 1
	}
	var log bytes.Buffer
	sb, startErr = sandbox.Start(context.Background(), sandbox.Config{
		Binary: bin, DataDir: filepath.Join(dir, "data"), Listen: "127.0.0.1:18181", Out: &log,
		AgentArgs: ageingArgs,
	})
	if startErr != nil {
		fmt.Fprintf(os.Stderr, "sandbox: %v\n%s", startErr, log.String())
		dumpLogs(filepath.Join(dir, "data"))
		return 1
	}
	code := m.Run()
	if code != 0 {
		dumpLogs(filepath.Join(dir, "data"))
	}
	sb.Close()
	return code
}

// dumpLogs prints the tail of the agents' logs to help diagnose a failure.
func dumpLogs(dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		fmt.Fprintf(os.Stderr, "--- %s (tail)\n%s\n", f, b)
	}
}

func need(t testing.TB) {
	t.Helper()
	if skipWhy != "" {
		if testenv.Required() {
			t.Fatalf("%s (MIDONET_REQUIRE_TOOLS is set: CI must provide it)", skipWhy)
		}
		t.Skip(skipWhy)
	}
}

// pingCount pings from a namespace and returns how many replies came back.
func pingCount(ns, addr string, n int, extra ...string) int {
	args := append([]string{"netns", "exec", ns, "ping", "-n", "-c", fmt.Sprint(n), "-i", "0.2", "-W", "0.5"}, extra...)
	out, _ := exec.Command("ip", append(args, addr)...).CombinedOutput()
	var tx, rx int
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "packets transmitted") {
			fmt.Sscanf(line, "%d packets transmitted, %d received", &tx, &rx)
		}
	}
	return rx
}

// eventually retries cond until it holds, and fails when no attempt that
// started within timeout succeeded. It returns when the successful attempt
// started: for a probe that waits for a reply, that is when the probe was
// sent, not when it gave up waiting.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		attempt := time.Now()
		if cond() {
			return attempt.Sub(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func api(t testing.TB, method, p string, body any) *http.Response {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, sb.APIURL()+p, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %s", method, p, resp.Status)
	}
	return resp
}

func TestSandboxChecks(t *testing.T) {
	need(t)
	var out bytes.Buffer
	checks := sb.RunChecks(context.Background())
	if failed := sandbox.PrintTable(&out, checks); failed > 0 {
		t.Fatalf("%d checks failed:\n%s", failed, out.String())
	}
	t.Logf("\n%s", out.String())
}

func TestL2AcrossHostsLearnsAndFloods(t *testing.T) {
	need(t)
	// vm-a1 (host1) and vm-a2 (host2) share net-a: the first ARP floods
	// across the overlay, the reply is learned, then unicast follows.
	exec.Command("ip", "netns", "exec", sandbox.VMNS("vm-a1"), "ip", "neigh", "flush", "all").Run()
	if n := pingCount(sandbox.VMNS("vm-a1"), "10.0.1.11", 5); n < 4 {
		t.Fatalf("%d of 5 pings across hosts on one bridge", n)
	}
	var macs []map[string]any
	resp, err := http.Get(sb.APIURL() + "/bridges/" + sb.ID("net-a") + "/mac_table")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&macs)
	resp.Body.Close()
	ports := map[string]bool{}
	for _, m := range macs {
		ports[m["portId"].(string)] = true
	}
	if !ports[sb.ID("port:vm-a1")] || !ports[sb.ID("port:vm-a2")] {
		t.Errorf("the agents did not learn both VMs' MACs into the shared table: %v", macs)
	}
}

func TestRoutingAcrossHostsWithLargePackets(t *testing.T) {
	need(t)
	// 3000-byte pings are fragmented by the VM: fragments cross the
	// router and the overlay.
	if n := pingCount(sandbox.VMNS("vm-a1"), "10.0.2.11", 4, "-s", "3000"); n < 3 {
		t.Fatalf("%d of 4 large pings across the router", n)
	}
}

// Between two VMs on one host (vm-a2 and vm-b1 on host 2, across the
// router), the flows run in the kernel fast path: the agent counts the
// pings there, large ones too (their fragments go through the agent, the
// kernel takes no fragments), and both sizes get through.
func TestSameHostRoutingInTheKernel(t *testing.T) {
	need(t)
	const kernel = "midonet_agent_datapath_kernel_packets"
	const host2 = 1 // sandbox.HostNS counts from 0
	before := agentMetric(t, host2, kernel)
	if n := pingCount(sandbox.VMNS("vm-a2"), "10.0.2.10", 10); n < 9 {
		t.Fatalf("%d of 10 pings from vm-a2 to vm-b1", n)
	}
	if n := pingCount(sandbox.VMNS("vm-a2"), "10.0.2.10", 4, "-s", "3000"); n < 3 {
		t.Fatalf("%d of 4 large pings from vm-a2 to vm-b1", n)
	}
	// The gauge follows the datapath every expiry tick.
	eventually(t, 5*time.Second, "pings counted in host 2's kernel fast path", func() bool {
		return agentMetric(t, host2, kernel)-before >= 10
	})
}

// Across hosts (vm-a1 on host 1, vm-b2 on host 3) the kernels push and pop
// the overlay: both hosts count the pings in their fast paths.
func TestOverlayInTheKernel(t *testing.T) {
	need(t)
	const kernel = "midonet_agent_datapath_kernel_packets"
	before := [2]int{agentMetric(t, 0, kernel), agentMetric(t, 2, kernel)}
	if n := pingCount(sandbox.VMNS("vm-a1"), "10.0.2.11", 10); n < 9 {
		t.Fatalf("%d of 10 pings from vm-a1 to vm-b2", n)
	}
	eventually(t, 5*time.Second, "pings counted in hosts 1 and 3's kernel fast paths", func() bool {
		return agentMetric(t, 0, kernel)-before[0] >= 8 && agentMetric(t, 2, kernel)-before[1] >= 8
	})
}

// Pings through SNAT: the reply must find the NAT binding both on the
// uplink's host when the VM is elsewhere (replicated state) and when the
// VM is on the uplink's host itself. The userspace datapath matches the
// echo identifier NAT keys on, so no ping is left to per-packet simulation.
func TestPingThroughSNAT(t *testing.T) {
	need(t)
	const perPacket = `midonet_agent_simulations_total{result="userspace-only"}`
	// A stale ARP entry of the gateway asked for again brings a reply that
	// is simulated in userspace too (a BGP peer's reply is copied to the
	// port's speaker, without a flow): those do not count.
	const refreshes = `midonet_agent_arp_refreshes_total`
	count := func() (n int) {
		for h := range 3 {
			n += agentMetric(t, h, perPacket) - agentMetric(t, h, refreshes)
		}
		return n
	}
	before := count()
	for _, vm := range []string{"vm-b1", "vm-b2"} {
		if n := pingCount(sandbox.VMNS(vm), "192.0.2.1", 4); n < 3 {
			t.Errorf("%s: %d of 4 pings to the external host through SNAT", vm, n)
		}
	}
	if after := count(); after > before {
		t.Errorf("%d echoes simulated packet by packet, want none (flows match the echo identifier)", after-before)
	}
}

func TestICMPErrorTranslatedBackThroughSNAT(t *testing.T) {
	need(t)
	// A UDP datagram to a closed port of the external host comes back as
	// an ICMP port unreachable to the SNAT address; the tenant router must
	// translate the error and the datagram it quotes back to vm-b1.
	var err error
	inNS(t, sandbox.VMNS("vm-b1"), func() {
		var c net.Conn
		c, err = net.Dial("udp4", "192.0.2.1:9")
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 16)
		for i := 0; i < 5; i++ {
			c.Write([]byte("probe"))
			c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, err = c.Read(buf); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
		}
	})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("want ECONNREFUSED from a translated ICMP port unreachable, got %v", err)
	}
}

// inNS runs fn on a thread inside a namespace.
func inNS(t testing.TB, name string, fn func()) {
	t.Helper()
	if err := sandbox.InNS(name, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestRuleChangeInvalidatesFlowsWithinASecond(t *testing.T) {
	need(t)
	vm, dst := sandbox.VMNS("vm-a1"), "10.0.2.11"
	if n := pingCount(vm, dst, 3); n < 2 {
		t.Fatalf("baseline: %d of 3 pings", n)
	}
	// A drop rule for ICMP at the head of vm-b2's ingress security group.
	resp := api(t, "POST", "/chains/"+sb.ID("sg")+"/rules", map[string]any{"type": "drop", "nwProto": 1, "position": 1})
	rule := resp.Header.Get("Location")
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", rule, nil)
		if r, err := http.DefaultClient.Do(req); err == nil {
			r.Body.Close()
		}
	})
	took := eventually(t, time.Second, "installed flows invalidated by the new rule", func() bool {
		return pingCount(vm, dst, 1) == 0
	})
	t.Logf("the first ping dropped was sent %s after the rule was created", took)
	req, _ := http.NewRequest("DELETE", rule, nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	eventually(t, 2*time.Second, "traffic flows again once the rule is deleted", func() bool {
		return pingCount(vm, dst, 1) == 1
	})
}

func TestInterfaceDownAndUp(t *testing.T) {
	need(t)
	host, tap := sandbox.HostNS(1), "tap-vm-a2"
	vm, dst := sandbox.VMNS("vm-a1"), "10.0.1.11"
	set := func(state string) {
		if out, err := exec.Command("ip", "-n", host, "link", "set", tap, state).CombinedOutput(); err != nil {
			t.Fatalf("ip link set %s: %v %s", state, err, out)
		}
	}
	t.Cleanup(func() { set("up") })
	set("down")
	eventually(t, 3*time.Second, "no traffic while the VM's interface is down", func() bool {
		return pingCount(vm, dst, 1) == 0
	})
	set("up")
	eventually(t, 5*time.Second, "traffic again once the interface is up", func() bool {
		return pingCount(vm, dst, 1) == 1
	})
}

// natConversation opens a TCP connection from vm-b1 (SNATed by the tenant
// router) to a line-echo server in the external network on port, checks
// that the server sees it from the SNAT address, and returns that
// address:port and a function that sends a line and returns the echo,
// prefixed with the address and port the server saw the client at.
func natConversation(t *testing.T, port int) (seen string, say func(msg string) string) {
	t.Helper()
	echoServer(t, sandbox.ExtNS, port)
	var c net.Conn
	inNS(t, sandbox.VMNS("vm-b1"), func() {
		var err error
		if c, err = net.DialTimeout("tcp4", fmt.Sprintf("192.0.2.1:%d", port), 3*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { c.Close() })
	r := bufio.NewReader(c)
	say = func(msg string) string {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "%s\n", msg)
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("connection broke: %v", err)
		}
		return strings.TrimSpace(line)
	}
	before := say("before")
	if !strings.HasPrefix(before, "203.0.113.1:") {
		t.Fatalf("echo %q, want it from the SNAT address", before)
	}
	seen, _, _ = strings.Cut(before, " ")
	return seen, say
}

func TestNATConnectionSurvivesAgentRestart(t *testing.T) {
	need(t)
	seen, say := natConversation(t, 7100)
	// vm-b1 lives on host2: restart its agent (and with it the userspace
	// datapath and every flow).
	if err := sb.RestartAgent(1); err != nil {
		t.Fatal(err)
	}
	if got := say("after"); got != seen+" after" {
		t.Fatalf("echo after the restart %q: the connection must keep its NAT mapping %s", got, seen)
	}
}

// A crashed agent (no clean shutdown, so no save on the way out) keeps the
// flow state of a connection it made a moment before: the agent saves its
// state whole every 2 s and journals every key in between.
func TestNATConnectionSurvivesAgentCrash(t *testing.T) {
	need(t)
	seen, say := natConversation(t, 7102)
	ip, port, _ := strings.Cut(seen, ":")
	// Within a second: a save every 2 s alone would often come too late.
	eventually(t, time.Second, "host2's saved flow state holding the connection's SNAT binding "+seen, func() bool {
		msgs, err := agent.ReadSavedState(sb.AgentStateDir(1))
		if err != nil {
			return false
		}
		for _, m := range msgs {
			for _, e := range m.NAT {
				if e.Binding.IP.String() == ip && strconv.Itoa(int(e.Binding.Port)) == port {
					return true
				}
			}
		}
		return false
	})
	if err := sb.CrashAgent(1); err != nil {
		t.Fatal(err)
	}
	if got := say("after"); got != seen+" after" {
		t.Fatalf("echo after the crash %q: the connection must keep its NAT mapping %s", got, seen)
	}
}

// migrate moves a VM from one host to another as a cloud would: unbind the
// port, move the VM's interface (same MAC and address) to a tap on the new
// host, bind the port there, and wait until the new host reports it active.
func migrate(t *testing.T, vmName string, from, to int) {
	t.Helper()
	vm, tap := sandbox.VMNS(vmName), "tap-"+vmName
	port := sb.ID("port:" + vmName)
	fromHost, toHost := sb.ID(fmt.Sprintf("host:host%d", from+1)), sb.ID(fmt.Sprintf("host:host%d", to+1))
	out, err := exec.Command("ip", "-n", vm, "-o", "link", "show", "eth0").Output()
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(out))
	var mac string
	for i, x := range f {
		if x == "link/ether" && i+1 < len(f) {
			mac = f[i+1]
		}
	}
	var addr string
	if out, err := exec.Command("ip", "-n", vm, "-o", "-4", "addr", "show", "eth0").Output(); err == nil {
		if g := strings.Fields(string(out)); len(g) > 3 {
			addr = g[3]
		}
	}
	route, _ := exec.Command("ip", "-n", vm, "route", "show", "default").Output()
	gw := strings.Fields(string(route))
	api(t, "DELETE", "/hosts/"+fromHost+"/ports/"+port, nil)
	run := func(args ...string) {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	run("-n", sandbox.HostNS(from), "link", "del", tap)
	run("link", "add", tap, "netns", sandbox.HostNS(to), "type", "veth", "peer", "name", "eth0", "netns", vm)
	run("-n", vm, "link", "set", "eth0", "address", mac)
	run("-n", vm, "addr", "add", addr, "dev", "eth0")
	run("-n", vm, "link", "set", "eth0", "up")
	run("-n", sandbox.HostNS(to), "link", "set", tap, "up")
	if len(gw) >= 3 {
		run("-n", vm, "route", "replace", "default", "via", gw[2])
	}
	api(t, "POST", "/hosts/"+toHost+"/ports", map[string]any{"portId": port, "interfaceName": tap})
	eventually(t, 10*time.Second, "the port active on its new host", func() bool {
		resp, err := http.Get(sb.APIURL() + "/ports/" + port)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var p struct {
			HostID *string `json:"hostId"`
			Active bool    `json:"active"`
		}
		json.NewDecoder(resp.Body).Decode(&p)
		return p.Active && p.HostID != nil && *p.HostID == toHost
	})
}

// agentMetricLines returns the lines of a host agent's metrics page, or
// none when it does not answer.
func agentMetricLines(t testing.TB, host int) []string {
	var lines []string
	inNS(t, sandbox.HostNS(host), func() {
		// Dial on this thread, which is in the host's namespace: an
		// http.Client would dial from another thread.
		conn, err := net.DialTimeout("tcp4", "127.0.0.1:9100", time.Second)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
		s := bufio.NewScanner(conn)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			lines = append(lines, s.Text())
		}
	})
	return lines
}

// agentMetric reads a sample of a host agent's metrics: the line that
// starts with series (the metric name with its labels) followed by a space.
func agentMetric(t testing.TB, host int, series string) int {
	n := 0
	for _, l := range agentMetricLines(t, host) {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			// Large values come as 1.2345e+06.
			var f float64
			fmt.Sscanf(v, "%g", &f)
			n = int(f)
		}
	}
	return n
}

// stateReceived reads a host agent's count of flow-state messages received.
func stateReceived(t *testing.T, host int) int {
	return agentMetric(t, host, "midonet_agent_state_messages_received_total")
}

func TestNATConnectionSurvivesPortMigration(t *testing.T) {
	need(t)
	seen, say := natConversation(t, 7101)
	// vm-b1 moves from host2 to host1, and back at the end.
	received := stateReceived(t, 0)
	migrate(t, "vm-b1", 1, 0)
	t.Cleanup(func() { migrate(t, "vm-b1", 0, 1) })
	eventually(t, 10*time.Second, "host1 pulled the flow state from host2", func() bool {
		return stateReceived(t, 0) > received
	})
	if got := say("after"); got != seen+" after" {
		t.Fatalf("echo after the migration %q: the connection must keep its NAT mapping %s", got, seen)
	}
}

// TestConsoleReadsEveryAgent: the cluster's console reads each agent's
// counters at the host's tunnel-zone address (the agents listen on :9100
// in their namespaces), as the hosts view shows them.
func TestConsoleReadsEveryAgent(t *testing.T) {
	need(t)
	for i, name := range []string{"host1", "host2", "host3"} {
		var m struct {
			Address   string `json:"address"`
			Available bool   `json:"available"`
			Error     string `json:"error"`
			Ports     []struct {
				Interface string `json:"interface"`
			} `json:"ports"`
		}
		eventually(t, 40*time.Second, name+"'s counters through the console", func() bool {
			resp, err := http.Get(sb.APIURL() + "/hosts/" + sb.ID("host:"+name) + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			if json.NewDecoder(resp.Body).Decode(&m) != nil || !m.Available {
				return false
			}
			for _, p := range m.Ports {
				if p.Interface == "midonet-vxlan" { // the overlay port every agent has
					return true
				}
			}
			return false
		})
		if want := fmt.Sprintf("10.250.0.%d:9100", i+1); m.Address != want {
			t.Errorf("%s's metrics read at %q, want its tunnel-zone address %s", name, m.Address, want)
		}
	}
}
