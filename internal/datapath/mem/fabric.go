package mem

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/midonet/midonet/internal/datapath"
)

// Fabric is an in-memory underlay joining the VXLAN ports of mem datapaths:
// output to a VXLAN port with tunnel destination D reaches the VXLAN port
// bound to D (and the same UDP port), which receives the inner frame with
// the tunnel metadata in its flow key. Delivery is asynchronous, as on a
// wire: each VXLAN port has a bounded inbound queue drained by its own
// goroutine, and a frame sent to a full queue is dropped (counted as
// TxDropped on the sender). So flows that bounce between hosts can neither
// deadlock nor recurse.
type Fabric struct {
	mu        sync.RWMutex
	endpoints map[netip.AddrPort]*port // guarded by mu
}

// NewFabric returns an empty fabric.
func NewFabric() *Fabric {
	return &Fabric{endpoints: make(map[netip.AddrPort]*port)}
}

func (f *Fabric) attach(ap netip.AddrPort, p *port) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.endpoints[ap]; ok {
		return fmt.Errorf("vxlan endpoint %v is already on the fabric: %w", ap, datapath.ErrPortExists)
	}
	f.endpoints[ap] = p
	return nil
}

func (f *Fabric) detach(ap netip.AddrPort, p *port) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.endpoints[ap] == p {
		delete(f.endpoints, ap)
	}
}

var errNoEndpoint = fmt.Errorf("no vxlan endpoint at the tunnel destination")

func (f *Fabric) send(from *port, frame []byte, tun *datapath.TunnelSet) error {
	dst := netip.AddrPortFrom(tun.Dst, from.vxlan.Port())
	f.mu.RLock()
	to := f.endpoints[dst]
	f.mu.RUnlock()
	if to == nil {
		return errNoEndpoint
	}
	src := tun.Src
	if !src.IsValid() {
		src = from.vxlan.Addr()
	}
	ttl := tun.TTL
	if ttl == 0 {
		ttl = datapath.DefaultTunnelTTL
	}
	t := Tunnel{ID: tun.VNI, Src: src.As4(), Dst: tun.Dst.As4(), TOS: tun.TOS, TTL: ttl}
	select {
	case to.fabricIn <- fabricFrame{tun: t, data: append([]byte(nil), frame...)}:
		return nil
	default:
		return errFabricQueueFull
	}
}

var errFabricQueueFull = fmt.Errorf("vxlan endpoint's inbound queue is full")

type fabricFrame struct {
	tun  Tunnel
	data []byte
}

// deliverFabric is a VXLAN port's receive loop for frames from the fabric.
func (p *port) deliverFabric() {
	defer close(p.fabricDone)
	for {
		select {
		case f := <-p.fabricIn:
			p.receive(f.data, &f.tun)
		case <-p.fabricStop:
			return
		}
	}
}
