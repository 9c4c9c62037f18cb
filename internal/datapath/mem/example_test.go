package mem_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/mem"
	"github.com/midonet/midonet/internal/packet"
)

// Two hosts joined by a fabric: a miss on host 1 comes up to the agent,
// which installs a flow tunnelling the VM's traffic to host 2 and executes
// the packet; host 2 delivers by tunnel key.
func Example() {
	fabric := mem.NewFabric()
	h1 := mem.New(mem.Config{Fabric: fabric})
	defer h1.Close()
	h2 := mem.New(mem.Config{Fabric: fabric})
	defer h2.Close()

	u1, u2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	vm1, _ := h1.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "vm1"})
	vx1, _ := h1.AddPort(datapath.PortSpec{Kind: datapath.PortVXLAN, LocalAddr: u1})
	vm2, _ := h2.AddPort(datapath.PortSpec{Kind: datapath.PortNetdev, Name: "vm2"})
	vx2, _ := h2.AddPort(datapath.PortSpec{Kind: datapath.PortVXLAN, LocalAddr: u2})

	// Host 2: tunnel key 42 goes to vm2.
	key := packet.FlowKey{InPort: uint32(vx2), TunID: 42}
	mask := packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0)}
	h2.PutFlow(&key, &mask, []datapath.Action{datapath.Output(vm2)}, datapath.FlowCreate)

	// Host 1's agent: on a miss, install "from vm1 to 10.0.0.2: tunnel"
	// and send the packet on its way.
	h1.SetUpcallHandler(datapath.UpcallHandlerFunc(func(u *datapath.Upcall) {
		actions := []datapath.Action{
			datapath.SetTunnel(datapath.TunnelSet{VNI: 42, Dst: u2}),
			datapath.Output(vx1),
		}
		mask := packet.FlowKey{InPort: ^uint32(0), EthType: 0xffff, NwDst: [4]byte{255, 255, 255, 255}}
		h1.PutFlow(&u.Key, &mask, actions, datapath.FlowCreate|datapath.FlowModify)
		h1.Execute(u.Packet, actions, u.InPort) // Packet is only valid during the call
	}))

	frame := make([]byte, 42) // Ethernet + IPv4 10.0.0.1 -> 10.0.0.2
	frame[12], frame[13], frame[14] = 0x08, 0x00, 0x45
	frame[16], frame[17] = 0, 28 // IPv4 total length
	copy(frame[26:30], []byte{10, 0, 0, 1})
	copy(frame[30:34], []byte{10, 0, 0, 2})
	h1.Inject(vm1, frame)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := h2.Read(ctx, vm2)
	fmt.Println(len(got.Data), err)
	fmt.Println(h1.Stats().Misses, h1.Stats().Flows)
	// Output:
	// 42 <nil>
	// 1 1
}
