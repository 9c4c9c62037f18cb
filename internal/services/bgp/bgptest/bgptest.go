// Package bgptest builds what BGP tests run against: "ISP" network
// namespaces with a real BIRD daemon in them, wired to a port's BGP
// namespace or to an agent's uplink interface, and a speaker process made
// of the test binary itself. Everything it creates is removed when the test
// ends.
package bgptest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/midonet/midonet/internal/nsthread"
	"github.com/midonet/midonet/internal/services/bgp/bird"
	"github.com/midonet/midonet/internal/testenv"
)

// childEnv marks a test binary started as a speaker process.
const childEnv = "MIDONET_BGPTEST_SPEAKER"

// RunSpeakerIfChild runs body and exits when the test binary was started by
// SpeakerCommand; call it first thing in TestMain.
func RunSpeakerIfChild(body func() error) {
	if os.Getenv(childEnv) == "" {
		return
	}
	if err := body(); err != nil {
		fmt.Fprintln(os.Stderr, "speaker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// SpeakerCommand is the command that starts this test binary as a speaker
// process (see RunSpeakerIfChild).
func SpeakerCommand() []string {
	return []string{"/usr/bin/env", childEnv + "=1", os.Args[0], "-test.run=^$"}
}

// Require skips (or in CI fails) t unless it can run BIRD in namespaces.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "bird", "bird2")
	testenv.RequireTool(t, "birdc", "bird2")
}

var seq atomic.Uint32

// Name returns a name unique to this test process, prefix + a number,
// short enough for an interface (prefix at most 7 characters).
func Name(prefix string) string {
	return fmt.Sprintf("%s%d%d", prefix, os.Getpid()%100000, seq.Add(1))
}

// NS is a named network namespace a test created.
type NS struct {
	Name   string
	Handle netns.NsHandle
	nl     *netlink.Handle
}

// NewNS creates a named network namespace with its loopback up, deleted
// when the test ends.
func NewNS(t testing.TB, name string) *NS {
	t.Helper()
	var h netns.NsHandle
	err := nsthread.Run(func() error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	}, func() error { return nil })
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	ns := &NS{Name: name, Handle: h, nl: nl}
	t.Cleanup(func() {
		nl.Close()
		h.Close()
		netns.DeleteNamed(name)
	})
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("namespace %s: loopback: %v", name, err)
	}
	return ns
}

// Start starts cmd inside the namespace.
func (ns *NS) Start(cmd *exec.Cmd) error { return nsthread.In(ns.Handle, cmd.Start) }

// Run runs a command inside the namespace and returns its output.
func (ns *NS) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s in %s: %v: %s", name+" "+strings.Join(args, " "), ns.Name, err, out)
	}
	return string(out)
}

// Adopt moves the interface ifname of the caller's namespace into ns,
// gives it addr and brings it up.
func (ns *NS) Adopt(t testing.TB, ifname string, addr netip.Prefix) {
	t.Helper()
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		t.Fatalf("interface %s: %v", ifname, err)
	}
	if err := netlink.LinkSetNsFd(l, int(ns.Handle)); err != nil {
		t.Fatalf("move %s into %s: %v", ifname, ns.Name, err)
	}
	ns.Address(t, ifname, addr)
}

// Address gives interface ifname of ns the address addr and brings it up.
func (ns *NS) Address(t testing.TB, ifname string, addr netip.Prefix) {
	t.Helper()
	l, err := ns.nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("interface %s in %s: %v", ifname, ns.Name, err)
	}
	if addr.IsValid() {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
		if err := ns.nl.AddrAdd(l, a); err != nil {
			t.Fatalf("address %s on %s in %s: %v", addr, ifname, ns.Name, err)
		}
	}
	if err := ns.nl.LinkSetUp(l); err != nil {
		t.Fatalf("bring %s up in %s: %v", ifname, ns.Name, err)
	}
}

// Veth creates a veth pair between two namespaces (nil: the caller's) and
// addresses both ends.
func Veth(t testing.TB, a *NS, aName string, aAddr netip.Prefix, b *NS, bName string, bAddr netip.Prefix) {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatalf("veth %s/%s: %v", aName, bName, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(aName); err == nil {
			netlink.LinkDel(l)
		}
	})
	for _, end := range []struct {
		ns   *NS
		name string
		addr netip.Prefix
	}{{a, aName, aAddr}, {b, bName, bAddr}} {
		if end.ns != nil {
			end.ns.Adopt(t, end.name, end.addr)
			continue
		}
		l, err := netlink.LinkByName(end.name)
		if err != nil {
			t.Fatal(err)
		}
		if end.addr.IsValid() {
			a := &netlink.Addr{IPNet: &net.IPNet{IP: end.addr.Addr().AsSlice(), Mask: net.CIDRMask(end.addr.Bits(), 32)}}
			if err := netlink.AddrAdd(l, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

// Bird starts BIRD with cfg inside ns, stopped when the test ends; its log
// is printed if the test failed.
func (ns *NS) Bird(t testing.TB, cfg bird.Config) *bird.Daemon {
	t.Helper()
	dir := t.TempDir()
	d, err := bird.Start(dir, cfg, ns.Start)
	if err != nil {
		t.Fatalf("BIRD in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("BIRD log of %s:\n%s", ns.Name, d.Log())
		}
	})
	return d
}

// Eventually polls cond every 50 ms until it holds or timeout passes, then
// fails t with the message and cond's last answer.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		ok, s := cond()
		if ok {
			return
		}
		last = s
		select {
		case <-ctx.Done():
			t.Fatalf("after %v: %s: %s", timeout, what, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
