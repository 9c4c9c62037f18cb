// Package fastpath runs in the kernel the flows of the userspace datapath
// that only rewrite headers and send to another local interface, so that
// their packets are forwarded in the sender's own softirq, as the Open
// vSwitch kernel datapath forwards, instead of waking a receiver thread.
//
// Two eBPF programs share the work. A socket filter on each port's
// AF_PACKET socket, which the kernel runs first, computes the packet's flow
// key exactly as packet.ExtractFlowKey does and looks it up mask by mask,
// as the kernel datapath does; on a hit it counts the packet, keeps it
// from the socket and leaves the flow's actions for the second program, a
// tc (tcx) ingress program on the same interface, which the kernel runs
// next for the same packet on the same processor: it rewrites the headers,
// fixing checksums with the kernel's helpers, and redirects the packet to
// the output interface. Frames the programs do not take — misses, VLAN
// tags, IP options, fragments, anything but IPv4 — reach the socket as
// before, so the userspace datapath stays the whole truth and the kernel
// holds a copy of some of its flows.
//
// The datapath mirrors every flow it installs with Put and removes it with
// Delete before its own copy; flows whose match or actions the programs
// cannot express stay in userspace only.
package fastpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

// MaxFlows bounds the flows held in the kernel; more stay in userspace.
const MaxFlows = 1 << 18

// maxPorts bounds the interfaces with kernel port counters.
const maxPorts = 4096

// portCounters is one processor's slot of a port's counters.
type portCounters struct{ RxPackets, RxBytes, TxPackets, TxBytes uint64 }

// FastPath holds the programs and maps, and the kernel's copy of the
// flows. Its methods are safe for concurrent use.
type FastPath struct {
	masks, flows, handover, counters *ebpf.Map
	ports                            *ebpf.Map // counters by interface
	classify, forward                *ebpf.Program

	mu      sync.Mutex
	entries map[flowID]*entry // guarded by mu
	slots   [maxMasks]maskSlot
	slotOf  map[[keySize]byte]int
	nslots  int // slots in use end before this one
	nkernel int // entries held in the kernel
	// Scratch for map values, so that handing them to the kernel does
	// not allocate; guarded by mu.
	val, old [valSize]byte
}

type flowID struct{ key, mask packet.FlowKey } // key masked

type entry struct {
	bkey    [keySize]byte // the kernel map's key, masked, with the mask number
	slot    int
	in, out uint32 // interfaces; out 0 for a drop
	// carry keeps the counters of a kernel copy the flow lost when its
	// actions changed to ones the kernel cannot run.
	carry    datapath.FlowStats
	inKernel bool
}

type maskSlot struct {
	mask [keySize]byte
	refs int
}

// Ports says which interface index serves a datapath port, for ports
// attached to the fast path.
type Ports func(datapath.PortNo) (ifindex uint32, ok bool)

// New loads the programs. It fails where eBPF is not available (no
// privilege, an old kernel); the datapath then runs without a fast path.
func New() (*FastPath, error) {
	f := &FastPath{entries: make(map[flowID]*entry), slotOf: make(map[[keySize]byte]int)}
	var err error
	if f.masks, err = ebpf.NewMap(&ebpf.MapSpec{Name: "mn_masks", Type: ebpf.Array, KeySize: 4, ValueSize: masksValSize, MaxEntries: 1}); err != nil {
		return nil, fmt.Errorf("fast path: mask table: %w", err)
	}
	if f.flows, err = ebpf.NewMap(&ebpf.MapSpec{Name: "mn_flows", Type: ebpf.Hash, KeySize: keySize, ValueSize: valSize,
		MaxEntries: MaxFlows, Flags: unix.BPF_F_NO_PREALLOC}); err != nil {
		f.Close()
		return nil, fmt.Errorf("fast path: flow table: %w", err)
	}
	if f.handover, err = ebpf.NewMap(&ebpf.MapSpec{Name: "mn_handover", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: hoSize, MaxEntries: 1}); err != nil {
		f.Close()
		return nil, fmt.Errorf("fast path: hand-over: %w", err)
	}
	if f.counters, err = ebpf.NewMap(&ebpf.MapSpec{Name: "mn_counters", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: ctrSize, MaxEntries: 1}); err != nil {
		f.Close()
		return nil, fmt.Errorf("fast path: counters: %w", err)
	}
	if f.ports, err = ebpf.NewMap(&ebpf.MapSpec{Name: "mn_ports", Type: ebpf.PerCPUHash, KeySize: 4, ValueSize: portValSize, MaxEntries: maxPorts}); err != nil {
		f.Close()
		return nil, fmt.Errorf("fast path: port counters: %w", err)
	}
	if f.classify, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "mn_classify", Type: ebpf.SocketFilter, License: "Apache-2.0",
		Instructions: classifier(f.masks.FD(), f.flows.FD(), f.handover.FD(), f.counters.FD(), f.ports.FD())}); err != nil {
		f.Close()
		return nil, fmt.Errorf("fast path: load the classifier: %w", err)
	}
	if f.forward, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "mn_forward", Type: ebpf.SchedCLS, License: "Apache-2.0",
		Instructions: forwarder(f.handover.FD())}); err != nil {
		f.Close()
		return nil, fmt.Errorf("fast path: load the forwarder: %w", err)
	}
	if err := f.writeMasks(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Close releases the programs and maps. Attachments must be closed first.
func (f *FastPath) Close() error {
	for _, p := range []*ebpf.Program{f.classify, f.forward} {
		if p != nil {
			p.Close()
		}
	}
	for _, m := range []*ebpf.Map{f.masks, f.flows, f.handover, f.counters, f.ports} {
		if m != nil {
			m.Close()
		}
	}
	return nil
}

// Attachment is the fast path on one interface.
type Attachment struct {
	f       *FastPath
	ifindex uint32
	link    link.Link
	sock    int
}

// Attach puts the programs on an interface and on the AF_PACKET socket
// that receives from it. It must run in the interface's network namespace.
// The tc program goes first: a frame the filter keeps from the socket must
// find it.
func (f *FastPath) Attach(ifindex, sock int) (*Attachment, error) {
	zero := make([]portCounters, ebpf.MustPossibleCPU())
	if err := f.ports.Update(uint32(ifindex), zero, ebpf.UpdateAny); err != nil {
		return nil, fmt.Errorf("fast path: counters of interface %d: %w", ifindex, err)
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: f.forward, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		f.ports.Delete(uint32(ifindex))
		return nil, fmt.Errorf("fast path: attach the tc program to interface %d: %w", ifindex, err)
	}
	if err := unix.SetsockoptInt(sock, unix.SOL_SOCKET, unix.SO_ATTACH_BPF, f.classify.FD()); err != nil {
		l.Close()
		f.ports.Delete(uint32(ifindex))
		return nil, fmt.Errorf("fast path: attach the classifier to interface %d's socket: %w", ifindex, err)
	}
	return &Attachment{f: f, ifindex: uint32(ifindex), link: l, sock: sock}, nil
}

// Close takes the programs off, the socket's filter first, so that no
// frame is kept from the socket without a program to forward it. The
// socket must still be open.
func (a *Attachment) Close() {
	unix.SetsockoptInt(a.sock, unix.SOL_SOCKET, unix.SO_DETACH_BPF, 0)
	a.link.Close()
	a.f.ports.Delete(a.ifindex)
}

// Stats returns what the kernel's flows received on the interface and sent
// out of it, summed over the processors.
func (a *Attachment) Stats() datapath.PortStats {
	var per []portCounters
	var s datapath.PortStats
	if a.f.ports.Lookup(a.ifindex, &per) == nil {
		for _, c := range per {
			s.RxPackets += c.RxPackets
			s.RxBytes += c.RxBytes
			s.TxPackets += c.TxPackets
			s.TxBytes += c.TxBytes
		}
	}
	return s
}

// Put mirrors an installed or replaced flow into the kernel when the
// programs can run it, and removes an earlier copy when they cannot. It
// reports whether the flow runs in the kernel.
func (f *FastPath) Put(key, mask *packet.FlowKey, actions []datapath.Action, ports Ports, resetStats bool) bool {
	id := flowID{key.Masked(mask), *mask}
	f.mu.Lock()
	defer f.mu.Unlock()
	bkey, bmask, in, out, ok := translate(&id.key, mask, actions, ports, &f.val)
	e := f.entries[id]
	if e != nil && resetStats {
		e.carry = datapath.FlowStats{}
	}
	if !ok {
		if e != nil && e.inKernel {
			if st, ok := f.removeLocked(e); ok && !resetStats {
				e.carry = MergeStats(e.carry, st)
			}
		}
		return false
	}
	for i := range bkey {
		bkey[i] &= bmask[i]
	}
	if e != nil && e.inKernel && f.slots[e.slot].mask == bmask {
		binary.NativeEndian.PutUint16(bkey[keyMaskNo:], uint16(e.slot))
		if bkey == e.bkey {
			// Same match: replace the actions, keep the counters.
			if !resetStats && f.flows.Lookup(unsafe.Pointer(&e.bkey), unsafe.Pointer(&f.old)) == nil {
				copy(f.val[valActSize:], f.old[valActSize:])
			}
			if f.flows.Update(unsafe.Pointer(&e.bkey), unsafe.Pointer(&f.val), ebpf.UpdateExist) == nil {
				e.out = out
				return true
			}
		}
	}
	if e != nil && e.inKernel {
		if st, ok := f.removeLocked(e); ok && !resetStats {
			e.carry = MergeStats(e.carry, st)
		}
	}
	slot, err := f.acquireMaskLocked(bmask)
	if err != nil {
		return false
	}
	binary.NativeEndian.PutUint16(bkey[keyMaskNo:], uint16(slot))
	fresh := e == nil
	if fresh {
		e = &entry{}
	}
	e.bkey = bkey
	if err := f.flows.Update(unsafe.Pointer(&e.bkey), unsafe.Pointer(&f.val), ebpf.UpdateAny); err != nil {
		f.releaseMaskLocked(slot)
		return false
	}
	if fresh {
		f.entries[id] = e
	}
	e.slot, e.in, e.out, e.inKernel = slot, in, out, true
	f.nkernel++
	return true
}

// Delete removes the kernel's copy of a flow and returns the counters of
// the packets the kernel forwarded for it.
func (f *FastPath) Delete(key, mask *packet.FlowKey) (datapath.FlowStats, bool) {
	return f.lookup(key, mask, true)
}

// FlowStats returns the counters of the packets the kernel forwarded for a
// flow, and false for a flow it has never held.
func (f *FastPath) FlowStats(key, mask *packet.FlowKey) (datapath.FlowStats, bool) {
	return f.lookup(key, mask, false)
}

// lookup returns a flow's kernel counters, forgetting the flow if remove.
func (f *FastPath) lookup(key, mask *packet.FlowKey, remove bool) (datapath.FlowStats, bool) {
	id := flowID{key.Masked(mask), *mask}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.entries[id]
	if e == nil {
		return datapath.FlowStats{}, false
	}
	if remove {
		delete(f.entries, id)
	}
	return f.countersLocked(e, remove), true
}

// countersLocked returns e's counters, those it carries and its kernel
// copy's, removing the copy if remove.
func (f *FastPath) countersLocked(e *entry, remove bool) datapath.FlowStats {
	st := e.carry
	switch {
	case !e.inKernel:
	case remove:
		if s, ok := f.removeLocked(e); ok {
			st = MergeStats(st, s)
		}
	case f.flows.Lookup(unsafe.Pointer(&e.bkey), unsafe.Pointer(&f.old)) == nil:
		st = MergeStats(st, valueStats(&f.old))
	}
	return st
}

// removeLocked deletes e's kernel copy and returns its final counters.
func (f *FastPath) removeLocked(e *entry) (datapath.FlowStats, bool) {
	err := f.flows.LookupAndDelete(unsafe.Pointer(&e.bkey), unsafe.Pointer(&f.old))
	e.inKernel = false
	f.nkernel--
	f.releaseMaskLocked(e.slot)
	if err != nil {
		return datapath.FlowStats{}, false
	}
	return valueStats(&f.old), true
}

// ForgetInterface removes the kernel's copies of the flows that enter or
// leave through an interface, before its port goes away: the kernel must
// not send to an interface index that a new interface may take.
func (f *FastPath) ForgetInterface(ifindex uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.entries {
		if e.inKernel && (e.in == ifindex || e.out == ifindex) {
			if st, ok := f.removeLocked(e); ok {
				e.carry = MergeStats(e.carry, st)
			}
		}
	}
}

// Stats are the fast path's counters.
type Stats struct {
	Packets, Bytes uint64 // forwarded or dropped by kernel flows
	Flows          int    // flows held in the kernel
}

// Stats returns the counters summed over the processors.
func (f *FastPath) Stats() Stats {
	var per []struct{ Packets, Bytes uint64 }
	var s Stats
	if f.counters.Lookup(uint32(0), &per) == nil {
		for _, c := range per {
			s.Packets += c.Packets
			s.Bytes += c.Bytes
		}
	}
	f.mu.Lock()
	s.Flows = f.nkernel
	f.mu.Unlock()
	return s
}

var errNoMaskSlot = errors.New("fast path: all mask slots in use")

func (f *FastPath) acquireMaskLocked(m [keySize]byte) (int, error) {
	if i, ok := f.slotOf[m]; ok {
		f.slots[i].refs++
		return i, nil
	}
	i := 0
	for i < maxMasks && f.slots[i].refs > 0 {
		i++
	}
	if i == maxMasks {
		return 0, errNoMaskSlot
	}
	// No flow carries slot i's number yet, so a packet that reads the
	// mask half written finds nothing under it.
	f.slots[i] = maskSlot{mask: m, refs: 1}
	f.slotOf[m] = i
	f.nslots = max(f.nslots, i+1)
	if err := f.writeMasks(); err != nil {
		f.releaseMaskLocked(i)
		return 0, err
	}
	return i, nil
}

func (f *FastPath) releaseMaskLocked(i int) {
	if f.slots[i].refs--; f.slots[i].refs > 0 {
		return
	}
	delete(f.slotOf, f.slots[i].mask)
	f.slots[i] = maskSlot{}
	for f.nslots > 0 && f.slots[f.nslots-1].refs == 0 {
		f.nslots--
	}
	f.writeMasks()
}

func (f *FastPath) writeMasks() error {
	var v [masksValSize]byte
	binary.NativeEndian.PutUint32(v[masksCount:], uint32(f.nslots))
	for i := range f.nslots {
		copy(v[masksFirst+i*keySize:], f.slots[i].mask[:])
	}
	if err := f.masks.Update(uint32(0), v[:], ebpf.UpdateAny); err != nil {
		return fmt.Errorf("fast path: write the mask table: %w", err)
	}
	return nil
}

// translate turns a flow into the kernel's key, mask and value, or
// reports false when the programs cannot run it exactly: the match must
// pin the input port to an attached interface and may only look at what
// the classifier reads from an untagged IPv4 frame, and the actions may
// only rewrite Ethernet, IPv4 and TCP/UDP port fields and then send to
// one attached interface, or drop.
func translate(key, mask *packet.FlowKey, actions []datapath.Action, ports Ports, val *[valSize]byte) (bkey, bmask [keySize]byte, in, out uint32, ok bool) {
	*val = [valSize]byte{}
	if mask.InPort != ^uint32(0) {
		return
	}
	if in, ok = ports(datapath.PortNo(key.InPort)); !ok {
		return
	}
	ok = false
	// Fields the classifier leaves zero: a flow that needs them non-zero
	// never matches a frame the kernel takes.
	if key.TunID != 0 || key.TunSrc != [4]byte{} || key.TunDst != [4]byte{} || key.TunTOS != 0 || key.TunTTL != 0 ||
		key.VLAN != 0 || key.IPv6Src != [16]byte{} || key.IPv6Dst != [16]byte{} || key.NwFrag != 0 ||
		key.ArpSHA != [6]byte{} || key.ArpTHA != [6]byte{} {
		return
	}
	if key.EthType != packet.EtherTypeIPv4&mask.EthType {
		return
	}
	encodeKey(&bkey, key, in)
	encodeKey(&bmask, mask, ^uint32(0))
	protoIs := func(p uint8) bool { return mask.NwProto == 0xff && key.NwProto == p && mask.EthType == 0xffff }
	var flags uint32
	output := false
	for _, a := range actions {
		if output {
			return // one output, last
		}
		switch a.Kind {
		case datapath.ActSetEth:
			if a.Eth.Fields&datapath.SetDst != 0 {
				flags |= actEthDst
				copy(val[valEthDst:], a.Eth.Dst[:])
			}
			if a.Eth.Fields&datapath.SetSrc != 0 {
				flags |= actEthSrc
				copy(val[valEthSrc:], a.Eth.Src[:])
			}
		case datapath.ActSetIPv4:
			s := &a.IPv4
			if s.Fields&datapath.SetSrc != 0 {
				flags |= actNwSrc
				copy(val[valNwSrc:], s.Src[:])
			}
			if s.Fields&datapath.SetDst != 0 {
				flags |= actNwDst
				copy(val[valNwDst:], s.Dst[:])
			}
			if s.Fields&datapath.SetTOS != 0 {
				flags |= actTOS
				val[valTOS] = s.TOS
			}
			if s.Fields&datapath.SetTTL != 0 {
				flags |= actTTL
				val[valTTL] = s.TTL
			}
		case datapath.ActSetTCP, datapath.ActSetUDP:
			if a.Kind == datapath.ActSetTCP && !protoIs(packet.IPProtoTCP) || a.Kind == datapath.ActSetUDP && !protoIs(packet.IPProtoUDP) {
				return
			}
			if a.L4.Fields&datapath.SetSrc != 0 {
				flags |= actTpSrc
				binary.BigEndian.PutUint16(val[valTpSrc:], a.L4.Src)
			}
			if a.L4.Fields&datapath.SetDst != 0 {
				flags |= actTpDst
				binary.BigEndian.PutUint16(val[valTpDst:], a.L4.Dst)
			}
		case datapath.ActOutput:
			if out, ok = ports(a.Port); !ok {
				return
			}
			ok, output = false, true
		default:
			return
		}
	}
	if !output {
		flags, out = 0, 0 // a drop
	}
	binary.NativeEndian.PutUint32(val[valFlags:], flags)
	binary.NativeEndian.PutUint32(val[valOutIf:], out)
	return bkey, bmask, in, out, true
}

// encodeKey writes the fields of k the classifier reads, in its layout.
func encodeKey(b *[keySize]byte, k *packet.FlowKey, ifindex uint32) {
	binary.NativeEndian.PutUint32(b[keyIfindex:], ifindex)
	copy(b[keyEthDst:], k.EthDst[:])
	copy(b[keyEthSrc:], k.EthSrc[:])
	binary.BigEndian.PutUint16(b[keyEthType:], k.EthType)
	b[keyProto], b[keyTOS], b[keyTTL] = k.NwProto, k.NwTOS, k.NwTTL
	copy(b[keyNwSrc:], k.NwSrc[:])
	copy(b[keyNwDst:], k.NwDst[:])
	binary.BigEndian.PutUint16(b[keyTpSrc:], k.TpSrc)
	binary.BigEndian.PutUint16(b[keyTpDst:], k.TpDst)
	binary.BigEndian.PutUint16(b[keyICMPID:], k.ICMPID)
}

func valueStats(v *[valSize]byte) datapath.FlowStats {
	st := datapath.FlowStats{
		Packets:  binary.NativeEndian.Uint64(v[valPackets:]),
		Bytes:    binary.NativeEndian.Uint64(v[valBytes:]),
		TCPFlags: uint16(binary.NativeEndian.Uint64(v[valTCPFlags:])),
	}
	if used := binary.NativeEndian.Uint64(v[valUsed:]); used != 0 {
		var ts unix.Timespec
		if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
			st.LastUsed = time.Now().Add(-time.Duration(uint64(ts.Nano()) - used))
		}
	}
	return st
}

// MergeStats adds the counters of b to a.
func MergeStats(a, b datapath.FlowStats) datapath.FlowStats {
	a.Packets += b.Packets
	a.Bytes += b.Bytes
	a.TCPFlags |= b.TCPFlags
	if b.LastUsed.After(a.LastUsed) {
		a.LastUsed = b.LastUsed
	}
	return a
}
