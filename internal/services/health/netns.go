package health

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsthread"
	"github.com/midonet/midonet/internal/topology"
)

// The link between a router and its probe namespace, as MidoNet's: the
// router's side is a port of the router with 169.254.17.41/30, the
// namespace's side 169.254.17.42.
var (
	RouterSide = netip.MustParsePrefix("169.254.17.41/30")
	ProbeSide  = netip.MustParsePrefix("169.254.17.42/30")
)

// ifacePrefix starts the name of the datapath side of a probe link.
const ifacePrefix = "mnhm"

// ProbePortID is the id of the router port health checks leave by: the
// same for every host, so that the next leader takes the port over (binds
// it to itself) instead of adding one.
func ProbePortID(router topology.ID) topology.ID {
	return uuid.NewSHA1(router, []byte("health-monitor-port"))
}

// ProbeInterface is the name of the datapath side of router's probe link.
func ProbeInterface(router topology.ID) string { return ifacePrefix + router.String()[:8] }

// derivedMAC is a locally administered MAC derived from router and what, so
// that a new leader's namespace answers with the MAC the router learned
// from the previous one.
func derivedMAC(router topology.ID, what string, oui [3]byte) net.HardwareAddr {
	h := sha1.Sum(append(router[:], what...))
	return net.HardwareAddr{oui[0], oui[1], oui[2], h[0], h[1], h[2]}
}

// Netns is the Plumbing of an agent: for each router it makes a network
// namespace with no name (it vanishes with the agent's process), linked by
// a veth pair to the agent's namespace, where the agent plugs the other end
// into its datapath as a port of the router, bound to this host. Checks are
// dialled from inside the namespace, so they enter the virtual network at
// the router and members' replies come back through it.
type Netns struct {
	store  *nsdb.Store
	host   topology.ID
	hostNS netns.NsHandle
	wait   time.Duration

	mu     sync.Mutex
	probes map[topology.ID]*nsProber // guarded by mu
}

// NetnsConfig configures Netns plumbing.
type NetnsConfig struct {
	Store  *nsdb.Store
	HostID topology.ID
	// HostNS is the namespace where the agent's datapath takes interfaces
	// (default: the calling thread's namespace).
	HostNS netns.NsHandle
	// ActiveWait bounds how long Attach waits for the agent to plug the
	// probe port (default 15 s).
	ActiveWait time.Duration
}

// NewNetns returns the plumbing of an agent.
func NewNetns(cfg NetnsConfig) (*Netns, error) {
	if cfg.HostNS == 0 {
		h, err := netns.Get()
		if err != nil {
			return nil, fmt.Errorf("health: current network namespace: %w", err)
		}
		cfg.HostNS = h
	}
	if cfg.ActiveWait <= 0 {
		cfg.ActiveWait = 15 * time.Second
	}
	return &Netns{store: cfg.Store, host: cfg.HostID, hostNS: cfg.HostNS, wait: cfg.ActiveWait,
		probes: map[topology.ID]*nsProber{}}, nil
}

// nsProber dials from inside a probe namespace.
type nsProber struct {
	ns netns.NsHandle
}

// DialContext opens the connection on a thread inside the namespace: a
// socket stays in the namespace it was created in.
func (p *nsProber) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := nsthread.In(p.ns, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Attach makes router's probe namespace and link, binds the probe port to
// this host, and returns once the agent has plugged it.
func (n *Netns) Attach(ctx context.Context, router topology.ID) (Prober, error) {
	n.mu.Lock()
	p, ok := n.probes[router]
	n.mu.Unlock()
	if !ok {
		var err error
		if p, err = n.makeLink(router); err != nil {
			return nil, err
		}
		n.mu.Lock()
		n.probes[router] = p
		n.mu.Unlock()
	}
	if err := n.bindPort(ctx, router); err != nil {
		return nil, err
	}
	key := nsdb.PortActiveKey(ProbePortID(router).String())
	deadline := time.Now().Add(n.wait)
	for {
		if e, err := n.store.GetState(ctx, key); err == nil && string(e.Value) == n.host.String() {
			return p, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("health: the agent did not plug probe interface %s of router %s within %s", ProbeInterface(router), router, n.wait)
		}
		sleep(ctx, 50*time.Millisecond)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// makeLink creates the namespace and its veth pair.
func (n *Netns) makeLink(router topology.ID) (*nsProber, error) {
	var ns netns.NsHandle
	err := nsthread.Run(func() error {
		var err error
		ns, err = netns.New()
		return err
	}, func() error { return nil })
	if err != nil {
		return nil, fmt.Errorf("health: new network namespace for router %s: %w", router, err)
	}
	ok := false
	defer func() {
		if !ok {
			ns.Close()
		}
	}()
	hn, err := netlink.NewHandleAt(n.hostNS)
	if err != nil {
		return nil, fmt.Errorf("health: netlink in the agent's namespace: %w", err)
	}
	defer hn.Close()
	pn, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("health: netlink in the probe namespace: %w", err)
	}
	defer pn.Close()
	name := ProbeInterface(router)
	if old, err := hn.LinkByName(name); err == nil {
		hn.LinkDel(old) // left by a previous lead of this process
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: 1500}, PeerName: "eth0",
		PeerHardwareAddr: derivedMAC(router, "probe", [3]byte{0x02, 0x4d, 0x48}), PeerNamespace: netlink.NsFd(int(ns))}
	if err := hn.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("health: create probe link %s: %w", name, err)
	}
	fail := func(step string, err error) (*nsProber, error) {
		hn.LinkDel(veth)
		return nil, fmt.Errorf("health: probe link %s: %s: %w", name, step, err)
	}
	inner, err := pn.LinkByName("eth0")
	if err != nil {
		return fail("find the namespace's side", err)
	}
	lo, err := pn.LinkByName("lo")
	if err != nil {
		return fail("find lo", err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ProbeSide.Addr().AsSlice(), Mask: net.CIDRMask(ProbeSide.Bits(), 32)}}
	for _, step := range []struct {
		what string
		do   func() error
	}{
		{"address", func() error { return pn.AddrAdd(inner, addr) }},
		{"up", func() error { return pn.LinkSetUp(inner) }},
		{"lo up", func() error { return pn.LinkSetUp(lo) }},
		{"default route", func() error {
			return pn.RouteAdd(&netlink.Route{LinkIndex: inner.Attrs().Index, Gw: RouterSide.Addr().AsSlice()})
		}},
		{"datapath side up", func() error { return hn.LinkSetUp(veth) }},
	} {
		if err := step.do(); err != nil {
			return fail(step.what, err)
		}
	}
	ok = true
	return &nsProber{ns: ns}, nil
}

// bindPort creates router's probe port if needed and binds it to this
// host's probe interface (taking it over from a previous leader).
func (n *Netns) bindPort(ctx context.Context, router topology.ID) error {
	id := ProbePortID(router)
	return n.store.Update(ctx, func(tx *nsdb.Tx) error {
		if ok, err := tx.Exists(topology.KindRouter, router.String()); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("health: router %s does not exist", router)
		}
		p, err := topology.GetOf[topology.Port](tx, id.String())
		switch {
		case errors.Is(err, topology.ErrNotFound):
			p = topology.Port{ID: id, Type: topology.PortTypeRouter, DeviceID: router, AdminStateUp: true,
				PortSubnet: []string{RouterSide.String()},
				PortMAC:    topology.Str(derivedMAC(router, "port", topology.MidokuraOUI).String())}
			p.Normalize()
			if err := topology.AllocateTunnelKey(tx, &p, rand.Int64N); err != nil {
				return err
			}
			for _, rt := range topology.LocalRoutes(&p, topology.NewID) {
				if err := tx.Create(&rt); err != nil {
					return err
				}
			}
		case err != nil:
			return err
		}
		name := ProbeInterface(router)
		if p.HostID != nil && *p.HostID == n.host && p.InterfaceName != nil && *p.InterfaceName == name {
			return nil
		}
		p.HostID, p.InterfaceName = topology.IDPtr(n.host), topology.Str(name)
		return tx.Put(&p)
	})
}

// Detach deletes router's probe link and namespace here; forget also
// deletes the probe port.
func (n *Netns) Detach(ctx context.Context, router topology.ID, forget bool) error {
	n.mu.Lock()
	p, ok := n.probes[router]
	delete(n.probes, router)
	n.mu.Unlock()
	var errs []error
	if ok {
		if hn, err := netlink.NewHandleAt(n.hostNS); err == nil {
			if l, err := hn.LinkByName(ProbeInterface(router)); err == nil {
				if err := hn.LinkDel(l); err != nil {
					errs = append(errs, fmt.Errorf("delete %s: %w", ProbeInterface(router), err))
				}
			}
			hn.Close()
		}
		p.ns.Close()
	}
	if forget {
		err := n.store.Update(ctx, func(tx *nsdb.Tx) error {
			err := topology.Delete(tx, topology.KindPort, ProbePortID(router).String())
			if errors.Is(err, topology.ErrNotFound) {
				return nil
			}
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("delete probe port of router %s: %w", router, err))
		}
	}
	return errors.Join(errs...)
}

// Close releases every probe namespace of this host (the store's ports
// stay, for the next leader).
func (n *Netns) Close() {
	n.mu.Lock()
	routers := make([]topology.ID, 0, len(n.probes))
	for r := range n.probes {
		routers = append(routers, r)
	}
	n.mu.Unlock()
	for _, r := range routers {
		n.Detach(context.Background(), r, false)
	}
}
