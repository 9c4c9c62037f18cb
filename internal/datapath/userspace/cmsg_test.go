package userspace

import (
	"testing"

	"github.com/midonet/midonet/internal/datapath/engine"
)

func TestParseCmsgsRoundTrip(t *testing.T) {
	b := appendCmsgInt(nil, 2 /* IP_TTL */, 17)
	b = appendCmsgInt(b, 1 /* IP_TOS */, 0xb8)
	b = appendPktinfo(b, [4]byte{10, 1, 0, 2})
	var tun engine.Tunnel
	parseCmsgs(b, &tun)
	// appendPktinfo fills the source (spec_dst) field; parseCmsgs reads
	// the header destination field, which the kernel fills on receive.
	if tun.TTL != 17 || tun.TOS != 0xb8 {
		t.Errorf("parsed TTL %d TOS %#x, want 17 0xb8", tun.TTL, tun.TOS)
	}
}

// FuzzParseCmsgs feeds arbitrary control messages: no panics.
func FuzzParseCmsgs(f *testing.F) {
	f.Add(appendCmsgInt(nil, 2, 64))
	f.Add(appendPktinfo(appendCmsgInt(nil, 1, 4), [4]byte{1, 2, 3, 4}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 2, 0, 0, 0})
	f.Add([]byte{17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		var tun engine.Tunnel
		parseCmsgs(b, &tun)
	})
}
