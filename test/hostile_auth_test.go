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
func (h *hostileLab) socksLoginFrom(t *testing.T, src, user, password string) (time.Duration, bool) {
	t.Helper()
	conn := dialFrom(t, h.Lab, src, "127.0.0.1:1080")
	defer conn.Close()
	start := time.Now()
	rep, err := socks5Dial(conn, user, password, netlab.Server.String(), h.echo.TCP.Port())
	took := time.Since(start)
	if err != nil && err != errAuthFailed {
		t.Fatalf("socks5 from %s: %v", src, err)
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

// TestHostileAuth: known and unknown users are refused in the same time;
// 50 clients guessing a bcrypt password neither slow a cached login past
// 50 ms nor go uncounted; one address that keeps failing is slowed down.
func TestHostileAuth(t *testing.T) {
	bobHash, _ := bcrypt.GenerateFromPassword([]byte("bob-pw"), bcrypt.DefaultCost)
	aliceHash, _ := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.DefaultCost)
	// Timing is measured on the binary users run.
	h := startHostileBinary(t, plainBinary(t), fmt.Sprintf(`
admin: {addr: "127.0.0.1:9090"}
users:
  - {name: alice, password_hash: %q}
  - {name: bob, password_hash: %q}
  - {name: carol, password: carol-pw}
default: ens160
`, aliceHash, bobHash))
	h.normalClient(t, "socks5h://alice:alice-pw@127.0.0.1:1080")
	base := h.usage(t)

	t.Run("unknown and known users are refused in the same time", func(t *testing.T) {
		// Each attempt from its own address, so the throttle stays out.
		var unknown, known, plain []time.Duration
		for i := range 12 {
			kinds := []struct {
				user string
				into *[]time.Duration
				net  int
			}{{"mallory", &unknown, 1}, {"bob", &known, 2}, {"carol", &plain, 3}}
			// Each kind takes each place in the order equally often, so
			// what runs before it (GC, a busy neighbour) evens out.
			for j := range kinds {
				c := kinds[(i+j)%len(kinds)]
				d, ok := h.socksLoginFrom(t, fmt.Sprintf("127.0.%d.%d", c.net, i+1), c.user, "wrong")
				if ok {
					t.Fatalf("%s logged in with a wrong password", c.user)
				}
				*c.into = append(*c.into, d)
			}
		}
		// The lower quartile: on a machine shared with other work, the
		// slow samples measure the neighbours, not nicproxy.
		u, k, p := quantile(unknown, 0.25), quantile(known, 0.25), quantile(plain, 0.25)
		t.Logf("refusal times, lower quartile of 12: unknown user %v, bcrypt user %v, plain-password user %v (medians %v, %v, %v)",
			u, k, p, median(unknown), median(known), median(plain))
		for name, d := range map[string]time.Duration{"bcrypt user": k, "plain-password user": p} {
			if ratio := float64(d) / float64(u); ratio < 0.9 || ratio > 1.1 {
				t.Errorf("%s refused in %v, unknown user in %v: ratio %.2f, want within 10%%", name, d, u, ratio)
			}
		}
	})

	t.Run("50 guessers do not slow a cached login", func(t *testing.T) {
		var stop atomic.Bool
		var tries atomic.Int64
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; !stop.Load(); n++ {
					conn, err := h.dialFromErr(fmt.Sprintf("127.0.4.%d", i+1), "127.0.0.1:1080")
					if err != nil {
						continue
					}
					_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
					_, _ = socks5Dial(conn, "bob", fmt.Sprintf("guess-%d-%d", i, n), netlab.Server.String(), h.echo.TCP.Port())
					conn.Close()
					tries.Add(1)
				}
			}()
		}
		time.Sleep(300 * time.Millisecond) // the guessers are at it
		var logins []time.Duration
		for i := range 20 {
			d, ok := h.socksLoginFrom(t, fmt.Sprintf("127.0.5.%d", i+1), "alice", "alice-pw")
			if !ok {
				t.Fatal("alice could not log in")
			}
			logins = append(logins, d)
		}
		stop.Store(true)
		wg.Wait()
		p50 := median(logins)
		t.Logf("cached login p50 %v while 50 clients made %d wrong guesses", p50, tries.Load())
		if p50 > 50*time.Millisecond {
			t.Errorf("cached login p50 %v, want under 50 ms", p50)
		}
		out, _, err := h.Curl("--fail", h.admin+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if n := metric(t, out, "nicproxy_auth_failures_total"); n < float64(tries.Load()) {
			t.Errorf("nicproxy_auth_failures_total = %v, want at least the %d guesses", n, tries.Load())
		}
	})

	t.Run("an address that keeps failing is slowed down", func(t *testing.T) {
		var took []time.Duration
		for range 8 {
			d, _ := h.socksLoginFrom(t, "127.0.6.1", "carol", "wrong")
			took = append(took, d)
		}
		// Attempts 6, 7 and 8 wait 100, 200 and 400 ms before the check.
		if took[7]-took[0] < 300*time.Millisecond {
			t.Errorf("the 8th failure took %v and the first %v, want the 8th slowed by 400 ms", took[7], took[0])
		}
		if d, ok := h.socksLoginFrom(t, "127.0.6.2", "carol", "carol-pw"); !ok || d > took[7] {
			t.Errorf("another address: ok %v in %v", ok, d)
		}
	})
	h.backToBaseline(t, base)
	h.normalClient(t, "http://alice:alice-pw@127.0.0.1:1080")
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
