package netlab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// liveInGroup lists the processes of group pgid that are not zombies.
func liveInGroup(t *testing.T, pgid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var live []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		_, rest, ok := bytesCutLast(b, ')')
		var state string
		var ppid, pgrp, pid int
		if !ok {
			continue
		}
		if _, err := fmt.Sscan(string(rest), &state, &ppid, &pgrp); err != nil {
			continue
		}
		fmt.Sscan(string(b), &pid)
		if pgrp == pgid && state != "Z" {
			live = append(live, pid)
		}
	}
	return live
}

func bytesCutLast(b []byte, sep byte) (before, after []byte, found bool) {
	if i := bytes.LastIndexByte(b, sep); i >= 0 {
		return b[:i], b[i+1:], true
	}
	return b, nil, false
}

// hostClient is an HTTP client whose sockets are made in the host
// namespace; web.test dials the Server address, so https://web.test/ checks the
// certificate's DNS name.
func hostClient(lab *Lab, web *Web) *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
				if host, port, err := net.SplitHostPort(address); err == nil && host == "web.test" {
					address = net.JoinHostPort(Server.String(), port)
				}
				return lab.DialHostContext(ctx, network, address)
			},
			TLSClientConfig: &tls.Config{RootCAs: web.CertPool},
		},
	}
}

func get(t *testing.T, c *http.Client, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	return resp, body
}

func TestWeb(t *testing.T) {
	lab := New(t)
	web := lab.StartWeb()
	client := hostClient(lab, web)
	before := lab.Snapshot()
	bases := map[string]string{
		"http":        "http://" + web.HTTP.String(),
		"https":       "https://" + web.HTTPS.String(),
		"https named": fmt.Sprintf("https://web.test:%d", web.HTTPS.Port()),
	}
	for name, base := range bases {
		t.Run(name, func(t *testing.T) {
			t.Run("whoami", func(t *testing.T) {
				_, body := get(t, client, base+"/whoami")
				seen, err := netip.ParseAddrPort(strings.TrimSuffix(string(body), "\n"))
				if err != nil || !strings.HasSuffix(string(body), "\n") {
					t.Fatalf("body %q: want IP:PORT\\n", body)
				}
				if seen.Addr() != Ens33.Addr {
					t.Errorf("server saw %v, want ens33's %v (the unpinned route)", seen, Ens33.Addr)
				}
			})
			t.Run("bytes", func(t *testing.T) {
				const n = 1 << 20
				resp, body := get(t, client, fmt.Sprintf("%s/bytes?n=%d", base, n))
				if resp.ContentLength != n {
					t.Errorf("Content-Length %d, want %d", resp.ContentLength, n)
				}
				want := sha256.New()
				if _, err := io.Copy(want, ExpectedBytes(n)); err != nil {
					t.Fatal(err)
				}
				if got := sha256.Sum256(body); !bytes.Equal(got[:], want.Sum(nil)) || len(body) != n {
					t.Errorf("got %d bytes with sha256 %x, want %d with %x", len(body), got, n, want.Sum(nil))
				}
			})
			t.Run("headers", func(t *testing.T) {
				_, body := get(t, client, base+"/headers", "X-Netlab-Test", "two words", "X-Netlab-Test", "again")
				lines := strings.Split(strings.TrimSuffix(string(body), "\n"), "\n")
				for _, want := range []string{"X-Netlab-Test: two words", "X-Netlab-Test: again", "Host: "} {
					if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }) {
						t.Errorf("no line %q in:\n%s", want, body)
					}
				}
				if !slices.IsSorted(lines) {
					t.Errorf("lines not sorted:\n%s", body)
				}
			})
			t.Run("echo chunked", func(t *testing.T) {
				payload := bytes.Repeat([]byte("echo me, chunked. "), 20000) // ~360 KiB
				// A reader of unknown length makes the client send chunks.
				req, _ := http.NewRequest(http.MethodPost, base+"/echo", io.MultiReader(bytes.NewReader(payload)))
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				got, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, payload) {
					t.Errorf("echoed %d bytes, want %d byte-exact", len(got), len(payload))
				}
				if seen, err := netip.ParseAddrPort(resp.Header.Get("X-Seen")); err != nil || seen.Addr() != Ens33.Addr {
					t.Errorf("X-Seen %q, want ens33's %v", resp.Header.Get("X-Seen"), Ens33.Addr)
				}
			})
			t.Run("ws without upgrade", func(t *testing.T) {
				resp, err := client.Get(base + "/ws")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUpgradeRequired {
					t.Errorf("status %s, want 426", resp.Status)
				}
			})
		})
	}
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("ws tls=%v", secure), func(t *testing.T) {
			testUpgrade(t, lab, web, secure)
		})
	}
	t.Run("curl", func(t *testing.T) {
		out, errOut, err := lab.Curl("--cacert", web.CAFile, "https://"+web.HTTPS.String()+"/whoami")
		if err != nil {
			t.Fatalf("curl: %v: %s", err, errOut)
		}
		if seen := netip.MustParseAddrPort(strings.TrimSpace(out)); seen.Addr() != Ens33.Addr {
			t.Errorf("server saw %v, want %v", seen, Ens33.Addr)
		}
		out, errOut, err = lab.Curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@-", "http://"+web.HTTP.String()+"/headers")
		if err != nil {
			t.Fatalf("curl: %v: %s", err, errOut)
		}
		if !strings.Contains(out, "Transfer-Encoding: chunked\n") {
			t.Errorf("/headers does not list the chunked encoding:\n%s", out)
		}
	})
	if tx := before.TxSince(Ens160.Name); tx != 0 {
		t.Errorf("ens160 sent %d bytes, want 0: all of this went the unpinned way", tx)
	}
}

func testUpgrade(t *testing.T, lab *Lab, web *Web, secure bool) {
	addr := web.HTTP
	if secure {
		addr = web.HTTPS
	}
	conn, err := lab.DialHost("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	type closeWriter interface {
		net.Conn
		CloseWrite() error
	}
	c := closeWriter(conn.(*net.TCPConn))
	if secure {
		c = tls.Client(conn, &tls.Config{RootCAs: web.CertPool, ServerName: "web.test"})
	}
	// The raw bytes ride right behind the request, as a client in a hurry
	// might send them.
	req := "GET /ws HTTP/1.1\r\nHost: web.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly bytes;"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" ||
		!strings.EqualFold(resp.Header.Get("Connection"), "upgrade") {
		t.Fatalf("response %s %v, want 101 with Upgrade: websocket, Connection: Upgrade", resp.Status, resp.Header)
	}
	// The example of RFC 6455 section 1.3.
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("Sec-WebSocket-Accept %q", got)
	}
	if seen := MustSeen(t, r); seen.Addr() != Ens33.Addr {
		t.Errorf("server saw %v, want %v", seen, Ens33.Addr)
	}
	if _, err := io.WriteString(c, " then more"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(rest) != "early bytes; then more" {
		t.Errorf("echo %q", rest)
	}
}

func TestProxyArgv(t *testing.T) {
	for _, tc := range []struct {
		config string
		extra  []string
		want   []string
	}{
		{"/tmp/c.yaml", nil, []string{"ip", "netns", "exec", "nsH", "/bin/nicproxy", "run", "-c", "/tmp/c.yaml"}},
		{"/tmp/c.yaml", []string{"--log-level", "debug"}, []string{"ip", "netns", "exec", "nsH", "/bin/nicproxy", "run", "-c", "/tmp/c.yaml", "--log-level", "debug"}},
		{"", []string{"serve", "--listen", "127.0.0.1:1080"}, []string{"ip", "netns", "exec", "nsH", "/bin/nicproxy", "serve", "--listen", "127.0.0.1:1080"}},
	} {
		if got := proxyArgv("nsH", "/bin/nicproxy", tc.config, tc.extra); !slices.Equal(got, tc.want) {
			t.Errorf("proxyArgv(%q, %q) = %q, want %q", tc.config, tc.extra, got, tc.want)
		}
	}
}

func TestWithoutProxyEnv(t *testing.T) {
	got := withoutProxyEnv([]string{"PATH=/bin", "http_proxy=x", "HTTPS_PROXY=y", "ALL_PROXY=z", "no_proxy=*", "PROXY=keep", "A=b_proxy"})
	if want := []string{"PATH=/bin", "PROXY=keep", "A=b_proxy"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestStartProcess(t *testing.T) {
	lab := New(t)
	in := func(argv ...string) []string { return append([]string{"ip", "netns", "exec", lab.Host}, argv...) }

	t.Run("ready, then SIGTERM", func(t *testing.T) {
		lab := lab.With(t)
		p := lab.startProcess(in("python3", "-m", "http.server", "--bind", "127.0.0.1", "18080"), "127.0.0.1:18080")
		out, errOut, err := lab.Curl("-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:18080/")
		if err != nil || out != "200" {
			t.Fatalf("curl in the host namespace: %q %v: %s", out, err, errOut)
		}
		// The server lives in the host namespace, not the test's.
		if conn, err := net.DialTimeout("tcp", "127.0.0.1:18080", time.Second); err == nil {
			conn.Close()
			t.Log("note: something also listens on 127.0.0.1:18080 outside the lab")
		}
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code, err := p.Wait(5 * time.Second)
		if code != -1 || err == nil || !strings.Contains(err.Error(), "terminated") {
			t.Errorf("Wait = %d, %v; want -1 and death by SIGTERM", code, err)
		}
		if !strings.Contains(p.Output(), "GET / HTTP/1.1") {
			t.Errorf("output lacks the request log:\n%s", p.Output())
		}
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("signal after exit: %v", err)
		}
	})

	t.Run("exit before ready", func(t *testing.T) {
		lab := lab.With(t)
		p, err := lab.launch(in("sh", "-c", "echo boom; echo bang >&2; exit 3"), "127.0.0.1:18081")
		if err == nil || !strings.Contains(err.Error(), "exited before") {
			t.Fatalf("launch: %v, want exited before ready", err)
		}
		if code, err := p.Wait(time.Second); code != 3 || err != nil {
			t.Errorf("Wait = %d, %v; want 3, nil", code, err)
		}
		if out := p.Output(); out != "boom\nbang\n" {
			t.Errorf("output %q", out)
		}
	})

	t.Run("still running", func(t *testing.T) {
		lab := lab.With(t)
		p := lab.startProcess(in("sleep", "30"), "")
		if code, err := p.Wait(50 * time.Millisecond); code != -1 || err == nil {
			t.Errorf("Wait = %d, %v; want a timeout", code, err)
		}
	})

	t.Run("SIGTERM ignored, group killed", func(t *testing.T) {
		lab := lab.With(t)
		defer func(d time.Duration) { termTimeout = d }(termTimeout)
		termTimeout = 300 * time.Millisecond
		p := lab.startProcess(in("sh", "-c", `trap "" TERM; sleep 30 & echo started; wait`), "")
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.Output(), "started"); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the shell did not start within 10s; output %q", p.Output())
			}
		}
		// Killed, not waited for: the sleep would have held it 30 s.
		p.stop(lab)
		if code, err := p.Wait(0); code != -1 || err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("Wait = %d, %v; want death by SIGKILL", code, err)
		}
		// The sleep in the background went with its group (zombies aside:
		// a container's init may not reap orphans).
		if live := liveInGroup(t, p.Pid()); len(live) > 0 {
			t.Errorf("process group %d still has live members %v", p.Pid(), live)
		}
	})
}
