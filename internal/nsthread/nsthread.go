// Package nsthread runs code on an OS thread switched into another network
// namespace. Linux keeps the namespace per thread, so the code runs on a
// fresh goroutine locked to its thread: the caller's thread never moves,
// and sockets the code opens live in the namespace it entered.
package nsthread

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Run runs fn on a locked thread that enter has moved into a namespace
// (netns.Set, netns.NewNamed, ...), then moves the thread back. A thread
// that cannot go back stays locked and ends with its goroutine rather than
// return to the runtime's pool in the wrong namespace. It returns enter's
// error or fn's.
func Run(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err = enter(); err == nil {
			err = fn()
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// In runs fn on a thread in namespace ns.
func In(ns netns.NsHandle, fn func() error) error {
	return Run(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter network namespace: %w", err)
		}
		return nil
	}, fn)
}
