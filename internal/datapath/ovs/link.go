package ovs

import (
	"encoding/binary"
	"fmt"
	"net"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath"
)

// Link state comes from rtnetlink: the OVS families say when a vport goes
// away, but not when its interface loses carrier.

// linkIsUp reports whether an interface is administratively up with carrier.
func linkIsUp(flags uint32) bool {
	return flags&unix.IFF_UP != 0 && flags&unix.IFF_RUNNING != 0
}

// currentLinkUp reads an interface's state; false if it cannot be read.
func currentLinkUp(name string) bool {
	ifi, err := net.InterfaceByName(name)
	return err == nil && ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagRunning != 0
}

// watchLinks follows RTM_NEWLINK messages and reports up and down changes
// of the ports' interfaces.
func (d *Datapath) watchLinks() error {
	c, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Groups: unix.RTMGRP_LINK})
	if err != nil {
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	s, err := newSock(c, requestBufSize)
	if err != nil {
		c.Close()
		return err
	}
	d.links = s
	d.listen(s, "link change socket failed", "link changes lost: the rtnetlink socket overflowed", d.linkMessages)
	return nil
}

func (d *Datapath) linkMessages(b []byte) {
	for len(b) >= nlmsgHdrLen {
		n := int(binary.NativeEndian.Uint32(b))
		if n < nlmsgHdrLen || n > len(b) {
			return
		}
		m := b[:n]
		b = b[min(align4(n), len(b)):]
		if binary.NativeEndian.Uint16(m[4:]) != unix.RTM_NEWLINK || len(m) < nlmsgHdrLen+16 {
			continue
		}
		flags := binary.NativeEndian.Uint32(m[nlmsgHdrLen+8:])
		a := attrs{b: m[nlmsgHdrLen+16:]}
		var name []byte
		for a.next() {
			if a.typ == unix.IFLA_IFNAME {
				name = a.val
				if i := len(name) - 1; i >= 0 && name[i] == 0 {
					name = name[:i]
				}
			}
		}
		d.linkChanged(string(name), linkIsUp(flags))
	}
}

// linkChanged emits PortUp or PortDown when a port's interface changed.
func (d *Datapath) linkChanged(name string, up bool) {
	d.mu.Lock()
	var p *vport
	for _, q := range d.ports {
		if q.spec.Name == name && q.spec.Kind != datapath.PortVXLAN {
			p = q
			break
		}
	}
	if p == nil || p.linkUp == up || p.removing {
		d.mu.Unlock()
		return
	}
	p.linkUp = up
	no := p.no
	d.mu.Unlock()
	kind := datapath.PortDown
	if up {
		kind = datapath.PortUp
	}
	d.log.Info("port link changed", "port_no", no, "port_name", name, "state", kind)
	if h := d.evHandler.Load(); h != nil {
		h.h.HandlePortEvent(datapath.PortEvent{Kind: kind, Port: no, Name: name})
	}
}
