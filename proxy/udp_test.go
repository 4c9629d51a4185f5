package proxy

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
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
