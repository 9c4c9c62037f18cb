package ovs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sock is one generic netlink socket with its own request and receive
// buffers. Requests are encoded in place and replies parsed in place, so a
// round trip allocates nothing beyond what the caller's callbacks do. A sock
// is not safe for concurrent use; the Datapath guards each with a mutex.
type sock struct {
	c   *netlink.Conn
	rc  syscall.RawConn
	pid uint32
	seq uint32
	e   encoder // the request(s) being built
	// starts maps the requests of a batch to the caller's indices and
	// their offsets in e.
	starts []batchEntry
	r      reply // the reply being parsed
	rbuf   []byte

	// Scratch for the RawConn callbacks, kept here so that the callbacks
	// are built once and the hot path does not allocate closures.
	n       int
	err     error
	readFn  func(fd uintptr) bool
	writeFn func(fd uintptr) bool
}

const (
	nlmsgError = 2 // NLMSG_ERROR
	nlmsgDone  = 3 // NLMSG_DONE

	flagRequest = 0x1
	flagMulti   = 0x2
	flagAck     = 0x4
	flagEcho    = 0x8
	flagDump    = 0x300 // NLM_F_ROOT|NLM_F_MATCH
	flagReplace = 0x100
	flagExcl    = 0x200
	flagCreate  = 0x400
	flagAckTLVs = 0x200 // in an NLMSG_ERROR reply: extended ack attributes follow

	nlmsgerrAttrMsg  = 1
	nlmsgerrAttrOffs = 2
)

func dialSock(rbufSize, sockRcvBuf int) (*sock, error) {
	c, err := netlink.Dial(unix.NETLINK_GENERIC, nil)
	if err != nil {
		return nil, fmt.Errorf("open generic netlink socket: %w", err)
	}
	// Acks carry only the request's header, not its payload (batches of
	// large requests would otherwise overflow the receive buffer), plus
	// the offset of the attribute the kernel rejected, when it can say.
	for _, o := range []netlink.ConnOption{netlink.CapAcknowledge, netlink.ExtendedAcknowledge} {
		if err := c.SetOption(o, true); err != nil {
			c.Close()
			return nil, fmt.Errorf("netlink socket option %d: %w", o, err)
		}
	}
	if sockRcvBuf > 0 {
		_ = c.SetReadBuffer(sockRcvBuf) // best effort: capped by net.core.rmem_max
	}
	return newSock(c, rbufSize)
}

// newSock wraps an open netlink connection.
func newSock(c *netlink.Conn, rbufSize int) (*sock, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, err
	}
	s := &sock{c: c, rc: rc, pid: c.PID(), rbuf: make([]byte, rbufSize)}
	s.readFn = func(fd uintptr) bool {
		s.n, s.err = unix.Read(int(fd), s.rbuf)
		return s.err != unix.EAGAIN
	}
	s.writeFn = func(fd uintptr) bool {
		s.n, s.err = unix.Write(int(fd), s.e.b)
		return s.err != unix.EAGAIN
	}
	return s, nil
}

func (s *sock) close() error { return s.c.Close() }

// begin starts a message in s.e and returns its offset and sequence number.
func (s *sock) begin(family uint16, cmd, version uint8, flags uint16, dpIfindex int32) (int, uint32) {
	s.seq++
	off := len(s.e.b)
	s.e.b = binary.NativeEndian.AppendUint32(s.e.b, 0) // length, set by finish
	s.e.b = binary.NativeEndian.AppendUint16(s.e.b, family)
	s.e.b = binary.NativeEndian.AppendUint16(s.e.b, flags|flagRequest)
	s.e.b = binary.NativeEndian.AppendUint32(s.e.b, s.seq)
	s.e.b = binary.NativeEndian.AppendUint32(s.e.b, s.pid)
	s.e.b = append(s.e.b, cmd, version, 0, 0)
	s.e.b = binary.NativeEndian.AppendUint32(s.e.b, uint32(dpIfindex))
	return off, s.seq
}

// request resets s.e and starts its one message, for a round trip.
func (s *sock) request(family uint16, cmd, version uint8, flags uint16, dpIfindex int32) (int, uint32) {
	s.e.b = s.e.b[:0]
	return s.begin(family, cmd, version, flags, dpIfindex)
}

func (s *sock) finish(off int) {
	binary.NativeEndian.PutUint32(s.e.b[off:], uint32(len(s.e.b)-off))
}

// send writes everything encoded in s.e in one datagram and resets s.e.
// The kernel handles the messages of one datagram in order.
func (s *sock) send() error {
	err := s.rc.Write(s.writeFn)
	if err == nil {
		err = s.err
	}
	if err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	return nil
}

// recv reads one datagram into s.rbuf and returns it.
func (s *sock) recv() ([]byte, error) {
	err := s.rc.Read(s.readFn)
	if err == nil {
		err = s.err
	}
	if err != nil {
		return nil, err
	}
	if s.n == 0 {
		return nil, errors.New("netlink socket closed")
	}
	return s.rbuf[:s.n], nil
}

// reply is one message received in answer to a request.
type reply struct {
	seq     uint32
	typ     uint16
	cmd     uint8  // generic netlink command, for data messages
	ifindex int32  // the OVS header's datapath, for data messages
	data    []byte // the attributes after the OVS header, for data messages
	done    bool   // an ack (error 0), or the end of a dump
	err     *Error // a failure of the request seq
}

// messages walks the netlink messages of a datagram. It stops at the
// first malformed one.
func messages(b []byte, fn func(r *reply) bool) {
	var r reply
	for {
		var ok bool
		if b, ok = nextMessage(b, &r); !ok || !fn(&r) {
			return
		}
	}
}

// nextMessage parses the first netlink message of b into r and returns
// the rest of b. It reports false at the end or at a malformed message.
// Only a failure allocates (the *Error).
func nextMessage(b []byte, r *reply) ([]byte, bool) {
	if len(b) < nlmsgHdrLen {
		return nil, false
	}
	n := int(binary.NativeEndian.Uint32(b))
	if n < nlmsgHdrLen || n > len(b) {
		return nil, false
	}
	m := b[:n]
	*r = reply{
		typ: binary.NativeEndian.Uint16(m[4:]),
		seq: binary.NativeEndian.Uint32(m[8:]),
	}
	flags := binary.NativeEndian.Uint16(m[6:])
	switch r.typ {
	case nlmsgError:
		if len(m) < nlmsgHdrLen+4 {
			return nil, false
		}
		code := int32(binary.NativeEndian.Uint32(m[nlmsgHdrLen:]))
		if code == 0 {
			r.done = true
		} else {
			r.err = &Error{Errno: syscall.Errno(-code)}
			if flags&flagAckTLVs != 0 && len(m) >= nlmsgHdrLen+4+nlmsgHdrLen {
				parseExtAck(m[nlmsgHdrLen+4+nlmsgHdrLen:], r.err)
			}
		}
	case nlmsgDone:
		r.done = true
		if len(m) >= nlmsgHdrLen+4 {
			if code := int32(binary.NativeEndian.Uint32(m[nlmsgHdrLen:])); code < 0 {
				r.err = &Error{Errno: syscall.Errno(-code)}
			}
		}
	default:
		if len(m) < msgHdrLen {
			return nil, false
		}
		r.cmd = m[nlmsgHdrLen]
		r.ifindex = int32(binary.NativeEndian.Uint32(m[nlmsgHdrLen+genlHdrLen:]))
		r.data = m[msgHdrLen:]
	}
	return b[min(align4(n), len(b)):], true
}

func parseExtAck(b []byte, e *Error) {
	a := attrs{b: b}
	for a.next() {
		switch a.typ {
		case nlmsgerrAttrMsg:
			e.Msg = a.str()
		case nlmsgerrAttrOffs:
			e.offset = int(a.u32())
		}
	}
}

// Error is a failure reported by the kernel for one request. It wraps the
// errno (errors.Is(err, syscall.EEXIST)) and, where one applies, a
// datapath sentinel such as datapath.ErrFlowExists.
type Error struct {
	Op    string        // what was asked, e.g. "flow new"
	Errno syscall.Errno // the kernel's answer
	// Attr names the attribute the kernel rejected, when it said which
	// (extended ack); the OVS families mostly do not, and log the reason
	// to the kernel log instead.
	Attr     string
	Msg      string // the kernel's extended ack message, if any
	Sentinel error  // a datapath error the errno means for this Op, or nil

	offset int // byte offset of the rejected attribute in the request
}

func (e *Error) Error() string {
	s := "ovs " + e.Op + ": " + e.Errno.Error()
	if e.Attr != "" {
		s += " (attribute " + e.Attr + ")"
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Errno == syscall.EINVAL && e.Attr == "" && e.Msg == "" {
		s += " (the kernel log, dmesg, has the reason)"
	}
	return s
}

// Unwrap returns the errno and the sentinel.
func (e *Error) Unwrap() []error {
	if e.Sentinel != nil {
		return []error{e.Errno, e.Sentinel}
	}
	return []error{e.Errno}
}

var errNotAvailable = errors.New("the openvswitch kernel module is not loaded")
