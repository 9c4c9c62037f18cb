package sim_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/google/uuid"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// A bridge with two VM ports, one of whose MACs is learned: a frame to it
// is forwarded to that port alone, matching only what the bridge read.
func ExampleSimulator_Simulate() {
	br, vm1, vm2, host := uuid.MustParse("00000000-0000-0000-0000-000000000001"),
		uuid.MustParse("00000000-0000-0000-0000-000000000011"), uuid.MustParse("00000000-0000-0000-0000-000000000012"),
		uuid.MustParse("00000000-0000-0000-0000-0000000000aa")
	vmPort := func(id uuid.UUID, name string) topology.Port {
		return topology.Port{ID: id, Type: topology.PortTypeBridge, DeviceID: br, AdminStateUp: true,
			HostID: &host, InterfaceName: &name}
	}
	mac2 := [6]byte{2, 0, 0, 0, 0, 2}
	snap, err := sim.NewSnapshot(sim.SnapshotInput{
		Bridges:     []topology.Bridge{{ID: br, AdminStateUp: true}},
		Ports:       []topology.Port{vmPort(vm1, "tap1"), vmPort(vm2, "tap2")},
		MACTable:    []sim.MACEntry{{Bridge: br, MAC: mac2, Port: vm2}},
		PortBinding: []sim.PortBinding{{Port: vm1, Host: host, TunnelKey: 1}, {Port: vm2, Host: host, TunnelKey: 2}},
	})
	if err != nil {
		panic(err)
	}
	spec := sim.PacketSpec{EthSrc: [6]byte{2, 0, 0, 0, 0, 1}, EthDst: mac2,
		Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Proto: 17, SrcPort: 1000, DstPort: 53}
	frame, _ := spec.Frame()
	match, _ := sim.MatchFromFrame(frame)

	tables := flowstate.NewTables(1, flowstate.DefaultIdleTTL)
	s := sim.NewSimulator(1)
	res := s.Simulate(snap, tables.View(0), &sim.Packet{Port: vm1, Match: match, Frame: frame}, time.Unix(0, 0))
	fmt.Println(res.Kind, res.HardTimeout)
	for _, e := range res.Egress {
		fmt.Println("out", e.Port)
	}
	fmt.Println("matches", res.Seen)
	// Output:
	// forward 1m0s
	// out 00000000-0000-0000-0000-000000000012
	// matches eth_src,eth_dst,vlan
}
