package flowstate

import (
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/google/uuid"
)

// SNAT port blocks, as MidoNet's NatBlockAllocator cuts them: the port space
// of each (device, NAT address) is split into blocks of BlockPorts ports,
// and a host allocates source ports only inside blocks it leased from the
// store, so that two hosts never hand out the same (address, port). The
// leasing itself (store I/O) is the agent's; this file keeps what the
// simulation reads and what the agent needs to decide when to lease more
// and when to give a block back.
const (
	BlockPorts = 64
	NumBlocks  = 65536 / BlockPorts
)

// Block returns the block that holds port.
func Block(port uint16) uint16 { return port / BlockPorts }

// BlockSet is a set of blocks of one (device, NAT address).
type BlockSet [NumBlocks / 64]uint64

// Has reports whether b is in the set.
func (s *BlockSet) Has(b uint16) bool { return s[b/64]&(1<<(b%64)) != 0 }

// Add adds b to the set.
func (s *BlockSet) Add(b uint16) { s[b/64] |= 1 << (b % 64) }

// Remove removes b from the set.
func (s *BlockSet) Remove(b uint16) { s[b/64] &^= 1 << (b % 64) }

// Len returns the number of blocks in the set.
func (s *BlockSet) Len() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// Next returns the first block of the set at or after b, wrapping around,
// and false if the set is empty.
func (s *BlockSet) Next(b uint16) (uint16, bool) {
	i := int(b) / 64
	w := s[i] &^ (1<<(b%64) - 1)
	for n := 0; n <= len(s); n++ {
		if w != 0 {
			return uint16(i*64 + bits.TrailingZeros64(w)), true
		}
		i = (i + 1) % len(s)
		w = s[i]
	}
	return 0, false
}

// NATAddr names the port space of one NAT address on one device (a router
// or a load balancer).
type NATAddr struct {
	Device uuid.UUID
	IP     netip.Addr
}

// SNATLeases is what a host knows of the SNAT port blocks it leased: per
// NAT address, the blocks the simulation may allocate from, and how many
// reverse SNAT keys use each block. It is safe for concurrent use; reads
// do not lock and do not allocate.
//
// The agent adds a block once the store granted it (Grant), stops
// allocating from it before giving it back (Suspend, then Revoke), and is
// told through the wanted callback when an address's blocks run low, so
// that it leases the next one ahead of need.
type SNATLeases struct {
	mu    sync.Mutex                           // serializes writers
	addrs atomic.Pointer[map[NATAddr]*natAddr] // copied on write: a new address is rare
	// wanted is called, with the table a key entered locked, when an
	// address's allocatable blocks are more than LowWater full.
	wanted func(NATAddr)
}

// LowWater is the share of an address's allocatable ports in use beyond
// which the next block is asked for ahead of need.
const LowWater = 0.75

type natAddr struct {
	held atomic.Pointer[BlockSet] // allocatable blocks; copied on write
	// used counts the live reverse SNAT keys of each block, in any shard.
	used [NumBlocks]atomic.Int32
	// inHeld counts the keys of the held blocks, for the low-water mark.
	inHeld atomic.Int32
	nHeld  atomic.Int32
}

// NewSNATLeases returns an empty lease table; wanted, if not nil, is
// called when an address needs another block (it must not block).
func NewSNATLeases(wanted func(NATAddr)) *SNATLeases {
	l := &SNATLeases{wanted: wanted}
	m := map[NATAddr]*natAddr{}
	l.addrs.Store(&m)
	return l
}

// get returns a's entry, or nil.
func (l *SNATLeases) get(a NATAddr) *natAddr { return (*l.addrs.Load())[a] }

// entry returns a's entry, creating it.
func (l *SNATLeases) entry(a NATAddr) *natAddr {
	if e := l.get(a); e != nil {
		return e
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.addrs.Load()
	if e := old[a]; e != nil {
		return e
	}
	m := make(map[NATAddr]*natAddr, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	e := &natAddr{}
	e.held.Store(&BlockSet{})
	m[a] = e
	l.addrs.Store(&m)
	return e
}

// Held returns the blocks of a the simulation may allocate from, or nil if
// none. The set must not be modified.
func (l *SNATLeases) Held(a NATAddr) *BlockSet { return l.held(a).Set }

// HeldBlocks is what the simulation reads of one NAT address's leases: the
// blocks it may allocate from, and how busy each is.
type HeldBlocks struct {
	Set  *BlockSet // nil: none held
	addr *natAddr
}

// Used returns how many live reverse SNAT keys use block b, towards any
// destination: a block with BlockPorts of them has no port free towards
// a destination it serves, and is worth probing last.
func (h HeldBlocks) Used(b uint16) int {
	if h.addr == nil {
		return 0
	}
	return int(h.addr.used[b].Load())
}

// held returns a's HeldBlocks.
func (l *SNATLeases) held(a NATAddr) HeldBlocks {
	if e := l.get(a); e != nil {
		return HeldBlocks{Set: e.held.Load(), addr: e}
	}
	return HeldBlocks{}
}

// Grant makes block b of a allocatable: the store granted it to this host.
func (l *SNATLeases) Grant(a NATAddr, b uint16) { l.setHeld(a, b, true) }

// Suspend stops allocations from block b of a, which stays this host's in
// the store: the keys already using it go on. The agent suspends a block
// before giving it back, and when the store may have lost its lease.
func (l *SNATLeases) Suspend(a NATAddr, b uint16) { l.setHeld(a, b, false) }

func (l *SNATLeases) setHeld(a NATAddr, b uint16, on bool) {
	e := l.entry(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := e.held.Load()
	if cur.Has(b) == on {
		return
	}
	next := *cur
	if on {
		next.Add(b)
		e.nHeld.Add(1)
		e.inHeld.Add(e.used[b].Load())
	} else {
		next.Remove(b)
		e.nHeld.Add(-1)
		e.inHeld.Add(-e.used[b].Load())
	}
	e.held.Store(&next)
}

// Used returns how many live reverse SNAT keys use block b of a.
func (l *SNATLeases) Used(a NATAddr, b uint16) int {
	if e := l.get(a); e != nil {
		return int(e.used[b].Load())
	}
	return 0
}

// Addrs returns the addresses the table knows.
func (l *SNATLeases) Addrs() []NATAddr {
	m := *l.addrs.Load()
	out := make([]NATAddr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	return out
}

// Low reports whether a's allocatable blocks are more than LowWater full
// (or a has none).
func (l *SNATLeases) Low(a NATAddr) bool {
	e := l.get(a)
	if e == nil {
		return true
	}
	n := e.nHeld.Load()
	return n == 0 || float64(e.inHeld.Load()) > LowWater*float64(n)*BlockPorts
}

// keyChanged counts a reverse SNAT key entering (added) or leaving a NAT
// table: its binding's port is the translated source port.
func (l *SNATLeases) keyChanged(k NATKey, added bool) {
	if k.Type != RevSNAT {
		return
	}
	a := NATAddr{Device: k.Device, IP: k.Dst}
	e := l.entry(a)
	b := Block(k.DstPort)
	d := int32(-1)
	if added {
		d = 1
	}
	e.used[b].Add(d)
	// The held set and inHeld change together under l.mu; an update
	// racing with a Grant or Suspend of the same block is off by one
	// key until the next, which only moves the low-water mark.
	if e.held.Load().Has(b) {
		e.inHeld.Add(d)
	}
	if added && l.wanted != nil && l.Low(a) {
		l.wanted(a)
	}
}
