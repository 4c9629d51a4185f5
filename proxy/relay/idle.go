package relay

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Sweep interval bounds: a quarter of the idle timeout keeps the overshoot
// small, the floor stops a tiny timeout from spinning, the ceiling bounds the
// overshoot of long timeouts.
const (
	minSweepInterval = 50 * time.Millisecond
	maxSweepInterval = 15 * time.Second
)

// IdleSweeper closes tunnels in which no data has moved in either direction
// for the idle timeout. One sweeper, owned by the server, serves all tunnels.
//
// Why not a deadline or timer per tunnel: the usual idle timeout re-arms a
// deadline around every Read, which needs a wrapper around the conn, and a
// wrapper disables splice(2). Instead the sweeper asks the kernel: on Linux
// TCP_INFO reports, per socket, how long ago data was last sent and last
// received (tcpi_last_data_sent/recv), so the relay keeps its zero-copy path
// and the whole server runs one ticker and one getsockopt per tunnel per tick.
//
// On other systems there is no such counter that can be read without
// wrapping the conn, so there the sweeper never closes a tunnel; tunnels end
// only when their peers close them.
type IdleSweeper struct {
	idle atomic.Int64 // time.Duration; a reload may change it

	mu      sync.Mutex
	tunnels map[*tracked]struct{}
}

// tracked is one registered tunnel.
type tracked struct {
	conn    *net.TCPConn
	closeFn func()

	// mu serialises closeFn against untrack, so that once untrack has
	// returned closeFn has either finished or will never run.
	mu   sync.Mutex
	done bool
}

// NewIdleSweeper returns a sweeper that closes tunnels idle for at least
// idle. It does nothing until Run is called.
func NewIdleSweeper(idle time.Duration) *IdleSweeper {
	s := &IdleSweeper{tunnels: make(map[*tracked]struct{})}
	s.idle.Store(int64(idle))
	return s
}

// SetIdle changes the idle timeout, for every tunnel, from the next sweep
// on: a reloaded configuration applies to the tunnels already open.
func (s *IdleSweeper) SetIdle(idle time.Duration) { s.idle.Store(int64(idle)) }

func (s *IdleSweeper) idleTimeout() time.Duration { return time.Duration(s.idle.Load()) }

// Interval is how often Run checks the tracked tunnels: idle/4 clamped to
// [50ms, 15s], so a tunnel is closed between idle and idle+Interval after
// its last byte.
func (s *IdleSweeper) Interval() time.Duration {
	return min(max(s.idleTimeout()/4, minSweepInterval), maxSweepInterval)
}

// Run checks the tracked tunnels every Interval until ctx ends. Call it once,
// from the goroutine that owns the server's lifetime. Tunnels still tracked
// when it returns are left open; closing them is the server's shutdown job.
func (s *IdleSweeper) Run(ctx context.Context) {
	if !sweepSupported {
		<-ctx.Done()
		return
	}
	// A timer re-armed each round, not a ticker: the interval follows
	// SetIdle.
	timer := time.NewTimer(s.Interval())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			if s.idleTimeout() > 0 {
				s.sweep()
			}
			timer.Reset(s.Interval())
		}
	}
}

// Track registers conn, the socket whose TCP_INFO stands for the tunnel, and
// closeFn, which must close the tunnel. closeFn is called at most once, from
// the sweeper's goroutine, and must not call untrack. The returned untrack
// must be called when the tunnel ends; after it returns closeFn is not running
// and will not run.
func (s *IdleSweeper) Track(conn *net.TCPConn, closeFn func()) (untrack func()) {
	t := &tracked{conn: conn, closeFn: closeFn}
	s.mu.Lock()
	s.tunnels[t] = struct{}{}
	s.mu.Unlock()
	return func() {
		t.mu.Lock()
		t.done = true
		t.mu.Unlock()
		s.mu.Lock()
		delete(s.tunnels, t)
		s.mu.Unlock()
	}
}

// sweep closes every tracked tunnel that has been idle for the timeout.
func (s *IdleSweeper) sweep() {
	// Query the kernel outside s.mu so that Track and untrack never wait
	// for a sweep over thousands of sockets.
	s.mu.Lock()
	all := make([]*tracked, 0, len(s.tunnels))
	for t := range s.tunnels {
		all = append(all, t)
	}
	s.mu.Unlock()

	idle := s.idleTimeout()
	for _, t := range all {
		idleFor, ok := idleTime(t.conn)
		if !ok || idleFor < idle {
			continue
		}
		t.mu.Lock()
		if !t.done {
			t.done = true
			t.closeFn()
		}
		t.mu.Unlock()
		s.mu.Lock()
		delete(s.tunnels, t)
		s.mu.Unlock()
	}
}
