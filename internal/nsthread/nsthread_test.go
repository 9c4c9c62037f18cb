package nsthread

import (
	"errors"
	"os"
	"testing"

	"github.com/vishvananda/netns"
)

func TestInRunsInTheNamespaceAndComesBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace needs root")
	}
	here, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer here.Close()
	var created netns.NsHandle
	if err := Run(func() error {
		var err error
		created, err = netns.New() // moves this thread into it
		return err
	}, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	defer created.Close()
	var inside netns.NsHandle
	if err := In(created, func() error {
		var err error
		inside, err = netns.Get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if !inside.Equal(created) {
		t.Error("fn did not run in the namespace")
	}
	now, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer now.Close()
	if !now.Equal(here) {
		t.Error("the caller's thread changed namespace")
	}
	boom := errors.New("boom")
	if err := In(created, func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("In returned %v, want fn's error", err)
	}
	if err := Run(func() error { return boom }, func() error { t.Error("fn ran after enter failed"); return nil }); !errors.Is(err, boom) {
		t.Errorf("Run returned %v, want enter's error", err)
	}
}
