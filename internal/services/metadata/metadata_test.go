package metadata

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/topology"
)

// TestSignatureIsNovas: Nova checks hmac.new(secret, instance_id,
// hashlib.sha256).hexdigest(); the vector was computed with Python's hmac.
func TestSignatureIsNovas(t *testing.T) {
	got := Sign("nova-secret", "6b9a1c2e-0000-4000-8000-000000000001")
	if want := "24b55920b00cd9ce9a25329b2ef1d1ff36e7555d8e43e20133cac7df379191e9"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

// TestForwardsWithTheVMsIdentity runs the proxy's forwarding against a
// stand-in for Nova's metadata service that checks what Nova checks.
func TestForwardsWithTheVMsIdentity(t *testing.T) {
	var seen *http.Request
	nova := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r
		if r.Header.Get("X-Instance-ID-Signature") != Sign("s3cret", r.Header.Get("X-Instance-ID")) {
			http.Error(w, "Invalid proxy request signature.", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Connection", "close")
		io.WriteString(w, `{"uuid": "`+r.Header.Get("X-Instance-ID")+`"}`)
	}))
	defer nova.Close()
	p, err := New(Config{NovaURL: nova.URL + "/", SharedSecret: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	vm := httptest.NewServer(p.Handler(netip.MustParseAddr("10.0.1.11"), "inst-1", "project-a"))
	defer vm.Close()
	resp, err := http.Get(vm.URL + "/openstack/latest/meta_data.json?x=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"inst-1"`) {
		t.Fatalf("through the proxy: %d %s", resp.StatusCode, body)
	}
	for h, want := range map[string]string{"X-Instance-ID": "inst-1", "X-Tenant-ID": "project-a", "X-Forwarded-For": "10.0.1.11"} {
		if got := seen.Header.Get(h); got != want {
			t.Errorf("Nova saw %s %q, want %q", h, got, want)
		}
	}
	if seen.URL.Path != "/openstack/latest/meta_data.json" || seen.URL.RawQuery != "x=1" {
		t.Errorf("Nova saw %s?%s", seen.URL.Path, seen.URL.RawQuery)
	}
	if resp.Header.Get("Connection") != "" && resp.Header.Get("Connection") != "close" {
		t.Errorf("hop-by-hop header forwarded: %v", resp.Header)
	}

	// A proxy with another secret is refused by Nova: the check is real.
	bad, _ := New(Config{NovaURL: nova.URL, SharedSecret: "wrong"})
	vm2 := httptest.NewServer(bad.Handler(netip.MustParseAddr("10.0.1.11"), "inst-1", "project-a"))
	defer vm2.Close()
	resp, err = http.Get(vm2.URL + "/openstack/latest/meta_data.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("with a wrong secret Nova answered %d, want 403", resp.StatusCode)
	}
}

func TestConfigRefusals(t *testing.T) {
	for _, c := range []Config{{NovaURL: "nova:8775", SharedSecret: "x"}, {NovaURL: "http://nova:8775"}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

// TestFlowsRewriteBothWays checks the two flows of a VM: its TCP to the
// service leaves to the proxy from its own local address; the proxy's
// answers to that address go back to the VM's address and MAC.
func TestFlowsRewriteBothWays(t *testing.T) {
	p, _ := New(Config{NovaURL: "http://nova:8775", SharedSecret: "x"})
	p.dpPort, p.proxyMAC, p.dpMAC = 9, [6]byte{2, 0, 0, 0, 0, 1}, [6]byte{2, 0, 0, 0, 0, 2}
	v := &vm{port: topology.NewID(), dp: 3, ip: netip.MustParseAddr("10.0.1.11"), mac: [6]byte{0xfa, 0x16, 0x3e, 0, 0, 1},
		local: localAddr(0)}
	out, back := p.flows(v)
	if out.Key.InPort != 3 || out.Key.NwDst != ServiceAddr.As4() || out.Key.TpDst != 80 ||
		out.Actions[1].IPv4.Src != v.local.As4() || out.Actions[2].Port != 9 || out.Actions[0].Eth.Dst != p.proxyMAC {
		t.Errorf("to the proxy: %+v -> %v", out.Key, out.Actions)
	}
	if back.Key.InPort != 9 || back.Key.NwDst != v.local.As4() || back.Key.TpSrc != 80 ||
		back.Actions[1].IPv4.Dst != v.ip.As4() || back.Actions[0].Eth.Dst != v.mac || back.Actions[2].Port != datapath.PortNo(3) {
		t.Errorf("back to the VM: %+v -> %v", back.Key, back.Actions)
	}
	if localAddr(0) != netip.MustParseAddr("169.254.1.0") {
		t.Errorf("first local address %s", localAddr(0))
	}
	for i := uint32(0); i < 60000; i += 97 {
		if a := localAddr(i); a == ServiceAddr || !netip.MustParsePrefix("169.254.0.0/16").Contains(a) {
			t.Fatalf("localAddr(%d) = %s", i, a)
		}
	}
}
