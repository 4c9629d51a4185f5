package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// chromium finds the browser, or skips (fails in CI, which installs it).
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	netlab.SkipOrFail(t, "chromium is not installed")
	return ""
}

// headless runs Chromium inside the host namespace with everything that
// would phone home switched off, and returns its stdout.
func headless(t testing.TB, lab *netlab.Lab, browser string, args ...string) string {
	t.Helper()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
		"--user-data-dir=" + t.TempDir()}
	cmd := lab.Command(browser, append(base, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

// TestBrowserThroughPAC points a real browser at nicproxy's PAC URL: the
// page it loads was fetched through ens160, and ens33 carried nothing,
// not even a DNS query. Then it renders the status page.
func TestBrowserThroughPAC(t *testing.T) {
	browser := chromium(t)
	lab := newServingLab(t)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
admin: {addr: "127.0.0.1:9090"}
interfaces: {ens33: {}}
default: ens160
`)
	before := lab.Snapshot()
	dom := headless(t, lab.Lab, browser, "--proxy-pac-url=http://127.0.0.1:9090/proxy.pac",
		"--dump-dom", lab.url("http", "web.test", "/whoami"))
	if !strings.Contains(dom, netlab.Ens160.Addr.String()+":") {
		t.Errorf("the page the browser loaded does not show ens160's address:\n%s", dom)
	}
	if tx := before.TxSince("ens33"); tx != 0 {
		t.Errorf("ens33 sent %d bytes while the browser browsed through nicproxy", tx)
	}
	if tx := before.TxSince("ens160"); tx == 0 {
		t.Error("ens160 sent nothing")
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	headless(t, lab.Lab, browser, "--window-size=1200,800", "--virtual-time-budget=3000",
		"--screenshot="+shot, "http://127.0.0.1:9090/")
	info, err := os.Stat(shot)
	if err != nil || info.Size() < 10_000 {
		t.Errorf("status page screenshot: %v (%d bytes)", err, sizeOf(info))
	}
	status := headless(t, lab.Lab, browser, "--virtual-time-budget=3000", "--dump-dom", "http://127.0.0.1:9090/")
	for _, want := range []string{"ens160", "192.0.2.48/24", "web.test:", ">default<"} {
		if !strings.Contains(status, want) {
			t.Errorf("the rendered status page lacks %q", want)
		}
	}
}

func sizeOf(info os.FileInfo) int64 {
	if info == nil {
		return 0
	}
	return info.Size()
}
