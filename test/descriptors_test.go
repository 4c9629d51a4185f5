package test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// TestIdleTunnelDescriptors opens many idle tunnels through nicproxy and
// counts the proxy's open descriptors: each idle tunnel should cost its two
// sockets and nothing more (no pipe held by a waiting splice).
func TestIdleTunnelDescriptors(t *testing.T) {
	const tunnels = 300
	lab := newServingLab(t)
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-i", "ens160", "-l", "127.0.0.1:1080")
	fds := func() int {
		entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", proc.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		return len(entries)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", proc.Pid())); !strings.HasSuffix(exe, "nicproxy") {
		t.Fatalf("pid %d is %s, not nicproxy", proc.Pid(), exe)
	}
	// One tunnel that has carried data first, so pools and the runtime
	// have settled before the baseline.
	// Each tunnel is open once the echo server's greeting has come back
	// through it; a round trip shows its relay has moved bytes both ways
	// (and made whatever a splice makes).
	open := func() (net.Conn, *bufio.Reader) {
		conn := dialProxy(t, lab.Lab)
		if rep, err := socks5Dial(conn, "", "", netlab.Server.String(), lab.echo.TCP.Port()); err != nil || rep != 0 {
			t.Fatalf("connect: %#x %v", rep, err)
		}
		r := bufio.NewReader(conn)
		netlab.MustSeen(t, r)
		return conn, r
	}
	roundTrip := func(conn net.Conn, r *bufio.Reader) {
		const msg = "warm up the splice path\n"
		fmt.Fprint(conn, msg)
		if got, err := r.ReadString('\n'); err != nil || got != msg {
			t.Fatalf("round trip: %q, %v", got, err)
		}
	}
	roundTrip(open())
	base := fds()
	var last net.Conn
	var lastR *bufio.Reader
	for range tunnels {
		last, lastR = open()
	}
	roundTrip(last, lastR)
	perTunnel := float64(fds()-base) / tunnels
	t.Logf("%d idle tunnels: %.2f descriptors each (baseline %d)", tunnels, perTunnel, base)
	if perTunnel > 2.1 {
		t.Errorf("%.2f descriptors per idle tunnel, want about 2 (client and upstream sockets)", perTunnel)
	}
}
