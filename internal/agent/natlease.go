package agent

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/sim"
	"github.com/midonet/midonet/internal/topology"
)

// SNAT port blocks leased from the store, as MidoNet's NatLeaser does: the
// simulation allocates a connection's translated source port only inside
// blocks of 64 ports this host holds for the (device, NAT address)
// (flowstate.SNATLeases), so two hosts never pick the same (address, port).
// When they are full the simulation says so (sim.NATLeaseNeeded): the
// worker parks the packet, the leaser claims another block from the store
// (a key bound to the host's session, so a dead host's blocks come free),
// and the packet is simulated again. The leaser also claims the next block
// ahead of need once an address's blocks are three quarters full, and gives
// back a block nothing has used for natReleaseAfter.
//
// Without the store the host keeps allocating inside the blocks it holds;
// a connection that needs a new block is dropped and counted
// (nat-lease-unavailable), never given a port another host may hold. When
// every block of the rule's range is held, new connections are dropped as
// nat-exhausted.

const (
	// natLeaseTimeout is how long a packet waits for a block before it is
	// dropped (less than arpTimeout: the worker's parking lot is shared).
	natLeaseTimeout = 2 * time.Second
	// natRetryAfter is how long an address whose lease failed refuses new
	// connections before the store is asked again.
	natRetryAfter = time.Second
	// natReleaseAfter is how long a held block stays unused before it is
	// given back (its last key expired).
	natReleaseAfter = 5 * time.Second
	// natDrainFor is how long a block is out of the simulation's reach
	// before it is given back, so that an allocation made from it just
	// before is counted first.
	natDrainFor = time.Second
	// natStoreTimeout bounds each store call of the leaser.
	natStoreTimeout = 2 * time.Second
	natTick         = 500 * time.Millisecond
)

// natLeaser leases SNAT port blocks for the agent's workers.
type natLeaser struct {
	a      *Agent
	leases *flowstate.SNATLeases
	kick   chan struct{}

	mu sync.Mutex // guards the fields below
	// want holds the addresses that need a block: since is when the
	// latest simulation asked (zero for a prefetch, which leases only if
	// the address is still low when its turn comes).
	want   map[flowstate.NATAddr]natWant
	failed map[flowstate.NATAddr]natFailure // refused until then
	// owned is what this host holds in the store.
	owned map[flowstate.NATAddr]map[uint16]*ownedBlock
	// granted is when an address last got a block.
	granted map[flowstate.NATAddr]time.Time
	ranges  map[flowstate.NATAddr][2]uint16 // the port range last asked for
}

type natWant struct{ since time.Time }

// natFailure is an address whose last lease failed: new connections
// through it are refused until then, counted as reason.
type natFailure struct {
	until  time.Time
	reason string
}

// ownedBlock is a block this host holds in the store.
type ownedBlock struct {
	idleSince time.Time // when its last key expired (zero while in use)
	drainAt   time.Time // when it was taken out of reach to be given back
	// lost: the store lost our claim (the session's lease expired); the
	// block is out of reach until the claim is made again.
	lost bool
}

func newNATLeaser(a *Agent) *natLeaser {
	l := &natLeaser{a: a, kick: make(chan struct{}, 1),
		want: map[flowstate.NATAddr]natWant{}, failed: map[flowstate.NATAddr]natFailure{},
		owned: map[flowstate.NATAddr]map[uint16]*ownedBlock{}, granted: map[flowstate.NATAddr]time.Time{},
		ranges: map[flowstate.NATAddr][2]uint16{}}
	l.leases = flowstate.NewSNATLeases(l.wanted)
	return l
}

func (l *natLeaser) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// request asks for a block on behalf of a parked packet. It returns ""
// when the packet may wait for it, or the reason to drop it when the
// address's last lease failed a moment ago: nat-lease-unavailable (the
// store could not be reached) or nat-exhausted (no block is free).
func (l *natLeaser) request(r sim.NATLeaseRequest, now time.Time) (refused string) {
	a := flowstate.NATAddr{Device: r.Device, IP: r.IP}
	l.mu.Lock()
	if f, ok := l.failed[a]; ok && now.Before(f.until) {
		l.mu.Unlock()
		return f.reason
	}
	l.ranges[a] = [2]uint16{r.PortFrom, r.PortTo}
	if w := l.want[a]; w.since.Before(now) {
		l.want[a] = natWant{since: now}
	}
	l.mu.Unlock()
	l.wake()
	return ""
}

// wanted is the lease table's low-water callback: lease the next block of
// a ahead of need. It runs with a flow-state table locked.
func (l *natLeaser) wanted(a flowstate.NATAddr) {
	l.mu.Lock()
	_, known := l.ranges[a]
	_, queued := l.want[a]
	if known && !queued {
		l.want[a] = natWant{}
	}
	l.mu.Unlock()
	if known && !queued {
		l.wake()
	}
}

// run leases what is wanted and gives back what is unused, until ctx ends.
// It gives back nothing on the way out: the session's end frees the
// blocks, and a restarted agent takes those its restored keys use again.
func (l *natLeaser) run(ctx context.Context) {
	tick := time.NewTicker(natTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
			l.leaseWanted(ctx)
		case <-tick.C:
			l.leaseWanted(ctx)
			l.releaseUnused(ctx)
		}
	}
}

// leaseWanted leases a block for each address that still needs one.
func (l *natLeaser) leaseWanted(ctx context.Context) {
	for ctx.Err() == nil {
		l.mu.Lock()
		var a flowstate.NATAddr
		var w natWant
		found := false
		for a, w = range l.want {
			found = true
			break
		}
		if !found {
			l.mu.Unlock()
			return
		}
		delete(l.want, a)
		rng, known := l.ranges[a]
		satisfied := !w.since.IsZero() && l.granted[a].After(w.since)
		l.mu.Unlock()
		switch {
		case !known, satisfied:
			// A block came after the packet asked: it is simulated
			// again with it.
		case w.since.IsZero() && !l.leases.Low(a):
			// A prefetch no longer needed.
		default:
			l.lease(ctx, a, rng[0], rng[1])
		}
	}
}

// natLeaseMax bounds the blocks one lease claims at once.
const natLeaseMax = 16

// leaseCount is how many blocks to claim at once for an address holding
// held: a quarter more, so that an address under steady load asks the
// store a logarithmic number of times rather than once every 64
// connections (each round reads the address's leases from the store, so
// one block at a time cost the store a share of a core at 2,000 SNAT
// connections a second). Blocks left unused go back after natReleaseAfter.
func leaseCount(held int) int { return min(1+held/4, natLeaseMax) }

// lease claims blocks of a holding ports in [from, to] (leaseCount of
// them): blocks no host holds and no key this host knows uses, never
// leased before if there are some (picked at random), else the least
// recently leased.
func (l *natLeaser) lease(ctx context.Context, a flowstate.NATAddr, from, to uint16) {
	ctx, cancel := context.WithTimeout(ctx, natStoreTimeout)
	defer cancel()
	dev := a.Device.String()
	fail := func(reason string, err error) {
		drop := "nat-lease-unavailable"
		if reason == "exhausted" {
			drop = "nat-exhausted"
		}
		l.mu.Lock()
		l.failed[a] = natFailure{until: l.a.now().Add(natRetryAfter), reason: drop}
		l.mu.Unlock()
		l.a.metrics.natLeaseFailures.WithLabelValues(reason).Inc()
		l.a.log.Warn("cannot lease a SNAT port block; new connections through the address are dropped for now",
			"device_id", dev, "nat_ip", a.IP, "reason", reason, "err", err)
	}
	taken, _, err := l.a.store.ListState(ctx, nsdb.NATBlockPrefix(dev, a.IP))
	if err != nil {
		fail("store", err)
		return
	}
	marks, _, err := l.a.store.ListState(ctx, nsdb.NATBlockUsedPrefix(dev, a.IP))
	if err != nil {
		fail("store", err)
		return
	}
	busy := map[uint16]bool{}
	for _, e := range taken {
		if _, _, b, ok := nsdb.ParseNATBlockKey(e.Key); ok {
			busy[b] = true
		}
	}
	lastUsed := map[uint16]int64{}
	for _, e := range marks {
		if _, _, b, ok := nsdb.ParseNATBlockKey(e.Key); ok {
			lastUsed[b] = e.ModRevision
		}
	}
	l.mu.Lock()
	for b := range l.owned[a] {
		busy[b] = true
	}
	l.mu.Unlock()
	var fresh, reused []uint16
	for b := flowstate.Block(max(from, 1)); b <= flowstate.Block(to); b++ {
		if busy[b] || l.leases.Used(a, b) > 0 {
			continue
		}
		if _, ok := lastUsed[b]; ok {
			reused = append(reused, b)
		} else {
			fresh = append(fresh, b)
		}
	}
	rand.Shuffle(len(fresh), func(i, j int) { fresh[i], fresh[j] = fresh[j], fresh[i] })
	// The least recently leased first.
	slices.SortFunc(reused, func(x, y uint16) int { return cmp.Compare(lastUsed[x], lastUsed[y]) })
	host := []byte(l.a.hostID.String())
	want, claimed := 1, 0
	if held := l.leases.Held(a); held != nil {
		want = leaseCount(held.Len())
	}
	for _, b := range append(fresh, reused...) {
		ok, err := l.a.session.ClaimState(ctx, nsdb.NATBlockKey(dev, a.IP, b), host)
		if err != nil {
			if claimed == 0 {
				fail("store", err)
			}
			return
		}
		if !ok {
			continue // another host took it meanwhile
		}
		// The mark only orders later choices: a failure costs nothing.
		l.a.store.PutState(ctx, nsdb.NATBlockUsedKey(dev, a.IP, b), host)
		l.grant(a, b)
		l.a.log.Debug("SNAT port block leased", "device_id", dev, "nat_ip", a.IP, "block", b,
			"ports", formatBlock(b))
		if claimed++; claimed == want {
			return
		}
	}
	if claimed == 0 {
		fail("exhausted", nil)
	}
}

// grant records block b of a as this host's and hands it to the
// simulation.
func (l *natLeaser) grant(a flowstate.NATAddr, b uint16) {
	l.mu.Lock()
	if l.owned[a] == nil {
		l.owned[a] = map[uint16]*ownedBlock{}
	}
	l.owned[a][b] = &ownedBlock{}
	l.granted[a] = l.a.now()
	delete(l.failed, a)
	l.mu.Unlock()
	l.leases.Grant(a, b)
	l.a.metrics.natBlocksLeased.Inc()
	l.a.metrics.natBlocksHeld.Inc()
}

// releaseUnused gives back the blocks no key has used for natReleaseAfter:
// first out of the simulation's reach, then, natDrainFor later and still
// unused, out of the store.
func (l *natLeaser) releaseUnused(ctx context.Context) {
	now := l.a.now()
	type release struct {
		a flowstate.NATAddr
		b uint16
	}
	var give []release
	l.mu.Lock()
	for a, blocks := range l.owned {
		for b, ob := range blocks {
			switch used := l.leases.Used(a, b) > 0; {
			case ob.lost:
			case used:
				ob.idleSince = time.Time{}
				if !ob.drainAt.IsZero() {
					ob.drainAt = time.Time{}
					l.leases.Grant(a, b) // used again before it went
				}
			case ob.idleSince.IsZero():
				ob.idleSince = now
			case ob.drainAt.IsZero() && now.Sub(ob.idleSince) >= natReleaseAfter:
				ob.drainAt = now
				l.leases.Suspend(a, b)
			case !ob.drainAt.IsZero() && now.Sub(ob.drainAt) >= natDrainFor:
				give = append(give, release{a, b})
			}
		}
	}
	l.mu.Unlock()
	for _, r := range give {
		sctx, cancel := context.WithTimeout(ctx, natStoreTimeout)
		err := l.a.session.DeleteState(sctx, nsdb.NATBlockKey(r.a.Device.String(), r.a.IP, r.b))
		cancel()
		if err != nil {
			return // the store is away: try again at the next tick
		}
		l.mu.Lock()
		delete(l.owned[r.a], r.b)
		l.mu.Unlock()
		l.a.metrics.natBlocksReleased.Inc()
		l.a.metrics.natBlocksHeld.Dec()
	}
}

// observe follows the store's view of the blocks this host holds (watch
// events under /state/nat/): a claim that vanished (the session's lease
// expired while the store was away) puts the block out of reach until it
// is claimed again; a block another host claimed meanwhile is lost.
func (l *natLeaser) observe(ev nsdb.Event) {
	devID, ip, b, ok := nsdb.ParseNATBlockKey(ev.Key)
	if !ok || !strings.HasPrefix(ev.Key, "/state/nat/") {
		return
	}
	dev, err := topology.ParseID(devID)
	if err != nil {
		return
	}
	a := flowstate.NATAddr{Device: dev, IP: ip}
	l.mu.Lock()
	ob := l.owned[a][b]
	if ob == nil || !ob.drainAt.IsZero() {
		l.mu.Unlock()
		return
	}
	mine := ev.Type == nsdb.EventPut && string(ev.Value) == l.a.hostID.String()
	switch {
	case ev.Type == nsdb.EventDelete:
		ob.lost = true
		l.mu.Unlock()
		l.leases.Suspend(a, b)
		l.a.log.Warn("the store dropped a SNAT port block this host holds; claiming it again",
			"device_id", devID, "nat_ip", ip, "block", b)
		go l.reclaim(a, b)
		return
	case mine && ob.lost:
		ob.lost = false
		l.mu.Unlock()
		l.leases.Grant(a, b)
		return
	case !mine:
		delete(l.owned[a], b)
		l.mu.Unlock()
		l.leases.Suspend(a, b)
		l.a.metrics.natBlocksLost.Inc()
		l.a.metrics.natBlocksHeld.Dec()
		l.a.log.Error("another host claimed a SNAT port block this host held; its connections through those ports may break",
			"device_id", devID, "nat_ip", ip, "block", b, "owner", string(ev.Value))
		return
	}
	l.mu.Unlock()
}

// reclaim claims again a block whose claim the store dropped; the watch
// event of the claim gives it back to the simulation.
func (l *natLeaser) reclaim(a flowstate.NATAddr, b uint16) {
	ctx, cancel := context.WithTimeout(context.Background(), natStoreTimeout)
	defer cancel()
	l.a.session.ClaimState(ctx, nsdb.NATBlockKey(a.Device.String(), a.IP, b), []byte(l.a.hostID.String()))
}

// reclaimRestored claims the blocks of the SNAT bindings restored from the
// state directory that no host holds now (this host's own, whose claims
// ended with its last run, and those of hosts that died since), so that no
// other host leases them while those connections live. A block another
// host holds is its own: left to it.
func (l *natLeaser) reclaimRestored(ctx context.Context, msgs []flowstate.Message) {
	if l.a.session == nil {
		return // not registered (a test reading the state alone): nothing to claim with
	}
	seen := map[flowstate.NATAddr]map[uint16]bool{}
	for i := range msgs {
		for _, e := range msgs[i].NAT {
			if e.Key.Type != flowstate.RevSNAT {
				continue
			}
			a := flowstate.NATAddr{Device: e.Key.Device, IP: e.Key.Dst}
			if seen[a] == nil {
				seen[a] = map[uint16]bool{}
			}
			seen[a][flowstate.Block(e.Key.DstPort)] = true
		}
	}
	host := []byte(l.a.hostID.String())
	for a, blocks := range seen {
		for b := range blocks {
			sctx, cancel := context.WithTimeout(ctx, natStoreTimeout)
			ok, err := l.a.session.ClaimState(sctx, nsdb.NATBlockKey(a.Device.String(), a.IP, b), host)
			cancel()
			switch {
			case err != nil:
				l.a.log.Warn("cannot claim the SNAT port block of restored connections", "nat_ip", a.IP, "block", b, "err", err)
			case ok:
				l.grant(a, b)
			}
		}
	}
}

// waitNATLease parks a packet whose SNAT needs a new port block until the
// leaser has one, or drops it (counted) if the store cannot give one or
// the wait is over.
func (w *worker) waitNATLease(u *upcall, res *sim.Result, now time.Time) {
	if !u.parkedAt.IsZero() && now.Sub(u.parkedAt) > natLeaseTimeout {
		w.a.metrics.drops.WithLabelValues("nat-lease-timeout").Inc()
		return
	}
	if reason := w.a.nat.request(res.NATLease, now); reason != "" {
		w.a.metrics.drops.WithLabelValues(reason).Inc()
		return
	}
	if u.parkedAt.IsZero() {
		u.parkedAt, u.lastARP = now, now
	}
	w.parked = append(w.parked, u.keep())
}

func formatBlock(b uint16) string {
	lo := int(b) * flowstate.BlockPorts
	return strconv.Itoa(lo) + "-" + strconv.Itoa(lo+flowstate.BlockPorts-1)
}
