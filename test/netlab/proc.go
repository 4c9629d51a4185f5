package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Timings of StartProxy and the Proc cleanup.
const (
	readyPoll    = 20 * time.Millisecond
	readyTimeout = 10 * time.Second
)

// termTimeout is how long a Proc has between SIGTERM and SIGKILL; a
// variable so the test of that path need not wait 5 s.
var termTimeout = 5 * time.Second

// Proc is a process running inside the lab's host namespace, its stdout and
// stderr captured together.
type Proc struct {
	Addr string // the TCP address it was started to listen on, in the host namespace

	cmd  *exec.Cmd
	out  LockedBuffer
	done chan struct{} // closed once cmd.Wait has returned
	err  error         // cmd.Wait's result, set before done closes
}

// StartProxy starts binary inside the host namespace and waits until
// listenAddr (say "127.0.0.1:1080", in the host namespace) accepts TCP
// connections; if the process exits first, or 10 s pass, the test fails
// with its output. With configYAML it runs `binary run -c FILE extraArgs...`,
// FILE holding configYAML; without, `binary extraArgs...` verbatim.
//
// The child gets the test's environment minus every *_proxy variable, plus
// GORACE=atexit_sleep_ms=0 halt_on_error=1. When the test ends it gets
// SIGTERM, then SIGKILL (its whole process group) 5 s later; if the test
// failed, its output is logged.
func (l *Lab) StartProxy(binary, listenAddr, configYAML string, extraArgs ...string) *Proc {
	l.t.Helper()
	config := ""
	if configYAML != "" {
		config = filepath.Join(l.t.TempDir(), "nicproxy.yaml")
		if err := os.WriteFile(config, []byte(configYAML), 0o600); err != nil {
			l.t.Fatalf("write %s: %v", config, err)
		}
	}
	return l.startProcess(proxyArgv(l.Host, binary, config, extraArgs), listenAddr)
}

// proxyArgv is the command line StartProxy runs.
func proxyArgv(host, binary, config string, extraArgs []string) []string {
	argv := []string{"ip", "netns", "exec", host, binary}
	if config != "" {
		argv = append(argv, "run", "-c", config)
	}
	return append(argv, extraArgs...)
}

// startProcess runs argv (which enters the namespace itself, as
// `ip netns exec` does) and waits for waitAddr to accept connections from
// inside the host namespace; waitAddr "" means do not wait. It fails the
// test if the process cannot start or never gets ready.
func (l *Lab) startProcess(argv []string, waitAddr string) *Proc {
	l.t.Helper()
	p, err := l.launch(argv, waitAddr)
	if err != nil {
		out := ""
		if p != nil {
			out = p.Output()
		}
		l.t.Fatalf("%s: %v\noutput:\n%s", strings.Join(argv, " "), err, out)
	}
	return p
}

// launch is startProcess returning its error; the Proc, when not nil, is
// stopped when the test ends all the same.
func (l *Lab) launch(argv []string, waitAddr string) (*Proc, error) {
	p := &Proc{Addr: waitAddr, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(withoutProxyEnv(os.Environ()), "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // so SIGKILL reaches its children too
	p.cmd.WaitDelay = 2 * time.Second                       // a grandchild holding the pipe does not hang Wait
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	l.t.Cleanup(func() { p.stop(l) })
	if waitAddr == "" {
		return p, nil
	}
	return p, l.InHost(func() error {
		deadline := time.Now().Add(readyTimeout)
		for {
			conn, err := net.DialTimeout("tcp", waitAddr, time.Second)
			if err == nil {
				conn.Close()
				return nil
			}
			select {
			case <-p.done:
				return fmt.Errorf("exited before %s accepted connections: %v", waitAddr, p.err)
			case <-time.After(readyPoll):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s accepted no connection within %v: %v", waitAddr, readyTimeout, err)
			}
		}
	})
}

// stop ends the process, politely first, and logs its output if the test
// failed.
func (p *Proc) stop(l *Lab) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(termTimeout):
			l.t.Logf("%s ignored SIGTERM for %v; killing its process group", strings.Join(p.cmd.Args, " "), termTimeout)
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	if l.t.Failed() {
		l.t.Logf("output of %s:\n%s", strings.Join(p.cmd.Args, " "), p.Output())
	}
}

// Output is everything the process has written to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Pid is the process's id (`ip netns exec` execs the binary, so it is the
// binary's own).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process; one that has exited is no error.
func (p *Proc) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// Wait waits up to timeout for the process to exit and returns its exit
// code. err is nil for any normal exit, whatever the code; it says so if
// the process is still running, or died of a signal (code -1).
func (p *Proc) Wait(timeout time.Duration) (exitCode int, err error) {
	select {
	case <-p.done:
	default:
		select {
		case <-p.done:
		case <-time.After(timeout):
			return -1, fmt.Errorf("%s still running after %v", strings.Join(p.cmd.Args, " "), timeout)
		}
	}
	code := p.cmd.ProcessState.ExitCode()
	var exit *exec.ExitError
	if p.err != nil && (!errors.As(p.err, &exit) || code < 0) {
		return code, p.err
	}
	return code, nil
}

// Exited is closed when the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.done }

// LockedBuffer is a bytes.Buffer safe for a writer and readers at once: a
// process's output, read by a test while the process writes it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// withoutProxyEnv drops every *_proxy variable (http_proxy, ALL_PROXY,
// NO_PROXY...), so no client in the lab is proxied by accident.
func withoutProxyEnv(env []string) []string {
	kept := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasSuffix(strings.ToLower(name), "_proxy") {
			kept = append(kept, kv)
		}
	}
	return kept
}

// Curl runs curl inside the host namespace with --silent --show-error
// --max-time 20 (and ~/.curlrc ignored), in an environment without any
// *_proxy variable.
func (l *Lab) Curl(args ...string) (stdout, stderr string, err error) {
	return l.CurlEnv(nil, args...)
}

// CurlEnv is Curl with env ("ALL_PROXY=socks5h://...", say) added to the
// environment.
func (l *Lab) CurlEnv(env []string, args ...string) (stdout, stderr string, err error) {
	cmd := l.Command("curl", append([]string{"--disable", "--silent", "--show-error", "--max-time", "20"}, args...)...)
	cmd.Env = append(withoutProxyEnv(os.Environ()), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// DialHost dials address from a socket made inside the host namespace; the
// connection is usable from any goroutine afterwards.
func (l *Lab) DialHost(network, address string) (net.Conn, error) {
	return l.DialHostContext(context.Background(), network, address)
}

// DialHostContext is DialHost with a context; without a deadline, it gives
// up after 10 s.
func (l *Lab) DialHostContext(ctx context.Context, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := l.InHost(func() error {
		var err error
		d := net.Dialer{Timeout: 10 * time.Second}
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}
