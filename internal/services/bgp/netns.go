package bgp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/midonet/midonet/internal/nsthread"
)

// innerName is the interface of a port's namespace: one namespace a port,
// so one name serves all.
const innerName = "uplink0"

// Namespace is a router port's BGP namespace: a network namespace whose
// one interface carries the port's address and MAC, the inner end of a
// veth pair whose outer end, in the agent's namespace, the agent plugs into
// its datapath. The speaker process lives inside; the datapath carries its
// BGP sessions and ARP in and out of the port. The namespace has no name:
// the agent holds it open and its speaker lives in it, so it vanishes, and
// the veth pair with it, when both are gone, even if the agent is killed
// (reach it with nsenter -t <speaker pid> -n).
type Namespace struct {
	handle netns.NsHandle
	// Outer is the name of the veth end in the agent's namespace.
	Outer string
}

// NewNamespace creates the namespace of a port whose address and subnet
// are addr and whose MAC is mac, with the outer veth end named outer in the
// caller's namespace (an interface of that name left by an earlier run is
// replaced).
func NewNamespace(outer string, addr netip.Prefix, mac [6]byte) (n *Namespace, err error) {
	if !addr.Addr().Is4() {
		return nil, fmt.Errorf("bgp: namespace for %s: the port needs an IPv4 address", outer)
	}
	if l, err := netlink.LinkByName(outer); err == nil {
		netlink.LinkDel(l)
	}
	var ns netns.NsHandle
	err = nsthread.Run(func() error {
		var err error
		ns, err = netns.New() // switches this thread into it
		return err
	}, func() error { return nil })
	if err != nil {
		return nil, fmt.Errorf("bgp: create a namespace for %s: %w", outer, err)
	}
	n = &Namespace{handle: ns, Outer: outer}
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: outer}, PeerName: innerName,
		PeerHardwareAddr: net.HardwareAddr(mac[:]), PeerNamespace: netlink.NsFd(ns),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("bgp: create veth %s: %w", outer, err)
	}
	// Only IPv4 and ARP belong on the port: no IPv6 autoconfiguration or
	// neighbour discovery from either end.
	if err := disableIPv6(outer); err != nil {
		return nil, err
	}
	err = nsthread.In(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		in, err := netlink.LinkByName(innerName)
		if err != nil {
			return err
		}
		if err := disableIPv6(innerName); err != nil {
			return err
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 32)}}
		if err := netlink.AddrAdd(in, a); err != nil {
			return fmt.Errorf("address %s: %w", addr, err)
		}
		return netlink.LinkSetUp(in)
	})
	if err != nil {
		return nil, fmt.Errorf("bgp: set up the namespace of %s: %w", outer, err)
	}
	out, err := netlink.LinkByName(outer)
	if err == nil {
		err = netlink.LinkSetUp(out)
	}
	if err != nil {
		return nil, fmt.Errorf("bgp: bring %s up: %w", outer, err)
	}
	return n, nil
}

// disableIPv6 turns IPv6 off on an interface of the calling thread's
// namespace.
func disableIPv6(ifname string) error {
	err := os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/disable_ipv6", []byte("1"), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) { // no IPv6 in this kernel: nothing to disable
		return fmt.Errorf("bgp: disable IPv6 on %s: %w", ifname, err)
	}
	return nil
}

// Start starts cmd inside the namespace: it is forked from a thread that
// entered the namespace, so the whole process lives there.
func (n *Namespace) Start(cmd *exec.Cmd) error {
	return nsthread.In(n.handle, cmd.Start)
}

// Do runs fn on a thread inside the namespace.
func (n *Namespace) Do(fn func() error) error { return nsthread.In(n.handle, fn) }

// Close deletes the veth pair and lets go of the namespace, which ends
// when no process lives in it any more.
func (n *Namespace) Close() error {
	var err error
	if l, lerr := netlink.LinkByName(n.Outer); lerr == nil {
		err = netlink.LinkDel(l)
	}
	if n.handle.IsOpen() {
		n.handle.Close()
		n.handle = netns.None()
	}
	return err
}
