package test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// TestBytesWhereTheyCrossTheNIC: for every protocol, the access log counts
// what crossed the NIC: ens160's tx counter is the logged bytes_up plus
// TCP/IP headers, its rx counter bytes_down plus headers, to the packet.
// Request and response heads carry 4 KiB of padding each, so a count that
// leaves them out (as plain HTTP forwarding once did: bodies only, and 0
// for a WebSocket) misses by far more than any header could explain. And
// nicproxy_bytes_total adds up to the access log.
func TestBytesWhereTheyCrossTheNIC(t *testing.T) {
	lab := netlab.New(t)
	o := startBigOrigin(t, lab)
	p := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
admin: {addr: "127.0.0.1:9090"}
interfaces: {ens33: {}}
default: ens160
log: {format: json}
`)
	pad := "X-Pad: " + strings.Repeat("u", padding)
	upload := filepath.Join(t.TempDir(), "upload")
	body := make([]byte, 64<<10)
	_, _ = rand.Read(body)
	if err := os.WriteFile(upload, body, 0o600); err != nil {
		t.Fatal(err)
	}
	curl := func(args ...string) func(t *testing.T) {
		return func(t *testing.T) {
			t.Helper()
			if _, stderr, err := lab.Curl(append([]string{"--fail", "-o", "/dev/null", "-H", pad}, args...)...); err != nil {
				t.Fatalf("curl %v: %v: %s", args, err, stderr)
			}
		}
	}
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"http GET", curl("--proxy", "http://127.0.0.1:1080", o.url("/big?n=100000"))},
		{"http POST", curl("--proxy", "http://127.0.0.1:1080", "--data-binary", "@"+upload, o.url("/echo"))},
		{"http websocket", func(t *testing.T) { webSocketEcho(t, lab, o, pad, body[:10<<10]) }},
		{"http CONNECT", curl("--proxytunnel", "--proxy", "http://127.0.0.1:1080", o.url("/big?n=100000"))},
		{"socks5", curl("--proxy", "socks5://127.0.0.1:1080", o.url("/big?n=100000"))},
	}
	var sumUp, sumDown int64
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logged := len(accessEntries(t, p))
			before33, before160 := nicStats(t, lab, "ens33"), nicStats(t, lab, "ens160")
			c.run(t)
			entry := nextAccess(t, p, logged)
			got := nicStats(t, lab, "ens160").since(before160)
			up, down := num(entry, "bytes_up"), num(entry, "bytes_down")
			sumUp, sumDown = sumUp+up, sumDown+down
			if entry["nic"] != "ens160" || entry["result"] != "ok" {
				t.Errorf("access line: %v", entry)
			}
			if !withinOverhead(got.txBytes, got.txPackets, up) {
				t.Errorf("bytes_up %d, but ens160 sent %d bytes in %d packets: not the logged bytes plus %d..%d bytes of headers a packet",
					up, got.txBytes, got.txPackets, minOverhead, maxOverhead)
			}
			if !withinOverhead(got.rxBytes, got.rxPackets, down) {
				t.Errorf("bytes_down %d, but ens160 received %d bytes in %d packets: not the logged bytes plus %d..%d bytes of headers a packet",
					down, got.rxBytes, got.rxPackets, minOverhead, maxOverhead)
			}
			if tx := nicStats(t, lab, "ens33").since(before33).txBytes; tx != 0 {
				t.Errorf("ens33 sent %d bytes", tx)
			}
			t.Logf("logged up %d down %d; ens160 tx %d bytes/%d packets, rx %d bytes/%d packets",
				up, down, got.txBytes, got.txPackets, got.rxBytes, got.rxPackets)
		})
	}
	m := adminGet(t, lab, "/metrics")
	if got := metric(t, m, `nicproxy_bytes_total{direction="up",nic="ens160"}`); int64(got) != sumUp {
		t.Errorf("nicproxy_bytes_total up on ens160 = %v, the access log says %d", got, sumUp)
	}
	if got := metric(t, m, `nicproxy_bytes_total{direction="down",nic="ens160"}`); int64(got) != sumDown {
		t.Errorf("nicproxy_bytes_total down on ens160 = %v, the access log says %d", got, sumDown)
	}
}

// webSocketEcho upgrades an absolute-URI request through the HTTP proxy
// and sends payload through the upgraded connection, which echoes it: the
// upgraded connection is relayed as a tunnel, half-close and all.
func webSocketEcho(t *testing.T, lab *netlab.Lab, o origin, header string, payload []byte) {
	t.Helper()
	conn := dialProxy(t, lab)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n%s\r\n\r\n", o.url("/ws"), o.addr, header)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	// Half-close right after the upload: the relay passes the end on and
	// the whole echo still comes back (ReverseProxy's copy closed both
	// sides as soon as one ended).
	if _, err := conn.Write(payload); err != nil {
		t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	echo, err := io.ReadAll(br)
	if err != nil || !bytes.Equal(echo, payload) {
		t.Fatalf("echo of the half-closed upload: %d of %d bytes, %v", len(echo), len(payload), err)
	}
	conn.Close()
}
