// Package loopback gives unit tests real sockets on 127.0.0.1, where the
// network-namespace lab (test/netlab) is more than they need: one
// connected TCP pair, and an echo server. Each helper closes what it made,
// and waits for the goroutines it started, when the test ends.
package loopback

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
)

// TCPPair returns both ends of one TCP connection over loopback: the end
// that dialed and the end that was accepted. Both are closed when the test
// ends (closing one earlier is fine).
func TCPPair(tb testing.TB) (dialed, accepted *net.TCPConn) {
	tb.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("loopback pair: %v", err)
	}
	defer ln.Close()
	dialed, err = net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		tb.Fatalf("loopback pair: %v", err)
	}
	tb.Cleanup(func() { dialed.Close() })
	accepted, err = ln.AcceptTCP()
	if err != nil {
		tb.Fatalf("loopback pair: %v", err)
	}
	tb.Cleanup(func() { accepted.Close() })
	return dialed, accepted
}

// Echo starts a TCP server on loopback that writes back whatever each
// client sends, until the client closes. When the test ends it stops
// accepting, closes the connections still open and waits for all of its
// goroutines.
func Echo(tb testing.TB) netip.AddrPort {
	tb.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("loopback echo: %v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[*net.TCPConn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}
