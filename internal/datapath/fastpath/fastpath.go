// Package fastpath runs in the kernel the flows of the userspace datapath
// that only rewrite headers and send to one port — another local
// interface or a VXLAN tunnel — so that their packets are forwarded in the
// sender's own softirq, as the Open vSwitch kernel datapath forwards,
// instead of waking a receiver thread.
//
// Two eBPF programs share the work. A socket filter on each port's
// AF_PACKET socket, which the kernel runs first, computes the packet's flow
// key exactly as packet.ExtractFlowKey does and looks it up mask by mask,
// as the kernel datapath does; on a hit it counts the packet, keeps it
// from the socket and leaves the flow's actions for the second program, a
// tc (tcx) ingress program on the same interface, which the kernel runs
// next for the same packet on the same processor: it rewrites the headers,
// fixing checksums with the kernel's helpers, and redirects the packet to
// the output interface, or pushes VXLAN headers and hands it to the
// underlay's next hop. A third program, on the underlay interface of the
// VXLAN port, pops the headers of frames whose tunnel key has a kernel flow
// and redirects them to the key's interface. Frames the programs do not
// take — misses, VLAN tags, IP options, fragments, anything but IPv4, GSO
// super-frames and long TCP segments into the overlay, what peers' agents
// send — reach the sockets as before, so the userspace datapath stays the
// whole truth and the kernel holds a copy of some of its flows.
//
// The datapath mirrors every flow it installs with Put and removes it with
// Delete before its own copy; flows whose match or actions the programs
// cannot express stay in userspace only.
package fastpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
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
	decap                            *ebpf.Map // tunnel key → interface
	classify, forward                *ebpf.Program

	mu      sync.Mutex
	entries map[flowID]*entry // guarded by mu
	slots   [maxMasks]maskSlot
	slotOf  map[[keySize]byte]int
	nkernel int // entries held in the kernel
	// Scratch for map values, so that handing them to the kernel does
	// not allocate; guarded by mu.
	val, old [valSize]byte
}

type flowID struct{ key, mask packet.FlowKey } // key masked

type entry struct {
	bkey    [keySize]byte // the kernel map's key, masked, with the mask number; a decap's VNI word
	slot    int
	in, out uint32 // interfaces; out 0 for a drop
	decap   bool   // in the decapsulation table, not the classifier's
	overlay bool   // pushes or pops the overlay's tunnel
	// carry keeps the counters of a kernel copy the flow lost when its
	// actions changed to ones the kernel cannot run.
	carry    datapath.FlowStats
	inKernel bool
}

type maskSlot struct {
	mask [keySize]byte
	refs int
}

// Port is how the kernel reaches a datapath port: an attached interface,
// or the overlay.
type Port struct {
	Ifindex uint32   // an interface with the programs attached
	Overlay *Overlay // the VXLAN port, with Ifindex 0
}

// Overlay describes a VXLAN port whose tunnels the kernel may push and
// pop (AttachOverlay).
type Overlay struct {
	Local   netip.Addr // the port's IPv4 address, the tunnels' default source
	UDPPort uint16
	// Route says how the underlay reaches a peer: the interface and its
	// MTU.
	Route func(dst netip.Addr) (ifindex uint32, mtu int, ok bool)
}

// Ports says how the kernel reaches a datapath port; false for ports it
// cannot use.
type Ports func(datapath.PortNo) (Port, bool)

// New loads the programs. It fails where eBPF is not available (no
// privilege, an old kernel); the datapath then runs without a fast path.
func New() (*FastPath, error) {
	f := &FastPath{entries: make(map[flowID]*entry), slotOf: make(map[[keySize]byte]int)}
	var err error
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if f.masks, err = ebpf.NewMap(&ebpf.MapSpec{Name: "mn_masks", Type: ebpf.Array, KeySize: 4, ValueSize: masksValSize, MaxEntries: 1}); err != nil {
		return nil, fmt.Errorf("fast path: mask table: %w", err)
	}
	if f.flows, err = ebpf.NewMap(&ebpf.MapSpec{Name: "mn_flows", Type: ebpf.Hash, KeySize: keySize, ValueSize: valSize,
		MaxEntries: MaxFlows, Flags: unix.BPF_F_NO_PREALLOC}); err != nil {
		return nil, fmt.Errorf("fast path: flow table: %w", err)
	}
	if f.handover, err = ebpf.NewMap(&ebpf.MapSpec{Name: "mn_handover", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: hoSize, MaxEntries: 1}); err != nil {
		return nil, fmt.Errorf("fast path: hand-over: %w", err)
	}
	if f.counters, err = ebpf.NewMap(&ebpf.MapSpec{Name: "mn_counters", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: ctrSize, MaxEntries: 1}); err != nil {
		return nil, fmt.Errorf("fast path: counters: %w", err)
	}
	if f.ports, err = ebpf.NewMap(&ebpf.MapSpec{Name: "mn_ports", Type: ebpf.PerCPUHash, KeySize: 4, ValueSize: portValSize, MaxEntries: maxPorts}); err != nil {
		return nil, fmt.Errorf("fast path: port counters: %w", err)
	}
	if f.decap, err = ebpf.NewMap(&ebpf.MapSpec{Name: "mn_decap", Type: ebpf.Hash, KeySize: 4, ValueSize: decSize,
		MaxEntries: maxPorts, Flags: unix.BPF_F_NO_PREALLOC}); err != nil {
		return nil, fmt.Errorf("fast path: decapsulation table: %w", err)
	}
	if f.classify, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "mn_classify", Type: ebpf.SocketFilter, License: "Apache-2.0",
		Instructions: classifier(f.masks.FD(), f.flows.FD(), f.handover.FD(), f.counters.FD(), f.ports.FD())}); err != nil {
		return nil, fmt.Errorf("fast path: load the classifier: %w", err)
	}
	if f.forward, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "mn_forward", Type: ebpf.SchedCLS, License: "Apache-2.0",
		Instructions: forwarder(f.handover.FD())}); err != nil {
		return nil, fmt.Errorf("fast path: load the forwarder: %w", err)
	}
	if err = f.writeMasks(); err != nil {
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
	for _, m := range []*ebpf.Map{f.masks, f.flows, f.handover, f.counters, f.ports, f.decap} {
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
	sock    int           // the port's socket, with the classifier; -1 for an overlay
	prog    *ebpf.Program // an overlay's own decapsulator
}

// Attach puts the programs on an interface and on the AF_PACKET socket
// that receives from it. It must run in the interface's network namespace.
// The tc program goes first: a frame the filter keeps from the socket must
// find it.
func (f *FastPath) Attach(ifindex, sock int) (*Attachment, error) {
	l, err := f.attachTC(ifindex, f.forward)
	if err != nil {
		return nil, err
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
	if a.sock >= 0 {
		unix.SetsockoptInt(a.sock, unix.SOL_SOCKET, unix.SO_DETACH_BPF, 0)
	}
	a.link.Close()
	if a.prog != nil {
		a.prog.Close()
	}
	a.f.ports.Delete(a.ifindex)
}

// AttachOverlay puts a decapsulator on the underlay interface that
// carries a VXLAN port's traffic: frames to local:udpPort whose tunnel key
// has a kernel flow leave the tunnel there. It must run in the interface's
// network namespace. The interface's counters are the overlay's.
func (f *FastPath) AttachOverlay(ifindex int, local netip.Addr, udpPort uint16) (*Attachment, error) {
	prog, err := f.loadDecapsulator(local, udpPort)
	if err != nil {
		return nil, err
	}
	l, err := f.attachTC(ifindex, prog)
	if err != nil {
		prog.Close()
		return nil, err
	}
	return &Attachment{f: f, ifindex: uint32(ifindex), link: l, sock: -1, prog: prog}, nil
}

// loadDecapsulator loads the decapsulator of a VXLAN port bound to
// local:udpPort (local zero: any address).
func (f *FastPath) loadDecapsulator(local netip.Addr, udpPort uint16) (*ebpf.Program, error) {
	var raw uint32
	if local.IsValid() {
		a4 := local.As4()
		raw = binary.NativeEndian.Uint32(a4[:])
	}
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], udpPort)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "mn_decap", Type: ebpf.SchedCLS, License: "Apache-2.0",
		Instructions: decapsulator(f.decap.FD(), f.counters.FD(), f.ports.FD(), raw, binary.NativeEndian.Uint16(port[:]))})
	if err != nil {
		return nil, fmt.Errorf("fast path: load the decapsulator: %w", err)
	}
	return prog, nil
}

// attachTC gives an interface fresh counters and puts prog on its tc
// ingress.
func (f *FastPath) attachTC(ifindex int, prog *ebpf.Program) (link.Link, error) {
	zero := make([]portCounters, ebpf.MustPossibleCPU())
	if err := f.ports.Update(uint32(ifindex), zero, ebpf.UpdateAny); err != nil {
		return nil, fmt.Errorf("fast path: counters of interface %d: %w", ifindex, err)
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		f.ports.Delete(uint32(ifindex))
		return nil, fmt.Errorf("fast path: attach %s to interface %d's tc ingress: %w", prog, ifindex, err)
	}
	return l, nil
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
	kf, ok := translate(&id.key, mask, actions, ports, &f.val)
	e := f.entries[id]
	if e != nil && resetStats {
		e.carry = datapath.FlowStats{}
	}
	retire := func() {
		if e != nil {
			f.retireLocked(e, !resetStats)
		}
	}
	if !ok {
		retire()
		return false
	}
	// kf.key is masked already (translate encodes id.key), and a flow
	// with the same id in the kernel has the same mask, so its slot.
	m, counters := f.table(kf.decap)
	slot := -1
	if e != nil && e.inKernel && e.decap == kf.decap {
		if !kf.decap {
			slot = e.slot
			binary.NativeEndian.PutUint16(kf.key[keyMaskNo:], uint16(slot))
		}
		if e.bkey == kf.key {
			// Same match: replace the actions, keep the counters.
			if !resetStats && m.Lookup(unsafe.Pointer(&e.bkey), unsafe.Pointer(&f.old)) == nil {
				copy(f.val[counters:], f.old[counters:])
			}
			if m.Update(unsafe.Pointer(&e.bkey), unsafe.Pointer(&f.val), ebpf.UpdateExist) == nil {
				e.out, e.overlay = kf.out, kf.overlay
				return true
			}
		}
	}
	retire()
	if !kf.decap {
		var err error
		if slot, err = f.acquireMaskLocked(kf.mask); err != nil {
			return false
		}
		binary.NativeEndian.PutUint16(kf.key[keyMaskNo:], uint16(slot))
	}
	fresh := e == nil
	if fresh {
		e = &entry{}
	}
	e.bkey = kf.key
	if err := m.Update(unsafe.Pointer(&e.bkey), unsafe.Pointer(&f.val), ebpf.UpdateAny); err != nil {
		if slot >= 0 {
			f.releaseMaskLocked(slot)
		}
		return false
	}
	if fresh {
		f.entries[id] = e
	}
	e.slot, e.in, e.out, e.decap, e.overlay, e.inKernel = slot, kf.in, kf.out, kf.decap, kf.overlay, true
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
			st = st.Merge(s)
		}
	default:
		if m, c := f.table(e.decap); m.Lookup(unsafe.Pointer(&e.bkey), unsafe.Pointer(&f.old)) == nil {
			st = st.Merge(valueStats(f.old[c:]))
		}
	}
	return st
}

// removeLocked deletes e's kernel copy and returns its final counters.
func (f *FastPath) removeLocked(e *entry) (datapath.FlowStats, bool) {
	m, c := f.table(e.decap)
	err := m.LookupAndDelete(unsafe.Pointer(&e.bkey), unsafe.Pointer(&f.old))
	if !e.decap {
		f.releaseMaskLocked(e.slot)
	}
	e.inKernel = false
	f.nkernel--
	if err != nil {
		return datapath.FlowStats{}, false
	}
	return valueStats(f.old[c:]), true
}

// table returns the map that holds a kind of kernel flow (decapsulations,
// or the others) and where the counters start in its values.
func (f *FastPath) table(decap bool) (m *ebpf.Map, counters int) {
	if decap {
		return f.decap, decPackets
	}
	return f.flows, valPackets
}

// ForgetInterface removes the kernel's copies of the flows that enter or
// leave through an interface, before its port goes away: the kernel must
// not send to an interface index that a new interface may take.
func (f *FastPath) ForgetInterface(ifindex uint32) {
	f.forget(func(e *entry) bool { return e.in == ifindex || e.out == ifindex })
}

// ForgetOverlay removes the kernel's copies of the flows that push or pop
// the overlay's tunnels, before the VXLAN port goes away.
func (f *FastPath) ForgetOverlay() { f.forget(func(e *entry) bool { return e.overlay }) }

// forget removes the kernel's copies of the flows that match.
func (f *FastPath) forget(match func(*entry) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.entries {
		if match(e) {
			f.retireLocked(e, true)
		}
	}
}

// retireLocked removes e's kernel copy, if any, keeping its counters in
// e.carry if keep.
func (f *FastPath) retireLocked(e *entry, keep bool) {
	if !e.inKernel {
		return
	}
	if st, ok := f.removeLocked(e); ok && keep {
		e.carry = e.carry.Merge(st)
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
	f.writeMasks()
}

func (f *FastPath) writeMasks() error {
	var v [masksValSize]byte
	// The classifier tries the slots up to the last one in use.
	n := 0
	for i := range f.slots {
		if f.slots[i].refs > 0 {
			copy(v[masksFirst+i*keySize:], f.slots[i].mask[:])
			n = i + 1
		}
	}
	binary.NativeEndian.PutUint32(v[masksCount:], uint32(n))
	if err := f.masks.Update(uint32(0), v[:], ebpf.UpdateAny); err != nil {
		return fmt.Errorf("fast path: write the mask table: %w", err)
	}
	return nil
}

// kernelFlow is a flow as the programs hold it.
type kernelFlow struct {
	key, mask [keySize]byte // the classifier's; a decap's VNI word in key
	in, out   uint32        // interfaces: input (0 for the overlay), output (the underlay's for the overlay; 0 drops)
	decap     bool          // a tunnel key's flow, in the decapsulation table
	overlay   bool          // pushes or pops a tunnel
}

// translate turns a flow into the kernel's key, mask and value (in val),
// or reports false when the programs cannot run it exactly. Either the
// flow enters from an attached interface, matches only what the
// classifier reads from an untagged IPv4 frame, and rewrites Ethernet,
// IPv4 and TCP/UDP port fields before it drops or sends to one attached
// interface or into the overlay; or it is a tunnel key's flow (in-port
// the overlay, match the tunnel key only) that sends to one attached
// interface.
func translate(key, mask *packet.FlowKey, actions []datapath.Action, ports Ports, val *[valSize]byte) (kf kernelFlow, ok bool) {
	*val = [valSize]byte{}
	if mask.InPort != ^uint32(0) {
		return kf, false
	}
	in, ok := ports(datapath.PortNo(key.InPort))
	if !ok {
		return kf, false
	}
	if in.Overlay != nil {
		return translateDecap(key, mask, actions, ports, val)
	}
	// Fields the classifier leaves zero: a flow that needs them non-zero
	// never matches a frame the kernel takes.
	if key.TunID != 0 || key.TunSrc != [4]byte{} || key.TunDst != [4]byte{} || key.TunTOS != 0 || key.TunTTL != 0 ||
		key.VLAN != 0 || key.IPv6Src != [16]byte{} || key.IPv6Dst != [16]byte{} || key.NwFrag != 0 ||
		key.ARPSHA != [6]byte{} || key.ARPTHA != [6]byte{} {
		return kf, false
	}
	if key.EthType != packet.EtherTypeIPv4&mask.EthType {
		return kf, false
	}
	kf.in = in.Ifindex
	encodeKey(&kf.key, key, kf.in)
	encodeKey(&kf.mask, mask, ^uint32(0))
	protoIs := func(p uint8) bool { return mask.NwProto == 0xff && key.NwProto == p && mask.EthType == 0xffff }
	var (
		flags  uint32
		output bool
		tun    *datapath.TunnelSet
	)
	for i := range actions {
		a := &actions[i]
		if output {
			return kf, false // one output, last
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
				return kf, false
			}
			if a.L4.Fields&datapath.SetSrc != 0 {
				flags |= actTpSrc
				binary.BigEndian.PutUint16(val[valTpSrc:], a.L4.Src)
			}
			if a.L4.Fields&datapath.SetDst != 0 {
				flags |= actTpDst
				binary.BigEndian.PutUint16(val[valTpDst:], a.L4.Dst)
			}
		case datapath.ActSetTunnel:
			tun = &a.Tunnel
		case datapath.ActOutput:
			out, ok := ports(a.Port)
			switch {
			case !ok:
				return kf, false
			case out.Overlay != nil:
				if tun == nil {
					return kf, false
				}
				if kf.out, ok = tunnelValue(val, tun, out.Overlay); !ok {
					return kf, false
				}
				flags |= actTunnel
				kf.overlay = true
			default:
				kf.out = out.Ifindex
			}
			output = true
		default:
			return kf, false
		}
	}
	if !output {
		flags, kf.out = 0, 0 // a drop
	}
	binary.NativeEndian.PutUint32(val[valFlags:], flags)
	binary.NativeEndian.PutUint32(val[valOutIf:], kf.out)
	return kf, true
}

// tunnelValue writes the outer headers of a tunnel into val, as the
// overlay's VXLAN port would send: to the same UDP port of the peer, with
// the tunnel's TOS and TTL. It returns the underlay interface, or false if
// the underlay has no route to the peer.
func tunnelValue(val *[valSize]byte, tun *datapath.TunnelSet, o *Overlay) (underlay uint32, ok bool) {
	if !tun.Dst.Is4() || o.Route == nil {
		return 0, false
	}
	ifindex, mtu, ok := o.Route(tun.Dst)
	if !ok || mtu <= vxlanOverhead+ethLen {
		return 0, false
	}
	src := o.Local
	if tun.Src.Is4() {
		src = tun.Src
	}
	if !src.Is4() {
		return 0, false
	}
	ttl := tun.TTL
	if ttl == 0 {
		ttl = datapath.DefaultTunnelTTL
	}
	binary.BigEndian.PutUint32(val[valVNI:], tun.VNI<<8) // the VXLAN header's second word
	s4, d4 := src.As4(), tun.Dst.As4()
	copy(val[valTunSrc:], s4[:])
	copy(val[valTunDst:], d4[:])
	val[valTunTOS], val[valTunTTL] = tun.TOS, ttl
	binary.BigEndian.PutUint16(val[valTunDport:], o.UDPPort)
	binary.NativeEndian.PutUint16(val[valMaxLen:], uint16(min(mtu-vxlanOverhead, 0xffff)))
	return ifindex, true
}

// translateDecap handles a flow from the overlay: the kernel runs the
// tunnel key's flows the agent installs (in-port and tunnel key, one
// output to an attached interface).
func translateDecap(key, mask *packet.FlowKey, actions []datapath.Action, ports Ports, val *[valSize]byte) (kf kernelFlow, ok bool) {
	if *mask != (packet.FlowKey{InPort: ^uint32(0), TunID: ^uint32(0)}) || len(actions) != 1 || actions[0].Kind != datapath.ActOutput {
		return kf, false
	}
	out, ok := ports(actions[0].Port)
	if !ok || out.Overlay != nil {
		return kf, false
	}
	kf.decap, kf.overlay, kf.out = true, true, out.Ifindex
	binary.BigEndian.PutUint32(kf.key[:4], key.TunID<<8) // as the VXLAN header has it
	binary.NativeEndian.PutUint32(val[decOutIf:], kf.out)
	return kf, true
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

// valueStats reads the packets, bytes, last use (the kernel's monotonic
// nanoseconds) and TCP flags at the start of v, where either table's
// counters start.
func valueStats(v []byte) datapath.FlowStats {
	st := datapath.FlowStats{
		Packets:  binary.NativeEndian.Uint64(v[0:]),
		Bytes:    binary.NativeEndian.Uint64(v[8:]),
		TCPFlags: uint16(binary.NativeEndian.Uint64(v[24:])),
	}
	st.LastUsed = datapath.MonotonicToTime(time.Duration(binary.NativeEndian.Uint64(v[16:])))
	return st
}
