package test

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"nicproxy/bind"
	"nicproxy/test/netlab"
)

// TestPinnedExtras: a NIC's source address and SO_MARK apply on top of the
// pin, and a source of the other family leaves the socket pinned as is.
func TestPinnedExtras(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	second := netip.MustParseAddr("192.0.2.49")
	lab.AddAddress("ens160", second)
	tests := []struct {
		name     string
		opts     bind.Options
		wantSeen netip.Addr
		wantMark int
	}{
		{"source address", bind.Options{Source: second}, second, 0},
		{"mark", bind.Options{Mark: 0x100}, netlab.Ens160.Addr, 0x100},
		{"source of the other family is skipped", bind.Options{Source: netip.MustParseAddr("2001:db8::48")}, netlab.Ens160.Addr, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lab := lab.With(t)
			before := lab.Snapshot()
			var seen netip.AddrPort
			var mark int
			err := lab.InHost(func() error {
				conn, err := bind.NewDialer("ens160", tt.opts, nil).DialContext(context.Background(), "tcp", echo.TCP.String())
				if err != nil {
					return err
				}
				defer conn.Close()
				raw, err := conn.(*net.TCPConn).SyscallConn()
				if err != nil {
					return err
				}
				var markErr error
				if err := raw.Control(func(fd uintptr) {
					mark, markErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK)
				}); err != nil {
					return err
				}
				if markErr != nil {
					return markErr
				}
				seen, err = netlab.ReadSeen(bufio.NewReader(conn))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if seen.Addr() != tt.wantSeen {
				t.Errorf("server saw %v, want %v", seen.Addr(), tt.wantSeen)
			}
			if mark != tt.wantMark {
				t.Errorf("SO_MARK %#x, want %#x", mark, tt.wantMark)
			}
			if tx := before.TxSince("ens33"); tx != 0 {
				t.Errorf("ens33 sent %d bytes, want 0", tx)
			}
		})
	}
}
