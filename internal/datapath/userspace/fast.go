package userspace

import (
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

// fastPort maps a port to its interface for the fast path; fpMu is held.
func (d *Datapath) fastPort(no datapath.PortNo) (uint32, bool) {
	idx, ok := d.fpPorts[no]
	return idx, ok
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
	aps := make([]*afpacketPort, len(ports))
	d.mu.Lock()
	for i := range ports {
		aps[i], _ = afpacketOf(d.ports[ports[i].No])
	}
	d.mu.Unlock()
	d.fpMu.Lock()
	defer d.fpMu.Unlock()
	for i, ap := range aps {
		if ap == nil || ap.fast == nil {
			continue
		}
		k := ap.fast.Stats()
		s := &ports[i].Stats
		s.RxPackets += k.RxPackets
		s.RxBytes += k.RxBytes
		s.TxPackets += k.TxPackets
		s.TxBytes += k.TxBytes
	}
	return ports
}
