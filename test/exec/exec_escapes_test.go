package exectest

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"nicproxy/test/e2e"
	"nicproxy/test/netlab"
)

// The tests here each try, as a program would, a way around the socket
// hooks' pin, under `exec -i ens160` (or a dst rule), and prove the NIC
// twice: the server saw ens160's address, or nothing; and ens33's counter
// did not move.

// pktinfoClient sends one datagram with an IPv4 IP_PKTINFO naming
// argv[3]'s interface index (which overrides SO_BINDTODEVICE in the
// kernel, with no capability needed), then one plain datagram, and prints
// what came back for each.
const pktinfoClient = `import socket, struct, sys
host, port, nic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
IP_PKTINFO = 8  # linux/in.h; Python does not name it
info = struct.pack("I4s4s", socket.if_nametoindex(nic), bytes(4), bytes(4))
try:
    s.sendmsg([b"pktinfo"], [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, (host, port))
    try:
        print("pktinfo answered: " + s.recvfrom(1024)[0].decode())
    except socket.timeout:
        print("pktinfo unanswered")
except PermissionError:
    print("pktinfo refused")
s.settimeout(5)
s.sendto(b"plain", (host, port))
print(s.recvfrom(1024)[0].decode())
`

// TestExecPktinfo: a UDP send with IP_PKTINFO naming ens33 leaves nothing
// on ens33; the egress program drops it, exec counts it, and the socket's
// next plain datagram leaves through ens160.
func TestExecPktinfo(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	before := lab.Snapshot()
	res := e2e.Run(t, lab, nicproxyBinary, "exec", "-i", "ens160", "--", python, "-c", pktinfoClient, echo.UDP.Addr().String(), fmt.Sprint(echo.UDP.Port()), "ens33")
	if res.Code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", res.Code, res.Stdout, res.Stderr)
	}
	first, second, _ := strings.Cut(strings.TrimSpace(res.Stdout), "\n")
	if strings.HasPrefix(first, "pktinfo answered") {
		t.Errorf("the IP_PKTINFO datagram got through: %q", first)
	}
	if !strings.HasSuffix(second, "plain") {
		t.Fatalf("no echo of the plain datagram: %q", res.Stdout)
	}
	execPinned(t, before, seenIn(t, second), uint64(len("plain")), netlab.Ens160, netlab.Ens33)
	if !strings.Contains(res.Stderr, "dropped 1 packets at egress") {
		t.Errorf("exec does not report the dropped packet: %s", res.Stderr)
	}
}

// tosClient connects a UDP socket, sends one datagram with IP_TOS as a
// per-packet option (as QUIC stacks send ECN), then one plainly, and
// prints what came back for each.
const tosClient = `import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect((sys.argv[1], int(sys.argv[2])))
try:
    s.sendmsg([b"tos"], [(socket.IPPROTO_IP, socket.IP_TOS, struct.pack("i", 0x10))])
    print(s.recv(1024).decode())
except PermissionError:
    print("tos refused")
s.send(b"plain")
print(s.recv(1024).decode())
`

// TestExecConnectedUDPWithOption: a connected UDP socket that sends once
// with a per-packet option and then plainly leaves nothing on ens33: the
// sendmsg program takes its empty destination for the connected peer and
// leaves the pin alone.
func TestExecConnectedUDPWithOption(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	before := lab.Snapshot()
	res := e2e.Run(t, lab, nicproxyBinary, "exec", "-i", "ens160", "--", python, "-c", tosClient, echo.UDP.Addr().String(), fmt.Sprint(echo.UDP.Port()))
	if res.Code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", res.Code, res.Stdout, res.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.Stdout), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "tos") || !strings.HasSuffix(lines[1], "plain") {
		t.Fatalf("want both datagrams echoed, got %q", res.Stdout)
	}
	for _, line := range lines {
		if seen := seenIn(t, line); seen != netlab.Ens160.Addr {
			t.Errorf("server saw %v, want ens160's %v", seen, netlab.Ens160.Addr)
		}
	}
	execPinned(t, before, seenIn(t, lines[1]), uint64(len("tosplain")), netlab.Ens160, netlab.Ens33)
}

// greeter listens on 0.0.0.0:7075 and greets each client with the
// address it accepted it on; it also listens on 127.0.0.1:7076 to say it
// is ready.
const greeter = `import select, socket
ln = socket.socket()
ln.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ln.bind(("0.0.0.0", 7075))
ln.listen()
ready = socket.socket()
ready.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ready.bind(("127.0.0.1", 7076))
ready.listen()
while True:
    for s in select.select([ln, ready], [], [])[0]:
        c = s.accept()[0]
        try:
            c.sendall(("hello from %s\n" % c.getsockname()[0]).encode())
            c.shutdown(socket.SHUT_WR)
            while c.recv(1024):
                pass
        except OSError:
            pass  # the readiness probe hangs up at once
        c.close()
`

// TestExecListener: a listener inside CMD answers a client that came
// through ens160, from ens160: every packet of the connection, SYN-ACK
// included, leaves by ens160 and none by ens33, which the routing table
// would pick for the reply.
func TestExecListener(t *testing.T) {
	lab := netlab.New(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:7076", "", "exec", "-i", "ens160", "--", python, "-c", greeter)
	before := lab.Snapshot()
	var greeting string
	err := lab.InUpstream(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(netlab.Ens160.Addr, 7075).String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		greeting = strings.TrimSpace(line)
		return err
	})
	if err != nil {
		t.Fatalf("client through ens160: %v", err)
	}
	if want := "hello from " + netlab.Ens160.Addr.String(); greeting != want {
		t.Errorf("greeting %q, want %q", greeting, want)
	}
	if tx := before.TxSince("ens160"); tx < 3*54 {
		t.Errorf("ens160 sent %d bytes, want at least a SYN-ACK, the greeting and a FIN", tx)
	}
	if tx := before.TxSince("ens33"); tx != 0 {
		t.Errorf("ens33 sent %d bytes, want 0", tx)
	}
}

// pinger sends one ICMP echo request to argv[1] from a raw socket and
// prints "reply to ADDR", ADDR being where the echo reply was sent: the
// source address the destination saw.
const pinger = `import os, socket, struct, sys
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
ident, body = os.getpid() & 0xffff, b"nicproxy" * 4
req = struct.pack("!BBHHH", 8, 0, csum(struct.pack("!BBHHH", 8, 0, 0, ident, 1) + body), ident, 1) + body
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(3)
try:
    s.sendto(req, (sys.argv[1], 0))
except PermissionError:
    sys.exit("refused")
while True:
    try:
        data = s.recv(1024)
    except socket.timeout:
        sys.exit("no reply")
    ihl = (data[0] & 0xf) * 4
    kind, _, _, rid, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
    if kind == 0 and rid == ident:
        print("reply to " + socket.inet_ntoa(data[16:20]))
        break
`

// TestExecPing: ICMP follows the dst rules too. A ping under a dst rule
// naming ens33 (the default being ens160) leaves by ens33 and is
// answered, ens160 sending nothing; a ping to a rejected destination
// leaves by neither.
func TestExecPing(t *testing.T) {
	lab := netlab.New(t)
	config := e2e.WriteConfig(t, fmt.Sprintf(`
rules:
  - dst: [%s/32]
    via: ens33
  - dst: [203.0.113.0/24]
    action: reject
default: ens160
`, netlab.Server))

	before := lab.Snapshot()
	res := e2e.Run(t, lab, nicproxyBinary, "exec", "-c", config, "--", python, "-c", pinger, netlab.Server.String())
	if res.Code != 0 {
		t.Fatalf("ping under the dst rule: exit %d\nstdout: %s\nstderr: %s", res.Code, res.Stdout, res.Stderr)
	}
	seen, _ := netip.ParseAddr(strings.TrimPrefix(strings.TrimSpace(res.Stdout), "reply to "))
	execPinned(t, before, seen, 60, netlab.Ens33, netlab.Ens160)

	before = lab.Snapshot()
	res = e2e.Run(t, lab, nicproxyBinary, "exec", "-c", config, "--", python, "-c", pinger, netlab.Blackhole.String())
	if res.Code == 0 {
		t.Errorf("ping to a rejected destination was answered: %s", res.Stdout)
	}
	if tx := before.TxSince("ens33") + before.TxSince("ens160"); tx != 0 {
		t.Errorf("the NICs sent %d bytes towards a rejected destination", tx)
	}
}
