package relay

import (
	"io"
	"net"
	"testing"
)

// benchSize is the payload of one benchmark iteration.
const benchSize = 64 << 20

// sendAll writes benchSize bytes to c from a 1 MiB buffer, then half-closes.
func sendAll(b *testing.B, c *net.TCPConn, buf []byte) {
	for sent := 0; sent < benchSize; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		b.Fatal(err)
	}
}

// sink reads c to EOF in a goroutine and reports the byte count.
func sink(c *net.TCPConn) <-chan int64 {
	ch := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, c)
		ch <- n
	}()
	return ch
}

// BenchmarkDirect is the baseline: one loopback connection, client to sink.
// Compare its MB/s with BenchmarkRelay's in the same run.
func BenchmarkDirect(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(benchSize)
	for b.Loop() {
		client, server := connPair(b)
		got := sink(server)
		sendAll(b, client, buf)
		if n := <-got; n != benchSize {
			b.Fatalf("sink got %d bytes", n)
		}
		client.Close()
		server.Close()
	}
}

// BenchmarkRelay sends the same payload through Relay: client to proxy, proxy
// to sink, over loopback, with the relay's sockets passed unwrapped (splice).
func BenchmarkRelay(b *testing.B) {
	benchRelay(b, func(c *net.TCPConn) net.Conn { return c })
}

// BenchmarkRelayCopy is BenchmarkRelay with the client socket wrapped, which
// forces the user-space copy; it shows what splice is worth.
func BenchmarkRelayCopy(b *testing.B) {
	benchRelay(b, func(c *net.TCPConn) net.Conn { return plainConn{c} })
}

func benchRelay(b *testing.B, wrap func(*net.TCPConn) net.Conn) {
	buf := make([]byte, 1<<20)
	b.SetBytes(benchSize)
	for b.Loop() {
		client, relayClient := connPair(b)
		relayUp, upstream := connPair(b)
		done := startRelay(wrap(relayClient), relayUp, nil)
		got := sink(upstream)
		sendAll(b, client, buf)
		if n := <-got; n != benchSize {
			b.Fatalf("sink got %d bytes", n)
		}
		upstream.Close() // ends the download direction
		if r := <-done; r.Err != nil || r.Up != benchSize {
			b.Fatalf("Relay: %+v", r)
		}
		client.Close()
	}
}
