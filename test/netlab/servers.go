package netlab

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// ListenUpstream listens for TCP on a fresh port of addr, an address of the
// upstream namespace, for a server a test writes itself. The listener is
// closed when the test ends.
func (l *Lab) ListenUpstream(addr netip.Addr) *net.TCPListener {
	l.t.Helper()
	var ln *net.TCPListener
	if err := l.InUpstream(func() (err error) {
		ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	}); err != nil {
		l.t.Fatalf("listen upstream on %v: %v", addr, err)
	}
	l.t.Cleanup(func() { ln.Close() })
	return ln
}

// Echo is a server in the upstream namespace that tells each client the
// address it saw, then echoes: TCP writes "IP:PORT\n" and copies the stream
// back; UDP answers each datagram with "IP:PORT " and the datagram.
type Echo struct {
	TCP netip.AddrPort
	UDP netip.AddrPort
	wg  sync.WaitGroup
}

// StartEcho starts an Echo server on the lab's Server address and stops it
// when the test ends.
func (l *Lab) StartEcho() *Echo { return l.StartEchoOn(Server) }

// StartEchoOn starts an Echo server on addr, an address of the upstream
// namespace (Server6 after EnableIPv6, say).
func (l *Lab) StartEchoOn(addr netip.Addr) *Echo {
	l.t.Helper()
	tcp, udp := "tcp4", "udp4"
	if addr.Is6() {
		tcp, udp = "tcp6", "udp6"
	}
	var ln *net.TCPListener
	var pc *net.UDPConn
	err := l.InUpstream(func() error {
		var err error
		if ln, err = net.ListenTCP(tcp, &net.TCPAddr{IP: addr.AsSlice()}); err != nil {
			return err
		}
		pc, err = net.ListenUDP(udp, &net.UDPAddr{IP: addr.AsSlice()})
		return err
	})
	if err != nil {
		l.t.Fatalf("start echo server: %v", err)
	}
	e := &Echo{
		TCP: ln.Addr().(*net.TCPAddr).AddrPort(),
		UDP: pc.LocalAddr().(*net.UDPAddr).AddrPort(),
	}
	e.wg.Add(2)
	go e.serveTCP(ln)
	go e.serveUDP(pc)
	l.t.Cleanup(func() {
		ln.Close()
		pc.Close()
		e.wg.Wait()
	})
	return e
}

func (e *Echo) serveTCP(ln *net.TCPListener) {
	defer e.wg.Done()
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		conn, err := ln.AcceptTCP()
		if err != nil {
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			defer conn.Close()
			if _, err := io.WriteString(conn, conn.RemoteAddr().String()+"\n"); err != nil {
				return
			}
			_, _ = io.Copy(conn, conn)
		}()
	}
}

func (e *Echo) serveUDP(pc *net.UDPConn) {
	defer e.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		reply := append([]byte(from.String()+" "), buf[:n]...)
		_, _ = pc.WriteToUDPAddrPort(reply, from)
	}
}

// ReadSeen reads the TCP Echo greeting and returns the client address the
// server saw.
func ReadSeen(r *bufio.Reader) (netip.AddrPort, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.ParseAddrPort(strings.TrimSpace(line))
}

// MustSeen is ReadSeen for tests.
func MustSeen(t testing.TB, r *bufio.Reader) netip.AddrPort {
	t.Helper()
	seen, err := ReadSeen(r)
	if err != nil {
		t.Fatalf("read the address the server saw: %v", err)
	}
	return seen
}
