package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/midonet/midonet/internal/agent"
	"github.com/midonet/midonet/internal/cluster"
	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/mem"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

// rig is one cluster (store, API, console) for the whole test binary, with
// a real agent on a mem datapath serving its metrics on loopback, and a
// topology built through the REST API:
//
//	vm-a (10.71.1.5) ── console-net-a ── 10.71.1.1 ┐
//	                                              console-router, inbound chain console-guard:
//	vm-b (10.71.2.5) ── console-net-b ── 10.71.2.1 ┘   #1 drop tcp to 10.71.2.5:22
//
// Both VM ports are bound to the agent's host (interfaces vm-a, vm-b) and
// form the port group console-web; a load balancer hangs off the router.
type rig struct {
	cluster *cluster.Cluster
	api     string // base URL of the REST API
	ids     map[string]string
	agent   *agent.Agent
	dp      *mem.Datapath
	macs    map[string][6]byte // router ports' MACs, by bridge name
}

var theRig *rig

func TestMain(m *testing.M) {
	os.Exit(runWithRig(m))
}

func runWithRig(m *testing.M) int {
	dir, err := os.MkdirTemp("", "midonet-console-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, stop, err := startRig(ctx, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "console test rig:", err)
		if stop != nil {
			stop()
		}
		return 1
	}
	defer stop()
	theRig = r
	return m.Run()
}

// startRig builds the rig; stop undoes what it started, also on error.
func startRig(ctx context.Context, dir string) (r *rig, stop func(), err error) {
	var undo []func()
	stop = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	c, err := cluster.Start(ctx, cluster.Config{Listen: "127.0.0.1:0", DataDir: dir + "/nsdb", NSDBListen: "127.0.0.1:0", FastStore: true})
	if err != nil {
		return nil, stop, err
	}
	undo = append(undo, c.Close)
	r = &rig{cluster: c, api: c.APIURL, ids: map[string]string{}, macs: map[string][6]byte{}}

	// The agent serves its metrics on loopback and publishes an
	// unspecified address with the port: the console reads it at the
	// host's tunnel-zone address, 127.0.0.1.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, stop, err
	}
	r.dp = mem.New(mem.Config{})
	a, err := agent.New(agent.Config{HostName: "console-h1", StateDir: dir + "/agent", Store: agent.NSDB(c.Store), Datapath: r.dp,
		Workers: 1, SessionTTL: 2 * time.Second, MetricsAddress: ":" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		ln.Close()
		return nil, stop, err
	}
	r.agent = a
	srv := &http.Server{Handler: promhttp.HandlerFor(a.Metrics().Registry(), promhttp.HandlerOpts{})}
	go srv.Serve(ln)
	undo = append(undo, func() { srv.Close() })
	actx, acancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.Run(actx) }()
	undo = append(undo, func() { acancel(); <-done; r.dp.Close() })
	select {
	case <-a.Ready():
	case <-time.After(20 * time.Second):
		return nil, stop, fmt.Errorf("the agent is not ready after 20s")
	}
	return r, stop, r.build(ctx)
}

// post creates an object through the API and returns its id.
func (r *rig) post(ctx context.Context, p string, body any) (string, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.api+p, bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST %s: %s: %s", p, resp.Status, bytes.TrimSpace(msg))
	}
	return path.Base(resp.Header.Get("Location")), nil
}

func (r *rig) get(ctx context.Context, p string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.api+p, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", p, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (r *rig) build(ctx context.Context) error {
	var err error
	must := func(id string, e error) string {
		if err == nil {
			err = e
		}
		return id
	}
	ids := r.ids
	host := r.agent.HostID().String()
	ids["host"] = host
	ids["tz"] = must(r.post(ctx, "/tunnel_zones", map[string]any{"name": "console-tz", "type": "vxlan"}))
	must(r.post(ctx, "/tunnel_zones/"+ids["tz"]+"/hosts", map[string]any{"hostId": host, "ipAddress": "127.0.0.1"}))
	ids["chain"] = must(r.post(ctx, "/chains", map[string]any{"name": "console-guard", "tenantId": "acme"}))
	ids["drop-ssh"] = must(r.post(ctx, "/chains/"+ids["chain"]+"/rules", map[string]any{"type": "drop", "position": 1,
		"nwProto": 6, "nwDstAddress": "10.71.2.5", "nwDstLength": 32, "tpDst": map[string]int{"start": 22, "end": 22}}))
	ids["router"] = must(r.post(ctx, "/routers", map[string]any{"name": "console-router", "tenantId": "acme",
		"inboundFilterId": ids["chain"]}))
	for _, n := range []struct{ name, net, gw, vm, vmIP string }{
		{"console-net-a", "10.71.1.0", "10.71.1.1", "vm-a", "10.71.1.5"},
		{"console-net-b", "10.71.2.0", "10.71.2.1", "vm-b", "10.71.2.5"},
	} {
		br := must(r.post(ctx, "/bridges", map[string]any{"name": n.name, "tenantId": "acme"}))
		ids[n.name] = br
		bp := must(r.post(ctx, "/bridges/"+br+"/ports", map[string]any{"type": "Bridge"}))
		rp := must(r.post(ctx, "/routers/"+ids["router"]+"/ports", map[string]any{
			"type": "Router", "portAddress": n.gw, "networkAddress": n.net, "networkLength": 24}))
		must(r.post(ctx, "/ports/"+bp+"/link", map[string]any{"peerId": rp}))
		must(r.post(ctx, "/routers/"+ids["router"]+"/routes", map[string]any{"type": "Normal",
			"srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": n.net, "dstNetworkLength": 24, "nextHopPort": rp}))
		vm := must(r.post(ctx, "/bridges/"+br+"/ports", map[string]any{"type": "Bridge"}))
		ids[n.vm] = vm
		must(r.post(ctx, "/hosts/"+host+"/ports", map[string]any{"portId": vm, "interfaceName": n.vm}))
		// What the agents would have learned of each VM.
		mac := vmMAC(n.vmIP)
		must(r.post(ctx, "/bridges/"+br+"/mac_table", map[string]any{"macAddr": mac, "portId": vm}))
		must(r.post(ctx, "/bridges/"+br+"/arp_table", map[string]any{"ip": n.vmIP, "mac": mac}))
		if err != nil {
			return err
		}
		var p struct {
			PortMAC string `json:"portMac"`
		}
		if err := r.get(ctx, "/ports/"+rp, &p); err != nil {
			return err
		}
		r.macs[n.name], _ = topology.ParseMAC(p.PortMAC)
	}
	ids["lb"] = must(r.post(ctx, "/load_balancers", map[string]any{"adminStateUp": true}))
	if err == nil {
		err = r.attachLB(ctx, ids["router"], ids["lb"])
	}
	ids["group"] = must(r.post(ctx, "/port_groups", map[string]any{"name": "console-web", "tenantId": "acme"}))
	for _, vm := range []string{"vm-a", "vm-b"} {
		must(r.post(ctx, "/port_groups/"+ids["group"]+"/ports", map[string]any{"portId": ids[vm]}))
	}
	return err
}

// attachLB gives the router the load balancer, as MidoNet's API does it:
// a PUT of the router with its loadBalancerId.
func (r *rig) attachLB(ctx context.Context, router, lb string) error {
	var body map[string]any
	if err := r.get(ctx, "/routers/"+router, &body); err != nil {
		return err
	}
	body["loadBalancerId"] = lb
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, r.api+"/routers/"+router, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("PUT /routers/%s with loadBalancerId: %s: %s", router, resp.Status, msg)
	}
	return nil
}

// vmMAC is the MAC of the VM with address ip: 02:00 then the address.
func vmMAC(ip string) string {
	a, _ := netip.ParseAddr(ip)
	b := a.As4()
	return topology.FormatMAC([6]byte{2, 0, b[0], b[1], b[2], b[3]})
}

// send injects UDP packets from vm-a to vm-b into the agent's datapath, n
// distinct flows, so that it simulates and installs flows.
func (r *rig) send(t *testing.T, n int) {
	t.Helper()
	var no = -1
	deadline := time.Now().Add(10 * time.Second)
	for no < 0 && time.Now().Before(deadline) {
		for _, p := range r.dp.Ports() {
			if p.Spec.Name == "vm-a" {
				no = int(p.No)
			}
		}
		if no < 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if no < 0 {
		t.Fatal("the agent did not plug vm-a into its datapath within 10s")
	}
	for i := range n {
		src, _ := topology.ParseMAC(vmMAC("10.71.1.5"))
		f := packet.UDP4Fields{EthSrc: src, EthDst: r.macs["console-net-a"],
			Src: [4]byte{10, 71, 1, 5}, Dst: [4]byte{10, 71, 2, 5}, SrcPort: uint16(40000 + i), DstPort: 53, Checksum: true}
		if err := r.dp.Inject(datapath.PortNo(no), packet.AppendIPv4UDP(nil, f, []byte("console"))); err != nil {
			t.Fatal(err)
		}
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
