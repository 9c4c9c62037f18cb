package bgp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/topology"
)

func TestPlan(t *testing.T) {
	host, other := topology.NewID(), topology.NewID()
	router := topology.Router{ID: topology.NewID(), AdminStateUp: true, ASNumber: 65000}
	noAS := topology.Router{ID: topology.NewID(), AdminStateUp: true}
	port := func(r topology.Router, h topology.ID, subnet string) topology.Port {
		return topology.Port{ID: topology.NewID(), Type: topology.PortTypeRouter, DeviceID: r.ID, AdminStateUp: true,
			HostID: &h, InterfaceName: topology.Str("eth1"), PortSubnet: []string{subnet}, PortMAC: topology.Str("ac:ca:ba:00:00:01")}
	}
	up1 := port(router, host, "10.1.0.2/24")
	up2 := port(router, host, "10.2.0.2/24")
	elsewhere := port(router, other, "10.3.0.2/24")
	unbound := port(router, host, "10.4.0.2/24")
	unbound.HostID, unbound.InterfaceName = nil, nil
	down := port(router, host, "10.5.0.2/24")
	down.AdminStateUp = false
	noASPort := port(noAS, host, "10.1.0.2/24")
	ka := 5
	peer := func(r topology.Router, addr string, as int) topology.BGPPeer {
		return topology.BGPPeer{ID: topology.NewID(), RouterID: r.ID, Address: topology.Str(addr), ASNumber: as, KeepAlive: &ka}
	}
	peers := []topology.BGPPeer{
		peer(router, "10.1.0.3", 65002), peer(router, "10.1.0.1", 65001), // up1, sorted by address
		peer(router, "10.3.0.1", 65003),  // elsewhere: another host's
		peer(router, "10.4.0.1", 65004),  // unbound port
		peer(router, "10.5.0.1", 65005),  // down port
		peer(router, "10.1.0.2", 65009),  // the port's own address: not a peer
		peer(router, "192.0.2.1", 65006), // on no port's subnet
		peer(noAS, "10.1.0.1", 65001),
	}
	peers[0].Password = topology.Str("s3cret")
	nets := []topology.BGPNetwork{
		{ID: topology.NewID(), RouterID: router.ID, SubnetAddress: topology.Str("203.0.113.7"), SubnetLength: 24},
		{ID: topology.NewID(), RouterID: router.ID, SubnetAddress: topology.Str("198.18.0.0"), SubnetLength: 15},
		{ID: topology.NewID(), RouterID: router.ID, SubnetAddress: topology.Str("203.0.113.0"), SubnetLength: 24},
		{ID: topology.NewID(), RouterID: noAS.ID, SubnetAddress: topology.Str("192.0.2.0"), SubnetLength: 24},
	}
	specs := Plan(host, Topology{
		Routers:  []topology.Router{router, noAS},
		Ports:    []topology.Port{up1, up2, elsewhere, unbound, down, noASPort},
		Peers:    peers,
		Networks: nets,
	})
	byPort := map[topology.ID]PortSpec{}
	for _, s := range specs {
		byPort[s.Port] = s
	}
	if len(specs) != 3 {
		t.Fatalf("%d uplinks planned, want 3 (up1, the down port, the port of the router without AS): %+v", len(specs), specs)
	}
	s, ok := byPort[up1.ID]
	if !ok {
		t.Fatal("up1 not planned")
	}
	if s.Off != "" || s.Router != router.ID || s.Subnet != netip.MustParsePrefix("10.1.0.2/24") ||
		s.MAC != [6]byte{0xac, 0xca, 0xba, 0, 0, 1} || s.Speaker.RouterID != netip.MustParseAddr("10.1.0.2") || s.Speaker.LocalAS != 65000 {
		t.Errorf("up1 spec %+v", s)
	}
	if len(s.Speaker.Peers) != 2 || s.Speaker.Peers[0].Address.String() != "10.1.0.1" || s.Speaker.Peers[1].Address.String() != "10.1.0.3" {
		t.Fatalf("up1 peers %+v, want 10.1.0.1 and 10.1.0.3", s.Speaker.Peers)
	}
	p := s.Speaker.Peers[1]
	if p.ID != peers[0].ID || p.AS != 65002 || p.Password != "s3cret" || p.KeepAlive != 5*time.Second || p.HoldTime != 0 {
		t.Errorf("peer 10.1.0.3: %+v", p)
	}
	if got := s.Speaker.Networks; len(got) != 2 || got[0].String() != "198.18.0.0/15" || got[1].String() != "203.0.113.0/24" {
		t.Errorf("networks %v, want 198.18.0.0/15 and 203.0.113.0/24 once", got)
	}
	if _, ok := byPort[up2.ID]; ok {
		t.Error("up2 planned without a peer on its subnet")
	}
	if s := byPort[down.ID]; s.Off == "" {
		t.Errorf("the down port's spec does not say BGP is off: %+v", s)
	}
	if s := byPort[noASPort.ID]; s.Off == "" || len(s.Speaker.Networks) != 1 {
		t.Errorf("the port of a router without AS: %+v, want off with its network", s)
	}
}
