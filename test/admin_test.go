package test

import (
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
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
	get := func(t *testing.T, path string, extra ...string) string {
		t.Helper()
		out, stderr, err := lab.Curl(append(extra, "--fail", "http://127.0.0.1:9090"+path)...)
		if err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, stderr)
		}
		return out
	}

	if got := get(t, "/healthz"); got != "ok\n" {
		t.Errorf("/healthz = %q", got)
	}

	headers := get(t, "/proxy.pac", "-D", "/dev/stdout", "-o", "/dev/null")
	if !strings.Contains(headers, "application/x-ns-proxy-autoconfig") {
		t.Errorf("PAC content type:\n%s", headers)
	}
	pac := get(t, "/proxy.pac")
	if !strings.Contains(pac, `return "PROXY 127.0.0.1:1080";`) || strings.Contains(pac, "DIRECT\";\n}") {
		t.Errorf("the PAC does not send everything to the first mixed listener, fail-closed:\n%s", pac)
	}

	before := lab.Snapshot()
	f := lab.curlUpload(t, nil, lab.url("http", "web.test", "/echo"), "--proxy", "socks5h://127.0.0.1:1080")
	checkPinned(t, before, f, netlab.Ens160, netlab.Ens33)
	// Counted as the connection closes.
	const okOnEns160 = `nicproxy_connections_total{nic="ens160",protocol="socks5",result="ok",rule="default"}`
	var m string
	eventually(t, 5*time.Second, func() bool {
		m = get(t, "/metrics")
		return strings.Contains(m, okOnEns160+" ")
	}, func() string { return "the connection was not counted:\n" + m })
	if n := metric(t, m, okOnEns160); n != 1 {
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
	active := func(t *testing.T) float64 { return metric(t, get(t, "/metrics"), "nicproxy_active_connections") }
	eventually(t, 5*time.Second, func() bool { return active(t) == 0 },
		func() string {
			return fmt.Sprintf("nicproxy_active_connections = %v after the only client left, want 0", active(t))
		})

	t.Run("status page and /api/status", func(t *testing.T) {
		if page := get(t, "/"); !strings.Contains(page, "<title>nicproxy</title>") || !strings.Contains(page, `fetch("api/status"`) {
			t.Errorf("/ is not the self-refreshing status page:\n%.300s", page)
		}
		// An open tunnel counts as active on its NIC while it streams.
		conn := dialProxy(t, lab.Lab)
		if rep, err := socks5Dial(conn, "", "", netlab.Server.String(), lab.web.HTTP.Port()); err != nil || rep != 0 {
			t.Fatalf("connect: %#x %v", rep, err)
		}
		fmt.Fprintf(conn, "GET /bytes?n=%d HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n", 8<<20)
		if _, err := io.ReadFull(conn, make([]byte, 4<<20)); err != nil {
			t.Fatal(err)
		}
		if n := active(t); n != 1 {
			t.Errorf("nicproxy_active_connections = %v with one tunnel open, want 1", n)
		}
		var s status
		if err := json.Unmarshal([]byte(get(t, "/api/status")), &s); err != nil {
			t.Fatal(err)
		}
		ens160 := s.nic(t, "ens160")
		if !ens160.Up || !slices.Contains(ens160.Addresses, "192.0.2.48/24") || ens160.Active != 1 {
			t.Errorf("ens160 while streaming: %+v", ens160)
		}
		if ens160.BytesDown < 4<<20 {
			t.Errorf("ens160 bytes_down %d while 4 MiB have been read through an open tunnel", ens160.BytesDown)
		}
		if ens33 := s.nic(t, "ens33"); ens33.BytesUp != 0 || ens33.BytesDown != 0 || ens33.Active != 0 {
			t.Errorf("ens33 carried traffic: %+v", ens33)
		}
		if len(s.Recent) == 0 || s.Recent[0].NIC != "ens160" || s.Recent[0].Rule != "default" || s.Recent[0].Result != "ok" {
			t.Errorf("latest connections: %+v", s.Recent)
		}
		// The throughput chart shows the download once a sample has passed.
		_, _ = io.Copy(io.Discard, conn)
		peak := func() float64 {
			if err := json.Unmarshal([]byte(get(t, "/api/status")), &s); err != nil {
				t.Fatal(err)
			}
			peak := 0.0
			for _, sample := range s.nic(t, "ens160").Throughput {
				peak = max(peak, sample.Down)
			}
			return peak
		}
		eventually(t, 10*time.Second, func() bool { return peak() > 0 }, func() string {
			return fmt.Sprintf("no download throughput sampled on ens160: %+v", s.nic(t, "ens160").Throughput)
		})
		conn.Close()
		eventually(t, 5*time.Second, func() bool { return active(t) == 0 },
			func() string {
				return fmt.Sprintf("nicproxy_active_connections = %v after the tunnel closed, want 0", active(t))
			})
	})

	lab.SetDown("ens33")
	if got := metric(t, get(t, "/metrics"), `nicproxy_nic_up{nic="ens33"}`); got != 0 {
		t.Errorf("nic_up ens33 = %v after it went down, want 0", got)
	}
}

// nicStatus is one NIC of /api/status, as the tests read it.
type nicStatus struct {
	Name       string   `json:"name"`
	Up         bool     `json:"up"`
	Addresses  []string `json:"addresses"`
	Active     int      `json:"active"`
	BytesUp    uint64   `json:"bytes_up"`
	BytesDown  uint64   `json:"bytes_down"`
	Throughput []struct {
		Up   float64 `json:"up"`
		Down float64 `json:"down"`
	} `json:"throughput"`
}

// status is the part of /api/status the tests read.
type status struct {
	NICs   []nicStatus `json:"nics"`
	Recent []struct {
		NIC    string `json:"nic"`
		Rule   string `json:"rule"`
		Result string `json:"result"`
	} `json:"recent"`
}

func (s status) nic(t *testing.T, name string) nicStatus {
	t.Helper()
	for _, n := range s.NICs {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no NIC %s in the status", name)
	return nicStatus{}
}

// TestPACForEveryAddressListener: a listener on :PORT (every address) is
// named in the PAC by the address the browser fetched the PAC from, so a
// browser on another host is sent to an address it can reach.
func TestPACForEveryAddressListener(t *testing.T) {
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
listen: [{addr: ":1080"}]
allow: [127.0.0.0/8, 192.0.2.0/24]
admin: {addr: ":9090"}
default: ens160
`)
	for _, host := range []string{"127.0.0.1", netlab.Ens160.Addr.String(), netlab.Ens33.Addr.String()} {
		t.Run("fetched from "+host, func(t *testing.T) {
			out, stderr, err := lab.Curl("--fail", "http://"+host+":9090/proxy.pac")
			if err != nil {
				t.Fatalf("GET /proxy.pac: %v: %s", err, stderr)
			}
			if want := `return "PROXY ` + host + `:1080";`; !strings.Contains(out, want) {
				t.Errorf("the PAC lacks %s:\n%s", want, out)
			}
		})
	}
	// The address the PAC names serves, pinned.
	before := lab.Snapshot()
	f := lab.curlUpload(t, nil, lab.url("http", "web.test", "/echo"), "--proxy", "http://"+netlab.Ens33.Addr.String()+":1080")
	checkPinned(t, before, f, netlab.Ens160, netlab.Ens33)
}
