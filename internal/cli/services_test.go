package cli

import (
	"strings"
	"testing"
)

// TestServiceVerbs builds a load balancer, its pool, members, VIP and
// health monitor, a mirror with a condition and a QoS policy with its
// rules, all from the command line.
func TestServiceVerbs(t *testing.T) {
	t.Parallel()
	lb := object(t, "load-balancer", "create")
	hm := object(t, "health-monitor", "create", "--type", "HTTP", "--delay", "2", "--timeout", "1", "--max-retries", "3",
		"--url-path", "/health", "--expected-codes", "200-299")
	checkFields(t, "health monitor", hm, map[string]string{"type": "HTTP", "delay": "2", "maxRetries": "3",
		"urlPath": "/health", "expectedCodes": "200-299", "adminStateUp": "true"})
	pool := object(t, "pool", "create", "--load-balancer", lb.Str("id"))
	checkFields(t, "pool", pool, map[string]string{"loadBalancerId": lb.Str("id"), "lbMethod": "ROUND_ROBIN", "protocol": "TCP"})
	m := object(t, "pool-member", "create", "--pool", pool.Str("id"), "--address", "10.0.2.10", "--protocol-port", "80", "--weight", "3")
	checkFields(t, "member", m, map[string]string{"address": "10.0.2.10", "protocolPort": "80", "weight": "3", "status": "ACTIVE"})
	m = object(t, "pool-member", "update", m.Str("id"), "--admin-state-up=false")
	checkFields(t, "member after update", m, map[string]string{"adminStateUp": "false", "weight": "3"})
	if l := objects(t, "pool-member", "list", "--pool", pool.Str("id")); len(l) != 1 {
		t.Errorf("members of the pool: %v", l)
	}
	vip := object(t, "vip", "create", "--pool", pool.Str("id"), "--address", "203.0.113.80", "--protocol-port", "80", "--persistence", "SOURCE_IP")
	checkFields(t, "vip", vip, map[string]string{"loadBalancerId": lb.Str("id"), "sessionPersistence": "SOURCE_IP"})
	vip = object(t, "vip", "update", vip.Str("id"), "--persistence", "")
	if vip["sessionPersistence"] != nil {
		t.Errorf("vip persistence after --persistence \"\": %v", vip["sessionPersistence"])
	}

	br := object(t, "bridge", "create", "--name", unique("mirrored"))
	p := object(t, "port", "create", "--bridge", br.Str("id"))
	mir := object(t, "mirror", "create", "--to-port", p.Str("id"), "--proto", "tcp", "--tp-dst", "80")
	conds, _ := mir["conditions"].([]any)
	if len(conds) != 1 || conds[0].(map[string]any)["nwProto"] != float64(6) {
		t.Errorf("mirror conditions %v; want one, TCP to port 80", mir["conditions"])
	}
	if out := must(t, "mirror", "list"); !strings.Contains(out, "proto=tcp tp-dst=80") {
		t.Errorf("mirror list does not show the condition:\n%s", out)
	}

	name := unique("gold")
	object(t, "qos-policy", "create", "--name", name)
	bw := object(t, "qos-bw-limit", "create", "--policy", name, "--max-kbps", "1000", "--max-burst-kb", "800")
	checkFields(t, "bandwidth limit", bw, map[string]string{"maxKbps": "1000", "maxBurstKb": "800"})
	bw = object(t, "qos-bw-limit", "update", bw.Str("id"), "--max-kbps", "2000")
	checkFields(t, "bandwidth limit after update", bw, map[string]string{"maxKbps": "2000"})
	d := object(t, "qos-dscp", "create", "--policy", name, "--mark", "46")
	checkFields(t, "dscp", d, map[string]string{"dscpMark": "46"})
	if l := objects(t, "qos-dscp", "list", "--policy", name); len(l) != 1 {
		t.Errorf("dscp rules of the policy: %v", l)
	}
}
