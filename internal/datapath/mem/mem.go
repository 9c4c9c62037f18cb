// Package mem is a complete in-process datapath: ports are in-memory
// endpoints a test injects frames into and reads frames from, VXLAN ports of
// several datapaths are joined by a Fabric, and flows, actions and upcalls
// behave as in the userspace datapath (they share its engine). Agent tests
// and scale simulations run on it.
package mem

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
)

var _ datapath.Datapath = (*Datapath)(nil)

// Tunnel is the outer-header metadata of a frame arriving on a VXLAN port.
type Tunnel = engine.Tunnel

// Defaults for Config.
const (
	DefaultOutputQueueLen = 1024
	DefaultEMCSize        = 256
)

// Config configures a Datapath.
type Config struct {
	// Engine configures the engine. EMCSize 0 means DefaultEMCSize here,
	// to keep many datapaths small; InlineUpcalls is always on, as the
	// userspace datapath runs: a miss goes to the upcall handler on the
	// goroutine that injected or received it, unless the port has
	// upcalls queued.
	Engine engine.Config
	// OutputQueueLen bounds each port's queue of frames waiting to be
	// read; output to a full queue is dropped and counted.
	OutputQueueLen int
	// Fabric, if set, joins this datapath's VXLAN port to the others on it.
	Fabric *Fabric
}

// Frame is a frame that left a port. Tunnel is set for frames output to the
// VXLAN port of a datapath without a fabric.
type Frame struct {
	Data      []byte
	Tunnel    datapath.TunnelSet
	HasTunnel bool
}

// Datapath is the in-process datapath.
type Datapath struct {
	cfg         Config
	engine.Core // flows, execution, upcalls, ports and stats
	e           *engine.Engine

	mu    sync.Mutex
	ports map[datapath.PortNo]*port // guarded by mu
}

type port struct {
	d   *Datapath
	ep  *engine.Port
	out chan Frame

	mu sync.Mutex // serializes Receive on w
	w  *engine.Worker

	vxlan      netip.AddrPort // for the VXLAN port on a fabric
	fabricIn   chan fabricFrame
	fabricStop chan struct{}
	fabricDone chan struct{}
}

// New returns a datapath with no ports.
func New(cfg Config) *Datapath {
	if cfg.OutputQueueLen <= 0 {
		cfg.OutputQueueLen = DefaultOutputQueueLen
	}
	if cfg.Engine.EMCSize <= 0 {
		cfg.Engine.EMCSize = DefaultEMCSize
	}
	cfg.Engine.InlineUpcalls = true
	e := engine.New(cfg.Engine)
	return &Datapath{cfg: cfg, Core: e.Core(), e: e, ports: make(map[datapath.PortNo]*port)}
}

// AddPort implements datapath.PortManager. Any name is accepted for netdev
// and internal ports; a VXLAN port registers LocalAddr:UDPPort on the
// fabric, if there is one.
func (d *Datapath) AddPort(spec datapath.PortSpec) (datapath.PortNo, error) {
	switch spec.Kind {
	case datapath.PortNetdev, datapath.PortInternal:
		if spec.Name == "" {
			return 0, fmt.Errorf("%v port needs a name", spec.Kind)
		}
	case datapath.PortVXLAN:
		if spec.UDPPort == 0 {
			spec.UDPPort = datapath.DefaultVXLANPort
		}
		if spec.Name == "" {
			spec.Name = "vxlan"
		}
		if d.cfg.Fabric != nil && !spec.LocalAddr.Is4() {
			return 0, fmt.Errorf("vxlan port on a fabric needs an IPv4 local address, got %v", spec.LocalAddr)
		}
	default:
		return 0, fmt.Errorf("port %q: unknown kind %v", spec.Name, spec.Kind)
	}
	p := &port{d: d, out: make(chan Frame, d.cfg.OutputQueueLen)}
	ep, err := d.e.AddPort(spec, p)
	if err != nil {
		return 0, err
	}
	p.ep = ep
	p.w = d.e.NewWorker()
	if spec.Kind == datapath.PortVXLAN && d.cfg.Fabric != nil {
		p.vxlan = netip.AddrPortFrom(spec.LocalAddr, spec.UDPPort)
		p.fabricIn = make(chan fabricFrame, d.cfg.OutputQueueLen)
		p.fabricStop = make(chan struct{})
		p.fabricDone = make(chan struct{})
		if err := d.cfg.Fabric.attach(p.vxlan, p); err != nil {
			d.e.RemovePort(ep.No)
			p.w.Close()
			return 0, err
		}
		go p.deliverFabric()
	}
	d.mu.Lock()
	d.ports[ep.No] = p
	d.mu.Unlock()
	return ep.No, nil
}

// RemovePort implements datapath.PortManager.
func (d *Datapath) RemovePort(no datapath.PortNo) error {
	if _, err := d.e.RemovePort(no); err != nil {
		return err
	}
	d.mu.Lock()
	p := d.ports[no]
	delete(d.ports, no)
	d.mu.Unlock()
	if p != nil {
		if p.vxlan.IsValid() {
			d.cfg.Fabric.detach(p.vxlan, p)
			close(p.fabricStop)
			<-p.fabricDone
		}
		p.mu.Lock()
		p.w.Close()
		p.mu.Unlock()
	}
	return nil
}

// Close removes every port and stops the upcall dispatcher.
func (d *Datapath) Close() error {
	d.mu.Lock()
	nos := make([]datapath.PortNo, 0, len(d.ports))
	for no := range d.ports {
		nos = append(nos, no)
	}
	d.mu.Unlock()
	for _, no := range nos {
		d.RemovePort(no)
	}
	d.e.Close()
	return nil
}

func (d *Datapath) port(no datapath.PortNo) (*port, error) {
	d.mu.Lock()
	p := d.ports[no]
	d.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("port %d: %w", no, datapath.ErrPortNotFound)
	}
	return p, nil
}

// Inject processes frame as received on port no, synchronously: on return
// any flow's actions have run and any upcall is queued. The datapath does
// not keep frame.
func (d *Datapath) Inject(no datapath.PortNo, frame []byte) error {
	p, err := d.port(no)
	if err != nil {
		return err
	}
	p.receive(frame, nil)
	return nil
}

// InjectTunnel processes frame as decapsulated from the overlay by the
// VXLAN port no, with the outer-header metadata tun.
func (d *Datapath) InjectTunnel(no datapath.PortNo, tun Tunnel, frame []byte) error {
	p, err := d.port(no)
	if err != nil {
		return err
	}
	if p.ep.Spec.Kind != datapath.PortVXLAN {
		return fmt.Errorf("port %d is a %v port, not vxlan", no, p.ep.Spec.Kind)
	}
	p.receive(frame, &tun)
	return nil
}

func (p *port) receive(frame []byte, tun *Tunnel) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ep.Removed() {
		return
	}
	p.w.Begin()
	p.w.Receive(p.ep, frame, tun)
	p.w.Flush()
}

// Output returns the channel of frames that left port no. The channel is
// never closed.
func (d *Datapath) Output(no datapath.PortNo) (<-chan Frame, error) {
	p, err := d.port(no)
	if err != nil {
		return nil, err
	}
	return p.out, nil
}

// Read waits for the next frame that leaves port no.
func (d *Datapath) Read(ctx context.Context, no datapath.PortNo) (Frame, error) {
	out, err := d.Output(no)
	if err != nil {
		return Frame{}, err
	}
	select {
	case f := <-out:
		return f, nil
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

// SetLinkState reports port no's interface going up or down to the port
// event handler, as a real interface's carrier change would.
func (d *Datapath) SetLinkState(no datapath.PortNo, up bool) error {
	p, err := d.port(no)
	if err != nil {
		return err
	}
	kind := datapath.PortDown
	if up {
		kind = datapath.PortUp
	}
	d.e.PortEvent(datapath.PortEvent{Kind: kind, Port: no, Name: p.ep.Spec.Name})
	return nil
}

// RemoveInterface simulates the disappearance of port no's interface: the
// port is removed and a PortRemoved event reported.
func (d *Datapath) RemoveInterface(no datapath.PortNo) error {
	p, err := d.port(no)
	if err != nil {
		return err
	}
	if err := d.RemovePort(no); err != nil {
		return err
	}
	d.e.PortEvent(datapath.PortEvent{Kind: datapath.PortRemoved, Port: no, Name: p.ep.Spec.Name})
	return nil
}

// errQueueFull is returned by Transmit when a port's output queue is full.
var errQueueFull = fmt.Errorf("output queue full")

// Transmit implements engine.Transmitter.
func (p *port) Transmit(frame []byte, tun *datapath.TunnelSet) error {
	if p.vxlan.IsValid() {
		return p.d.cfg.Fabric.send(p, frame, tun)
	}
	f := Frame{Data: append([]byte(nil), frame...)}
	if tun != nil {
		f.Tunnel, f.HasTunnel = *tun, true
	}
	select {
	case p.out <- f:
		return nil
	default:
		return errQueueFull
	}
}
