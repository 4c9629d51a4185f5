package test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

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
	open := func() net.Conn {
		conn := dialProxy(t, lab.Lab)
		if rep, err := socks5Dial(conn, "", "", netlab.Server.String(), lab.echo.TCP.Port()); err != nil || rep != 0 {
			t.Fatalf("connect: %#x %v", rep, err)
		}
		netlab.MustSeen(t, bufio.NewReader(conn))
		return conn
	}
	warm := open()
	fmt.Fprint(warm, "warm up the splice path")
	time.Sleep(100 * time.Millisecond)
	base := fds()
	for range tunnels {
		open()
	}
	time.Sleep(200 * time.Millisecond)
	perTunnel := float64(fds()-base) / tunnels
	t.Logf("%d idle tunnels: %.2f descriptors each (baseline %d)", tunnels, perTunnel, base)
	if perTunnel > 2.1 {
		t.Errorf("%.2f descriptors per idle tunnel, want about 2 (client and upstream sockets)", perTunnel)
	}
}
