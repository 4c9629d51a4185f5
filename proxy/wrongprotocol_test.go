package proxy

import (
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"nicproxy/config"
)

// TestWrongProtocolAnsweredAtOnce: a port that serves one protocol answers
// a client speaking another with a refusal in the client's own protocol
// and closes, instead of waiting out the handshake timeout (an hour here:
// before the fix each exchange below ran into the client's deadline), and
// logs each such client once, with the reason.
func TestWrongProtocolAnsweredAtOnce(t *testing.T) {
	cfg, err := config.Parse("test.yaml", []byte(`
listen:
  - {addr: "127.0.0.1:1080", protocol: socks5}
  - {addr: "127.0.0.1:1081", protocol: http}
default: eth0
timeouts: {handshake: 1h}
`), config.Options{Interfaces: []string{"eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	// Any free ports; two loopback addresses keep the listeners apart.
	cfg.Listeners[0].Addr = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Listeners[1].Addr = netip.MustParseAddrPort("127.0.0.2:0")
	core, logs := observer.New(zap.InfoLevel)
	srv, cancel, done := serveConfig(t, cfg, zap.New(core))
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	socks5Port, httpPort := srv.Addrs()[0], srv.Addrs()[1]

	tests := []struct {
		name   string
		port   netip.AddrPort
		send   string
		answer string
		reason string
	}{
		{"HTTP on a socks5 port", socks5Port, "GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
			"\x05\xff", "wrong protocol: a http client on a socks5 listener"},
		{"SOCKS4 on a socks5 port", socks5Port, "\x04\x01\x00\x50\x7f\x00\x00\x01\x00",
			"\x00\x5b\x00\x00\x00\x00\x00\x00", "wrong protocol: a socks4 client on a socks5 listener"},
		{"SOCKS5 on an http port", httpPort, "\x05\x01\x00",
			string(badRequestResponse), "wrong protocol: a socks5 client on a http listener"},
		{"SOCKS4 on an http port", httpPort, "\x04\x01\x00\x50\x7f\x00\x00\x01\x00",
			string(badRequestResponse), "wrong protocol: a socks4 client on a http listener"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", tt.port.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.WriteString(conn, tt.send); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(conn) // to the proxy's close
			if err != nil || string(got) != tt.answer {
				t.Fatalf("answer %q, %v; want %q and a close", got, err, tt.answer)
			}
			conn.Close()
			// The proxy logs after its side is closed: wait for the line.
			eventually(t, 10*time.Second, func() bool { return countReason(logs, tt.reason) > 0 },
				func() string { return "no access line with reason " + tt.reason })
			if n := countReason(logs, tt.reason); n != 1 {
				t.Errorf("%d access lines with reason %q, want 1", n, tt.reason)
			}
		})
	}
}

// countReason counts the access lines whose result is wrong-protocol and
// whose reason is reason.
func countReason(logs *observer.ObservedLogs, reason string) int {
	n := 0
	for _, e := range logs.FilterMessage("access").All() {
		fields := e.ContextMap()
		if fields["result"] == "wrong-protocol" && fields["reason"] == reason {
			n++
		}
	}
	return n
}
