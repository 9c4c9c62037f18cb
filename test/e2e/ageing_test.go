package e2e

import (
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sandbox"
)

// The ageing tests run with the short times TestMain gives the sandbox's
// agents (ageingArgs): MACs go 2 s after their last flow, flows last at
// most 10 s. Router ARP entries keep MidoNet's times (stale after 60 s):
// refreshing the gateway's every few seconds would put its replies among
// the packets other tests count; the agent's tests cover their ageing
// (TestRouterARPAgeing), this package a gratuitous ARP's.

// ageingArgs are the agent flags that shorten the learned tables' ageing.
var ageingArgs = []string{"--mac-expire=2s", "--flow-timeout=10s"}

// staticVM plugs a test VM with an address of its own (no DHCP) and a
// default route. It has no IPv6, whose neighbour discovery and multicast
// reports would announce it on every link up: it sends only what a test
// makes it send.
func staticVM(t *testing.T, host int, bridge, mac, cidr, gw string) *testVM {
	t.Helper()
	v := newTestVM(t, host, bridge, mac)
	exec.Command("ip", "netns", "exec", v.ns, "sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1").Run()
	for _, args := range [][]string{{"addr", "add", cidr, "dev", "eth0"}, {"link", "set", "eth0", "up"}} {
		if out, err := exec.Command("ip", append([]string{"-n", v.ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	if gw != "" {
		exec.Command("ip", "-n", v.ns, "route", "add", "default", "via", gw).Run()
	}
	return v
}

// unplug removes a test VM (its namespace, so its interface and its tap),
// keeping its port: the VM went away.
func unplug(t *testing.T, v *testVM) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "del", v.ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del: %v %s", err, out)
	}
}

// sendGARP sends a gratuitous ARP for addr from the VM's eth0.
func sendGARP(t *testing.T, v *testVM, mac, addr string) {
	t.Helper()
	m, _ := net.ParseMAC(mac)
	inNS(t, v.ns, func() {
		fd := rawSocket(t, "eth0")
		defer unix.Close(fd)
		if _, err := unix.Write(fd, packet.AppendGratuitousARP(nil, [6]byte(m), netip.MustParseAddr(addr).As4())); err != nil {
			t.Fatal(err)
		}
	})
}

// macTableHas reports whether a bridge's MAC table maps mac to port.
func macTableHas(bridge, mac, port string) bool {
	var entries []struct {
		MAC  string `json:"macAddr"`
		Port string `json:"portId"`
	}
	if readJSON(sb.APIURL()+"/bridges/"+bridge+"/mac_table", &entries) != nil {
		return false
	}
	for _, e := range entries {
		if strings.EqualFold(e.MAC, mac) && (port == "" || e.Port == port) {
			return true
		}
	}
	return false
}

// TestMACMovesHost: a VM's MAC moves to a port on another host. Silent at
// its new place, it is reached again once the old mapping has aged (its
// port's flows went with its interface, then --mac-expire); announcing
// itself with a gratuitous ARP, at once.
func TestMACMovesHost(t *testing.T) {
	need(t)
	bridge := location(t, api(t, "POST", "/bridges", map[string]any{"name": "ageing-mac", "tenantId": "e2e"}))
	t.Cleanup(func() { deleteQuietly(sb.APIURL() + "/bridges/" + bridge) })
	peer := staticVM(t, 2, bridge, "02:00:0a:4e:00:02", "10.78.0.2/24", "")
	for _, tc := range []struct {
		name, mac, addr string
		garp            bool
		within          time.Duration
	}{
		{"silent at its new place", "02:00:0a:4e:00:05", "10.78.0.5", false, 10 * time.Second},
		{"announced by a gratuitous ARP", "02:00:0a:4e:00:06", "10.78.0.6", true, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := staticVM(t, 0, bridge, tc.mac, tc.addr+"/24", "")
			if n := pingCount(peer.ns, tc.addr, 3); n < 2 {
				t.Fatalf("%d of 3 pings before the move", n)
			}
			eventually(t, 5*time.Second, "the MAC learned on its first port", func() bool { return macTableHas(bridge, tc.mac, old.port) })
			unplug(t, old)
			moved := staticVM(t, 1, bridge, tc.mac, tc.addr+"/24", "")
			start := time.Now()
			if tc.garp {
				sendGARP(t, moved, tc.mac, tc.addr)
			}
			took := eventually(t, tc.within, "the peer reaching the VM at its new place", func() bool {
				return pingCount(peer.ns, tc.addr, 1) == 1
			})
			t.Logf("reached again %s after the move (%s)", time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
			// The agent that learned it writes the mapping to the store
			// after forwarding the reply: the API shows it a little later.
			eventually(t, 5*time.Second, "the MAC table mapping the MAC to its new port", func() bool {
				return macTableHas(bridge, tc.mac, moved.port)
			})
		})
	}
}

// TestMACGoesSilent: a VM that stops sending, its interface still up, loses
// its MAC mapping once its last flow has timed out (--flow-timeout) and
// --mac-expire after.
func TestMACGoesSilent(t *testing.T) {
	need(t)
	bridge := location(t, api(t, "POST", "/bridges", map[string]any{"name": "ageing-silent", "tenantId": "e2e"}))
	t.Cleanup(func() { deleteQuietly(sb.APIURL() + "/bridges/" + bridge) })
	const mac = "02:00:0a:4e:01:05"
	vm := staticVM(t, 0, bridge, mac, "10.78.1.5/24", "")
	peer := staticVM(t, 1, bridge, "02:00:0a:4e:01:02", "10.78.1.2/24", "")
	if n := pingCount(vm.ns, "10.78.1.2", 2); n < 1 {
		t.Fatalf("%d of 2 pings", n)
	}
	eventually(t, 5*time.Second, "the VM's MAC learned", func() bool { return macTableHas(bridge, mac, vm.port) })
	// Silence: nothing more to or from the VM (the neighbour entries are
	// permanent, so that neither kernel probes the other).
	exec.Command("ip", "-n", vm.ns, "neigh", "replace", "10.78.1.2", "lladdr", peer.mac, "dev", "eth0", "nud", "permanent").Run()
	exec.Command("ip", "-n", peer.ns, "neigh", "replace", "10.78.1.5", "lladdr", mac, "dev", "eth0", "nud", "permanent").Run()
	start := time.Now()
	eventually(t, 25*time.Second, "the silent VM's MAC leaving the table", func() bool { return !macTableHas(bridge, mac, "") })
	t.Logf("the silent MAC went after %s (flows at most 10 s, then 2 s)", time.Since(start).Round(time.Millisecond))
	// The VM is still there: its next packet learns it again.
	if n := pingCount(vm.ns, "10.78.1.2", 2); n < 1 {
		t.Errorf("%d of 2 pings after the MAC aged", n)
	}
	eventually(t, 5*time.Second, "the VM's MAC learned again", func() bool { return macTableHas(bridge, mac, vm.port) })
}

// TestRouterFollowsAddressMove: the address of a VM behind the tenant
// router moves to another VM (another MAC) on another host, which
// announces it with a gratuitous ARP: the router follows at once, long
// before its entry for the address would go stale.
func TestRouterFollowsAddressMove(t *testing.T) {
	need(t)
	router := sb.ID("tenant-router")
	bridge := location(t, api(t, "POST", "/bridges", map[string]any{"name": "ageing-arp", "tenantId": "e2e"}))
	t.Cleanup(func() { deleteQuietly(sb.APIURL() + "/bridges/" + bridge) })
	rp := location(t, api(t, "POST", "/routers/"+router+"/ports", map[string]any{"type": "Router",
		"portAddress": "10.78.2.1", "networkAddress": "10.78.2.0", "networkLength": 24}))
	t.Cleanup(func() { deleteQuietly(sb.APIURL() + "/ports/" + rp) })
	bp := location(t, api(t, "POST", "/bridges/"+bridge+"/ports", map[string]any{"type": "Bridge"}))
	api(t, "POST", "/ports/"+bp+"/link", map[string]any{"peerId": rp})
	route := location(t, api(t, "POST", "/routers/"+router+"/routes", map[string]any{"type": "Normal",
		"srcNetworkAddr": "0.0.0.0", "dstNetworkAddr": "10.78.2.0", "dstNetworkLength": 24, "nextHopPort": rp}))
	t.Cleanup(func() { deleteQuietly(sb.APIURL() + "/routes/" + route) })
	from, addr := sandbox.VMNS("vm-a1"), "10.78.2.5"
	old := staticVM(t, 0, bridge, "02:00:0a:4e:02:05", addr+"/24", "10.78.2.1")
	if n := pingCount(from, addr, 3); n < 2 {
		t.Fatalf("%d of 3 pings before the move", n)
	}
	unplug(t, old)
	moved := staticVM(t, 1, bridge, "02:00:0a:4e:02:06", addr+"/24", "10.78.2.1")
	start := time.Now()
	sendGARP(t, moved, "02:00:0a:4e:02:06", addr)
	eventually(t, 3*time.Second, "vm-a1 reaching the address at its new VM", func() bool { return pingCount(from, addr, 1) == 1 })
	t.Logf("reached again %s after the move", time.Since(start).Round(time.Millisecond))
}

func deleteQuietly(url string) {
	req, _ := http.NewRequest("DELETE", url, nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}
