package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"nicproxy/proxy/socks5udp"
)

// udpEchoServer echoes datagrams on loopback until the test ends.
func udpEchoServer(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Clients that send a datagram and drop their TCP connection at once race
// the association's teardown against the opening of its pinned socket;
// every association must still end, and shutdown must not wait on any.
func TestUDPAssociationsEndWhenClientsVanish(t *testing.T) {
	echo := udpEchoServer(t)
	srv, addr, cancel, done := startServer(t, `
listen: [{addr: "127.0.0.1:1080"}]
default: eth0
timeouts: {shutdown: 2s}
log: {access: false}
`)
	datagram := append([]byte{0, 0, 0, 1}, echo.Addr().AsSlice()...)
	datagram = append(binary.BigEndian.AppendUint16(datagram, echo.Port()), 'x')
	var clients sync.WaitGroup
	for range 8 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Error(err)
				return
			}
			defer udp.Close()
			for range 500 {
				control, err := net.Dial("tcp", addr.String())
				if err != nil {
					continue
				}
				_, _ = control.Write([]byte{0x05, 0x01, 0x00, 0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0, 0})
				reply := make([]byte, 12)
				if _, err := io.ReadFull(control, reply); err == nil {
					relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(reply[6:10])), binary.BigEndian.Uint16(reply[10:12]))
					_, _ = udp.WriteToUDPAddrPort(datagram, relay)
				}
				_ = control.(*net.TCPConn).SetLinger(0)
				control.Close()
			}
		}()
	}
	clients.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for srv.active.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := srv.active.Load(); n != 0 {
		t.Errorf("%d associations still open after every client left", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown hung on associations")
	}
}

// associateUDP asks the server at addr for a UDP relay and returns the
// control connection, the relay's address and a client socket.
func associateUDP(t *testing.T, addr netip.AddrPort) (net.Conn, netip.AddrPort, *net.UDPConn) {
	t.Helper()
	control, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { control.Close() })
	_ = control.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := control.Write([]byte{0x05, 0x01, 0x00, 0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	// The method choice (2 bytes), then the reply (10 bytes).
	reply := make([]byte, 12)
	if _, err := io.ReadFull(control, reply); err != nil || reply[3] != 0x00 {
		t.Fatalf("UDP ASSOCIATE reply %x, %v", reply, err)
	}
	relay := netip.AddrPortFrom(netip.AddrFrom4([4]byte(reply[6:10])), binary.BigEndian.Uint16(reply[10:12]))
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	return control, relay, udp
}

// sendVia sends payload to dest through the relay.
func sendVia(t *testing.T, udp *net.UDPConn, relay, dest netip.AddrPort, payload string) {
	t.Helper()
	if _, err := udp.WriteToUDPAddrPort(append(socks5udp.AppendHeader(nil, dest), payload...), relay); err != nil {
		t.Fatal(err)
	}
}

// exchangeVia sends payload to dest through the relay and waits for the
// reply that carries it back.
func exchangeVia(t *testing.T, udp *net.UDPConn, relay, dest netip.AddrPort, payload string) {
	t.Helper()
	sendVia(t, udp, relay, dest, payload)
	buf := make([]byte, 64<<10)
	_ = udp.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		n, err := udp.Read(buf)
		if err != nil {
			t.Fatalf("no reply to %q through the relay: %v", payload, err)
		}
		if _, got, err := socks5udp.Parse(buf[:n]); err == nil && string(got) == payload {
			return
		}
	}
}

// Past maxDestinations, a datagram to a new destination is refused: it
// never leaves the proxy (it used to be sent, its reply dropped), and the
// association's known destinations keep working.
func TestUDPDestinationsPastTheCapAreRefused(t *testing.T) {
	echo := udpEchoServer(t)
	late, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	_, addr, cancel, done := startServer(t, `
listen: [{addr: "127.0.0.1:1080"}]
default: eth0
log: {access: false}
`)
	control, relay, udp := associateUDP(t, addr)
	defer func() { control.Close(); cancel(); <-done }()
	exchangeVia(t, udp, relay, echo, "first")

	// Fill the cap with loopback destinations nothing listens on, a
	// batch at a time: the echo's reply to a fence proves the relay read
	// every datagram before it (it reads them in order), and a batch
	// fits the relay socket's receive buffer, so none is lost.
	const batch = 100
	port := late.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	for i := 1; i < maxDestinations; i++ {
		sendVia(t, udp, relay, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)}), port), "filler")
		if i%batch == 0 {
			exchangeVia(t, udp, relay, echo, fmt.Sprint("fence ", i))
		}
	}
	exchangeVia(t, udp, relay, echo, "full")

	sendVia(t, udp, relay, late.LocalAddr().(*net.UDPAddr).AddrPort(), "past the cap")
	exchangeVia(t, udp, relay, echo, "known destinations still work")
	_ = late.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := late.ReadFromUDPAddrPort(make([]byte, 100)); err == nil {
		t.Errorf("a datagram to a destination past the cap left the proxy (%d bytes)", n)
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal(err)
	}
}
