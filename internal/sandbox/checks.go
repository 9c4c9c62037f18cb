package sandbox

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/vishvananda/netns"
)

// Check is one connectivity check and its outcome.
type Check struct {
	Name, From, To, Expect string
	OK                     bool
	Detail                 string
}

// InNS runs fn on the caller's goroutine, its thread switched into the
// named network namespace, so that sockets fn creates live there (an
// http.Client, which dials from other goroutines, does not stay in it: dial
// in fn), and so that fn may stop a test with t.Fatal. nsthread.Run is the
// same on a goroutine of its own. A thread that cannot switch back stays
// locked and ends with the goroutine.
func InNS(name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer func() {
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

// echoServer accepts connections in a namespace and writes back the
// address each came from, so a check can see what NAT did.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func serveEcho(ns, addr string) (*echoServer, error) {
	s := &echoServer{}
	err := InNS(ns, func() error {
		var err error
		s.ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			c.SetDeadline(time.Now().Add(2 * time.Second))
			io.WriteString(c, host+"\n")
			c.Close()
		}
	}()
	return s, nil
}

func (s *echoServer) close() { s.ln.Close(); s.wg.Wait() }

// dialEcho connects from a namespace and returns the address the server saw.
func dialEcho(ns, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := InNS(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

// ping pings from a namespace; it passes when most echoes come back (the
// first may wait for ARP).
func ping(ctx context.Context, ns, addr string) (bool, string) {
	out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "ping", "-n", "-c", "4", "-i", "0.2", "-W", "2", addr).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "packets transmitted") {
			var tx, rx int
			fmt.Sscanf(line, "%d packets transmitted, %d received", &tx, &rx)
			return rx >= 3, strings.TrimSpace(line)
		}
	}
	return false, strings.TrimSpace(string(out))
}

// RunChecks sends real traffic through the demo and reports each check.
func (sb *Sandbox) RunChecks(ctx context.Context) []Check {
	ns := func(name string) string {
		if name == "ext" {
			return extNS
		}
		return prefix + name
	}
	var checks []Check
	add := func(c Check) {
		checks = append(checks, c)
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(sb.out, "    %s %s: %s\n", mark, c.Name, c.Detail)
	}
	pingCheck := func(name, from, to, addr string) {
		ok, detail := ping(ctx, ns(from), addr)
		add(Check{Name: name, From: from, To: to + " " + addr, Expect: "ping replies", OK: ok, Detail: detail})
	}
	tcpCheck := func(name, from, to, addr, wantSeen string, blocked bool) {
		srvNS := ns(to)
		srv, err := serveEcho(srvNS, "0.0.0.0:7000")
		if err != nil {
			add(Check{Name: name, From: from, To: to, Expect: "server", Detail: err.Error()})
			return
		}
		defer srv.close()
		seen, err := dialEcho(ns(from), addr+":7000", 3*time.Second)
		c := Check{Name: name, From: from, To: to + " " + addr + ":7000"}
		switch {
		case blocked:
			c.Expect = "TCP blocked"
			c.OK = err != nil
			c.Detail = "connection refused by policy as expected"
			if err == nil {
				c.Detail = "connected, but the security group should drop it"
			}
		case err != nil:
			c.Expect = "TCP connects"
			c.Detail = err.Error()
		default:
			c.Expect = "TCP connects, server sees " + wantSeen
			c.OK = seen == wantSeen
			c.Detail = "server saw the client as " + seen
		}
		add(c)
	}
	fmt.Fprintln(sb.out, "==> checking each VM's DHCP lease")
	for _, c := range sb.leaseChecks(ctx) {
		add(c)
	}
	fmt.Fprintln(sb.out, "==> checking connectivity with real packets")
	pingCheck("same bridge across hosts", "vm-a1", "vm-a2", vms[1].addr)
	pingCheck("across the router", "vm-a1", "vm-b2", vms[3].addr)
	pingCheck("router port answers", "vm-b1", "tenant-router", "10.0.2.1")
	tcpCheck("across the router, TCP", "vm-b1", "vm-a2", vms[1].addr, vms[2].addr, false)
	tcpCheck("out through SNAT", "vm-b1", "ext", extAddr, snatAddr, false)
	tcpCheck("floating IP, outbound", "vm-a1", "ext", extAddr, floatingAddr, false)
	pingCheck("in through the floating IP", "ext", "vm-a1", floatingAddr)
	tcpCheck("in through the floating IP, TCP", "ext", "vm-a1", floatingAddr, extAddr, false)
	tcpCheck("security group blocks new TCP", "vm-a2", "vm-b2", vms[3].addr, "", true)
	tcpCheck("security group lets replies in", "vm-b2", "vm-a2", vms[1].addr, vms[3].addr, false)
	ok, detail := sb.learnedDefault(ctx)
	add(Check{Name: "default route learned by BGP", From: "provider-router", To: "ext BIRD " + extAddr,
		Expect: "0.0.0.0/0 learned", OK: ok, Detail: detail})
	ok, detail = sb.ispLearned()
	add(Check{Name: "ISP learned the public range", From: "ext BIRD", To: "provider-router " + uplinkAddr,
		Expect: publicNet + "0/24 from AS " + strconv.Itoa(providerAS), OK: ok, Detail: detail})
	tcpCheck("to the internet through the learned route", "vm-b1", "ext", internetAddr, snatAddr, false)
	return checks
}

// PrintTable writes the checks as a table.
func PrintTable(w io.Writer, checks []Check) (failed int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tFROM\tTO\tEXPECT\tRESULT")
	for _, c := range checks {
		r := "pass"
		if !c.OK {
			r = "FAIL: " + c.Detail
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, c.From, c.To, c.Expect, r)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d passed, %d failed\n", len(checks)-failed, failed)
	return failed
}

// ispLearned reports whether BIRD learned the public range from the
// provider router, as its own "show route" says.
func (sb *Sandbox) ispLearned() (bool, string) {
	if sb.isp == nil {
		return false, "BIRD is not running"
	}
	rs, err := sb.isp.Routes()
	if err != nil {
		return false, err.Error()
	}
	for _, r := range rs {
		if r.Prefix.String() == publicNet+"0/24" && r.OriginAS == strconv.Itoa(providerAS) {
			return true, fmt.Sprintf("BIRD: %s via %s [AS%s]", r.Prefix, r.NextHop, r.OriginAS)
		}
	}
	return false, fmt.Sprintf("BIRD learned %v", rs)
}
