package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// countingListener counts the bytes an origin reads from its clients.
type countingListener struct {
	net.Listener
	read *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, read: l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

// startOrigin serves /reject (413 without reading the body) and /upload
// (reads it) on the lab's server address, counting the bytes it reads.
func startOrigin(t *testing.T, lab *netlab.Lab) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	ln := lab.With(t).ListenUpstream(netlab.Server)
	read := new(atomic.Int64)
	mux := http.NewServeMux()
	mux.HandleFunc("/reject", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d\n", n)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(countingListener{Listener: ln, read: read}) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).AddrPort(), read
}

// TestHostileHTTP: each HTTP detail answered as RFC 9110 and 9112 say.
func TestHostileHTTP(t *testing.T) {
	h := startHostile(t, `
admin: {addr: "127.0.0.1:9090"}
default: ens160
`)
	origin, originRead := startOrigin(t, h.Lab)
	h.normalClient(t, "http://127.0.0.1:1080")
	base := h.usage(t)
	web := h.web.HTTP

	t.Run("Content-Length with Transfer-Encoding closes the connection", func(t *testing.T) {
		conn := dialProxy(t, h.Lab)
		fmt.Fprintf(conn, "POST http://%s/echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"0\r\n\r\nGET http://%s/whoami HTTP/1.1\r\nHost: %s\r\n\r\n", web, web, web, web)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if !resp.Close {
			t.Error("the response does not say Connection: close")
		}
		if second, err := http.ReadResponse(br, nil); err == nil {
			t.Errorf("the bytes after the chunked body were served as a request: %s", second.Status)
		}
	})

	t.Run("TRACE and OPTIONS with Max-Forwards: 0 are answered by the proxy", func(t *testing.T) {
		before := originRead.Load()
		for _, method := range []string{"TRACE", "OPTIONS"} {
			conn := dialProxy(t, h.Lab)
			fmt.Fprintf(conn, "%s http://%s/upload HTTP/1.1\r\nHost: %s\r\nMax-Forwards: 0\r\nCookie: secret=1\r\n\r\n", method, origin, origin)
			resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode != http.StatusOK:
				t.Errorf("%s: %s", method, resp.Status)
			case method == "TRACE" && (resp.Header.Get("Content-Type") != "message/http" || !strings.HasPrefix(string(body), "TRACE ") || strings.Contains(string(body), "secret")):
				t.Errorf("TRACE echo (%s):\n%s", resp.Header.Get("Content-Type"), body)
			case method == "OPTIONS" && resp.Header.Get("Allow") == "":
				t.Errorf("OPTIONS answer has no Allow")
			}
		}
		if n := originRead.Load() - before; n != 0 {
			t.Errorf("the origin read %d bytes; TRACE and OPTIONS at Max-Forwards: 0 must stop at the proxy", n)
		}
	})

	t.Run("CONNECT without a port or with a path is 400", func(t *testing.T) {
		for _, req := range []string{
			"CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
			fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", netlab.Server, netlab.Server),
			fmt.Sprintf("CONNECT /x HTTP/1.1\r\nHost: %s\r\n\r\n", web),
		} {
			conn := dialProxy(t, h.Lab)
			io.WriteString(conn, req)
			resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%q: %v %v, want 400", strings.SplitN(req, "\r\n", 2)[0], resp, err)
			}
		}
	})

	t.Run("one 100 Continue; an origin's 413 stops the upload", func(t *testing.T) {
		const size = 64 << 10
		body := strings.Repeat("u", size)
		for _, tt := range []struct {
			path      string
			status    int
			continues int
		}{{"/upload", http.StatusOK, 1}, {"/reject", http.StatusRequestEntityTooLarge, 0}} {
			before := originRead.Load()
			conn := dialProxy(t, h.Lab)
			fmt.Fprintf(conn, "POST http://%s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", origin, tt.path, origin, size)
			br := bufio.NewReader(conn)
			continues := 0
			var final *http.Response
			for final == nil {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("%s: %v", tt.path, err)
				}
				if resp.StatusCode == http.StatusContinue {
					continues++
					io.WriteString(conn, body) // as curl does, on the 100
					continue
				}
				final = resp
			}
			io.Copy(io.Discard, final.Body)
			final.Body.Close()
			// A second 100 would sit in the stream before the final answer
			// only if sent late; none may follow it either.
			if final.StatusCode != tt.status || continues != tt.continues {
				t.Errorf("%s: %s after %d × 100 Continue, want %d after %d", tt.path, final.Status, continues, tt.status, tt.continues)
			}
			read := originRead.Load() - before
			if tt.status == http.StatusRequestEntityTooLarge && read >= size {
				t.Errorf("the origin answered 413 and still read %d bytes", read)
			}
			if tt.status == http.StatusOK && read < size {
				t.Errorf("the origin read %d bytes of a %d-byte upload", read, size)
			}
		}
	})
	h.backToBaseline(t, base)
	h.normalClient(t, "socks5h://127.0.0.1:1080")
}

// TestHostileBodyPause: a client that stops in the middle of its request
// body is cut after timeouts.body (nginx's client_body_timeout) with 408,
// and its connection closed; it used to be held for timeouts.idle (5m).
func TestHostileBodyPause(t *testing.T) {
	h := startHostile(t, `
admin: {addr: "127.0.0.1:9090"}
default: ens160
timeouts: {body: 300ms}
`)
	origin, originRead := startOrigin(t, h.Lab)
	base := h.usage(t)
	before := h.Snapshot()
	conn := dialProxy(t, h.Lab)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(conn, "POST http://%s/upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\n%s", origin, origin, strings.Repeat("b", 100))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the paused body got no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Errorf("%s (close %v, %q), want 408 and the connection closed", resp.Status, resp.Close, body)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the 408: %v, want EOF", err)
	}
	// The part of the body that came went to the origin through ens160.
	if n := originRead.Load(); n == 0 {
		t.Error("the origin read nothing")
	}
	checkCounters(t, before, 100, netlab.Ens160, netlab.Ens33)
	h.backToBaseline(t, base)
	h.normalClient(t, "http://127.0.0.1:1080")
}
