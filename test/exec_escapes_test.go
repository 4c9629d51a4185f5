package test

import (
	"fmt"
	"strings"
	"testing"

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
	res := nicproxy(t, lab, "exec", "-i", "ens160", "--", python, "-c", pktinfoClient, echo.UDP.Addr().String(), fmt.Sprint(echo.UDP.Port()), "ens33")
	if res.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	first, second, _ := strings.Cut(strings.TrimSpace(res.stdout), "\n")
	if strings.HasPrefix(first, "pktinfo answered") {
		t.Errorf("the IP_PKTINFO datagram got through: %q", first)
	}
	if !strings.HasSuffix(second, "plain") {
		t.Fatalf("no echo of the plain datagram: %q", res.stdout)
	}
	execPinned(t, before, seenIn(t, second), uint64(len("plain")), netlab.Ens160, netlab.Ens33)
	if !strings.Contains(res.stderr, "dropped 1 packets at egress") {
		t.Errorf("exec does not report the dropped packet: %s", res.stderr)
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
	res := nicproxy(t, lab, "exec", "-i", "ens160", "--", python, "-c", tosClient, echo.UDP.Addr().String(), fmt.Sprint(echo.UDP.Port()))
	if res.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "tos") || !strings.HasSuffix(lines[1], "plain") {
		t.Fatalf("want both datagrams echoed, got %q", res.stdout)
	}
	for _, line := range lines {
		if seen := seenIn(t, line); seen != netlab.Ens160.Addr {
			t.Errorf("server saw %v, want ens160's %v", seen, netlab.Ens160.Addr)
		}
	}
	execPinned(t, before, seenIn(t, lines[1]), uint64(len("tosplain")), netlab.Ens160, netlab.Ens33)
}
