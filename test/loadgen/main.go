// Command loadgen opens connections to the lab's echo server, directly
// (pinned to a NIC), through a bare relay, or through nicproxy by SOCKS5 or
// HTTP CONNECT, and reports how fast: the connection rate at a given
// concurrency and the latency of connect + first echoed byte. It runs
// inside the lab's host namespace, as a client on that host would, so no
// namespace switch is paid per connection. It prints one JSON object.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"nicproxy/bind"
)

// Report is what loadgen prints.
type Report struct {
	Mode        string  `json:"mode"`
	Conns       int64   `json:"conns"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Seconds     float64 `json:"seconds"`
	RatePerSec  float64 `json:"rate_per_sec"`
	P50Micros   float64 `json:"p50_us"`
	P90Micros   float64 `json:"p90_us"`
	MeanMicros  float64 `json:"mean_us"`
	SampleCount int     `json:"samples"`
}

func main() {
	mode := flag.String("mode", "direct", "direct | relay | socks5 | connect")
	proxy := flag.String("proxy", "127.0.0.1:1080", "nicproxy's (or the relay's) `ADDR`")
	target := flag.String("target", "", "echo server `HOST:PORT` (a name for socks5 and connect)")
	nic := flag.String("nic", "ens160", "NIC the direct client pins to")
	concurrency := flag.Int("c", 1, "concurrent clients")
	duration := flag.Duration("d", 2*time.Second, "how long to run")
	count := flag.Int("n", 0, "stop after this many connections (0: run for -d)")
	flag.Parse()

	host, portText, err := net.SplitHostPort(*target)
	if err != nil {
		fatal(err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		fatal(err)
	}
	pinned := bind.NewDialer(*nic, bind.Options{}, nil)
	once := func() error {
		var conn net.Conn
		var err error
		switch *mode {
		case "direct":
			conn, err = pinned.DialContext(context.Background(), "tcp", *target)
		case "relay":
			conn, err = net.Dial("tcp", *proxy)
		case "socks5", "connect":
			if conn, err = net.Dial("tcp", *proxy); err == nil {
				if *mode == "socks5" {
					err = socks5Connect(conn, host, uint16(port))
				} else {
					conn, err = httpConnect(conn, *target)
				}
			}
		default:
			err = fmt.Errorf("unknown mode %q", *mode)
		}
		if err != nil {
			if conn != nil {
				conn.Close()
			}
			return err
		}
		defer conn.Close()
		return echoOnce(conn)
	}

	var (
		conns, errs atomic.Int64
		mu          sync.Mutex
		firstErr    error
		samples     []time.Duration
		wg          sync.WaitGroup
	)
	deadline := time.Now().Add(*duration)
	start := time.Now()
	for range *concurrency {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(deadline) {
				if *count > 0 && conns.Add(1) > int64(*count) {
					conns.Add(-1)
					break
				} else if *count == 0 {
					conns.Add(1)
				}
				t0 := time.Now()
				if err := once(); err != nil {
					errs.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			samples = append(samples, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := Report{Mode: *mode, Conns: conns.Load(), Errors: errs.Load(), Seconds: elapsed.Seconds(), SampleCount: len(samples)}
	r.RatePerSec = float64(r.Conns-r.Errors) / elapsed.Seconds()
	if firstErr != nil {
		r.FirstError = firstErr.Error()
	}
	if len(samples) > 0 {
		slices.Sort(samples)
		var sum time.Duration
		for _, s := range samples {
			sum += s
		}
		micros := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
		r.P50Micros = micros(samples[len(samples)/2])
		r.P90Micros = micros(samples[len(samples)*9/10])
		r.MeanMicros = micros(sum / time.Duration(len(samples)))
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fatal(err)
	}
}

// echoOnce reads the echo server's greeting (the address it saw), then
// sends one byte and reads it back.
func echoOnce(conn net.Conn) error {
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	br := bufio.NewReader(conn)
	if _, err := br.ReadString('\n'); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if _, err := conn.Write([]byte{'x'}); err != nil {
		return err
	}
	b, err := br.ReadByte()
	if err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if b != 'x' {
		return errors.New("echo: wrong byte")
	}
	return nil
}

func socks5Connect(conn net.Conn, host string, port uint16) error {
	req := []byte{0x05, 0x01, 0x00, 0x05, 0x01, 0x00}
	if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		req = append(append(req, 0x01), a.AsSlice()...)
	} else {
		req = append(append(req, 0x03, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, port)
	if _, err := conn.Write(req); err != nil {
		return err
	}
	var reply [2 + 10]byte // method choice, then a reply with an IPv4 bound address
	if _, err := io.ReadFull(conn, reply[:]); err != nil {
		return fmt.Errorf("socks5 reply: %w", err)
	}
	if reply[3] != 0 {
		return fmt.Errorf("socks5 reply %#x", reply[3])
	}
	return nil
}

// httpConnect returns a conn that first yields what the response reader
// buffered past the CONNECT response.
func httpConnect(conn net.Conn, target string) (net.Conn, error) {
	if _, err := fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target); err != nil {
		return conn, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return conn, err
	}
	if resp.StatusCode != http.StatusOK {
		return conn, fmt.Errorf("CONNECT: %s", resp.Status)
	}
	return &bufferedConn{Conn: conn, r: br}, nil
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "loadgen:", err)
	os.Exit(2)
}
