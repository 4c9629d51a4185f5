package test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nicproxy/test/e2e"
	"nicproxy/test/netlab"
)

// capNetRaw is CAP_NET_RAW's bit in /proc/PID/status's capability masks.
const capNetRaw = 1 << 13

// asNobody writes a launcher that runs the binary as the systemd unit
// does (deploy/nicproxy.service: DynamicUser, AmbientCapabilities and
// CapabilityBoundingSet CAP_NET_RAW, NoNewPrivileges): as nobody, with
// CAP_NET_RAW and nothing else when netRaw, with no capability at all
// otherwise. The binary and the config are copied where nobody can read
// them.
func asNobody(t *testing.T, config string, netRaw bool) (launcher, configPath string) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		netlab.SkipOrFail(t, "setpriv is not installed (Debian: util-linux)")
	}
	caps := "-all"
	if netRaw {
		caps = "-all,+net_raw"
	}
	dir, err := os.MkdirTemp("", "nicproxy-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	binary, err := os.ReadFile(nicproxyBinary)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "nicproxy")
	configPath = filepath.Join(dir, "config.yaml")
	launcher = filepath.Join(dir, "as-nobody")
	script := fmt.Sprintf("#!/bin/sh\nexec %s --reuid=65534 --regid=65534 --clear-groups --inh-caps=%s --ambient-caps=%s --bounding-set=%s --no-new-privs %s \"$@\"\n",
		setpriv, caps, caps, caps, bin)
	for path, file := range map[string]struct {
		data []byte
		mode os.FileMode
	}{bin: {binary, 0o755}, configPath: {[]byte(config), 0o644}, launcher: {[]byte(script), 0o755}} {
		if err := os.WriteFile(path, file.data, file.mode); err != nil {
			t.Fatal(err)
		}
	}
	return launcher, configPath
}

// procCaps reads a process's user and effective capabilities.
func procCaps(t *testing.T, pid int) (uid string, capEff uint64) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(e2e.ProcField(string(status), "Uid:")); len(f) > 0 {
		uid = f[0]
	}
	if f := e2e.ProcField(string(status), "CapEff:"); f != "" {
		if capEff, err = strconv.ParseUint(f, 16, 64); err != nil {
			t.Fatal(err)
		}
	}
	return uid, capEff
}

// TestRunsAsTheUnitDoes: as nobody with CAP_NET_RAW alone, as the unit
// runs it, nicproxy pins flows as it does as root.
func TestRunsAsTheUnitDoes(t *testing.T) {
	lab := newServingLab(t)
	launcher, config := asNobody(t, "listen: [{addr: \"127.0.0.1:1080\"}]\ndefault: ens160\n", true)
	proc := lab.StartProxy(launcher, "127.0.0.1:1080", "", "run", "-c", config)
	if uid, caps := procCaps(t, proc.Pid()); uid != "65534" || caps != capNetRaw {
		t.Fatalf("nicproxy runs as uid %s with capabilities %#x, want 65534 with CAP_NET_RAW (%#x) alone", uid, caps, capNetRaw)
	}
	for _, proxy := range []string{"socks5h://127.0.0.1:1080", "http://127.0.0.1:1080"} {
		before := lab.Snapshot()
		f := lab.curlUpload(t, nil, lab.url("http", "web.test", "/echo"), "--proxy", proxy)
		checkPinned(t, before, f, netlab.Ens160, netlab.Ens33)
	}
	// The NIC watcher works without CAP_SYS_ADMIN: the log, complete once
	// the process has exited, says nothing of falling back.
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := proc.Wait(15 * time.Second); code != 0 || err != nil {
		t.Fatalf("exit %d, %v after SIGTERM:\n%s", code, err, proc.Output())
	}
	if out := proc.Output(); strings.Contains(out, "watching NICs") || strings.Contains(out, "watch NICs") {
		t.Errorf("the NIC watcher failed as the unit's user:\n%s", out)
	}
}

// TestPermissionFailsClosed: a socket option the process may not set
// (SO_MARK needs CAP_NET_RAW or CAP_NET_ADMIN) fails the flow with SOCKS5
// 0x03 and HTTP 502 naming the NIC, and sends nothing through either NIC.
func TestPermissionFailsClosed(t *testing.T) {
	lab := newServingLab(t)
	launcher, config := asNobody(t, `
listen: [{addr: "127.0.0.1:1080"}]
interfaces: {ens33: {mark: 42}}
default: ens33
timeouts: {handshake: 2s}
`, false)
	proc := lab.StartProxy(launcher, "127.0.0.1:1080", "", "run", "-c", config)
	if uid, caps := procCaps(t, proc.Pid()); uid != "65534" || caps != 0 {
		t.Fatalf("nicproxy runs as uid %s with capabilities %#x, want 65534 with none", uid, caps)
	}
	before := lab.Snapshot()
	rep, err := socks5Dial(dialProxy(t, lab.Lab), "", "", netlab.Server.String(), lab.echo.TCP.Port())
	if err != nil || rep != 0x03 {
		t.Errorf("SOCKS5: reply %#x, %v; want 0x03 (network unreachable)", rep, err)
	}
	resp, _, err := httpConnect(dialProxy(t, lab.Lab), netlab.Server.String(), lab.echo.TCP.Port(), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "via ens33") {
		t.Errorf("HTTP CONNECT: %d %q, want 502 naming ens33", resp.StatusCode, body)
	}
	for _, nic := range []string{"ens33", "ens160"} {
		if tx := before.TxSince(nic); tx != 0 {
			t.Errorf("%s sent %d bytes for a flow that could not be marked", nic, tx)
		}
	}
	eventually(t, 5*time.Second, func() bool { return strings.Count(proc.Output(), "nic-unavailable") >= 2 },
		func() string { return "no access line calls both flows nic-unavailable:\n" + proc.Output() })
}
