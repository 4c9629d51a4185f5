package test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// TestServeEmbeddedDefault runs nicproxy with no arguments at all: it must
// name the default-route NIC in its first log line and pin to it.
func TestServeEmbeddedDefault(t *testing.T) {
	lab := newServingLab(t)
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "")
	first, _, _ := strings.Cut(proc.Output(), "\n")
	if !strings.Contains(first, "ens33 (the NIC of the default route)") {
		t.Errorf("first log line does not name the default-route NIC: %q", first)
	}
	before := lab.Snapshot()
	f := lab.curlUpload(t, []string{"ALL_PROXY=socks5h://127.0.0.1:1080"}, lab.url("http", "web.test", "/echo"))
	checkPinned(t, before, f, netlab.Ens33, netlab.Ens160)
}

// TestServeGracefulShutdown: on SIGTERM nicproxy stops accepting, lets an
// open tunnel finish, and exits 0 once it has; an upgraded HTTP connection
// must not hold the shutdown either.
func TestServeGracefulShutdown(t *testing.T) {
	lab := newServingLab(t)
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\ntimeouts: {shutdown: 20s}\n")

	// A finished WebSocket upgrade, then an open SOCKS5 tunnel.
	ws := dialProxy(t, lab.Lab)
	target := lab.web.HTTP.String()
	fmt.Fprintf(ws, "GET http://%s/ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", target, target)
	resp, err := http.ReadResponse(bufio.NewReader(ws), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	ws.Close()

	tunnel := dialProxy(t, lab.Lab)
	if rep, err := socks5Dial(tunnel, "", "", netlab.Server.String(), lab.echo.TCP.Port()); err != nil || rep != 0 {
		t.Fatalf("connect: %#x %v", rep, err)
	}
	r := bufio.NewReader(tunnel)
	netlab.MustSeen(t, r)

	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New clients are refused once the listener is closed.
	eventually(t, 5*time.Second, func() bool {
		conn, err := lab.DialHost("tcp", "127.0.0.1:1080")
		if err == nil {
			conn.Close()
		}
		return err != nil
	}, func() string { return "still accepting after SIGTERM" })
	// The open tunnel still works...
	if _, err := io.WriteString(tunnel, "still here"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("still here"))
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "still here" {
		t.Fatalf("open tunnel after SIGTERM: %q %v", got, err)
	}
	select {
	case <-proc.Exited():
		t.Fatal("nicproxy exited while a tunnel was open")
	default:
	}
	// ...and closing it lets nicproxy exit at once, cleanly.
	tunnel.Close()
	code, err := proc.Wait(5 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("exit %d, %v; want 0 soon after the last tunnel closed\n%s", code, err, proc.Output())
	}
}
