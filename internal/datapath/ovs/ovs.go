// Package ovs is the datapath backend on the Open vSwitch kernel module
// (openvswitch.ko), driven directly over generic netlink with no OVS
// userland: it creates or reuses a kernel datapath, attaches netdev,
// internal and VXLAN vports, installs megaflows with masks, executes
// packets and turns kernel upcalls into datapath.Upcall values.
//
// The netlink codec is this package's own (attr.go, key.go, actions.go):
// requests are encoded into a reused buffer and replies parsed in place.
// Each vport gets its own upcall socket, so a port flooding misses fills
// only its own socket buffer (the kernel counts the overflow as lost) and
// cannot starve the other ports. Flow, execute, dump and control requests
// each use their own socket, so a long dump does not delay executes.
//
// The package builds everywhere; on a host without the module Open and
// Available return an error naming it, and the agent falls back to the
// userspace backend.
package ovs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mdlayher/genetlink"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
	"github.com/midonet/midonet/internal/packet"
)

var _ datapath.Datapath = (*Datapath)(nil)

// DefaultName is the kernel datapath's name, as in MidoNet.
const DefaultName = "midonet"

// Buffer sizes.
const (
	requestBufSize = 64 << 10  // receive buffer of request sockets: a dump datagram fits
	upcallBufSize  = 128 << 10 // receive buffer of upcall sockets: a 64 KiB GSO packet and its key fit
	// DefaultUpcallSocketBuffer is the kernel receive buffer (SO_RCVBUF)
	// asked for each port's upcall socket: the per-port upcall queue.
	DefaultUpcallSocketBuffer = 1 << 20
	batchBytes                = 48 << 10 // a batch datagram stays under this
	// batchMax bounds the requests per datagram: their acks (about 1 KiB
	// of socket buffer each) must fit the default receive buffer.
	batchMax = 64
	// requestTimeout bounds the wait for each reply datagram, so that a
	// lost reply fails the request instead of hanging it.
	requestTimeout = 30 * time.Second
)

// Config configures Open.
type Config struct {
	// Name of the kernel datapath; DefaultName if empty.
	Name string
	// Logger; slog.New(slog.DiscardHandler) if nil.
	Logger *slog.Logger
	// KeepFlows keeps the flows of a reused datapath, for an agent that
	// dumps and adopts them; by default they are flushed.
	KeepFlows bool
	// UpcallSocketBuffer is SO_RCVBUF of each port's upcall socket;
	// DefaultUpcallSocketBuffer if zero.
	UpcallSocketBuffer int
}

// Datapath is a kernel datapath opened by Open.
type Datapath struct {
	cfg      Config
	log      *slog.Logger
	fam      families
	ifindex  int32
	megaflow bool
	reused   bool

	ctl   lockedSock // datapath and vport commands, stats
	flows lockedSock // flow put and delete
	dump  lockedSock // flow dumps, so that fn may put and delete
	exec  lockedSock // packet execute

	actionUp *upcallSock // receives the upcalls of userspace actions
	events   *sock       // vport notifications
	links    *sock       // rtnetlink link changes

	mu        sync.Mutex
	ports     map[datapath.PortNo]*vport // guarded by mu
	tunnelSrc [4]byte                    // default outer source: a VXLAN port's LocalAddr; guarded by mu
	// meters are the kernel meters that police ports (by port); flows
	// from such a port run its meter first. Guarded by mu.
	meters map[datapath.PortNo]uint32

	handler   atomic.Pointer[upcallHandler]
	evHandler atomic.Pointer[portEventHandler]

	upcalls, upcallDropped atomic.Uint64

	closed    atomic.Bool
	closeOnce sync.Once
	wg        sync.WaitGroup
}

type upcallHandler struct{ h datapath.UpcallHandler }
type portEventHandler struct{ h datapath.PortEventHandler }

type lockedSock struct {
	mu sync.Mutex
	s  *sock
}

type vport struct {
	no       datapath.PortNo
	spec     datapath.PortSpec
	up       *upcallSock
	removing bool // RemovePort is deleting it; guarded by Datapath.mu
	linkUp   bool // the interface is up with carrier; guarded by Datapath.mu
}

type families struct {
	datapath, vport, flow, packet uint16
	vportGroup                    uint32
	meter                         uint16 // 0 when the kernel has no meters
}

// resolveFamilies looks up the four OVS families. It returns an error
// wrapping errNotAvailable when the module is not loaded.
func resolveFamilies() (families, error) {
	var f families
	c, err := genetlink.Dial(nil)
	if err != nil {
		return f, fmt.Errorf("open generic netlink: %w", err)
	}
	defer c.Close()
	for _, x := range []struct {
		name string
		id   *uint16
	}{{familyDatapath, &f.datapath}, {familyVport, &f.vport}, {familyFlow, &f.flow}, {familyPacket, &f.packet}} {
		fam, err := c.GetFamily(x.name)
		if err != nil {
			if errors.Is(err, syscall.ENOENT) {
				return f, fmt.Errorf("generic netlink family %q not found: %w (modprobe openvswitch)", x.name, errNotAvailable)
			}
			return f, fmt.Errorf("resolve generic netlink family %q: %w", x.name, err)
		}
		*x.id = fam.ID
		if x.name == familyVport {
			for _, g := range fam.Groups {
				if g.Name == familyVport {
					f.vportGroup = g.ID
				}
			}
		}
	}
	if fam, err := c.GetFamily(familyMeter); err == nil {
		f.meter = fam.ID
	}
	return f, nil
}

// Available reports why the kernel datapath cannot be used here, or nil if
// it can: the openvswitch module must be loaded and its generic netlink
// families reachable. `--datapath auto` uses the userspace backend when it
// returns an error.
func Available() error {
	_, err := resolveFamilies()
	return err
}

// IsNotAvailable reports whether err says the openvswitch module is not
// loaded.
func IsNotAvailable(err error) bool { return errors.Is(err, errNotAvailable) }

// Open creates the kernel datapath cfg.Name, or reuses it if it exists:
// its vports are adopted (they get new upcall sockets and keep their
// numbers) and, unless cfg.KeepFlows, its flows are flushed.
func Open(cfg Config) (d *Datapath, err error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if len(cfg.Name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("datapath name %q is longer than %d bytes", cfg.Name, unix.IFNAMSIZ-1)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.UpcallSocketBuffer == 0 {
		cfg.UpcallSocketBuffer = DefaultUpcallSocketBuffer
	}
	fam, err := resolveFamilies()
	if err != nil {
		return nil, err
	}
	d = &Datapath{
		cfg:    cfg,
		log:    cfg.Logger.With("datapath", cfg.Name),
		fam:    fam,
		ports:  make(map[datapath.PortNo]*vport),
		meters: make(map[datapath.PortNo]uint32),
	}
	defer func() {
		if err == nil {
			return
		}
		// Undo what was begun: a datapath created here goes away again.
		if d.ifindex != 0 && !d.reused {
			_ = d.deleteKernelDatapath()
		}
		d.closed.Store(true)
		d.closeSockets()
		d.wg.Wait()
	}()
	for _, ls := range []*lockedSock{&d.ctl, &d.flows, &d.dump, &d.exec} {
		if ls.s, err = dialSock(requestBufSize, 0); err != nil {
			return nil, err
		}
	}
	if d.actionUp, err = d.newUpcallSock(0); err != nil {
		return nil, err
	}
	if err = d.createOrReuse(); err != nil {
		return nil, err
	}
	if d.reused {
		if err = d.adoptPorts(); err != nil {
			return nil, err
		}
		if !cfg.KeepFlows {
			if err = d.FlushFlows(); err != nil {
				return nil, err
			}
		}
	}
	if err = d.listenPortEvents(); err != nil {
		return nil, err
	}
	if err = d.watchLinks(); err != nil {
		return nil, err
	}
	d.startUpcalls(d.actionUp)
	d.log.Info("datapath opened", "ifindex", d.ifindex, "reused", d.reused, "megaflow", d.megaflow)
	return d, nil
}

// Name returns the kernel datapath's name.
func (d *Datapath) Name() string { return d.cfg.Name }

// Ifindex returns the interface index of the datapath's local port.
func (d *Datapath) Ifindex() int { return int(d.ifindex) }

// Reused reports whether Open found the datapath already there.
func (d *Datapath) Reused() bool { return d.reused }

// Megaflow reports whether the kernel supports masked flows (megaflows).
// Without it, PutFlow installs exact-match flows on the masked key.
func (d *Datapath) Megaflow() bool { return d.megaflow }

func (d *Datapath) createOrReuse() error {
	ls := &d.ctl
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.s
	off, seq := s.request(d.fam.datapath, cmdNew, versionDatapath, flagAck|flagEcho, 0)
	s.e.str(dpAttrName, d.cfg.Name)
	s.e.u32(dpAttrUpcallPID, 0) // the local port's misses are not wanted
	s.e.u32(dpAttrUserFeatures, dpFeatureUnaligned|dpFeatureVportPIDs)
	s.finish(off)
	err := d.roundTrip(s, seq, "datapath new "+d.cfg.Name, d.parseDatapath)
	if !errors.Is(err, syscall.EEXIST) {
		return err
	}
	d.reused = true
	off, seq = s.request(d.fam.datapath, cmdSet, versionDatapath, flagAck|flagEcho, 0)
	s.e.str(dpAttrName, d.cfg.Name)
	s.e.u32(dpAttrUserFeatures, dpFeatureUnaligned|dpFeatureVportPIDs)
	s.finish(off)
	return d.roundTrip(s, seq, "datapath set "+d.cfg.Name, d.parseDatapath)
}

func (d *Datapath) parseDatapath(r *reply) {
	d.ifindex = r.ifindex
	a := attrs{b: r.data}
	for a.next() {
		if a.typ == dpAttrMegaflowStats {
			d.megaflow = true
		}
	}
}

// Delete removes the kernel datapath, with all its vports and flows, and
// closes d.
func (d *Datapath) Delete() error {
	err := d.deleteKernelDatapath()
	cerr := d.Close()
	if err != nil {
		return err
	}
	return cerr
}

func (d *Datapath) deleteKernelDatapath() error {
	return d.headerOnly(&d.ctl, d.fam.datapath, cmdDel, versionDatapath, flagAck, "datapath delete "+d.cfg.Name, nil)
}

// Close stops the upcall and event goroutines and closes the sockets. The
// kernel datapath, its vports and flows stay, to be reused by the next
// Open; use Delete to remove them.
func (d *Datapath) Close() error {
	d.closeOnce.Do(func() {
		d.closed.Store(true)
		d.closeSockets()
		d.wg.Wait()
		d.log.Info("datapath closed")
	})
	return nil
}

func (d *Datapath) closeSockets() {
	for _, ls := range []*lockedSock{&d.ctl, &d.flows, &d.dump, &d.exec} {
		ls.mu.Lock()
		if ls.s != nil {
			ls.s.close()
		}
		ls.mu.Unlock()
	}
	if d.actionUp != nil {
		d.actionUp.s.close()
	}
	if d.events != nil {
		d.events.close()
	}
	if d.links != nil {
		d.links.close()
	}
	d.mu.Lock()
	for _, p := range d.ports {
		p.up.s.close()
	}
	d.mu.Unlock()
}

// headerOnly sends a request with no attributes (a get, dump, flush or
// delete of the whole datapath) on ls and waits for its answer, as
// roundTrip.
func (d *Datapath) headerOnly(ls *lockedSock, family uint16, cmd, version uint8, flags uint16, op string, fn func(r *reply)) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.s
	off, seq := s.request(family, cmd, version, flags, d.ifindex)
	s.finish(off)
	return d.roundTrip(s, seq, op, fn)
}

// roundTrip sends the one request encoded in s.e and waits for its answer;
// fn, if not nil, sees the data replies. Without a failure it does not
// allocate: it is the path of every execute and flow put.
func (d *Datapath) roundTrip(s *sock, seq uint32, op string, fn func(r *reply)) error {
	if d.closed.Load() {
		return datapath.ErrClosed
	}
	if err := s.send(); err != nil {
		return fmt.Errorf("ovs %s: %w", op, err)
	}
	r := &s.r // not a local: fn would make it escape
	for {
		b, err := d.recvReply(s)
		if err != nil {
			return fmt.Errorf("ovs %s: %w", op, err)
		}
		for {
			var ok bool
			if b, ok = nextMessage(b, r); !ok {
				break
			}
			if r.seq != seq {
				continue // left over from an abandoned exchange
			}
			if r.err != nil {
				r.err.Op = op
				r.err.Attr = describeOffset(s.e.b, r.err.offset)
				return r.err
			}
			if r.data != nil && fn != nil {
				fn(r)
			}
			if r.done {
				return nil
			}
		}
	}
}

// recvReply reads one reply datagram, bounded by requestTimeout.
func (d *Datapath) recvReply(s *sock) ([]byte, error) {
	_ = s.c.SetReadDeadline(time.Now().Add(requestTimeout))
	b, err := s.recv()
	if err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			// Replies were lost: the requests' outcome is unknown.
			return nil, fmt.Errorf("netlink receive buffer overrun: %w", err)
		}
		if d.closed.Load() {
			return nil, datapath.ErrClosed
		}
		return nil, fmt.Errorf("netlink receive: %w", err)
	}
	return b, nil
}

// exchange sends the n requests in s.e (sequence numbers first to
// first+n-1) in one datagram and reads until each is answered by an ack,
// an error or the end of its dump. fn sees every data and error reply with
// the index of its request. Replies to other sequence numbers are left
// over from an earlier, abandoned exchange and are skipped.
func (d *Datapath) exchange(s *sock, first uint32, n int, fn func(i int, r *reply)) error {
	if d.closed.Load() {
		return datapath.ErrClosed
	}
	if err := s.send(); err != nil {
		return err
	}
	pending := n
	for pending > 0 {
		b, err := d.recvReply(s)
		if err != nil {
			return err
		}
		messages(b, func(r *reply) bool {
			i := int(r.seq - first)
			if r.seq-first >= uint32(n) {
				return true
			}
			if r.err != nil || r.data != nil {
				fn(i, r)
			}
			if r.done || r.err != nil {
				pending--
			}
			return true
		})
	}
	return nil
}

// --- Ports

// AddPort implements datapath.PortManager. A netdev port attaches an
// existing interface; an internal port creates one (brought up, with
// spec.MTU if set); a VXLAN port creates the kernel's flow-based VXLAN
// device on spec.UDPPort. On a reused datapath, adding a port that is
// already there with the same kind returns its number.
func (d *Datapath) AddPort(spec datapath.PortSpec) (datapath.PortNo, error) {
	var typ uint32
	switch spec.Kind {
	case datapath.PortNetdev, datapath.PortInternal:
		if spec.Name == "" {
			return 0, fmt.Errorf("%v port needs an interface name", spec.Kind)
		}
		typ = vportTypeNetdev
		if spec.Kind == datapath.PortInternal {
			typ = vportTypeInternal
		}
	case datapath.PortVXLAN:
		if spec.UDPPort == 0 {
			spec.UDPPort = datapath.DefaultVXLANPort
		}
		if spec.Name == "" {
			spec.Name = fmt.Sprintf("tnvxlan-%d", spec.UDPPort)
		}
		if spec.LocalAddr.IsValid() && !spec.LocalAddr.Is4() {
			return 0, fmt.Errorf("vxlan port %q: local address %v is not IPv4", spec.Name, spec.LocalAddr)
		}
		typ = vportTypeVXLAN
	default:
		return 0, fmt.Errorf("port %q: unknown kind %v", spec.Name, spec.Kind)
	}
	if len(spec.Name) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("port name %q is longer than %d bytes", spec.Name, unix.IFNAMSIZ-1)
	}
	d.mu.Lock()
	for _, p := range d.ports {
		if p.spec.Name == spec.Name {
			d.mu.Unlock()
			if p.spec.Kind == spec.Kind && d.reused {
				return p.no, nil
			}
			return 0, fmt.Errorf("port %q is already port %d: %w", spec.Name, p.no, datapath.ErrPortExists)
		}
	}
	d.mu.Unlock()

	up, err := d.newUpcallSock(0)
	if err != nil {
		return 0, err
	}
	var no datapath.PortNo
	ls := &d.ctl
	ls.mu.Lock()
	s := ls.s
	off, seq := s.request(d.fam.vport, cmdNew, versionVport, flagAck|flagEcho, d.ifindex)
	s.e.u32(vportAttrType, typ)
	s.e.str(vportAttrName, spec.Name)
	s.e.u32(vportAttrUpcallPID, up.s.pid)
	if typ == vportTypeVXLAN {
		o := s.e.begin(vportAttrOptions)
		s.e.u16(tunnelAttrDstPort, spec.UDPPort)
		s.e.end(o)
	}
	s.finish(off)
	err = d.roundTrip(s, seq, fmt.Sprintf("vport new %s %q", spec.Kind, spec.Name), func(r *reply) {
		a := attrs{b: r.data}
		for a.next() {
			if a.typ == vportAttrPortNo {
				no = datapath.PortNo(a.u32())
			}
		}
	})
	ls.mu.Unlock()
	if err != nil {
		up.s.close()
		var e *Error
		if errors.As(err, &e) {
			switch e.Errno {
			case syscall.EEXIST:
				e.Sentinel = datapath.ErrPortExists
			case syscall.ENODEV:
				err = fmt.Errorf("%w: no interface named %q", err, spec.Name)
			case syscall.EAFNOSUPPORT:
				err = fmt.Errorf("%w: vport type %v is not available (modprobe vport_%v)", err, spec.Kind, spec.Kind)
			case syscall.EBUSY:
				err = fmt.Errorf("%w: interface %q is attached elsewhere (a bridge or another datapath)", err, spec.Name)
			}
		}
		return 0, err
	}
	if no == 0 {
		up.s.close()
		return 0, fmt.Errorf("ovs vport new %q: the kernel did not return a port number", spec.Name)
	}
	up.port = no
	if spec.Kind == datapath.PortInternal {
		if err := setLinkUp(spec.Name, spec.MTU); err != nil {
			d.log.Warn("internal port not brought up", "port_name", spec.Name, "error", err)
		}
	}
	linkUp := spec.Kind != datapath.PortVXLAN && currentLinkUp(spec.Name)
	d.mu.Lock()
	d.ports[no] = &vport{no: no, spec: spec, up: up, linkUp: linkUp}
	if spec.Kind == datapath.PortVXLAN && spec.LocalAddr.Is4() && d.tunnelSrc == ([4]byte{}) {
		d.tunnelSrc = spec.LocalAddr.As4()
	}
	d.mu.Unlock()
	d.startUpcalls(up)
	d.log.Info("port added", "port_no", no, "port_name", spec.Name, "port_kind", spec.Kind)
	return no, nil
}

// RemovePort implements datapath.PortManager.
func (d *Datapath) RemovePort(no datapath.PortNo) error {
	d.mu.Lock()
	p := d.ports[no]
	if p != nil {
		p.removing = true
	}
	d.mu.Unlock()
	if p == nil {
		return fmt.Errorf("port %d: %w", no, datapath.ErrPortNotFound)
	}
	ls := &d.ctl
	ls.mu.Lock()
	s := ls.s
	off, seq := s.request(d.fam.vport, cmdDel, versionVport, flagAck, d.ifindex)
	s.e.u32(vportAttrPortNo, uint32(no))
	s.finish(off)
	err := d.roundTrip(s, seq, fmt.Sprintf("vport delete %d %q", no, p.spec.Name), nil)
	ls.mu.Unlock()
	var e *Error
	if errors.As(err, &e) && (e.Errno == syscall.ENOENT || e.Errno == syscall.ENODEV) {
		err = nil // already gone with its interface; forget it below
	}
	d.forgetPort(no)
	if err != nil {
		return err
	}
	d.log.Info("port removed", "port_no", no, "port_name", p.spec.Name)
	return nil
}

// forgetPort drops a port from the table and closes its upcall socket.
func (d *Datapath) forgetPort(no datapath.PortNo) {
	d.mu.Lock()
	p := d.ports[no]
	delete(d.ports, no)
	delete(d.meters, no) // its meter id goes to the next limited port
	d.mu.Unlock()
	if p != nil {
		p.up.closed.Store(true)
		p.up.s.close()
	}
}

// Ports implements datapath.PortManager, with the kernel's counters. The
// datapath's own local port (number 0) is not listed.
func (d *Datapath) Ports() []datapath.Port {
	var out []datapath.Port
	err := d.dumpVports(func(no datapath.PortNo, typ uint32, name string, st datapath.PortStats) {
		d.mu.Lock()
		p := d.ports[no]
		d.mu.Unlock()
		if p == nil {
			return
		}
		st.UpcallDropped = p.up.dropped.Load()
		out = append(out, datapath.Port{No: no, Spec: p.spec, Stats: st})
	})
	if err != nil {
		d.log.Warn("vport dump failed", "error", err)
		d.mu.Lock()
		for _, p := range d.ports {
			out = append(out, datapath.Port{No: p.no, Spec: p.spec})
		}
		d.mu.Unlock()
	}
	return out
}

func (d *Datapath) dumpVports(fn func(no datapath.PortNo, typ uint32, name string, st datapath.PortStats)) error {
	return d.headerOnly(&d.ctl, d.fam.vport, cmdGet, versionVport, flagDump, "vport dump", func(r *reply) {
		if r.ifindex != d.ifindex {
			return
		}
		var (
			no   datapath.PortNo
			typ  uint32
			name string
			st   datapath.PortStats
		)
		a := attrs{b: r.data}
		for a.next() {
			switch a.typ {
			case vportAttrPortNo:
				no = datapath.PortNo(a.u32())
			case vportAttrType:
				typ = a.u32()
			case vportAttrName:
				name = a.str()
			case vportAttrStats:
				if p := a.want(64); p != nil {
					st.RxPackets, st.TxPackets = ne64(p[0:]), ne64(p[8:])
					st.RxBytes, st.TxBytes = ne64(p[16:]), ne64(p[24:])
					st.RxDropped = ne64(p[32:]) + ne64(p[48:]) // errors and drops
					st.TxDropped = ne64(p[40:]) + ne64(p[56:])
				}
			}
		}
		if no != ovspLocal {
			fn(no, typ, name, st)
		}
	})
}

// adoptPorts takes over the vports of a reused datapath: each gets a new
// upcall socket, whose PID is set on the vport.
func (d *Datapath) adoptPorts() error {
	type found struct {
		no   datapath.PortNo
		spec datapath.PortSpec
	}
	var ports []found
	err := d.dumpVports(func(no datapath.PortNo, typ uint32, name string, _ datapath.PortStats) {
		var kind datapath.PortKind
		switch typ {
		case vportTypeNetdev:
			kind = datapath.PortNetdev
		case vportTypeInternal:
			kind = datapath.PortInternal
		case vportTypeVXLAN:
			kind = datapath.PortVXLAN
		default:
			return // GRE, Geneve: not ours
		}
		ports = append(ports, found{no, datapath.PortSpec{Kind: kind, Name: name}})
	})
	if err != nil {
		return err
	}
	for _, f := range ports {
		up, err := d.newUpcallSock(f.no)
		if err != nil {
			return err
		}
		ls := &d.ctl
		ls.mu.Lock()
		s := ls.s
		off, seq := s.request(d.fam.vport, cmdSet, versionVport, flagAck, d.ifindex)
		s.e.u32(vportAttrPortNo, uint32(f.no))
		s.e.u32(vportAttrUpcallPID, up.s.pid)
		s.finish(off)
		err = d.roundTrip(s, seq, fmt.Sprintf("vport set %d %q upcall pid", f.no, f.spec.Name), nil)
		ls.mu.Unlock()
		if err != nil {
			up.s.close()
			return err
		}
		linkUp := f.spec.Kind != datapath.PortVXLAN && currentLinkUp(f.spec.Name)
		d.mu.Lock()
		d.ports[f.no] = &vport{no: f.no, spec: f.spec, up: up, linkUp: linkUp}
		d.mu.Unlock()
		d.startUpcalls(up)
		d.log.Info("port adopted", "port_no", f.no, "port_name", f.spec.Name, "port_kind", f.spec.Kind)
	}
	return nil
}

// --- Flows

// PutFlow implements datapath.FlowTable. Errors wrap datapath.ErrFlowExists
// or datapath.ErrFlowNotFound as the flags imply, and *Error.
func (d *Datapath) PutFlow(key, mask *packet.FlowKey, actions []datapath.Action, flags datapath.FlowFlags) error {
	if err := validate(mask, actions); err != nil {
		return err
	}
	ls := &d.flows
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return d.putFlowLocked(ls.s, key, mask, actions, flags)
}

func (d *Datapath) putFlowLocked(s *sock, key, mask *packet.FlowKey, actions []datapath.Action, flags datapath.FlowFlags) error {
	if flags&(datapath.FlowCreate|datapath.FlowModify) == 0 {
		flags |= datapath.FlowCreate | datapath.FlowModify
	}
	if flags&datapath.FlowModify != 0 && flags&datapath.FlowResetStats != 0 && flags&datapath.FlowCreate != 0 {
		// The kernel clears counters only on SET, which fails when the
		// flow is absent: try it, then create.
		err := d.putFlowLocked(s, key, mask, actions, flags&^datapath.FlowCreate)
		if !errors.Is(err, datapath.ErrFlowNotFound) {
			return err
		}
		flags &^= datapath.FlowModify | datapath.FlowResetStats
	}
	s.e.b = s.e.b[:0]
	seq := d.encodePut(s, key, mask, actions, flags)
	err := d.roundTrip(s, seq, "flow put", nil)
	return flowError(err, flags)
}

// validate checks that the kernel module can run a flow: valid actions,
// and no match on a field its flow key lacks (the backend reports no
// datapath.Features, so the agent does not ask for one), which it would
// otherwise wildcard silently.
func validate(mask *packet.FlowKey, actions []datapath.Action) error {
	if mask != nil && mask.ICMPID != 0 {
		return fmt.Errorf("ovs: the kernel flow key has no ICMP echo identifier: %w", errors.ErrUnsupported)
	}
	return datapath.ValidateActions(actions)
}

// encodePut appends one flow put request to s.e.
func (d *Datapath) encodePut(s *sock, key, mask *packet.FlowKey, actions []datapath.Action, flags datapath.FlowFlags) uint32 {
	// OVS_FLOW_CMD_NEW fails with EEXIST on an existing flow if either
	// NLM_F_CREATE or NLM_F_EXCL is set, and otherwise replaces its
	// actions; OVS_FLOW_CMD_SET fails with ENOENT on a missing flow.
	cmd, nlflags := uint8(cmdNew), uint16(flagAck)
	switch {
	case flags&datapath.FlowModify == 0:
		nlflags |= flagCreate | flagExcl
	case flags&datapath.FlowCreate == 0:
		cmd = cmdSet
	}
	off, seq := s.begin(d.fam.flow, cmd, versionFlow, nlflags, d.ifindex)
	k := matchKey(key, mask)
	o := s.e.begin(flowAttrKey)
	appendKey(&s.e, &k)
	s.e.end(o)
	if d.megaflow {
		o = s.e.begin(flowAttrMask)
		appendMask(&s.e, &k, mask)
		s.e.end(o)
	}
	o = s.e.begin(flowAttrActions)
	src, meter := d.tunnelSourceAndMeter(datapath.PortNo(key.InPort))
	if meter != 0 {
		s.e.u32(actAttrMeter, meter)
	}
	appendActions(&s.e, actions, d.actionUp.s.pid, src)
	s.e.end(o)
	if cmd == cmdSet && flags&datapath.FlowResetStats != 0 {
		s.e.flag(flowAttrClear)
	}
	s.finish(off)
	return seq
}

func (d *Datapath) tunnelSource() [4]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tunnelSrc
}

// tunnelSourceAndMeter returns the tunnel source and the meter of the
// flows from port in (0: none).
func (d *Datapath) tunnelSourceAndMeter(in datapath.PortNo) ([4]byte, uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tunnelSrc, d.meters[in]
}

// flowError adds the datapath sentinel an errno means for a flow request.
func flowError(err error, flags datapath.FlowFlags) error {
	if err == nil {
		return nil // before errors.As, whose target would escape
	}
	var e *Error
	if errors.As(err, &e) {
		switch e.Errno {
		case syscall.EEXIST:
			e.Sentinel = datapath.ErrFlowExists
		case syscall.ENOENT:
			e.Sentinel = datapath.ErrFlowNotFound
		}
	}
	return err
}

// FlowPut is one flow of a PutFlows batch; the fields are PutFlow's.
type FlowPut = datapath.FlowPut

var _ datapath.FlowBatcher = (*Datapath)(nil)

// PutFlows implements datapath.FlowBatcher: it installs a batch of flows,
// many per netlink datagram, and stores each flow's outcome in errs[i]
// (len(errs) must be len(puts)). It returns the number of failures. A
// batch costs one system call per datagram instead of one round trip per
// flow.
func (d *Datapath) PutFlows(puts []FlowPut, errs []error) int {
	if len(errs) < len(puts) {
		panic("ovs: PutFlows: errs is shorter than puts")
	}
	failed := 0
	ls := &d.flows
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.s
	for i := 0; i < len(puts); {
		s.e.b = s.e.b[:0]
		first, n := uint32(0), 0
		starts := s.starts[:0]
		for ; i < len(puts) && len(s.e.b) < batchBytes && n < batchMax; i++ {
			p := &puts[i]
			errs[i] = validate(p.Mask, p.Actions)
			if errs[i] == nil && p.Flags&datapath.FlowResetStats != 0 && p.Flags&datapath.FlowCreate != 0 && p.Flags&datapath.FlowModify != 0 {
				// Two steps; not batchable.
				errs[i] = errBatchLater
			}
			if errs[i] != nil {
				continue
			}
			starts = append(starts, batchEntry{index: i, off: len(s.e.b)})
			seq := d.encodePut(s, p.Key, p.Mask, p.Actions, p.Flags)
			if n == 0 {
				first = seq
			}
			n++
		}
		s.starts = starts
		if n == 0 {
			continue
		}
		err := d.exchange(s, first, n, func(j int, r *reply) {
			if r.err != nil {
				st := starts[j]
				r.err.Op = "flow put"
				r.err.Attr = describeOffset(s.e.b[st.off:], r.err.offset)
				errs[st.index] = flowError(r.err, puts[st.index].Flags)
			}
		})
		if err != nil {
			for _, st := range starts {
				if errs[st.index] == nil {
					errs[st.index] = fmt.Errorf("ovs flow put: %w", err)
				}
			}
		}
	}
	for i := range puts {
		if errs[i] == errBatchLater {
			p := &puts[i]
			errs[i] = d.putFlowLocked(s, p.Key, p.Mask, p.Actions, p.Flags)
		}
		if errs[i] != nil {
			failed++
		}
	}
	return failed
}

var errBatchLater = errors.New("put after the batch")

type batchEntry struct{ index, off int }

// DeleteFlow implements datapath.FlowTable.
func (d *Datapath) DeleteFlow(key, mask *packet.FlowKey) (datapath.FlowStats, error) {
	var st datapath.FlowStats
	ls := &d.flows
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.s
	off, seq := s.request(d.fam.flow, cmdDel, versionFlow, flagAck|flagEcho, d.ifindex)
	k := matchKey(key, mask)
	o := s.e.begin(flowAttrKey)
	appendKey(&s.e, &k)
	s.e.end(o)
	s.finish(off)
	err := d.roundTrip(s, seq, "flow delete", func(r *reply) {
		var f datapath.Flow
		decodeFlowStats(r.data, &f.Stats)
		st = f.Stats
	})
	return st, flowError(err, 0)
}

// FlushFlows deletes every flow of the datapath.
func (d *Datapath) FlushFlows() error {
	return d.headerOnly(&d.flows, d.fam.flow, cmdDel, versionFlow, flagAck, "flow flush", nil)
}

// DumpFlows implements datapath.FlowTable. fn may call PutFlow and
// DeleteFlow; Flow.Mask shows the kernel's real mask, so an untagged
// flow's VLAN mask is 0xffff (the kernel always matches the tag).
func (d *Datapath) DumpFlows(fn func(f *datapath.Flow) bool) error {
	stop := false
	var decodeErr error
	err := d.headerOnly(&d.dump, d.fam.flow, cmdGet, versionFlow, flagDump, "flow dump", func(r *reply) {
		if stop || r.ifindex != d.ifindex {
			return // drain the rest of the dump
		}
		f := new(datapath.Flow) // fn may keep it
		if err := decodeFlow(r.data, f); err != nil {
			decodeErr = err
			stop = true
			return
		}
		if !fn(f) {
			stop = true
		}
	})
	if err != nil {
		return err
	}
	return decodeErr
}

// decodeFlow fills f from the attributes of a flow message, appending to
// f.Actions.
func decodeFlow(b []byte, f *datapath.Flow) error {
	var key, mask packet.FlowKey
	hasMask := false
	acts := f.Actions[:0]
	f.Stats = datapath.FlowStats{}
	a := attrs{b: b}
	for a.next() {
		switch a.typ {
		case flowAttrKey:
			if !decodeKey(a.val, &key, false) {
				return errors.New("ovs flow dump: malformed key")
			}
		case flowAttrMask:
			hasMask = true
			if !decodeKey(a.val, &mask, true) {
				return errors.New("ovs flow dump: malformed mask")
			}
		case flowAttrActions:
			var err error
			if acts, err = decodeActions(acts, a.val); err != nil {
				return fmt.Errorf("ovs flow dump: %w", err)
			}
		}
	}
	decodeFlowStats(b, &f.Stats)
	if !hasMask {
		mask = exactMask
	}
	if key.VLAN&packet.VLANPresent == 0 {
		mask.VLAN = 0xffff // the kernel matches untagged flows on "no tag"
	}
	f.Key = key.Masked(&mask)
	f.Mask = mask
	f.Actions = acts
	return nil
}

var exactMask = func() packet.FlowKey {
	var m packet.FlowKey
	m.InPort, m.TunID = ^uint32(0), ^uint32(0)
	m.TunSrc, m.TunDst = [4]byte{255, 255, 255, 255}, [4]byte{255, 255, 255, 255}
	m.TunTOS, m.TunTTL = 0xff, 0xff
	m.EthSrc, m.EthDst = [6]byte{255, 255, 255, 255, 255, 255}, [6]byte{255, 255, 255, 255, 255, 255}
	m.VLAN, m.EthType = 0xffff, 0xffff
	m.NwSrc, m.NwDst = [4]byte{255, 255, 255, 255}, [4]byte{255, 255, 255, 255}
	for i := range m.IPv6Src {
		m.IPv6Src[i], m.IPv6Dst[i] = 0xff, 0xff
	}
	m.NwProto, m.NwTOS, m.NwTTL, m.NwFrag = 0xff, 0xff, 0xff, 0xff
	m.TpSrc, m.TpDst = 0xffff, 0xffff
	m.ARPSHA, m.ARPTHA = [6]byte{255, 255, 255, 255, 255, 255}, [6]byte{255, 255, 255, 255, 255, 255}
	return m
}()

func decodeFlowStats(b []byte, st *datapath.FlowStats) {
	a := attrs{b: b}
	for a.next() {
		switch a.typ {
		case flowAttrStats:
			if p := a.want(16); p != nil {
				st.Packets, st.Bytes = ne64(p[0:]), ne64(p[8:])
			}
		case flowAttrTCPFlags:
			st.TCPFlags = uint16(a.u8())
		case flowAttrUsed:
			st.LastUsed = datapath.MonotonicToTime(time.Duration(a.u64()) * time.Millisecond)
		}
	}
}

// --- Execute

// Execute implements datapath.Executor.
func (d *Datapath) Execute(frame []byte, actions []datapath.Action, inPort datapath.PortNo) error {
	if err := datapath.ValidateActions(actions); err != nil {
		return err
	}
	if len(frame) < 14 {
		return fmt.Errorf("execute: %d-byte frame: %w", len(frame), datapath.ErrBadPacket)
	}
	ls := &d.exec
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.s
	off, seq := s.request(d.fam.packet, cmdPacketExecute, versionPacket, flagAck, d.ifindex)
	s.e.bytes(packetAttrPacket, frame)
	// The kernel takes only metadata (in_port, tunnel) from this key and
	// parses the rest from the packet.
	o := s.e.begin(packetAttrKey)
	if inPort != 0 {
		s.e.u32(keyAttrInPort, uint32(inPort))
	}
	s.e.fixed(keyAttrEthernet, 12)
	s.e.end(o)
	o = s.e.begin(packetAttrActions)
	appendActions(&s.e, actions, d.actionUp.s.pid, d.tunnelSource())
	s.e.end(o)
	s.finish(off)
	return d.roundTrip(s, seq, "packet execute", nil)
}

// --- Upcalls and events

// SetUpcallHandler implements datapath.Upcaller.
func (d *Datapath) SetUpcallHandler(h datapath.UpcallHandler) {
	if h == nil {
		d.handler.Store(nil)
		return
	}
	d.handler.Store(&upcallHandler{h})
}

// SetPortEventHandler implements datapath.Upcaller. Events report ports
// whose interface went up or down (carrier included) or disappeared (the
// kernel then detaches the vport).
func (d *Datapath) SetPortEventHandler(h datapath.PortEventHandler) {
	if h == nil {
		d.evHandler.Store(nil)
		return
	}
	d.evHandler.Store(&portEventHandler{h})
}

// Stats implements datapath.Datapath with the kernel's counters: Hits,
// Misses, Lost (misses the kernel could not queue, including upcall
// socket overflow), Flows, Masks, and EMCHits as the kernel's mask cache
// hits. Upcalls and UpcallDropped are counted here.
func (d *Datapath) Stats() datapath.Stats {
	st := datapath.Stats{Upcalls: d.upcalls.Load(), UpcallDropped: d.upcallDropped.Load()}
	err := d.headerOnly(&d.ctl, d.fam.datapath, cmdGet, versionDatapath, flagAck, "datapath get", func(r *reply) {
		a := attrs{b: r.data}
		for a.next() {
			switch a.typ {
			case dpAttrStats:
				if p := a.want(32); p != nil {
					st.Hits, st.Misses, st.Lost = ne64(p[0:]), ne64(p[8:]), ne64(p[16:])
					st.Flows = int(ne64(p[24:]))
				}
			case dpAttrMegaflowStats:
				if p := a.want(32); p != nil {
					st.Masks = int(ne32(p[8:]))
					st.EMCHits = ne64(p[16:])
				}
			}
		}
	})
	if err != nil {
		d.log.Warn("datapath stats failed", "error", err)
	}
	return st
}

func ne64(b []byte) uint64 { return binary.NativeEndian.Uint64(b) }
func ne32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }
