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

// fastPort is a port the fast path's programs are attached to: an
// AF_PACKET port's interface, or the overlay's underlay interface.
type fastPort struct {
	att  *fastpath.Attachment
	kern fastpath.Port // how kernel flows reach the port
}

// attachFast puts the fast path's programs on a port: on an AF_PACKET
// port's interface and socket, or, for a VXLAN port bound to an address,
// a decapsulator on the underlay interface, letting kernel flows push its
// tunnels. A port the kernel refuses them for, or a VXLAN port bound to
// all addresses, works as without a fast path.
func (d *Datapath) attachFast(no datapath.PortNo, p port) {
	if d.fp == nil {
		return
	}
	var (
		fp   fastPort
		err  error
		what string // for the log
	)
	if ap, ok := afpacketOf(p); ok {
		what = ap.name
		err = d.inNS(func() (err error) {
			fp.att, err = d.fp.Attach(ap.index, ap.fd)
			return err
		})
		fp.kern.Ifindex = uint32(ap.index)
	} else if vp, ok := p.(*vxlanPort); ok && vp.local != [4]byte{} {
		local := netip.AddrFrom4(vp.local)
		what = "the overlay on " + local.String()
		err = d.inNS(func() error {
			idx, err := linkWithAddr(local)
			if err == nil {
				fp.att, err = d.fp.AttachOverlay(idx, local, vp.port)
			}
			return err
		})
		fp.kern.Overlay = &fastpath.Overlay{Local: local, UDPPort: vp.port, Route: d.underlayRoute}
	} else {
		return
	}
	if err != nil {
		d.log.Warn("port without the kernel fast path", "port_no", no, "port", what, "err", err)
		return
	}
	d.fpMu.Lock()
	d.fpPorts[no] = fp
	d.fpMu.Unlock()
}

// detachFast removes the kernel's flows through a port, then its programs:
// no kernel flow may send to an interface index a later interface may get,
// nor push or pop the tunnels of a VXLAN port that is gone.
func (d *Datapath) detachFast(no datapath.PortNo) {
	if d.fp == nil {
		return
	}
	d.fpMu.Lock()
	defer d.fpMu.Unlock()
	delete(d.limited, no) // the number may be given to another port
	fp, ok := d.fpPorts[no]
	if !ok {
		return
	}
	delete(d.fpPorts, no)
	if fp.kern.Overlay != nil {
		d.fp.ForgetOverlay()
	} else {
		d.fp.ForgetInterface(fp.kern.Ifindex)
	}
	fp.att.Close()
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
// flows into the overlay; answers are kept for routeTTL. It runs under
// fpMu (PutFlow), which guards the cache and the netlink handle.
func (d *Datapath) underlayRoute(dst netip.Addr) (ifindex uint32, mtu int, ok bool) {
	now := time.Now()
	if r, ok := d.routes[dst]; ok && now.Before(r.expires) {
		return r.ifindex, r.mtu, r.ok
	}
	r := underlayRoute{expires: now.Add(routeTTL)}
	if d.routeNL == nil {
		// Kept open: the lookup runs under the flow locks, and a handle
		// in another namespace costs a namespace switch to open.
		d.routeNL, _ = d.netlinkHandle()
	}
	if h := d.routeNL; h != nil {
		rs, err := h.RouteGet(dst.AsSlice())
		if err == nil && len(rs) > 0 {
			if l, err := h.LinkByIndex(rs[0].LinkIndex); err == nil {
				r.ifindex, r.mtu, r.ok = uint32(rs[0].LinkIndex), l.Attrs().MTU, true
			}
		}
		if !r.ok { // no route, or a broken handle: a fresh one next time
			h.Close()
			d.routeNL = nil
		}
	}
	for a, old := range d.routes { // peers that left
		if now.After(old.expires) {
			delete(d.routes, a)
		}
	}
	d.routes[dst] = r
	return r.ifindex, r.mtu, r.ok
}

// underlayRoute is a cached answer of Datapath.underlayRoute.
type underlayRoute struct {
	ifindex uint32
	mtu     int
	ok      bool
	expires time.Time
}

// routeTTL bounds how long a kernel flow set up after a route change may
// still be set up with the old route.
const routeTTL = 10 * time.Second

// kernelPort says how the kernel reaches a port; fpMu is held.
func (d *Datapath) kernelPort(no datapath.PortNo) (fastpath.Port, bool) {
	fp, ok := d.fpPorts[no]
	return fp.kern, ok
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
	if d.limited[datapath.PortNo(key.InPort)] {
		d.fp.Delete(key, mask) // an older version may be there
		return nil
	}
	d.fp.Put(key, mask, actions, d.kernelPort, flags&datapath.FlowResetStats != 0)
	return nil
}

// SetPortRateLimit implements datapath.PortRateLimiter. The engine polices
// the port's frames; the kernel fast path has no policer, so a limited
// port's flows leave it (their packets then all come through the engine)
// and come back when the limit is removed and the flows are put again.
func (d *Datapath) SetPortRateLimit(no datapath.PortNo, l datapath.RateLimit) error {
	if d.fp == nil {
		return d.Core.SetPortRateLimit(no, l)
	}
	d.fpMu.Lock()
	defer d.fpMu.Unlock()
	if err := d.Core.SetPortRateLimit(no, l); err != nil {
		return err
	}
	if l.BitsPerSecond == 0 {
		delete(d.limited, no)
		return nil
	}
	if d.limited[no] {
		return nil
	}
	d.limited[no] = true
	return d.Core.DumpFlows(func(f *datapath.Flow) bool {
		if datapath.PortNo(f.Key.InPort) == no {
			d.fp.Delete(&f.Key, &f.Mask)
		}
		return true
	})
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
		st = st.Merge(kst)
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
			f.Stats = f.Stats.Merge(kst)
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
	// The counters are map lookups (system calls): not under fpMu, which
	// flow changes take. An attachment's map outlives its Close.
	atts := make([]*fastpath.Attachment, len(ports))
	d.fpMu.Lock()
	for i := range ports {
		atts[i] = d.fpPorts[ports[i].No].att
	}
	d.fpMu.Unlock()
	for i, a := range atts {
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
