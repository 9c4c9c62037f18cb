package flowstate

import (
	"net/netip"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// DefaultIdleTTL is how long an unreferenced conntrack or NAT key lives
// (MidoNet's 60 s); stateful flows use half of it as their hard timeout so
// that re-simulation refreshes keys on every peer before they expire.
const DefaultIdleTTL = 60 * time.Second

// ConnKey identifies a tracked connection as its return traffic will be
// seen: the return 5-tuple and the device the return traffic enters. For
// ICMP echo, SrcPort and DstPort both hold the ICMP identifier.
type ConnKey struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	Device           uuid.UUID
}

// String formats the key for traces and logs.
func (k ConnKey) String() string {
	return "conntrack " + k.Device.String() + " " + tuple(k.Src, k.SrcPort, k.Dst, k.DstPort, k.Proto)
}

// NATKeyType says which side of a translation a NAT key describes.
type NATKeyType uint8

// NAT key types. Forward keys map an original tuple to its translation;
// reverse keys map the translated tuple's reply back to the original.
const (
	FwdSNAT NATKeyType = iota + 1
	RevSNAT
	FwdDNAT
	RevDNAT
	FwdStickyDNAT
	RevStickyDNAT
)

var natKeyTypeNames = [...]string{"", "fwd_snat", "rev_snat", "fwd_dnat", "rev_dnat", "fwd_sticky_dnat", "rev_sticky_dnat"}

// String returns the key type's name.
func (t NATKeyType) String() string {
	if int(t) < len(natKeyTypeNames) && t != 0 {
		return natKeyTypeNames[t]
	}
	return "nat_key_type(" + strconv.Itoa(int(t)) + ")"
}

// Valid reports whether t is one of the defined key types.
func (t NATKeyType) Valid() bool { return t >= FwdSNAT && t <= RevStickyDNAT }

// NATKey identifies one side of a NAT translation on a device (a router or
// a load balancer).
type NATKey struct {
	Type             NATKeyType
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8
	Device           uuid.UUID
}

// String formats the key for traces and logs.
func (k NATKey) String() string {
	return k.Type.String() + " " + k.Device.String() + " " + tuple(k.Src, k.SrcPort, k.Dst, k.DstPort, k.Proto)
}

// NATBinding is the address and port a NAT key translates to.
type NATBinding struct {
	IP   netip.Addr
	Port uint16
}

// NATEntry is a NAT key with its binding, as replicated and as recorded by a
// simulation.
type NATEntry struct {
	Key     NATKey
	Binding NATBinding
}

func tuple(src netip.Addr, sp uint16, dst netip.Addr, dp uint16, proto uint8) string {
	return src.String() + ":" + strconv.Itoa(int(sp)) + " > " + dst.String() + ":" + strconv.Itoa(int(dp)) +
		" proto " + strconv.Itoa(int(proto))
}
