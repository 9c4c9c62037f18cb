package agent

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/nsdb"
	"github.com/midonet/midonet/internal/topology"
)

// Port migration. When a port leaves a host, that host records itself as
// the port's last host in the NSDB. The host the port moves to asks the
// last host, over the overlay, for its flow state, so that established
// connections (and their NAT mappings) keep working after the move.

// pullEtherType marks the inner frame of a flow-state pull request: the
// requesting host's id and the port's id follow the Ethernet header.
const pullEtherType = 0x88b6

// lastHostKey is the state key that names the host a port was last bound
// to.
func lastHostKey(port topology.ID) string { return "/state/ports/" + port.String() + "/last-host" }

// recordLastHost notes that port was bound here, for the port's next host.
func (w *stateWriter) recordLastHost(port topology.ID) {
	host := w.a.hostID.String()
	w.submit(func(ctx context.Context) error {
		return w.a.store.PutState(ctx, lastHostKey(port), []byte(host))
	})
}

// pullState asks the port's previous host for its flow state. It waits for
// the overlay to reach that host, and asks again until a state message from
// that host arrives (its agent may be restarting and miss a request), for a
// few seconds at most.
func (a *Agent) pullState(ctx context.Context, port topology.ID) {
	// The previous host writes the key when it unbinds the port, which
	// may be a moment after this host bound it: wait for it.
	var e nsdb.StateEntry
	var err error
	for wait := time.Now().Add(lastHostWait); ; {
		if e, err = a.store.GetState(ctx, lastHostKey(port)); err == nil || time.Now().After(wait) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		return
	}
	prev, err := topology.ParseID(string(e.Value))
	if err != nil || prev == a.hostID {
		return
	}
	answered := a.pulls.await(prev)
	defer a.pulls.done(prev)
	deadline := time.Now().Add(pullTimeout)
	asked := 0
	for {
		if acts, ok := a.stateTunnel(prev); ok {
			frame := make([]byte, 14+32)
			binary.BigEndian.PutUint16(frame[12:], pullEtherType)
			copy(frame[14:], a.hostID[:])
			copy(frame[30:], port[:])
			if err := a.dp.Execute(frame, acts, 0); err != nil {
				a.log.Warn("flow state pull failed", "port_id", port, "from_host", prev, "err", err)
			}
			a.metrics.statePulls.Inc()
			asked++
			// Wait for the answer before asking again.
			select {
			case <-answered:
				a.log.Info("flow state pulled from the port's previous host", "port_id", port, "from_host", prev, "requests", asked)
				return
			case <-ctx.Done():
			case <-time.After(pullRetry):
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if asked > 0 {
				// A host with no state at all answers with nothing.
				a.log.Info("no flow state came from a migrated port's previous host", "port_id", port, "host", prev, "requests", asked)
			} else {
				a.log.Warn("previous host of a migrated port unreachable; its connections restart", "port_id", port, "host", prev)
			}
			return
		}
		if asked == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

const (
	// lastHostWait is how long a newly bound port's previous host has to
	// name itself (its write may queue behind others on a busy store).
	lastHostWait = 5 * time.Second
	// pullTimeout bounds how long a host asks a migrated port's previous
	// host for its flow state.
	pullTimeout = 5 * time.Second
	// pullRetry is how long it waits for an answer before asking again.
	pullRetry = 500 * time.Millisecond
)

// pullWaits tracks the hosts this agent asked for their flow state (the
// previous hosts of migrated ports) until their state arrives.
type pullWaits struct {
	mu sync.Mutex
	m  map[topology.ID]*pullWait // guarded by mu
}

type pullWait struct {
	answered chan struct{} // closed when a state message from the host arrives
	waiters  int
}

// await returns a channel closed when a flow-state message from host comes
// in; done ends the wait.
func (p *pullWaits) await(host topology.ID) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[topology.ID]*pullWait{}
	}
	w := p.m[host]
	if w == nil {
		w = &pullWait{answered: make(chan struct{})}
		p.m[host] = w
	}
	w.waiters++
	return w.answered
}

func (p *pullWaits) done(host topology.ID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.m[host]; w != nil {
		if w.waiters--; w.waiters == 0 {
			delete(p.m, host)
		}
	}
}

// arrived records a flow-state message from host.
func (p *pullWaits) arrived(host topology.ID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w := p.m[host]; w != nil {
		select {
		case <-w.answered:
		default:
			close(w.answered)
		}
	}
}

// answerPull sends all the flow state this host holds to the host that
// asked for it.
func (a *Agent) answerPull(frame []byte) {
	if len(frame) < 14+32 {
		return
	}
	var host topology.ID
	copy(host[:], frame[14:30])
	acts, ok := a.stateTunnel(host)
	if !ok {
		return
	}
	sent := 0
	var out []byte
	for _, m := range a.stateChunks() {
		var err error
		if out, err = appendStateFrame(out[:0], &m); err != nil {
			continue
		}
		if a.dp.Execute(out, acts, 0) == nil {
			sent++
			a.metrics.stateSent.Inc()
		}
	}
	a.log.Info("flow state sent to a migrated port's new host", "host", host, "messages", sent)
}

// stateChunks returns every conntrack and NAT key this agent holds, in
// messages small enough for one overlay packet each.
func (a *Agent) stateChunks() []flowstate.Message {
	var connKeys, natKeys int // to size the copies: at 100k keys, growing them took half the time
	for i := range a.state.Len() {
		connKeys += a.state.Shard(i).Conntrack.Len()
		natKeys += a.state.Shard(i).NAT.Len()
	}
	conns := make([]flowstate.ConnKey, 0, connKeys)
	nats := make([]flowstate.NATEntry, 0, natKeys)
	for i := range a.state.Len() {
		s := a.state.Shard(i)
		s.Conntrack.Range(func(k flowstate.ConnKey, _ struct{}) bool { conns = append(conns, k); return true })
		s.NAT.Range(func(k flowstate.NATKey, b flowstate.NATBinding) bool {
			nats = append(nats, flowstate.NATEntry{Key: k, Binding: b})
			return true
		})
	}
	out := make([]flowstate.Message, 0, max(connKeys/16, natKeys/8)+1)
	for len(conns) > 0 || len(nats) > 0 {
		nc, nn := min(len(conns), 16), min(len(nats), 8)
		out = append(out, flowstate.Message{Sender: a.hostID, Conntrack: conns[:nc], NAT: nats[:nn]})
		conns, nats = conns[nc:], nats[nn:]
	}
	return out
}
