package classifier

import (
	"encoding/binary"

	"github.com/midonet/midonet/internal/packet"
)

// DefaultEMCSize is the number of slots of an EMC made with size 0.
const DefaultEMCSize = 4096

// EMC is an exact-match cache: a direct-mapped array from full flow keys to
// table entries. It belongs to one goroutine. A hit is checked against the
// entry's liveness, so flows deleted or replaced in the Table stop hitting
// without any invalidation walk.
type EMC[V any] struct {
	slots []emcSlot[V]
	mask  uint32
}

type emcSlot[V any] struct {
	key packet.FlowKey
	e   *Entry[V]
}

// NewEMC returns a cache with size slots, rounded up to a power of two.
func NewEMC[V any](size int) *EMC[V] {
	if size <= 0 {
		size = DefaultEMCSize
	}
	n := 1
	for n < size {
		n <<= 1
	}
	return &EMC[V]{slots: make([]emcSlot[V], n), mask: uint32(n - 1)}
}

// Lookup returns the live entry cached for key, or nil.
func (c *EMC[V]) Lookup(key *packet.FlowKey, hash uint32) *Entry[V] {
	s := &c.slots[hash&c.mask]
	if s.e != nil && s.key == *key {
		if s.e.Alive() {
			return s.e
		}
		s.e = nil
	}
	return nil
}

// Insert caches e for key, evicting whatever shared the slot.
func (c *EMC[V]) Insert(key *packet.FlowKey, hash uint32, e *Entry[V]) {
	s := &c.slots[hash&c.mask]
	s.key = *key
	s.e = e
}

// Hash returns a hash of the fields that tell flows apart in practice. Keys
// that differ only elsewhere share a slot; the full key is compared on a hit.
func Hash(k *packet.FlowKey) uint32 {
	h := uint64(k.InPort)<<32 | uint64(k.TunID)
	h ^= uint64(binary.LittleEndian.Uint32(k.NwSrc[:]))<<32 | uint64(binary.LittleEndian.Uint32(k.NwDst[:]))
	h = mix(h)
	h ^= uint64(k.TpSrc)<<48 | uint64(k.TpDst^k.ICMPID)<<32 | uint64(k.EthType)<<16 | uint64(k.NwProto)<<8 | uint64(k.VLAN&0xff)
	h = mix(h)
	h ^= uint64(binary.LittleEndian.Uint32(k.EthSrc[:])) | uint64(binary.LittleEndian.Uint16(k.EthSrc[4:]))<<32
	h ^= uint64(binary.LittleEndian.Uint32(k.EthDst[2:])) << 16
	h ^= uint64(binary.LittleEndian.Uint64(k.IPv6Src[:])) ^ uint64(binary.LittleEndian.Uint64(k.IPv6Src[8:]))
	h ^= uint64(binary.LittleEndian.Uint64(k.IPv6Dst[:]))<<1 ^ uint64(binary.LittleEndian.Uint64(k.IPv6Dst[8:]))<<3
	h = mix(h)
	return uint32(h>>32) ^ uint32(h)
}

// mix is the 64-bit finalizer of MurmurHash3.
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// LookupCached looks key up in the cache, then in the table, caching a table
// hit. emcHit reports whether the cache answered. It does not allocate.
func LookupCached[V any](t *Table[V], c *EMC[V], key *packet.FlowKey) (e *Entry[V], emcHit bool) {
	h := Hash(key)
	if e = c.Lookup(key, h); e != nil {
		return e, true
	}
	e = t.Lookup(key)
	if e != nil {
		c.Insert(key, h, e)
	}
	return e, false
}
