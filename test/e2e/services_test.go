package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/sandbox"
	"github.com/midonet/midonet/internal/testenv"
)

// The services' end-to-end tests add VMs of their own to the sandbox:
// namespaces named svPrefix+name plugged into a host's namespace through a
// veth whose host side is "sv"+name, each behind a port the test creates
// and binds, all removed at the end of the test.
const svPrefix = "mnsv-"

// svVM is a VM a test added.
type svVM struct {
	name, ns, port, addr, mac string
}

// post creates an object and returns its id.
func post(t *testing.T, p string, body any) string {
	t.Helper()
	resp := api(t, "POST", p, body)
	return path.Base(resp.Header.Get("Location"))
}

// put replaces an object's fields.
func put(t *testing.T, p string, body any) {
	t.Helper()
	api(t, "PUT", p, body)
}

// del deletes an object, ignoring a 404 (cleanups run in any order).
func del(p string) {
	req, _ := http.NewRequest("DELETE", sb.APIURL()+p, nil)
	if r, err := http.DefaultClient.Do(req); err == nil {
		r.Body.Close()
	}
}

// getObject reads an object.
func getObject(t *testing.T, p string) map[string]any {
	t.Helper()
	resp, err := http.Get(sb.APIURL() + p)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o map[string]any
	json.NewDecoder(resp.Body).Decode(&o)
	return o
}

// ipCmd runs ip with args, failing the test on error.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
	}
}

// addVM plugs a VM into host (0-based) on bridge: namespace, veth, a port
// of the bridge bound to the veth, address cidr and default route gw; it
// returns once the host's agent reports the port active.
func addVM(t *testing.T, name string, host int, bridge, cidr, gw string) *svVM {
	t.Helper()
	v := &svVM{name: name, ns: svPrefix + name, addr: strings.Split(cidr, "/")[0]}
	hostIf := "sv" + name
	exec.Command("ip", "netns", "del", v.ns).Run() // a crashed run's
	ipCmd(t, "netns", "add", v.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", v.ns).Run() })
	// No IPv6: its router solicitations and listener reports would be
	// traffic the tests do not expect.
	for _, k := range []string{"all", "default"} {
		ipCmd(t, "netns", "exec", v.ns, "sysctl", "-qw", "net.ipv6.conf."+k+".disable_ipv6=1")
	}
	ipCmd(t, "link", "add", hostIf, "netns", sandbox.HostNS(host), "type", "veth", "peer", "name", "eth0", "netns", v.ns)
	// Nor on the host's side, whose kernel would send the VM its own
	// listener reports and neighbour solicitations.
	ipCmd(t, "netns", "exec", sandbox.HostNS(host), "sysctl", "-qw", "net.ipv6.conf."+hostIf+".disable_ipv6=1")
	ipCmd(t, "-n", sandbox.HostNS(host), "link", "set", hostIf, "up")
	ipCmd(t, "-n", v.ns, "addr", "add", cidr, "dev", "eth0")
	ipCmd(t, "-n", v.ns, "link", "set", "eth0", "up")
	ipCmd(t, "-n", v.ns, "link", "set", "lo", "up")
	if gw != "" {
		ipCmd(t, "-n", v.ns, "route", "add", "default", "via", gw)
	}
	if out, err := exec.Command("ip", "-n", v.ns, "-o", "link", "show", "eth0").Output(); err == nil {
		f := strings.Fields(string(out))
		for i, x := range f {
			if x == "link/ether" && i+1 < len(f) {
				v.mac = f[i+1]
			}
		}
	}
	v.port = post(t, "/bridges/"+bridge+"/ports", map[string]any{"type": "Bridge"})
	t.Cleanup(func() { del("/ports/" + v.port) })
	api(t, "POST", "/hosts/"+sb.ID(fmt.Sprintf("host:host%d", host+1))+"/ports", map[string]any{"portId": v.port, "interfaceName": hostIf})
	eventually(t, 10*time.Second, "port of "+name+" active", func() bool {
		o := getObject(t, "/ports/"+v.port)
		return o["active"] == true
	})
	return v
}

// routedBridge adds a bridge with subnet cidr (the router's address first)
// to the tenant router and returns its id.
func routedBridge(t *testing.T, name, gwCIDR string) string {
	t.Helper()
	br := post(t, "/bridges", map[string]any{"name": name, "tenantId": "demo"})
	t.Cleanup(func() { del("/bridges/" + br) })
	pfx := strings.Split(gwCIDR, "/")
	bp := post(t, "/bridges/"+br+"/ports", map[string]any{"type": "Bridge"})
	netAddr, _ := netipPrefix(gwCIDR)
	rp := post(t, "/routers/"+sb.ID("tenant-router")+"/ports", map[string]any{
		"type": "Router", "portAddress": pfx[0], "networkAddress": netAddr, "networkLength": 24})
	t.Cleanup(func() { del("/ports/" + rp) })
	api(t, "POST", "/ports/"+bp+"/link", map[string]any{"peerId": rp})
	post(t, "/routers/"+sb.ID("tenant-router")+"/routes", map[string]any{"type": "Normal",
		"srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": netAddr, "dstNetworkLength": 24, "nextHopPort": rp})
	return br
}

// netipPrefix returns the network address of a /24 CIDR.
func netipPrefix(cidr string) (string, bool) {
	a := strings.Split(strings.Split(cidr, "/")[0], ".")
	if len(a) != 4 {
		return "", false
	}
	return a[0] + "." + a[1] + "." + a[2] + ".0", true
}

// nameServer is an HTTP server in a namespace answering its name; it can
// be stopped and started again.
type nameServer struct {
	t      *testing.T
	ns     string
	addr   string
	name   string
	mu     sync.Mutex
	srv    *http.Server
	served map[string]int // requests by client address
}

func serveName(t *testing.T, ns, addr, name string) *nameServer {
	s := &nameServer{t: t, ns: ns, addr: addr, name: name, served: map[string]int{}}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *nameServer) start() {
	s.t.Helper()
	var ln net.Listener
	inNS(s.t, s.ns, func() {
		var err error
		if ln, err = net.Listen("tcp4", s.addr); err != nil {
			s.t.Fatal(err)
		}
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, s.name+"\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go srv.Serve(ln)
}

func (s *nameServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

// get sends one HTTP/1.0 GET on a new connection from namespace ns and
// returns the body's first line ("" on any failure within timeout).
func get(t *testing.T, ns, addr string, timeout time.Duration) string {
	return getFrom(t, ns, 0, addr, timeout)
}

// getFrom is get from a given local port (0: any).
func getFrom(t *testing.T, ns string, localPort int, addr string, timeout time.Duration) string {
	var c net.Conn
	err := sandbox.InNS(ns, func() error {
		var err error
		d := net.Dialer{Timeout: timeout}
		if localPort != 0 {
			d.LocalAddr = &net.TCPAddr{Port: localPort}
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
				}); err != nil {
					return err
				}
				return serr
			}
		}
		c, err = d.Dial("tcp4", addr)
		return err
	})
	if err != nil {
		return ""
	}
	if localPort != 0 {
		// Closed with a reset, not into TIME_WAIT, so the port can be
		// used again at once.
		c.(*net.TCPConn).SetLinger(0)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// keptConn is an HTTP/1.1 connection kept open across requests.
type keptConn struct {
	c net.Conn
	r *bufio.Reader
}

func keepConn(t *testing.T, ns, addr string) *keptConn {
	t.Helper()
	var c net.Conn
	inNS(t, ns, func() {
		var err error
		if c, err = net.DialTimeout("tcp4", addr, 3*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { c.Close() })
	return &keptConn{c: c, r: bufio.NewReader(c)}
}

func (k *keptConn) get(t *testing.T) string {
	t.Helper()
	k.c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(k.c, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		t.Fatalf("request on the kept connection: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// tally sends n requests to addr from ns and counts the answers by name.
func tally(t *testing.T, ns, addr string, n int) map[string]int {
	out := map[string]int{}
	for range n {
		// Long enough for two SYN retransmissions: a loaded CI machine
		// may lose a first packet's upcall, as a real host may.
		out[get(t, ns, addr, 5*time.Second)]++
	}
	return out
}

// healthLeaders returns the hosts whose agent runs the health monitors.
func healthLeaders(t *testing.T) []int {
	var out []int
	for h := range 3 {
		if agentMetric(t, h, "midonet_health_leader") == 1 {
			out = append(out, h)
		}
	}
	return out
}

// lbRig is the load balancer of TestLoadBalancer: three back ends on three
// hosts behind the tenant router, a client on net-a.
type lbRig struct {
	lb, pool, sticky, vip, stickyVIP string
	members                          map[string]string // back end name -> member id in pool
	servers                          map[string]*nameServer
	client                           string // namespace
}

const (
	vipAddr       = "10.0.9.1:80"
	stickyVIPAddr = "10.0.9.2:80"
)

func newLBRig(t *testing.T) *lbRig {
	t.Helper()
	r := &lbRig{members: map[string]string{}, servers: map[string]*nameServer{}, client: sandbox.VMNS("vm-a2")}
	br := routedBridge(t, "lb-backends", "10.0.7.1/24")
	for i, name := range []string{"be1", "be2", "be3"} {
		v := addVM(t, name, i, br, fmt.Sprintf("10.0.7.1%d/24", i+1), "10.0.7.1")
		r.servers[name] = serveName(t, v.ns, "0.0.0.0:80", name)
	}
	r.lb = post(t, "/load_balancers", map[string]any{})
	t.Cleanup(func() { del("/load_balancers/" + r.lb) })
	put(t, "/routers/"+sb.ID("tenant-router"), map[string]any{"name": "tenant-router", "tenantId": "demo",
		"inboundFilterId":  getObject(t, "/routers/"+sb.ID("tenant-router"))["inboundFilterId"],
		"outboundFilterId": getObject(t, "/routers/"+sb.ID("tenant-router"))["outboundFilterId"], "loadBalancerId": r.lb})
	t.Cleanup(func() {
		o := getObject(t, "/routers/"+sb.ID("tenant-router"))
		o["loadBalancerId"] = nil
		req, _ := http.NewRequest("PUT", sb.APIURL()+"/routers/"+sb.ID("tenant-router"), jsonBody(o))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	r.pool = post(t, "/load_balancers/"+r.lb+"/pools", map[string]any{"lbMethod": "ROUND_ROBIN"})
	r.sticky = post(t, "/load_balancers/"+r.lb+"/pools", map[string]any{"lbMethod": "ROUND_ROBIN"})
	for i, name := range []string{"be1", "be2", "be3"} {
		weight := []int{1, 2, 1}[i]
		r.members[name] = post(t, "/pools/"+r.pool+"/pool_members", map[string]any{
			"address": fmt.Sprintf("10.0.7.1%d", i+1), "protocolPort": 80, "weight": weight})
		// The sticky pool has be1 and be2 only, as the first has in
		// effect: a client reaches the same back ends through both VIPs.
		if name != "be3" {
			post(t, "/pools/"+r.sticky+"/pool_members", map[string]any{"address": fmt.Sprintf("10.0.7.1%d", i+1), "protocolPort": 80})
		}
	}
	// be3 is administratively down in the first pool.
	put(t, "/pool_members/"+r.members["be3"], map[string]any{"poolId": r.pool, "weight": 1, "adminStateUp": false})
	r.vip = post(t, "/pools/"+r.pool+"/vips", map[string]any{"address": "10.0.9.1", "protocolPort": 80})
	r.stickyVIP = post(t, "/pools/"+r.sticky+"/vips", map[string]any{"address": "10.0.9.2", "protocolPort": 80,
		"sessionPersistence": "SOURCE_IP"})
	eventually(t, 10*time.Second, "the VIP answering", func() bool {
		return get(t, r.client, vipAddr, time.Second) != ""
	})
	return r
}

func jsonBody(o any) io.Reader {
	b, _ := json.Marshal(o)
	return bytes.NewReader(b)
}

func TestLoadBalancer(t *testing.T) {
	need(t)
	r := newLBRig(t)

	t.Run("weights", func(t *testing.T) {
		got := tally(t, r.client, vipAddr, 210)
		t.Logf("210 requests to the VIP: %v", got)
		// Weights 1 and 2, be3 down: expected 70 and 140.
		if got["be3"] != 0 || got[""] != 0 {
			t.Errorf("the admin-down member or nothing answered: %v", got)
		}
		if got["be1"] < 45 || got["be1"] > 95 || got["be2"] < 115 || got["be2"] > 165 {
			t.Errorf("be1 %d and be2 %d of 210; want about 70 and 140 (weights 1 and 2)", got["be1"], got["be2"])
		}
	})

	t.Run("sticky", func(t *testing.T) {
		got := tally(t, r.client, stickyVIPAddr, 60)
		if len(got) != 1 || got[""] != 0 {
			t.Errorf("60 requests to the sticky VIP from one client: %v; want one back end", got)
		}
	})

	t.Run("client port re-used through the other VIP", func(t *testing.T) {
		// The back end sees the same 5-tuple twice, through two VIPs of
		// one balancer: the second connection's replies must come from
		// its own VIP, not from the one the first connection's key names.
		backend := get(t, r.client, stickyVIPAddr, 5*time.Second)
		if backend == "" {
			t.Fatal("the sticky VIP does not answer")
		}
		// A port that took the plain VIP to the sticky VIP's back end. The
		// ports are outside the ephemeral range, so no other connection
		// of the client's namespace holds them; each is one connection to
		// the balancer, which keeps its back end, hence one try a port.
		port, first := 0, ""
		for p := 61100; p < 61140 && first != backend; p++ {
			port, first = p, getFrom(t, r.client, p, vipAddr, 5*time.Second)
		}
		if first != backend {
			t.Fatalf("40 connections from ports 61100-61139 to %s and none on %s (the last answered by %q)", vipAddr, backend, first)
		}
		var got string
		eventually(t, 10*time.Second, "the sticky VIP answering from the re-used port", func() bool {
			got = getFrom(t, r.client, port, stickyVIPAddr, 3*time.Second)
			return got != ""
		})
		if got != backend {
			t.Errorf("from port %d the sticky VIP answered from %q; want %q", port, got, backend)
		}
	})

	t.Run("disabled member drains", func(t *testing.T) {
		// An established connection to be1 or be2 keeps its back end when
		// that member is disabled; new connections go elsewhere.
		var kept *keptConn
		var name string
		for range 20 {
			kept = keepConn(t, r.client, vipAddr)
			if name = kept.get(t); name == "be1" {
				break
			}
		}
		if name != "be1" {
			t.Fatalf("20 connections and none on be1")
		}
		put(t, "/pool_members/"+r.members["be1"], map[string]any{"poolId": r.pool, "weight": 1, "adminStateUp": false})
		defer put(t, "/pool_members/"+r.members["be1"], map[string]any{"poolId": r.pool, "weight": 1, "adminStateUp": true})
		eventually(t, 3*time.Second, "new connections avoiding the disabled member", func() bool {
			return tally(t, r.client, vipAddr, 10)["be1"] == 0
		})
		if got := tally(t, r.client, vipAddr, 30); got["be1"] != 0 || got["be2"] != 30 {
			t.Errorf("with be1 disabled: %v; want every new connection on be2", got)
		}
		if got := kept.get(t); got != "be1" {
			t.Errorf("the established connection went to %q; want it kept on be1", got)
		}
	})

	t.Run("connection survives an agent restart", func(t *testing.T) {
		// The client's host made the NAT keys and sent them to the back
		// end's host: after a restart of the client's agent (vm-a2 is on
		// host 2) the connection keeps its back end.
		kept := keepConn(t, r.client, vipAddr)
		name := kept.get(t)
		if err := sb.RestartAgent(1); err != nil {
			t.Fatal(err)
		}
		if got := kept.get(t); got != name {
			t.Errorf("after the restart the connection reached %q; want %q", got, name)
		}
	})

	for _, tc := range []struct{ what, path string }{
		{"vip", "/vips/"}, {"pool", "/pools/"}, {"load balancer", "/load_balancers/"},
	} {
		t.Run("disable "+tc.what, func(t *testing.T) {
			id := map[string]string{"vip": r.vip, "pool": r.pool, "load balancer": r.lb}[tc.what]
			o := getObject(t, tc.path+id)
			o["adminStateUp"] = false
			api(t, "PUT", tc.path+id, o)
			eventually(t, 3*time.Second, "requests failing with the "+tc.what+" down", func() bool {
				return get(t, r.client, vipAddr, 500*time.Millisecond) == ""
			})
			o["adminStateUp"] = true
			api(t, "PUT", tc.path+id, o)
			eventually(t, 3*time.Second, "requests answered with the "+tc.what+" up again", func() bool {
				return get(t, r.client, vipAddr, time.Second) != ""
			})
		})
	}

	t.Run("health monitor", func(t *testing.T) {
		hm := post(t, "/health_monitors", map[string]any{"type": "HTTP", "delay": 1, "timeout": 1, "maxRetries": 2,
			"urlPath": "/", "expectedCodes": "200"})
		t.Cleanup(func() { del("/health_monitors/" + hm) })
		pool := getObject(t, "/pools/"+r.pool)
		pool["healthMonitorId"] = hm
		api(t, "PUT", "/pools/"+r.pool, pool)
		eventually(t, 15*time.Second, "one agent running the health monitors", func() bool {
			return len(healthLeaders(t)) == 1
		})
		status := func(name string) string { return fmt.Sprint(getObject(t, "/pool_members/"+r.members[name])["status"]) }
		// A back end that dies is out within delay × (retries + 1) = 3 s
		// (and the rest of a check and of the agents' reaction).
		r.servers["be2"].stop()
		took := eventually(t, 5*time.Second, "be2 INACTIVE", func() bool { return status("be2") == "INACTIVE" })
		t.Logf("be2 marked INACTIVE %s after its server stopped", took)
		// The agents apply the status as they apply any write: a
		// connection made in the meantime may still meet be2's reset.
		eventually(t, 2*time.Second, "new connections avoiding the dead member", func() bool {
			got := tally(t, r.client, vipAddr, 5)
			return got["be1"] == 5
		})
		if got := tally(t, r.client, vipAddr, 30); got["be2"] != 0 || got["be1"] != 30 {
			t.Errorf("with be2 dead: %v; want every request on be1", got)
		}
		r.servers["be2"].start()
		eventually(t, 6*time.Second, "be2 ACTIVE again", func() bool { return status("be2") == "ACTIVE" })
		eventually(t, 3*time.Second, "be2 answering again", func() bool { return tally(t, r.client, vipAddr, 10)["be2"] > 0 })

		// The agent running the monitors dies: another takes over within
		// a few seconds, and never do two run them at once.
		leaders := healthLeaders(t)
		if len(leaders) != 1 {
			t.Fatalf("health monitors running on hosts %v", leaders)
		}
		old := leaders[0]
		var both bool
		var mu sync.Mutex
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if n := len(healthLeaders(t)); n > 1 {
					mu.Lock()
					both = true
					mu.Unlock()
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
		died := time.Now()
		if err := sb.CrashAgent(old); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, "the health monitors running again", func() bool {
			return len(healthLeaders(t)) == 1
		})
		t.Logf("health monitors running on host %d %s after host %d's agent died", healthLeaders(t)[0]+1, time.Since(died), old+1)
		close(stop)
		<-sampled
		mu.Lock()
		if both {
			t.Error("two agents ran the health monitors at once")
		}
		mu.Unlock()
		r.servers["be1"].stop()
		eventually(t, 8*time.Second, "be1 INACTIVE, seen by the new monitor", func() bool { return status("be1") == "INACTIVE" })
		r.servers["be1"].start()
		eventually(t, 8*time.Second, "be1 ACTIVE again", func() bool { return status("be1") == "ACTIVE" })
	})
}

// TestMirrorAcrossHosts: TCP to port 7200 from vm-a1 (host 1) is copied
// to a tap VM on host 3; nothing else is.
func TestMirrorAcrossHosts(t *testing.T) {
	need(t)
	testenv.RequireTool(t, "tcpdump", "tcpdump")
	br := routedBridge(t, "mirror-taps", "10.0.6.1/24")
	tap := addVM(t, "tap", 2, br, "10.0.6.10/24", "")
	m := post(t, "/mirrors", map[string]any{"toPortId": tap.port, "conditions": []any{
		map[string]any{"nwProto": 6, "tpDst": map[string]any{"start": 7200, "end": 7200}}}})
	t.Cleanup(func() { del("/mirrors/" + m) })
	port := sb.ID("port:vm-a1")
	o := getObject(t, "/ports/"+port)
	o["inboundMirrorIds"] = []string{m}
	api(t, "PUT", "/ports/"+port, o)
	t.Cleanup(func() {
		o := getObject(t, "/ports/"+port)
		o["inboundMirrorIds"] = []string{}
		req, _ := http.NewRequest("PUT", sb.APIURL()+"/ports/"+port, jsonBody(o))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	capture := startCapture(t, tap.ns, "eth0")
	// A TCP server on vm-a2 at 7200, another at 7201.
	for _, p := range []string{"7200", "7201"} {
		serveName(t, sandbox.VMNS("vm-a2"), "0.0.0.0:"+p, "vm-a2")
	}
	for range 3 {
		if got := get(t, sandbox.VMNS("vm-a1"), "10.0.1.11:7200", 2*time.Second); got != "vm-a2" {
			t.Fatalf("request to vm-a2:7200: %q", got)
		}
		get(t, sandbox.VMNS("vm-a1"), "10.0.1.11:7201", 2*time.Second)
		pingCount(sandbox.VMNS("vm-a1"), "10.0.1.11", 1)
	}
	frames := capture.stop(t)
	var mirrored, other int
	for _, line := range frames {
		switch {
		case strings.Contains(line, "10.0.1.10.") && strings.Contains(line, "> 10.0.1.11.7200"):
			mirrored++
		case strings.Contains(line, "10.0.1.11.7200 >"):
			t.Errorf("the reply direction was mirrored (the mirror is on vm-a1's ingress): %s", line)
		default:
			other++
		}
	}
	if mirrored < 3*3 { // each connection: SYN, ACK, request, FIN...
		t.Errorf("the tap saw %d segments to port 7200, want every one of 3 connections':\n%s", mirrored, strings.Join(frames, "\n"))
	}
	if other > 0 {
		t.Errorf("the tap saw %d frames the mirror's condition does not match:\n%s", other, strings.Join(frames, "\n"))
	}
}

// lockedBuffer is a bytes.Buffer that a command's output goroutine may
// write while a test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// capture is tcpdump running on an interface of a namespace.
type capture struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func startCapture(t *testing.T, ns, dev string, filter ...string) *capture {
	t.Helper()
	args := append([]string{"netns", "exec", ns, "tcpdump", "-l", "-n", "-v", "-i", dev, "-Q", "in", "--immediate-mode"}, filter...)
	c := &capture{cmd: exec.Command("ip", args...), out: &bytes.Buffer{}}
	c.cmd.Stdout = c.out
	var errOut lockedBuffer // written by exec's copying goroutine while we read it
	c.cmd.Stderr = &errOut
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
	eventually(t, 5*time.Second, "tcpdump listening", func() bool {
		return strings.Contains(errOut.String(), "listening on")
	})
	return c
}

// stop ends the capture and returns its lines, an IP header line joined
// with the line after it (tcpdump -v splits them).
func (c *capture) stop(t *testing.T) []string {
	time.Sleep(300 * time.Millisecond) // let the last frames be printed
	c.cmd.Process.Signal(interruptSignal)
	c.cmd.Wait()
	var out []string
	for _, l := range strings.Split(c.out.String(), "\n") {
		switch {
		case strings.TrimSpace(l) == "":
		case strings.HasPrefix(l, " ") && len(out) > 0:
			out[len(out)-1] += " " + strings.TrimSpace(l)
		default:
			out = append(out, l)
		}
	}
	return out
}

// iperfResult is what TestQoS reads of iperf3's JSON output.
type iperfResult struct {
	End struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	// With -J, iperf3 3.12 exits 0 when it cannot connect and says so
	// here.
	Error string `json:"error"`
}

// TestQoS: a bandwidth limit on a VM's port holds a TCP transfer from the
// VM to the limit, changes with the rule, and is gone with the policy; a
// DSCP mark is set on what the VM sends.
func TestQoS(t *testing.T) {
	need(t)
	testenv.RequireTool(t, "iperf3", "iperf3")
	testenv.RequireTool(t, "tcpdump", "tcpdump")
	br := routedBridge(t, "qos-net", "10.0.5.1/24")
	src := addVM(t, "qsrc", 0, br, "10.0.5.10/24", "10.0.5.1")
	dst := addVM(t, "qdst", 2, br, "10.0.5.11/24", "10.0.5.1")
	pol := post(t, "/qos_policies", map[string]any{"name": "e2e-limit"})
	t.Cleanup(func() { del("/qos_policies/" + pol) })
	rule := post(t, "/qos_policies/"+pol+"/qos_bw_limit_rules", map[string]any{"maxKbps": 1000, "maxBurstKb": 200})
	setPolicy := func(v *svVM, policy any) {
		o := getObject(t, "/ports/"+v.port)
		o["qosPolicyId"] = policy
		api(t, "PUT", "/ports/"+v.port, o)
	}
	setPolicy(src, pol)
	server := exec.Command("ip", "netns", "exec", dst.ns, "iperf3", "-s", "-p", "5299")
	if err := server.Start(); err != nil {
		t.Fatalf("iperf3 server: %v (apt-get install iperf3)", err)
	}
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	rate := func(seconds int) float64 {
		t.Helper()
		var out []byte
		var err error
		var res iperfResult
		for range 20 { // the server may not listen yet
			out, err = exec.Command("ip", "netns", "exec", src.ns, "iperf3", "-c", dst.addr, "-p", "5299",
				"-t", fmt.Sprint(seconds), "-J").Output()
			if err == nil {
				// A fresh result: Unmarshal keeps fields the new output
				// lacks, such as a failed attempt's error.
				res = iperfResult{}
				if err = json.Unmarshal(out, &res); err == nil && res.Error != "" {
					err = errors.New(res.Error)
				}
				if err == nil {
					break
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("iperf3: %v %s", err, out)
		}
		return res.End.SumReceived.BitsPerSecond
	}
	within := func(what string, got, want float64) {
		t.Helper()
		t.Logf("%s: %.3f Mbit/s (limit %.3f)", what, got/1e6, want/1e6)
		// TCP through a policer runs somewhat below its rate (81–93% of
		// 1 Mbit/s here); it must never run above it.
		if got < 0.7*want || got > 1.2*want {
			t.Errorf("%s: %.3f Mbit/s; want %.3f -30%% +20%%", what, got/1e6, want/1e6)
		}
	}
	within("1 Mbit/s limit", rate(5), 1e6)
	put(t, "/qos_bw_limit_rules/"+rule, map[string]any{"maxKbps": 3000, "maxBurstKb": 600, "policyId": pol})
	within("raised to 3 Mbit/s", rate(5), 3e6)
	setPolicy(src, nil)
	if got := rate(2); got < 20e6 {
		t.Errorf("%.1f Mbit/s once the policy is removed; want it unlimited (well over 20)", got/1e6)
	}

	// DSCP 46 (EF) on what src sends, seen by tcpdump at dst.
	dscp := post(t, "/qos_policies", map[string]any{"name": "e2e-dscp"})
	t.Cleanup(func() { del("/qos_policies/" + dscp) })
	post(t, "/qos_policies/"+dscp+"/qos_dscp_rules", map[string]any{"dscpMark": 46})
	setPolicy(src, dscp)
	t.Cleanup(func() { del("/ports/" + src.port) })
	capture := startCapture(t, dst.ns, "eth0", "icmp")
	eventually(t, 5*time.Second, "pings from the marked VM", func() bool { return pingCount(src.ns, dst.addr, 1) == 1 })
	pingCount(src.ns, dst.addr, 3)
	lines := capture.stop(t)
	marked := 0
	for _, l := range lines {
		if strings.Contains(l, "echo request") {
			if !strings.Contains(l, "tos 0xb8") {
				t.Errorf("an echo request arrived without DSCP 46 (tos 0xb8): %s", l)
			}
			marked++
		}
	}
	if marked < 3 {
		t.Errorf("tcpdump saw %d echo requests at the receiver, want at least 3:\n%s", marked, strings.Join(lines, "\n"))
	}
}

// TestL2InsertionBlocksPayload: a service VM on host 1 in the path of a
// VM on host 3 sees the VM's traffic and drops frames carrying a payload.
func TestL2InsertionBlocksPayload(t *testing.T) {
	need(t)
	br := routedBridge(t, "ins-net", "10.0.4.1/24")
	svcNet := post(t, "/bridges", map[string]any{"name": "ins-svc", "tenantId": "demo"})
	t.Cleanup(func() { del("/bridges/" + svcNet) })
	prot := addVM(t, "prot", 2, br, "10.0.4.10/24", "10.0.4.1")
	// The service sends frames back as it got them, with the checksum a
	// sender that leaves it to offload would not have filled in: the
	// protected VM computes its own, as a VM without offload does.
	testenv.RequireTool(t, "ethtool", "ethtool")
	if out, err := exec.Command("ip", "netns", "exec", prot.ns, "ethtool", "-K", "eth0", "tx", "off").CombinedOutput(); err != nil {
		t.Fatalf("ethtool: %v %s", err, out)
	}
	peer := addVM(t, "peer", 1, br, "10.0.4.11/24", "10.0.4.1")
	svc := addVM(t, "svc", 0, svcNet, "10.0.3.10/24", "")
	seen := runBumpInTheWire(t, svc.ns, "eth0", []byte("BLOCKME"))
	ins := post(t, "/l2insertions", map[string]any{"portId": prot.port, "srvPortId": svc.port, "mac": prot.mac,
		"position": 1, "failOpen": false})
	t.Cleanup(func() { del("/l2insertions/" + ins) })
	recv := udpListen(t, peer.ns, "0.0.0.0:7300")
	send := func(payload string) {
		inNS(t, prot.ns, func() {
			c, err := net.Dial("udp4", peer.addr+":7300")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte(payload))
		})
	}
	eventually(t, 10*time.Second, "a datagram through the service", func() bool {
		send("hello")
		return recv.wait("hello", 500*time.Millisecond) && seen() > 0
	})
	before := seen()
	for i := range 5 {
		send(fmt.Sprintf("BLOCKME %d", i))
	}
	send("after")
	if !recv.wait("after", 2*time.Second) {
		t.Error("traffic after the blocked datagrams did not arrive")
	}
	if recv.has("BLOCKME") {
		t.Error("a datagram the service drops reached the peer")
	}
	if n := seen() - before; n < 6 {
		t.Errorf("the service saw %d frames, want the 6 datagrams'", n)
	}
}

// udpReceiver collects datagrams received in a namespace.
type udpReceiver struct {
	mu  sync.Mutex
	got []string
}

func udpListen(t *testing.T, ns, addr string) *udpReceiver {
	t.Helper()
	var c net.PacketConn
	inNS(t, ns, func() {
		var err error
		if c, err = net.ListenPacket("udp4", addr); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { c.Close() })
	r := &udpReceiver{}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			r.got = append(r.got, string(buf[:n]))
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *udpReceiver) has(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, g := range r.got {
		if strings.HasPrefix(g, prefix) {
			return true
		}
	}
	return false
}

func (r *udpReceiver) wait(prefix string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if r.has(prefix) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// interruptSignal stops tcpdump so that it prints what it buffered.
var interruptSignal = syscall.SIGINT

// runBumpInTheWire runs a service VM on dev of namespace ns: every frame it
// receives goes back out of dev unchanged, unless it carries block. It
// returns a function counting the frames received.
func runBumpInTheWire(t *testing.T, ns, dev string, block []byte) func() int {
	t.Helper()
	var fd int
	inNS(t, ns, func() {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		proto := int(htons(unix.ETH_P_ALL))
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto); err != nil {
			t.Fatal(err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			t.Fatal(err)
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	var (
		mu    sync.Mutex
		count int
	)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 65536)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			mu.Lock()
			count++
			mu.Unlock()
			if bytes.Contains(buf[:n], block) {
				continue
			}
			unix.Write(fd, buf[:n])
		}
	}()
	t.Cleanup(func() { close(done); <-stopped; unix.Close(fd) })
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return count
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
