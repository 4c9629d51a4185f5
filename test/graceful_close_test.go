package test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// TestForwardedCancelClosesGracefully: a client that gives up on a
// forwarded response while it is still arriving makes nicproxy close the
// upstream connection. A close with unread data resets at once and
// destroys the socket, and the origin's segments still in flight then draw
// resets from the kernel that carry no binding (they follow the main table,
// out of ens33). nicproxy instead shuts its side down and drains the rest:
// the origin writes its whole response without a reset and then reads
// nicproxy's FIN, and ens33 sends nothing. (Before, the origin's writes
// failed with a reset.)
func TestForwardedCancelClosesGracefully(t *testing.T) {
	lab := netlab.New(t)
	const size = 4 << 20
	ln := lab.With(t).ListenUpstream(netlab.Server)
	type ending struct {
		from netip.Addr
		err  error // the origin's first write or read error; nil: it read a FIN
	}
	ended := make(chan ending, 1)
	go func() {
		conn, err := ln.AcceptTCP()
		if err != nil {
			ended <- ending{err: err}
			return
		}
		defer conn.Close()
		from := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		br := bufio.NewReader(conn)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				ended <- ending{from, err}
				return
			}
			if line == "\r\n" {
				break
			}
		}
		chunk := make([]byte, 64<<10)
		if _, err := fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size); err != nil {
			ended <- ending{from, err}
			return
		}
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := conn.Write(chunk); err != nil {
				ended <- ending{from, err}
				return
			}
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, br); err != nil {
			ended <- ending{from, err}
			return
		}
		ended <- ending{from: from} // EOF: nicproxy closed its side with a FIN
	}()

	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\n")
	before := lab.Snapshot()
	client, err := lab.DialHost("tcp", "127.0.0.1:1080")
	if err != nil {
		t.Fatal(err)
	}
	origin := ln.Addr().(*net.TCPAddr).AddrPort()
	fmt.Fprintf(client, "GET http://%s/big HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin)
	// Read the start of the response, then give up on the rest.
	if _, err := io.ReadFull(client, make([]byte, 32<<10)); err != nil {
		t.Fatalf("start of the response: %v", err)
	}
	client.Close()

	select {
	case e := <-ended:
		if e.from != netlab.Ens160.Addr {
			t.Errorf("origin saw %v, want %v", e.from, netlab.Ens160.Addr)
		}
		if errors.Is(e.err, syscall.ECONNRESET) || errors.Is(e.err, syscall.EPIPE) {
			t.Errorf("the origin was reset: %v", e.err)
		} else if e.err != nil {
			t.Errorf("the origin's connection ended with %v, want a FIN", e.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the origin's connection did not end")
	}
	if tx := before.TxSince("ens160"); tx == 0 {
		t.Error("ens160 sent nothing")
	}
	if tx := before.TxSince("ens33"); tx != 0 {
		t.Errorf("ens33 sent %d bytes, want 0", tx)
	}
}
