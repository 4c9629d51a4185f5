package test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"nicproxy/bind"
	"nicproxy/test/netlab"
)

// dialer dials one flow inside the lab's host namespace.
type dialer func(ctx context.Context, network, address string) (net.Conn, error)

func unpinned(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

func pinnedTo(nic string) dialer {
	return bind.NewDialer(nic, bind.Options{}, nil).DialContext
}

// TestPinnedTCP proves the core claim twice over: the server sees the pinned
// NIC's address, and only that NIC's tx counter moves.
func TestPinnedTCP(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()

	tests := []struct {
		name   string
		dial   dialer
		want   netlab.NIC
		silent netlab.NIC
	}{
		{"unpinned dial follows the lowest metric", unpinned, netlab.Ens33, netlab.Ens160},
		{"dial pinned to ens160", pinnedTo("ens160"), netlab.Ens160, netlab.Ens33},
		{"dial pinned to ens33", pinnedTo("ens33"), netlab.Ens33, netlab.Ens160},
	}
	payload := strings.Repeat("nicproxy pins this flow. ", 4096) // ~100 KiB
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lab := lab.With(t)
			before := lab.Snapshot()
			seen := dialExchange(t, lab, tt.dial, echo.TCP, payload)
			checkPinned(t, before, flow{seen: seen.Addr(), sent: len(payload)}, tt.want, tt.silent)
		})
	}
}

// dialExchange dials the echo server at echo from the host namespace and
// runs one echoExchange, returning the address the server saw.
func dialExchange(t *testing.T, lab *netlab.Lab, dial dialer, echo netip.AddrPort, payload string) netip.AddrPort {
	t.Helper()
	var seen netip.AddrPort
	err := lab.InHost(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := dial(ctx, "tcp", echo.String())
		if err != nil {
			return err
		}
		defer conn.Close()
		seen, err = echoExchange(conn, payload)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

// echoExchange runs one exchange with a netlab Echo server over conn (a
// direct connection or a tunnel): it reads the address the server saw,
// sends payload, half-closes and reads the echo to EOF, so the whole TCP
// exchange, FINs and last ACK included, is over before counters are read.
func echoExchange(conn net.Conn, payload string) (netip.AddrPort, error) {
	r := bufio.NewReader(conn)
	seen, err := netlab.ReadSeen(r)
	if err != nil {
		return seen, err
	}
	if _, err := io.WriteString(conn, payload); err != nil {
		return seen, err
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return seen, err
		}
	}
	got, err := io.ReadAll(r)
	if err == nil && string(got) != payload {
		err = fmt.Errorf("echo returned %d bytes, want the %d-byte payload", len(got), len(payload))
	}
	return seen, err
}

// TestPinnedUDP does the same for connected and unconnected UDP sockets.
func TestPinnedUDP(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	payload := []byte(strings.Repeat("u", 1200))

	exchange := func(t *testing.T, send func() (string, error), want, silent netlab.NIC) {
		t.Helper()
		before := lab.With(t).Snapshot()
		var reply string
		err := lab.InHost(func() (err error) {
			reply, err = send()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		seen, _, _ := strings.Cut(reply, " ")
		if got := netip.MustParseAddrPort(seen).Addr(); got != want.Addr {
			t.Errorf("server saw %v, want %s's address %v", got, want.Name, want.Addr)
		}
		if tx := before.TxSince(want.Name); tx < uint64(len(payload)) {
			t.Errorf("%s sent %d bytes, want at least %d", want.Name, tx, len(payload))
		}
		if tx := before.TxSince(silent.Name); tx != 0 {
			t.Errorf("%s sent %d bytes, want 0", silent.Name, tx)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("unpinned", func(t *testing.T) {
		exchange(t, func() (string, error) {
			conn, err := unpinned(ctx, "udp", echo.UDP.String())
			if err != nil {
				return "", err
			}
			return udpRoundTrip(conn, payload)
		}, netlab.Ens33, netlab.Ens160)
	})
	t.Run("connected socket pinned to ens160", func(t *testing.T) {
		exchange(t, func() (string, error) {
			conn, err := pinnedTo("ens160")(ctx, "udp", echo.UDP.String())
			if err != nil {
				return "", err
			}
			return udpRoundTrip(conn, payload)
		}, netlab.Ens160, netlab.Ens33)
	})
	t.Run("unconnected socket pinned to ens160", func(t *testing.T) {
		exchange(t, func() (string, error) {
			pc, err := bind.NewDialer("ens160", bind.Options{}, nil).ListenPacket(ctx, "udp4", ":0")
			if err != nil {
				return "", err
			}
			defer pc.Close()
			if _, err := pc.WriteTo(payload, net.UDPAddrFromAddrPort(echo.UDP)); err != nil {
				return "", err
			}
			_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64<<10)
			n, _, err := pc.ReadFrom(buf)
			return string(buf[:n]), err
		}, netlab.Ens160, netlab.Ens33)
	})
}

func udpRoundTrip(conn net.Conn, payload []byte) (string, error) {
	defer conn.Close()
	if _, err := conn.Write(payload); err != nil {
		return "", err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	return string(buf[:n]), err
}

// TestPinnedDialErrors checks that each failure is told apart, fails
// without waiting (a failure that waited would end in the context's
// timeout, which is another error), and never falls back to another NIC.
func TestPinnedDialErrors(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	closedPort := netip.AddrPortFrom(netlab.Server, 9).String() // nothing listens there
	lab.SetDown("ens160")

	tests := []struct {
		name    string
		nic     string
		network string
		address string
		timeout time.Duration
		want    error
	}{
		{"NIC that does not exist", "ens999", "tcp", echo.TCP.String(), 5 * time.Second, bind.ErrNICMissing},
		{"NIC that does not exist, UDP", "ens999", "udp", echo.UDP.String(), 5 * time.Second, bind.ErrNICMissing},
		{"NIC that is down", "ens160", "tcp", echo.TCP.String(), 5 * time.Second, bind.ErrNICDown},
		{"NIC that is down, UDP", "ens160", "udp", echo.UDP.String(), 5 * time.Second, bind.ErrNICDown},
		{"refused port", "ens33", "tcp", closedPort, 5 * time.Second, bind.ErrRefused},
		{"black-holed address", "ens33", "tcp", netip.AddrPortFrom(netlab.Blackhole, 80).String(), 300 * time.Millisecond, bind.ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lab := lab.With(t)
			before := lab.Snapshot()
			err := lab.InHost(func() error {
				ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
				defer cancel()
				conn, err := pinnedTo(tt.nic)(ctx, tt.network, tt.address)
				if err == nil {
					conn.Close()
				}
				return err
			})
			if !errors.Is(err, tt.want) {
				t.Fatalf("dial via %s: got %v, want an error that is %v", tt.nic, err, tt.want)
			}
			var dialErr *bind.DialError
			if !errors.As(err, &dialErr) || dialErr.NIC != tt.nic {
				t.Errorf("error %v does not name NIC %s", err, tt.nic)
			}
			if tt.want == bind.ErrNICMissing || tt.want == bind.ErrNICDown {
				// Fail closed: nothing may leave through the other NIC instead.
				if tx := before.TxSince("ens33"); tx != 0 {
					t.Errorf("ens33 sent %d bytes for a dial that should have failed closed", tx)
				}
			}
		})
	}
}

// TestPinnedNeverBorrowsARoute removes ens160's default route. Linux then
// treats the destination as on-link for a socket pinned to ens160 (it asks
// the neighbour directly) instead of failing; either way the flow must stay
// on ens160 and never take ens33's route.
func TestPinnedNeverBorrowsARoute(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	if out, err := lab.Command("ip", "route", "del", "default", "dev", "ens160").CombinedOutput(); err != nil {
		t.Fatalf("delete route: %v: %s", err, out)
	}
	before := lab.Snapshot()
	var seen netip.AddrPort
	err := lab.InHost(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		conn, err := pinnedTo("ens160")(ctx, "tcp", echo.TCP.String())
		if err != nil {
			return err
		}
		defer conn.Close()
		seen, err = netlab.ReadSeen(bufio.NewReader(conn))
		return err
	})
	// On this kernel the destination is then on-link through ens160 (the
	// gateway answers ARP for it); a kernel that refuses instead must say
	// there is no route, not fail some other way.
	switch {
	case err == nil:
		if seen.Addr() != netlab.Ens160.Addr {
			t.Errorf("server saw %v, want ens160's %v", seen.Addr(), netlab.Ens160.Addr)
		}
		if tx := before.TxSince("ens160"); tx == 0 {
			t.Error("the flow succeeded but ens160 sent nothing")
		}
	case errors.Is(err, bind.ErrNoRoute), errors.Is(err, bind.ErrUnreachable):
		t.Logf("the kernel refused the dial: %v", err)
	default:
		t.Errorf("dial via ens160 without its route: %v, want success or no route", err)
	}
	if tx := before.TxSince("ens33"); tx != 0 {
		t.Errorf("ens33 sent %d bytes, want 0 (dial result: %v)", tx, err)
	}
}

// claimsUp reports every NIC as up, to take the dialer's fast pre-check out
// of the way and show that the kernel itself refuses a down NIC.
type claimsUp struct{}

func (claimsUp) Link(name string) (bind.Link, error) {
	link, err := bind.SystemLinks{}.Link(name)
	link.Up = true
	return link, err
}

// TestPinnedFailsClosedInKernel dials through a NIC that is down, past the
// pre-check: the pinned socket must fail, not leave through ens33.
func TestPinnedFailsClosedInKernel(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	lab.SetDown("ens160")
	before := lab.Snapshot()
	err := lab.InHost(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn, err := bind.NewDialer("ens160", bind.Options{}, claimsUp{}).DialContext(ctx, "tcp", echo.TCP.String())
		if err == nil {
			conn.Close()
		}
		return err
	})
	// A socket bound to a down NIC has no route: the kernel says so
	// (ENETUNREACH) rather than routing it elsewhere.
	if !errors.Is(err, bind.ErrNoRoute) || !errors.Is(err, syscall.ENETUNREACH) {
		t.Fatalf("dial through a down NIC: %v, want ENETUNREACH classified as ErrNoRoute", err)
	}
	if tx := before.TxSince("ens33"); tx != 0 {
		t.Errorf("ens33 sent %d bytes, want 0", tx)
	}
}
