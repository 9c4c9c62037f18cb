package neutron

import (
	"slices"
	"sync"
)

// keyedLocks serializes the calls of one API server that write the same
// hot objects: every port of a network rewrites the network's DHCP subnet
// (its leases) and every member of a security group its address group.
// Transactions would get these right alone, but under load they would
// conflict and run again and again; taking turns costs less. Calls from
// other API servers still meet in the store's optimistic transactions.
type keyedLocks struct {
	mu    sync.Mutex
	locks map[string]*keyedLock // guarded by mu
}

type keyedLock struct {
	sync.Mutex
	users int // guarded by keyedLocks.mu
}

// lock takes the locks of keys (in a fixed order, so that two calls never
// wait for each other) and returns the function that releases them.
func (k *keyedLocks) lock(keys ...string) (unlock func()) {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	held := make([]*keyedLock, 0, len(keys))
	for _, key := range keys {
		k.mu.Lock()
		if k.locks == nil {
			k.locks = map[string]*keyedLock{}
		}
		l := k.locks[key]
		if l == nil {
			l = &keyedLock{}
			k.locks[key] = l
		}
		l.users++
		k.mu.Unlock()
		l.Lock()
		held = append(held, l)
	}
	return func() {
		for i := len(held) - 1; i >= 0; i-- {
			held[i].Unlock()
			k.mu.Lock()
			if held[i].users--; held[i].users == 0 {
				delete(k.locks, keys[i])
			}
			k.mu.Unlock()
		}
	}
}
