package test

import (
	"net/netip"
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// TestIPv6Pinned: with IPv6 on both NICs (same /64, metrics 100 and 101),
// a bound IPv6 dial and a flow through nicproxy to an IPv6 destination
// leave through ens160 with ens33 silent, as IPv4 does (TestPinnedTCP,
// whose exchange it shares).
func TestIPv6Pinned(t *testing.T) {
	lab := newServingLab(t)
	lab.EnableIPv6()
	echo := lab.StartEchoOn(netlab.Server6)
	payload := strings.Repeat("v6 ", 20000)

	// check proves an IPv6 flow left through ens160: the server saw its
	// IPv6 address, and the counters.
	check := func(t *testing.T, seen netip.AddrPort, before netlab.Snapshot) {
		t.Helper()
		if seen.Addr() != netlab.Ens160.Addr6 {
			t.Errorf("server saw %v, want ens160's %v", seen, netlab.Ens160.Addr6)
		}
		checkCounters(t, before, len(payload), netlab.Ens160, netlab.Ens33)
	}

	t.Run("unpinned dial follows the lowest metric", func(t *testing.T) {
		lab := lab.with(t)
		before := lab.Snapshot()
		seen := dialExchange(t, lab.Lab, unpinned, echo.TCP, payload)
		if seen.Addr() != netlab.Ens33.Addr6 {
			t.Errorf("unpinned: server saw %v, want ens33's %v", seen, netlab.Ens33.Addr6)
		}
		checkCounters(t, before, len(payload), netlab.Ens33, netlab.Ens160)
	})
	t.Run("bound dial", func(t *testing.T) {
		lab := lab.with(t)
		before := lab.Snapshot()
		check(t, dialExchange(t, lab.Lab, pinnedTo("ens160"), echo.TCP, payload), before)
	})
	t.Run("through nicproxy", func(t *testing.T) {
		lab := lab.with(t)
		lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-i", "ens160", "-l", "127.0.0.1:1080")
		before := lab.Snapshot()
		conn := dialProxy(t, lab.Lab)
		if rep, err := socks5Dial(conn, "", "", netlab.Server6.String(), echo.TCP.Port()); err != nil || rep != 0 {
			t.Fatalf("connect: %#x %v", rep, err)
		}
		seen, err := echoExchange(conn, payload)
		if err != nil {
			t.Fatal(err)
		}
		check(t, seen, before)
	})
}
