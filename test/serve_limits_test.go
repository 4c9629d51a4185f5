package test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"nicproxy/test/netlab"
)

// TestServeListeners: IPv6 and single-protocol listeners, and access
// control by client address and by SOCKS4 user id.
func TestServeListeners(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
listen:
  - {addr: "127.0.0.1:1080", protocol: socks5}
  - {name: v6-http, addr: "[::1]:8080", protocol: http}
  - {name: walled, addr: "127.0.0.1:1082"}
rules:
  - {name: carol-lan, user: [carol], via: ens33}
  - {name: walled-off, listener: [walled], src: [192.0.2.0/24], via: ens33}
  - {name: walled-rest, listener: [walled], action: reject}
default: ens160
timeouts: {handshake: 1s}
`)
	url := lab.url("http", "web.test", "/echo")

	t.Run("http on an IPv6 listener", func(t *testing.T) {
		lab := lab.with(t)
		before := lab.Snapshot()
		f := lab.curlUpload(t, nil, url, "--proxy", "http://[::1]:8080")
		checkPinned(t, before, f, netlab.Ens160, netlab.Ens33)
	})
	// What a listener answers a protocol it does not speak, up to the close.
	wrongProtocol := func(t *testing.T, listener string, request []byte) string {
		t.Helper()
		conn, err := lab.DialHost("tcp", listener)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(request); err != nil {
			t.Fatal(err)
		}
		reply, err := io.ReadAll(conn)
		if err != nil {
			t.Errorf("read the answer: %v, want it followed by the close", err)
		}
		return string(reply)
	}
	t.Run("a socks5 listener does not speak http", func(t *testing.T) {
		// As curl sends it: long enough that the bytes read as a SOCKS5
		// greeting ("G", then 'E' = 69 methods) are all there.
		request := "GET " + url + " HTTP/1.1\r\nHost: web.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
		// SOCKS5's "no acceptable methods", at once, then the close.
		if reply := wrongProtocol(t, "127.0.0.1:1080", []byte(request)); reply != "\x05\xff" {
			t.Errorf("a socks5-only listener answered an HTTP request with %q, want \"\\x05\\xff\" and the close", reply)
		}
	})
	t.Run("an http listener does not speak socks5", func(t *testing.T) {
		// A 400 at once, not net/http waiting for a line end that never
		// comes until the handshake timeout.
		const want = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n" +
			"Content-Length: 43\r\n\r\nnicproxy: this port speaks HTTP, not SOCKS\n"
		if reply := wrongProtocol(t, "[::1]:8080", []byte{0x05, 0x01, 0x00}); reply != want {
			t.Errorf("an http-only listener answered a SOCKS5 greeting with %q, want %q", reply, want)
		}
	})
	t.Run("socks4 user id matches a user rule", func(t *testing.T) {
		lab := lab.with(t)
		lab.StartProxy(nicproxyBinary, "127.0.0.1:1081", "", "-l", "127.0.0.1:1081", "-c", writeConfig(t, "rules: [{user: [carol], via: ens33}]\ndefault: ens160\n"))
		before := lab.Snapshot()
		f := lab.curlUpload(t, nil, url, "--proxy", "socks4a://carol@127.0.0.1:1081")
		checkPinned(t, before, f, netlab.Ens33, netlab.Ens160)
	})
	t.Run("listener and src rules reject a client outside src", func(t *testing.T) {
		out, _, _ := lab.Curl("-o", "/dev/null", "-w", "%{http_code}", "--proxy", "http://127.0.0.1:1082", url)
		if out != "403" {
			t.Errorf("status %q, want 403", out)
		}
	})
}

// TestServeAccessControl: allow lists, bcrypt users and the access log.
func TestServeAccessControl(t *testing.T) {
	lab := newServingLab(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("bob-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", fmt.Sprintf(`
listen: [{addr: 127.0.0.1:1080}, {addr: 127.0.0.1:1081}]
users: [{name: bob, password_hash: %q}]
allow: [127.0.0.1/32]
default: ens160
log: {format: json}
`, hash))
	url := lab.url("http", "web.test", "/echo")

	t.Run("bcrypt user over socks5 and http, same keep-alive", func(t *testing.T) {
		lab := lab.with(t)
		for _, proxy := range []string{"socks5h://bob:bob-pw@127.0.0.1:1080", "http://bob:bob-pw@127.0.0.1:1080"} {
			before := lab.Snapshot()
			f := lab.curlUpload(t, nil, url, "--proxy", proxy)
			checkPinned(t, before, f, netlab.Ens160, netlab.Ens33)
		}
	})
	t.Run("a client outside allow gets 0x02 and 403", func(t *testing.T) {
		// 127.0.0.2 is loopback but not in allow.
		conn := dialFrom(t, lab.Lab, "127.0.0.2", "127.0.0.1:1081")
		rep, err := socks5Dial(conn, "bob", "bob-pw", "web.test", lab.web.HTTP.Port())
		if err != nil || rep != 0x02 {
			t.Errorf("reply %#x, %v; want 0x02", rep, err)
		}
		// Without checking the password, and for any command.
		conn = dialFrom(t, lab.Lab, "127.0.0.2", "127.0.0.1:1081")
		rep, err = socks5Dial(conn, "bob", "wrong", "web.test", lab.web.HTTP.Port())
		if err != nil || rep != 0x02 {
			t.Errorf("wrong password from outside allow: reply %#x, %v; want 0x02", rep, err)
		}
		conn = dialFrom(t, lab.Lab, "127.0.0.2", "127.0.0.1:1081")
		if rep, _, err := socks5Request(conn, "", "", socks5Bind, netlab.Server.String(), 80); err != nil || rep != 0x02 {
			t.Errorf("BIND from outside allow: reply %#x, %v; want 0x02", rep, err)
		}
		conn = dialFrom(t, lab.Lab, "127.0.0.2", "127.0.0.1:1081")
		resp, _, err := httpConnect(conn, "web.test", lab.web.HTTP.Port(), nil)
		if err != nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("CONNECT from outside allow: %v, %v; want 403", resp, err)
		}
	})
	t.Run("the access log is JSON, names NIC and user, never the password", func(t *testing.T) {
		// The last line is written as the connection closes.
		var out string
		okLines := func() []map[string]any {
			var ok []map[string]any
			for _, entry := range accessLines(t, out) {
				if entry["result"] == "ok" {
					ok = append(ok, entry)
				}
			}
			return ok
		}
		eventually(t, 5*time.Second, func() bool {
			out = proc.Output()
			return len(okLines()) >= 2
		}, func() string { return "fewer than 2 successful access lines:\n" + out })
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !json.Valid([]byte(line)) {
				t.Errorf("log line is not JSON: %q", line)
			}
		}
		if strings.Contains(out, "bob-pw") {
			t.Errorf("the log contains a password:\n%s", out)
		}
		for _, entry := range okLines() {
			line, _ := json.Marshal(entry)
			for key, want := range map[string]any{"user": "bob", "nic": "ens160", "rule": "default"} {
				if entry[key] != want {
					t.Errorf("access %s = %v, want %v in %s", key, entry[key], want, line)
				}
			}
			for _, key := range []string{"client", "protocol", "dest", "bytes_up", "bytes_down", "duration"} {
				if _, ok := entry[key]; !ok {
					t.Errorf("access line lacks %s: %s", key, line)
				}
			}
		}
	})
}

// dialFrom connects from a chosen local address inside the host namespace.
func dialFrom(t testing.TB, lab *netlab.Lab, local, remote string) net.Conn {
	t.Helper()
	var conn net.Conn
	err := lab.InHost(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		var err error
		conn, err = d.Dial("tcp", remote)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}

// TestServeLimits: the handshake timeout, the connection limit, and the
// SOCKS5 replies for what nicproxy does not serve.
func TestServeLimits(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
default: ens160
timeouts: {handshake: 1s}
limits: {max_connections: 2}
`)
	t.Run("a silent client is dropped after timeouts.handshake", func(t *testing.T) {
		// The proxy closes (EOF), long before the client's own 10 s
		// deadline would end the read, and not before its 1 s: a lower
		// bound that a busy machine can only make easier to meet.
		conn := dialProxy(t, lab.Lab)
		start := time.Now()
		_, err := conn.Read(make([]byte, 1))
		if d := time.Since(start); err != io.EOF || d < 900*time.Millisecond {
			t.Errorf("read returned %v after %v, want the proxy's close (EOF) once 1s had passed", err, d)
		}
	})
	t.Run("unsupported command and address type", func(t *testing.T) {
		for _, tt := range []struct {
			name string
			req  []byte
			want byte
		}{
			{"BIND", []byte{0x05, 0x02, 0x00, 0x01, 198, 51, 100, 10, 0, 80}, 0x07},
			{"command 0x09", []byte{0x05, 0x09, 0x00, 0x01, 198, 51, 100, 10, 0, 80}, 0x07},
			{"address type 0x05", []byte{0x05, 0x01, 0x00, 0x05, 1, 2, 3, 4, 0, 80}, 0x08},
		} {
			conn := dialProxy(t, lab.Lab)
			if _, err := conn.Write([]byte{0x05, 0x01, 0x00}); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(conn, make([]byte, 2)); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(tt.req); err != nil {
				t.Fatal(err)
			}
			reply := make([]byte, 2)
			if _, err := io.ReadFull(conn, reply); err != nil || reply[1] != tt.want {
				t.Errorf("%s: reply %#x (%v), want %#x", tt.name, reply[1], err, tt.want)
			}
			conn.Close()
		}
	})
	t.Run("clients over max_connections are refused at once", func(t *testing.T) {
		var held []net.Conn
		for range 2 {
			conn := dialProxy(t, lab.Lab)
			if rep, err := socks5Dial(conn, "", "", netlab.Server.String(), lab.echo.TCP.Port()); err != nil || rep != 0 {
				t.Fatalf("connect: %#x %v", rep, err)
			}
			held = append(held, conn)
		}
		// The refusal may reach the client while it is still connecting.
		// A client queued instead would see its own deadline's timeout.
		extra, err := lab.DialHost("tcp", "127.0.0.1:1080")
		if err == nil {
			defer extra.Close()
			_ = extra.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err = extra.Write([]byte{0x05, 0x01, 0x00}); err == nil {
				_, err = bufio.NewReader(extra).ReadByte()
			}
		}
		if err == nil || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE)) {
			t.Errorf("third client: %v, want the connection refused", err)
		}
		for _, c := range held {
			c.Close()
		}
		// Slots are given back: a new client is served again. Until the
		// relays notice their clients left, a new client may still be
		// refused at once: try again.
		var rep byte
		eventually(t, 10*time.Second, func() bool {
			var conn net.Conn
			conn, err = lab.DialHost("tcp", "127.0.0.1:1080")
			if err == nil {
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				rep, err = socks5Dial(conn, "", "", netlab.Server.String(), lab.echo.TCP.Port())
				conn.Close()
			}
			return err == nil && rep == 0
		}, func() string {
			return fmt.Sprintf("no slot came back after closing the held tunnels: %#x %v", rep, err)
		})
	})
}
