package relay

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// sweepSupported: Linux exposes per-socket data timestamps through TCP_INFO.
const sweepSupported = true

// idleTime returns how long ago data last moved through conn in either
// direction, from the kernel's TCP_INFO: tcpi_last_data_recv and
// tcpi_last_data_sent are milliseconds since the last data segment received
// and sent (pure ACKs do not count), so the smaller of the two is the
// tunnel's idle time. A peer that stopped reading (zero window) lets both
// grow, which is right: nothing is moving. ok is false when the socket cannot
// be queried, for example because it is already closed.
func idleTime(conn *net.TCPConn) (d time.Duration, ok bool) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var serr error
	// Control, not Read/Write: a getsockopt never blocks, and Control
	// keeps the descriptor alive against a concurrent Close.
	err = rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	})
	if err != nil || serr != nil {
		return 0, false
	}
	ms := min(info.Last_data_recv, info.Last_data_sent)
	return time.Duration(ms) * time.Millisecond, true
}

// wasReset reports whether conn's peer reset the connection: the kernel
// moves a socket that received a reset to TCP_CLOSE (a socket the relay
// closed itself can no longer be asked, and reports false).
func wasReset(conn net.Conn) bool {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || serr != nil {
		return false
	}
	return info.State == tcpClose
}

// tcpClose is TCP_CLOSE of the kernel's tcp_states.h, tcpi_state's value
// for a socket that is no longer connected.
const tcpClose = 7
