// Package relay moves bytes between a proxy client and its upstream TCP
// connection, keeping the kernel's zero-copy path, propagating half-close and
// closing idle tunnels.
package relay

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// ErrIdle is the Result.Err of a tunnel that an IdleSweeper closed because no
// data moved in either direction for the idle timeout. It is a distinct value
// so the access log and metrics can tell "timed out" from "failed".
var ErrIdle = errors.New("idle timeout")

// Result describes one relayed connection once both directions have ended.
type Result struct {
	// Up counts bytes copied from the client to the upstream.
	Up int64
	// Down counts bytes copied from the upstream to the client.
	Down int64
	// Err is the first real error, nil on a clean close. The side effects of
	// tearing a tunnel down are not errors: io.EOF, net.ErrClosed after the
	// relay (or the sweeper) closed the conns, and a reset or broken pipe
	// once the other direction had already finished cleanly (peers commonly
	// reset after they are done), and a reset by the client at any time:
	// the client ended the tunnel. An idle close is reported as ErrIdle.
	Err error
}

// Go relays bytes both ways between client and upstream on goroutines of
// its own and returns at once; done receives the Result when both
// directions have ended and both conns are closed, on the goroutine that
// ended last. A proxy that hands a tunnel over this way lets the goroutine
// that ran the handshake end, so an idle tunnel holds two small goroutine
// stacks instead of the deep one the handshake grew.
//
// When both conns are *net.TCPConn, bulk data moves by splice(2) and small
// chunks by one read and one write (see copyStream), and a waiting
// direction holds neither a pipe nor a buffer. Callers must therefore pass
// the conns unwrapped: any wrapper silently downgrades to a buffered copy.
// Other net.Conn values still work through the ordinary copy; such a
// wrapper should expose CloseWrite so that half-close can be propagated.
//
// With a non-nil s the tunnel is registered on s, which closes it when it
// has been idle for s's timeout; the Result then carries ErrIdle. The
// socket watched is the client's when it is a *net.TCPConn, else the
// upstream's: every relayed byte crosses both, so either tells whether the
// tunnel is idle.
func Go(client, upstream net.Conn, s *IdleSweeper, done func(Result)) {
	t := newTunnel(client, upstream, s, done)
	go t.run(t.down)
	go t.run(t.up)
}

func newTunnel(client, upstream net.Conn, s *IdleSweeper, done func(Result)) *tunnel {
	t := &tunnel{client: client, upstream: upstream, done: done, untrack: func() {}}
	t.running.Store(2)
	if s != nil {
		if tc, ok := client.(*net.TCPConn); ok {
			t.untrack = s.Track(tc, t.idleClose)
		} else if tc, ok := upstream.(*net.TCPConn); ok {
			t.untrack = s.Track(tc, t.idleClose)
		}
	}
	return t
}

// run runs one direction; the direction that ends last finishes the tunnel.
func (t *tunnel) run(direction func()) {
	direction()
	if t.running.Add(-1) > 0 {
		return
	}
	// After untrack returns the sweeper can no longer touch this tunnel, so
	// the idle flag read below is final.
	t.untrack()
	// Closing both is what finally releases the descriptors; after a clean
	// half-close in each direction nothing else would.
	t.closeBoth()
	t.mu.Lock()
	res := Result{Up: t.upBytes, Down: t.downBytes, Err: t.err}
	if res.Err == nil && t.idle {
		res.Err = ErrIdle
	}
	t.mu.Unlock()
	t.done(res)
}

func (t *tunnel) down() {
	n := t.pipe(t.client, t.upstream, "upstream to client")
	t.mu.Lock()
	t.downBytes = n
	t.mu.Unlock()
}

func (t *tunnel) up() {
	n := t.pipe(t.upstream, t.client, "client to upstream")
	t.mu.Lock()
	t.upBytes = n
	t.mu.Unlock()
}

// tunnel is the state the two directions of one relay share.
type tunnel struct {
	client, upstream net.Conn
	done             func(Result)
	untrack          func()
	running          atomic.Int32 // directions still running

	mu sync.Mutex
	// idle is set by the sweeper before it closes the conns, so the relay
	// can tell an idle close from any other close.
	idle bool
	// ended counts directions that have returned, for any reason.
	ended int
	// err is the first real error of either direction.
	err error
	// closed is set once the conns are being closed; errors seen after that
	// are consequences of the close, not causes.
	closed bool
	// cleanDone counts directions that ended with EOF.
	cleanDone int
	// upBytes and downBytes are what each direction moved.
	upBytes, downBytes int64
}

// halfCloser is implemented by *net.TCPConn, *net.UnixConn and *tls.Conn.
type halfCloser interface {
	CloseWrite() error
}

// pipe copies src to dst until EOF or error and returns the bytes copied.
func (t *tunnel) pipe(dst, src net.Conn, dir string) int64 {
	// Between two *net.TCPConn this splices (see copyStream); nothing may
	// wrap the conns, or Go falls back to a user-space copy.
	n, err := copyStream(dst, src)
	t.mu.Lock()
	t.ended++
	if err == nil {
		t.cleanDone++
	}
	t.mu.Unlock()
	if err == nil {
		// Pass the EOF on while the other direction keeps flowing: a client
		// that shut its write side still wants the whole reply.
		if hc, ok := dst.(halfCloser); ok {
			if hc.CloseWrite() == nil {
				return n
			}
		}
		// Without half-close (or when shutdown failed because the socket is
		// already broken) a full close is the only way the peer learns that
		// no more data is coming; waiting instead could hang forever.
		t.closeBoth()
		return n
	}

	t.mu.Lock()
	// A client that resets its connection has ended the tunnel, as
	// HTTP/2 clients commonly do (GOAWAY, then close with the server's
	// last frames unread): that is the client's end, not a failure of
	// the path. A reset by the destination is one unless the other
	// direction had already finished.
	benign := t.closed || errors.Is(err, net.ErrClosed) ||
		(isPeerGone(err) && (t.cleanDone > 0 || wasReset(t.client)))
	if !benign && t.err == nil {
		t.err = fmt.Errorf("relay %s: %w", dir, err)
	}
	t.mu.Unlock()
	// A failed direction will not recover; closing both unblocks the other
	// direction now instead of when its peer happens to notice.
	t.closeBoth()
	return n
}

// closeBoth closes both conns; it may run more than once and concurrently.
func (t *tunnel) closeBoth() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	_ = t.client.Close()
	_ = t.upstream.Close()
}

// idleClose is the sweeper's close function for this tunnel.
func (t *tunnel) idleClose() {
	t.mu.Lock()
	// A tunnel whose directions have both ended was not closed for being
	// idle, even if the sweeper looked at it in that last moment.
	if t.ended < 2 {
		t.idle = true
	}
	t.mu.Unlock()
	t.closeBoth()
}

// isPeerGone reports errors that mean the peer has closed its socket: after
// the other direction finished cleanly they are the normal end of a tunnel.
func isPeerGone(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
