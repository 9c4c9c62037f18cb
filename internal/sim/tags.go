package sim

import (
	"net/netip"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/topology"
)

// Tag names something a flow depends on. A flow carries the tags of every
// device, MAC entry, route, ARP entry and flow-state key its simulation
// consulted; invalidating a tag removes the flows that carry it. Tags are
// 64-bit hashes (FNV-1a), so the agent computes the tag of a change with the
// same constructor the simulation used.
type Tag uint64

type tagKind byte

const (
	tagDevice tagKind = iota + 1
	tagMAC
	tagFlood
	tagBroadcast
	tagARPRequests
	tagRoute
	tagDstIP
	tagARP
	tagConn
	tagNAT
)

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

type tagHash uint64

func newTagHash(k tagKind) tagHash { return tagHash(fnvOffset).byte(byte(k)) }

func (h tagHash) byte(b byte) tagHash { return (h ^ tagHash(b)) * fnvPrime }

func (h tagHash) bytes(b []byte) tagHash {
	for _, x := range b {
		h = h.byte(x)
	}
	return h
}

func (h tagHash) id(id topology.ID) tagHash { return h.bytes(id[:]) }

func (h tagHash) u16(v uint16) tagHash { return h.byte(byte(v >> 8)).byte(byte(v)) }

func (h tagHash) addr(a netip.Addr) tagHash {
	b := a.As16()
	return h.bytes(b[:])
}

// DeviceTag is the tag of a port, bridge, router, chain, port group or IP
// address group: any change to the object invalidates flows through it.
func DeviceTag(id topology.ID) Tag { return Tag(newTagHash(tagDevice).id(id)) }

// MACTag is the tag of a bridge's MAC table entry (vlan, mac) → port: flows
// unicast to the MAC, or learned from it, on that port.
func MACTag(bridge topology.ID, vlan uint16, mac [6]byte, port topology.ID) Tag {
	return Tag(newTagHash(tagMAC).id(bridge).u16(vlan).bytes(mac[:]).id(port))
}

// FloodTag is the tag of flows a bridge flooded because it did not know the
// destination MAC; learning the MAC invalidates them.
func FloodTag(bridge topology.ID, vlan uint16, mac [6]byte) Tag {
	return Tag(newTagHash(tagFlood).id(bridge).u16(vlan).bytes(mac[:]))
}

// BroadcastTag is the tag of a bridge's broadcast and multicast flows.
func BroadcastTag(bridge topology.ID) Tag { return Tag(newTagHash(tagBroadcast).id(bridge)) }

// ARPRequestsTag is the tag of ARP requests a bridge flooded.
func ARPRequestsTag(bridge topology.ID) Tag { return Tag(newTagHash(tagARPRequests).id(bridge)) }

// RouteTag is the tag of flows that used a route.
func RouteTag(route topology.ID) Tag { return Tag(newTagHash(tagRoute).id(route)) }

// DstIPTag is the tag of flows a router routed to dst: adding a route that
// covers dst invalidates them.
func DstIPTag(router topology.ID, dst netip.Addr) Tag {
	return Tag(newTagHash(tagDstIP).id(router).addr(dst))
}

// ARPTag is the tag of flows that used a router's ARP entry for ip.
func ARPTag(router topology.ID, ip netip.Addr) Tag {
	return Tag(newTagHash(tagARP).id(router).addr(ip))
}

// ConnTag is the tag of flows that looked up a conntrack key.
func ConnTag(k flowstate.ConnKey) Tag {
	return Tag(newTagHash(tagConn).id(k.Device).addr(k.Src).addr(k.Dst).u16(k.SrcPort).u16(k.DstPort).byte(k.Proto))
}

// NATTag is the tag of flows that looked up a NAT key.
func NATTag(k flowstate.NATKey) Tag {
	return Tag(newTagHash(tagNAT).byte(byte(k.Type)).id(k.Device).addr(k.Src).addr(k.Dst).
		u16(k.SrcPort).u16(k.DstPort).byte(k.Proto))
}
