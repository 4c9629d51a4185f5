package test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// errorsConfig routes by port so each failure has its own destination.
const errorsConfig = `
listen: [{addr: 127.0.0.1:1080}]
users: [{name: alice, password: "s3cret"}]
interfaces:
  ens200: {}                 # declared, never present
rules:
  - {name: no-smtp, port: [25], action: reject}
  - {name: gone, port: [2000], via: ens200}
  - {name: downed, port: [2001], via: ens160}
default: ens33
timeouts: {dial: 1s, idle: 1s, handshake: 1s}  # the handshake clock must stop before the dial
`

// TestServeErrors checks each failure's exact SOCKS5 reply code and HTTP
// status, and that failing flows never leak out of the other NIC.
func TestServeErrors(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", errorsConfig)
	lab.SetDown("ens160")
	server := netlab.Server.String()
	auth := http.Header{"Proxy-Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))}}

	tests := []struct {
		name       string
		host       string
		port       uint16
		wantSOCKS5 byte
		wantHTTP   int
		wantBody   string // the 502 body names the NIC
	}{
		{"reject rule", server, 25, 0x02, http.StatusForbidden, "no-smtp"},
		{"NIC that does not exist", server, 2000, 0x03, http.StatusBadGateway, "via ens200"},
		{"NIC that does not exist, by name", "web.test", 2000, 0x03, http.StatusBadGateway, "via ens200"},
		{"NIC that is down", server, 2001, 0x03, http.StatusBadGateway, "via ens160"},
		{"NIC that is down, by name", "web.test", 2001, 0x03, http.StatusBadGateway, "via ens160"},
		{"refused port", server, 9, 0x05, http.StatusBadGateway, "via ens33"},
		{"black-holed address", netlab.Blackhole.String(), 80, 0x06, http.StatusGatewayTimeout, "via ens33"},
		{"name that does not resolve", "nx.test", 80, 0x04, http.StatusBadGateway, "via ens33"},
	}
	for _, tt := range tests {
		// A flow that must fail closed may not leave through ens33 instead.
		failClosed := tt.wantSOCKS5 == 0x02 || tt.wantSOCKS5 == 0x03
		checkNoLeak := func(t *testing.T, before netlab.Snapshot) {
			if tx := before.TxSince("ens33"); failClosed && tx != 0 {
				t.Errorf("ens33 sent %d bytes for a flow that must fail closed", tx)
			}
		}
		t.Run(tt.name+" over socks5", func(t *testing.T) {
			lab := lab.with(t)
			before := lab.Snapshot()
			defer checkNoLeak(t, before)
			conn := dialProxy(t, lab.Lab)
			rep, err := socks5Dial(conn, "alice", "s3cret", tt.host, tt.port)
			if err != nil {
				t.Fatal(err)
			}
			if rep != tt.wantSOCKS5 {
				t.Errorf("reply %#x, want %#x", rep, tt.wantSOCKS5)
			}
		})
		t.Run(tt.name+" over http CONNECT", func(t *testing.T) {
			lab := lab.with(t)
			before := lab.Snapshot()
			defer checkNoLeak(t, before)
			conn := dialProxy(t, lab.Lab)
			resp, _, err := httpConnect(conn, tt.host, tt.port, auth)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if resp.StatusCode != tt.wantHTTP {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tt.wantHTTP, body)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body %q does not name %q", body, tt.wantBody)
			}
		})
	}

	t.Run("wrong password over socks5", func(t *testing.T) {
		_, err := socks5Dial(dialProxy(t, lab.Lab), "alice", "wrong", server, 80)
		if err != errAuthFailed {
			t.Fatalf("got %v, want an authentication failure", err)
		}
	})
	t.Run("wrong password over http", func(t *testing.T) {
		bad := http.Header{"Proxy-Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("alice:wrong"))}}
		resp, _, err := httpConnect(dialProxy(t, lab.Lab), server, lab.web.HTTPS.Port(), bad)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusProxyAuthRequired {
			t.Errorf("status %d, want 407", resp.StatusCode)
		}
		if got := resp.Header.Get("Proxy-Authenticate"); got != `Basic realm="nicproxy"` {
			t.Errorf("Proxy-Authenticate %q", got)
		}
		out, _, _ := lab.Curl("-o", "/dev/null", "-w", "%{http_code}", "--proxy", "http://alice:wrong@127.0.0.1:1080", lab.url("http", "web.test", "/whoami"))
		if out != "407" {
			t.Errorf("curl with a wrong password got status %q, want 407", out)
		}
	})
	t.Run("socks4 refused when users are configured", func(t *testing.T) {
		lab := lab.with(t)
		before := lab.Snapshot()
		// SOCKS4a CONNECT web.test:80 as user carol: SOCKS4 has no password.
		conn := dialProxy(t, lab.Lab)
		req := append([]byte{0x04, 0x01, 0, 80, 0, 0, 0, 1}, "carol\x00web.test\x00"...)
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		reply, err := io.ReadAll(conn)
		if want := []byte{0x00, 0x5B, 0, 0, 0, 0, 0, 0}; err != nil || !bytes.Equal(reply, want) {
			t.Errorf("reply %#v then %v, want %#v (rejected) then the close", reply, err, want)
		}
		_, stderr, err := lab.Curl("--proxy", "socks4a://127.0.0.1:1080", lab.url("http", "web.test", "/whoami"))
		if code := exitCode(err); code != 97 || !strings.Contains(stderr, "(91)") {
			t.Errorf("curl: exit %d (%v), %s; want 97, CURLE_PROXY, for reply 91 (0x5B)", code, err, stderr)
		}
		for _, nic := range []string{"ens33", "ens160"} {
			if tx := before.TxSince(nic); tx != 0 {
				t.Errorf("%s sent %d bytes for a refused request", nic, tx)
			}
		}
	})
	t.Run("hop-by-hop headers and credentials are not forwarded", func(t *testing.T) {
		out, stderr, err := lab.Curl("--proxy", "http://alice:s3cret@127.0.0.1:1080",
			"-H", "Connection: X-Secret-Hop", "-H", "X-Secret-Hop: 1", "-H", "Keep-Alive: 5",
			lab.url("http", "web.test", "/headers"))
		if err != nil {
			t.Fatalf("%v: %s", err, stderr)
		}
		for _, banned := range []string{"Proxy-Authorization", "X-Secret-Hop", "Keep-Alive", "Proxy-Connection"} {
			if strings.Contains(out, banned+":") {
				t.Errorf("upstream received %s:\n%s", banned, out)
			}
		}
	})
}

// dialProxy connects to the proxy on 127.0.0.1:1080 in the host namespace.
func dialProxy(t *testing.T, lab *netlab.Lab) net.Conn {
	t.Helper()
	return dialProxyAt(t, lab, "127.0.0.1:1080")
}

// TestServeRelay checks the relay: large downloads byte-exact through
// SOCKS5 and HTTP CONNECT, half-close, idle timeout, WebSocket upgrade.
func TestServeRelay(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
default: ens160
timeouts: {idle: 1s, body: 1s}
`)
	const size = 100 << 20
	want := sha256.New()
	if _, err := io.Copy(want, netlab.ExpectedBytes(size)); err != nil {
		t.Fatal(err)
	}
	for _, proxy := range []string{"socks5h://127.0.0.1:1080", "http://127.0.0.1:1080"} {
		t.Run("100 MiB through "+proxy, func(t *testing.T) {
			lab := lab.with(t)
			before := lab.Snapshot()
			file, head := filepath.Join(t.TempDir(), "download"), filepath.Join(t.TempDir(), "head")
			args := []string{"--proxy", proxy, "-o", file, "-D", head, "--max-time", "120", lab.url("http", "web.test", fmt.Sprintf("/bytes?n=%d", size))}
			if strings.HasPrefix(proxy, "http:") {
				args = append([]string{"--proxytunnel"}, args...)
			}
			if _, stderr, err := lab.Curl(args...); err != nil {
				t.Fatalf("%v: %s", err, stderr)
			}
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got := sha256.New()
			n, _ := io.Copy(got, f)
			if n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
				t.Errorf("downloaded %d bytes, hash match %v; want %d byte-exact", n, bytes.Equal(got.Sum(nil), want.Sum(nil)), size)
			}
			headers, _ := os.ReadFile(head)
			if seen := seenHeader(t, string(headers)); seen != netlab.Ens160.Addr {
				t.Errorf("server saw %v, want ens160's %v", seen, netlab.Ens160.Addr)
			}
			if rx := before.RxSince("ens160"); rx < size {
				t.Errorf("ens160 received %d bytes, want at least the %d downloaded", rx, size)
			}
			if tx := before.TxSince("ens33"); tx != 0 {
				t.Errorf("ens33 sent %d bytes, want 0", tx)
			}
		})
	}

	t.Run("half-closed upload still gets the full reply", func(t *testing.T) {
		lab := lab.with(t)
		before := lab.Snapshot()
		conn := dialProxy(t, lab.Lab)
		if rep, err := socks5Dial(conn, "", "", netlab.Server.String(), lab.echo.TCP.Port()); err != nil || rep != 0 {
			t.Fatalf("connect: reply %#x, %v", rep, err)
		}
		payload := bytes.Repeat([]byte("half-close "), 100000)
		r := bufio.NewReader(conn)
		seen := netlab.MustSeen(t, r)
		go func() {
			_, _ = conn.Write(payload)
			_ = conn.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, payload) {
			t.Errorf("got %d bytes back (err %v), want the %d-byte payload", len(got), err, len(payload))
		}
		checkPinned(t, before, flow{seen: seen.Addr(), sent: len(payload)}, netlab.Ens160, netlab.Ens33)
	})

	t.Run("idle tunnel is closed after timeouts.idle", func(t *testing.T) {
		conn := dialProxy(t, lab.Lab)
		if rep, err := socks5Dial(conn, "", "", netlab.Server.String(), lab.echo.TCP.Port()); err != nil || rep != 0 {
			t.Fatalf("connect: reply %#x, %v", rep, err)
		}
		r := bufio.NewReader(conn)
		netlab.MustSeen(t, r)
		start := time.Now()
		_, err := r.ReadByte() // nothing more comes: the proxy must close it
		idleFor := time.Since(start)
		if err != io.EOF {
			t.Fatalf("read after idle: %v, want EOF", err)
		}
		// Not before timeouts.idle: a bound a busy machine cannot break.
		if idleFor < 900*time.Millisecond {
			t.Errorf("closed after %v, before timeouts.idle (1s)", idleFor)
		}
	})

	t.Run("a client that stalls mid-body is dropped after timeouts.body", func(t *testing.T) {
		conn := dialProxy(t, lab.Lab)
		fmt.Fprintf(conn, "POST http://%s/echo HTTP/1.1\r\nHost: web.test\r\nContent-Length: 100\r\n\r\nonly a few bytes", lab.web.HTTP)
		start := time.Now()
		// A 408, then the close. The proxy's close ends the copy without
		// error, its 20 s deadline with one.
		if _, err := io.Copy(io.Discard, conn); err != nil {
			t.Fatalf("the stalled request was not closed by the proxy: %v", err)
		}
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Errorf("the stalled request ended after %v, before timeouts.body (1s)", d)
		}
	})

	t.Run("websocket upgrade through the http proxy", func(t *testing.T) {
		lab := lab.with(t)
		before := lab.Snapshot()
		conn := dialProxy(t, lab.Lab)
		target := lab.web.HTTP.String()
		fmt.Fprintf(conn, "GET http://%s/ws HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", target, target)
		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		seen := netlab.MustSeen(t, r)
		ping := strings.Repeat("ping over the upgraded connection ", 1000)
		fmt.Fprint(conn, ping)
		got := make([]byte, len(ping))
		if _, err := io.ReadFull(r, got); err != nil || string(got) != ping {
			t.Errorf("echo %.40q, %v", got, err)
		}
		checkPinned(t, before, flow{seen: seen.Addr(), sent: len(ping)}, netlab.Ens160, netlab.Ens33)
	})
}

// TestServeRefusesOpenProxy: a non-loopback listener without users or
// allow must not start.
func TestServeRefusesOpenProxy(t *testing.T) {
	lab := netlab.New(t)
	path := writeConfig(t, "listen: [{addr: \"0.0.0.0:1080\"}]\n")
	res := nicproxy(t, lab, "run", "-c", path)
	if res.code != 2 {
		t.Errorf("exit %d, want 2", res.code)
	}
	want := path + `:1:17: listen[0].addr: 0.0.0.0:1080 is not a loopback address; set users or allow so it is not an open proxy`
	if !strings.Contains(res.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
	}
	res = nicproxy(t, lab, "-l", "0.0.0.0:1080")
	if res.code != 2 || !strings.Contains(res.stderr, "not a loopback address") {
		t.Errorf("-l 0.0.0.0:1080 without users: exit %d, stderr %s", res.code, res.stderr)
	}
}
