package test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"nicproxy/test/e2e"
	"nicproxy/test/netlab"
)

// servingLab is a lab with web, echo and DNS servers upstream
// (e2e.Serving); names resolve only through the lab's DNS server, reached
// through a NIC.
type servingLab struct {
	*netlab.Lab
	web  *netlab.Web
	echo *netlab.Echo
}

func newServingLab(t *testing.T) *servingLab {
	t.Helper()
	s := e2e.StartServing(t)
	return &servingLab{Lab: s.Lab, web: s.Web, echo: s.Echo}
}

// with is the lab as seen from t, a subtest: what fails reports to t, and
// what t starts stops when t ends (netlab.Lab.With).
func (s *servingLab) with(t *testing.T) *servingLab {
	return &servingLab{Lab: s.Lab.With(t), web: s.web, echo: s.echo}
}

func (s *servingLab) url(scheme, host, path string) string { return e2e.URL(s.web, scheme, host, path) }

// flow is one client's upload through the proxy, and what it showed.
type flow struct {
	seen netip.Addr // the client address the web server saw
	sent int        // bytes uploaded
}

// checkPinned is e2e.CheckPinned for a flow.
func checkPinned(t *testing.T, before netlab.Snapshot, f flow, want, other netlab.NIC) {
	t.Helper()
	e2e.CheckPinned(t, before, f.seen, f.sent, want, other)
}

// checkCounters is e2e.CheckCounters.
func checkCounters(t *testing.T, before netlab.Snapshot, sent int, want, other netlab.NIC) {
	t.Helper()
	e2e.CheckCounters(t, before, sent, want, other)
}

// curlUpload is e2e.CurlUpload through this lab's web server.
func (s *servingLab) curlUpload(t *testing.T, env []string, url string, args ...string) flow {
	t.Helper()
	seen, sent := e2e.CurlUpload(t, s.Lab, s.web, env, url, args...)
	return flow{seen: seen, sent: sent}
}

// seenHeader is e2e.SeenHeader.
func seenHeader(t *testing.T, headers string) netip.Addr {
	t.Helper()
	return e2e.SeenHeader(t, headers)
}

// TestServeRealClients pins everything to ens160 (nicproxy -i ens160, no
// file) and drives it with each client a user would point at it.
func TestServeRealClients(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-i", "ens160", "-l", "127.0.0.1:1080")
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1081", `
listen: [{addr: 127.0.0.1:1081}]
users: [{name: alice, password: "s3cret"}]
default: ens160
`)
	ip := netlab.Server.String()
	tests := []struct {
		name string
		env  []string
		url  string
		args []string
	}{
		{"curl socks5h", nil, lab.url("http", "web.test", "/echo"), []string{"--proxy", "socks5h://127.0.0.1:1080"}},
		{"curl socks5 (client resolves)", nil, lab.url("http", ip, "/echo"), []string{"--proxy", "socks5://127.0.0.1:1080"}},
		{"curl http proxy, http URL", nil, lab.url("http", "web.test", "/echo"), []string{"--proxy", "http://127.0.0.1:1080"}},
		{"curl http proxy, https URL (CONNECT)", nil, lab.url("https", "web.test", "/echo"), []string{"--proxy", "http://127.0.0.1:1080"}},
		{"curl socks4a", nil, lab.url("http", "web.test", "/echo"), []string{"--proxy", "socks4a://127.0.0.1:1080"}},
		{"ALL_PROXY=socks5h", []string{"ALL_PROXY=socks5h://127.0.0.1:1080"}, lab.url("https", "web.test", "/echo"), nil},
		{"HTTPS_PROXY with user:pass", []string{"HTTPS_PROXY=http://alice:s3cret@127.0.0.1:1081"}, lab.url("https", "web.test", "/echo"), nil},
		{"curl http proxy, chunked upload", nil, lab.url("http", "web.test", "/echo"), []string{"--proxy", "http://127.0.0.1:1080", "-H", "Transfer-Encoding: chunked"}},
		{"http_proxy with user:pass (curl ignores HTTP_PROXY)", []string{"http_proxy=http://alice:s3cret@127.0.0.1:1081"}, lab.url("http", "web.test", "/echo"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lab := lab.with(t)
			before := lab.Snapshot()
			f := lab.curlUpload(t, tt.env, tt.url, tt.args...)
			checkPinned(t, before, f, netlab.Ens160, netlab.Ens33)
		})
	}

	t.Run("Go net/http with ProxyFromEnvironment", func(t *testing.T) {
		lab := lab.with(t)
		// ProxyFromEnvironment reads the environment once per process; no
		// other test in this binary calls it.
		t.Setenv("HTTPS_PROXY", "http://alice:s3cret@127.0.0.1:1081")
		client := &http.Client{Transport: &http.Transport{
			Proxy:           http.ProxyFromEnvironment,
			DialContext:     lab.DialHostContext, // sockets made in the host namespace
			TLSClientConfig: tlsConfig(lab.web.CertPool),
		}, Timeout: 20 * time.Second}
		defer client.CloseIdleConnections()
		payload := bytes.Repeat([]byte("go client "), 6554)
		before := lab.Snapshot()
		resp, err := client.Post(lab.url("https", "web.test", "/echo"), "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("echo: %d bytes (err %v), want the %d-byte payload", len(got), err, len(payload))
		}
		seen, err := netip.ParseAddrPort(resp.Header.Get("X-Seen"))
		if err != nil {
			t.Fatal(err)
		}
		checkPinned(t, before, flow{seen: seen.Addr(), sent: len(payload)}, netlab.Ens160, netlab.Ens33)
	})
}

// TestServeSplitByRule sends one user via ens160 and one destination via
// ens33 through one proxy; each flow must land on its own NIC.
func TestServeSplitByRule(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", fmt.Sprintf(`
users:
  - {name: alice, password: "a-pw"}
  - {name: bob, password: "b-pw"}
resolver: {via: ens33}
rules:
  - {name: alice-wan, user: [alice], via: ens160}
  - {name: web-lan, dst: ["%s/32"], via: ens33}
default: ens160
`, netlab.Server))
	url := lab.url("http", "web.test", "/echo")
	for _, tt := range []struct {
		user, password string
		want, other    netlab.NIC
	}{
		{"alice", "a-pw", netlab.Ens160, netlab.Ens33},
		{"bob", "b-pw", netlab.Ens33, netlab.Ens160},
	} {
		for _, scheme := range []string{"socks5h", "http"} {
			t.Run(tt.user+" over "+scheme, func(t *testing.T) {
				lab := lab.with(t)
				before := lab.Snapshot()
				proxy := fmt.Sprintf("%s://%s:%s@127.0.0.1:1080", scheme, tt.user, tt.password)
				f := lab.curlUpload(t, nil, url, "--proxy", proxy)
				checkPinned(t, before, f, tt.want, tt.other)
			})
		}
	}
}

// TestServeDstRuleResolvesThroughResolverVia: to match a dst rule nicproxy
// must resolve the name first; that query goes out resolver.via (here
// ens160, against the kernel's preference for ens33), once, and the
// address that matched is dialed as is, so the flow, DNS included, never
// touches ens33.
func TestServeDstRuleResolvesThroughResolverVia(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", fmt.Sprintf(`
resolver: {via: ens160}
rules:
  - {name: web, dst: ["%s/32"], via: ens160}
default: ens33
`, netlab.Server))
	for _, proxy := range []string{"socks5h://127.0.0.1:1080", "http://127.0.0.1:1080"} {
		t.Run(proxy, func(t *testing.T) {
			lab := lab.with(t)
			before := lab.Snapshot()
			f := lab.curlUpload(t, nil, lab.url("http", "web.test", "/echo"), "--proxy", proxy)
			checkPinned(t, before, f, netlab.Ens160, netlab.Ens33)
		})
	}
}

// TestServeUnmatchedNameSkipsTheDstRulesNIC: a name that matches no dst
// rule is looked up through resolver.via (by default the default's NIC)
// and carried by the default's NIC: the dst rule's NIC sends nothing, not
// even the query (before, each dst rule's NIC asked in turn).
func TestServeUnmatchedNameSkipsTheDstRulesNIC(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
rules:
  - {name: lan, dst: [203.0.113.0/24], via: ens33}
default: ens160
`)
	for _, proxy := range []string{"socks5h://127.0.0.1:1080", "http://127.0.0.1:1080"} {
		t.Run(proxy, func(t *testing.T) {
			lab := lab.with(t)
			before := lab.Snapshot()
			f := lab.curlUpload(t, nil, lab.url("http", "web.test", "/echo"), "--proxy", proxy)
			checkPinned(t, before, f, netlab.Ens160, netlab.Ens33)
		})
	}
}
