package proxy

import (
	"testing"
	"time"

	"nicproxy/internal/poll"
)

// eventually is poll.Until, the one poll loop every test package uses.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	poll.Until(t, timeout, cond, describe)
}
