package test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// TestStatusPageScreenshot renders the status page in Chromium on a
// two-NIC lab with traffic on both NICs, unpinned traffic to a service on
// loopback, a declared NIC that is absent, and one refused dial; the page
// shows a card per NIC and one for the unpinned traffic, side by side,
// states as `check` names them, and the failed row with its NIC and
// reason. The screenshot is kept under NICPROXY_SCREENSHOT_DIR when set.
func TestStatusPageScreenshot(t *testing.T) {
	browser := chromium(t)
	lab := netlab.New(t)
	viaEns33, viaEns160 := startBigOrigin(t, lab), startBigOrigin(t, lab)
	local := startLoopbackService(t, lab)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
admin: {addr: "127.0.0.1:9090"}
interfaces: {ens33: {}, wwan0: {}}
rules:
  - {name: via-ens33, port: [`+strconv.Itoa(int(viaEns33.addr.Port()))+`], via: ens33}
default: ens160
`)

	samples := func() int {
		var s struct {
			NICs []struct {
				Throughput []struct{} `json:"throughput"`
			} `json:"nics"`
		}
		if json.Unmarshal([]byte(adminGet(t, lab, "/api/status")), &s) != nil || len(s.NICs) == 0 {
			return 0
		}
		return len(s.NICs[0].Throughput)
	}
	// A sample before the traffic and two after it, so the charts have a
	// line to draw.
	eventually(t, 5*time.Second, func() bool { return samples() >= 1 }, func() string { return "no throughput sample" })

	before := lab.Snapshot()
	get := func(url string) string {
		t.Helper()
		out, stderr, err := lab.Curl("--fail", "--proxy", "http://127.0.0.1:1080", url)
		if err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, stderr)
		}
		return out
	}
	for o, nic := range map[origin]netlab.NIC{viaEns33: netlab.Ens33, viaEns160: netlab.Ens160} {
		if seen, err := netip.ParseAddrPort(get(o.url("/whoami"))); err != nil || seen.Addr() != nic.Addr {
			t.Errorf("the origin saw %v (%v), want %s's address", seen, err, nic.Name)
		}
	}
	get(viaEns33.url("/big?n=3000000"))
	get(viaEns160.url("/big?n=6000000"))
	get("http://" + local.String() + "/")
	if out, _, _ := lab.Curl("-o", "/dev/null", "-w", "%{http_code}", "--proxy", "http://127.0.0.1:1080", "http://198.51.100.10:1/"); out != "502" {
		t.Fatalf("refused dial: status %s, want 502", out)
	}
	for nic, least := range map[string]uint64{"ens33": 3000000, "ens160": 6000000} {
		if rx := before.RxSince(nic); rx < least {
			t.Errorf("%s received %d bytes, want at least %d", nic, rx, least)
		}
	}

	// The page draws throughput from samples taken every second: wait
	// for those that hold the downloads.
	after := samples() + 2
	eventually(t, 5*time.Second, func() bool {
		var s struct{ Scale float64 }
		return samples() >= after && json.Unmarshal([]byte(adminGet(t, lab, "/api/status")), &s) == nil && s.Scale > 0
	}, func() string { return "no throughput samples with the downloads" })

	dir := os.Getenv("NICPROXY_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	shot := filepath.Join(dir, "status.png")
	headless(t, lab, browser, "--window-size=1280,900", "--virtual-time-budget=3000", "--hide-scrollbars",
		"--screenshot="+shot, "http://127.0.0.1:9090/")
	if info, err := os.Stat(shot); err != nil || info.Size() < 20_000 {
		t.Errorf("status page screenshot: %v (%d bytes)", err, sizeOf(info))
	}
	dom := headless(t, lab, browser, "--virtual-time-budget=3000", "--dump-dom", "http://127.0.0.1:9090/")
	for _, want := range []string{
		`data-nic="ens160"`, `data-nic="ens33"`, `data-nic="wwan0"`, `data-nic="system"`, // a card each
		`badge up">up<`, `badge absent">absent<`,
		// Unpinned traffic is named "system" everywhere: the card, the
		// recent connections, as in the access log and in via: system.
		`</span>system`, `badge unpinned">unpinned<`, "<b>via: system</b>: the routing table decides", "<td>system</td>",
		"192.0.2.80/24", "192.0.2.48/24",
		">via-ens33<", ">refused<", ">connection refused<", // the failed row and its reason
		"0 open connections", "server time ",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered status page lacks %q", want)
		}
	}
	for _, bad := range []string{"connection(s)", "NaN", "undefined", "AM<", "PM<", ">routing table<", "<td>unpinned</td>"} {
		if strings.Contains(dom, bad) {
			t.Errorf("the rendered status page shows %q", bad)
		}
	}
	t.Logf("screenshot: %s", shot)
}

// startLoopbackService serves HTTP on 127.0.0.1 in the host namespace:
// a destination nicproxy reaches unpinned.
func startLoopbackService(t *testing.T, lab *netlab.Lab) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	if err := lab.InHost(func() (err error) {
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(make([]byte, 500000))
	})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}
