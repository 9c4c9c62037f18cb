package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/midonet/midonet/internal/dhcp"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// TestDHCPAnsweredByTheAgent sends a VM's DHCP DISCOVER into an agent's
// datapath and reads the OFFER the agent sends back out of the same port:
// no flow is installed, the answer is counted, and the MTU offered follows
// the underlay MTU the tunnel zone's hosts publish.
func TestDHCPAnsweredByTheAgent(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgent("h1", "10.0.0.1")
	bridge := topology.NewID()
	c.update(func(tx topology.Store) error {
		if err := tx.Create(&topology.Bridge{ID: bridge, AdminStateUp: true}); err != nil {
			return err
		}
		return tx.Create(&topology.DHCPSubnet{BridgeID: bridge, SubnetPrefix: topology.Str("10.1.0.0"), SubnetLength: 24,
			DefaultGateway: topology.Str("10.1.0.1"), Enabled: true,
			Hosts: []topology.DHCPHost{{MacAddr: topology.Str("02:00:00:00:00:05"), IPAddr: topology.Str("10.1.0.5")}}})
	})
	vm := c.bridgePort(bridge, h1, "vm1")
	dp := h1.dpPort(t, "vm1", vm)

	offer := func(want int) {
		t.Helper()
		flowsBefore := h1.flows.Stats().Installed
		answered := counterValue(h1.metrics.dhcp[sim.DHCPOffer])
		frame := dhcp.AppendRequest4(nil, dhcp.RequestFields{Type: dhcp.Discover, XID: 9, CHAddr: mac(5)})
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := h1.dp.Inject(dp, frame); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := h1.dp.Read(ctx, dp)
			if err != nil {
				t.Fatalf("no DHCP offer: %v", err)
			}
			p := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
			d, ok := p.Layer(layers.LayerTypeDHCPv4).(*layers.DHCPv4)
			if !ok || d.Xid != 9 {
				continue
			}
			var mtu int
			for _, o := range d.Options {
				if o.Type == layers.DHCPOptInterfaceMTU {
					mtu = int(binary.BigEndian.Uint16(o.Data))
				}
			}
			if d.YourClientIP.String() != "10.1.0.5" || mtu != want {
				t.Errorf("offer of %v with MTU %d, want 10.1.0.5 with %d", d.YourClientIP, mtu, want)
			}
			break
		}
		if got := h1.flows.Stats().Installed; got != flowsBefore {
			t.Errorf("%d flows installed for a DHCP request", got-flowsBefore)
		}
		if got := counterValue(h1.metrics.dhcp[sim.DHCPOffer]); got != answered+1 {
			t.Errorf("offers counted %v, want %v", got, answered+1)
		}
	}
	// No interface published: a 1500-byte underlay is assumed.
	offer(1450)

	// The tunnel zone's host publishes its underlay interface: 9000 bytes.
	itf, _ := json.Marshal(topology.Interface{HostID: h1.HostID(), Name: "eth0", MTU: 9000, Addresses: []string{"10.0.0.1"}})
	if err := c.store.PutState(context.Background(), nsdb.HostInterfaceKey(h1.HostID().String(), "eth0"), itf); err != nil {
		t.Fatal(err)
	}
	c.settle()
	offer(8950)
}
