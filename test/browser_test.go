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
	return headlessPolicy(t, lab, browser, "", args...)
}

// chromiumEtc is where Debian's Chromium reads its master_preferences and
// its managed policies (policies/managed/*.json).
const chromiumEtc = "/etc/chromium"

// headlessPolicy is headless with policy, a managed policy's JSON
// ({"MaxConnectionsPerProxy": 99}), that this one browser reads: the host's
// /etc is not touched. The browser runs in a mount namespace of its own
// (unshare --mount, propagation private) in which a copy of chromiumEtc's
// files plus policies/managed/bench.json is bind-mounted over chromiumEtc,
// then enters the lab's host namespace as headless does (ip netns exec
// makes a mount namespace of its own below that one, which inherits the
// bind mount). An empty policy is headless.
func headlessPolicy(t testing.TB, lab *netlab.Lab, browser, policy string, args ...string) string {
	t.Helper()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
		"--user-data-dir=" + t.TempDir()}
	cmd := lab.Command(browser, append(base, args...)...)
	if policy != "" {
		etc := privateChromiumEtc(t, policy)
		cmd.Args = append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
			`mount --bind "$0" ` + chromiumEtc + ` && exec "$@"`, etc}, cmd.Args...)
		path, err := exec.LookPath("unshare")
		if err != nil {
			netlab.SkipOrFail(t, "unshare (util-linux) is not installed")
		}
		cmd.Path = path
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	return stdout.String()
}

// privateChromiumEtc makes the directory headlessPolicy mounts over
// chromiumEtc: a copy of the files there (the mount hides them) and
// policies/managed/bench.json holding policy.
func privateChromiumEtc(t testing.TB, policy string) string {
	t.Helper()
	entries, err := os.ReadDir(chromiumEtc)
	if err != nil {
		netlab.SkipOrFail(t, "no %s to lay a policy over (not Debian's chromium?): %v", chromiumEtc, err)
	}
	dir := t.TempDir()
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue // policies/ of the host's own: this browser gets only policy
		}
		b, err := os.ReadFile(filepath.Join(chromiumEtc, e.Name()))
		if err != nil {
			t.Fatalf("copy %s: %v", e.Name(), err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatalf("copy %s: %v", e.Name(), err)
		}
	}
	managed := filepath.Join(dir, "policies", "managed")
	if err := os.MkdirAll(managed, 0o755); err != nil {
		t.Fatalf("policy directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(managed, "bench.json"), []byte(policy), 0o644); err != nil {
		t.Fatalf("write policy: %v", err)
	}
	return dir
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
