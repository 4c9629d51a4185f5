package test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"nicproxy/test/netlab"
)

// socksLoginFrom times one SOCKS5 login (and CONNECT to the echo server)
// from a chosen loopback source address. It returns the duration and
// whether the login succeeded.
func (h *hostileLab) socksLoginFrom(tb testing.TB, src, user, password string) (time.Duration, bool) {
	tb.Helper()
	conn := dialFrom(tb, h.Lab, src, "127.0.0.1:1080")
	defer conn.Close()
	start := time.Now()
	rep, err := socks5Dial(conn, user, password, netlab.Server.String(), h.echo.TCP.Port())
	took := time.Since(start)
	if err != nil && err != errAuthFailed {
		tb.Fatalf("socks5 from %s: %v", src, err)
	}
	return took, err == nil && rep == 0
}

// quantile returns the q-quantile of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func median(ds []time.Duration) time.Duration { return quantile(ds, 0.5) }

// authUsers is the hostile-auth lab's configuration: two bcrypt users and
// a plain-password one.
func authUsers() string {
	bobHash, _ := bcrypt.GenerateFromPassword([]byte("bob-pw"), bcrypt.DefaultCost)
	aliceHash, _ := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.DefaultCost)
	return fmt.Sprintf(`
admin: {addr: "127.0.0.1:9090"}
users:
  - {name: alice, password_hash: %q}
  - {name: bob, password_hash: %q}
  - {name: carol, password: carol-pw}
default: ens160
`, aliceHash, bobHash)
}

// guessers runs n clients guessing bob's password from their own
// addresses until stop is called, which returns how many guesses they made.
func (h *hostileLab) guessers(n int) (stop func() int64) {
	var done atomic.Bool
	var tries atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := 0; !done.Load(); g++ {
				conn, err := h.dialFromErr(fmt.Sprintf("127.0.4.%d", i+1), "127.0.0.1:1080")
				if err != nil {
					continue
				}
				_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
				_, _ = socks5Dial(conn, "bob", fmt.Sprintf("guess-%d-%d", i, g), netlab.Server.String(), h.echo.TCP.Port())
				conn.Close()
				tries.Add(1)
			}
		}()
	}
	return func() int64 {
		done.Store(true)
		wg.Wait()
		return tries.Load()
	}
}

// TestHostileAuth: unknown, bcrypt and plain-password users with a wrong
// password are all refused and counted; a cached login keeps working
// while 50 clients guess a bcrypt password, and every guess is counted.
// What makes refusals take the same time is proven without a clock in
// proxy's TestRefusalsCostOneBcrypt, the back-off's schedule from its own
// clock in TestAuthThrottle; the times themselves are measured by
// BenchmarkHostileAuth, which a busy machine cannot fail.
func TestHostileAuth(t *testing.T) {
	// The binary users run, without the race detector's cost on bcrypt.
	h := startHostileBinary(t, plainBinary(t), authUsers())
	h.normalClient(t, "socks5h://alice:alice-pw@127.0.0.1:1080")
	base := h.usage(t)

	t.Run("unknown, bcrypt and plain-password users are refused and counted", func(t *testing.T) {
		before := h.authFailures(t)
		for i, user := range []string{"mallory", "bob", "carol"} {
			// Each from its own address, so the back-off stays out.
			if _, ok := h.socksLoginFrom(t, fmt.Sprintf("127.0.%d.1", i+1), user, "wrong"); ok {
				t.Fatalf("%s logged in with a wrong password", user)
			}
		}
		if n := h.authFailures(t) - before; n != 3 {
			t.Errorf("nicproxy_auth_failures_total rose by %v, want 3", n)
		}
	})

	t.Run("50 guessers neither lock out nor go uncounted", func(t *testing.T) {
		before := h.authFailures(t)
		stop := h.guessers(50)
		for i := range 20 {
			if _, ok := h.socksLoginFrom(t, fmt.Sprintf("127.0.5.%d", i+1), "alice", "alice-pw"); !ok {
				stop()
				t.Fatal("alice could not log in while the guessers were at it")
			}
		}
		tries := stop()
		if n := h.authFailures(t) - before; n < float64(tries) {
			t.Errorf("nicproxy_auth_failures_total rose by %v, want at least the %d guesses", n, tries)
		}
	})
	h.backToBaseline(t, base)
	h.normalClient(t, "http://alice:alice-pw@127.0.0.1:1080")
}

// authFailures reads nicproxy_auth_failures_total.
func (h *hostileLab) authFailures(t *testing.T) float64 {
	t.Helper()
	out, _, err := h.Curl("--fail", h.admin+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return metric(t, out, "nicproxy_auth_failures_total")
}

// dialFromErr is dialFrom returning its error, for goroutines.
func (h *hostileLab) dialFromErr(local, remote string) (net.Conn, error) {
	var conn net.Conn
	err := h.InHost(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		var err error
		conn, err = d.Dial("tcp", remote)
		return err
	})
	return conn, err
}

// TestHostileLogFlood: 1,500 clients refused at max_connections write
// fewer than 50 log lines, and a line says how many were left out.
func TestHostileLogFlood(t *testing.T) {
	h := startHostile(t, `
admin: {addr: "127.0.0.1:9090"}
limits: {max_connections: 2}
default: ens160
`)
	var held []net.Conn
	for range 2 {
		conn := dialProxy(t, h.Lab)
		if rep, err := socks5Dial(conn, "", "", netlab.Server.String(), h.echo.TCP.Port()); err != nil || rep != 0 {
			t.Fatalf("connect: %#x %v", rep, err)
		}
		held = append(held, conn)
	}
	before := strings.Count(h.proc.Output(), "\n")
	refused := 0
	other := map[string]int{}
	for range 1500 {
		// The refusal may reach the client while it is still connecting.
		conn, err := h.DialHost("tcp", "127.0.0.1:1080")
		if err == nil {
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNREFUSED) {
			refused++
		} else {
			other[fmt.Sprint(err)]++
		}
	}
	lines := strings.Count(h.proc.Output(), "\n") - before
	t.Logf("%d refusals at the limit wrote %d log lines", refused, lines)
	if refused < 1400 {
		t.Fatalf("only %d of 1500 clients were refused; others: %v", refused, other)
	}
	if lines >= 50 {
		t.Errorf("%d log lines for %d refusals, want fewer than 50", lines, refused)
	}
	for _, c := range held {
		c.Close()
	}
	if err := h.proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := h.proc.Wait(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.proc.Output(), "repeated log lines suppressed") {
		t.Errorf("no line says how many lines were suppressed:\n%s", h.proc.Output())
	}
}
