package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The VMs get their addresses by DHCP from the agents: each VM namespace
// runs ISC dhclient (Debian's isc-dhcp-client) with Debian's own
// dhclient-script, which configures the address, the routes (option 121
// too, through its rfc3442 hook), the MTU and resolv.conf, as in a guest.

// demoMTU is the MTU the demo subnets offer: the VMs' taps and datapath
// ports stay at Ethernet's 1500 on the jumbo underlay (a subnet without
// interfaceMTU would offer the underlay's 9000 minus the overlay's 50).
const demoMTU = 1500

// metadataAddr is the address every VM gets a route to by option 121, as
// Neutron hands out the route to its metadata service.
const metadataAddr = "169.254.169.254"

// Lease is how a VM's DHCP client fared.
type Lease struct {
	VM string
	// Took is the time from `ip link set eth0 up` to dhclient's exit: the
	// lease bound and the namespace configured by dhclient-script.
	Took time.Duration
	Err  error
}

// macOf is the MAC a VM's interface gets, which its DHCP host entry names:
// 02:00 and the VM's IPv4 address.
func macOf(v vm) string {
	a := netip.MustParseAddr(v.addr).As4()
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", a[0], a[1], a[2], a[3])
}

func dhclientPidFile(v vm) string {
	return filepath.Join(os.TempDir(), prefix+"dhclient-"+v.name+".pid")
}

// leaseVMs brings each VM's interface up and runs dhclient in it, all VMs
// at once, until each has its lease or ctx ends.
func (sb *Sandbox) leaseVMs(ctx context.Context) error {
	if _, err := exec.LookPath("dhclient"); err != nil {
		return errors.New("sandbox: dhclient is missing: the VMs get their addresses by DHCP; apt-get install isc-dhcp-client")
	}
	sb.leases = make([]Lease, len(vms))
	var wg sync.WaitGroup
	for i, v := range vms {
		wg.Go(func() {
			took, err := sb.lease(ctx, v)
			sb.leases[i] = Lease{VM: v.name, Took: took, Err: err}
		})
	}
	wg.Wait()
	var failed []string
	for _, l := range sb.leases {
		if l.Err != nil {
			failed = append(failed, l.VM+": "+l.Err.Error())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("sandbox: DHCP failed: %s; see the agent logs in %s", strings.Join(failed, "; "), sb.cfg.DataDir)
	}
	return nil
}

// lease runs dhclient once in v's namespace: it returns when the lease is
// bound and applied, leaving dhclient to renew it in the background.
func (sb *Sandbox) lease(ctx context.Context, v vm) (time.Duration, error) {
	ns := nsOf(v)
	// ip netns exec bind-mounts /etc/netns/NS/* over /etc/*: dhclient-script
	// then writes the VM's resolv.conf, not the host's.
	etc := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), nil, 0o644); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := ip("-n", ns, "link", "set", "eth0", "up"); err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "dhclient", "-4", "-1", "-v",
		"-lf", filepath.Join(sb.cfg.DataDir, v.name+".leases"), "-pf", dhclientPidFile(v), "eth0")
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return took, fmt.Errorf("dhclient: %v: %s", err, lastLines(string(out), 3))
	}
	return took, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// Leases returns how each VM's DHCP client fared at start.
func (sb *Sandbox) Leases() []Lease { return sb.leases }

// stopDHCPClients stops the dhclients that renew the VMs' leases (a
// crashed run's too, from their pid files).
func stopDHCPClients() {
	pids, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"dhclient-*.pid"))
	for _, f := range pids {
		if b, err := os.ReadFile(f); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				// Only signal a dhclient: the pid may have been reused.
				if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmdline), "dhclient") {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		os.Remove(f)
	}
	dirs, _ := filepath.Glob(filepath.Join("/etc/netns", prefix+"*"))
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}

// leaseChecks verifies what each VM's DHCP client configured: its address,
// default route, option-121 route and MTU, as the demo's DHCP entries say.
func (sb *Sandbox) leaseChecks(ctx context.Context) []Check {
	var out []Check
	for i, v := range vms {
		c := Check{Name: "DHCP lease", From: v.name, To: "agent on " + hosts[v.host].name,
			Expect: fmt.Sprintf("%s/24, default via %s, %s via %s, mtu %d", v.addr, v.gateway, metadataAddr, v.gateway, demoMTU)}
		if i < len(sb.leases) && sb.leases[i].Err != nil {
			c.Detail = sb.leases[i].Err.Error()
			out = append(out, c)
			continue
		}
		got, err := vmConfig(ctx, nsOf(v))
		if err != nil {
			c.Detail = err.Error()
			out = append(out, c)
			continue
		}
		var problems []string
		if !strings.Contains(got.addrs, " "+v.addr+"/24 ") {
			problems = append(problems, "addresses:"+got.addrs)
		}
		if !strings.Contains(got.routes, "default via "+v.gateway+" ") {
			problems = append(problems, "no default route via "+v.gateway)
		}
		if !strings.Contains(got.routes, metadataAddr+" via "+v.gateway+" ") {
			problems = append(problems, "no option-121 route to "+metadataAddr)
		}
		if got.mtu != demoMTU {
			problems = append(problems, "mtu "+strconv.Itoa(got.mtu))
		}
		c.OK = len(problems) == 0
		c.Detail = strings.Join(problems, "; ")
		if c.OK && i < len(sb.leases) {
			c.Detail = fmt.Sprintf("%s bound %s after link up", v.name, sb.leases[i].Took.Round(time.Millisecond))
		}
		out = append(out, c)
	}
	return out
}

// vmNet is what a VM's eth0 looks like.
type vmNet struct {
	addrs, routes string // ip -o output, one line each, space-padded
	mtu           int
}

func vmConfig(ctx context.Context, ns string) (vmNet, error) {
	var n vmNet
	run := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return " " + strings.Join(strings.Fields(string(out)), " ") + " ", nil
	}
	var err error
	if n.addrs, err = run("-4", "-o", "addr", "show", "dev", "eth0"); err != nil {
		return n, err
	}
	if n.routes, err = run("-4", "route", "show"); err != nil {
		return n, err
	}
	link, err := run("-o", "link", "show", "dev", "eth0")
	if err != nil {
		return n, err
	}
	if _, after, ok := strings.Cut(link, " mtu "); ok {
		n.mtu, _ = strconv.Atoi(strings.Fields(after)[0])
	}
	return n, nil
}
