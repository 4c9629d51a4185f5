package bind

import (
	"context"
	"errors"
	"net"
	"testing"
)

// zeroLinks answers every lookup with the zero Link and no error: a broken
// Links implementation must not turn into an unpinned dial.
type zeroLinks struct{}

func (zeroLinks) Link(string) (Link, error) { return Link{}, nil }

// TestNoDialWithoutAPin: each way a dial could reach connect(2) without a
// NIC to pin to (the zero Checked, another Dialer's Checked, a Links that
// returns nothing, an empty name or index given to the pin itself) fails
// with ErrNICMissing, against a listener that would otherwise accept.
func TestNoDialWithoutAPin(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	ctx := context.Background()
	lo := NewDialer("lo", Options{}, nil)
	other := NewDialer("lo", Options{}, nil)
	otherChecked, err := other.Check("tcp", addr)
	if err != nil {
		t.Fatalf("check lo: %v", err)
	}

	for _, tc := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"zero Checked", func() (net.Conn, error) { return lo.DialChecked(ctx, Checked{}, "tcp", addr) }},
		{"another dialer's Checked", func() (net.Conn, error) { return lo.DialChecked(ctx, otherChecked, "tcp", addr) }},
		{"Links answering the zero Link", func() (net.Conn, error) {
			return NewDialer("lo", Options{}, zeroLinks{}).DialContext(ctx, "tcp", addr)
		}},
		{"pin with an empty name", func() (net.Conn, error) {
			return (&net.Dialer{Control: pinToInterface("", 1)}).DialContext(ctx, "tcp", addr)
		}},
		{"pin with index 0", func() (net.Conn, error) {
			return (&net.Dialer{Control: pinToInterface("lo", 0)}).DialContext(ctx, "tcp", addr)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tc.dial()
			if err == nil {
				conn.Close()
				t.Fatal("dial succeeded unpinned")
			}
			if !errors.Is(err, ErrNICMissing) {
				t.Fatalf("err = %v, want ErrNICMissing", err)
			}
		})
	}
	// The same listener is reachable through a properly checked dial, so
	// the failures above are the guard's, not the listener's.
	conn, err := lo.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("checked dial through lo: %v", err)
	}
	conn.Close()
}
