package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"testing"
	"time"

	socks5 "github.com/things-go/go-socks5"

	"nicproxy/config"
)

// FuzzHTTPRequest reads arbitrary bytes as net/http's server does and runs
// nicproxy's own HTTP checks on the result. Besides not panicking, the
// framing scan must agree with the header as textproto reads it: a request
// with both Content-Length and Transfer-Encoding is always caught.
func FuzzHTTPRequest(f *testing.F) {
	for _, seed := range []string{
		"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\n\r\n",
		"TRACE http://a/ HTTP/1.1\r\nHost: a\r\nMax-Forwards: 0\r\nVia: 1.1 nicproxy\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var scan framingScan
		scan.start()
		scan.feed(data)
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		viaLoop(r.Header)
		if r.Method == http.MethodConnect {
			if host, _, ok := connectTarget(r); ok {
				normalizeHost(host)
			}
		} else if r.URL.IsAbs() {
			if host, _, err := splitHostPort(r.URL.Host, 80); err == nil {
				normalizeHost(host)
			}
		}
		// What the header held before net/http dropped Content-Length.
		_, rest, _ := bytes.Cut(data, []byte("\n"))
		raw, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(rest))).ReadMIMEHeader()
		if err != nil {
			return
		}
		_, cl := raw["Content-Length"]
		_, te := raw["Transfer-Encoding"]
		if scanned, both := scan.take(); scanned && both != (cl && te) {
			t.Errorf("framing scan says both=%v; the header has Content-Length %v, Transfer-Encoding %v", both, cl, te)
		}
	})
}

// FuzzSOCKS5 runs the SOCKS5 greeting, authentication and request on
// arbitrary bytes, with a user configured. Besides not panicking, a
// request may reach the connect step only after the right password.
func FuzzSOCKS5(f *testing.F) {
	for _, seed := range [][]byte{
		{0x05, 0x01, 0x02, 0x01, 5, 'a', 'l', 'i', 'c', 'e', 2, 'p', 'w', 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 80},
		{0x05, 0x01, 0x02, 0x01, 5, 'a', 'l', 'i', 'c', 'e', 2, 'p', 'x', 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 80},
		{0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x03, 9, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't', 0, 80},
		{0x05, 0x02, 0x00, 0x02, 0x01, 0, 0, 0x05, 0x03, 0x00, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 53},
	} {
		f.Add(seed)
	}
	guard := newAuthGuard(nil)
	guard.sleep = func(time.Duration) {} // no throttling between inputs
	u := newUsers([]config.User{{Name: "alice", Password: "pw"}}, guard, nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		var reached []string
		lib := socks5.NewServer(
			socks5.WithAuthMethods([]socks5.Authenticator{userPass{u}}),
			socks5.WithResolver(noResolver{}),
			socks5.WithConnectHandle(func(_ context.Context, w io.Writer, req *socks5.Request) error {
				user := ""
				if req.AuthContext != nil {
					user = req.AuthContext.Payload["username"]
				}
				reached = append(reached, user)
				host := req.RawDestAddr.FQDN
				if host == "" {
					host = req.RawDestAddr.IP.String()
				}
				normalizeHost(host)
				return nil
			}),
			socks5.WithBindHandle(unsupportedCommand),
			socks5.WithAssociateHandle(unsupportedCommand),
		)
		client, server := net.Pipe()
		go func() {
			_, _ = client.Write(data)
			client.Close()
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = lib.ServeConn(server)
		server.Close()
		for _, user := range reached {
			// alice is the only user: reaching connect as her takes her
			// password.
			if user != "alice" {
				t.Errorf("the connect step was reached as %q", user)
			}
		}
	})
}
