package neutron_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/midonet/midonet/internal/topology"
)

// BenchmarkEndpointPortCreate measures the Neutron call that matters most,
// a VM's port created with two security groups, through the cluster's
// endpoint (HTTP, translation, one store transaction): go test -run '^$'
// -bench EndpointPortCreate ./internal/neutron. The calls come from 8
// clients at once, as a plugin's API workers send them; every port joins
// the same groups' address groups, so concurrent calls conflict there and
// retry, as MidoNet's did.
func BenchmarkEndpointPortCreate(b *testing.B) {
	srv := apiServer(b)
	base := srv.URL + "/midonet-api/neutron"
	post := func(coll string, body any) {
		b.Helper()
		j, _ := json.Marshal(body)
		resp, err := http.Post(base+"/"+coll, "application/json", bytes.NewReader(j))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			b.Fatalf("POST %s: %d", coll, resp.StatusCode)
		}
	}
	net, sub := topology.NewID().String(), topology.NewID().String()
	post("networks", map[string]any{"id": net, "name": "bench", "tenant_id": "t"})
	post("subnets", map[string]any{"id": sub, "network_id": net, "ip_version": 4, "cidr": "10.0.0.0/8", "gateway_ip": "10.0.0.1"})
	var sgs []string
	for i := range 2 {
		sg := topology.NewID().String()
		rule := func(dir, proto string, port any) map[string]any {
			return map[string]any{"id": topology.NewID().String(), "security_group_id": sg, "direction": dir, "ethertype": "IPv4",
				"protocol": proto, "port_range_min": port, "port_range_max": port}
		}
		post("security_groups", map[string]any{"id": sg, "name": fmt.Sprint("sg", i), "tenant_id": "t", "security_group_rules": []any{
			rule("egress", "", nil), rule("ingress", "tcp", 22), rule("ingress", "icmp", nil)}})
		sgs = append(sgs, sg)
	}
	var n atomic.Uint32
	b.SetParallelism(4) // 4 × GOMAXPROCS (2 here): 8 clients
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		hc := &http.Client{}
		for pb.Next() {
			i := n.Add(1)
			ip := fmt.Sprintf("10.%d.%d.%d", 1+i>>16&0xff, i>>8&0xff, i&0xff)
			mac := fmt.Sprintf("fa:16:3e:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
			j, _ := json.Marshal(map[string]any{"id": topology.NewID().String(), "network_id": net, "tenant_id": "t", "mac_address": mac,
				"fixed_ips": []any{map[string]any{"subnet_id": sub, "ip_address": ip}}, "security_groups": sgs,
				"device_owner": "compute:nova", "device_id": topology.NewID().String(), "binding:host_id": "h1"})
			resp, err := hc.Post(base+"/ports", "application/vnd.org.midonet.neutron.Port-v1+json", bytes.NewReader(j))
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 201 {
				b.Errorf("POST port: %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
