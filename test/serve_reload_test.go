package test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// TestServeReload: SIGHUP re-reads the file. New connections follow the
// new rules and listeners; an open tunnel is never cut, not even when its
// listener goes away; a bad file is reported and the old one keeps serving.
func TestServeReload(t *testing.T) {
	lab := newServingLab(t)
	path := writeConfig(t, "listen: [{addr: 127.0.0.1:1080}]\ndefault: ens33\n")
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-c", path)
	rewrite := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := proc.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	flowVia := func(t *testing.T, proxy string, want, other netlab.NIC) {
		t.Helper()
		lab := lab.with(t)
		before := lab.Snapshot()
		f := lab.curlUpload(t, nil, lab.url("http", "web.test", "/echo"), "--proxy", proxy)
		checkPinned(t, before, f, want, other)
	}
	waitFor := func(t *testing.T, what string, cond func() bool) {
		t.Helper()
		eventually(t, 5*time.Second, cond, func() string { return what + "\n" + proc.Output() })
	}
	accepts := func(addr string) bool {
		conn, err := lab.DialHost("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}

	flowVia(t, "socks5h://127.0.0.1:1080", netlab.Ens33, netlab.Ens160)
	tunnel := dialProxy(t, lab.Lab)
	if rep, err := socks5Dial(tunnel, "", "", netlab.Server.String(), lab.echo.TCP.Port()); err != nil || rep != 0 {
		t.Fatalf("connect: %#x %v", rep, err)
	}
	r := bufio.NewReader(tunnel)
	if seen := netlab.MustSeen(t, r); seen.Addr() != netlab.Ens33.Addr {
		t.Fatalf("tunnel on %v, want ens33", seen.Addr())
	}
	stillOpen := func(t *testing.T) {
		t.Helper()
		before := lab.With(t).Snapshot()
		if _, err := io.WriteString(tunnel, "ping"); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4)
		if _, err := io.ReadFull(r, got); err != nil || string(got) != "ping" {
			t.Fatalf("the open tunnel broke: %q %v", got, err)
		}
		// The upstream socket acknowledges the echo up to 40 ms later
		// (delayed ACK): wait for that 66-byte frame after the 70 of the
		// ping, or it lands in the next flow's count of ens33.
		eventually(t, 5*time.Second, func() bool { return before.TxSince("ens33") >= 70+66 },
			func() string {
				return fmt.Sprintf("ens33 sent %d bytes for the ping and its ACK", before.TxSince("ens33"))
			})
	}

	t.Run("new rules and a new listener", func(t *testing.T) {
		rewrite("listen: [{addr: 127.0.0.1:1080}, {name: second, addr: 127.0.0.1:1081}]\ndefault: ens160\n")
		waitFor(t, "the new listener accepts", func() bool { return accepts("127.0.0.1:1081") })
		flowVia(t, "socks5h://127.0.0.1:1080", netlab.Ens160, netlab.Ens33)
		flowVia(t, "http://127.0.0.1:1081", netlab.Ens160, netlab.Ens33)
		stillOpen(t)
	})
	t.Run("a bad file keeps the running configuration", func(t *testing.T) {
		rewrite("listen: [{addr: 127.0.0.1:1080}]\nrules: [{dst: [198.51.100.0/24], via: ens16O}]\n")
		waitFor(t, "the error is logged", func() bool {
			return strings.Contains(proc.Output(), `rules[0].via: unknown interface "ens16O" (have: ens33, ens160)`)
		})
		if !strings.Contains(proc.Output(), "still serving the previous configuration") {
			t.Errorf("the log does not say the old configuration keeps serving:\n%s", proc.Output())
		}
		flowVia(t, "socks5h://127.0.0.1:1081", netlab.Ens160, netlab.Ens33)
		stillOpen(t)
	})
	t.Run("a dropped listener closes; its open tunnel stays", func(t *testing.T) {
		rewrite("listen: [{name: second, addr: 127.0.0.1:1081}]\ndefault: ens160\n")
		waitFor(t, "the dropped listener refuses", func() bool { return !accepts("127.0.0.1:1080") })
		stillOpen(t)
		flowVia(t, "socks5h://127.0.0.1:1081", netlab.Ens160, netlab.Ens33)
	})

	tunnel.Close()
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := proc.Wait(5 * time.Second); err != nil || code != 0 {
		t.Errorf("exit %d %v after SIGTERM\n%s", code, err, proc.Output())
	}
}

// TestReloadClosesIdleKeepAliveAndSetsLogLevel: SIGHUP closes an idle HTTP
// keep-alive connection, so its next request would follow the new rules,
// and log.level changes with the reload: at warn no access line is
// written, at info it is.
func TestReloadClosesIdleKeepAliveAndSetsLogLevel(t *testing.T) {
	lab := newServingLab(t)
	config := func(nic, level string) string {
		return fmt.Sprintf("listen: [{addr: 127.0.0.1:1080}]\ndefault: %s\nlog: {level: %s, format: json}\n", nic, level)
	}
	path := writeConfig(t, config("ens33", "warn"))
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-c", path)

	// A client connection kept alive after one request through ens33. The
	// origin's /echo closes its side, so no upstream connection is left
	// idle to close, and count, later.
	before := lab.Snapshot()
	keep := dialProxy(t, lab.Lab)
	fmt.Fprintf(keep, "GET http://web.test:%d/echo HTTP/1.1\r\nHost: web.test:%d\r\n\r\n", lab.web.HTTP.Port(), lab.web.HTTP.Port())
	r := bufio.NewReader(keep)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("first request: %d %q %v (close %v), want 200 on a kept-alive connection", resp.StatusCode, body, err, resp.Close)
	}
	seen, err := netip.ParseAddrPort(resp.Header.Get("X-Seen"))
	if err != nil {
		t.Fatal(err)
	}
	checkPinned(t, before, flow{seen: seen.Addr(), sent: 1}, netlab.Ens33, netlab.Ens160)
	// And a flow that ends, at level warn.
	before = lab.Snapshot()
	checkPinned(t, before, lab.curlUpload(t, nil, lab.url("http", "web.test", "/echo"), "--proxy", "socks5h://127.0.0.1:1080"), netlab.Ens33, netlab.Ens160)

	if err := os.WriteFile(path, []byte(config("ens160", "info")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The idle keep-alive connection is closed by the reload.
	_ = keep.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the idle keep-alive connection after SIGHUP: read %d bytes, %v; want it closed (EOF)", n, err)
	}
	before = lab.Snapshot()
	checkPinned(t, before, lab.curlUpload(t, nil, lab.url("http", "web.test", "/echo"), "--proxy", "socks5h://127.0.0.1:1080"), netlab.Ens160, netlab.Ens33)
	eventually(t, 5*time.Second, func() bool { return len(accessLines(t, proc.Output())) > 0 },
		func() string { return "no access line at level info:\n" + proc.Output() })

	// Once the process has exited its log is complete: the one access line
	// is the flow after the reload; the two before it, at warn, wrote none.
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := proc.Wait(15 * time.Second); code != 0 || err != nil {
		t.Fatalf("exit %d, %v after SIGTERM", code, err)
	}
	lines := accessLines(t, proc.Output())
	if len(lines) != 1 || lines[0]["nic"] != "ens160" {
		t.Errorf("access lines %v, want the one flow after the reload (ens160):\n%s", lines, proc.Output())
	}
}
