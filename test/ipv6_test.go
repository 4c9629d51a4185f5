package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// TestIPv6Pinned: with IPv6 on both NICs (same /64, metrics 100 and 101),
// a bound IPv6 dial and a flow through nicproxy to an IPv6 destination
// leave through ens160 with ens33 silent, as IPv4 does.
func TestIPv6Pinned(t *testing.T) {
	lab := newServingLab(t)
	lab.EnableIPv6()
	echo := lab.StartEchoOn(netlab.Server6)
	payload := strings.Repeat("v6 ", 20000)

	check := func(t *testing.T, seenAddr string, before netlab.Snapshot) {
		t.Helper()
		if !strings.HasPrefix(seenAddr, "["+netlab.Ens160.Addr6.String()+"]:") {
			t.Errorf("server saw %s, want ens160's %v", seenAddr, netlab.Ens160.Addr6)
		}
		if tx := before.TxSince("ens160"); tx < uint64(len(payload)) {
			t.Errorf("ens160 sent %d bytes, want at least %d", tx, len(payload))
		}
		if tx := before.TxSince("ens33"); tx != 0 {
			t.Errorf("ens33 sent %d bytes, want 0", tx)
		}
	}
	exchange := func(conn io.ReadWriter) (string, error) {
		r := bufio.NewReader(conn)
		seen, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if _, err := io.WriteString(conn, payload); err != nil {
			return "", err
		}
		// Half-close and read to EOF, so the whole TCP exchange, FINs and
		// last ACK included, is over before the counters are read.
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			if err := cw.CloseWrite(); err != nil {
				return "", err
			}
		}
		got, err := io.ReadAll(r)
		if err != nil || string(got) != payload {
			return "", fmt.Errorf("echo: %d bytes, %v", len(got), err)
		}
		return strings.TrimSpace(seen), nil
	}

	// dialExchange dials the echo server from the host namespace and runs
	// one exchange, returning the address the server saw.
	dialExchange := func(t *testing.T, dial dialer) string {
		t.Helper()
		var seen string
		err := lab.InHost(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := dial(ctx, "tcp", echo.TCP.String())
			if err != nil {
				return err
			}
			defer conn.Close()
			seen, err = exchange(conn)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return seen
	}

	t.Run("unpinned dial follows the lowest metric", func(t *testing.T) {
		lab := lab.with(t)
		before := lab.Snapshot()
		seen := dialExchange(t, unpinned)
		if !strings.HasPrefix(seen, "["+netlab.Ens33.Addr6.String()+"]:") || before.TxSince("ens160") != 0 {
			t.Errorf("unpinned: server saw %s, ens160 sent %d", seen, before.TxSince("ens160"))
		}
	})
	t.Run("bound dial", func(t *testing.T) {
		lab := lab.with(t)
		before := lab.Snapshot()
		check(t, dialExchange(t, pinnedTo("ens160")), before)
	})
	t.Run("through nicproxy", func(t *testing.T) {
		lab := lab.with(t)
		lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-i", "ens160", "-l", "127.0.0.1:1080")
		before := lab.Snapshot()
		conn := dialProxy(t, lab.Lab)
		if rep, err := socks5Dial(conn, "", "", netlab.Server6.String(), echo.TCP.Port()); err != nil || rep != 0 {
			t.Fatalf("connect: %#x %v", rep, err)
		}
		seen, err := exchange(conn)
		if err != nil {
			t.Fatal(err)
		}
		check(t, seen, before)
	})
}
