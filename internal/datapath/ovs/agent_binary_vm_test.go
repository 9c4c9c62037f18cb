package ovs_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath/ovs"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsdb/embedded"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/topology"
)

// midonetBinary is where scripts/kvm-ovs-test.sh puts the midonet binary in
// the VM image; MIDONET_BIN overrides it.
func midonetBinary() string {
	if b := os.Getenv("MIDONET_BIN"); b != "" {
		return b
	}
	return "/midonet"
}

// TestMidonetAgentBinaryForwardsThroughKernel runs the real `midonet agent
// --datapath ovs` process against an embedded store and checks that it
// forwards frames between two veths through the openvswitch module, the
// second frame of a flow without an upcall. Like the in-process test, it
// runs in a network namespace of its own.
func TestMidonetAgentBinaryForwardsThroughKernel(t *testing.T) {
	if os.Getenv(agentNetnsEnv) == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root for the openvswitch generic netlink families and network namespaces")
		}
		if err := ovs.Available(); err != nil {
			t.Skipf("kernel datapath not available (run scripts/kvm-ovs-test.sh for the VM): %v", err)
		}
		if _, err := os.Stat(midonetBinary()); err != nil {
			t.Skipf("no midonet binary at %s (scripts/kvm-ovs-test.sh puts one in the VM; or set MIDONET_BIN)", midonetBinary())
		}
		runInOwnNetNS(t)
		return
	}
	prepareNamespace(t)
	member, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:0", Fast: true})
	if err != nil {
		t.Fatalf("embedded store: %v", err)
	}
	t.Cleanup(func() { member.Close() })
	ctx := context.Background()
	store, err := nsdb.Open(ctx, nsdb.Config{Endpoints: []string{member.ClientURL}})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { store.Close() })
	agentVeth(t, "vmA", "tapA")
	agentVeth(t, "vmB", "tapB")

	cmd := exec.Command(midonetBinary(), "agent", "--host", "bin-host", "--nsdb", member.ClientURL,
		"--datapath", "ovs", "--state-dir", t.TempDir(), "--metrics-listen", "127.0.0.1:9100", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start midonet agent: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(agentWait):
			cmd.Process.Kill()
			<-done
		}
	})

	// The agent registers its host; then the topology is written for it.
	var host topology.ID
	deadline := time.Now().Add(agentWait)
	for host == (topology.ID{}) {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not register its host")
		}
		store.View(ctx, func(tx *nsdb.Tx) error {
			hosts, err := topology.ListOf[topology.Host](tx)
			for _, h := range hosts {
				if h.Name != nil && *h.Name == "bin-host" {
					host = h.ID
				}
			}
			return err
		})
		time.Sleep(50 * time.Millisecond)
	}
	zone, bridge := topology.NewID(), topology.NewID()
	pA := topology.Port{ID: topology.NewID(), Type: topology.PortTypeBridge, DeviceID: bridge, AdminStateUp: true,
		HostID: &host, InterfaceName: topology.Str("tapA"), TunnelKey: 11}
	pB := topology.Port{ID: topology.NewID(), Type: topology.PortTypeBridge, DeviceID: bridge, AdminStateUp: true,
		HostID: &host, InterfaceName: topology.Str("tapB"), TunnelKey: 12}
	if err := store.Update(ctx, func(tx *nsdb.Tx) error {
		if err := tx.Create(&topology.TunnelZone{ID: zone, Name: topology.Str("tz"), Type: topology.Str("vxlan"),
			Members: []topology.TunnelZoneMember{{HostID: host, IPAddress: "127.0.0.1"}}}); err != nil {
			return err
		}
		if err := tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}); err != nil {
			return err
		}
		if err := tx.Create(&pA); err != nil {
			return err
		}
		return tx.Create(&pB)
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []topology.ID{pA.ID, pB.ID} {
		deadline := time.Now().Add(agentWait)
		for {
			if _, err := store.GetState(ctx, nsdb.PortActiveKey(p.String())); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("port %s never active", p)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	vmA, vmB := openAgentWire(t, "vmA"), openAgentWire(t, "vmB")
	vmA.send(t, agentFrame(macVMA, macVMB, "10.0.0.1", "10.0.0.2", "bin-1"))
	vmB.expect(t, "first frame vmA->vmB", macVMB, "bin-1")
	// The agent sends a miss's packet before it installs the flow (the
	// install is off the packet's path): the second frame is only the
	// kernel's once the flow is in.
	if !poll.Until(func() bool { return agentMetric(t, "midonet_agent_flows_installed_total") >= 1 }, agentWait) {
		t.Fatal("the agent installed no flow for the first frame")
	}
	upcalls := agentMetric(t, "midonet_agent_upcalls_total")
	vmA.send(t, agentFrame(macVMA, macVMB, "10.0.0.1", "10.0.0.2", "bin-2"))
	vmB.expect(t, "second frame vmA->vmB", macVMB, "bin-2")
	if after := agentMetric(t, "midonet_agent_upcalls_total"); after != upcalls {
		t.Errorf("the second frame of the flow reached the agent (upcalls %v -> %v, flows invalidated %v): the kernel flow did not forward it",
			upcalls, after, agentMetric(t, "midonet_agent_flows_invalidated_total"))
	}
	// The datapath counters the agent exports show the kernel's hit.
	deadline = time.Now().Add(agentWait)
	for agentMetric(t, "midonet_agent_datapath_hits") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the agent's datapath hit counter never moved")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("midonet agent --datapath ovs: second frame forwarded by the kernel; agent upcalls stayed at %v", upcalls)
}

// agentMetric reads one value from the agent's Prometheus endpoint.
func agentMetric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:9100/metrics")
	if err != nil {
		t.Fatalf("agent metrics: %v", err)
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), name+" "); ok {
			var f float64
			fmt.Sscanf(v, "%g", &f)
			return f
		}
	}
	return 0
}
