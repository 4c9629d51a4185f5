package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"nicproxy/test/e2e"
	"nicproxy/test/netlab"
)

// apiRecent is a row of /api/status's latest connections.
type apiRecent struct {
	NIC      string `json:"nic"`
	Dest     string `json:"dest"`
	Protocol string `json:"protocol"`
	Result   string `json:"result"`
	Reason   string `json:"reason"`
	User     string `json:"user"`
	Down     int64  `json:"bytes_down"`
}

// TestFailuresCarryNICAndReason: a refused and a timed-out dial, through
// the HTTP proxy and SOCKS5, are logged, counted and listed under the NIC
// they failed on, with their reason; nicproxy's own error page is no
// NIC's bytes.
func TestFailuresCarryNICAndReason(t *testing.T) {
	lab := netlab.New(t)
	p := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
admin: {addr: "127.0.0.1:9090"}
interfaces: {ens33: {}}
default: ens160
timeouts: {dial: 1s}
log: {format: json}
`)
	refused := netip.AddrPortFrom(netlab.Server, 1) // nothing listens: a reset
	blackhole := netip.AddrPortFrom(netlab.Blackhole, 80)
	cases := []struct {
		name, protocol, result, reason string
		dest                           netip.AddrPort
		run                            func(t *testing.T, dest netip.AddrPort)
	}{
		{"http refused", "http", "refused", "connection refused", refused, httpGetStatus(lab, http.StatusBadGateway)},
		{"socks5 refused", "socks5", "refused", "connection refused", refused, socks5Reply(lab, 0x05)},
		{"http timeout", "http", "timeout", "dial timeout", blackhole, httpGetStatus(lab, http.StatusGatewayTimeout)},
		{"socks5 timeout", "socks5", "timeout", "dial timeout", blackhole, socks5Reply(lab, 0x06)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logged := len(accessEntries(t, p))
			c.run(t, c.dest)
			entry := nextAccess(t, p, logged)
			if entry["nic"] != "ens160" || entry["result"] != c.result || entry["reason"] != c.reason ||
				entry["dest"] != c.dest.String() || num(entry, "bytes_down") != 0 {
				t.Errorf("access line: %v\nwant nic ens160, result %s, reason %q, no bytes down", entry, c.result, c.reason)
			}
		})
	}

	m := adminGet(t, lab, "/metrics")
	for _, c := range cases {
		series := `nicproxy_connections_total{nic="ens160",protocol="` + c.protocol + `",result="` + c.result + `",rule="default"}`
		if got := metric(t, m, series); got != 1 {
			t.Errorf("%s = %v, want 1", series, got)
		}
	}
	if strings.Contains(m, `nicproxy_connections_total{nic=""`) {
		t.Errorf("connections counted without a NIC:\n%s", m)
	}
	if got := metric(t, m, `nicproxy_bytes_total{direction="down",nic="ens160"}`); got != 0 {
		t.Errorf("bytes down on ens160 = %v: an error page nicproxy wrote was counted", got)
	}

	var s struct {
		Recent []apiRecent `json:"recent"`
	}
	if err := json.Unmarshal([]byte(adminGet(t, lab, "/api/status")), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Recent) != len(cases) {
		t.Fatalf("recent: %+v, want the %d failures", s.Recent, len(cases))
	}
	for i, c := range cases {
		row := s.Recent[len(cases)-1-i] // newest first
		if row.NIC != "ens160" || row.Result != c.result || row.Reason != c.reason || row.Protocol != c.protocol {
			t.Errorf("/api/status row for %s: %+v", c.name, row)
		}
	}
}

// httpGetStatus GETs http://dest/ through the HTTP proxy and wants status.
func httpGetStatus(lab *netlab.Lab, status int) func(t *testing.T, dest netip.AddrPort) {
	return func(t *testing.T, dest netip.AddrPort) {
		t.Helper()
		out, stderr, err := lab.Curl("-o", "/dev/null", "-w", "%{http_code}", "--proxy", "http://127.0.0.1:1080", "http://"+dest.String()+"/")
		if err != nil || out != strconv.Itoa(status) {
			t.Fatalf("status %s (%v: %s), want %d", out, err, stderr, status)
		}
	}
}

// socks5Reply asks for dest over SOCKS5 and wants reply code rep.
func socks5Reply(lab *netlab.Lab, rep byte) func(t *testing.T, dest netip.AddrPort) {
	return func(t *testing.T, dest netip.AddrPort) {
		t.Helper()
		conn := dialProxy(t, lab)
		if got, err := socks5Dial(conn, "", "", dest.Addr().String(), dest.Port()); err != nil || got != rep {
			t.Fatalf("reply %#x, %v; want %#x", got, err, rep)
		}
		conn.Close()
	}
}

// TestResults: how flows that end unusually are named. A download over
// HTTP/2 through CONNECT that the client ends with a reset is ok; a
// SOCKS5 or HTTP login with a wrong password logs the name it tried; a
// SOCKS5 client that offers no credentials where users are required is
// auth-failed.
func TestResults(t *testing.T) {
	lab := netlab.New(t)
	h2 := startH2Origin(t, lab)
	o := startBigOrigin(t, lab)
	p := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
default: ens160
interfaces: {ens33: {}}
log: {format: json}
`)
	auth := lab.StartProxy(nicproxyBinary, "127.0.0.1:1081", `
listen: [{addr: "127.0.0.1:1081"}]
users: [{name: alice, password: s3cret}]
default: ens160
interfaces: {ens33: {}}
log: {format: json}
`)

	t.Run("HTTP/2 through CONNECT, ended by the client's reset", func(t *testing.T) {
		logged := len(accessEntries(t, p))
		out, stderr, err := lab.Curl("--http2", "--insecure", "--proxytunnel", "--proxy", "http://127.0.0.1:1080",
			"-o", "/dev/null", "-w", "%{http_version} %{http_code}", "https://"+h2.String()+"/big?n=1000000")
		if err != nil || out != "2 200" {
			t.Fatalf("curl: %q %v: %s", out, err, stderr)
		}
		entry := nextAccess(t, p, logged)
		if entry["result"] != "ok" || entry["protocol"] != "http-connect" || num(entry, "bytes_down") < 1000000 {
			t.Errorf("access line: %v", entry)
		}
	})
	t.Run("a client that resets after its download", func(t *testing.T) {
		logged := len(accessEntries(t, p))
		conn := dialProxy(t, lab)
		if rep, err := socks5Dial(conn, "", "", o.addr.Addr().String(), o.addr.Port()); err != nil || rep != 0 {
			t.Fatalf("connect: %#x %v", rep, err)
		}
		// The whole response, on a connection the origin keeps alive;
		// then the client leaves with a reset.
		fmt.Fprintf(conn, "GET /big?n=100000 HTTP/1.1\r\nHost: %s\r\n\r\n", o.addr)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != 100000 {
			t.Fatalf("download: %d bytes, %v", n, err)
		}
		_ = conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
		entry := nextAccess(t, p, logged)
		if entry["result"] != "ok" {
			t.Errorf("access line: %v", entry)
		}
	})
	t.Run("SOCKS5 wrong password logs the user tried", func(t *testing.T) {
		logged := len(accessEntries(t, auth))
		conn := dialProxyAt(t, lab, "127.0.0.1:1081")
		if _, err := socks5Dial(conn, "alice", "wrong", netlab.Server.String(), 80); err != errAuthFailed {
			t.Fatalf("wrong password: %v, want refused", err)
		}
		entry := nextAccess(t, auth, logged)
		if entry["result"] != "auth-failed" || entry["user"] != "alice" {
			t.Errorf("access line: %v", entry)
		}
	})
	t.Run("SOCKS5 without credentials is auth-failed", func(t *testing.T) {
		logged := len(accessEntries(t, auth))
		conn := dialProxyAt(t, lab, "127.0.0.1:1081")
		if _, err := socks5Dial(conn, "", "", netlab.Server.String(), 80); err == nil || !strings.Contains(err.Error(), "0xff") {
			t.Fatalf("no credentials: %v, want method 0xff", err)
		}
		entry := nextAccess(t, auth, logged)
		if entry["result"] != "auth-failed" || entry["user"] != "" {
			t.Errorf("access line: %v", entry)
		}
	})
	t.Run("HTTP wrong password logs the user tried", func(t *testing.T) {
		logged := len(accessEntries(t, auth))
		out, _, _ := lab.Curl("-o", "/dev/null", "-w", "%{http_code}", "--proxy", "http://bob:wrong@127.0.0.1:1081", "http://"+netlab.Server.String()+"/")
		if out != "407" {
			t.Fatalf("status %s, want 407", out)
		}
		entry := nextAccess(t, auth, logged)
		if entry["result"] != "auth-failed" || entry["user"] != "bob" {
			t.Errorf("access line: %v", entry)
		}
	})
}

// dialProxyAt is e2e.DialProxyAt.
func dialProxyAt(t *testing.T, lab *netlab.Lab, addr string) net.Conn {
	t.Helper()
	return e2e.DialProxyAt(t, lab, addr)
}

// startH2Origin serves /big over TLS with HTTP/2 in the upstream namespace.
func startH2Origin(t *testing.T, lab *netlab.Lab) netip.AddrPort {
	t.Helper()
	ln := lab.With(t).ListenUpstream(netlab.Server)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = io.CopyN(w, zeros{}, int64(n))
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return ln.Addr().(*net.TCPAddr).AddrPort()
}
