package health

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/nsthread"
	"github.com/midonet/midonet/internal/testenv"
	"github.com/midonet/midonet/internal/topology"
)

// The probe namespace reaches what is behind its link (here a listener on
// the router side's address, standing in for the router), the probe port is
// bound to this host, and Detach removes the link, the namespace and, when
// asked, the port.
func TestNetnsProbeLink(t *testing.T) {
	testenv.RequireRoot(t)
	s := newStores(t, 1)[0]
	// The agent's namespace: a fresh one without a name, gone with the test.
	var agentNS netns.NsHandle
	if err := nsthread.Run(func() error {
		var err error
		agentNS, err = netns.New()
		return err
	}, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	defer agentNS.Close()
	router := topology.NewID()
	host := topology.NewID()
	if err := s.Update(t.Context(), func(tx *nsdb.Tx) error {
		return tx.Put(&topology.Router{ID: router, AdminStateUp: true})
	}); err != nil {
		t.Fatal(err)
	}
	n, err := NewNetns(NetnsConfig{Store: s, HostID: host, HostNS: agentNS, ActiveWait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// The agent: once the port is bound here, it marks it active.
	sess, err := s.NewSession(t.Context(), nsdb.SessionConfig{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	go func() {
		for t.Context().Err() == nil {
			var p topology.Port
			err := s.View(context.Background(), func(tx *nsdb.Tx) error {
				return tx.Get(topology.KindPort, ProbePortID(router).String(), &p)
			})
			if err == nil && p.HostID != nil && *p.HostID == host && p.InterfaceName != nil && *p.InterfaceName == ProbeInterface(router) {
				sess.SetPortActive(context.Background(), p.ID.String(), host.String())
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	p, err := n.Attach(ctx, router)
	if err != nil {
		t.Fatal(err)
	}
	// Play the router: its side's address on the agent's end of the link.
	hn, err := netlink.NewHandleAt(agentNS)
	if err != nil {
		t.Fatal(err)
	}
	defer hn.Close()
	link, err := hn.LinkByName(ProbeInterface(router))
	if err != nil {
		t.Fatalf("probe link %s not in the agent's namespace: %v", ProbeInterface(router), err)
	}
	rs := RouterSide
	if err := hn.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: rs.Addr().AsSlice(), Mask: net.CIDRMask(rs.Bits(), 32)}}); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	if err := nsthread.In(agentNS, func() error {
		var err error
		ln, err = net.Listen("tcp", rs.Addr().String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	accepted := make(chan netip.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
			c.Close()
		}
	}()
	c, err := p.DialContext(ctx, "tcp", rs.Addr().String()+":"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("dial through the probe link: %v", err)
	}
	c.Close()
	if src := <-accepted; src != ProbeSide.Addr() {
		t.Errorf("check came from %s; want the probe side %s", src, ProbeSide.Addr())
	}
	var bound topology.Port
	s.View(t.Context(), func(tx *nsdb.Tx) error { return tx.Get(topology.KindPort, ProbePortID(router).String(), &bound) })
	if bound.DeviceID != router || len(bound.PortSubnet) != 1 || bound.PortSubnet[0] != RouterSide.String() || bound.TunnelKey == 0 {
		t.Errorf("probe port %+v", bound)
	}
	if err := n.Detach(t.Context(), router, true); err != nil {
		t.Fatal(err)
	}
	if _, err := hn.LinkByName(ProbeInterface(router)); err == nil {
		t.Error("the probe link outlived Detach")
	}
	if err := s.View(t.Context(), func(tx *nsdb.Tx) error {
		ok, err := tx.Exists(topology.KindPort, ProbePortID(router).String())
		if ok {
			t.Error("the probe port outlived Detach with forget")
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
