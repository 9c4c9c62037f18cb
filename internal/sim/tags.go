package sim

import (
	"encoding/binary"
	"net/netip"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/topology"
)

// Tag names something a flow depends on. A flow carries the tags of every
// device, MAC entry, route, ARP entry and flow-state key its simulation
// consulted; invalidating a tag removes the flows that carry it. Tags are
// 64-bit hashes, so the agent computes the tag of a change with the
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

// tagHash mixes 64-bit words: a multiply-xorshift per word, cheap enough
// for the dozen tags a simulation computes, stable across processes.
type tagHash uint64

func newTagHash(k tagKind) tagHash { return tagHash(0x243f6a8885a308d3).u64(uint64(k)) }

func (h tagHash) u64(w uint64) tagHash {
	x := (uint64(h) ^ w) * 0x9e3779b97f4a7c15
	return tagHash(x ^ x>>29)
}

func (h tagHash) id(id topology.ID) tagHash {
	return h.u64(binary.LittleEndian.Uint64(id[:8])).u64(binary.LittleEndian.Uint64(id[8:]))
}

func (h tagHash) u16(v uint16) tagHash { return h.u64(uint64(v)) }

func (h tagHash) mac(m [6]byte) tagHash {
	return h.u64(uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5]))
}

func (h tagHash) addr(a netip.Addr) tagHash {
	b := a.As16()
	return h.u64(binary.LittleEndian.Uint64(b[:8])).u64(binary.LittleEndian.Uint64(b[8:]))
}

func (h tagHash) tag() Tag {
	x := uint64(h)
	x ^= x >> 32
	x *= 0xd6e8feb86659fd93
	return Tag(x ^ x>>32)
}

// DeviceTag is the tag of a port, bridge, router, chain, port group or IP
// address group: any change to the object invalidates flows through it.
func DeviceTag(id topology.ID) Tag { return newTagHash(tagDevice).id(id).tag() }

// MACTag is the tag of a bridge's MAC table entry (vlan, mac) → port: flows
// unicast to the MAC, or learned from it, on that port.
func MACTag(bridge topology.ID, vlan uint16, mac [6]byte, port topology.ID) Tag {
	return newTagHash(tagMAC).id(bridge).u16(vlan).mac(mac).id(port).tag()
}

// FloodTag is the tag of flows a bridge flooded because it did not know the
// destination MAC; learning the MAC invalidates them.
func FloodTag(bridge topology.ID, vlan uint16, mac [6]byte) Tag {
	return newTagHash(tagFlood).id(bridge).u16(vlan).mac(mac).tag()
}

// BroadcastTag is the tag of a bridge's broadcast and multicast flows.
func BroadcastTag(bridge topology.ID) Tag { return newTagHash(tagBroadcast).id(bridge).tag() }

// ARPRequestsTag is the tag of ARP requests a bridge flooded.
func ARPRequestsTag(bridge topology.ID) Tag { return newTagHash(tagARPRequests).id(bridge).tag() }

// RouteTag is the tag of flows that used a route.
func RouteTag(route topology.ID) Tag { return newTagHash(tagRoute).id(route).tag() }

// DstIPTag is the tag of flows a router routed to dst: adding a route that
// covers dst invalidates them.
func DstIPTag(router topology.ID, dst netip.Addr) Tag {
	return newTagHash(tagDstIP).id(router).addr(dst).tag()
}

// ARPTag is the tag of flows that used a router's ARP entry for ip.
func ARPTag(router topology.ID, ip netip.Addr) Tag {
	return newTagHash(tagARP).id(router).addr(ip).tag()
}

// ConnTag is the tag of flows that looked up a conntrack key.
func ConnTag(k flowstate.ConnKey) Tag {
	return newTagHash(tagConn).id(k.Device).addr(k.Src).addr(k.Dst).u16(k.SrcPort).u16(k.DstPort).u64(uint64(k.Proto)).tag()
}

// NATTag is the tag of flows that looked up a NAT key.
func NATTag(k flowstate.NATKey) Tag {
	return newTagHash(tagNAT).u64(uint64(k.Type)).id(k.Device).addr(k.Src).addr(k.Dst).
		u16(k.SrcPort).u16(k.DstPort).u64(uint64(k.Proto)).tag()
}
