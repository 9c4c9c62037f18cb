package userspace

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/fastpath"
	"github.com/midonet/midonet/internal/packet"
)

// The kernel fast path (Config.FastPath): AF_PACKET ports get its programs,
// and every flow change goes to the engine and to the fast path under
// fpMu, in one order, so that the kernel's copy of a flow is always the
// engine's latest. A flow enters the engine before the kernel and leaves
// the kernel before the engine, so a packet the kernel does not take
// always finds the flow in userspace.

// afpacketOf returns the AF_PACKET port behind p, if it is one.
func afpacketOf(p port) (*afpacketPort, bool) {
	switch v := p.(type) {
	case *afpacketPort:
		return v, true
	case afpacketOffloadPort:
		return v.afpacketPort, true
	}
	return nil, false
}

// attachFast puts the fast path's programs on an AF_PACKET port. A port
// the kernel refuses them for works as without a fast path.
func (d *Datapath) attachFast(no datapath.PortNo, p port) {
	ap, ok := afpacketOf(p)
	if d.fp == nil || !ok {
		return
	}
	var a *fastpath.Attachment
	if err := d.inNS(func() error {
		var err error
		a, err = d.fp.Attach(ap.index, ap.fd)
		return err
	}); err != nil {
		d.log.Warn("port without the kernel fast path", "port_name", ap.name, "err", err)
		return
	}
	d.fpMu.Lock()
	ap.fast = a
	d.fpPorts[no] = uint32(ap.index)
	d.fpMu.Unlock()
}

// detachFast removes the kernel's flows through a port, then its programs:
// no kernel flow may send to an interface index a later interface may get.
func (d *Datapath) detachFast(no datapath.PortNo, p port) {
	ap, ok := afpacketOf(p)
	if d.fp == nil || !ok {
		return
	}
	d.fpMu.Lock()
	defer d.fpMu.Unlock()
	idx, attached := d.fpPorts[no]
	if !attached {
		return
	}
	delete(d.fpPorts, no)
	d.fp.ForgetInterface(idx)
	ap.fast.Close()
	ap.fast = nil
}

// attachOverlay puts the fast path's decapsulator on the underlay
// interface of a VXLAN port bound to an address, and lets kernel flows
// push its tunnels. A port bound to all addresses, or whose interface the
// kernel refuses the program, works as without a fast path.
func (d *Datapath) attachOverlay(no datapath.PortNo, p port) {
	vp, ok := p.(*vxlanPort)
	if d.fp == nil || !ok || vp.local == [4]byte{} {
		return
	}
	local := netip.AddrFrom4(vp.local)
	var a *fastpath.Attachment
	err := d.inNS(func() error {
		idx, err := linkWithAddr(local)
		if err != nil {
			return err
		}
		a, err = d.fp.AttachOverlay(idx, local, vp.port)
		return err
	})
	if err != nil {
		d.log.Warn("overlay without the kernel fast path", "local", local, "err", err)
		return
	}
	d.fpMu.Lock()
	vp.fast = a
	d.overlayNo = no
	d.overlay = &fastpath.Overlay{Local: local, UDPPort: vp.port, Route: d.underlayRoute}
	d.fpMu.Unlock()
}

// detachOverlay removes the kernel's flows that push or pop the port's
// tunnels, then the decapsulator.
func (d *Datapath) detachOverlay(no datapath.PortNo, p port) {
	vp, ok := p.(*vxlanPort)
	if d.fp == nil || !ok {
		return
	}
	d.fpMu.Lock()
	defer d.fpMu.Unlock()
	if d.overlayNo != no || vp.fast == nil {
		return
	}
	d.overlayNo, d.overlay = 0, nil
	d.fp.ForgetOverlay()
	vp.fast.Close()
	vp.fast = nil
}

// linkWithAddr returns the index of the interface that has addr, in the
// calling thread's namespace.
func linkWithAddr(addr netip.Addr) (int, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 0, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
			return a.LinkIndex, nil
		}
	}
	return 0, fmt.Errorf("no interface has %v", addr)
}

// underlayRoute says how the underlay reaches a tunnel peer, for kernel
// flows into the overlay; answers are kept for routeTTL.
func (d *Datapath) underlayRoute(dst netip.Addr) (ifindex uint32, mtu int, src netip.Addr, ok bool) {
	d.routeMu.Lock()
	defer d.routeMu.Unlock()
	now := time.Now()
	if r, ok := d.routes[dst]; ok && now.Before(r.expires) {
		return r.ifindex, r.mtu, r.src, r.ok
	}
	r := underlayRoute{expires: now.Add(routeTTL)}
	if h, err := d.netlinkHandle(); err == nil {
		if rs, err := h.RouteGet(dst.AsSlice()); err == nil && len(rs) > 0 {
			if l, err := h.LinkByIndex(rs[0].LinkIndex); err == nil {
				r.ifindex, r.mtu, r.ok = uint32(rs[0].LinkIndex), l.Attrs().MTU, true
				r.src, _ = netip.AddrFromSlice(rs[0].Src)
				r.src = r.src.Unmap()
			}
		}
		h.Close()
	}
	if d.routes == nil {
		d.routes = make(map[netip.Addr]underlayRoute)
	}
	d.routes[dst] = r
	return r.ifindex, r.mtu, r.src, r.ok
}

// underlayRoute is a cached answer of Datapath.underlayRoute.
type underlayRoute struct {
	ifindex uint32
	mtu     int
	src     netip.Addr
	ok      bool
	expires time.Time
}

// routeTTL bounds how long a kernel flow set up after a route change may
// still be set up with the old route.
const routeTTL = 10 * time.Second

// fastPort says how the kernel reaches a port; fpMu is held.
func (d *Datapath) fastPort(no datapath.PortNo) (fastpath.Port, bool) {
	if no == d.overlayNo && d.overlay != nil {
		return fastpath.Port{Overlay: d.overlay}, true
	}
	idx, ok := d.fpPorts[no]
	return fastpath.Port{Ifindex: idx}, ok
}

// PutFlow implements datapath.FlowTable, mirroring the flow into the
// kernel when it can run there.
func (d *Datapath) PutFlow(key, mask *packet.FlowKey, actions []datapath.Action, flags datapath.FlowFlags) error {
	if d.fp == nil {
		return d.Core.PutFlow(key, mask, actions, flags)
	}
	d.fpMu.Lock()
	defer d.fpMu.Unlock()
	if err := d.Core.PutFlow(key, mask, actions, flags); err != nil {
		return err
	}
	d.fp.Put(key, mask, actions, d.fastPort, flags&datapath.FlowResetStats != 0)
	return nil
}

// DeleteFlow implements datapath.FlowTable; the counters include the
// packets the kernel forwarded.
func (d *Datapath) DeleteFlow(key, mask *packet.FlowKey) (datapath.FlowStats, error) {
	if d.fp == nil {
		return d.Core.DeleteFlow(key, mask)
	}
	d.fpMu.Lock()
	kst, inKernel := d.fp.Delete(key, mask)
	st, err := d.Core.DeleteFlow(key, mask)
	d.fpMu.Unlock()
	if err == nil && inKernel {
		st = fastpath.MergeStats(st, kst)
	}
	return st, err
}

// DumpFlows implements datapath.FlowTable; the counters include the
// packets the kernel forwarded.
func (d *Datapath) DumpFlows(fn func(f *datapath.Flow) bool) error {
	if d.fp == nil {
		return d.Core.DumpFlows(fn)
	}
	return d.Core.DumpFlows(func(f *datapath.Flow) bool {
		if kst, ok := d.fp.FlowStats(&f.Key, &f.Mask); ok {
			f.Stats = fastpath.MergeStats(f.Stats, kst)
		}
		return fn(f)
	})
}

// Ports implements datapath.PortManager; the counters include what the
// kernel's flows took in and sent.
func (d *Datapath) Ports() []datapath.Port {
	ports := d.Core.Ports()
	if d.fp == nil {
		return ports
	}
	ps := make([]port, len(ports))
	d.mu.Lock()
	for i := range ports {
		ps[i] = d.ports[ports[i].No]
	}
	d.mu.Unlock()
	d.fpMu.Lock()
	defer d.fpMu.Unlock()
	for i, p := range ps {
		var a *fastpath.Attachment
		if ap, ok := afpacketOf(p); ok {
			a = ap.fast
		} else if vp, ok := p.(*vxlanPort); ok {
			a = vp.fast
		}
		if a == nil {
			continue
		}
		k := a.Stats()
		s := &ports[i].Stats
		s.RxPackets += k.RxPackets
		s.RxBytes += k.RxBytes
		s.TxPackets += k.TxPackets
		s.TxBytes += k.TxBytes
	}
	return ports
}
