package ovs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
)

// upcallSock is a netlink socket the kernel sends upcalls to: one per
// vport for misses, and one for userspace actions.
type upcallSock struct {
	d       *Datapath
	s       *sock
	port    datapath.PortNo // 0 for the userspace-action socket
	closed  atomic.Bool
	dropped atomic.Uint64 // upcalls lost on this socket (overrun or malformed)

	u     datapath.Upcall // reused for every upcall; see datapath.Upcall's ownership rule
	onMsg func(r *reply) bool
}

func (d *Datapath) newUpcallSock(port datapath.PortNo) (*upcallSock, error) {
	s, err := dialSock(upcallBufSize, d.cfg.UpcallSocketBuffer)
	if err != nil {
		return nil, err
	}
	u := &upcallSock{d: d, s: s, port: port}
	u.onMsg = u.handle
	return u, nil
}

func (d *Datapath) startUpcalls(u *upcallSock) {
	d.wg.Add(1)
	go u.run()
}

func (u *upcallSock) run() {
	d := u.d
	defer d.wg.Done()
	for {
		b, err := u.s.recv()
		if err != nil {
			if u.closed.Load() || d.closed.Load() {
				return
			}
			if errors.Is(err, unix.ENOBUFS) {
				// The socket overflowed: the kernel dropped upcalls and
				// counts them in its lost counter.
				u.dropped.Add(1)
				d.upcallDropped.Add(1)
				continue
			}
			d.log.Error("upcall socket failed", "port_no", u.port, "error", err)
			return
		}
		messages(b, u.onMsg)
	}
}

// handle decodes one upcall and hands it to the handler. Each socket has
// its own goroutine: a port's upcalls are delivered one at a time, in
// order, and different ports' at once (datapath.UpcallHandler).
func (u *upcallSock) handle(r *reply) bool {
	d := u.d
	if r.typ != d.fam.packet || r.ifindex != d.ifindex {
		return true
	}
	if !decodeUpcall(r.cmd, r.data, &u.u) {
		u.dropped.Add(1)
		d.upcallDropped.Add(1)
		return true
	}
	h := d.handler.Load()
	if h == nil {
		d.upcallDropped.Add(1)
		return true
	}
	d.upcalls.Add(1)
	h.h.HandleUpcall(&u.u)
	return true
}

// decodeUpcall fills u from an OVS_PACKET_CMD_MISS or _ACTION message's
// attributes. u.Packet points into b. It reports false for anything else
// or a malformed message.
func decodeUpcall(cmd uint8, b []byte, u *datapath.Upcall) bool {
	*u = datapath.Upcall{}
	switch cmd {
	case cmdPacketMiss:
		u.Kind = datapath.UpcallMiss
	case cmdPacketAction:
		u.Kind = datapath.UpcallUserspace
	default:
		return false
	}
	a := attrs{b: b}
	for a.next() {
		switch a.typ {
		case packetAttrPacket:
			u.Packet = a.val
		case packetAttrKey:
			if !decodeKey(a.val, &u.Key, false) {
				return false
			}
		case packetAttrUserdata:
			if len(a.val) >= 8 {
				u.Cookie = binary.LittleEndian.Uint64(a.val)
			}
		}
	}
	if a.bad || u.Packet == nil {
		return false
	}
	u.InPort = datapath.PortNo(u.Key.InPort)
	return true
}

// listenPortEvents follows the vport multicast group: when an attached
// interface disappears the kernel detaches its vport and says so there.
func (d *Datapath) listenPortEvents() error {
	if d.fam.vportGroup == 0 {
		d.log.Warn("no vport multicast group: removed interfaces go unnoticed")
		return nil
	}
	s, err := dialSock(requestBufSize, 0)
	if err != nil {
		return err
	}
	if err := s.c.JoinGroup(d.fam.vportGroup); err != nil {
		s.close()
		return fmt.Errorf("join the ovs_vport multicast group: %w", err)
	}
	d.events = s
	d.listen(s, "vport event socket failed", "", func(b []byte) { messages(b, d.portEvent) })
	return nil
}

// listen passes each datagram s receives to handle, in a goroutine that
// Close waits for, until s is closed. After an overflow (ENOBUFS) it
// logs overflowed, unless empty, and goes on; any other error is logged
// as failed and ends it.
func (d *Datapath) listen(s *sock, failed, overflowed string, handle func(b []byte)) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			b, err := s.recv()
			if err != nil {
				if d.closed.Load() {
					return
				}
				if errors.Is(err, unix.ENOBUFS) {
					if overflowed != "" {
						d.log.Warn(overflowed)
					}
					continue
				}
				d.log.Error(failed, "error", err)
				return
			}
			handle(b)
		}
	}()
}

func (d *Datapath) portEvent(r *reply) bool {
	if r.typ != d.fam.vport || r.cmd != cmdDel || r.ifindex != d.ifindex {
		return true
	}
	var no datapath.PortNo
	a := attrs{b: r.data}
	for a.next() {
		if a.typ == vportAttrPortNo {
			no = datapath.PortNo(a.u32())
		}
	}
	d.mu.Lock()
	p := d.ports[no]
	if p != nil && p.removing {
		p = nil // RemovePort's own deletion
	}
	d.mu.Unlock()
	if p == nil {
		return true
	}
	d.forgetPort(no)
	d.log.Info("port removed by the kernel", "port_no", no, "port_name", p.spec.Name)
	if h := d.evHandler.Load(); h != nil {
		h.h.HandlePortEvent(datapath.PortEvent{Kind: datapath.PortRemoved, Port: no, Name: p.spec.Name})
	}
	return true
}

// describeOffset names the attribute at byte offset off of the request
// message msg, as a path of attribute types ("1/7" is attribute 7 nested
// in attribute 1), or "" if off is not inside one.
func describeOffset(msg []byte, off int) string {
	if off < msgHdrLen || off >= len(msg) {
		return ""
	}
	var path []string
	base, b := msgHdrLen, msg[msgHdrLen:]
	for depth := 0; depth < 4; depth++ {
		a := attrs{b: b}
		pos := base
		found := false
		for a.next() {
			start := pos
			n := attrHdrLen + len(a.val)
			pos += align4(n)
			if off >= start && off < start+n {
				path = append(path, strconv.Itoa(int(a.typ)))
				if off >= start+attrHdrLen && isAttrList(a.val) {
					base, b = start+attrHdrLen, a.val
					found = true
				}
				break
			}
		}
		if !found {
			break
		}
	}
	return strings.Join(path, "/")
}

// isAttrList reports whether b parses exactly as a list of attributes.
func isAttrList(b []byte) bool {
	if len(b) < attrHdrLen {
		return false
	}
	a := attrs{b: b}
	for a.next() {
	}
	return !a.bad
}

// setLinkUp sets the MTU (if mtu > 0) of interface name and brings it up.
func setLinkUp(name string, mtu int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if mtu > 0 {
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint32(uint32(mtu))
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFMTU, ifr); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
		}
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	return nil
}
