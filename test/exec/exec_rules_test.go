package exectest

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nicproxy/test/e2e"
	"nicproxy/test/netlab"
)

// TestExecRules: with -c, a dst rule sends one destination via ens33 while
// the default sends another via ens160, for TCP and unconnected UDP alike;
// a reject rule makes the connect fail with EPERM and sends nothing; a rule
// the kernel cannot evaluate is skipped with a warning naming it.
func TestExecRules(t *testing.T) {
	lab := netlab.New(t)
	lab.StartDNS(nil) // only for its address, 198.51.100.53, upstream
	viaDefault := lab.StartEchoOn(netlab.DNSServer)
	viaRule := lab.StartEcho()
	config := e2e.WriteConfig(t, fmt.Sprintf(`
rules:
  - name: by-name
    domain: [example.com]
    via: ens33
  - name: lab-server
    dst: [%s/32]
    via: ens33
  - name: black-hole
    dst: [203.0.113.0/24]
    action: reject
default: ens160
`, netlab.Server))

	// One exec runs both flows of a transport, so they share the policy.
	tcpBoth := fmt.Sprintf(`%s -c 'import socket
for host, port in [("%s", %d), ("%s", %d)]:
    s = socket.create_connection((host, port), timeout=5)
    print(s.makefile().readline().strip())
    s.close()'`, python, viaRule.TCP.Addr(), viaRule.TCP.Port(), viaDefault.TCP.Addr(), viaDefault.TCP.Port())

	t.Run("TCP", func(t *testing.T) {
		lab := lab.With(t)
		before := lab.Snapshot()
		res := e2e.Run(t, lab, nicproxyBinary, "exec", "-c", config, "--", "sh", "-c", tcpBoth)
		if res.Code != 0 {
			t.Fatalf("exit %d: %s", res.Code, res.Stderr)
		}
		if !strings.Contains(res.Stderr, "rule 0 by-name skipped: it matches by domain") {
			t.Errorf("no warning names the skipped rule: %s", res.Stderr)
		}
		lines := strings.Fields(res.Stdout)
		if len(lines) != 2 {
			t.Fatalf("want two addresses seen, got %q", res.Stdout)
		}
		if got := seenIn(t, lines[0]); got != netlab.Ens33.Addr {
			t.Errorf("the rule's destination saw %v, want ens33's %v", got, netlab.Ens33.Addr)
		}
		if got := seenIn(t, lines[1]); got != netlab.Ens160.Addr {
			t.Errorf("the default's destination saw %v, want ens160's %v", got, netlab.Ens160.Addr)
		}
		// Each NIC carried one connection: at least a SYN, a request's
		// worth of ACKs and a FIN each.
		for _, nic := range []string{"ens33", "ens160"} {
			if tx := before.TxSince(nic); tx < 3*54 {
				t.Errorf("%s sent %d bytes, want at least one connection's", nic, tx)
			}
		}
	})

	t.Run("unconnected UDP to the default's destination", func(t *testing.T) {
		lab := lab.With(t)
		before := lab.Snapshot()
		out := mustRun(t, lab, "exec", "-c", config, "--", python, "-c", udpClient, viaDefault.UDP.Addr().String(), fmt.Sprint(viaDefault.UDP.Port()))
		execPinned(t, before, seenIn(t, out), 1, netlab.Ens160, netlab.Ens33)
	})

	// The documented narrow case: a datagram socket is pinned to the
	// default's NIC when it is made, and a sendmsg program cannot move
	// the datagram it sees. So the first datagram to a rule's other NIC
	// is refused (EPERM) rather than sent the wrong way, and the socket
	// is re-pinned for the next.
	t.Run("unconnected UDP to a rule's NIC: first refused, then via ens33", func(t *testing.T) {
		lab := lab.With(t)
		before := lab.Snapshot()
		out := mustRun(t, lab, "exec", "-c", config, "--", python, "-c", udpRetryClient, viaRule.UDP.Addr().String(), fmt.Sprint(viaRule.UDP.Port()))
		first, reply, _ := strings.Cut(out, "\n")
		if first != "first refused" {
			t.Errorf("first datagram: %q, want refused", first)
		}
		if !strings.HasSuffix(strings.TrimSpace(reply), "second") {
			t.Errorf("no echo of the second datagram: %q", reply)
		}
		execPinned(t, before, seenIn(t, reply), uint64(len("second")), netlab.Ens33, netlab.Ens160)
	})

	t.Run("TCP to a rejected destination fails and sends nothing", func(t *testing.T) {
		lab := lab.With(t)
		before := lab.Snapshot()
		res := e2e.Run(t, lab, nicproxyBinary, "exec", "-c", config, "--", python, "-c", tcpClient, netlab.Blackhole.String(), "80")
		if res.Code == 0 {
			t.Fatalf("connect to a rejected destination succeeded: %s", res.Stdout)
		}
		if !strings.Contains(res.Stderr, "PermissionError: [Errno 1] Operation not permitted") {
			t.Errorf("connect failed, but not with EPERM: %s", res.Stderr)
		}
		if tx := before.TxSince("ens33") + before.TxSince("ens160"); tx != 0 {
			t.Errorf("the NICs sent %d bytes towards a rejected destination", tx)
		}
	})
}

// TestExecIPv6 pins an IPv6 connection and an IPv6 datagram.
func TestExecIPv6(t *testing.T) {
	lab := netlab.New(t)
	lab.EnableIPv6()
	echo := lab.StartEchoOn(netlab.Server6)
	udp6 := strings.Replace(udpClient, "AF_INET,", "AF_INET6,", 1)

	before := lab.Snapshot()
	out := mustRun(t, lab, "exec", "-i", "ens160", "--", python, "-c", tcpClient, echo.TCP.Addr().String(), fmt.Sprint(echo.TCP.Port()))
	execPinned(t, before, seenIn(t, out), 60, netlab.Ens160, netlab.Ens33)

	before = lab.Snapshot()
	out = mustRun(t, lab, "exec", "-i", "ens160", "--", python, "-c", udp6, echo.UDP.Addr().String(), fmt.Sprint(echo.UDP.Port()))
	execPinned(t, before, seenIn(t, out), uint64(len("exec datagram")), netlab.Ens160, netlab.Ens33)
}

// TestExecSignals: SIGTERM to exec reaches the command, whose exit status
// exec returns.
func TestExecSignals(t *testing.T) {
	lab := netlab.New(t)
	server := `import signal, socket, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(5))
s = socket.socket(); s.bind(("127.0.0.1", 7071)); s.listen()
while True: s.accept()[0].close()
`
	p := lab.StartProxy(nicproxyBinary, "127.0.0.1:7071", "", "exec", "-i", "ens160", "--", python, "-c", server)
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(10 * time.Second)
	if err != nil || code != 5 {
		t.Errorf("exit %d (%v), want 5, the command's own after SIGTERM\n%s", code, err, p.Output())
	}
}

// cgroupUnitScript begins a shell script that mounts a bpffs at $BPFFS
// and makes a cgroup, $unit, as a service manager would (under $DIR when
// the host mounts no cgroup2); each test's script goes on from there.
const cgroupUnitScript = `set -e
mkdir -p "$BPFFS"
mount -t bpf bpf "$BPFFS"
root=$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)
if [ -z "$root" ]; then root="$DIR/cg"; mkdir -p "$root"; mount -t cgroup2 none "$root"; fi
unit="$root/nicproxy-test-unit.$$"
mkdir "$unit"
`

// TestExecExistingCgroup attaches the programs to a cgroup the way systemd
// would use them: pinned in bpffs by `exec --cgroup --pin`, then a process
// moved into the cgroup before it execs the program. A datagram with an
// IP_PKTINFO naming ens33 is dropped meanwhile, and --unpin reports it.
// After --unpin the same command leaves through ens33 again.
func TestExecExistingCgroup(t *testing.T) {
	lab := netlab.New(t)
	web := lab.StartWeb()
	echo := lab.StartEcho()
	dir := t.TempDir()
	bpffs := filepath.Join(dir, "bpf")
	pins := filepath.Join(bpffs, "unit")
	// Everything in one `ip netns exec`, which gives its commands a mount
	// namespace of their own: the cgroup2 and bpf mounts go with it.
	script := cgroupUnitScript + `"$NICPROXY" exec --cgroup "$unit" --pin "$PINS" -i ens160
run() { sh -c 'echo $$ > "$1/cgroup.procs"; exec curl -sS --max-time 5 "$2"' sh "$unit" "$URL"; }
run
# An IP_PKTINFO datagram naming ens33, which egress drops and counts.
sh -c 'echo $$ > "$1/cgroup.procs"; exec "$PYTHON" -c "$PKTINFO" "$ECHO_HOST" "$ECHO_PORT" ens33' sh "$unit" >/dev/null
"$NICPROXY" exec --unpin "$PINS"
run
rmdir "$unit"
umount "$BPFFS"
`
	cmd := lab.Command("sh", "-c", script)
	cmd.Env = append(cmd.Env, "BPFFS="+bpffs, "PINS="+pins, "DIR="+dir, "NICPROXY="+nicproxyBinary,
		"URL="+fmt.Sprintf("http://%s/whoami", web.HTTP), "GORACE=atexit_sleep_ms=0 halt_on_error=1",
		"PYTHON="+python, "PKTINFO="+pktinfoClient, "ECHO_HOST="+echo.UDP.Addr().String(), "ECHO_PORT="+fmt.Sprint(echo.UDP.Port()))
	before := lab.Snapshot()
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var seen []netip.Addr
	for _, line := range strings.Split(out, "\n") {
		if ap, err := netip.ParseAddrPort(strings.TrimSpace(line)); err == nil {
			seen = append(seen, ap.Addr())
		}
	}
	if len(seen) != 2 {
		t.Fatalf("want two addresses seen, got:\n%s", out)
	}
	if seen[0] != netlab.Ens160.Addr {
		t.Errorf("pinned unit: server saw %v, want ens160's %v", seen[0], netlab.Ens160.Addr)
	}
	if seen[1] != netlab.Ens33.Addr {
		t.Errorf("after --unpin: server saw %v, want ens33's %v (the routing table's choice)", seen[1], netlab.Ens33.Addr)
	}
	for _, nic := range []string{"ens33", "ens160"} {
		if tx := before.TxSince(nic); tx < 100 {
			t.Errorf("%s sent %d bytes, want one request's worth", nic, tx)
		}
	}
	if !strings.Contains(out, "nicproxy exec --unpin "+pins) {
		t.Errorf("--pin does not say how to undo it:\n%s", out)
	}
	if !strings.Contains(out, "dropped 1 packets at egress") {
		t.Errorf("--unpin does not report the packet egress dropped:\n%s", out)
	}
}

// TestExecKilledStaysPinned: if exec itself is killed (SIGKILL, the OOM
// killer), the command it started carries on pinned: the programs are
// attached to the cgroup, not held by exec's descriptors.
func TestExecKilledStaysPinned(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	// For each client on 127.0.0.1:7072, connect to the echo server and
	// tell the client "PID SEEN".
	server := fmt.Sprintf(`import os, socket
l = socket.socket(); l.bind(("127.0.0.1", 7072)); l.listen()
while True:
    c = l.accept()[0]
    u = socket.create_connection(("%s", %d), timeout=5)
    c.sendall(("%%d %%s\n" %% (os.getpid(), u.makefile().readline().strip())).encode())
    u.close(); c.close()
`, echo.TCP.Addr(), echo.TCP.Port())
	p := lab.StartProxy(nicproxyBinary, "127.0.0.1:7072", "", "exec", "-i", "ens160", "--", python, "-c", server)
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(10 * time.Second); err == nil {
		t.Fatal("exec survived SIGKILL")
	}
	before := lab.Snapshot()
	conn, err := lab.DialHost("tcp", "127.0.0.1:7072")
	if err != nil {
		t.Fatalf("the command did not outlive exec: %v", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	pidText, seenText, _ := strings.Cut(strings.TrimSpace(line), " ")
	if pid, perr := strconv.Atoi(pidText); perr == nil {
		t.Cleanup(func() {
			// Nothing waits for the orphan: end it, then remove the
			// cgroup exec left, seen from a mount of the hierarchy.
			cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
			_ = syscall.Kill(pid, syscall.SIGKILL)
			path := strings.TrimPrefix(strings.TrimSpace(string(cg)[strings.Index(string(cg), "0::"):]), "0::")
			m := t.TempDir()
			rm := lab.Command("sh", "-c", `mount -t cgroup2 none "$0" && for i in 1 2 3 4 5 6 7 8 9 10; do rmdir "$0$1" 2>/dev/null && break; sleep 0.2; done; umount "$0"`, m, path)
			if out, err := rm.CombinedOutput(); err != nil {
				t.Logf("remove the cgroup %s: %v: %s", path, err, out)
			}
		})
	}
	if err != nil {
		t.Fatalf("read from the command: %v", err)
	}
	execPinned(t, before, seenIn(t, seenText), 60, netlab.Ens160, netlab.Ens33)
}

// sigintCounter counts SIGINTs until SIGTERM, then prints the count;
// with argument "own-group" it first leaves exec's process group, so the
// terminal's own SIGINT does not reach it and it sees only what exec
// passes on.
const sigintCounter = `import os, signal, sys
if sys.argv[1:] == ["own-group"]:
    os.setpgid(0, 0)
n = 0
def on_int(*a):
    global n
    n += 1
def on_term(*a):
    print("sigint %d" % n, flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, on_int)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    signal.pause()
`

// ptyDriver runs argv[1:] on a new terminal and, once the command prints
// "ready", types Ctrl-C; when the terminal has echoed it (so it has
// signalled its foreground group, exec's), it sends exec SIGTERM, which
// exec passes on after anything it got before (pending signals go lowest
// first). It prints what the terminal showed.
const ptyDriver = `import os, pty, signal, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
while b"ready" not in out:
    out += os.read(fd, 1024)
os.write(fd, b"\x03")
while b"^C" not in out:
    out += os.read(fd, 1024)
os.kill(pid, signal.SIGTERM)
while True:
    try:
        chunk = os.read(fd, 1024)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
`

// TestExecCtrlC: Ctrl-C on exec's terminal reaches CMD once, from the
// terminal, which signals its foreground process group, CMD included:
// exec does not pass the same SIGINT on again. A CMD that left the
// group shows what exec passes on: nothing.
func TestExecCtrlC(t *testing.T) {
	lab := netlab.New(t)
	for _, c := range []struct{ arg, want string }{{"", "sigint 1\r\n"}, {"own-group", "sigint 0\r\n"}} {
		cmd := lab.Command(python, "-c", ptyDriver, nicproxyBinary, "exec", "-i", "ens160", "--", python, "-c", sigintCounter, c.arg)
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("CMD %s: want %q after one Ctrl-C:\n%s", c.arg, c.want, out)
		}
	}
}
