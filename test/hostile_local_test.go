package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// localService serves "local service" on 127.0.0.1:port and [::1]:port in
// the host namespace, where nothing off the host can reach it.
func localService(t *testing.T, lab *netlab.Lab, port uint16) {
	t.Helper()
	for _, addr := range []string{"127.0.0.1", "::1"} {
		var ln net.Listener
		if err := lab.InHost(func() (err error) {
			ln, err = net.Listen("tcp", net.JoinHostPort(addr, fmt.Sprint(port)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "local service\n")
		}), ReadHeaderTimeout: 5 * time.Second}
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close(); <-done })
	}
}

// httpStatus asks the proxy for url with curl and returns the status.
func (h *hostileLab) httpStatus(t *testing.T, proxy, url string) string {
	t.Helper()
	out, _, _ := h.Curl("-o", "/dev/null", "-w", "%{http_code}", "--proxy", proxy, url)
	return out
}

// socksReply asks the proxy for a SOCKS5 CONNECT and returns the reply.
func (h *hostileLab) socksReply(t *testing.T, user, password, host string, port uint16) byte {
	t.Helper()
	conn := dialProxy(t, h.Lab)
	defer conn.Close()
	rep, err := socks5Dial(conn, user, password, host, port)
	if err != nil {
		t.Fatalf("socks5 %s:%d: %v", host, port, err)
	}
	return rep
}

// TestHostileLoops: requests whose destination is nicproxy itself, by any
// spelling, are refused; the nested-CONNECT one-liner opens no tunnel and
// leaves max_connections to others.
func TestHostileLoops(t *testing.T) {
	h := startHostile(t, `
listen:
  - {addr: "127.0.0.1:1080"}
  - {addr: "0.0.0.0:1081", protocol: http}
admin: {addr: "127.0.0.1:9090"}
allow: [127.0.0.0/8, 192.0.2.0/24]
local_destinations: allow
limits: {max_connections: 500}
default: ens160
`)
	h.normalClient(t, "http://127.0.0.1:1080")
	base := h.usage(t)

	t.Run("nested CONNECT one-liner", func(t *testing.T) {
		conn := dialProxy(t, h.Lab)
		const depth = 499
		go func() {
			for range depth {
				if _, err := io.WriteString(conn, "CONNECT 127.0.0.1:1080 HTTP/1.1\r\n\r\n"); err != nil {
					return
				}
			}
		}()
		br := bufio.NewReader(conn)
		statuses := map[int]int{}
		for range depth {
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil {
				break
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[resp.StatusCode]++
			if resp.StatusCode == http.StatusOK {
				break // a tunnel: what follows is nicproxy again, nested
			}
		}
		// A refused CONNECT closes the connection (the first request of a
		// connection is served without net/http's keep-alive), so the
		// client gets one 403 and then EOF; a keep-alive answer would be
		// one 403 per request. Either way: no tunnel, only refusals.
		if statuses[http.StatusForbidden] == 0 || len(statuses) != 1 {
			t.Errorf("answers %v, want only 403s and no tunnel", statuses)
		}
		out, _, err := h.Curl("--fail", h.admin+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if n := metric(t, out, "nicproxy_active_connections"); n > 3 {
			t.Errorf("%v connections active while one client looped, want only it", n)
		}
		h.normalClient(t, "socks5h://127.0.0.1:1080")
		conn.Close()
	})

	t.Run("every spelling of nicproxy is refused", func(t *testing.T) {
		for _, url := range []string{
			"http://127.0.0.1:1080/", "http://0.0.0.0:1080/", "http://[::ffff:127.0.0.1]:1080/",
			"http://[::ffff:0.0.0.0]:1080/", "http://localhost:1080/", "http://localhost.:1080/",
			"http://a.localhost:1080/", "http://lo.test:1080/", "http://127.0.0.1:9090/api/status",
			"http://0.0.0.0:9090/metrics", "http://192.0.2.80:1081/", "http://192.0.2.48:1081/",
			"http://self.test:1081/", "http://[::ffff:192.0.2.80]:1081/", "http://127.0.0.5:1081/",
		} {
			if got := h.httpStatus(t, "http://127.0.0.1:1080", url); got != "403" {
				t.Errorf("GET %s through the proxy: %s, want 403", url, got)
			}
		}
		for _, dst := range []struct {
			host string
			port uint16
		}{
			{"127.0.0.1", 1080}, {"0.0.0.0", 1080}, {"::ffff:0:0", 1080}, {"localhost.", 1080},
			{"lo.test", 1080}, {"self.test", 1081}, {"192.0.2.48", 1081}, {"127.0.0.1", 9090},
		} {
			if rep := h.socksReply(t, "", "", dst.host, dst.port); rep != 0x02 {
				t.Errorf("SOCKS5 CONNECT %s:%d: reply %#x, want 0x02", dst.host, dst.port, rep)
			}
		}
	})

	t.Run("a forwarded request carries Via; one that already does gets 508", func(t *testing.T) {
		out, _, err := h.Curl("--proxy", "http://127.0.0.1:1080", h.url("http", "web.test", "/headers"))
		if err != nil || !strings.Contains(out, "Via: 1.1 nicproxy") {
			t.Errorf("upstream saw no Via: 1.1 nicproxy (%v):\n%s", err, out)
		}
		if got, _, _ := h.Curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Via: 1.1 squid, 1.1 nicproxy",
			"--proxy", "http://127.0.0.1:1080", h.url("http", "web.test", "/headers")); got != "508" {
			t.Errorf("a request with Via: nicproxy: %s, want 508", got)
		}
	})

	t.Run("the admin endpoint answers only its own address and localhost", func(t *testing.T) {
		for host, want := range map[string]string{"127.0.0.1:9090": "200", "localhost:9090": "200", "0.0.0.0:9090": "421", "[::]:9090": "421"} {
			if got, _, _ := h.Curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: "+host, h.admin+"/healthz"); got != want {
				t.Errorf("Host: %s: %s, want %s", host, got, want)
			}
		}
	})
	h.backToBaseline(t, base)
	h.normalClient(t, "http://127.0.0.1:1080")
}

// TestHostileLocalDestinations: every spelling of the proxy host is
// refused under local_destinations: deny (the default with users), and
// under a loopback reject rule; with allow and no rule, the same local
// service is reachable, so the refusals are the policy's.
func TestHostileLocalDestinations(t *testing.T) {
	const port = 7004
	h := startHostile(t, `
listen:
  - {addr: "127.0.0.1:1080"}
  - {addr: "127.0.0.1:1082"}
  - {addr: "127.0.0.1:1083"}
admin: {addr: "127.0.0.1:9090"}
users: [{name: alice, password: a-pw}]
default: ens160
`)
	localService(t, h.Lab, port)
	h.StartProxy(nicproxyBinary, "127.0.0.1:2080", `
listen: [{addr: "127.0.0.1:2080"}]
local_destinations: allow
users: [{name: alice, password: a-pw}]
rules: [{dst: [127.0.0.0/8, "::1/128"], action: reject}]
default: ens160
`)
	h.StartProxy(nicproxyBinary, "127.0.0.1:3080", `
listen: [{addr: "127.0.0.1:3080"}]
local_destinations: allow
users: [{name: alice, password: a-pw}]
default: ens160
`)
	base := h.usage(t)
	urls := []string{
		"http://0.0.0.0:%d/", "http://[::]:%d/", "http://[::ffff:0.0.0.0]:%d/", "http://[::ffff:0:0]:%d/",
		"http://localhost.:%d/", "http://localhost:%d/", "http://x.localhost:%d/", "http://lo.test:%d/",
		"http://127.0.0.1:%d/", "http://[::1]:%d/",
	}
	socks := []string{"0.0.0.0", "::", "::ffff:0:0", "localhost.", "lo.test", "127.0.0.1", "::1"}
	for _, p := range []struct{ name, proxy, socks string }{
		{"local_destinations: deny", "http://alice:a-pw@127.0.0.1:1080", "127.0.0.1:1080"},
		{"a loopback reject rule", "http://alice:a-pw@127.0.0.1:2080", "127.0.0.1:2080"},
	} {
		t.Run(p.name, func(t *testing.T) {
			for _, u := range urls {
				url := fmt.Sprintf(u, port)
				if got := h.httpStatus(t, p.proxy, url); got != "403" {
					t.Errorf("GET %s: %s, want 403", url, got)
				}
			}
			for _, host := range socks {
				conn, err := h.DialHost("tcp", p.socks)
				if err != nil {
					t.Fatal(err)
				}
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				rep, err := socks5Dial(conn, "alice", "a-pw", host, port)
				conn.Close()
				if err != nil || rep != 0x02 {
					t.Errorf("SOCKS5 CONNECT %s: reply %#x (%v), want 0x02", host, rep, err)
				}
			}
		})
	}
	t.Run("the host's own address under deny", func(t *testing.T) {
		// The admin endpoint's /api/status lists every user's destinations.
		for _, url := range []string{"http://192.0.2.80:22/", "http://self.test:22/", "http://127.0.0.1:9090/api/status"} {
			if got := h.httpStatus(t, "http://alice:a-pw@127.0.0.1:1080", url); got != "403" {
				t.Errorf("GET %s: %s, want 403", url, got)
			}
		}
	})
	t.Run("control: allow and no rule reach the local service", func(t *testing.T) {
		for _, u := range []string{"http://0.0.0.0:%d/", "http://[::]:%d/", "http://localhost.:%d/"} {
			url := fmt.Sprintf(u, port)
			out, stderr, err := h.Curl("--proxy", "http://alice:a-pw@127.0.0.1:3080", url)
			if err != nil || out != "local service\n" {
				t.Errorf("GET %s under allow: %q, %v %s", url, out, err, stderr)
			}
		}
	})
	h.backToBaseline(t, base)
	h.normalClient(t, "http://alice:a-pw@127.0.0.1:1080")
}
