package test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// metric returns the value of the series whose line starts with prefix.
func metric(t *testing.T, metrics, prefix string) float64 {
	t.Helper()
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, prefix+" ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, prefix)), 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("no series %s in:\n%s", prefix, metrics)
	return 0
}

// TestAdminEndpoint: /healthz, /proxy.pac and /metrics on admin.addr, with
// the metrics counting a real flow on its NIC and NIC state as it changes.
func TestAdminEndpoint(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
listen:
  - {addr: "127.0.0.1:1079", protocol: socks5}
  - {addr: "127.0.0.1:1080"}
admin: {addr: "127.0.0.1:9090"}
interfaces: {ens33: {}}
default: ens160
`)
	get := func(path string, extra ...string) string {
		t.Helper()
		out, stderr, err := lab.Curl(append(extra, "--fail", "http://127.0.0.1:9090"+path)...)
		if err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, stderr)
		}
		return out
	}

	if got := get("/healthz"); got != "ok\n" {
		t.Errorf("/healthz = %q", got)
	}

	headers := get("/proxy.pac", "-D", "/dev/stdout", "-o", "/dev/null")
	if !strings.Contains(headers, "application/x-ns-proxy-autoconfig") {
		t.Errorf("PAC content type:\n%s", headers)
	}
	pac := get("/proxy.pac")
	if !strings.Contains(pac, `return "PROXY 127.0.0.1:1080";`) || strings.Contains(pac, "DIRECT\";\n}") {
		t.Errorf("the PAC does not send everything to the first mixed listener, fail-closed:\n%s", pac)
	}

	before := lab.Snapshot()
	f := lab.curlUpload(t, nil, lab.url("http", "web.test", "/echo"), "--proxy", "socks5h://127.0.0.1:1080")
	checkPinned(t, before, f, netlab.Ens160, netlab.Ens33)
	time.Sleep(100 * time.Millisecond) // counted as the connection closes

	m := get("/metrics")
	if n := metric(t, m, `nicproxy_connections_total{nic="ens160",protocol="socks5",result="ok",rule="default"}`); n != 1 {
		t.Errorf("connections on ens160 = %v, want 1", n)
	}
	if up := metric(t, m, `nicproxy_bytes_total{direction="up",nic="ens160"}`); up < float64(f.sent) {
		t.Errorf("bytes up on ens160 = %v, want at least %d", up, f.sent)
	}
	if regexp.MustCompile(`nicproxy_bytes_total\{direction="up",nic="ens33"\}`).MatchString(m) {
		t.Errorf("bytes counted on ens33:\n%s", m)
	}
	if metric(t, m, `nicproxy_dial_duration_seconds_count{nic="ens160",result="ok"}`) != 1 {
		t.Error("the dial was not timed")
	}
	for nic, want := range map[string]float64{"ens33": 1, "ens160": 1} {
		if got := metric(t, m, `nicproxy_nic_up{nic="`+nic+`"}`); got != want {
			t.Errorf("nic_up %s = %v, want %v", nic, got, want)
		}
	}
	metric(t, m, "nicproxy_active_connections")

	lab.SetDown("ens33")
	if got := metric(t, get("/metrics"), `nicproxy_nic_up{nic="ens33"}`); got != 0 {
		t.Errorf("nic_up ens33 = %v after it went down, want 0", got)
	}
}
