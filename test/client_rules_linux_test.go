package test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"nicproxy/test/netlab"
)

// cgroupTree is a cgroup v2 hierarchy the test mounts itself (this host
// may mount cgroup v1 only), where clients are started in cgroups named
// like systemd's.
type cgroupTree struct {
	mount string
}

func mountCgroup2(t testing.TB) *cgroupTree {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("none", dir, "cgroup2", 0, ""); err != nil {
		netlab.SkipOrFail(t, "mount cgroup2: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return &cgroupTree{mount: dir}
}

// make creates cgroup path (removed when the test ends, once empty).
func (c *cgroupTree) make(t testing.TB, path string) string {
	t.Helper()
	dir := filepath.Join(c.mount, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 { // its last process may still be exiting
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return dir
}

// curlIn runs curl (or the binary given) in the host namespace, inside
// cgroup path, optionally as another user (setpriv), uploading a random
// payload to /echo through the proxy at 127.0.0.1:1080; it returns the
// flow the server saw.
func (c *cgroupTree) curlIn(t *testing.T, lab *servingLab, path, curl, asUser string) flow {
	t.Helper()
	return c.curlVia(t, lab, "127.0.0.1:1080", path, curl, asUser)
}

// curlVia is curlIn through the proxy at proxy.
func (c *cgroupTree) curlVia(t *testing.T, lab *servingLab, proxy, path, curl, asUser string) flow {
	t.Helper()
	dir := c.make(t, path)
	payload := make([]byte, 64<<10)
	_, _ = rand.Read(payload)
	run := []string{curl}
	if asUser != "" {
		run = []string{"setpriv", "--reuid=" + asUser, "--regid=" + asUser, "--clear-groups", curl}
	}
	args := append(inCgroup(dir, run...), "--disable", "--silent", "--show-error", "--max-time", "20",
		"--proxy", "socks5h://"+proxy, "--data-binary", "@-", "-o", "/dev/null", "-D", "-",
		lab.url("http", "web.test", "/echo"))
	cmd := lab.Command("sh", args...)
	cmd.Stdin = bytes.NewReader(payload)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s in %s: %v: %s", curl, path, err, errOut.String())
	}
	return flow{seen: seenHeader(t, out.String()), sent: len(payload)}
}

// inCgroup is the sh arguments that run argv inside the cgroup directory
// dir: the shell joins the cgroup, then becomes argv, so the program's
// sockets are made in the cgroup, as a systemd service's are.
func inCgroup(dir string, argv ...string) []string {
	return append([]string{"-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, dir}, argv...)
}

// TestClientRules: rules by systemd unit, user id, program name and cgroup, each
// flow proven by the address the server saw and by the other NIC sending
// nothing; the access log and /api/status say who the client was; a
// client gone before the lookup matches no such rule and is counted.
func TestClientRules(t *testing.T) {
	lab := newServingLab(t)
	tree := mountCgroup2(t)
	curl, err := exec.LookPath("curl")
	if err != nil {
		netlab.SkipOrFail(t, "no curl: %v", err)
	}
	// A second program: curl under another name, in a directory nobody
	// can read too.
	curlCopy := filepath.Join(t.TempDir(), "curl-ens33")
	if data, err := os.ReadFile(curl); err != nil || os.WriteFile(curlCopy, data, 0o755) != nil {
		t.Fatalf("copy curl: %v", err)
	}
	_ = os.Chmod(filepath.Dir(curlCopy), 0o755)
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
listen: [{addr: 127.0.0.1:1080}, {addr: "[::1]:1080"}]
admin: {addr: 127.0.0.1:9090}
log: {format: json}
rules:
  - {name: apt, unit: [t-apt.service], via: ens33}
  - {name: nobody, uid: [65534], via: ens33}
  - {name: copy, program: [curl-ens33], via: ens33}
  - {name: jobs, cgroup: [/t-jobs.slice], via: ens33}
default: ens160
`)
	entry := 0
	access := func(t *testing.T) map[string]any {
		t.Helper()
		e := nextAccess(t, proc, entry)
		entry++
		return e
	}
	tests := []struct {
		name, cgroup, curl, user string
		want, other              netlab.NIC
		rule, unit, program      string
		uid                      float64
	}{
		{"unit rule", "/system.slice/t-apt.service", curl, "", netlab.Ens33, netlab.Ens160, "apt", "t-apt.service", "", 0},
		{"another unit: default", "/system.slice/t-other.service", curl, "", netlab.Ens160, netlab.Ens33, "default", "t-other.service", "curl", 0},
		{"uid rule (nobody)", "/system.slice/t-nobody.service", curl, "65534", netlab.Ens33, netlab.Ens160, "nobody", "t-nobody.service", "", 65534},
		{"program rule", "/user.slice/t-prog.scope", curlCopy, "", netlab.Ens33, netlab.Ens160, "copy", "t-prog.scope", "curl-ens33", 0},
		{"another program: default", "/user.slice/t-prog.scope", curl, "", netlab.Ens160, netlab.Ens33, "default", "t-prog.scope", "curl", 0},
		{"cgroup rule, a cgroup below it", "/t-jobs.slice/t-job-1.scope", curl, "", netlab.Ens33, netlab.Ens160, "jobs", "t-job-1.scope", "curl", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := lab.Snapshot()
			f := tree.curlIn(t, lab, tt.cgroup, tt.curl, tt.user)
			checkPinned(t, before, f, tt.want, tt.other)
			e := access(t)
			if e["rule"] != tt.rule || e["unit"] != tt.unit || e["uid"] != tt.uid || e["program"] != tt.program {
				t.Errorf("access line: rule %v unit %v uid %v program %v; want %s %s %v %q", e["rule"], e["unit"], e["uid"], e["program"], tt.rule, tt.unit, tt.uid, tt.program)
			}
		})
	}
	// The program is looked up only when a program rule is reached:
	// the unit and uid rules matched before one was.
	var status struct {
		Recent []struct {
			Rule, Unit, Program string
			UID                 *uint32
		}
	}
	text := adminGet(t, lab.Lab, "/api/status")
	if err := json.Unmarshal([]byte(text), &status); err != nil || len(status.Recent) != len(tests) {
		t.Fatalf("/api/status: %v, want %d recent connections:\n%s", err, len(tests), text)
	}
	for i, tt := range tests {
		got := status.Recent[len(tests)-1-i] // newest first
		if got.Rule != tt.rule || got.Unit != tt.unit || got.Program != tt.program || got.UID == nil || float64(*got.UID) != tt.uid {
			t.Errorf("/api/status for %s: %+v, want rule %s unit %s program %q uid %v", tt.name, got, tt.rule, tt.unit, tt.program, tt.uid)
		}
	}

	// The exact lookup asks for an IPv6 socket as well: a client on ::1.
	t.Run("unit rule, client on ::1", func(t *testing.T) {
		before := lab.Snapshot()
		f := tree.curlVia(t, lab, "[::1]:1080", "/system.slice/t-apt.service", curl, "")
		checkPinned(t, before, f, netlab.Ens33, netlab.Ens160)
		if e := access(t); e["rule"] != "apt" || e["unit"] != "t-apt.service" || e["client"] == nil || !strings.HasPrefix(fmt.Sprint(e["client"]), "[::1]:") {
			t.Errorf("access line %v: want rule apt, unit t-apt.service, a client on [::1]", e)
		}
	})

	t.Run("route --from-pid and --unit", func(t *testing.T) {
		dir := tree.make(t, "/system.slice/t-apt.service")
		sleeper := lab.Command("sh", inCgroup(dir, "sleep", "60")...)
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
		// ip netns exec becomes sh, then sleep: one pid throughout.
		pid := fmt.Sprint(sleeper.Process.Pid)
		eventually(t, 10*time.Second, func() bool {
			procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			exe, _ := os.Readlink("/proc/" + pid + "/exe")
			return strings.Contains(string(procs), pid+"\n") && filepath.Base(exe) == "sleep"
		}, func() string { return "the sleeper never reached its cgroup" })
		cfg := writeConfig(t, "rules:\n  - {name: apt, unit: [t-apt.service], via: ens33}\n  - {name: sleepers, program: [sleep], via: ens33}\ndefault: ens160\n")
		res := nicproxy(t, lab.Lab, "route", "-c", cfg, "--from-pid", pid, "192.0.2.1:80")
		if res.code != 0 || !strings.Contains(res.stdout, "rule      0 apt\n") || !strings.Contains(res.stdout, "client    unit t-apt.service, cgroup /system.slice/t-apt.service, uid 0, program sleep") {
			t.Errorf("route --from-pid %s: exit %d\n%s%s", pid, res.code, res.stdout, res.stderr)
		}
		res = nicproxy(t, lab.Lab, "route", "-c", cfg, "--unit", "t-other.service", "192.0.2.1:80")
		if res.code != 0 || !strings.Contains(res.stdout, "rule      default\n") {
			t.Errorf("route --unit t-other.service: exit %d\n%s%s", res.code, res.stdout, res.stderr)
		}
	})

	t.Run("clients gone before the lookup match none, are counted, logged once", func(t *testing.T) {
		before := metricOrZero(adminGet(t, lab.Lab, "/metrics"), `nicproxy_client_lookup_failures_total{reason="closed"}`)
		for range 2 {
			goneBeforeLookup(t, lab, proc)
			e := access(t)
			if e["rule"] != "default" || e["client_unknown"] == nil || e["unit"] != "" || e["uid"] != float64(-1) {
				t.Errorf("access line %v: want the default rule, client unknown, no unit nor uid", e)
			}
		}
		eventually(t, 10*time.Second, func() bool {
			return metricOrZero(adminGet(t, lab.Lab, "/metrics"), `nicproxy_client_lookup_failures_total{reason="closed"}`) == before+2
		}, func() string { return "the closed clients were not both counted:\n" + adminGet(t, lab.Lab, "/metrics") })
		if n := strings.Count(proc.Output(), `"reason":"closed","error"`); n != 1 {
			t.Errorf("%d log lines for the reason closed, want 1:\n%s", n, proc.Output())
		}
	})
}

// goneBeforeLookup stops the proxy while a client connects, sends a whole
// request and closes, then lets it run: when it looks the client's socket
// up, no process holds it.
func goneBeforeLookup(t *testing.T, lab *servingLab, proc *netlab.Proc) {
	t.Helper()
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = proc.Signal(syscall.SIGCONT) }()
	conn, err := lab.DialHost("tcp", "127.0.0.1:1080")
	if err != nil {
		t.Fatal(err)
	}
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", lab.url("http", netlab.Server.String(), "/echo"), netlab.Server)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

// metricOrZero is metric for a series that may not exist yet.
func metricOrZero(metrics, series string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			_, _ = fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// TestClientRulesUnprivileged: run as the unit runs (nobody, CAP_NET_RAW
// alone), the exact sock_diag lookup and the cgroup tree still tell a
// root client's unit, so a unit rule pins it; a program rule cannot read
// root's /proc/PID/fd, so it matches none, and that is counted as denied.
func TestClientRulesUnprivileged(t *testing.T) {
	lab := newServingLab(t)
	tree := mountCgroup2(t)
	// t.TempDir's parent is root's alone; the unit's user must reach the
	// mount to walk it.
	if err := os.Chmod(filepath.Dir(tree.mount), 0o755); err != nil {
		t.Fatal(err)
	}
	curl, err := exec.LookPath("curl")
	if err != nil {
		netlab.SkipOrFail(t, "no curl: %v", err)
	}
	launcher, config := asNobody(t, `
listen: [{addr: 127.0.0.1:1080}, {addr: "[::1]:1080"}]
admin: {addr: 127.0.0.1:9090}
log: {format: json}
rules:
  - {name: apt, unit: [t-apt.service], via: ens33}
  - {name: curls, program: [curl], via: ens33}
default: ens160
`, true)
	proc := lab.StartProxy(launcher, "127.0.0.1:1080", "", "run", "-c", config)
	if uid, _ := procCaps(t, proc.Pid()); uid != "65534" {
		t.Fatalf("nicproxy runs as uid %s, want 65534", uid)
	}
	before := lab.Snapshot()
	checkPinned(t, before, tree.curlIn(t, lab, "/system.slice/t-apt.service", curl, ""), netlab.Ens33, netlab.Ens160)
	if e := nextAccess(t, proc, 0); e["rule"] != "apt" || e["unit"] != "t-apt.service" || e["uid"] != float64(0) {
		t.Errorf("access line %v: want rule apt, unit t-apt.service, uid 0", e)
	}
	before = lab.Snapshot()
	checkPinned(t, before, tree.curlIn(t, lab, "/system.slice/t-other.service", curl, ""), netlab.Ens160, netlab.Ens33)
	if e := nextAccess(t, proc, 1); e["rule"] != "default" || e["program"] != "" {
		t.Errorf("access line %v: want the default, no program (root's fds are not nobody's to read)", e)
	}
	if n := metricOrZero(adminGet(t, lab.Lab, "/metrics"), `nicproxy_client_lookup_failures_total{reason="denied"}`); n != 1 {
		t.Errorf("denied lookups counted %v, want 1", n)
	}
}
