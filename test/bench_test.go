package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"nicproxy/bind"
	"nicproxy/test/netlab"
)

// BenchmarkDownload compares a 64 MiB download through nicproxy with the
// same download on a direct connection pinned to the same NIC, in the same
// run. Compare the MB/s of each sub-benchmark with "direct":
//
//	go test -run '^$' -bench Download -benchtime 10x ./test/
func BenchmarkDownload(b *testing.B) {
	const size = 64 << 20
	lab := netlab.New(b)
	web := lab.StartWeb()
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-i", "ens160", "-l", "127.0.0.1:1080")
	// Zeros: the server writes them at memory speed, so the path, not the
	// byte generator, limits the rate.
	path := fmt.Sprintf("/zeros?n=%d", size)

	connect := map[string]func() (net.Conn, error){
		"direct": func() (net.Conn, error) {
			var conn net.Conn
			err := lab.InHost(func() (err error) {
				conn, err = bind.NewDialer("ens160", bind.Options{}, nil).DialContext(context.Background(), "tcp", web.HTTP.String())
				return err
			})
			return conn, err
		},
		"socks5": func() (net.Conn, error) {
			conn, err := lab.DialHost("tcp", "127.0.0.1:1080")
			if err != nil {
				return nil, err
			}
			if rep, err := socks5Dial(conn, "", "", web.HTTP.Addr().String(), web.HTTP.Port()); err != nil || rep != 0 {
				conn.Close()
				return nil, fmt.Errorf("socks5 reply %#x: %v", rep, err)
			}
			return conn, nil
		},
		"http-connect": func() (net.Conn, error) {
			conn, err := lab.DialHost("tcp", "127.0.0.1:1080")
			if err != nil {
				return nil, err
			}
			resp, br, err := httpConnect(conn, web.HTTP.Addr().String(), web.HTTP.Port(), nil)
			if err != nil || resp.StatusCode != http.StatusOK || br.Buffered() != 0 {
				conn.Close()
				return nil, fmt.Errorf("CONNECT: %v %v", resp, err)
			}
			return conn, nil
		},
	}
	for _, name := range []string{"direct", "socks5", "http-connect"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				conn, err := connect[name]()
				if err != nil {
					b.Fatal(err)
				}
				fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n", path)
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				conn.Close()
				if err != nil || n != size {
					b.Fatalf("read %d bytes: %v", n, err)
				}
			}
		})
	}
}
