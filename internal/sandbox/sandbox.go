// Package sandbox builds a whole MidoNet cloud on one machine: an embedded
// cluster, agents on three hosts (network namespaces joined by an underlay
// bridge), VMs (namespaces plugged into the hosts through veth pairs), an
// "external" network behind a provider router, and a demo topology with two
// tenant networks, SNAT, a floating IP and a security group. It then checks
// connectivity with real packets and reports a table. Everything it creates
// is named with the "mnsb-" prefix so that a later run can clean up what a
// crashed one left.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/midonet/midonet/internal/agent"
	"github.com/midonet/midonet/internal/cluster"
	"github.com/midonet/midonet/internal/datapath/userspace"
	"github.com/midonet/midonet/internal/services/bgp/bird"
)

// Names and addresses of the sandbox.
const (
	prefix       = "mnsb-"
	underlayBr   = prefix + "br"
	underlayNet  = "10.250.0."
	storeAddr    = underlayNet + "254"
	extNS        = prefix + "ext"
	extAddr      = "192.0.2.1"
	uplinkAddr   = "192.0.2.2"
	publicNet    = "203.0.113."
	snatAddr     = publicNet + "1"
	floatingAddr = publicNet + "10"
	underlayMTU  = "9000"
	// The external network's BGP: the ISP (BIRD in extNS) announces a
	// default route and the "internet" address it holds on its loopback;
	// the provider router announces the public range back.
	ispAS        = 65001
	providerAS   = 65000
	internetAddr = "198.51.100.1"
)

// Config configures a sandbox run.
type Config struct {
	// Binary is the midonet executable the agents run as (default: this
	// process's executable).
	Binary string
	// DataDir keeps the store, the agents' state and their logs; default a
	// temporary directory removed at the end. Each run builds its demo in
	// an empty store, so the store and agents' state a previous run left
	// there are removed at the start (logs are appended to).
	DataDir string
	// Listen is the REST API's address (default :8181).
	Listen string
	// Datapath is the agents' datapath backend.
	Datapath string
	// AgentArgs are more flags for every agent, e.g. --busy-poll 0.
	AgentArgs []string
	// PinDatapath gives each agent's datapath receivers a processor of
	// their own as far as there are processors, from the last one the
	// sandbox may use down, as a host dedicates a core to its switch (on
	// two processors: host1 and host3 on the second, host2 on the first).
	// Unpinned, the three agents' spinning receivers and the VMs'
	// processes share every processor and the scheduler makes them take
	// turns (across hosts, connections per second fell by a third); all on
	// one processor, two agents exchanging a connection's first packets
	// take turns on it (SNAT across hosts: 1,456-1,553 connections/s,
	// against 1,860-1,940 spread). Ignored with one processor, with the
	// ovs datapath, or when AgentArgs set --datapath-cpus.
	PinDatapath bool
	// Out receives progress and the result table.
	Out    io.Writer
	Logger *slog.Logger
}

// Sandbox is a running sandbox.
type Sandbox struct {
	cfg     Config
	out     io.Writer
	log     *slog.Logger
	cluster *cluster.Cluster
	agents  []*exec.Cmd
	isp     *bird.Daemon
	tmpData bool
	pins    []int // the processor of each host's receivers, if pinned
	api     string
	ids     map[string]string // names of the demo objects -> ids
	leases  []Lease           // each VM's DHCP client, in vms order
}

// host is one simulated hypervisor.
type host struct {
	name string
	ns   string
	addr string
}

var hosts = []host{
	{"host1", prefix + "h1", underlayNet + "1"},
	{"host2", prefix + "h2", underlayNet + "2"},
	{"host3", prefix + "h3", underlayNet + "3"},
}

// vm is a namespace plugged into a host as a virtual machine.
type vm struct {
	name    string
	host    int // index in hosts
	network string
	addr    string
	gateway string
}

var vms = []vm{
	{"vm-a1", 0, "net-a", "10.0.1.10", "10.0.1.1"},
	{"vm-a2", 1, "net-a", "10.0.1.11", "10.0.1.1"},
	{"vm-b1", 1, "net-b", "10.0.2.10", "10.0.2.1"},
	{"vm-b2", 2, "net-b", "10.0.2.11", "10.0.2.1"},
}

func nsOf(v vm) string  { return prefix + v.name }
func tapOf(v vm) string { return "tap-" + v.name }

// Start builds the sandbox: cleanup of leftovers, underlay, cluster,
// agents, VMs and the demo topology.
func Start(ctx context.Context, cfg Config) (sb *Sandbox, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("sandbox: run as root: it creates network namespaces and links")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("sandbox: the ip command is missing; apt-get install iproute2")
	}
	if _, err := exec.LookPath("bird"); err != nil {
		return nil, errors.New("sandbox: BIRD, the external network's BGP router, is missing; apt-get install bird2")
	}
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" {
		cfg.Listen = ":8181"
	}
	if cfg.Datapath == "" {
		cfg.Datapath = "userspace"
	}
	if cfg.Binary == "" {
		if cfg.Binary, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	sb = &Sandbox{cfg: cfg, out: cfg.Out, log: cfg.Logger, ids: map[string]string{}}
	if cfg.DataDir == "" {
		if sb.cfg.DataDir, err = os.MkdirTemp("", "midonet-sandbox-"); err != nil {
			return nil, err
		}
		sb.tmpData = true
	}
	defer func() {
		if err != nil {
			sb.Close()
			sb = nil
		}
	}()
	sb.step("cleaning up what a previous run left")
	Cleanup()
	if err := sb.clearState(); err != nil {
		return sb, err
	}
	sb.step("building the underlay: bridge %s, hosts %s, %s, %s", underlayBr, hosts[0].ns, hosts[1].ns, hosts[2].ns)
	if err := sb.underlay(); err != nil {
		return sb, err
	}
	sb.step("starting the cluster: embedded store on %s:2379, REST API on %s", storeAddr, cfg.Listen)
	sb.cluster, err = cluster.Start(ctx, cluster.Config{
		Listen: cfg.Listen, DataDir: filepath.Join(sb.cfg.DataDir, "nsdb"),
		NSDBListen: storeAddr + ":2379", Logger: cfg.Logger,
		// A demo on one machine: MidoNet's mock authentication, so that
		// the CLI and curl need no token.
		Auth: cluster.AuthMock,
	})
	if err != nil {
		return sb, err
	}
	sb.api = sb.cluster.APIURL
	if sb.pins = sb.datapathCPUs(); sb.pins != nil {
		var on []string
		for i, h := range hosts {
			on = append(on, fmt.Sprintf("%s on %d", h.name, sb.pins[i]))
		}
		sb.step("starting an agent on each host (%s datapath, receivers on processors: %s)", cfg.Datapath, strings.Join(on, ", "))
	} else {
		sb.step("starting an agent on each host (%s datapath)", cfg.Datapath)
	}
	if err := sb.startAgents(); err != nil {
		return sb, err
	}
	sb.step("plugging VMs: %s", vmNames())
	if err := sb.plugVMs(); err != nil {
		return sb, err
	}
	sb.step("building the demo topology through the REST API")
	if err := sb.buildTopology(ctx); err != nil {
		return sb, err
	}
	sb.step("waiting for the agents to plug every bound port")
	if err := sb.waitActive(ctx); err != nil {
		return sb, err
	}
	sb.step("starting BIRD in %s (AS %d) and waiting for the provider router (AS %d) to learn its default route", extNS, ispAS, providerAS)
	if err := sb.startISP(); err != nil {
		return sb, err
	}
	if err := sb.waitLearned(ctx); err != nil {
		return sb, err
	}
	sb.step("bringing the VMs' interfaces up: dhclient in each gets its address from the agent of its host")
	if err := sb.leaseVMs(ctx); err != nil {
		return sb, err
	}
	var took []string
	for _, l := range sb.leases {
		took = append(took, fmt.Sprintf("%s %s", l.VM, l.Took.Round(time.Millisecond)))
	}
	sb.step("every VM bound its lease (link up to configured: %s)", strings.Join(took, ", "))
	return sb, nil
}

func vmNames() string {
	var s []string
	for _, v := range vms {
		s = append(s, fmt.Sprintf("%s (%s on %s)", v.name, macOf(v), hosts[v.host].name))
	}
	return strings.Join(s, ", ")
}

// APIURL is the REST API's base URL.
func (sb *Sandbox) APIURL() string { return sb.api }

// ConsoleURL is the web console's URL.
func (sb *Sandbox) ConsoleURL() string { return sb.cluster.ConsoleURL }

func (sb *Sandbox) step(format string, args ...any) {
	fmt.Fprintf(sb.out, "==> "+format+"\n", args...)
}

// ip runs an ip(8) command.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ipAll runs ip commands in order, stopping at the first error.
func ipAll(cmds ...[]string) error {
	for _, c := range cmds {
		if err := ip(c...); err != nil {
			return err
		}
	}
	return nil
}

func (sb *Sandbox) underlay() error {
	// A jumbo underlay carries the VMs' 1500-byte frames plus the 50 bytes
	// of VXLAN headers without fragmenting them, as a real fabric would.
	if err := ipAll(
		[]string{"link", "add", underlayBr, "mtu", underlayMTU, "type", "bridge"},
		[]string{"addr", "add", storeAddr + "/24", "dev", underlayBr},
		[]string{"link", "set", underlayBr, "up"},
	); err != nil {
		return err
	}
	for i, h := range hosts {
		peer := prefix + "u" + strconv.Itoa(i+1)
		if err := ipAll(
			[]string{"netns", "add", h.ns},
			[]string{"link", "add", peer, "mtu", underlayMTU, "type", "veth", "peer", "name", "eth0", "mtu", underlayMTU, "netns", h.ns},
			[]string{"link", "set", peer, "master", underlayBr, "up"},
			[]string{"-n", h.ns, "addr", "add", h.addr + "/24", "dev", "eth0"},
			[]string{"-n", h.ns, "link", "set", "eth0", "up"},
			[]string{"-n", h.ns, "link", "set", "lo", "up"},
		); err != nil {
			return err
		}
	}
	// The external network hangs off host3 through the uplink interface.
	return ipAll(
		[]string{"netns", "add", extNS},
		[]string{"link", "add", "uplink", "netns", hosts[2].ns, "type", "veth", "peer", "name", "eth0", "netns", extNS},
		[]string{"-n", hosts[2].ns, "link", "set", "uplink", "up"},
		[]string{"-n", extNS, "addr", "add", extAddr + "/24", "dev", "eth0"},
		[]string{"-n", extNS, "link", "set", "eth0", "up"},
		[]string{"-n", extNS, "link", "set", "lo", "up"},
		[]string{"-n", extNS, "addr", "add", internetAddr + "/32", "dev", "lo"},
	)
}

// startISP starts BIRD in the external namespace: it peers with the
// provider router's uplink, announces a default route and the internet
// address, and installs what it learns (the public range) in the
// namespace's routing table.
func (sb *Sandbox) startISP() error {
	dir := filepath.Join(sb.cfg.DataDir, "bird")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := bird.Config{
		RouterID: netip.MustParseAddr(extAddr), AS: ispAS, Kernel: true,
		Announce: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix(internetAddr + "/32")},
		Neighbors: []bird.Neighbor{{Name: "provider", Address: netip.MustParseAddr(uplinkAddr), AS: providerAS,
			Local: netip.MustParseAddr(extAddr), HoldTime: 15 * time.Second, KeepAlive: 5 * time.Second, ConnectRetry: 5 * time.Second}},
	}
	d, err := bird.Start(dir, cfg, func(cmd *exec.Cmd) error {
		return InNS(extNS, cmd.Start)
	})
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	sb.isp = d
	return nil
}

// ISP is the external network's BGP router.
func (sb *Sandbox) ISP() *bird.Daemon { return sb.isp }

func (sb *Sandbox) startAgents() error {
	for i := range hosts {
		cmd, err := sb.startAgent(i)
		if err != nil {
			return err
		}
		sb.agents = append(sb.agents, cmd)
	}
	return nil
}

// startAgent starts the agent of hosts[i] as a process in its namespace.
func (sb *Sandbox) startAgent(i int) (*exec.Cmd, error) {
	h := hosts[i]
	logf, err := os.OpenFile(filepath.Join(sb.cfg.DataDir, h.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", "netns", "exec", h.ns, sb.cfg.Binary, "agent",
		"--host", h.name, "--nsdb", "http://"+storeAddr+":2379",
		"--state-dir", filepath.Join(sb.cfg.DataDir, h.name), "--datapath", sb.cfg.Datapath,
		// On every address of the host: the console reads it at the
		// host's underlay (tunnel-zone) address.
		"--metrics-listen", ":9100")
	if sb.pins != nil {
		cmd.Args = append(cmd.Args, "--datapath-cpus", strconv.Itoa(sb.pins[i]))
	}
	cmd.Args = append(cmd.Args, sb.cfg.AgentArgs...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start agent on %s: %w", h.name, err)
	}
	logf.Close()
	os.WriteFile(filepath.Join(os.TempDir(), prefix+h.name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
	return cmd, nil
}

// datapathCPUs returns the processor of each host's receivers (see
// Config.PinDatapath), or nil if they are not pinned.
func (sb *Sandbox) datapathCPUs() []int {
	if !sb.cfg.PinDatapath || sb.cfg.Datapath == "ovs" {
		return nil
	}
	for _, a := range sb.cfg.AgentArgs {
		if strings.HasPrefix(strings.TrimLeft(a, "-"), "datapath-cpus") {
			return nil
		}
	}
	allowed, err := userspace.AllowedCPUs()
	if err != nil {
		return nil
	}
	return switchCPUs(allowed, len(hosts))
}

// switchCPUs spreads n hosts' receivers over the allowed processors (in
// increasing order), one each from the last one down, round again when
// there are more hosts than processors; nil with one processor, where
// pinning would only keep the receivers from moving.
func switchCPUs(allowed []int, n int) []int {
	if len(allowed) < 2 {
		return nil
	}
	cpus := make([]int, n)
	for i := range cpus {
		cpus[i] = allowed[len(allowed)-1-i%len(allowed)]
	}
	return cpus
}

// plugVMs creates each VM: a namespace whose eth0, with the MAC its DHCP
// host entry names, is a veth pair's end; the other end, its tap, is in its
// host's namespace. eth0 stays down and unaddressed until the VM boots
// (leaseVMs).
func (sb *Sandbox) plugVMs() error {
	for _, v := range vms {
		h := hosts[v.host]
		if err := ipAll(
			[]string{"netns", "add", nsOf(v)},
			[]string{"link", "add", tapOf(v), "netns", h.ns, "type", "veth", "peer", "name", "eth0", "netns", nsOf(v)},
			[]string{"-n", h.ns, "link", "set", tapOf(v), "up"},
			[]string{"-n", nsOf(v), "link", "set", "eth0", "address", macOf(v)},
			[]string{"-n", nsOf(v), "link", "set", "lo", "up"},
		); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the agents and the cluster and removes everything the
// sandbox created.
func (sb *Sandbox) Close() {
	for _, a := range sb.agents {
		if a.Process != nil {
			a.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, a := range sb.agents {
		done := make(chan struct{})
		go func() { a.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			a.Process.Kill()
			<-done
		}
	}
	sb.agents = nil
	if sb.isp != nil {
		sb.isp.Stop()
		sb.isp = nil
	}
	if sb.cluster != nil {
		sb.cluster.Close()
		sb.cluster = nil
	}
	Cleanup()
	if sb.tmpData {
		os.RemoveAll(sb.cfg.DataDir)
	}
}

// clearState removes the store and agents' state an earlier run left in
// the data directory: the demo is built from scratch and would conflict
// with its own leftovers.
func (sb *Sandbox) clearState() error {
	dirs := []string{filepath.Join(sb.cfg.DataDir, "nsdb")}
	for _, h := range hosts {
		dirs = append(dirs, filepath.Join(sb.cfg.DataDir, h.name))
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("sandbox: clearing %s left by an earlier run: %w", d, err)
		}
	}
	return nil
}

// Cleanup removes every namespace and link a sandbox creates, and stops
// agents and DHCP clients a crashed run left behind.
func Cleanup() {
	stopDHCPClients()
	pids, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*.pid"))
	for _, f := range pids {
		if b, err := os.ReadFile(f); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				// Only signal a midonet agent: the pid may have been reused.
				if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmdline), "agent") {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		os.Remove(f)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if name, _, _ := strings.Cut(strings.TrimSpace(line), " "); strings.HasPrefix(name, prefix) {
			ip("netns", "del", name)
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(links), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			if strings.HasPrefix(name, prefix) {
				ip("link", "del", name)
			}
		}
	}
}

// ID returns the id of a demo object by its name in the build ("net-a",
// "tenant-router", "port:vm-a1", "host:host2", "sg"...).
func (sb *Sandbox) ID(name string) string { return sb.ids[name] }

// HostNS returns the namespace of host i (0-based).
func HostNS(i int) string { return hosts[i].ns }

// VMNS returns the namespace of the named VM.
func VMNS(name string) string { return prefix + name }

// ExtNS is the namespace of the external network.
const ExtNS = extNS

// RestartAgent stops the agent of host i and starts it again, as an
// operator upgrading it would.
func (sb *Sandbox) RestartAgent(i int) error { return sb.restartAgent(i, syscall.SIGTERM) }

// AgentStateDir is the directory where the agent of host i keeps its flow
// state (agent.ReadSavedState reads it).
func (sb *Sandbox) AgentStateDir(i int) string {
	return agent.HostStateDir(filepath.Join(sb.cfg.DataDir, hosts[i].name), hosts[i].name)
}

// AgentLog is the file the agent of host i logs to.
func (sb *Sandbox) AgentLog(i int) string { return filepath.Join(sb.cfg.DataDir, hosts[i].name+".log") }

// CrashAgent kills the agent of host i (SIGKILL: no clean shutdown) and
// starts it again, as a supervisor would after a crash.
func (sb *Sandbox) CrashAgent(i int) error { return sb.restartAgent(i, syscall.SIGKILL) }

// KillAgent kills the agent of host i (SIGKILL) and leaves it dead, until
// StartAgent: what its death takes away can be watched meanwhile.
func (sb *Sandbox) KillAgent(i int) {
	a := sb.agents[i]
	a.Process.Kill()
	a.Wait()
}

// StartAgent starts again the agent of host i that KillAgent killed.
func (sb *Sandbox) StartAgent(i int) error {
	cmd, err := sb.startAgent(i)
	if err != nil {
		return err
	}
	sb.agents[i] = cmd
	return nil
}

func (sb *Sandbox) restartAgent(i int, sig syscall.Signal) error {
	a := sb.agents[i]
	a.Process.Signal(sig)
	done := make(chan struct{})
	go func() { a.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		a.Process.Kill()
		<-done
	}
	cmd, err := sb.startAgent(i)
	if err != nil {
		return err
	}
	sb.agents[i] = cmd
	return nil
}
