package loopback

import (
	"io"
	"net"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTCPPair(t *testing.T) {
	dialed, accepted := TCPPair(t)
	if dialed.LocalAddr().String() != accepted.RemoteAddr().String() {
		t.Fatalf("not one connection: %v -> %v, accepted %v <- %v",
			dialed.LocalAddr(), dialed.RemoteAddr(), accepted.LocalAddr(), accepted.RemoteAddr())
	}
	if _, err := dialed.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(accepted, got); err != nil || string(got) != "ping" {
		t.Errorf("read %q, %v", got, err)
	}
}

// TestEcho: bytes come back, and once the subtest's cleanup has run no
// goroutine of the server is left (goleak, in TestMain).
func TestEcho(t *testing.T) {
	t.Run("echo", func(t *testing.T) {
		addr := Echo(t)
		c, err := net.Dial("tcp4", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 5)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
			t.Errorf("echo %q, %v", got, err)
		}
	})
}
