package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/midonet/midonet/internal/flowstate"
)

// The flow state on disk: a snapshot written whole every
// StateSaveInterval and on the way out, and a journal of what changed in
// between (journal.go); a restarted agent reads both.

const stateFileName = "flowstate.bin"

// stateFile keeps the flow state across agent restarts.
func (a *Agent) stateFile() string { return filepath.Join(a.cfg.StateDir, stateFileName) }

// ReadSavedState returns the flow-state messages an agent whose state
// directory is dir left: its last snapshot and the journals written since.
// Files that are not there hold nothing.
func ReadSavedState(dir string) ([]flowstate.Message, error) {
	var all []flowstate.Message
	for _, name := range []string{stateFileName, rotatedJournalName, journalName} {
		msgs, err := readStateFile(filepath.Join(dir, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return all, err
		}
		all = append(all, msgs...)
	}
	return all, nil
}

// A state file (the snapshot and the journals) is a sequence of records:
// an encoded flow-state message's length, two bytes big-endian, then the
// message.

// appendRecord appends the record of an encoded message to b.
func appendRecord(b, msg []byte) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(msg))), msg...)
}

// readStateFile returns the flow-state messages a state file holds; a
// truncated or corrupt tail is left out.
func readStateFile(path string) ([]flowstate.Message, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var msgs []flowstate.Message
	for len(b) >= 2 {
		l := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+l {
			break
		}
		var m flowstate.Message
		if m.UnmarshalBinary(b[2:2+l]) == nil {
			msgs = append(msgs, m)
		}
		b = b[2+l:]
	}
	return msgs, nil
}

// saveState writes the conntrack and NAT keys this agent holds, so that a
// restarted agent keeps established connections (and their NAT) working.
// It replaces the file whole (a crash mid-write leaves the previous one)
// and reports how many keys it saved, or false if it could not.
func (a *Agent) saveState() (keys int, ok bool) {
	a.journal.rotate() // before the keys are read: see stateJournal
	var out, enc []byte
	for _, m := range a.stateChunks() {
		var err error
		if enc, err = m.AppendBinary(enc[:0]); err != nil {
			continue
		}
		out = appendRecord(out, enc)
		keys += len(m.Conntrack) + len(m.NAT)
	}
	tmp := a.stateFile() + ".new"
	err := os.WriteFile(tmp, out, 0o600)
	if err == nil {
		err = os.Rename(tmp, a.stateFile())
	}
	if err != nil {
		a.log.Warn("flow state not saved: check the state directory", "dir", a.cfg.StateDir, "err", err)
		return 0, false
	}
	a.journal.dropRotated()
	a.metrics.stateSaves.Inc()
	a.metrics.stateSavedKeys.Set(float64(keys))
	a.log.Debug("flow state saved", "file", a.stateFile(), "keys", keys, "bytes", len(out))
	return keys, true
}

// stateChanges sums the keys added to and removed from the flow state.
func (a *Agent) stateChanges() uint64 {
	var n uint64
	for i := range a.state.Len() {
		s := a.state.Shard(i)
		n += s.Conntrack.Changes() + s.NAT.Changes()
	}
	return n
}

// saveStateLoop saves the flow state whole every StateSaveInterval, if
// keys came or went since the last save or the journal grew large, until
// ctx ends (Run saves it once more on the way out). The journal holds what
// changes in between, so that even a crash of the agent loses no
// connection (MidoNet's agent logs every state message to local files). At
// 100k keys a save takes about 30 ms of one core.
func (a *Agent) saveStateLoop(ctx context.Context) {
	tick := time.NewTicker(a.cfg.StateSaveInterval)
	defer tick.Stop()
	saved, first := uint64(0), true
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Read before saving: what changes during the save is saved next time.
		if c := a.stateChanges(); first || c != saved || a.journal.large() {
			if _, ok := a.saveState(); ok {
				saved, first = c, false
			}
		}
	}
}

// loadState imports the flow state a previous run saved, with what it
// journaled after its last save; keys then idle out unless traffic
// refreshes them. The SNAT port blocks the restored bindings use are
// claimed again.
func (a *Agent) loadState(ctx context.Context) {
	msgs, err := ReadSavedState(a.cfg.StateDir)
	if err != nil {
		a.log.Warn("flow state not restored: check the state directory", "dir", a.cfg.StateDir, "err", err)
		return
	}
	shard := a.state.Shard(a.state.Len() - 1)
	n := 0
	for i := range msgs {
		shard.Import(&msgs[i], a.now())
		n += len(msgs[i].Conntrack) + len(msgs[i].NAT)
	}
	a.log.Info("flow state restored", "keys", n)
	a.nat.reclaimRestored(ctx, msgs)
}
