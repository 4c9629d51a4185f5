package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"nicproxy/config"
	"nicproxy/internal/loopback"
)

// These tests serve on loopback with loopback destinations, which are
// dialed unpinned: they check the server's life cycle (no goroutine
// outlives Serve) rather than pinning, which test/ proves in namespaces.

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func startServer(t *testing.T, yaml string) (*Server, netip.AddrPort, context.CancelFunc, <-chan error) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml), config.Options{Interfaces: []string{"eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	// The file needs a fixed port; the test takes any free one.
	cfg.Listeners[0].Addr = netip.MustParseAddrPort("127.0.0.1:0")
	srv, cancel, done := serveConfig(t, cfg, zaptest.NewLogger(t))
	return srv, srv.Addrs()[0], cancel, done
}

// serveConfig listens and serves cfg, logging to log, until cancel; done
// then yields Serve's error.
func serveConfig(t *testing.T, cfg *config.Config, log *zap.Logger) (srv *Server, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	srv = New(cfg, log, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Listen(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	return srv, cancel, served
}

// echoServer accepts on loopback and echoes until the test ends.
func echoServer(t *testing.T) netip.AddrPort { return loopback.Echo(t) }

func TestServeStopsCleanly(t *testing.T) {
	echo := echoServer(t)
	_, addr, cancel, done := startServer(t, `
listen: [{addr: "127.0.0.1:1080"}]
default: eth0
timeouts: {shutdown: 2s}
log: {access: false}
`)
	// A SOCKS5 tunnel, an HTTP CONNECT tunnel and an idle HTTP keep-alive
	// connection are open when shutdown starts.
	socks, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer socks.Close()
	req := []byte{0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1}
	req = binary.BigEndian.AppendUint16(req, echo.Port())
	if _, err := socks.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(socks, reply); err != nil || reply[3] != 0x00 {
		t.Fatalf("socks5 reply %v, %v", reply, err)
	}

	httpConn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer httpConn.Close()
	fmt.Fprintf(httpConn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", echo, echo)
	resp, err := http.ReadResponse(bufio.NewReader(httpConn), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}

	idle, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // not a proxy request: 400, kept alive
	resp, err = http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("origin-form request: %v %v", resp, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within the 2s grace period plus margin")
	}
	// The grace period cut the open tunnels.
	if _, err := socks.Read(make([]byte, 1)); err == nil {
		t.Error("the SOCKS5 tunnel survived shutdown")
	}
}

func TestSOCKS5BufferedBytesAfterRequestAreRelayed(t *testing.T) {
	echo := echoServer(t)
	_, addr, cancel, done := startServer(t, `
listen: [{addr: "127.0.0.1:1080"}]
default: eth0
log: {access: false}
`)
	defer func() { cancel(); <-done }()
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Greeting, request and payload in one write: the payload lands in the
	// library's handshake buffer and must still reach the upstream first.
	msg := []byte{0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1}
	msg = binary.BigEndian.AppendUint16(msg, echo.Port())
	msg = append(msg, "optimistic data"...)
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2+10+len("optimistic data"))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(got), "optimistic data") {
		t.Errorf("echo %q lost the bytes sent with the request", got[12:])
	}
}

func reloadConfig(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml), config.Options{Interfaces: []string{"eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listeners[0].Addr = netip.MustParseAddrPort("127.0.0.1:0")
	return cfg
}

// A client accepted before a reload, whose HTTP request comes after it, is
// served by the new configuration rather than reset.
func TestReloadKeepsAcceptedHTTPClient(t *testing.T) {
	const yaml = "listen: [{addr: \"127.0.0.1:1080\"}]\ndefault: eth0\nlog: {access: false}\n"
	srv, addr, cancel, done := startServer(t, yaml)
	defer func() { cancel(); <-done }()
	conn, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	eventually(t, 5*time.Second, func() bool { return srv.active.Load() == 1 },
		func() string { return "the client was not accepted" })
	if err := srv.Reload(context.Background(), reloadConfig(t, yaml)); err != nil {
		t.Fatal(err)
	}
	// The old configuration's HTTP server has shut down: a client it still
	// held would have been closed by now.
	eventually(t, 5*time.Second, func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.retired) == 0
	}, func() string { return "the old configuration's HTTP server did not finish shutting down" })
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a client accepted before the reload: %v %v, want the 400 for an origin-form request", resp, err)
	}
}

// Once Serve is shutting down, a late reload opens nothing.
func TestReloadAfterServeOpensNothing(t *testing.T) {
	const yaml = "listen: [{addr: \"127.0.0.1:1080\"}]\ndefault: eth0\nlog: {access: false}\n"
	srv, _, cancel, done := startServer(t, yaml)
	cancel()
	<-done
	// A free port (0) can always be bound, so only the guard can make this
	// fail (port 1 failed with EACCES when not root, guard or not).
	cfg := reloadConfig(t, yaml+"admin: {addr: \"127.0.0.1:9090\"}\n")
	cfg.Admin.Addr = netip.MustParseAddrPort("127.0.0.1:0")
	err := srv.Reload(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("a reload after shutdown: %v, want it refused as shutting down", err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.listeners) != 0 || srv.admin != nil {
		t.Errorf("after shutdown: %d listeners, admin %v", len(srv.listeners), srv.admin)
	}
}

// A reload builds its configuration, bcrypt included, without the server's
// lock, which every dial to a local address takes (issue 17): here the
// test holds the lock while a reload makes a new dummy hash at cost 12.
func TestReloadBuildsWithoutTheLock(t *testing.T) {
	const yaml = "listen: [{addr: \"127.0.0.1:1080\"}]\ndefault: eth0\nlog: {access: false}\n"
	cfg, err := config.Parse("test.yaml", []byte(yaml), config.Options{Interfaces: []string{"eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listeners[0].Addr = netip.MustParseAddrPort("127.0.0.1:0")
	core, logs := observer.New(zap.DebugLevel)
	srv := New(cfg, zap.New(core), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), 12)
	if err != nil {
		t.Fatal(err)
	}
	next := reloadConfig(t, yaml+"users: [{name: u, password_hash: \""+string(hash)+"\"}]\n")
	srv.mu.Lock()
	locked := true
	reloaded := make(chan error, 1)
	defer func() {
		if locked { // the test failed with the lock held
			srv.mu.Unlock()
			<-reloaded
		}
	}()
	go func() { reloaded <- srv.Reload(context.Background(), next) }()
	eventually(t, 30*time.Second, func() bool {
		return logs.FilterMessage("reload: new configuration built").Len() > 0
	}, func() string { return "the reload did not build its configuration while the lock was held" })
	srv.mu.Unlock()
	locked = false
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	if srv.state.Load().cfg != next {
		t.Error("the reload did not apply")
	}
}
