package test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// Hostile origins (issue 18): servers a client sends the proxy to, which
// answer to make it hold memory or spin. Each ends in 502 and costs the
// proxy less than 10 MiB of RSS.

// hostileOrigin serves each connection with answer, on a fresh port of
// the lab's server address, after reading the request head; it records
// the client addresses it saw.
type hostileOrigin struct {
	addr netip.AddrPort
	mu   sync.Mutex
	seen []netip.Addr
}

func startHostileOrigin(t *testing.T, lab *netlab.Lab, answer func(net.Conn)) *hostileOrigin {
	t.Helper()
	ln := lab.With(t).ListenUpstream(netlab.Server)
	o := &hostileOrigin{addr: ln.Addr().(*net.TCPAddr).AddrPort()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			o.mu.Lock()
			o.seen = append(o.seen, conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())
			o.mu.Unlock()
			wg.Go(func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
				if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
					return
				}
				answer(conn)
			})
		}
	})
	return o
}

func (o *hostileOrigin) clients() []netip.Addr {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]netip.Addr(nil), o.seen...)
}

// endless writes chunk until the proxy stops reading or limit bytes have
// gone (the bound on an endless header keeps an unfixed proxy from taking
// the machine down; interim responses are sent for as long as the proxy
// takes them, up to the origin's deadline).
func endless(conn net.Conn, head string, chunk []byte, limit int) {
	if _, err := io.WriteString(conn, head); err != nil {
		return
	}
	for sent := 0; sent < limit; sent += len(chunk) {
		if _, err := conn.Write(chunk); err != nil {
			return
		}
	}
}

// TestHostileOrigin: an origin that answers 101 and then one endless
// header line, or that sends 1xx responses for ever, or an endless header
// on a plain response, gets the client a 502 and the connection closed;
// the proxy's peak RSS rises by less than 10 MiB over all of them.
func TestHostileOrigin(t *testing.T) {
	h, base, rssBefore := startMeasured(t)

	line := bytes.Repeat([]byte("a"), 32<<10)
	continues := bytes.Repeat([]byte("HTTP/1.1 100 Continue\r\n\r\n"), 1024)
	hints := bytes.Repeat([]byte("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"), 512)
	const limit, forever = 256 << 20, 1 << 62
	upgrade := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for _, tt := range []struct {
		name, headers string
		answer        func(net.Conn)
	}{
		{"101 then an endless header line", upgrade, func(c net.Conn) {
			endless(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Endless: ", line, limit)
		}},
		{"endless 100 Continue on an upgrade", upgrade, func(c net.Conn) { endless(c, "", continues, forever) }},
		{"endless 103 Early Hints on a GET", "", func(c net.Conn) { endless(c, "", hints, forever) }},
		{"an endless header line on a GET", "", func(c net.Conn) {
			endless(c, "HTTP/1.1 200 OK\r\nX-Endless: ", line, limit)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			origin := startHostileOrigin(t, h.Lab, tt.answer)
			conn := dialProxy(t, h.Lab)
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
			fmt.Fprintf(conn, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n%s\r\n", origin.addr, origin.addr, tt.headers)
			br := bufio.NewReader(conn)
			var final *http.Response
			interim := 0
			for final == nil {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("after %d interim responses: %v", interim, err)
				}
				if resp.StatusCode < 200 {
					interim++
					continue
				}
				final = resp
			}
			body, _ := io.ReadAll(final.Body)
			if final.StatusCode != http.StatusBadGateway {
				t.Errorf("%s after %d interim responses (%q), want 502", final.Status, interim, body)
			}
			if !final.Close {
				t.Error("the 502 does not close the connection")
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("after the 502: %v, want the connection closed (EOF)", err)
			}
			for _, seen := range origin.clients() {
				if seen != netlab.Ens160.Addr {
					t.Errorf("the origin saw %v, want ens160's %v", seen, netlab.Ens160.Addr)
				}
			}
		})
	}
	peak := h.memory(t, "VmHWM")
	t.Logf("RSS %d KiB before, peak %d KiB after the hostile origins", rssBefore>>10, peak>>10)
	if rise := peak - rssBefore; rise >= 10<<20 {
		t.Errorf("peak RSS rose by %d KiB, want under 10 MiB", rise>>10)
	}
	h.backToBaseline(t, base)
	h.normalClient(t, "socks5h://127.0.0.1:1080")
}

// TestHostileHeaderCount: 1,000 requests of 9,000 empty headers each,
// held open. They fit in limits.max_header_bytes, and each used to cost
// about 2 MB (net/http's header map, copied by ReverseProxy) while its
// origin held it; over limits.max_headers each is now refused with 431
// before it is parsed, and the proxy's peak RSS rises by under 200 MiB.
func TestHostileHeaderCount(t *testing.T) {
	const clients, headers = 1000, 9000
	h, base, rssBefore := startMeasured(t)

	// The origin reads each request and never answers, as a slow one
	// would: a request it gets is held by the proxy.
	held := make(chan struct{}, clients)
	release := make(chan struct{})
	origin := startHostileOrigin(t, h.Lab, func(net.Conn) {
		held <- struct{}{}
		<-release
	})
	defer close(release)

	var req strings.Builder
	fmt.Fprintf(&req, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n", origin.addr, origin.addr)
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	for i := range headers { // distinct names: "a0b:", each its own map entry
		req.WriteString(string([]byte{digits[i/36/36%36], digits[i/36%36], digits[i%36]}) + ":\r\n")
	}
	req.WriteString("\r\n")
	payload := req.String()

	answered := make(chan string, clients)
	conns := make([]net.Conn, 0, clients)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range clients {
		conn, err := h.DialHost("tcp", "127.0.0.1:1080")
		if err != nil {
			t.Fatalf("client %d: %v", len(conns), err)
		}
		conns = append(conns, conn)
		go func() {
			_ = conn.SetDeadline(time.Now().Add(120 * time.Second))
			_, _ = io.WriteString(conn, payload)
			status, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil {
				status = "error: " + err.Error()
			}
			answered <- strings.TrimSpace(status)
		}()
	}
	statuses := map[string]int{}
	for done := 0; done < clients; done++ {
		select {
		case s := <-answered:
			statuses[s]++
		case <-held:
			statuses["held by the origin"]++
		case <-time.After(120 * time.Second):
			t.Fatalf("%d of %d requests neither answered nor held: %v", clients-done, clients, statuses)
		}
	}
	peak := h.memory(t, "VmHWM")
	t.Logf("RSS %d MiB before, peak %d MiB with %d requests of %d headers; %v", rssBefore>>20, peak>>20, clients, headers, statuses)
	if rise := peak - rssBefore; rise >= 200<<20 {
		t.Errorf("peak RSS rose by %d MiB, want under 200 MiB", rise>>20)
	}
	if n := statuses["HTTP/1.1 431 Request Header Fields Too Large"]; n != clients {
		t.Errorf("%d of %d requests got 431, want all: %v", n, clients, statuses)
	}
	for _, c := range conns {
		c.Close()
	}
	// A CONNECT is read on a path of its own: its lines are counted too.
	conn := dialProxy(t, h.Lab)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	_, _ = io.WriteString(conn, "CONNECT "+origin.addr.String()+strings.TrimPrefix(payload, "GET http://"+origin.addr.String()+"/"))
	if status, err := bufio.NewReader(conn).ReadString('\n'); err != nil || strings.TrimSpace(status) != "HTTP/1.1 431 Request Header Fields Too Large" {
		t.Errorf("a CONNECT of %d headers: %q %v, want 431", headers, status, err)
	}
	h.backToBaseline(t, base)
	h.normalClient(t, "socks5h://127.0.0.1:1080")
}
