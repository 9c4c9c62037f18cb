package agent

import (
	"encoding/binary"
	"net"
	"time"

	"github.com/midonet/midonet/internal/dhcp"
	"github.com/midonet/midonet/internal/packet"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// TCP MSS clamping. A VM whose interface MTU exceeds what the overlay
// carries (the underlay MTU minus the overlay's 50 bytes: what DHCP offers,
// which some guests ignore) would open TCP connections whose full-sized
// segments the overlay must fragment or drop. Its SYNs towards other hosts
// are rewritten here to advertise at most the path's MSS, as MidoNet does.
//
// A SYN is clamped in userspace and installs no flow. A flow installed for
// the rest of such a connection matches it exactly (addresses and ports),
// so that it catches no other connection's SYN: the datapath's flows
// cannot match TCP flags.

// mtuRefresh is how long a port interface's MTU is trusted before it is
// read again.
const mtuRefresh = 5 * time.Second

// ifaceMTU is a port interface's MTU as a worker last read it.
type ifaceMTU struct {
	mtu int
	at  time.Time
}

// interfaceMTU reads a host interface's MTU (Config.InterfaceMTU in tests).
func interfaceMTU(name string) (int, error) {
	itf, err := net.InterfaceByName(name)
	if err != nil {
		return 0, err
	}
	return itf.MTU, nil
}

// clampMSS applies MSS clamping to the result of simulating a packet
// entering at port. For a TCP SYN that needs it, it returns a copy of the
// frame with its MSS option lowered, which the caller sends in userspace
// without installing a flow; for the connection's other packets it
// narrows res.Mask to the connection, for the port's other traffic towards
// the overlay to its protocol, and returns nil.
func (w *worker) clampMSS(snap *sim.Snapshot, u *upcall, port topology.ID, res *sim.Result) []byte {
	k := &u.match.FlowKey
	if (res.Kind != sim.Forward && res.Kind != sim.UserspaceOnly) || len(res.Egress) == 0 {
		return nil
	}
	underlay := snap.UnderlayMTU()
	if underlay == 0 {
		return nil // the path is unknown: the underlay is assumed to fit
	}
	path := underlay - dhcp.OverlayOverhead
	if w.portMTU(snap, port) <= path || !w.toOverlay(snap, res.Egress) {
		return nil
	}
	// A flow for this port's other traffic (ARP, ICMP, UDP: a bridge's
	// flows match on addresses only) must not carry a later SYN past the
	// clamp: it matches its protocol exactly.
	m := &res.Mask
	m.EthType = 0xffff
	var ipHeader int
	switch k.EthType {
	case packet.EtherTypeIPv4:
		ipHeader = packet.IPv4MinHeaderLen
	case packet.EtherTypeIPv6:
		ipHeader = packet.IPv6HeaderLen
	default:
		return nil
	}
	m.NwProto, m.NwFrag = 0xff, 0xff
	if k.NwProto != packet.IPProtoTCP || k.NwFrag == packet.FragLater {
		return nil
	}
	// Every packet of the connection matches its flow exactly.
	if k.EthType == packet.EtherTypeIPv4 {
		m.NwSrc, m.NwDst = [4]byte{0xff, 0xff, 0xff, 0xff}, [4]byte{0xff, 0xff, 0xff, 0xff}
	} else {
		for i := range m.IPv6Src {
			m.IPv6Src[i], m.IPv6Dst[i] = 0xff, 0xff
		}
	}
	m.TpSrc, m.TpDst = 0xffff, 0xffff
	var p packet.Parsed
	p.Decode(u.frame)
	if p.Layer < packet.Layer4 || p.TCPFlags&packet.TCPFlagSYN == 0 {
		return nil
	}
	frame := append([]byte(nil), u.frame...)
	p.Decode(frame)
	if lowerMSS(&p, uint16(path-ipHeader-packet.TCPMinHeaderLen)) {
		w.a.metrics.mssClamped.Inc()
	}
	return frame
}

// portMTU returns the MTU of the interface bound to port, read at most
// every mtuRefresh; 0 when it cannot be read.
func (w *worker) portMTU(snap *sim.Snapshot, port topology.ID) int {
	now := time.Now()
	if c, ok := w.mtus[port]; ok && now.Sub(c.at) < mtuRefresh {
		return c.mtu
	}
	info, ok := snap.Port(port)
	if !ok || info.InterfaceName == "" {
		return 0
	}
	mtu, err := w.a.cfg.InterfaceMTU(info.InterfaceName)
	if err != nil {
		mtu = 0
	}
	if w.mtus == nil {
		w.mtus = map[topology.ID]ifaceMTU{}
	}
	w.mtus[port] = ifaceMTU{mtu: mtu, at: now}
	return mtu
}

// toOverlay reports whether an egress port is bound on another host.
func (w *worker) toOverlay(snap *sim.Snapshot, egress []sim.Egress) bool {
	for i := range egress {
		if info, ok := snap.Port(egress[i].Port); ok && info.Host != (topology.ID{}) && info.Host != w.a.hostID {
			return true
		}
	}
	return false
}

// lowerMSS lowers the MSS option of the decoded IPv4 or IPv6 TCP segment to at
// most mss, recomputing its checksum (the datapath hands up complete
// checksums), and reports whether it changed it. Malformed options are
// left alone.
func lowerMSS(p *packet.Parsed, mss uint16) bool {
	t := p.TCP()
	if len(t) < packet.TCPMinHeaderLen || (p.IPVersion != 4 && p.IPVersion != 6) {
		return false
	}
	opts := t[packet.TCPMinHeaderLen:min(t.DataOffset(), len(t))]
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0: // end of options
			return false
		case 1: // no-op
			i++
			continue
		}
		if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
			return false
		}
		if opts[i] == 2 && opts[i+1] == 4 { // maximum segment size
			if binary.BigEndian.Uint16(opts[i+2:]) <= mss {
				return false
			}
			binary.BigEndian.PutUint16(opts[i+2:], mss)
			t.SetChecksum(0)
			var pseudo uint32
			if p.IPVersion == 4 {
				pseudo = packet.PseudoHeaderSum4(p.Src.As4(), p.Dst.As4(), packet.IPProtoTCP, uint16(len(t)))
			} else {
				pseudo = packet.PseudoHeaderSum6(p.Src.As16(), p.Dst.As16(), packet.IPProtoTCP, uint32(len(t)))
			}
			t.SetChecksum(packet.Checksum(t, pseudo))
			return true
		}
		i += int(opts[i+1])
	}
	return false
}
