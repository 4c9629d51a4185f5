// Package poll waits in tests for state that another party (the kernel, a
// child process, a server's own goroutines) changes on its own schedule,
// instead of sleeping for a guessed while.
package poll

import (
	"testing"
	"time"
)

// Until polls cond every 10 ms until it holds, or fails tb once timeout
// has passed; describe says what did not happen, and is only called then.
func Until(tb testing.TB, timeout time.Duration, cond func() bool, describe func() string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %v: %s", timeout, describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
