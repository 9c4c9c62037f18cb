package userspace

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/midonet/midonet/internal/datapath/engine"
)

func TestParseCmsgsRoundTrip(t *testing.T) {
	b := appendCmsgInt(nil, unix.IPPROTO_IP, unix.IP_TTL, 17)
	b = appendCmsgInt(b, unix.IPPROTO_IP, unix.IP_TOS, 0xb8)
	b = appendPktinfo(b, [4]byte{10, 1, 0, 2})
	// The kernel reports a coalesced receive's datagram size as an int.
	b = appendCmsgInt(b, unix.IPPROTO_UDP, unix.UDP_GRO, 1472)
	var tun engine.Tunnel
	if size := parseCmsgs(b, &tun); size != 1472 {
		t.Errorf("parsed datagram size %d, want 1472", size)
	}
	// appendPktinfo fills the source (spec_dst) field; parseCmsgs reads
	// the header destination field, which the kernel fills on receive.
	if tun.TTL != 17 || tun.TOS != 0xb8 {
		t.Errorf("parsed TTL %d TOS %#x, want 17 0xb8", tun.TTL, tun.TOS)
	}
}

// FuzzParseCmsgs feeds arbitrary control messages: no panics.
func FuzzParseCmsgs(f *testing.F) {
	f.Add(appendCmsgInt(nil, unix.IPPROTO_IP, unix.IP_TTL, 64))
	f.Add(appendPktinfo(appendCmsgInt(nil, unix.IPPROTO_IP, unix.IP_TOS, 4), [4]byte{1, 2, 3, 4}))
	f.Add(appendCmsgUint16(nil, unix.IPPROTO_UDP, unix.UDP_GRO, 1400))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 2, 0, 0, 0})
	f.Add([]byte{17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var tun engine.Tunnel
		parseCmsgs(b, &tun)
	})
}
