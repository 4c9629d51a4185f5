//go:build !linux

package relay

import (
	"net"
	"time"
)

// sweepSupported is false: outside Linux there is no per-socket "last data"
// timestamp that can be read without wrapping the conn (and a wrapper would
// give up the zero-copy path on the platforms that have one), so idle tunnels
// are never closed there; they end when a peer closes them.
const sweepSupported = false

// idleTime never reports a tunnel as idle on this system.
func idleTime(*net.TCPConn) (time.Duration, bool) {
	return 0, false
}

// wasReset cannot tell a reset from other errors here: a client's reset
// counts as a failure unless the other direction had already finished.
func wasReset(net.Conn) bool { return false }
