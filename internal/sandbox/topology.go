package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path"
	"time"
)

// post creates an object through the REST API and returns its id.
func (sb *Sandbox) post(ctx context.Context, p string, body any) (string, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", sb.api+p, bytes.NewReader(b))
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

func (sb *Sandbox) get(ctx context.Context, p string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", sb.api+p, nil)
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

// buildTopology creates the demo through the REST API, as an operator (or
// Neutron) would:
//
//	vm-a1 (host1), vm-a2 (host2) -- net-a 10.0.1.0/24 --+
//	                                                    tenant-router --(169.254.0.0/30)-- provider-router -- uplink (host3) -- ext 192.0.2.1
//	vm-b1 (host2), vm-b2 (host3) -- net-b 10.0.2.0/24 --+
//
// The tenant router SNATs 10.0.0.0/16 to 203.0.113.1 and maps the floating
// IP 203.0.113.10 to vm-a1; a security group on vm-b2 lets in ICMP and
// return traffic only.
func (sb *Sandbox) buildTopology(ctx context.Context) error {
	var err error
	must := func(id string, e error) string {
		if err == nil {
			err = e
		}
		return id
	}
	ids := sb.ids
	// Hosts: the agents registered them; put them in one tunnel zone.
	var hostList []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(hostList) < len(hosts) {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d agents registered; see their logs in %s", len(hostList), len(hosts), sb.cfg.DataDir)
		}
		hostList = hostList[:0]
		if err := sb.get(ctx, "/hosts", &hostList); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, h := range hostList {
		ids["host:"+h.Name] = h.ID
	}
	ids["tz"] = must(sb.post(ctx, "/tunnel_zones", map[string]any{"name": "underlay", "type": "vxlan"}))
	for _, h := range hosts {
		must(sb.post(ctx, "/tunnel_zones/"+ids["tz"]+"/hosts", map[string]any{"hostId": ids["host:"+h.name], "ipAddress": h.addr}))
	}

	ids["tenant-router"] = must(sb.post(ctx, "/routers", map[string]any{"name": "tenant-router", "tenantId": "demo"}))
	ids["provider-router"] = must(sb.post(ctx, "/routers", map[string]any{"name": "provider-router", "tenantId": "admin"}))
	for _, n := range []struct{ name, net, gw string }{{"net-a", "10.0.1.0", "10.0.1.1"}, {"net-b", "10.0.2.0", "10.0.2.1"}} {
		br := must(sb.post(ctx, "/bridges", map[string]any{"name": n.name, "tenantId": "demo"}))
		ids[n.name] = br
		bp := must(sb.post(ctx, "/bridges/"+br+"/ports", map[string]any{"type": "Bridge"}))
		rp := must(sb.post(ctx, "/routers/"+ids["tenant-router"]+"/ports", map[string]any{
			"type": "Router", "portAddress": n.gw, "networkAddress": n.net, "networkLength": 24}))
		ids["rp:"+n.name] = rp
		must(sb.post(ctx, "/ports/"+bp+"/link", map[string]any{"peerId": rp}))
		must(sb.post(ctx, "/routers/"+ids["tenant-router"]+"/routes", map[string]any{"type": "Normal",
			"srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": n.net, "dstNetworkLength": 24, "nextHopPort": rp}))
	}
	// Tenant router <-> provider router.
	tl := must(sb.post(ctx, "/routers/"+ids["tenant-router"]+"/ports", map[string]any{
		"type": "Router", "portAddress": "169.254.0.2", "networkAddress": "169.254.0.0", "networkLength": 30}))
	pl := must(sb.post(ctx, "/routers/"+ids["provider-router"]+"/ports", map[string]any{
		"type": "Router", "portAddress": "169.254.0.1", "networkAddress": "169.254.0.0", "networkLength": 30}))
	ids["tenant-uplink"] = tl
	must(sb.post(ctx, "/ports/"+tl+"/link", map[string]any{"peerId": pl}))
	must(sb.post(ctx, "/routers/"+ids["tenant-router"]+"/routes", map[string]any{"type": "Normal",
		"srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": "0.0.0.0", "nextHopPort": tl, "nextHopGateway": "169.254.0.1"}))
	must(sb.post(ctx, "/routers/"+ids["provider-router"]+"/routes", map[string]any{"type": "Normal",
		"srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": publicNet + "0", "dstNetworkLength": 24, "nextHopPort": pl,
		"nextHopGateway": "169.254.0.2"}))
	// The provider's uplink to the external network, on host3.
	up := must(sb.post(ctx, "/routers/"+ids["provider-router"]+"/ports", map[string]any{
		"type": "Router", "portAddress": uplinkAddr, "networkAddress": "192.0.2.0", "networkLength": 24}))
	ids["uplink"] = up
	must(sb.post(ctx, "/routers/"+ids["provider-router"]+"/routes", map[string]any{"type": "Normal",
		"srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": "192.0.2.0", "dstNetworkLength": 24, "nextHopPort": up}))
	must(sb.post(ctx, "/hosts/"+ids["host:host3"]+"/ports", map[string]any{"portId": up, "interfaceName": "uplink"}))
	// No static default route: the provider router learns it by BGP from
	// the ISP, and announces the public range to it.
	if err == nil {
		err = sb.put(ctx, "/routers/"+ids["provider-router"], map[string]any{"name": "provider-router", "tenantId": "admin",
			"asNumber": providerAS})
	}
	ids["isp-peer"] = must(sb.post(ctx, "/routers/"+ids["provider-router"]+"/bgp_peers", map[string]any{
		"address": extAddr, "asNumber": ispAS, "keepAlive": 5, "holdTime": 15, "connectRetry": 5}))
	must(sb.post(ctx, "/routers/"+ids["provider-router"]+"/bgp_networks", map[string]any{
		"subnetAddress": publicNet + "0", "subnetLength": 24}))

	// NAT on the tenant router, as MidoNet's Neutron plugin lays it out:
	// pre-routing (inbound filter) DNATs the floating IP and reverses the
	// gateway's SNAT; post-routing (outbound filter) SNATs the floating IP's
	// VM, then everything else leaving by the uplink. The floating IP's two
	// rules are static (one address, no ports): stateless, each translating
	// its own direction, so they keep no NAT keys and need no reverse rule,
	// and flows through them match addresses only, not each connection.
	pre := must(sb.post(ctx, "/chains", map[string]any{"name": "tenant-router-pre", "tenantId": "demo"}))
	post := must(sb.post(ctx, "/chains", map[string]any{"name": "tenant-router-post", "tenantId": "demo"}))
	nat := func(addr string, from, to int) []any {
		return []any{map[string]any{"addressFrom": addr, "addressTo": addr, "portFrom": from, "portTo": to}}
	}
	rules := []struct {
		chain string
		body  map[string]any
	}{
		{pre, map[string]any{"type": "dnat", "flowAction": "accept", "nwDstAddress": floatingAddr, "nwDstLength": 32,
			"natTargets": nat(vms[0].addr, 0, 0)}},
		{pre, map[string]any{"type": "rev_snat", "flowAction": "accept", "nwDstAddress": snatAddr, "nwDstLength": 32}},
		{post, map[string]any{"type": "snat", "flowAction": "accept", "outPorts": []string{tl},
			"nwSrcAddress": vms[0].addr, "nwSrcLength": 32, "natTargets": nat(floatingAddr, 0, 0)}},
		{post, map[string]any{"type": "snat", "flowAction": "accept", "outPorts": []string{tl},
			"nwSrcAddress": "10.0.0.0", "nwSrcLength": 16, "natTargets": nat(snatAddr, 1024, 65535)}},
	}
	for i, r := range rules {
		pos := 1
		for j := 0; j < i; j++ {
			if rules[j].chain == r.chain {
				pos++
			}
		}
		r.body["position"] = pos
		must(sb.post(ctx, "/chains/"+r.chain+"/rules", r.body))
	}
	if err != nil {
		return err
	}
	if err := sb.put(ctx, "/routers/"+ids["tenant-router"], map[string]any{"name": "tenant-router", "tenantId": "demo",
		"inboundFilterId": pre, "outboundFilterId": post}); err != nil {
		return err
	}

	// A security group on vm-b2, laid out as MidoNet's Neutron plugin does:
	// towards the VM, return traffic, ICMP and ARP in, the rest dropped (so
	// TCP to vm-b2 is blocked while ping works); from the VM, everything
	// out, each connection tracked (asking about the direction is what
	// makes conntrack record the return key).
	sgOut := must(sb.post(ctx, "/chains", map[string]any{"name": "sg-vm-b2-egress", "tenantId": "demo"}))
	must(sb.post(ctx, "/chains/"+sgOut+"/rules", map[string]any{"type": "accept", "matchReturnFlow": true, "position": 1}))
	must(sb.post(ctx, "/chains/"+sgOut+"/rules", map[string]any{"type": "accept", "position": 2}))
	sg := must(sb.post(ctx, "/chains", map[string]any{"name": "sg-vm-b2-ingress", "tenantId": "demo"}))
	ids["sg"] = sg
	must(sb.post(ctx, "/chains/"+sg+"/rules", map[string]any{"type": "accept", "matchReturnFlow": true, "position": 1}))
	must(sb.post(ctx, "/chains/"+sg+"/rules", map[string]any{"type": "accept", "nwProto": 1, "position": 2}))
	must(sb.post(ctx, "/chains/"+sg+"/rules", map[string]any{"type": "accept", "dlType": 0x0806, "position": 3}))
	must(sb.post(ctx, "/chains/"+sg+"/rules", map[string]any{"type": "drop", "position": 4}))

	// DHCP on each tenant network: a host entry per VM (its MAC, its
	// address), the gateway, the MTU, and the route to the metadata
	// address by option 121, as Neutron's translation lays it out.
	for _, n := range []struct{ name, net, gw string }{{"net-a", "10.0.1.0", "10.0.1.1"}, {"net-b", "10.0.2.0", "10.0.2.1"}} {
		if err != nil {
			break
		}
		sub := "/bridges/" + ids[n.name] + "/dhcp"
		must(sb.post(ctx, sub, map[string]any{"subnetPrefix": n.net, "subnetLength": 24, "defaultGateway": n.gw,
			"interfaceMTU": demoMTU, "opt121Routes": []any{map[string]any{"destinationPrefix": metadataAddr,
				"destinationLength": 32, "gatewayAddr": n.gw}}}))
		for _, v := range vms {
			if v.network == n.name {
				must(sb.post(ctx, sub+"/"+n.net+"_24/hosts", map[string]any{"macAddr": macOf(v), "ipAddr": v.addr}))
			}
		}
	}

	// The VMs' ports, bound to their taps.
	for _, v := range vms {
		body := map[string]any{"type": "Bridge"}
		p := must(sb.post(ctx, "/bridges/"+ids[v.network]+"/ports", body))
		ids["port:"+v.name] = p
		if v.name == "vm-b2" && err == nil {
			// Outbound from the bridge port = towards the VM.
			err = sb.put(ctx, "/ports/"+p, map[string]any{"type": "Bridge", "outboundFilterId": sg, "inboundFilterId": sgOut})
		}
		must(sb.post(ctx, "/hosts/"+ids["host:"+hosts[v.host].name]+"/ports", map[string]any{
			"portId": p, "interfaceName": tapOf(v)}))
	}
	return err
}

func (sb *Sandbox) put(ctx context.Context, p string, body any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "PUT", sb.api+p, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("PUT %s: %s: %s", p, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}

// learnedDefault reports whether the provider router has a default route
// learned by BGP via the ISP, and describes what it has.
func (sb *Sandbox) learnedDefault(ctx context.Context) (bool, string) {
	var routes []struct {
		DstNetworkAddr   string  `json:"dstNetworkAddr"`
		DstNetworkLength int     `json:"dstNetworkLength"`
		NextHopGateway   *string `json:"nextHopGateway"`
		Learned          bool    `json:"learned"`
	}
	if err := sb.get(ctx, "/routers/"+sb.ids["provider-router"]+"/routes", &routes); err != nil {
		return false, err.Error()
	}
	n := 0
	for _, r := range routes {
		if !r.Learned {
			continue
		}
		n++
		if r.DstNetworkAddr == "0.0.0.0" && r.DstNetworkLength == 0 && r.NextHopGateway != nil && *r.NextHopGateway == extAddr {
			return true, fmt.Sprintf("0.0.0.0/0 via %s learned by BGP (%d learned routes)", extAddr, n)
		}
	}
	var port struct {
		BGPStatus *string `json:"bgpStatus"`
	}
	sb.get(ctx, "/ports/"+sb.ids["uplink"], &port)
	status := "no BGP status from the uplink's agent"
	if port.BGPStatus != nil {
		status = *port.BGPStatus
	}
	return false, fmt.Sprintf("no learned default route (%d learned routes); uplink: %s", n, status)
}

// waitLearned waits for the provider router to learn its default route.
func (sb *Sandbox) waitLearned(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, detail := sb.learnedDefault(ctx)
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after 60s: %s; see %s/host3.log and the BIRD log in %s/bird", detail, sb.cfg.DataDir, sb.cfg.DataDir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitActive waits until every bound port is reported active by its agent.
func (sb *Sandbox) waitActive(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ports []struct {
			ID            string  `json:"id"`
			InterfaceName *string `json:"interfaceName"`
			Active        bool    `json:"active"`
		}
		if err := sb.get(ctx, "/ports", &ports); err != nil {
			return err
		}
		waiting := 0
		for _, p := range ports {
			if p.InterfaceName != nil && !p.Active {
				waiting++
			}
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d bound ports not active after 30s; see the agent logs in %s", waiting, sb.cfg.DataDir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
