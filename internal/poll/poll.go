// Package poll waits for a condition by checking it repeatedly. It is for
// tests of concurrent code, which wait for what they expect to happen
// rather than sleep for a fixed time.
package poll

import "time"

// Until checks cond every millisecond until it holds (true) or timeout
// passes (false). Between checks the processor is left to the code under
// test.
func Until(cond func() bool, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
