package upstream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"nicproxy/bind"
	"nicproxy/internal/loopback"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// closedPort returns a loopback port nothing listens on: connecting to it
// is refused at once.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return ap
}

// attempts records when each address's attempt started, and dials real
// loopback ports: each address of the race stands for a port. A port of
// blackHole never answers until the attempt is cancelled.
type attempts struct {
	start time.Time
	ports map[netip.Addr]netip.AddrPort

	mu      sync.Mutex
	started []time.Duration
	order   []netip.Addr
}

var blackHole = netip.AddrPort{}

func (a *attempts) dial(ctx context.Context, addr netip.Addr) (net.Conn, error) {
	a.mu.Lock()
	a.started = append(a.started, time.Since(a.start))
	a.order = append(a.order, addr)
	a.mu.Unlock()
	port := a.ports[addr]
	if port == blackHole {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp4", port.String())
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// TestRace covers RFC 8305's timing: a black-holed first address costs one
// attempt delay, a refused one costs nothing, the winner is the first to
// connect, and the whole race ends at the context's deadline.
func TestRace(t *testing.T) {
	const delay = 100 * time.Millisecond
	a1, a2, a3 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")

	t.Run("black hole first", func(t *testing.T) {
		at := &attempts{start: time.Now(), ports: map[netip.Addr]netip.AddrPort{a1: blackHole, a2: loopback.Echo(t)}}
		conn, addr, err := race(context.Background(), []netip.Addr{a1, a2}, delay, at.dial)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if addr != a2 {
			t.Errorf("winner %v, want %v", addr, a2)
		}
		if at.started[1] < delay {
			t.Errorf("second attempt started after %v, before the %v attempt delay", at.started[1], delay)
		}
	})
	t.Run("refused first moves on at once", func(t *testing.T) {
		// With an hour's attempt delay and 20 s for the race, only the
		// refusal can have started the second attempt in time.
		at := &attempts{start: time.Now(), ports: map[netip.Addr]netip.AddrPort{a1: closedPort(t), a2: loopback.Echo(t)}}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		conn, addr, err := race(ctx, []netip.Addr{a1, a2}, time.Hour, at.dial)
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if addr != a2 {
			t.Errorf("winner %v, want %v", addr, a2)
		}
	})
	t.Run("all fail: the first address's error", func(t *testing.T) {
		at := &attempts{start: time.Now(), ports: map[netip.Addr]netip.AddrPort{a1: closedPort(t), a2: closedPort(t), a3: closedPort(t)}}
		_, _, err := race(context.Background(), []netip.Addr{a1, a2, a3}, delay, at.dial)
		if err == nil || !slices.Equal(at.order, []netip.Addr{a1, a2, a3}) {
			t.Fatalf("err %v after attempts %v, want an error after a1, a2, a3 in order", err, at.order)
		}
		if want := at.ports[a1].String(); !strings.Contains(err.Error(), want) {
			t.Errorf("err %q does not name the first address's port %s", err, want)
		}
	})
	t.Run("deadline bounds the race", func(t *testing.T) {
		at := &attempts{start: time.Now(), ports: map[netip.Addr]netip.AddrPort{a1: blackHole, a2: blackHole, a3: blackHole}}
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		defer cancel()
		_, _, err := race(ctx, []netip.Addr{a1, a2, a3}, delay, at.dial)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want the deadline", err)
		}
		// How many started depends on how the timers ran on a busy
		// machine; none may start once the race has ended.
		count := func() int { at.mu.Lock(); defer at.mu.Unlock(); return len(at.order) }
		n := count()
		time.Sleep(2 * delay)
		if later := count() - n; later != 0 || n == 0 || n > 3 {
			t.Errorf("%d attempts, %d after the deadline; want 1 to 3, none after", n, later)
		}
	})
	t.Run("an unusable NIC ends the race", func(t *testing.T) {
		calls := 0
		_, _, err := race(context.Background(), []netip.Addr{a1, a2, a3}, delay, func(context.Context, netip.Addr) (net.Conn, error) {
			calls++
			return nil, &bind.DialError{NIC: "ens160", Kind: bind.ErrNICDown}
		})
		if !errors.Is(err, bind.ErrNICDown) || calls != 1 {
			t.Errorf("err %v after %d attempts, want ErrNICDown after 1", err, calls)
		}
	})
}

func TestInterleave(t *testing.T) {
	v4 := addrs("192.0.2.1", "192.0.2.2", "192.0.2.3")
	v6 := addrs("2001:db8::1")
	got := interleave(v4, v6)
	want := addrs("192.0.2.1", "2001:db8::1", "192.0.2.2", "192.0.2.3")
	if !slices.Equal(got, want) {
		t.Errorf("interleave = %v, want %v", got, want)
	}
	if got := interleave(nil, v6); !slices.Equal(got, v6) {
		t.Errorf("IPv6 only: %v", got)
	}
}
