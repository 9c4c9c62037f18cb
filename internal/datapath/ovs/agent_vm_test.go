package ovs_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/agent"
	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/ovs"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

// The agent's own end-to-end test on the kernel datapath: an agent with an
// embedded store forwards real frames between two veths through the
// openvswitch module, and the second frame of a flow never leaves the
// kernel. It skips on a host without the module and runs in the qemu VM of
// scripts/kvm-ovs-test.sh.
//
// The agent plugs interfaces and reads their state from its own goroutines,
// on whatever thread they run, so the whole agent must live in one network
// namespace: the test re-executes itself in a new one (CLONE_NEWNET), and
// the child process runs the scenario there. The namespace, its links and
// its datapath disappear with the child even if it is killed.

// agentNetnsEnv marks the child process that runs inside its own namespace.
const agentNetnsEnv = "MIDONET_OVS_AGENT_TEST_NETNS"

// agentWait is generous: the VM runs under TCG, 10-50x slower than native.
const agentWait = 20 * time.Second

func TestAgentForwardsThroughKernelDatapath(t *testing.T) {
	if os.Getenv(agentNetnsEnv) == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root for the openvswitch generic netlink families and network namespaces")
		}
		if err := ovs.Available(); err != nil {
			t.Skipf("kernel datapath not available (run scripts/kvm-ovs-test.sh for the VM): %v", err)
		}
		runInOwnNetNS(t)
		return
	}
	// In the child: a missing module or privilege is a broken setup, not a
	// reason to skip, since the parent already checked both.
	if err := ovs.Available(); err != nil {
		t.Fatalf("kernel datapath not available in the test's namespace: %v", err)
	}
	agentForwardsThroughKernel(t)
}

// runInOwnNetNS runs this test again in a child process in a new network
// namespace and fails with the child's output if the child did not pass.
func runInOwnNetNS(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*agentWait)
	defer cancel()
	name := t.Name()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), agentNetnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	for line := range strings.Lines(out.String()) {
		t.Log("child: " + strings.TrimRight(line, "\n"))
	}
	if err != nil {
		t.Fatalf("the test in its own network namespace: %v", err)
	}
	if !strings.Contains(out.String(), "--- PASS: "+name) {
		t.Fatalf("the child process did not report %s as passed", name)
	}
}

var (
	macVMA = [6]byte{0x02, 0x00, 0x00, 0x0a, 0x00, 0x01}
	macVMB = [6]byte{0x02, 0x00, 0x00, 0x0b, 0x00, 0x01}
)

func agentForwardsThroughKernel(t *testing.T) {
	prepareNamespace(t)

	member, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:0", Fast: true})
	if err != nil {
		t.Fatalf("embedded store: %v", err)
	}
	t.Cleanup(func() { member.Close() })
	ctx := context.Background()
	store, err := nsdb.Open(ctx, nsdb.Config{Endpoints: []string{member.ClientURL}, Prefix: "/ovs-agent-test"})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	update := func(fn func(tx *nsdb.Tx) error) {
		t.Helper()
		if err := store.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}

	agentVeth(t, "vmA", "tapA")
	agentVeth(t, "vmB", "tapB")
	agentVeth(t, "vmC", "tapC")

	dp, err := ovs.Open(ovs.Config{Name: fmt.Sprintf("mnag%d", os.Getpid()%100000)})
	if err != nil {
		t.Fatalf("open kernel datapath: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a, err := agent.New(agent.Config{HostName: "vm-host", StateDir: t.TempDir(), Store: agent.NSDB(store), Datapath: dp,
		Workers: 2, Logger: logger})
	if err != nil {
		_ = dp.Delete()
		t.Fatalf("new agent: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	var runErr error
	go func() { defer close(done); runErr = a.Run(runCtx) }()
	// Registered before the store's cleanup, so it runs first.
	t.Cleanup(func() {
		stop()
		<-done
		if err := dp.Delete(); err != nil {
			t.Errorf("delete datapath: %v", err)
		}
	})
	select {
	case <-a.Ready():
	case <-done:
		t.Fatalf("agent stopped before it was ready: %v", runErr)
	case <-time.After(agentWait):
		// Show where it is stuck: the VM's output is all CI keeps.
		var stacks bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
		t.Fatalf("agent not ready after %v; goroutines:\n%s", agentWait, stacks.String())
	}

	// The host in a tunnel zone (the agent then opens its VXLAN port), a
	// bridge, and one port bound to each tap.
	zone, bridge := topology.NewID(), topology.NewID()
	update(func(tx *nsdb.Tx) error {
		if err := tx.Create(&topology.TunnelZone{ID: zone, Name: topology.Str("tz"), Type: topology.Str("vxlan"),
			Members: []topology.TunnelZoneMember{{HostID: a.HostID(), IPAddress: "127.0.0.1"}}}); err != nil {
			return err
		}
		return tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true})
	})
	bind := func(iface string) topology.ID {
		p := topology.Port{ID: topology.NewID(), Type: topology.PortTypeBridge, DeviceID: bridge, AdminStateUp: true,
			HostID: topology.IDPtr(a.HostID()), InterfaceName: topology.Str(iface)}
		update(func(tx *nsdb.Tx) error {
			if err := topology.AllocateTunnelKey(tx, &p, func(n int64) int64 { return time.Now().UnixNano() % n }); err != nil {
				return err
			}
			return tx.Create(&p)
		})
		return p.ID
	}
	portA, portB, portC := bind("tapA"), bind("tapB"), bind("tapC")
	noA := waitPlugged(t, dp, store, "tapA", portA)
	noB := waitPlugged(t, dp, store, "tapB", portB)
	noC := waitPlugged(t, dp, store, "tapC", portC)

	vmA, vmB, vmC := openAgentWire(t, "vmA"), openAgentWire(t, "vmB"), openAgentWire(t, "vmC")

	// First frame to an unknown MAC: an upcall, simulated, flooded to
	// tapB and tapC.
	vmA.send(t, agentFrame(macVMA, macVMB, "10.0.0.1", "10.0.0.2", "a-to-b-1"))
	vmB.expect(t, "first frame vmA->vmB", macVMB, "a-to-b-1")
	vmC.expect(t, "first frame vmA->vmB flooded to vmC", macVMB, "a-to-b-1")
	if outs := outputs(waitFlowFrom(t, dp, noA)); !slices.Equal(sortedPorts(outs...), sortedPorts(noB, noC)) {
		t.Errorf("flood flow from tapA outputs to %v, want tapB's and tapC's ports %d and %d", outs, noB, noC)
	}

	// Second frame of the same flow: the kernel forwards it on the flow
	// the agent installed, with no miss and no upcall.
	before := dp.Stats()
	vmA.send(t, agentFrame(macVMA, macVMB, "10.0.0.1", "10.0.0.2", "a-to-b-2"))
	vmB.expect(t, "second frame vmA->vmB", macVMB, "a-to-b-2")
	after := dp.Stats()
	if after.Hits <= before.Hits || after.Misses != before.Misses || after.Upcalls != before.Upcalls {
		t.Errorf("second frame: hits %d->%d, misses %d->%d, upcalls %d->%d; want a kernel hit, no miss, no upcall",
			before.Hits, after.Hits, before.Misses, after.Misses, before.Upcalls, after.Upcalls)
	}
	t.Logf("second frame: kernel hits %d->%d, misses %d->%d, upcalls %d->%d",
		before.Hits, after.Hits, before.Misses, after.Misses, before.Upcalls, after.Upcalls)
	if f := waitFlowFrom(t, dp, noA); f.Stats.Packets == 0 {
		t.Errorf("flow from tapA (port %d) shows no packets in the kernel: %+v", noA, f.Stats)
	} else {
		t.Logf("kernel flow from tapA (port %d): %d packets, actions %+v", noA, f.Stats.Packets, f.Actions)
	}

	// The reply goes to the MAC learned from the first frame: unicast to
	// tapA alone. Learning reaches the agent's snapshot through the store,
	// so a reply simulated before that is flooded (valid, and its flow is
	// invalidated when the MAC arrives): resend until the kernel holds the
	// unicast flow.
	deadline := time.Now().Add(agentWait)
	for i := 1; ; i++ {
		marker := fmt.Sprintf("b-to-a-%d", i)
		vmB.send(t, agentFrame(macVMB, macVMA, "10.0.0.2", "10.0.0.1", marker))
		vmA.expect(t, "reply vmB->vmA", macVMA, marker)
		outs, ok := flowOutputs(t, dp, noB)
		if ok && slices.Equal(outs, []datapath.PortNo{noA}) {
			t.Logf("reply %d: kernel flow from tapB (port %d) outputs to %v", i, noB, outs)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d replies the flow from tapB (port %d) outputs to %v (found %v), want only tapA's port %d",
				i, noB, outs, ok, noA)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if a.Flows() == 0 {
		t.Error("the agent reports no installed flows")
	}
}

// prepareNamespace brings lo up (the store listens there) and turns IPv6
// off so that new links send no router solicitations (stray upcalls).
func prepareNamespace(t *testing.T) {
	t.Helper()
	for _, p := range []string{"all", "default"} {
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+p+"/disable_ipv6", []byte("1"), 0o644); err != nil {
			t.Logf("disable IPv6 (%s): %v", p, err)
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring lo up: %v", err)
	}
}

// agentVeth creates the pair vm<->tap, both up, deleted at cleanup.
func agentVeth(t *testing.T, vm, tap string) {
	t.Helper()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: vm}, PeerName: tap}); err != nil {
		t.Fatalf("create veth %s<->%s: %v", vm, tap, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(vm); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	for _, n := range []string{vm, tap} {
		l, err := netlink.LinkByName(n)
		if err == nil {
			err = netlink.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("bring %s up: %v", n, err)
		}
	}
}

// waitPlugged waits until the agent has added iface to the datapath and
// published its virtual port as active, and returns the datapath port.
func waitPlugged(t *testing.T, dp *ovs.Datapath, store *nsdb.Store, iface string, port topology.ID) datapath.PortNo {
	t.Helper()
	deadline := time.Now().Add(agentWait)
	for time.Now().Before(deadline) {
		for _, p := range dp.Ports() {
			if p.Spec.Name != iface {
				continue
			}
			if _, err := store.GetState(context.Background(), nsdb.PortActiveKey(port.String())); err == nil {
				return p.No
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("interface %s not plugged into the kernel datapath and active within %v (ports %+v)", iface, agentWait, dp.Ports())
	return 0
}

// flowOutputs returns the output ports of the kernel's flow for packets
// entering on port, and whether there is one.
func flowOutputs(t *testing.T, dp *ovs.Datapath, port datapath.PortNo) ([]datapath.PortNo, bool) {
	t.Helper()
	var outs []datapath.PortNo
	found := false
	err := dp.DumpFlows(func(f *datapath.Flow) bool {
		if f.Key.InPort != uint32(port) {
			return true
		}
		found, outs = true, outputs(*f)
		return false
	})
	if err != nil {
		t.Fatalf("dump flows: %v", err)
	}
	return outs, found
}

func outputs(f datapath.Flow) []datapath.PortNo {
	var outs []datapath.PortNo
	for _, act := range f.Actions {
		if act.Kind == datapath.ActOutput {
			outs = append(outs, act.Port)
		}
	}
	return outs
}

func sortedPorts(ports ...datapath.PortNo) []datapath.PortNo {
	return slices.Sorted(slices.Values(ports))
}

// waitFlowFrom waits until the kernel holds a flow matching packets that
// enter on port, and returns it.
func waitFlowFrom(t *testing.T, dp *ovs.Datapath, port datapath.PortNo) datapath.Flow {
	t.Helper()
	deadline := time.Now().Add(agentWait)
	for time.Now().Before(deadline) {
		var found *datapath.Flow
		err := dp.DumpFlows(func(f *datapath.Flow) bool {
			if f.Key.InPort == uint32(port) {
				c := *f
				c.Actions = append([]datapath.Action(nil), f.Actions...)
				found = &c
				return false
			}
			return true
		})
		if err != nil {
			t.Fatalf("dump flows: %v", err)
		}
		if found != nil {
			return *found
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no kernel flow with in_port %d within %v", port, agentWait)
	return datapath.Flow{}
}

// agentWire is an AF_PACKET socket on one interface.
type agentWire struct {
	fd   int
	name string
}

func openAgentWire(t *testing.T, name string) *agentWire {
	t.Helper()
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatalf("interface %s: %v", name, err)
	}
	proto := uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		t.Fatalf("packet socket on %s: %v", name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
		t.Fatalf("bind packet socket to %s: %v", name, err)
	}
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatalf("receive timeout on %s: %v", name, err)
	}
	return &agentWire{fd: fd, name: name}
}

func (w *agentWire) send(t *testing.T, frame []byte) {
	t.Helper()
	if _, err := unix.Write(w.fd, frame); err != nil {
		t.Fatalf("send on %s: %v", w.name, err)
	}
}

// expect waits for an incoming frame to dst ending with marker.
func (w *agentWire) expect(t *testing.T, what string, dst [6]byte, marker string) {
	t.Helper()
	buf := make([]byte, 65536)
	deadline := time.Now().Add(agentWait)
	for time.Now().Before(deadline) {
		n, from, err := unix.Recvfrom(w.fd, buf, 0)
		if err != nil {
			continue // receive timeout tick
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		f := buf[:n]
		if len(f) >= packet.EthernetHeaderLen && [6]byte(f[:6]) == dst && bytes.HasSuffix(f, []byte(marker)) {
			return
		}
	}
	t.Fatalf("%s: no frame to %x carrying %q on %s within %v", what, dst, marker, w.name, agentWait)
}

// agentFrame builds an Ethernet/IPv4/UDP frame whose payload is marker;
// frames that differ only in marker belong to the same flow.
func agentFrame(src, dst [6]byte, srcIP, dstIP, marker string) []byte {
	return packet.AppendIPv4UDP(nil, packet.UDP4Fields{EthSrc: src, EthDst: dst,
		Src: [4]byte(net.ParseIP(srcIP).To4()), Dst: [4]byte(net.ParseIP(dstIP).To4()), TTL: 64,
		SrcPort: 4000, DstPort: 5000, Checksum: true}, []byte(marker))
}
