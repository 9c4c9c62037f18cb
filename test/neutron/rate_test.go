package neutron

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNeutronCallRate measures port creates with two security groups, the
// Neutron call that matters most: through neutron-server and the plugin
// (Neutron's REST API, as Nova calls it), and straight to the cluster's
// endpoint (as the plugin calls it), side by side in one run, each the
// median of three rounds of 50 calls from 1 client, then 4. It is a measurement,
// not a check: MIDONET_NEUTRON_BENCH=1 runs it (bench/neutron/run.sh).
func TestNeutronCallRate(t *testing.T) {
	if os.Getenv("MIDONET_NEUTRON_BENCH") == "" {
		t.Skip("a measurement: set MIDONET_NEUTRON_BENCH=1 (bench/neutron/run.sh)")
	}
	need(t)
	r := startRig(t)
	var net, sub struct {
		ID string `json:"id"`
	}
	r.openstack(&net, "network", "create", "bench")
	r.openstack(&sub, "subnet", "create", "--network", "bench", "--subnet-range", "10.64.0.0/12", "bench-subnet")
	var sgs []string
	for _, name := range []string{"web", "ssh"} {
		var sg struct {
			ID string `json:"id"`
		}
		r.openstack(&sg, "security", "group", "create", name)
		r.openstack(nil, "security", "group", "rule", "create", name, "--protocol", "tcp", "--dst-port", "22")
		sgs = append(sgs, sg.ID)
	}
	var seq atomic.Uint32
	// Neutron's API wraps the object; the cluster's endpoint takes it bare
	// (with the id, MAC and address Neutron would have chosen).
	viaNeutron := func(hc *http.Client) error {
		body, _ := json.Marshal(map[string]any{"port": map[string]any{"network_id": net.ID, "security_groups": sgs,
			"binding:host_id": "host1", "device_owner": "compute:nova", "device_id": newUUID()}})
		return postOK(hc, r.endpoint+"/v2.0/ports", "application/json", "", body)
	}
	direct := func(hc *http.Client) error {
		i := seq.Add(1)
		body, _ := json.Marshal(map[string]any{"id": newUUID(), "network_id": net.ID, "tenant_id": "fake_project_id",
			"mac_address":     fmt.Sprintf("fa:16:3e:e0:%02x:%02x", i>>8&0xff, i&0xff),
			"fixed_ips":       []any{map[string]any{"subnet_id": sub.ID, "ip_address": fmt.Sprintf("10.72.%d.%d", i>>8&0xff, i&0xff)}},
			"security_groups": sgs, "binding:host_id": "host1", "device_owner": "compute:nova", "device_id": newUUID()})
		return postOK(hc, r.cluster.APIURL+"/neutron/ports", "application/vnd.org.midonet.neutron.Port-v1+json", r.token, body)
	}
	const calls, rounds = 50, 3
	measure := func(name string, clients int, call func(*http.Client) error) float64 {
		var rates []float64
		for range rounds {
			var next atomic.Int32
			var wg sync.WaitGroup
			var failed atomic.Value
			start := time.Now()
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					hc := &http.Client{Transport: r.hc.Transport, Timeout: time.Minute}
					for next.Add(1) <= calls {
						if err := call(hc); err != nil {
							failed.Store(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			rates = append(rates, calls/time.Since(start).Seconds())
		}
		slices.Sort(rates)
		t.Logf("FIGURE port create with 2 security groups, %s: %.1f calls/s (median of %v, %d calls from %d clients each)",
			name, rates[1], rates, calls, clients)
		return rates[1]
	}
	for _, clients := range []int{1, 4} {
		measure("through neutron-server and the plugin", clients, viaNeutron)
		measure("straight to the cluster's endpoint", clients, direct)
	}
	log, _ := os.ReadFile(filepath.Join(r.dir, "neutron", "neutron-server.log"))
	t.Logf("neutron-server's log: %d lines, %d retries on a locked SQLite database",
		bytes.Count(log, []byte("\n")), bytes.Count(log, []byte("database is locked")))
}

func postOK(hc *http.Client, url, ctype, token string, body []byte) error {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", ctype)
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 201 {
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, b.String())
	}
	return nil
}
