package exectest

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nicproxy/test/e2e"
	"nicproxy/test/netlab"
)

// Sockets exec must let work (loopback servers, unprivileged UDP) and
// sockets from outside the cgroup it must keep from CMD.

// loopbackUDPServer answers datagrams on 127.0.0.1:7074 and [::1]:7074
// with "echo " and what came; it listens on TCP 127.0.0.1:7073 to say it
// is ready.
const loopbackUDPServer = `import select, socket
socks = []
for fam, addr in [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]:
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((addr, 7074))
    socks.append(s)
ready = socket.socket()
ready.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ready.bind(("127.0.0.1", 7073))
ready.listen()
while True:
    for s in select.select(socks + [ready], [], [])[0]:
        if s is ready:
            s.accept()[0].close()
            continue
        data, peer = s.recvfrom(1024)
        s.sendto(b"echo " + data, peer)
`

// TestExecLoopbackUDPServer: a UDP server bound to 127.0.0.1 and one
// bound to ::1 inside exec answer a client on the host, as root and as an
// unprivileged user, and no NIC sends anything.
func TestExecLoopbackUDPServer(t *testing.T) {
	lab := netlab.New(t)
	for _, as := range [][]string{nil, {"--user", "nobody"}} {
		t.Run(fmt.Sprint("as ", as), func(t *testing.T) {
			lab := lab.With(t)
			args := append(append([]string{"exec", "-i", "ens160"}, as...), "--", python, "-c", loopbackUDPServer)
			p := lab.StartProxy(nicproxyBinary, "127.0.0.1:7073", "", args...)
			before := lab.Snapshot()
			for _, addr := range []string{"127.0.0.1:7074", "[::1]:7074"} {
				var reply string
				err := lab.InHost(func() error {
					c, err := net.Dial("udp", addr)
					if err != nil {
						return err
					}
					defer c.Close()
					if _, err := c.Write([]byte("hello")); err != nil {
						return err
					}
					buf := make([]byte, 64)
					if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
						return err
					}
					n, err := c.Read(buf)
					reply = string(buf[:n])
					return err
				})
				if err != nil || reply != "echo hello" {
					t.Errorf("server on %s: reply %q, %v; want \"echo hello\"\n%s", addr, reply, err, p.Output())
				}
			}
			if tx := before.TxSince("ens160") + before.TxSince("ens33"); tx != 0 {
				t.Errorf("the NICs sent %d bytes for loopback datagrams", tx)
			}
		})
	}
}

// unprivilegedUDP, run as nobody, sends UDP to a loopback server of its
// own (unconnected, from the first datagram), to argv[1]:argv[2] over a
// connected socket, and then to it unconnected, retrying once after
// EPERM; it prints each reply.
const unprivilegedUDP = `import os, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
print("uid", os.getuid())
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind(("127.0.0.1", 0))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(5)
c.sendto(b"lo", srv.getsockname())
data, peer = srv.recvfrom(64)
srv.sendto(b"loopback " + data, peer)
print(c.recvfrom(64)[0].decode())
conn = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
conn.settimeout(5)
conn.connect((host, port))
conn.send(b"connected")
print(conn.recv(1024).decode())
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)
try:
    u.sendto(b"unconnected", (host, port))
except PermissionError:
    u.sendto(b"unconnected", (host, port))
print(u.recvfrom(1024)[0].decode())
`

// TestExecUnprivilegedUDP: exec --user nobody (no CAP_NET_RAW, which a
// re-pin needs) sends UDP to loopback and, by a dst rule, through ens33
// while the default is ens160: connected from its first datagram,
// unconnected from its second at the latest.
func TestExecUnprivilegedUDP(t *testing.T) {
	lab := netlab.New(t)
	viaRule := lab.StartEcho()
	config := e2e.WriteConfig(t, fmt.Sprintf("rules:\n  - dst: [%s/32]\n    via: ens33\ndefault: ens160\n", netlab.Server))
	before := lab.Snapshot()
	res := e2e.Run(t, lab, nicproxyBinary, "exec", "-c", config, "--user", "nobody", "--", python, "-c", unprivilegedUDP, viaRule.UDP.Addr().String(), fmt.Sprint(viaRule.UDP.Port()))
	if res.Code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", res.Code, res.Stdout, res.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) != 4 || lines[0] == "uid 0" || lines[1] != "loopback lo" ||
		!strings.HasSuffix(lines[2], " connected") || !strings.HasSuffix(lines[3], " unconnected") {
		t.Fatalf("want uid, loopback, connected and unconnected replies, got %q", res.Stdout)
	}
	execPinned(t, before, seenIn(t, lines[2]), uint64(len("connectedunconnected")), netlab.Ens33, netlab.Ens160)
	if seen := seenIn(t, lines[3]); seen != netlab.Ens33.Addr {
		t.Errorf("the unconnected datagram was seen from %v, want ens33's %v", seen, netlab.Ens33.Addr)
	}
}

// TestExecExistingCgroupBusy: --cgroup refuses a cgroup that already has
// processes, whose sockets from before the attach the hooks never saw,
// unless --existing-sockets-ok says so; exec itself in the cgroup (as
// systemd runs ExecStartPre) does not count.
func TestExecExistingCgroupBusy(t *testing.T) {
	lab := netlab.New(t)
	dir := t.TempDir()
	// In one `ip netns exec`, whose mount namespace the mounts go with.
	script := cgroupUnitScript + `sh -c 'echo $$ > "$1/cgroup.procs"; exec sleep 60' sh "$unit" &
sleeper=$!
until [ -n "$(cat "$unit/cgroup.procs")" ]; do sleep 0.05; done
set +e
"$NICPROXY" exec --cgroup "$unit" --pin "$BPFFS/unit" -i ens160; echo "refused: $?"
"$NICPROXY" exec --cgroup "$unit" --pin "$BPFFS/unit" --existing-sockets-ok -i ens160; echo "forced: $?"
"$NICPROXY" exec --unpin "$BPFFS/unit"
kill $sleeper; wait $sleeper || true
sh -c 'echo $$ > "$1/cgroup.procs"; exec "$NICPROXY" exec --cgroup "$1" --pin "$BPFFS/unit" -i ens160' sh "$unit"; echo "from inside: $?"
"$NICPROXY" exec --unpin "$BPFFS/unit"
rmdir "$unit"
umount "$BPFFS"
`
	cmd := lab.Command("sh", "-c", script)
	cmd.Env = append(cmd.Env, "DIR="+dir, "BPFFS="+filepath.Join(dir, "bpf"), "NICPROXY="+nicproxyBinary, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	outb, _ := cmd.CombinedOutput()
	out := string(outb)
	// exec run from inside the cgroup, as systemd's ExecStartPre is, does
	// not count itself.
	for _, want := range []string{"has 1 processes", "--existing-sockets-ok", "refused: 2", "pinned ", "forced: 0", "from inside: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// socketUser, run under exec, sends a datagram to argv[2]:argv[3] on the
// socket it inherited as descriptor argv[1], then one on a socket of its
// own, and prints what happened and the reply.
const socketUser = `import socket, sys
fd, dst = int(sys.argv[1]), (sys.argv[2], int(sys.argv[3]))
try:
    socket.socket(fileno=fd).sendto(b"inherited", dst)
    print("inherited sent")
except OSError as e:
    print("inherited unusable: errno %d" % e.errno)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.settimeout(5)
c.sendto(b"own", dst)
print(c.recvfrom(1024)[0].decode())
`

// inheritor makes a UDP socket outside exec and runs exec with it
// inherited (argv[1] is nicproxy, the rest socketUser's arguments).
const inheritor = `import os, socket, subprocess, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
os.set_inheritable(s.fileno(), True)
argv = [sys.argv[1], "exec", "-i", "ens160", "--", sys.argv[2], "-c", sys.argv[3], str(s.fileno())] + sys.argv[4:]
sys.exit(subprocess.call(argv, close_fds=False))
`

// TestExecInheritedSocket: a socket made outside exec's cgroup and
// inherited through exec cannot send via ens33 (the routing table's
// choice for it): exec closes it in CMD and says so, and CMD's own socket
// leaves by ens160.
func TestExecInheritedSocket(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	cmd := lab.Command(python, "-c", inheritor, nicproxyBinary, python, socketUser, echo.UDP.Addr().String(), fmt.Sprint(echo.UDP.Port()))
	cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	before := lab.Snapshot()
	outb, err := cmd.Output()
	out := string(outb)
	if err != nil {
		t.Fatalf("%v\nstdout: %s\nstderr: %s", err, out, stderr.String())
	}
	first, reply, _ := strings.Cut(strings.TrimSpace(out), "\n")
	if first != "inherited unusable: errno 9" {
		t.Errorf("the inherited socket: %q, want it closed (EBADF)", first)
	}
	if !strings.Contains(stderr.String(), "socket exec inherited, is closed in the command") {
		t.Errorf("exec does not say it closed the inherited socket: %s", stderr.String())
	}
	execPinned(t, before, seenIn(t, reply), uint64(len("own")), netlab.Ens160, netlab.Ens33)
}
