package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/sandbox"
	"github.com/midonet/midonet/internal/services/bgp/bird"
	"github.com/midonet/midonet/internal/testenv"
)

// The sandbox's external network runs BIRD (AS 65001), which announces a
// default route and the internet address 198.51.100.1/32; the provider
// router (AS 65000) announces 203.0.113.0/24 back.
const (
	internetAddr = "198.51.100.1"
	publicRange  = "203.0.113.0/24"
)

// learnedRoute is a route as GET /routers/{id}/routes shows it.
type learnedRoute struct {
	ID               string `json:"id"`
	DstNetworkAddr   string `json:"dstNetworkAddr"`
	DstNetworkLength int    `json:"dstNetworkLength"`
	NextHopGateway   string `json:"nextHopGateway"`
	NextHopPort      string `json:"nextHopPort"`
	Learned          bool   `json:"learned"`
}

func (r learnedRoute) String() string {
	return fmt.Sprintf("%s/%d via %s", r.DstNetworkAddr, r.DstNetworkLength, r.NextHopGateway)
}

// getJSON reads an API object into out.
func getJSON(t *testing.T, p string, out any) {
	t.Helper()
	resp, err := http.Get(sb.APIURL() + p)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", p, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// providerLearned lists the provider router's learned routes as
// "prefix via gateway".
func providerLearned(t *testing.T) []string {
	t.Helper()
	var rs []learnedRoute
	getJSON(t, "/routers/"+sb.ID("provider-router")+"/routes", &rs)
	var out []string
	for _, r := range rs {
		if r.Learned {
			out = append(out, r.String())
		}
	}
	sort.Strings(out)
	return out
}

// birdHas reports whether d learned prefix by BGP from AS origin.
func birdHas(t *testing.T, d *bird.Daemon, prefix, origin string) bool {
	t.Helper()
	rs, err := d.Routes()
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(rs, func(r bird.Route) bool { return r.Prefix.String() == prefix && r.OriginAS == origin })
}

// TestBGPLearnsAndAnnounces: the provider router learns BIRD's default
// route and a /32 behind it, and VMs on the three hosts reach that /32;
// BIRD learns the announced public range, and loses it when the network is
// removed; our CLI shows the session and the learned routes.
func TestBGPLearnsAndAnnounces(t *testing.T) {
	need(t)
	want := []string{"0.0.0.0/0 via 192.0.2.1", internetAddr + "/32 via 192.0.2.1"}
	eventually(t, 30*time.Second, fmt.Sprintf("the provider router learns %q", want), func() bool {
		return slices.Equal(providerLearned(t), want)
	})
	for _, vm := range []string{"vm-a1", "vm-a2", "vm-b2"} { // hosts 1, 2 and 3
		if n := pingCount(sandbox.VMNS(vm), internetAddr, 3); n < 2 {
			t.Errorf("%s pinged %s through the learned route: %d of 3 replies", vm, internetAddr, n)
		}
	}
	isp := sb.ISP()
	eventually(t, 20*time.Second, "BIRD learns "+publicRange+" from AS 65000", func() bool {
		return birdHas(t, isp, publicRange, "65000")
	})

	// Our CLI, as an operator would read it.
	out, err := exec.Command(midonetBin, "router", "bgp", "show", "--router", "provider-router", "--api", sb.APIURL()).CombinedOutput()
	if err != nil {
		t.Fatalf("midonet router bgp show: %v: %s", err, out)
	}
	for _, w := range []string{"AS 65000", "192.0.2.1", "Established", publicRange, "Learned routes (2)", internetAddr + "/32"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("midonet router bgp show lacks %q:\n%s", w, out)
		}
	}

	// Removing the network withdraws it from BIRD; adding it back
	// announces it again.
	var nets []struct {
		ID            string `json:"id"`
		SubnetAddress string `json:"subnetAddress"`
	}
	getJSON(t, "/routers/"+sb.ID("provider-router")+"/bgp_networks", &nets)
	if len(nets) != 1 {
		t.Fatalf("bgp networks %+v, want the public range", nets)
	}
	restore := func() {
		var now []any
		getJSON(t, "/routers/"+sb.ID("provider-router")+"/bgp_networks", &now)
		if len(now) == 0 {
			api(t, "POST", "/routers/"+sb.ID("provider-router")+"/bgp_networks",
				map[string]any{"subnetAddress": "203.0.113.0", "subnetLength": 24})
		}
	}
	t.Cleanup(restore)
	api(t, "DELETE", "/bgp_networks/"+nets[0].ID, nil)
	eventually(t, 10*time.Second, "BIRD loses "+publicRange, func() bool { return !birdHas(t, isp, publicRange, "65000") })
	restore()
	eventually(t, 10*time.Second, "BIRD learns "+publicRange+" again", func() bool { return birdHas(t, isp, publicRange, "65000") })
}

// ispNet is an ISP of the failover test: a namespace with BIRD, cabled to
// an uplink interface of a host and to the internet namespace.
type ispNet struct {
	ns       string
	uplinkIf string // the interface in the host's namespace
	net      string // the uplink subnet's first three octets
	as       int
	daemon   *bird.Daemon
	port     string // the provider router's port
	peer     string // the BGP peer's id
	inetIf   string // the internet namespace's interface towards it
}

func (i *ispNet) addr() string     { return i.net + ".1" }
func (i *ispNet) portAddr() string { return i.net + ".2" }

const (
	failoverTarget = "198.18.5.5"
	failoverHold   = 10 * time.Second
	inetAS         = 65010
)

// startBird starts BIRD in a namespace for the test.
func startBird(t *testing.T, ns string, cfg bird.Config) *bird.Daemon {
	t.Helper()
	d, err := bird.Start(t.TempDir(), cfg, func(cmd *exec.Cmd) error { return sandbox.InNS(ns, cmd.Start) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("BIRD log of %s:\n%s", ns, d.Log())
		}
	})
	return d
}

// ipns runs ip(8) and fails the test on error.
func ipns(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// buildFailoverRig adds to the sandbox two uplinks of the provider router,
// A on host1 and B on host2, each to an ISP namespace running BIRD; both
// ISPs peer with the internet namespace (BIRD too), which holds
// failoverTarget and routes the public range back through whichever ISP
// still announces it. The uplinks form a stateful port
// group. B's peer starts with a wrong MD5 password. Everything is removed
// when the test ends.
func buildFailoverRig(t *testing.T) (a, b *ispNet) {
	t.Helper()
	testenvBird(t)
	a = &ispNet{ns: "mbt-ispa", uplinkIf: "upa", net: "10.71.0", as: 65002, inetIf: "a0"}
	b = &ispNet{ns: "mbt-ispb", uplinkIf: "upb", net: "10.72.0", as: 65003, inetIf: "b0"}
	const inet = "mbt-inet"
	for _, ns := range []string{a.ns, b.ns, inet} {
		exec.Command("ip", "netns", "del", ns).Run() // a crashed run's
		ipns(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		ipns(t, "-n", ns, "link", "set", "lo", "up")
	}
	ipns(t, "-n", inet, "addr", "add", failoverTarget+"/32", "dev", "lo")
	for i, isp := range []*ispNet{a, b} {
		host := sandbox.HostNS(i) // A on host1, B on host2
		ipns(t, "link", "add", isp.uplinkIf, "netns", host, "type", "veth", "peer", "name", "eth0", "netns", isp.ns)
		ipns(t, "-n", host, "link", "set", isp.uplinkIf, "up")
		ipns(t, "-n", isp.ns, "addr", "add", isp.addr()+"/24", "dev", "eth0")
		ipns(t, "-n", isp.ns, "link", "set", "eth0", "up")
		link := fmt.Sprintf("10.8%d.0", i+1)
		ipns(t, "link", "add", "inet0", "netns", isp.ns, "type", "veth", "peer", "name", isp.inetIf, "netns", inet)
		ipns(t, "-n", isp.ns, "addr", "add", link+".1/30", "dev", "inet0")
		ipns(t, "-n", isp.ns, "link", "set", "inet0", "up")
		ipns(t, "-n", inet, "addr", "add", link+".2/30", "dev", isp.inetIf)
		ipns(t, "-n", inet, "link", "set", isp.inetIf, "up")
		ipns(t, "-n", isp.ns, "route", "add", failoverTarget+"/32", "via", link+".2")
		if out, err := exec.Command("ip", "netns", "exec", isp.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
			t.Fatalf("ip_forward in %s: %v %s", isp.ns, err, out)
		}
		password := ""
		if isp == b {
			password = "s3cret"
		}
		// The ISP peers with the provider router and with the internet,
		// passing the public range on to the internet (transit).
		isp.daemon = startBird(t, isp.ns, bird.Config{
			RouterID: netip.MustParseAddr(isp.addr()), AS: uint32(isp.as), Kernel: true, Transit: true,
			Announce: []netip.Prefix{netip.MustParsePrefix(failoverTarget + "/32")},
			Neighbors: []bird.Neighbor{
				{Name: "provider", Address: netip.MustParseAddr(isp.portAddr()), AS: 65000,
					Local: netip.MustParseAddr(isp.addr()), Password: password,
					HoldTime: failoverHold, KeepAlive: 3 * time.Second, ConnectRetry: 2 * time.Second},
				{Name: "internet", Address: netip.MustParseAddr(link + ".2"), AS: inetAS, Local: netip.MustParseAddr(link + ".1"),
					HoldTime: failoverHold, KeepAlive: 3 * time.Second, ConnectRetry: 2 * time.Second},
			},
		})
	}
	// The internet learns the public range from both ISPs, and routes it
	// back through whichever still has it.
	startBird(t, inet, bird.Config{
		RouterID: netip.MustParseAddr("10.81.0.2"), AS: inetAS, Kernel: true,
		Neighbors: []bird.Neighbor{
			{Name: "ispa", Address: netip.MustParseAddr("10.81.0.1"), AS: uint32(a.as), Local: netip.MustParseAddr("10.81.0.2"),
				HoldTime: failoverHold, KeepAlive: 3 * time.Second, ConnectRetry: 2 * time.Second},
			{Name: "ispb", Address: netip.MustParseAddr("10.82.0.1"), AS: uint32(b.as), Local: netip.MustParseAddr("10.82.0.2"),
				HoldTime: failoverHold, KeepAlive: 3 * time.Second, ConnectRetry: 2 * time.Second},
		},
	})

	pr := sb.ID("provider-router")
	var group string
	for i, isp := range []*ispNet{a, b} {
		isp.port = postID(t, "/routers/"+pr+"/ports", map[string]any{"type": "Router", "portAddress": isp.portAddr(),
			"networkAddress": isp.net + ".0", "networkLength": 24})
		host := sb.ID(fmt.Sprintf("host:host%d", i+1))
		api(t, "POST", "/hosts/"+host+"/ports", map[string]any{"portId": isp.port, "interfaceName": isp.uplinkIf})
		port := isp.port
		t.Cleanup(func() {
			apiQuiet("DELETE", "/hosts/"+host+"/ports/"+port)
			apiQuiet("DELETE", "/ports/"+port)
		})
		password := ""
		if isp == b {
			password = "wrong"
		}
		isp.peer = postID(t, "/routers/"+pr+"/bgp_peers", map[string]any{"address": isp.addr(), "asNumber": isp.as,
			"keepAlive": 5, "holdTime": int(failoverHold / time.Second), "connectRetry": 5, "password": password})
		peer := isp.peer
		t.Cleanup(func() { apiQuiet("DELETE", "/bgp_peers/"+peer) })
	}
	group = postID(t, "/port_groups", map[string]any{"name": "uplinks", "stateful": true})
	t.Cleanup(func() { apiQuiet("DELETE", "/port_groups/"+group) })
	for _, p := range []string{a.port, b.port} {
		api(t, "POST", "/port_groups/"+group+"/ports", map[string]any{"portId": p})
	}
	return a, b
}

// midonetBin is the binary the sandbox's agents run.
var midonetBin string

func testenvBird(t *testing.T) {
	t.Helper()
	testenv.RequireTool(t, "bird", "bird2")
	testenv.RequireTool(t, "birdc", "bird2")
}

// postID creates an object and returns its id.
func postID(t *testing.T, p string, body any) string {
	t.Helper()
	resp := api(t, "POST", p, body)
	return filepath.Base(resp.Header.Get("Location"))
}

// apiQuiet sends a request whose failure does not matter (cleanup).
func apiQuiet(method, p string) {
	req, _ := http.NewRequest(method, sb.APIURL()+p, nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

// peerState reads a BGP peer's session state from the API.
func peerState(t *testing.T, peer string) string {
	t.Helper()
	var p struct {
		Status *struct {
			State string `json:"state"`
		} `json:"status"`
	}
	getJSON(t, "/bgp_peers/"+peer, &p)
	if p.Status == nil {
		return "none"
	}
	return p.Status.State
}

// via reports whether the provider router has learned the failover target
// through isp.
func via(t *testing.T, isp *ispNet) bool {
	return slices.Contains(providerLearned(t), failoverTarget+"/32 via "+isp.addr())
}

// echoServer serves line echoes prefixed with the client's address in ns.
func echoServer(t *testing.T, ns string, port int) {
	t.Helper()
	var ln net.Listener
	inNS(t, ns, func() {
		var err error
		if ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port)); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					fmt.Fprintf(c, "%s %s\n", c.RemoteAddr(), s.Text())
				}
			}()
		}
	}()
}

// conversation is a TCP connection from a VM to the echo server.
type conversation struct {
	c net.Conn
	r *bufio.Reader
}

func dialFrom(t *testing.T, vm, addr string, timeout time.Duration) (*conversation, error) {
	var c net.Conn
	var err error
	inNS(t, sandbox.VMNS(vm), func() { c, err = net.DialTimeout("tcp4", addr, timeout) })
	if err != nil {
		return nil, err
	}
	return &conversation{c: c, r: bufio.NewReader(c)}, nil
}

func (cv *conversation) say(msg string, timeout time.Duration) (string, error) {
	cv.c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(cv.c, "%s\n", msg); err != nil {
		return "", err
	}
	line, err := cv.r.ReadString('\n')
	return strings.TrimSpace(line), err
}

// probe opens a new connection to the target and exchanges a line: a new
// source port each time, so that equal-cost routes spread the probes.
func probe(t *testing.T, port int) bool {
	cv, err := dialFrom(t, "vm-b1", fmt.Sprintf("%s:%d", failoverTarget, port), 300*time.Millisecond)
	if err != nil {
		return false
	}
	defer cv.c.Close()
	_, err = cv.say("probe", 300*time.Millisecond)
	return err == nil
}

// allThrough waits until n probes in a row get through, and returns how
// long from start.
func allThrough(t *testing.T, start time.Time, timeout time.Duration, n, port int, what string) time.Duration {
	t.Helper()
	ok := 0
	var first time.Time
	for ok < n {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		at := time.Now()
		if probe(t, port) {
			if ok == 0 {
				first = at
			}
			ok++
		} else {
			ok = 0
		}
	}
	return first.Sub(start)
}

// fail freezes an ISP: its BIRD stops (its sessions go silent, so only the
// hold timer can tell) and its link to the internet goes down (it forwards
// nothing). recover undoes it.
func fail(t *testing.T, isp *ispNet) {
	t.Helper()
	if err := isp.daemon.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ipns(t, "-n", "mbt-inet", "link", "set", isp.inetIf, "down")
}

func recoverISP(t *testing.T, isp *ispNet) {
	t.Helper()
	ipns(t, "-n", "mbt-inet", "link", "set", isp.inetIf, "up")
	if err := isp.daemon.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// TestBGPFailover: two uplinks on two hosts, each with its ISP. A wrong MD5
// password keeps B's session down until it is corrected. With both up,
// connections through SNAT spread over both; when A fails, its routes
// leave the router within the hold time, new connections all go through
// B and the established ones survive (their NAT state is on both uplinks'
// hosts); A's recovery brings its routes back. An agent killed with
// SIGKILL takes its learned routes with it. MIDONET_BGP_TRIALS=N repeats
// the failover N times and logs the median.
func TestBGPFailover(t *testing.T) {
	need(t)
	a, b := buildFailoverRig(t)
	eventually(t, 30*time.Second, "the session with A and the target learned through it", func() bool {
		return peerState(t, a.peer) == "Established" && via(t, a)
	})

	// B's password is wrong: its session never comes up.
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if st, _ := b.daemon.State("provider"); st == "Established" || peerState(t, b.peer) == "Established" || via(t, b) {
			t.Fatalf("B's session came up with a wrong MD5 password (BIRD %q, API %q)", st, peerState(t, b.peer))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var peer map[string]any
	getJSON(t, "/bgp_peers/"+b.peer, &peer)
	peer["password"] = "s3cret"
	delete(peer, "status")
	api(t, "PUT", "/bgp_peers/"+b.peer, peer)
	eventually(t, 30*time.Second, "the right password brings B up, the target learned through both", func() bool {
		return peerState(t, b.peer) == "Established" && via(t, a) && via(t, b)
	})
	for _, isp := range []*ispNet{a, b} {
		isp := isp
		eventually(t, 20*time.Second, isp.ns+" learns "+publicRange, func() bool { return birdHas(t, isp.daemon, publicRange, "65000") })
	}

	echoServer(t, "mbt-inet", 7200)
	allThrough(t, time.Now(), 20*time.Second, 10, 7200, "connections through both uplinks")
	// Connections through SNAT, spread over both uplinks by their hash.
	var convs []*conversation
	for range 8 {
		cv, err := dialFrom(t, "vm-b1", failoverTarget+":7200", 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cv.c.Close() })
		if got, err := cv.say("before", 3*time.Second); err != nil || !strings.HasPrefix(got, "203.0.113.1:") {
			t.Fatalf("echo %q, %v: want it from the SNAT address", got, err)
		}
		convs = append(convs, cv)
	}

	trials := 1
	fmt.Sscan(os.Getenv("MIDONET_BGP_TRIALS"), &trials)
	var failovers, withdrawals []time.Duration
	for trial := range trials {
		start := time.Now()
		fail(t, a)
		withdrawn := eventually(t, failoverHold+5*time.Second, "A's routes leave the router", func() bool { return !via(t, a) })
		d := allThrough(t, start, failoverHold+10*time.Second, 10, 7200, "every new connection through B")
		failovers, withdrawals = append(failovers, d), append(withdrawals, withdrawn)
		t.Logf("trial %d: A's routes withdrawn %v after its failure, traffic all through B after %v (hold time %v)",
			trial+1, withdrawn.Round(10*time.Millisecond), d.Round(10*time.Millisecond), failoverHold)
		if withdrawn > failoverHold+time.Second {
			t.Errorf("A's routes left %v after its failure: later than the hold time %v", withdrawn, failoverHold)
		}
		for i, cv := range convs {
			if got, err := cv.say(fmt.Sprintf("after-%d", trial), 5*time.Second); err != nil || !strings.HasSuffix(got, fmt.Sprintf("after-%d", trial)) {
				t.Fatalf("connection %d through SNAT broke over the failover: %q, %v", i, got, err)
			}
		}
		recoverISP(t, a)
		eventually(t, 40*time.Second, "A recovers: its session and routes come back", func() bool {
			return peerState(t, a.peer) == "Established" && via(t, a) && via(t, b)
		})
		allThrough(t, time.Now(), 20*time.Second, 10, 7200, "connections through both uplinks again")
	}
	t.Logf("failover over %d trials: traffic through the other uplink after p50 %v (all %v); routes withdrawn after p50 %v; hold time %v",
		trials, median(failovers), failovers, median(withdrawals), failoverHold)

	// The agent of A's host dies: its learned routes leave with its lease
	// (5 s), and traffic goes through B.
	sb.KillAgent(0)
	killed := time.Now()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			sb.StartAgent(0)
		}
	})
	gone := eventually(t, 15*time.Second, "the killed agent's learned routes leave the router", func() bool { return !via(t, a) })
	t.Logf("routes learned by the killed agent removed %v after its death", gone.Round(10*time.Millisecond))
	if !via(t, b) {
		t.Fatal("B's routes left with A's agent")
	}
	allThrough(t, killed, 30*time.Second, 10, 7200, "every new connection through B with A's agent dead")
	if err := sb.StartAgent(0); err != nil {
		t.Fatal(err)
	}
	restarted = true
	eventually(t, 60*time.Second, "A's agent back, its session and routes back", func() bool {
		return peerState(t, a.peer) == "Established" && via(t, a)
	})
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
