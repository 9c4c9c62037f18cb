package sim

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/topology"
)

func TestLoopGuard(t *testing.T) {
	// Two routers whose default routes point at each other: a packet
	// bounces until the device limit, not until its TTL runs out.
	tp := newTopo(t)
	r1, r2 := tp.router("r1"), tp.router("r2")
	up := tp.routerPort(r1, "up", "192.0.2.1/24", upMAC, true)
	a := tp.routerPort(r1, "r1-r2", "169.254.0.1/30", "ac:ca:ba:00:01:01", false)
	b := tp.routerPort(r2, "r2-r1", "169.254.0.2/30", "ac:ca:ba:00:01:02", false)
	tp.link(a, b)
	tp.route(r1, "r1-default", "0.0.0.0/0", a, "169.254.0.2", 0)
	tp.route(r2, "r2-default", "0.0.0.0/0", b, "169.254.0.1", 0)
	spec := udp(gwMAC, upMAC, "192.0.2.9", "8.8.8.8", 1, 2)
	spec.TTL = 255
	r := run(t, tp.snapshot(), nil, up, spec)
	if r.Kind != TemporaryDrop || r.Reason != ReasonLoop {
		t.Fatalf("%v %v, want a temporary drop for the loop", r.Kind, r.Reason)
	}
}

func TestVLANAwareBridge(t *testing.T) {
	// vab has two trunks and VLAN ports 10 and 20, each linked to a plain
	// bridge (vub10, vub20) with one VM.
	tp := newTopo(t)
	vab := tp.bridge("vab")
	trunk1, trunk2 := tp.vmPort(vab, "trunk1"), tp.vmPort(vab, "trunk2")
	ids := map[string]ID{"trunk1": trunk1, "trunk2": trunk2}
	for _, v := range []uint16{10, 20} {
		n := itoa(int(v))
		vub := tp.bridge("vub" + n)
		vp := tp.bridgePort(vab, "vab-"+n)
		tp.port(vp).VLANID = v
		up := tp.bridgePort(vub, "vub"+n+"-vab")
		tp.link(vp, up)
		ids["vm"+n] = tp.vmPort(vub, "vm"+n)
		ids["vab-"+n] = vp
	}
	snap := tp.snapshot()
	tagged := udp("02:00:00:00:00:aa", "02:00:00:00:00:bb", "10.0.0.1", "10.0.0.2", 1, 2)
	tagged.VLAN = 10

	r := run(t, snap, nil, trunk1, tagged)
	if r.Kind != Forward || !sameIDs(egressPorts(r), []ID{trunk2, ids["vm10"]}) {
		t.Fatalf("from trunk on VLAN 10: %v %v %v", r.Kind, r.Reason, egressPorts(r))
	}
	for _, e := range r.Egress {
		switch e.Port {
		case trunk2:
			if e.Set&FieldVLAN != 0 {
				t.Errorf("trunk copy lost its tag: %v", e.Set)
			}
		case ids["vm10"]:
			if e.Set&FieldVLAN == 0 || e.Values.VLAN != 0 {
				t.Errorf("VLAN 10 copy not popped: set %v vlan %x", e.Set, e.Values.VLAN)
			}
		}
	}

	r = run(t, snap, nil, ids["vm20"], udp("02:00:00:00:00:20", "02:00:00:00:00:bb", "10.0.0.1", "10.0.0.2", 1, 2))
	if r.Kind != Forward || !sameIDs(egressPorts(r), []ID{trunk1, trunk2}) {
		t.Fatalf("from VLAN 20's bridge: %v %v %v", r.Kind, r.Reason, egressPorts(r))
	}
	if e := r.Egress[0]; e.Set&FieldVLAN == 0 || e.Values.VLAN != packet.VLANPresent|20 {
		t.Errorf("not tagged with VLAN 20: set %v vlan %x", e.Set, e.Values.VLAN)
	}

	// Unicast to a MAC learned on VLAN 20 from a frame on VLAN 10 floods
	// on VLAN 10's table instead: MAC tables are per VLAN.
	tp.in.MACTable = append(tp.in.MACTable, MACEntry{Bridge: vab, VLAN: 20, MAC: mac("02:00:00:00:00:bb"), Port: ids["vab-20"]})
	r = run(t, tp.snapshot(), nil, trunk1, tagged)
	if !sameIDs(egressPorts(r), []ID{trunk2, ids["vm10"]}) {
		t.Errorf("VLAN 10 frame used VLAN 20's MAC entry: %v", egressPorts(r))
	}
}

func TestAdminDown(t *testing.T) {
	t.Run("router", func(t *testing.T) {
		tp, ids := routerTopo(t)
		tp.in.Routers[0].AdminStateUp = false
		r := run(t, tp.snapshot(), nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2))
		wantDrop(t, r, ReasonDeviceAdminDown)
		if p := decodeGenerated(t, r, ids["rtr-br"]); p.ICMPCode != packet.ICMPCodeAdminProhibited {
			t.Errorf("ICMP code %d, want admin prohibited", p.ICMPCode)
		}
	})
	t.Run("router port", func(t *testing.T) {
		tp, ids := routerTopo(t)
		tp.port(ids["rtr-br"]).AdminStateUp = false
		r := run(t, tp.snapshot(), nil, ids["vm1"], udp(vmMAC, rtrMAC, vmIP, "8.8.8.8", 1, 2))
		wantDrop(t, r, ReasonPortAdminDown)
		decodeGenerated(t, r, ids["rtr-br"])
	})
	t.Run("router egress port", func(t *testing.T) {
		// An interior port that is down keeps its routes (an exterior one
		// would lose them): route through it.
		tp2, ids2 := routerTopo(t)
		down := tp2.routerPort(ids2["rtr"], "down", "198.51.100.1/24", up2MAC, false)
		peer := tp2.routerPort(tp2.router("other"), "other-down", "198.51.100.2/24", gw2MAC, false)
		tp2.link(down, peer)
		tp2.port(down).AdminStateUp = false
		tp2.route(ids2["rtr"], "to-down", "203.0.113.0/24", down, "198.51.100.2", 0)
		r := run(t, tp2.snapshot(), nil, ids2["vm1"], udp(vmMAC, rtrMAC, vmIP, "203.0.113.9", 1, 2))
		wantDrop(t, r, ReasonPortAdminDown)
		if p := decodeGenerated(t, r, ids2["rtr-br"]); p.ICMPCode != packet.ICMPCodeAdminProhibited {
			t.Errorf("ICMP code %d, want admin prohibited", p.ICMPCode)
		}
	})
	t.Run("bridge", func(t *testing.T) {
		tp, ids := bridgeTopo(t)
		tp.in.Bridges[0].AdminStateUp = false
		r := run(t, tp.snapshot(), nil, ids["vm1"], udp(vmMAC, "02:00:00:00:00:02", vmIP, "10.0.0.12", 1, 2))
		wantDrop(t, r, ReasonDeviceAdminDown)
	})
}

func TestNewSnapshotErrors(t *testing.T) {
	tests := []struct {
		name  string
		input func() SnapshotInput
	}{
		{"bridge port on a missing bridge", func() SnapshotInput {
			return SnapshotInput{Ports: []topology.Port{{ID: id("p"), Type: topology.PortTypeBridge, DeviceID: id("nope")}}}
		}},
		{"router port on a missing router", func() SnapshotInput {
			return SnapshotInput{Ports: []topology.Port{{ID: id("p"), Type: topology.PortTypeRouter, DeviceID: id("nope")}}}
		}},
		{"NAT rule with a bad target", func() SnapshotInput {
			return SnapshotInput{
				Chains: []topology.Chain{{ID: id("c"), RuleIDs: []ID{id("r")}}},
				Rules: []topology.Rule{{ID: id("r"), Type: topology.RuleSNAT, ChainID: id("c"),
					NatTargets: []topology.NatTarget{{AddressFrom: topology.Str("x"), AddressTo: topology.Str("y")}}}},
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSnapshot(tc.input())
			if !errors.Is(err, ErrTopology) {
				t.Fatalf("err = %v, want ErrTopology", err)
			}
			if !strings.Contains(err.Error(), id("p").String()) && !strings.Contains(err.Error(), id("r").String()) {
				t.Errorf("error does not name the object: %v", err)
			}
		})
	}
}

func TestSnapshotPortInfo(t *testing.T) {
	tp, ids := routerTopo(t)
	tp.in.PortBinding = []PortBinding{{Port: ids["up"], Host: testHost, TunnelKey: 7}}
	snap := tp.snapshot()
	pi, ok := snap.Port(ids["up"])
	if !ok || !pi.Exterior || !pi.Active || pi.Host != testHost || pi.TunnelKey != 7 || pi.Device != ids["rtr"] {
		t.Fatalf("PortInfo %+v", pi)
	}
	if pi, _ := snap.Port(ids["rtr-br"]); pi.Exterior {
		t.Error("interior port reported exterior")
	}
}

// TestPurity holds sim to its contract: no I/O, clock, logging, locks or
// store among its imports, and no reading of the clock.
func TestPurity(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{join .Imports \" \"}}", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	bad := map[string]string{
		"net":                       "sim does no I/O; addresses are net/netip values",
		"os":                        "sim does no I/O",
		"log/slog":                  "sim returns results; the agent logs",
		"sync":                      "a simulator belongs to one worker; shared state lives in flowstate",
		"go.etcd.io/etcd/client/v3": "sim reads a snapshot, never the store",
		"github.com/midonet/midonet/internal/nsdb":  "sim reads a snapshot, never the store",
		"github.com/midonet/midonet/internal/agent": "dependencies point from agent to sim",
	}
	imports := strings.Fields(string(out))
	if len(imports) == 0 {
		t.Fatal("go list printed no imports")
	}
	for _, dep := range imports {
		if why, ok := bad[dep]; ok {
			t.Errorf("sim imports %s: %s", dep, why)
		}
	}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "time.Now(") {
			t.Errorf("%s reads the clock; time is an input", f)
		}
	}
}
