// Package userspace is a datapath in the agent's process for Linux: ports
// attach to existing interfaces with AF_PACKET (TPACKET_V2 or V3 rings) or,
// with Config.XDP, AF_XDP; internal ports are tap devices, and one VXLAN
// port per datapath carries the overlay on a UDP socket. Flows, actions and
// upcalls run in the shared engine.
//
// Network namespaces: a Datapath opens every socket, tap and netlink
// subscription in the namespace given by Config.NetNS (by handle), from a
// goroutine locked to a thread switched into it; the caller's threads are
// never moved. Without a handle it uses the namespace of the process's
// threads at New.
//
// Offloads: by default sockets are opened without PACKET_VNET_HDR, so a GSO
// super-frame larger than the egress MTU is dropped (and counted), and a
// frame whose checksum was left to hardware (TP_STATUS_CSUMNOTREADY) has its
// TCP or UDP checksum completed in software; peers should then disable TSO
// on attached veths (ethtool -K dev tx off). With Config.Offload, sockets
// use PACKET_VNET_HDR and super-frames pass whole between netdev ports.
package userspace

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/datapath/engine"
	"github.com/midonet/midonet/internal/datapath/fastpath"
	"github.com/midonet/midonet/internal/nsthread"
)

var _ datapath.Datapath = (*Datapath)(nil)

// Config configures a Datapath.
type Config struct {
	Engine engine.Config
	// NetNS is the network namespace of the ports; netns.None() (-1) or
	// the zero value with NetNSSet false means the current one.
	NetNS    netns.NsHandle
	NetNSSet bool
	// Offload opens netdev ports with PACKET_VNET_HDR: checksums left to
	// offload and GSO super-frames pass whole between such ports (the
	// kernel finishes them on output), so peers may keep TSO on. A
	// super-frame that must go to another kind of port is dropped and
	// counted. Ring slots then hold 64 KiB frames, so RingV3, which packs
	// frames by size, is the better partner.
	Offload bool
	// XDP attaches netdev ports with AF_XDP where the interface allows it
	// (an XDP program redirecting receive queue 0 to an XSK socket; MTU up
	// to 1500), falling back to AF_PACKET otherwise. Offload does not apply
	// to AF_XDP ports, and their peers must send complete checksums (TX
	// checksum offload off): XDP frames say nothing about pending ones.
	XDP bool
	// Ring selects the AF_PACKET ring version; the zero value is RingV2.
	Ring RingVersion
	// BusyPoll is how long a receiver keeps polling all ports after the
	// last packet before it sleeps (see busypoll.go): lower latency for
	// request-reply traffic at the cost of a spinning core while traffic
	// lasts. Zero turns it off. AF_PACKET V2 ports and the VXLAN port
	// take part; V3 and AF_XDP ports keep their own receivers.
	BusyPoll time.Duration
	// CPUs, if set, are the processors the ports' receivers run on (their
	// threads are pinned), as Open vSwitch pins its poll-mode threads: a
	// busy-polling receiver then does not compete for a core with the
	// processes whose packets it carries.
	CPUs []int
	// FastPath mirrors the flows that only rewrite headers and send to
	// one AF_PACKET port or into the VXLAN port, and the tunnel keys'
	// flows out of it, into the kernel (package fastpath), so their
	// packets are forwarded in the sender's softirq without waking a
	// receiver. Where eBPF is unavailable the datapath logs why and runs
	// without it.
	FastPath bool
	// RingBlockSize and RingBlocks size each AF_PACKET port's receive
	// ring; a block must hold the largest frame. Defaults 256 KiB and 8.
	RingBlockSize int
	RingBlocks    int
	Logger        *slog.Logger
}

// RingVersion selects the AF_PACKET ring layout of netdev ports.
type RingVersion uint8

// Ring versions. RingV2 wakes the reader per frame when idle and batches
// under load: the lowest latency, so it is the default. RingV3 batches by
// blocks the kernel retires when full or after 1 ms: the fewest wake-ups,
// but up to 1 ms of added latency per hop when traffic is light (measured
// here: ping RTT through two ports p50 155 µs with V2, 1010 µs with V3, at
// the same packet rate; see bench/datapath/run.sh).
const (
	RingV2 RingVersion = iota
	RingV3
)

// Defaults for Config.
const (
	DefaultRingBlockSize = 256 << 10
	DefaultRingBlocks    = 8
)

// port is what every port kind implements.
type port interface {
	engine.Transmitter
	// start begins receiving; the port hands frames to w.
	start(ep *engine.Port)
	// close stops receiving, waits for the receiver and releases the
	// port's resources; Transmit fails afterwards.
	close()
	ifindex() int // 0 for ports without an interface
	// setMTU reports a new MTU of the port's interface.
	setMTU(mtu int)
}

// Datapath is the userspace datapath.
type Datapath struct {
	cfg         Config
	log         *slog.Logger
	engine.Core // flows, execution, upcalls and ports
	e           *engine.Engine
	ns          netns.NsHandle // -1: current namespace

	mu     sync.Mutex
	ports  map[datapath.PortNo]port // guarded by mu
	states map[int]linkState        // by ifindex, guarded by mu

	nlDone  chan struct{}
	nlWG    sync.WaitGroup
	closeMu sync.Once

	busy busyPoller

	fp      *fastpath.FastPath // nil without a fast path
	fpMu    sync.Mutex
	fpPorts map[datapath.PortNo]fastPort // ports attached to the fast path, guarded by fpMu
	routes  map[netip.Addr]underlayRoute // guarded by fpMu
	routeNL *netlink.Handle              // for the routes, guarded by fpMu
	// limited are the ports with a rate limit, whose flows stay out of
	// the kernel so that every packet meets the policer; guarded by fpMu.
	limited map[datapath.PortNo]bool
}

type linkState struct {
	no   datapath.PortNo
	name string
	up   bool
}

// AllowedCPUs returns the processors this process may run on, in
// increasing order (runtime.NumCPU counts them, but under taskset they
// need not start at 0).
func AllowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("read the processors this process may use: %w", err)
	}
	var cpus []int
	for c := range 1024 { // CPU_SETSIZE
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// cpuList formats increasing processor numbers as a list, e.g. "0-3,6".
func cpuList(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); i++ {
		first := cpus[i]
		for i+1 < len(cpus) && cpus[i+1] == cpus[i]+1 {
			i++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if cpus[i] > first {
			fmt.Fprintf(&b, "%d-%d", first, cpus[i])
		} else {
			fmt.Fprintf(&b, "%d", first)
		}
	}
	return b.String()
}

// ParseCPUList parses a Linux-style processor list ("0,2-3") for
// Config.CPUs; empty is none. cpuList formats one.
func ParseCPUList(s string) ([]int, error) {
	var cpus []int
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		first, err := strconv.Atoi(lo)
		if err != nil || first < 0 {
			return nil, fmt.Errorf("%q is not a processor number or range", part)
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(hi); err != nil || last < first {
				return nil, fmt.Errorf("%q is not a processor range", part)
			}
		}
		for c := first; c <= last; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// New starts a datapath with no ports.
func New(cfg Config) (*Datapath, error) {
	if cfg.RingBlockSize <= 0 {
		cfg.RingBlockSize = DefaultRingBlockSize
	}
	if cfg.RingBlocks <= 0 {
		cfg.RingBlocks = DefaultRingBlocks
	}
	allowed, err := AllowedCPUs()
	if err != nil {
		return nil, err
	}
	for _, c := range cfg.CPUs {
		if !slices.Contains(allowed, c) {
			return nil, fmt.Errorf("processor %d for the receivers: this process may run on processors %s", c, cpuList(allowed))
		}
	}
	if cfg.RingBlockSize%unix.Getpagesize() != 0 {
		return nil, fmt.Errorf("ring block size %d is not a multiple of the page size %d", cfg.RingBlockSize, unix.Getpagesize())
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Engine.Logger == nil {
		cfg.Engine.Logger = log
	}
	d := &Datapath{
		busy:   busyPoller{window: cfg.BusyPoll},
		cfg:    cfg,
		log:    log,
		ns:     netns.None(),
		ports:  make(map[datapath.PortNo]port),
		states: make(map[int]linkState),
		nlDone: make(chan struct{}),
	}
	if err := d.busy.init(); err != nil {
		return nil, err
	}
	if cfg.NetNSSet {
		ns, err := dupNS(cfg.NetNS)
		if err != nil {
			d.busy.close()
			return nil, err
		}
		d.ns = ns
	}
	if err := d.watchLinks(); err != nil {
		d.busy.close()
		if d.ns.IsOpen() {
			d.ns.Close()
		}
		return nil, err
	}
	d.e = engine.New(cfg.Engine)
	d.Core = d.e.Core()
	if cfg.FastPath {
		if d.fp, err = fastpath.New(); err != nil {
			log.Warn("running without the kernel fast path", "err", err)
			d.fp = nil
		} else {
			d.fpPorts, d.routes = make(map[datapath.PortNo]fastPort), make(map[netip.Addr]underlayRoute)
			d.limited = make(map[datapath.PortNo]bool)
		}
	}
	return d, nil
}

// pinReceiver locks the calling goroutine to its thread and pins the
// thread to Config.CPUs, if set. The goroutine must end without unlocking,
// so that the pinned thread exits with it.
func (d *Datapath) pinReceiver() {
	if len(d.cfg.CPUs) == 0 {
		return
	}
	runtime.LockOSThread()
	var set unix.CPUSet
	for _, c := range d.cfg.CPUs {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		d.log.Warn("cannot pin a receiver to its processors", "cpus", d.cfg.CPUs, "err", err)
	}
}

func dupNS(ns netns.NsHandle) (netns.NsHandle, error) {
	fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return netns.None(), fmt.Errorf("duplicate netns handle %d: %w", ns, err)
	}
	return netns.NsHandle(fd), nil
}

// inNS runs fn on a thread in the datapath's namespace.
func (d *Datapath) inNS(fn func() error) error {
	if !d.ns.IsOpen() {
		return fn()
	}
	return nsthread.In(d.ns, fn)
}

func (d *Datapath) netlinkHandle() (*netlink.Handle, error) {
	if d.ns.IsOpen() {
		return netlink.NewHandleAt(d.ns)
	}
	return netlink.NewHandle()
}

// AddPort implements datapath.PortManager.
func (d *Datapath) AddPort(spec datapath.PortSpec) (datapath.PortNo, error) {
	var (
		p   port
		err error
	)
	switch spec.Kind {
	case datapath.PortNetdev:
		p, err = d.openNetdev(spec)
	case datapath.PortInternal:
		p, err = d.openTap(spec)
	case datapath.PortVXLAN:
		if spec.UDPPort == 0 {
			spec.UDPPort = datapath.DefaultVXLANPort
		}
		if spec.Name == "" {
			spec.Name = "vxlan"
		}
		p, err = d.openVXLAN(spec)
	default:
		return 0, fmt.Errorf("port %q: unknown kind %v; use netdev, internal or vxlan", spec.Name, spec.Kind)
	}
	if err != nil {
		return 0, err
	}
	ep, err := d.e.AddPort(spec, p)
	if err != nil {
		p.close()
		return 0, err
	}
	d.mu.Lock()
	d.ports[ep.No] = p
	if idx := p.ifindex(); idx != 0 {
		d.states[idx] = linkState{no: ep.No, name: spec.Name, up: true}
	}
	d.mu.Unlock()
	d.attachFast(ep.No, p)
	p.start(ep)
	return ep.No, nil
}

// RemovePort implements datapath.PortManager. Traffic may keep flowing:
// outputs to the port stop first, then its receiver, then its sockets
// close.
func (d *Datapath) RemovePort(no datapath.PortNo) error {
	d.mu.Lock()
	p := d.ports[no]
	d.mu.Unlock()
	if p != nil {
		d.detachFast(no)
	}
	if _, err := d.e.RemovePort(no); err != nil {
		return err
	}
	d.mu.Lock()
	p = d.ports[no]
	delete(d.ports, no)
	if p != nil {
		delete(d.states, p.ifindex())
	}
	d.mu.Unlock()
	if p != nil {
		p.close()
	}
	return nil
}

// Stats implements datapath.Datapath, with the busy-poll counters.
func (d *Datapath) Stats() datapath.Stats {
	s := d.e.Stats()
	s.BusySpins, s.BusyPackets = d.busy.spins.Load(), d.busy.found.Load()
	if d.fp != nil {
		fs := d.fp.Stats()
		s.KernelPackets, s.KernelBytes, s.KernelFlows = fs.Packets, fs.Bytes, fs.Flows
	}
	return s
}

// Close removes every port, stops watching links and stops the engine.
func (d *Datapath) Close() error {
	d.closeMu.Do(func() {
		d.mu.Lock()
		nos := make([]datapath.PortNo, 0, len(d.ports))
		for no := range d.ports {
			nos = append(nos, no)
		}
		d.mu.Unlock()
		for _, no := range nos {
			d.RemovePort(no)
		}
		close(d.nlDone)
		d.nlWG.Wait()
		d.e.Close()
		if d.fp != nil {
			d.fp.Close()
		}
		d.fpMu.Lock()
		if d.routeNL != nil {
			d.routeNL.Close()
			d.routeNL = nil
		}
		d.fpMu.Unlock()
		d.busy.close()
		if d.ns.IsOpen() {
			d.ns.Close()
		}
	})
	return nil
}

// watchLinks subscribes to link updates and reports changes of attached
// interfaces as port events.
func (d *Datapath) watchLinks() error {
	ch := make(chan netlink.LinkUpdate, 64)
	opts := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case <-d.nlDone: // the socket was closed on purpose
			default:
				d.log.Warn("link updates failed; port events may be missed", "error", err)
			}
		},
	}
	if d.ns.IsOpen() {
		ns := d.ns
		opts.Namespace = &ns
	}
	if err := netlink.LinkSubscribeWithOptions(ch, d.nlDone, opts); err != nil {
		return fmt.Errorf("subscribe to link updates: %w", err)
	}
	d.nlWG.Add(1)
	go func() {
		defer d.nlWG.Done()
		for u := range ch { // closed by netlink when nlDone is closed
			d.linkUpdate(u)
		}
	}()
	return nil
}

func (d *Datapath) linkUpdate(u netlink.LinkUpdate) {
	idx := int(u.Index)
	d.mu.Lock()
	st, ok := d.states[idx]
	if !ok {
		d.mu.Unlock()
		return
	}
	if u.Header.Type == unix.RTM_DELLINK {
		d.mu.Unlock()
		d.log.Info("port interface removed", "port_no", st.no, "port_name", st.name)
		if err := d.RemovePort(st.no); err != nil && !errors.Is(err, datapath.ErrPortNotFound) {
			d.log.Warn("remove port", "port_no", st.no, "error", err)
		}
		d.e.PortEvent(datapath.PortEvent{Kind: datapath.PortRemoved, Port: st.no, Name: st.name})
		return
	}
	if u.Link != nil && u.Link.Attrs().MTU > 0 {
		if p := d.ports[st.no]; p != nil {
			p.setMTU(u.Link.Attrs().MTU)
		}
	}
	up := u.Flags&unix.IFF_UP != 0 && u.Flags&unix.IFF_RUNNING != 0
	if up == st.up {
		d.mu.Unlock()
		return
	}
	st.up = up
	d.states[idx] = st
	d.mu.Unlock()
	kind := datapath.PortDown
	if up {
		kind = datapath.PortUp
	}
	d.e.PortEvent(datapath.PortEvent{Kind: kind, Port: st.no, Name: st.name})
}

// receiver is what every port kind keeps for its receive goroutine.
type receiver struct {
	poll     *poller
	busy     *busyPoller   // where the goroutine may park
	done     chan struct{} // closed when the goroutine ends
	stopping atomic.Bool   // close has begun: the goroutine must stop spinning
}

func newReceiver(d *Datapath) receiver { return receiver{busy: &d.busy, done: make(chan struct{})} }

// stopReceiving stops the receive goroutine, if it has a poller, and waits
// for it to end.
func (r *receiver) stopReceiving() {
	r.stopping.Store(true)
	if r.poll != nil {
		r.poll.stop()
		r.busy.kick()
		<-r.done
	}
}

// poller waits for a file descriptor to be readable or for stop.
type poller struct {
	fd, stopfd int
	fds        [2]unix.PollFd
	wakeups    atomic.Uint64 // for tests: a spinning receiver shows here
}

func newPoller(fd int) (*poller, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &poller{fd: fd, stopfd: efd}, nil
}

// wait blocks until fd is readable (true) or stop was called (false).
func (p *poller) wait(timeoutMs int) bool {
	p.fds[0] = unix.PollFd{Fd: int32(p.fd), Events: unix.POLLIN}
	p.fds[1] = unix.PollFd{Fd: int32(p.stopfd), Events: unix.POLLIN}
	for {
		_, err := unix.Poll(p.fds[:], timeoutMs)
		if err == unix.EINTR {
			continue
		}
		p.wakeups.Add(1)
		if p.fds[0].Revents&unix.POLLERR != 0 {
			// A packet socket reports its interface going down as a
			// pending error (ENETDOWN); reading it clears POLLERR, which
			// would otherwise wake us forever.
			unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		}
		return p.fds[1].Revents == 0
	}
}

func (p *poller) stop() {
	var one = [8]byte{1}
	unix.Write(p.stopfd, one[:])
}

func (p *poller) close() { unix.Close(p.stopfd) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }
