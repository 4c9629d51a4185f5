// Package sniff tells which protocol a client on a mixed port speaks, by
// peeking at its first byte in the kernel, so that the connection can still be
// handed on as a bare *net.TCPConn.
package sniff

import (
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Protocol is the protocol a mixed-port client speaks. The zero value is no
// protocol; Peek returns it together with an error.
type Protocol int

// The protocols a mixed port serves.
const (
	// SOCKS5 clients start with version byte 0x05.
	SOCKS5 Protocol = iota + 1
	// SOCKS4 clients (SOCKS4 and SOCKS4a) start with version byte 0x04.
	SOCKS4
	// HTTP is everything else: a request line starts with a method name,
	// and a client that is none of the three gets an HTTP error back, which
	// is the most readable answer a stray client can get.
	HTTP
)

// String returns the name used in logs and metrics.
func (p Protocol) String() string {
	switch p {
	case SOCKS5:
		return "socks5"
	case SOCKS4:
		return "socks4"
	case HTTP:
		return "http"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// Peek returns the protocol conn's client speaks, judged from its first byte,
// and copies into head up to len(head) of the bytes the client has sent so
// far (at least one), without consuming any: the next Read returns them.
// head must not be empty.
//
// The usual sniffer reads through a bufio.Reader and then must keep
// wrapping the conn to replay what it buffered, and a wrapped conn can no
// longer be spliced by the relay. Peek instead calls recv(2) with MSG_PEEK:
// the byte stays in the socket's receive queue and the next Read returns it.
// It goes through SyscallConn().Read, so it waits in Go's poller like any
// Read (no blocked thread) and honours conn's read deadline: set one
// (timeouts.handshake) before calling Peek, or a silent client holds it
// forever. A client that closes before sending anything yields io.EOF; a
// deadline yields an error whose Timeout() is true (os.ErrDeadlineExceeded).
func Peek(conn *net.TCPConn, head []byte) (Protocol, int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, 0, fmt.Errorf("sniff: %w", err)
	}
	var (
		n    int
		rerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		for {
			n, _, rerr = unix.Recvfrom(int(fd), head, unix.MSG_PEEK)
			// Retry EINTR here: returning false would wait for the
			// next readiness edge, which may never come if the data is
			// already queued.
			if rerr != unix.EINTR {
				break
			}
		}
		// EAGAIN: nothing yet, let the poller wait (and watch the
		// deadline). Anything else, data or error, ends the wait.
		return rerr != unix.EAGAIN
	})
	if err != nil {
		// Deadline, or conn closed: err is already a *net.OpError.
		return 0, 0, err
	}
	if rerr != nil {
		return 0, 0, &net.OpError{Op: "peek", Net: "tcp", Source: conn.LocalAddr(),
			Addr: conn.RemoteAddr(), Err: os.NewSyscallError("recvfrom", rerr)}
	}
	if n == 0 {
		return 0, 0, io.EOF
	}
	return classify(head[0]), n, nil
}

// classify says which protocol a client's first byte starts.
func classify(first byte) Protocol {
	switch first {
	case 0x05:
		return SOCKS5
	case 0x04:
		return SOCKS4
	default:
		return HTTP
	}
}
