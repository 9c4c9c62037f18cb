package agent

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// The journal: every flow-state message this agent commits or imports is
// appended, as the saved snapshot's records are, to a file beside the
// snapshot. A crash between two snapshots then loses only what was not yet
// handed to the kernel (at most journalBatch), not up to stateSaveEvery. Each save
// first moves the journal aside, then writes the snapshot, then deletes the
// moved journal: every key is in the snapshot or in a journal at all times.
const (
	journalName        = "flowstate.journal"
	rotatedJournalName = "flowstate.journal.old"
	// journalMaxPending bounds what waits for the disk; beyond it, records
	// are dropped (and counted) rather than grow the agent without limit.
	journalMaxPending = 64 << 20
	// journalSaveAfter makes the next periodic save happen even if no key
	// came or went: records of keys that already existed (flows simulated
	// again after an invalidation) would otherwise grow the journal.
	journalSaveAfter = 16 << 20
	// journalBatch is the least time between two writes of the journal:
	// a record reaches the kernel within it.
	journalBatch = time.Millisecond
)

// stateJournal appends flow-state records to the journal. Workers add
// records to a buffer; one goroutine writes it out.
type stateJournal struct {
	dir     string
	log     *slog.Logger
	metrics *Metrics
	kick    chan struct{}

	mu      sync.Mutex // guards pending
	pending []byte

	wmu    sync.Mutex // guards the file and spare; held while writing
	f      *os.File
	spare  []byte
	warned bool

	written atomic.Int64 // bytes in the journal since it was last moved aside
}

func newStateJournal(dir string, log *slog.Logger, m *Metrics) *stateJournal {
	return &stateJournal{dir: dir, log: log, metrics: m, kick: make(chan struct{}, 1)}
}

func (j *stateJournal) path() string        { return filepath.Join(j.dir, journalName) }
func (j *stateJournal) rotatedPath() string { return filepath.Join(j.dir, rotatedJournalName) }

// add appends an encoded flow-state message as one record.
func (j *stateJournal) add(msg []byte) {
	j.mu.Lock()
	if len(j.pending) > journalMaxPending {
		j.mu.Unlock()
		j.metrics.journalDropped.Inc()
		return
	}
	j.pending = appendRecord(j.pending, msg)
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// run writes what was added until ctx ends.
func (j *stateJournal) run(ctx context.Context) {
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-j.kick:
			j.flush()
		}
		// What comes meanwhile waits for the next write: a kick then
		// finds no one to wake, which cost every new connection a
		// wake-up of this goroutine on another core.
		pause.Reset(journalBatch)
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
	}
}

// flush writes what was added to the journal.
func (j *stateJournal) flush() {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	j.writeLocked()
}

// writeLocked writes the pending records to the open journal, opening it
// if need be. Called with wmu held.
func (j *stateJournal) writeLocked() {
	j.mu.Lock()
	out := j.pending
	j.pending = j.spare[:0]
	j.mu.Unlock()
	j.spare = out
	if len(out) == 0 {
		return
	}
	var err error
	if j.f == nil {
		j.f, err = os.OpenFile(j.path(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	}
	if err == nil {
		_, err = j.f.Write(out)
	}
	if err != nil {
		j.metrics.journalDropped.Inc()
		if !j.warned {
			j.log.Warn("flow state journal not written: check the state directory", "file", j.path(), "err", err)
			j.warned = true
		}
		return
	}
	j.warned = false
	j.written.Add(int64(len(out)))
	j.metrics.journalBytes.Add(float64(len(out)))
}

// rotate writes what is pending, then moves the journal aside: what is
// added from now on goes to a new journal. A snapshot taken after rotate
// holds every key of the moved journal, which dropRotated then deletes. If
// a moved journal is still there (the last snapshot failed), the journal
// stays where it is: both are kept until a snapshot succeeds.
func (j *stateJournal) rotate() {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	j.writeLocked()
	if _, err := os.Stat(j.rotatedPath()); err == nil {
		return
	}
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	if err := os.Rename(j.path(), j.rotatedPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		j.log.Warn("flow state journal not rotated", "file", j.path(), "err", err)
		return
	}
	j.written.Store(0)
}

// large reports whether the journal has grown enough to be worth a save
// even though no key came or went.
func (j *stateJournal) large() bool { return j.written.Load() > journalSaveAfter }

// dropRotated deletes the moved journal once a snapshot holds its keys.
func (j *stateJournal) dropRotated() {
	if err := os.Remove(j.rotatedPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		j.log.Warn("flow state journal not removed", "file", j.rotatedPath(), "err", err)
	}
}

// close writes what is pending and closes the journal.
func (j *stateJournal) close() {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	j.writeLocked()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}
