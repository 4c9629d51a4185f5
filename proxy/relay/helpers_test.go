package relay

import (
	"bufio"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"nicproxy/internal/loopback"
)

// TestMain fails the package when a test leaves goroutines behind: the relay
// and the sweeper must stop every goroutine they start.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ends are the four sockets of one relayed tunnel over loopback:
// client ⇄ relayClient [Relay] relayUp ⇄ upstream.
type ends struct {
	client      *net.TCPConn // the proxy client, driven by the test
	relayClient *net.TCPConn // the proxy's accepted client socket
	relayUp     *net.TCPConn // the proxy's dialed upstream socket
	upstream    *net.TCPConn // the upstream server, driven by the test
}

// connPair returns both sides of one loopback TCP connection.
func connPair(tb testing.TB) (dialed, accepted *net.TCPConn) { return loopback.TCPPair(tb) }

// newEnds builds a tunnel whose four sockets are closed when the test ends,
// so a failing test cannot leave Relay blocked.
func newEnds(tb testing.TB) ends {
	tb.Helper()
	var e ends
	e.client, e.relayClient = connPair(tb)
	e.relayUp, e.upstream = connPair(tb)
	tb.Cleanup(func() {
		e.client.Close()
		e.relayClient.Close()
		e.relayUp.Close()
		e.upstream.Close()
	})
	return e
}

// startRelay starts a relay with Go; the result arrives on the returned
// channel.
func startRelay(client, upstream net.Conn, s *IdleSweeper) <-chan Result {
	ch := make(chan Result, 1)
	Go(client, upstream, s, func(r Result) { ch <- r })
	return ch
}

// waitResult returns the relay's result or fails the test after d.
func waitResult(tb testing.TB, ch <-chan Result, d time.Duration) Result {
	tb.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		tb.Fatalf("Relay did not return within %v", d)
		return Result{}
	}
}

// bufferedConn stands for a conn whose handshake left bytes in a
// bufio.Reader: it is not a *net.TCPConn, so Relay must fall back to the
// ordinary copy. It forwards CloseWrite, as such a wrapper should.
type bufferedConn struct {
	*net.TCPConn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// plainConn hides every method but net.Conn's, including CloseWrite.
type plainConn struct{ net.Conn }
