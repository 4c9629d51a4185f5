//go:build linux

package test

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"nicproxy/test/netlab"
)

// startBacklogHolder listens on netlab.Server:port in the upstream
// namespace with a deep backlog and never accepts: the kernel completes
// each handshake and queues the connection, so thousands of idle tunnels
// end there without costing the test process a descriptor each.
func startBacklogHolder(tb testing.TB, lab *netlab.Lab, port uint16, backlog int) netip.AddrPort {
	tb.Helper()
	addr := netip.AddrPortFrom(netlab.Server, port)
	for _, kv := range []string{"net.core.somaxconn=" + strconv.Itoa(backlog), "net.ipv4.tcp_max_syn_backlog=" + strconv.Itoa(backlog)} {
		if out, err := exec.Command("ip", "netns", "exec", lab.Upstream, "sysctl", "-qw", kv).CombinedOutput(); err != nil {
			tb.Fatalf("sysctl %s: %v %s", kv, err, out)
		}
	}
	var fd int
	err := lab.InUpstream(func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(port), Addr: addr.Addr().As4()}); err != nil {
			return err
		}
		return unix.Listen(fd, backlog)
	})
	if err != nil {
		tb.Fatalf("backlog holder: %v", err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	return addr
}

// procStat reads a process's resident memory (KiB) and open descriptors.
func procStat(tb testing.TB, pid int) (rssKiB, fds int) {
	tb.Helper()
	rssKiB, fds, err := readProcStat(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return rssKiB, fds
}

// readProcStat is procStat for a goroutine that may not fail its test.
func readProcStat(pid int) (rssKiB, fds int, err error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rssKiB, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, 0, err
	}
	return rssKiB, len(entries), nil
}

// BenchmarkIdleTunnels opens 9,000 idle tunnels through SOCKS5 and through
// HTTP CONNECT, each against its own nicproxy process, and reports what
// each tunnel costs the proxy: resident KiB and descriptors (two sockets is
// the floor). The goal is at most 12 KiB and 2.1 descriptors for both.
//
//	go test -run '^$' -bench IdleTunnels -benchtime 1x ./test/
func BenchmarkIdleTunnels(b *testing.B) {
	const tunnels = 9000
	lab := netlab.New(b)
	// A holder per protocol: connections closed by one run stay queued.
	holdSOCKS5 := startBacklogHolder(b, lab, 9100, tunnels+1000)
	holdHTTP := startBacklogHolder(b, lab, 9101, tunnels+1000)
	openers := map[string]func(net.Conn) error{
		"socks5": func(conn net.Conn) error {
			hold := holdSOCKS5
			rep, err := socks5Dial(conn, "", "", hold.Addr().String(), hold.Port())
			if err == nil && rep != 0 {
				err = fmt.Errorf("reply %#x", rep)
			}
			return err
		},
		"http-connect": func(conn net.Conn) error {
			hold := holdHTTP
			resp, _, err := httpConnect(conn, hold.Addr().String(), hold.Port(), nil)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %s", resp.Status)
			}
			return err
		},
	}
	for i, name := range []string{"socks5", "http-connect"} {
		b.Run(name, func(b *testing.B) {
			listen := fmt.Sprintf("127.0.0.1:%d", 1080+i)
			proc := lab.StartProxy(nicproxyBinary, listen, "", "-i", "ens160", "-l", listen)
			for b.Loop() {
				kib, fds := idleTunnelCost(b, lab, proc.Pid(), listen, tunnels, openers[name])
				b.ReportMetric(kib, "KiB/tunnel")
				b.ReportMetric(fds, "fds/tunnel")
			}
		})
	}
}

// idleTunnelCost opens n tunnels through the proxy at listen, after a
// warm-up, and returns the growth of the proxy's RSS and descriptors per
// tunnel once every tunnel is open and the proxy has settled.
func idleTunnelCost(b *testing.B, lab *netlab.Lab, pid int, listen string, n int, open func(net.Conn) error) (kib, fds float64) {
	dial := func() net.Conn {
		conn, err := lab.DialHost("tcp", listen)
		if err != nil {
			b.Fatal(err)
		}
		if err := open(conn); err != nil {
			b.Fatal(err)
		}
		return conn
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 200 { // warm up pools, the runtime and the heap
		conns = append(conns, dial())
	}
	time.Sleep(time.Second)
	baseRSS, baseFDs := procStat(b, pid)
	for range n {
		conns = append(conns, dial())
	}
	// Wait until the proxy holds every tunnel's two sockets, then let it
	// finish what each handshake started (goroutines parking, the access
	// log) before reading its figures.
	wantFDs := baseFDs + 2*n
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, open := procStat(b, pid); open >= wantFDs {
			break
		}
	}
	time.Sleep(2 * time.Second)
	rss, nowOpen := procStat(b, pid)
	b.Logf("%d tunnels: RSS %d -> %d KiB, descriptors %d -> %d", n, baseRSS, rss, baseFDs, nowOpen)
	return float64(rss-baseRSS) / float64(n), float64(nowOpen-baseFDs) / float64(n)
}
