package netlab

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recordingTB is a testing.TB that records failures instead of reporting
// them, so a test can see which TB a helper reported to. Everything it
// does not override goes to the real test.
type recordingTB struct {
	testing.TB
	mu      sync.Mutex
	failed  []string
	skipped string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recordingTB) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

func (r *recordingTB) Skipf(format string, args ...any) {
	r.mu.Lock()
	r.skipped = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recordingTB) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.failed) > 0
}

// TestWithReportsToTheCaller: a helper that fails through lab.With(tb)
// reports to tb, not to the test that built the lab; the lab itself keeps
// reporting to its own test.
func TestWithReportsToTheCaller(t *testing.T) {
	lab := New(t)
	rec := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() { // Fatalf ends this goroutine, as FailNow ends a test's
		defer close(done)
		lab.With(rec).SetDown("ens999") // no such NIC: the ip command fails
		rec.Errorf("SetDown of a NIC that does not exist returned")
	}()
	<-done
	if len(rec.failed) != 1 || !strings.Contains(rec.failed[0], "ens999") {
		t.Errorf("the view recorded %q, want the one failure of the ip command", rec.failed)
	}
	// The counters a view's snapshot reads are the lab's.
	before := lab.With(rec).Snapshot()
	if tx := before.TxSince(Ens33.Name); tx != 0 {
		t.Errorf("ens33 sent %d bytes in an idle lab", tx)
	}
}

// TestWithStopsWhatItStartedWithTheSubtest: a server started through a
// subtest's view stops when the subtest ends, while the lab lives on.
func TestWithStopsWhatItStartedWithTheSubtest(t *testing.T) {
	lab := New(t)
	var echo *Echo
	t.Run("starts an echo server", func(t *testing.T) {
		echo = lab.With(t).StartEcho()
		if err := lab.InUpstream(func() error {
			conn, err := net.DialTimeout("tcp", echo.TCP.String(), 5*time.Second)
			if err == nil {
				conn.Close()
			}
			return err
		}); err != nil {
			t.Fatalf("the echo server does not accept while its subtest runs: %v", err)
		}
	})
	err := lab.InUpstream(func() error {
		conn, err := net.DialTimeout("tcp", echo.TCP.String(), 5*time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after its subtest: dial %v: %v, want the connection refused", echo.TCP, err)
	}
}

// TestSkipOrFail: a missing requirement skips the test and says why,
// unless NICPROXY_NO_SKIP=1, where it fails it.
func TestSkipOrFail(t *testing.T) {
	for _, noSkip := range []string{"", "1"} {
		t.Run(NoSkip+"="+noSkip, func(t *testing.T) {
			t.Setenv(NoSkip, noSkip)
			rec := &recordingTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				SkipOrFail(rec, "frobnicate is not installed")
				rec.Errorf("SkipOrFail returned")
			}()
			<-done
			if noSkip == "1" {
				if len(rec.failed) != 1 || !strings.Contains(rec.failed[0], "frobnicate is not installed") || rec.skipped != "" {
					t.Errorf("failed %q, skipped %q; want one failure that says why", rec.failed, rec.skipped)
				}
				return
			}
			if len(rec.failed) != 0 || rec.skipped != "skipping: frobnicate is not installed" {
				t.Errorf("failed %q, skipped %q; want a skip that says why", rec.failed, rec.skipped)
			}
		})
	}
}

// TestCommandDropsProxyEnv: a command run in the lab gets the test's
// environment without its *_proxy variables, so no client is proxied by
// accident.
func TestCommandDropsProxyEnv(t *testing.T) {
	lab := New(t)
	t.Setenv("http_proxy", "http://198.51.100.99:3128")
	t.Setenv("ALL_PROXY", "socks5h://198.51.100.99:1080")
	t.Setenv("NICPROXY_TEST_KEPT", "yes")
	out, err := lab.Command("env").Output()
	if err != nil {
		t.Fatal(err)
	}
	env := string(out)
	if strings.Contains(env, "198.51.100.99") || !strings.Contains(env, "NICPROXY_TEST_KEPT=yes") {
		t.Errorf("the command's environment:\n%s\nwant the test's without its *_proxy variables", env)
	}
}
