package proxy

import (
	"testing"
	"time"
)

// eventually polls cond until it holds or timeout passes, for state that
// the server's own goroutines change on their schedule; describe says what
// did not happen, and is only called then. The same helper as the
// end-to-end tests' (test/eventually_test.go).
func eventually(t testing.TB, timeout time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
