package sniff

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"nicproxy/internal/loopback"
)

// connPair returns both sides of one loopback TCP connection, closed when
// the test ends.
func connPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	client, server = loopback.TCPPair(t)
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	return client, server
}

func TestPeek(t *testing.T) {
	tests := []struct {
		name  string
		first string
		want  Protocol
	}{
		{"socks5 greeting", "\x05\x01\x00", SOCKS5},
		{"socks4 request", "\x04\x01\x00\x50\x7f\x00\x00\x01\x00", SOCKS4},
		{"http connect", "CONNECT example.com:443 HTTP/1.1\r\n\r\n", HTTP},
		{"http get", "GET http://example.com/ HTTP/1.1\r\n\r\n", HTTP},
		{"tls hello is not ours", "\x16\x03\x01\x00", HTTP},
		{"single byte", "\x05", SOCKS5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := connPair(t)
			if _, err := client.Write([]byte(tt.first)); err != nil {
				t.Fatal(err)
			}
			// Peeking twice gives the same answer: nothing is consumed.
			for range 2 {
				got, _, err := Peek(server, make([]byte, 1))
				if err != nil || got != tt.want {
					t.Fatalf("Peek() = %v, %v; want %v", got, err, tt.want)
				}
			}
			// Every byte, the first included, is still there to read.
			buf := make([]byte, len(tt.first))
			if _, err := io.ReadFull(server, buf); err != nil {
				t.Fatal(err)
			}
			if string(buf) != tt.first {
				t.Errorf("read %q after Peek, want %q", buf, tt.first)
			}
		})
	}
}

// Peek waits in the poller for the first byte rather than failing early.
func TestPeekWaitsForData(t *testing.T) {
	client, server := connPair(t)
	timer := time.AfterFunc(100*time.Millisecond, func() { client.Write([]byte("G")) })
	defer timer.Stop()
	got, _, err := Peek(server, make([]byte, 1))
	if err != nil || got != HTTP {
		t.Fatalf("Peek() = %v, %v; want http", got, err)
	}
}

func TestPeekDeadline(t *testing.T) {
	_, server := connPair(t) // the client never sends
	server.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, _, err := Peek(server, make([]byte, 1))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("Peek() error = %v, want a timeout", err)
	}
}

func TestPeekEOF(t *testing.T) {
	client, server := connPair(t)
	client.Close()
	if _, _, err := Peek(server, make([]byte, 1)); err != io.EOF {
		t.Errorf("Peek() error = %v, want io.EOF", err)
	}
}

func TestPeekReset(t *testing.T) {
	client, server := connPair(t)
	client.SetLinger(0)
	client.Close()
	if _, _, err := Peek(server, make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("Peek() error = %v, want connection reset", err)
	}
}

func TestPeekClosedConn(t *testing.T) {
	_, server := connPair(t)
	server.Close()
	if _, _, err := Peek(server, make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Peek() error = %v, want net.ErrClosed", err)
	}
}

func TestProtocolString(t *testing.T) {
	for p, want := range map[Protocol]string{SOCKS5: "socks5", SOCKS4: "socks4", HTTP: "http", 0: "Protocol(0)"} {
		if got := p.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(p), got, want)
		}
	}
}
