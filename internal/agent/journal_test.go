package agent

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/midonet/midonet/internal/datapath/mem"
	"github.com/midonet/midonet/internal/flows"
	"github.com/midonet/midonet/internal/flowstate"
	"github.com/midonet/midonet/internal/nsdb/memstore"
	"github.com/midonet/midonet/internal/poll"
	"github.com/midonet/midonet/internal/topology"
)

// natRecord is an encoded message holding one NAT binding to port.
func natRecord(port uint16) []byte {
	m := flowstate.Message{Sender: topology.NewID(), NAT: []flowstate.NATEntry{{
		Key:     flowstate.NATKey{Type: flowstate.FwdSNAT, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("8.8.8.8"), SrcPort: port, DstPort: 53, Proto: 17},
		Binding: flowstate.NATBinding{IP: netip.MustParseAddr("203.0.113.1"), Port: port},
	}}}
	b, err := m.MarshalBinary()
	if err != nil {
		panic(err)
	}
	return b
}

// natPorts lists the bound ports of the NAT entries in msgs.
func natPorts(msgs []flowstate.Message) []uint16 {
	var ports []uint16
	for _, m := range msgs {
		for _, e := range m.NAT {
			ports = append(ports, e.Binding.Port)
		}
	}
	return ports
}

// readPorts returns the NAT ports the file name in dir holds (none if it
// is not there).
func readPorts(t *testing.T, dir, name string) []uint16 {
	t.Helper()
	msgs, err := readStateFile(filepath.Join(dir, name))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return natPorts(msgs)
}

// TestStateJournalRotation walks the journal through saves: a save moves
// the journal aside before it reads the keys and deletes it once the
// snapshot is written; a save that failed leaves the moved journal, and
// the next one keeps both until it succeeds.
func TestStateJournalRotation(t *testing.T) {
	dir := t.TempDir()
	j := newStateJournal(dir, slog.New(slog.NewTextHandler(io.Discard, nil)), newMetrics(flows.New(nil, 1)))
	defer j.close()
	type files struct{ journal, rotated []uint16 }
	check := func(step string, want files) {
		t.Helper()
		got := files{readPorts(t, dir, journalName), readPorts(t, dir, rotatedJournalName)}
		if !slices.Equal(got.journal, want.journal) || !slices.Equal(got.rotated, want.rotated) {
			t.Fatalf("%s: journal %v, moved journal %v; want %v and %v", step, got.journal, got.rotated, want.journal, want.rotated)
		}
	}
	j.add(natRecord(1))
	j.add(natRecord(2))
	j.rotate() // what was pending is written first
	check("first save begins", files{nil, []uint16{1, 2}})
	j.add(natRecord(3))
	j.flush()
	check("a key after the rotation", files{[]uint16{3}, []uint16{1, 2}})
	if j.written.Load() == 0 {
		t.Error("the journal does not count what it wrote since the rotation")
	}
	// The first save's snapshot failed: no dropRotated. The next save keeps
	// the moved journal and appends to the current one.
	j.rotate()
	j.add(natRecord(4))
	j.close()
	check("second save begins after a failed one", files{[]uint16{3, 4}, []uint16{1, 2}})
	msgs, err := ReadSavedState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := natPorts(msgs); !slices.Equal(slices.Sorted(slices.Values(got)), []uint16{1, 2, 3, 4}) {
		t.Fatalf("saved state holds %v, want every key added", got)
	}
	j.dropRotated()
	check("second save done", files{[]uint16{3, 4}, nil})
	j.rotate()
	j.dropRotated()
	check("third save done", files{nil, nil})
	if n := j.written.Load(); n != 0 {
		t.Errorf("a moved journal still counts %d bytes towards the next save", n)
	}
}

// TestJournalKeepsStateBetweenSaves checks that a NAT binding reaches the
// disk at once, before any save, and that an agent started on what a
// crash would leave restores it.
func TestJournalKeepsStateBetweenSaves(t *testing.T) {
	c := newCloud(t)
	h1 := c.addAgentWith("h1", "10.9.0.1", func(cfg *Config) { cfg.StateSaveInterval = time.Hour })
	n, dpVM, dpUp := c.snatOnOneHost(t, h1)

	h1.dp.Inject(dpVM, udpFrame(n.vmMAC, n.rpMAC, "10.0.0.10", "8.8.8.8", 5000, 53))
	out := readIPv4(t, h1, dpUp)
	dir := h1.cfg.StateDir
	if !poll.Until(func() bool { return slices.Contains(readPorts(t, dir, journalName), out.SrcPort) }, 3*time.Second) {
		t.Fatalf("the SNAT binding to port %d never reached the journal", out.SrcPort)
	}
	if _, err := os.Stat(filepath.Join(dir, stateFileName)); err == nil {
		t.Fatal("a snapshot was saved: the test must see the journal alone")
	}

	// A crash now leaves the journal: an agent started on it restores the
	// binding.
	crashed := t.TempDir()
	b, err := os.ReadFile(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(HostStateDir(crashed, "h1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(HostStateDir(crashed, "h1"), journalName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	dp := mem.New(mem.Config{})
	defer dp.Close()
	next, err := New(Config{HostName: "h1", StateDir: crashed, Store: memstore.New(), Datapath: dp})
	if err != nil {
		t.Fatal(err)
	}
	next.loadState(context.Background())
	restored := false
	next.state.Shard(next.state.Len() - 1).NAT.Range(func(_ flowstate.NATKey, v flowstate.NATBinding) bool {
		restored = restored || (v.IP == out.Src && v.Port == out.SrcPort)
		return true
	})
	if !restored {
		t.Errorf("an agent started on the crashed one's journal lacks the binding %v:%d", out.Src, out.SrcPort)
	}

	// A save puts the binding in the snapshot and leaves no journal.
	if _, ok := h1.saveState(); !ok {
		t.Fatal("save failed")
	}
	if got := readPorts(t, dir, stateFileName); !slices.Contains(got, out.SrcPort) {
		t.Errorf("the snapshot holds NAT ports %v, not %d", got, out.SrcPort)
	}
	for _, name := range []string{journalName, rotatedJournalName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s is still there after a save", name)
		}
	}
}
