package packaging

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nicproxy/test/e2e"
	"nicproxy/test/netlab"
)

// The minimal Debian the units are tried in: systemd 252, as on a fresh
// bookworm server, and iproute2, which the package recommends for the
// source-rule script (a server has it; minbase does not). Built once by
// debootstrap and kept, since building it is most of this test's cost; the
// directory is named by what it holds, so a change of the list builds anew.
const (
	nspawnSuite     = "bookworm"
	nspawnPackages  = "systemd,iproute2"
	nspawnCacheRoot = "/var/cache/nicproxy-test/debian-" + nspawnSuite + "-systemd-iproute2"
)

// TestSystemdUnitUnderSystemd installs the .deb in a minimal Debian booted
// with systemd as PID 1 (systemd-nspawn -b) inside the lab's host
// namespace, so the container has ens33 and ens160, and runs the unit as an
// operator would: enable --now reaches active through Type=notify, traffic
// from the dynamic user leaves through the NIC the file names (proved by
// the address the server saw and by the NICs' counters), reload applies a
// good file and keeps an open tunnel, reload of a bad file fails the
// caller and keeps serving, stop stops, and a bad file at start ends in
// `failed` after the start limit instead of restarting for ever.
func TestSystemdUnitUnderSystemd(t *testing.T) {
	root := nspawnRoot(t)
	lab := e2e.StartServing(t)

	debDir := t.TempDir()
	build := exec.Command("../../deploy/build-deb.sh")
	build.Env = append(os.Environ(), "OUT="+debDir, "VERSION=1.2.3~nspawn")
	debPath, err := build.Output()
	if err != nil {
		t.Fatalf("build-deb.sh: %v", err)
	}
	deb := filepath.Base(strings.TrimSpace(string(debPath)))

	box := bootContainer(t, root, lab.Lab, debDir)
	run := func(stdin string, args ...string) (string, error) {
		t.Helper()
		return box.run(stdin, args...)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := run("", args...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	writeConf := func(text string) {
		t.Helper()
		if out, err := run(text, "sh", "-c", "cat > /etc/nicproxy/config.yaml"); err != nil {
			t.Fatalf("write the config: %v %s", err, out)
		}
	}
	show := func(props ...string) map[string]string {
		t.Helper()
		out := must("systemctl", "show", "nicproxy", "-p", strings.Join(props, ","))
		got := map[string]string{}
		for _, line := range strings.Split(out, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				got[k] = v
			}
		}
		return got
	}
	flowVia := func(want, other netlab.NIC) {
		t.Helper()
		before := lab.Lab.Snapshot()
		seen, sent := e2e.CurlUpload(t, lab.Lab, lab.Web, nil, e2e.URL(lab.Web, "http", netlab.Server.String(), "/echo"), "--proxy", "socks5h://127.0.0.1:1080")
		e2e.CheckPinned(t, before, seen, sent, want, other)
	}

	if out := must("dpkg", "-i", "/mnt/deb/"+deb); strings.Contains(out, "warning") || strings.Contains(out, "error") {
		t.Errorf("dpkg -i said:\n%s", out)
	}
	if st := show("UnitFileState", "ActiveState"); st["UnitFileState"] != "disabled" || st["ActiveState"] != "inactive" {
		t.Errorf("after install: %v, want disabled and inactive until the operator enables it", st)
	}
	// --man=no: verify would run man(1) for Documentation=man:, and a
	// minimal Debian has no man-db; the page itself is checked below.
	if out, err := run("", "systemd-analyze", "verify", "--man=no", "nicproxy.service"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify on a minimal Debian: %v\n%s", err, out)
	}

	good := "listen: [{addr: 127.0.0.1:1080}]\ndefault: ens160\n"
	writeConf(good)
	must("systemctl", "enable", "--now", "nicproxy")
	st := show("ActiveState", "SubState", "StatusText", "MainPID", "Type")
	if st["ActiveState"] != "active" || st["SubState"] != "running" || st["Type"] != "notify" || st["StatusText"] != "serving" {
		t.Fatalf("after enable --now: %v\n%s", st, box.journal())
	}
	status := must("cat", "/proc/"+st["MainPID"]+"/status")
	if uid := e2e.ProcField(status, "Uid:"); uid == "" || uid == "0" {
		t.Errorf("the service runs as uid %q, want a dynamic unprivileged user", uid)
	}
	flowVia(netlab.Ens160, netlab.Ens33)

	t.Run("reload applies a good file and keeps an open tunnel", func(t *testing.T) {
		tunnel := e2e.DialProxyAt(t, lab.Lab, "127.0.0.1:1080")
		defer tunnel.Close()
		if rep, err := e2e.SOCKS5Dial(tunnel, "", "", netlab.Server.String(), lab.Echo.TCP.Port()); err != nil || rep != 0 {
			t.Fatalf("connect: %#x %v", rep, err)
		}
		r := bufio.NewReader(tunnel)
		if seen := netlab.MustSeen(t, r); seen.Addr() != netlab.Ens160.Addr {
			t.Fatalf("tunnel on %v, want ens160", seen.Addr())
		}
		writeConf("listen: [{addr: 127.0.0.1:1080}]\ndefault: ens33\n")
		must("systemctl", "reload", "nicproxy")
		flowVia(netlab.Ens33, netlab.Ens160)
		if _, err := io.WriteString(tunnel, "ping"); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4)
		if _, err := io.ReadFull(r, got); err != nil || string(got) != "ping" {
			t.Errorf("the tunnel opened before the reload broke: %q %v", got, err)
		}
	})

	t.Run("reload of a bad file fails the caller and keeps serving", func(t *testing.T) {
		writeConf("listen: [{addr: 127.0.0.1:1080}]\ndefault: ens16O\n")
		out, err := run("", "systemctl", "reload", "nicproxy")
		if err == nil {
			t.Errorf("systemctl reload of a bad file succeeded:\n%s", out)
		}
		if j := box.journal(); !strings.Contains(j, `/etc/nicproxy/config.yaml:2:10: default: unknown interface "ens16O" (have: ens33, ens160)`) {
			t.Errorf("the journal lacks the error:\n%s", j)
		}
		if st := show("ActiveState"); st["ActiveState"] != "active" {
			t.Errorf("after a failed reload: %v", st)
		}
		// A SIGHUP that goes around the check (kill -HUP) is logged and
		// shown in systemctl status until the next good reload.
		must("systemctl", "kill", "-s", "HUP", "--kill-whom=main", "nicproxy")
		const want = `serving the previous configuration: reload failed: /etc/nicproxy/config.yaml:2:10: default: unknown interface "ens16O"`
		deadline := time.Now().Add(10 * time.Second)
		for st := show("StatusText"); !strings.HasPrefix(st["StatusText"], want); st = show("StatusText") {
			if time.Now().After(deadline) {
				t.Fatalf("status text %q, want it to start %q", st["StatusText"], want)
			}
			time.Sleep(50 * time.Millisecond)
		}
		flowVia(netlab.Ens33, netlab.Ens160)
	})

	t.Run("both units, as systemd loaded them, rate exposure 2.0 or less", func(t *testing.T) {
		// The source-rule unit is not started here: a container has no
		// udev, so the NIC's device unit it binds to never appears (the
		// script's own run with the unit's privileges alone is in
		// TestResetForAGoneSocket).
		for _, unit := range []string{"nicproxy.service", "nicproxy-source-rule@ens160.service"} {
			out, err := run("", "systemd-analyze", "security", "--no-pager", unit)
			if level, ok := exposure(out); err != nil || !ok || level > 2.0 {
				t.Errorf("systemd-analyze security %s: %v, level %v, want 2.0 or less\n%s", unit, err, level, exposed(out))
			}
		}
		out, err := run("", "systemctl", "show", "nicproxy-source-rule@ens160", "-p", "DynamicUser,CapabilityBoundingSet,AmbientCapabilities")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		slices.Sort(lines)
		if want := []string{"AmbientCapabilities=cap_net_admin", "CapabilityBoundingSet=cap_net_admin", "DynamicUser=yes"}; err != nil || !slices.Equal(lines, want) {
			t.Errorf("the source-rule unit as loaded: %v: %q, want %q", err, lines, want)
		}
	})

	t.Run("stop", func(t *testing.T) {
		must("systemctl", "stop", "nicproxy")
		if st := show("ActiveState", "Result"); st["ActiveState"] != "inactive" || st["Result"] != "success" {
			t.Errorf("after stop: %v", st)
		}
	})

	t.Run("a bad file ends in failed after the start limit", func(t *testing.T) {
		// The file is still bad. start fails at once (ExecStartPre), then
		// Restart=on-failure tries again every 2s until the start limit.
		if out, err := run("", "systemctl", "start", "nicproxy"); err == nil {
			t.Errorf("start with a bad file succeeded:\n%s", out)
		}
		deadline := time.Now().Add(40 * time.Second)
		for !strings.Contains(box.journal(), "Start request repeated too quickly") {
			if time.Now().After(deadline) {
				t.Fatalf("the start limit was not hit within 40s:\n%s", box.journal())
			}
			time.Sleep(200 * time.Millisecond)
		}
		st := show("ActiveState", "NRestarts")
		if st["ActiveState"] != "failed" {
			t.Errorf("after the start limit: %v", st)
		}
		if n, _ := strconv.Atoi(st["NRestarts"]); n < 1 || n > 5 {
			t.Errorf("restarts = %s, want a few", st["NRestarts"])
		}
	})

	t.Run("purge", func(t *testing.T) {
		must("systemctl", "reset-failed", "nicproxy")
		must("systemctl", "disable", "nicproxy")
		must("dpkg", "--purge", "nicproxy")
		if out, err := run("", "ls", "/etc/nicproxy", "/usr/bin/nicproxy"); err == nil {
			t.Errorf("left behind after purge:\n%s", out)
		}
	})
}

// nspawnRoot returns a minimal Debian tree with systemd, building it with
// debootstrap when CI asks for the test (NICPROXY_SYSTEMD_NSPAWN=1) and
// none is cached; otherwise the test skips and says why.
func nspawnRoot(t *testing.T) string {
	t.Helper()
	required := os.Getenv("NICPROXY_SYSTEMD_NSPAWN") == "1"
	skip := func(format string, args ...any) {
		t.Helper()
		if required {
			t.Fatalf(format, args...)
		}
		t.Skipf("skipping: "+format, args...)
	}
	if os.Geteuid() != 0 {
		skip("booting a container needs root")
	}
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		skip("systemd-nspawn is not installed (Debian: systemd-container)")
	}
	if dir := os.Getenv("NICPROXY_NSPAWN_ROOT"); dir != "" {
		return dir
	}
	if _, err := os.Stat(filepath.Join(nspawnCacheRoot, "usr/lib/systemd/systemd")); err == nil {
		return nspawnCacheRoot
	}
	if !required {
		skip("no minimal Debian at %s; building one with debootstrap downloads about 100 MB and takes a minute, "+
			"so it is done only with NICPROXY_SYSTEMD_NSPAWN=1 (CI sets it)", nspawnCacheRoot)
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		skip("debootstrap is not installed")
	}
	tmp := nspawnCacheRoot + ".tmp"
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// No mirror argument: debootstrap's own default.
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+nspawnPackages, nspawnSuite, tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap: %v\n%s", err, lastLines(out, 20))
	}
	if err := os.Rename(tmp, nspawnCacheRoot); err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %v", nspawnCacheRoot, time.Since(start).Round(time.Second))
	return nspawnCacheRoot
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// container is a booted systemd-nspawn machine.
type container struct {
	t      *testing.T
	leader int // the container's PID 1, as the host sees it
}

// bootContainer boots root read-only with a throw-away overlay (the cached
// tree stays clean), in the lab's host namespace, with debDir at /mnt/deb,
// and waits until systemd has finished booting. The container is powered
// off when the test ends.
func bootContainer(t *testing.T, root string, lab *netlab.Lab, debDir string) *container {
	t.Helper()
	// A file, not a buffer: systemd-nspawn writes while the test reads.
	logPath := filepath.Join(t.TempDir(), "nspawn.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the child holds its own copy
	output := func() string {
		b, _ := os.ReadFile(logPath)
		return lastLines(b, 40)
	}
	nspawn := exec.Command("systemd-nspawn", "-q", "-D", root, "--volatile=overlay",
		// The host runs no systemd: no machined to register with, no
		// scope to create; stay in the test's own cgroup.
		"--register=no", "--keep-unit", "--console=passive",
		"--network-namespace-path=/run/netns/"+lab.Host,
		"--bind-ro="+debDir+":/mnt/deb", "-b")
	nspawn.Stdout, nspawn.Stderr = logFile, logFile
	if err := nspawn.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = nspawn.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		booted := output()
		if leader := containerInit(nspawn.Process.Pid); leader > 0 {
			_ = exec.Command("nsenter", "-t", strconv.Itoa(leader), "-a", "systemctl", "poweroff").Run()
		}
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Logf("the container did not power off within 20s; killing systemd-nspawn")
			_ = nspawn.Process.Signal(syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("systemd-nspawn output before power-off:\n%s", booted)
		}
	})

	// A bound on a hang, not a goal: systemd's boot on a busy machine
	// has taken more than 30 s.
	const bootWait = 2 * time.Minute
	deadline := time.Now().Add(bootWait)
	c := &container{t: t}
	for c.leader == 0 {
		select {
		case <-done:
			t.Fatalf("systemd-nspawn exited:\n%s", output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no container PID 1 within %v:\n%s", bootWait, output())
		}
		time.Sleep(50 * time.Millisecond)
		c.leader = containerInit(nspawn.Process.Pid)
	}
	// --wait returns once boot is over: "running", or "degraded" if some
	// unit of the minimal system failed, which is not ours to judge. Until
	// systemd listens, systemctl fails: try again.
	for {
		state, err := c.run("", "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(state)
		if state == "running" || state == "degraded" {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container did not finish booting within %v: %q %v\n%s", bootWait, state, err, output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run runs a command inside the container, with stdin, and returns its
// combined output.
func (c *container) run(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.leader), "-a", "--"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_PAGER=", "LANG=C.UTF-8"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// journal is the unit's journal so far.
func (c *container) journal() string {
	out, err := c.run("", "journalctl", "-u", "nicproxy", "--no-pager", "-o", "cat")
	if err != nil {
		return fmt.Sprintf("journalctl: %v\n%s", err, out)
	}
	return out
}

// containerInit returns the container's PID 1 as the host sees it: the
// descendant of systemd-nspawn (pid) that is PID 1 of a PID namespace of
// its own, or 0 while there is none. Not merely nspawn's first child:
// nspawn first forks an outer child that sets the container up, forks the
// real init and exits, and a test that took the outer child for init kept
// a PID that was gone ("nsenter: stat of /proc/N/ns/user failed").
func containerInit(pid int) int {
	for _, child := range children(pid) {
		if isNamespaceInit(child) {
			return child
		}
		if init := containerInit(child); init > 0 {
			return init
		}
	}
	return 0
}

// children lists pid's children.
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// isNamespaceInit reports whether pid is PID 1 of its innermost PID
// namespace: the last field of its status's NSpid line is 1.
func isNamespaceInit(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if ids, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(ids)
			return len(f) > 1 && f[len(f)-1] == "1"
		}
	}
	return false
}
