package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"nicproxy/test/netlab"
)

// origin is an HTTP server of the test's own in the upstream namespace,
// with response heads as large as the test asks, so a count that leaves
// out headers is off by kilobytes, not by a few bytes of TCP overhead:
//
//	/big?n=N     N bytes, and a 4 KiB X-Pad response header
//	/whoami      the client address the origin saw
//	/echo        the request body back
//	/ws          101 Switching Protocols, then a raw byte echo
type origin struct {
	addr netip.AddrPort
}

// padding is the size of the X-Pad headers the tests send and receive.
const padding = 4 << 10

func startBigOrigin(t *testing.T, lab *netlab.Lab) origin {
	t.Helper()
	ln := lab.With(t).ListenUpstream(netlab.Server)
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("X-Pad", strings.Repeat("d", padding))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = io.CopyN(w, zeros{}, int64(n))
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.RemoteAddr)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", r.Header.Get("Upgrade"))
		_, _ = io.Copy(conn, brw)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return origin{addr: ln.Addr().(*net.TCPAddr).AddrPort()}
}

func (o origin) url(path string) string { return "http://" + o.addr.String() + path }

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// linkStats is a host NIC's counters, packets too: TCP/IP overhead is
// per packet.
type linkStats struct{ txBytes, rxBytes, txPackets, rxPackets uint64 }

func nicStats(t *testing.T, lab *netlab.Lab, nic string) linkStats {
	t.Helper()
	var s linkStats
	if err := lab.InHost(func() error {
		link, err := netlink.LinkByName(nic)
		if err != nil {
			return err
		}
		st := link.Attrs().Statistics
		s = linkStats{st.TxBytes, st.RxBytes, st.TxPackets, st.RxPackets}
		return nil
	}); err != nil {
		t.Fatalf("counters of %s: %v", nic, err)
	}
	return s
}

func (s linkStats) since(before linkStats) linkStats {
	return linkStats{s.txBytes - before.txBytes, s.rxBytes - before.rxBytes, s.txPackets - before.txPackets, s.rxPackets - before.rxPackets}
}

// Per-packet overhead of TCP over IPv4 on Ethernet, the veth's framing:
// 14 + 20 + 20 bytes, plus TCP options: 12 with timestamps, 20 on a SYN.
// A GSO/GRO packet counts once with one set of headers, so the bounds
// hold for those too.
const (
	minOverhead = 14 + 20 + 20
	maxOverhead = 14 + 20 + 40
)

// withinOverhead reports whether a NIC counter of wire bytes over packets
// is payload plus TCP/IP headers.
func withinOverhead(wire, packets uint64, payload int64) bool {
	if payload < 0 || uint64(payload) > wire {
		return false
	}
	extra := wire - uint64(payload)
	return extra >= packets*minOverhead && extra <= packets*maxOverhead
}

// accessEntries returns the JSON access-log lines the proxy has written so far.
func accessEntries(t *testing.T, p *netlab.Proc) []map[string]any {
	t.Helper()
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.Output()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var entry map[string]any
		if json.Unmarshal(sc.Bytes(), &entry) == nil && entry["msg"] == "access" {
			lines = append(lines, entry)
		}
	}
	return lines
}

// nextAccess waits for the proxy's access-log line number n (from 0).
func nextAccess(t *testing.T, p *netlab.Proc, n int) map[string]any {
	t.Helper()
	var lines []map[string]any
	eventually(t, 10*time.Second, func() bool {
		lines = accessEntries(t, p)
		return len(lines) > n
	}, func() string { return fmt.Sprintf("access line %d never came:\n%s", n, p.Output()) })
	return lines[n]
}

func num(entry map[string]any, key string) int64 {
	f, _ := entry[key].(float64)
	return int64(f)
}

// adminGet fetches a path of the admin endpoint at 127.0.0.1:9090.
func adminGet(t *testing.T, lab *netlab.Lab, path string) string {
	t.Helper()
	out, stderr, err := lab.Curl("--fail", "http://127.0.0.1:9090"+path)
	if err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, stderr)
	}
	return out
}
