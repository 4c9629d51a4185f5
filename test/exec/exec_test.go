package exectest

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nicproxy/test/e2e"
	"nicproxy/test/netlab"
)

// udpClient is an unmodified UDP client on an unconnected socket: one
// sendto(2), one recvfrom(2), the reply printed. Python's sendto is the
// case a sendmsg program cannot pin by itself (the first datagram is
// routed before the program runs).
const udpClient = `import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(b"exec datagram", (sys.argv[1], int(sys.argv[2])))
print(s.recvfrom(1024)[0].decode())
`

// udpRetryClient sends a datagram on an unconnected socket, says whether
// it was refused (EPERM), sends a second and prints the reply.
const udpRetryClient = `import socket, sys
dst = (sys.argv[1], int(sys.argv[2]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
try:
    s.sendto(b"first", dst)
    print("first sent")
except PermissionError:
    print("first refused")
s.sendto(b"second", dst)
print(s.recvfrom(1024)[0].decode())
`

// tcpClient connects, prints the line the echo server greets it with (the
// address it saw) and closes.
//
// It closes gracefully (shut down its side, read to the server's FIN,
// then close) so the last ACK leaves while the socket still exists and is
// pinned: after an abrupt close, that ACK answers the server's FIN from a
// socket that is gone, routed by the main table (see the README on
// packets SO_BINDTODEVICE cannot reach), and a later check of ens33's
// counters would see it.
const tcpClient = `import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(s.makefile().readline().strip())
s.shutdown(socket.SHUT_WR)
while s.recv(1024):
    pass
s.close()
`

// python is the system interpreter, which an unprivileged user can run.
const python = "/usr/bin/python3"

// execPinned asserts a flow run through exec left through want: the
// server saw want's address, want sent at least minTx bytes, and other
// sent nothing at all.
func execPinned(t *testing.T, before netlab.Snapshot, seen netip.Addr, minTx uint64, want, other netlab.NIC) {
	t.Helper()
	if seen != want.Addr && seen != want.Addr6 {
		t.Errorf("server saw %v, want %s's address", seen, want.Name)
	}
	if tx := before.TxSince(want.Name); tx < minTx {
		t.Errorf("%s sent %d bytes, want at least %d", want.Name, tx, minTx)
	}
	if tx := before.TxSince(other.Name); tx != 0 {
		t.Errorf("%s sent %d bytes, want 0", other.Name, tx)
	}
}

// seenIn parses the "IP:PORT" an echo or /whoami answer starts with.
func seenIn(t *testing.T, out string) netip.Addr {
	t.Helper()
	field, _, _ := strings.Cut(strings.TrimSpace(out), " ")
	ap, err := netip.ParseAddrPort(field)
	if err != nil {
		t.Fatalf("no IP:PORT the server saw in %q", out)
	}
	return ap.Addr()
}

// serveWhoami answers every HTTP request on ln with the client's
// "IP:PORT" until the test ends.
func serveWhoami(t *testing.T, ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, r.RemoteAddr)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
}

func mustRun(t *testing.T, lab *netlab.Lab, args ...string) string {
	t.Helper()
	res := e2e.Run(t, lab, nicproxyBinary, args...)
	if res.Code != 0 {
		t.Fatalf("nicproxy %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.Code, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

// TestExecPins runs unmodified programs with no proxy settings under
// `nicproxy exec -i ens160`: each flow is seen from ens160's address, and
// ens33, which carries the default route, sends nothing.
func TestExecPins(t *testing.T) {
	lab := netlab.New(t)
	web := lab.StartWeb()
	echo := lab.StartEcho()
	lab.UseDNS(lab.StartDNS(map[string]netip.Addr{"web.test": netlab.Server}))
	whoami := fmt.Sprintf("http://%s/whoami", web.HTTP)

	t.Run("control: without exec, the routing table picks ens33", func(t *testing.T) {
		lab := lab.With(t)
		before := lab.Snapshot()
		cmd := lab.Command(python, "-c", udpClient, echo.UDP.Addr().String(), fmt.Sprint(echo.UDP.Port()))
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		execPinned(t, before, seenIn(t, string(out)), 1, netlab.Ens33, netlab.Ens160)
	})
	t.Run("curl", func(t *testing.T) {
		lab := lab.With(t)
		before := lab.Snapshot()
		out := mustRun(t, lab, "exec", "-i", "ens160", "--", "curl", "-sS", "--max-time", "10", whoami)
		execPinned(t, before, seenIn(t, out), 100, netlab.Ens160, netlab.Ens33)
	})
	t.Run("grandchild", func(t *testing.T) {
		lab := lab.With(t)
		before := lab.Snapshot()
		out := mustRun(t, lab, "exec", "-i", "ens160", "--", "sh", "-c", fmt.Sprintf(`sh -c "curl -sS --max-time 10 %s"`, whoami))
		execPinned(t, before, seenIn(t, out), 100, netlab.Ens160, netlab.Ens33)
	})
	t.Run("unconnected UDP from its first datagram", func(t *testing.T) {
		lab := lab.With(t)
		before := lab.Snapshot()
		out := mustRun(t, lab, "exec", "-i", "ens160", "--", python, "-c", udpClient, echo.UDP.Addr().String(), fmt.Sprint(echo.UDP.Port()))
		if !strings.HasSuffix(strings.TrimSpace(out), "exec datagram") {
			t.Errorf("no echo of the datagram: %q", out)
		}
		execPinned(t, before, seenIn(t, out), uint64(len("exec datagram")), netlab.Ens160, netlab.Ens33)
	})
	// Without CAP_NET_RAW a socket can be pinned once, so exec pins an
	// unprivileged command's UDP sockets at their first destination; the
	// kernel has routed that first unconnected datagram already, by the
	// routing table (ens33 here), and the egress program refuses it. The
	// next leaves pinned.
	t.Run("unconnected UDP as an unprivileged user: first refused, then via ens160", func(t *testing.T) {
		lab := lab.With(t)
		before := lab.Snapshot()
		out := mustRun(t, lab, "exec", "-i", "ens160", "--user", "nobody", "--", python, "-c", udpRetryClient, echo.UDP.Addr().String(), fmt.Sprint(echo.UDP.Port()))
		first, reply, _ := strings.Cut(out, "\n")
		if first != "first refused" {
			t.Errorf("first datagram: %q, want refused", first)
		}
		execPinned(t, before, seenIn(t, reply), uint64(len("second")), netlab.Ens160, netlab.Ens33)
	})
	t.Run("DNS lookup, then HTTP by name", func(t *testing.T) {
		lab := lab.With(t)
		// getent asks the lab's nameserver (resolv.conf) with glibc's
		// resolver; curl resolves web.test the same way, then connects.
		before := lab.Snapshot()
		out := mustRun(t, lab, "exec", "-i", "ens160", "--", "getent", "hosts", "web.test")
		if !strings.HasPrefix(out, netlab.Server.String()) {
			t.Errorf("getent hosts web.test = %q, want %v", out, netlab.Server)
		}
		if tx := before.TxSince("ens160"); tx < 20 {
			t.Errorf("ens160 sent %d bytes, want at least a query", tx)
		}
		if tx := before.TxSince("ens33"); tx != 0 {
			t.Errorf("ens33 sent %d bytes: the query left the other way", tx)
		}
		before = lab.Snapshot()
		out = mustRun(t, lab, "exec", "-i", "ens160", "--", "curl", "-sS", "--max-time", "10", fmt.Sprintf("http://web.test:%d/whoami", web.HTTP.Port()))
		execPinned(t, before, seenIn(t, out), 100, netlab.Ens160, netlab.Ens33)
	})
	t.Run("loopback is left alone", func(t *testing.T) {
		lab := lab.With(t)
		var ln net.Listener
		if err := lab.InHost(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
			t.Fatal(err)
		}
		serveWhoami(t, ln)
		before := lab.Snapshot()
		out := mustRun(t, lab, "exec", "-i", "ens160", "--", "curl", "-sS", "--max-time", "10", "http://"+ln.Addr().String()+"/")
		if seen := seenIn(t, out); !seen.IsLoopback() {
			t.Errorf("loopback server saw %v", seen)
		}
		if tx := before.TxSince("ens160") + before.TxSince("ens33"); tx != 0 {
			t.Errorf("the NICs sent %d bytes for a loopback connection", tx)
		}
	})
}

// TestExecStatusAndCleanup: CMD's exit status is exec's, and the cgroup is
// gone once it has exited.
func TestExecStatusAndCleanup(t *testing.T) {
	lab := netlab.New(t)
	res := e2e.Run(t, lab, nicproxyBinary, "exec", "-i", "ens160", "--", "sh", "-c", "grep '^0::' /proc/self/cgroup; exit 7")
	if res.Code != 7 {
		t.Fatalf("exit %d, want 7\nstderr: %s", res.Code, res.Stderr)
	}
	path := strings.TrimPrefix(strings.TrimSpace(res.Stdout), "0::")
	if !strings.Contains(path, "nicproxy-exec.") {
		t.Fatalf("the command ran in cgroup %q, not one of exec's", path)
	}
	// The cgroup lives in the hierarchy exec found or mounted inside the
	// namespace `ip netns exec` made; look there.
	check := lab.Command("sh", "-c", `for m in $(awk '$9 == "cgroup2" {print $5}' /proc/self/mountinfo) /run/nicproxy/cgroup; do if [ -d "$m$0" ]; then echo "$m$0"; fi; done`, path)
	out, err := check.CombinedOutput()
	if err != nil {
		t.Fatalf("look for the cgroup: %v: %s", err, out)
	}
	if len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("the cgroup is still there after exec exited: %s", out)
	}
}

// TestExecNotAllowed: without the privileges to pin, exec says why, exits
// 2, and never runs the command (it would have written a marker file).
func TestExecNotAllowed(t *testing.T) {
	lab := netlab.New(t)
	// nobody must be able to run the binary and write the marker.
	dir, err := os.MkdirTemp("", "nicproxy-exec-marker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{filepath.Dir(nicproxyBinary), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	marker := filepath.Join(dir, "ran")
	run := func(argv ...string) (string, int) {
		cmd := lab.Command("setpriv", append([]string{"--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"}, argv...)...)
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	// The marker can be written by nobody: without exec it is.
	if out, code := run("sh", "-c", "touch "+marker); code != 0 {
		t.Fatalf("control run as nobody: exit %d: %s", code, out)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("control run as nobody wrote no marker: %v", err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	out, code := run(nicproxyBinary, "exec", "-i", "ens160", "--", "sh", "-c", "touch "+marker)
	if code != 2 {
		t.Errorf("exit %d, want 2: %s", code, out)
	}
	for _, want := range []string{"the command was not started", "root"} {
		if !strings.Contains(out, want) {
			t.Errorf("message lacks %q: %s", want, out)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran although exec could not pin it")
	}

	// doctor tells the two cases apart.
	out, _ = run(nicproxyBinary, "doctor")
	if !strings.Contains(out, "warn  bpf         cannot load cgroup BPF programs") {
		t.Errorf("doctor as nobody does not say exec cannot load its programs:\n%s", out)
	}
	if !strings.Contains(out, "warn  egress      cannot load the cgroup_skb/egress program") {
		t.Errorf("doctor as nobody does not say egress enforcement cannot load:\n%s", out)
	}
	res := e2e.Run(t, lab, nicproxyBinary, "doctor", "-c", e2e.WriteConfig(t, "default: ens160\n"))
	if !strings.Contains(res.Stdout, "ok    bpf         connect4/6, sendmsg4/6, bind4/6, sock_create and sock_ops programs load") {
		t.Errorf("doctor as root does not say exec can work:\n%s", res.Stdout)
	}
	if !strings.Contains(res.Stdout, "ok    egress      cgroup_skb/egress loads") {
		t.Errorf("doctor as root does not say egress enforcement loads:\n%s", res.Stdout)
	}
}

// TestExecHelp: `exec --help` prints its usage once, on stdout, and exits
// 0; a wrong flag is one line on stderr and exit 2.
func TestExecHelp(t *testing.T) {
	lab := netlab.New(t)
	for _, arg := range []string{"--help", "-h"} {
		res := e2e.Run(t, lab, nicproxyBinary, "exec", arg)
		if res.Code != 0 || res.Stderr != "" {
			t.Errorf("exec %s: exit %d, stderr %q; want 0 and nothing", arg, res.Code, res.Stderr)
		}
		if !strings.HasPrefix(res.Stdout, "Usage:\n  nicproxy exec [-c FILE | -i NIC] [--user USER] [--dns ADDR] [--] CMD [ARGS...]\n") {
			t.Errorf("exec %s does not start with its usage:\n%s", arg, res.Stdout)
		}
		for _, once := range []string{"Usage:", "\n  -cgroup PATH\n", "\n  -existing-sockets-ok\n", "\n  -dns ADDR\n", "\n  -user USER\n"} {
			if n := strings.Count(res.Stdout, once); n != 1 {
				t.Errorf("exec %s prints %q %d times, want once:\n%s", arg, once, n, res.Stdout)
			}
		}
	}
	res := e2e.Run(t, lab, nicproxyBinary, "exec", "--no-such-flag")
	if res.Code != 2 || res.Stdout != "" || res.Stderr != "nicproxy exec: flag provided but not defined: -no-such-flag (see: nicproxy exec -h)\n" {
		t.Errorf("exec --no-such-flag: exit %d, stdout %q, stderr %q", res.Code, res.Stdout, res.Stderr)
	}
}
