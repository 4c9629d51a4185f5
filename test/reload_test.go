package test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// TestReloadCommandAndMetrics: `nicproxy reload` (the unit's ExecReload)
// checks the file before it signals, so a bad file fails the caller with
// exit 2 and its errors while the daemon is left alone; a good one is
// signalled and applied. A failed SIGHUP is logged once, and
// nicproxy_config_reloads_total{result} and
// nicproxy_config_last_reload_success_timestamp_seconds follow every outcome.
func TestReloadCommandAndMetrics(t *testing.T) {
	lab := netlab.New(t)
	const good = "listen: [{addr: 127.0.0.1:1080}]\nadmin: {addr: 127.0.0.1:9090}\ndefault: ens33\n"
	const bad = "listen: [{addr: 127.0.0.1:1080}]\nadmin: {addr: 127.0.0.1:9090}\ndefault: ens16O\n"
	const badError = `:3:10: default: unknown interface "ens16O" (have: ens33, ens160)`
	path := writeConfig(t, good)
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-c", path)
	pid := strconv.Itoa(proc.Pid())
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	metrics := func() string {
		t.Helper()
		out, stderr, err := lab.Curl("--fail", "http://127.0.0.1:9090/metrics")
		if err != nil {
			t.Fatalf("GET /metrics: %v: %s", err, stderr)
		}
		return out
	}
	reloads := func(result string) float64 {
		t.Helper()
		return metric(t, metrics(), `nicproxy_config_reloads_total{result="`+result+`"}`)
	}
	lastGood := func() float64 {
		t.Helper()
		return metric(t, metrics(), "nicproxy_config_last_reload_success_timestamp_seconds")
	}
	waitFor := func(t *testing.T, what string, cond func() bool) {
		t.Helper()
		eventually(t, 5*time.Second, cond, func() string { return what + "\n" + proc.Output() })
	}

	started := lastGood()
	if now := float64(time.Now().Unix()); started < now-60 || started > now+1 {
		t.Errorf("last good load at start-up = %v, want about %v", started, now)
	}
	if s, f := reloads("success"), reloads("failure"); s != 0 || f != 0 {
		t.Errorf("reloads before any: success %v failure %v, want 0 0", s, f)
	}

	t.Run("reload refuses a bad file and signals nothing", func(t *testing.T) {
		write(bad)
		res := nicproxy(t, lab, "reload", "-c", path, pid)
		if res.code != 2 || !strings.Contains(res.stderr, path+badError) ||
			!strings.Contains(res.stderr, "nicproxy reload: not reloading: fix the file; pid "+pid+" keeps serving") {
			t.Errorf("exit %d, want 2 with the error:\n%s", res.code, res.stderr)
		}
		time.Sleep(200 * time.Millisecond) // a SIGHUP, had one been sent, would show by now
		if strings.Contains(proc.Output(), "SIGHUP") {
			t.Errorf("the daemon was signalled:\n%s", proc.Output())
		}
	})

	t.Run("a bad file by SIGHUP is logged once and counted", func(t *testing.T) {
		if err := proc.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a failure counted", func() bool { return reloads("failure") == 1 })
		out := proc.Output()
		if n := strings.Count(out, badError); n != 1 {
			t.Errorf("the error is logged %d times, want once:\n%s", n, out)
		}
		if n := strings.Count(out, "reload failed; still serving the previous configuration"); n != 1 {
			t.Errorf("the failure is logged %d times, want once:\n%s", n, out)
		}
		if got := lastGood(); got != started {
			t.Errorf("a failed reload moved the last success from %v to %v", started, got)
		}
	})

	t.Run("reload applies a good file", func(t *testing.T) {
		write(strings.Replace(good, "default: ens33", "default: ens160", 1))
		time.Sleep(10 * time.Millisecond) // so the new timestamp differs at the metric's resolution
		res := nicproxy(t, lab, "reload", "-c", path, pid)
		if res.code != 0 || !strings.Contains(res.stdout, path+": OK; pid "+pid+" is reloading it") {
			t.Errorf("exit %d:\n%s%s", res.code, res.stdout, res.stderr)
		}
		waitFor(t, "a success counted", func() bool { return reloads("success") == 1 })
		if !strings.Contains(proc.Output(), `reloaded	{"default_via": "ens160"`) {
			t.Errorf("not reloaded:\n%s", proc.Output())
		}
		if got := lastGood(); got <= started {
			t.Errorf("last success %v, want after the start-up's %v", got, started)
		}
		if f := reloads("failure"); f != 1 {
			t.Errorf("failures = %v, want still 1", f)
		}
	})

	t.Run("usage and a process that is gone", func(t *testing.T) {
		if res := nicproxy(t, lab, "reload", "-c", path); res.code != 2 || !strings.Contains(res.stderr, "want the PID of the running nicproxy") {
			t.Errorf("no PID: exit %d: %s", res.code, res.stderr)
		}
		if res := nicproxy(t, lab, "reload", "-c", path, "x1"); res.code != 2 || !strings.Contains(res.stderr, `PID "x1" is not a process id`) {
			t.Errorf("bad PID: exit %d: %s", res.code, res.stderr)
		}
		// pid_max is at most 2^22, so this process cannot exist.
		if res := nicproxy(t, lab, "reload", "-c", path, "99999999"); res.code != 1 || res.stderr != "nicproxy reload: pid 99999999: no such process\n" {
			t.Errorf("gone: exit %d: %s", res.code, res.stderr)
		}
	})
}

// TestReloadRefusesWhatIsNotNicproxy: `nicproxy reload PID` reads what PID
// runs and signals only a serving nicproxy: `sleep 300 & nicproxy reload
// $!` is refused with exit 2 and the sleep lives on, and so does a
// nicproxy that is not serving (hash-password waiting for its password).
func TestReloadRefusesWhatIsNotNicproxy(t *testing.T) {
	lab := netlab.New(t)
	sleepPath, err := exec.LookPath("sleep")
	if err == nil {
		sleepPath, err = filepath.EvalSymlinks(sleepPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command(sleepPath, "300")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(sleep.Process.Pid)
	res := nicproxy(t, lab, "reload", pid)
	want := "nicproxy reload: pid " + pid + " is " + sleepPath + ", not nicproxy: not signalled (SIGHUP would stop most programs)\n"
	if res.code != 2 || res.stdout != "" || res.stderr != want {
		t.Errorf("reload of sleep: exit %d, stdout %q, stderr %q; want 2 and %q", res.code, res.stdout, res.stderr, want)
	}
	// The sleep ends by the SIGTERM sent here, not by a SIGHUP before it.
	if err := sleep.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("the sleep is gone before its SIGTERM: %v", err)
	}
	if sig := killedBy(sleep.Wait()); sig != syscall.SIGTERM {
		t.Errorf("the sleep ended by %v, want the SIGTERM sent after the reload", sig)
	}

	hash := lab.Command(nicproxyBinary, "hash-password")
	stdin, err := hash.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hash.Start(); err != nil {
		t.Fatal(err)
	}
	pid = strconv.Itoa(hash.Process.Pid) // ip netns exec becomes nicproxy
	res = nicproxy(t, lab, "reload", pid)
	want = "nicproxy reload: pid " + pid + ` is "` + nicproxyBinary + ` hash-password", not a serving nicproxy: not signalled` + "\n"
	if res.code != 2 || res.stderr != want {
		t.Errorf("reload of hash-password: exit %d, stderr %q; want 2 and %q", res.code, res.stderr, want)
	}
	stdin.Close() // an empty password: it exits 2 by itself
	if err := hash.Wait(); exitCode(err) != 2 {
		t.Errorf("hash-password ended with %v, want exit 2 for the empty password, not a signal", err)
	}
}

// killedBy is the signal that ended a process whose Wait returned err.
func killedBy(err error) syscall.Signal {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal()
		}
	}
	return 0
}

// TestReloadChecksTheFileItsPIDServes: without -c, `nicproxy reload PID`
// checks the file PID was started with (a relative -c, resolved against
// PID's working directory, not the caller's), not the embedded default:
// a bad one fails before any signal, a good one is signalled and applied.
// A -c naming another file is refused.
func TestReloadChecksTheFileItsPIDServes(t *testing.T) {
	lab := netlab.New(t)
	const good = "listen: [{addr: 127.0.0.1:1080}]\ndefault: ens33\n"
	path := writeConfig(t, good)
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(cwd, path)
	if err != nil {
		t.Fatal(err)
	}
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "run", "-c", rel)
	pid := strconv.Itoa(proc.Pid())
	elsewhere := t.TempDir() // where rel names nothing
	reload := func(args ...string) result {
		t.Helper()
		cmd := lab.Command(nicproxyBinary, append([]string{"reload"}, args...)...)
		cmd.Dir = elsewhere
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if exitCode(err) < 0 {
			t.Fatalf("run nicproxy reload: %v", err)
		}
		return result{stdout.String(), stderr.String(), exitCode(err)}
	}

	if err := os.WriteFile(path, []byte(strings.Replace(good, "ens33", "ens16O", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	res := reload(pid)
	want := path + `:2:10: default: unknown interface "ens16O" (have: ens33, ens160)` + "\n" +
		"nicproxy reload: not reloading: fix the file; pid " + pid + " keeps serving its running configuration\n"
	if res.code != 2 || res.stdout != "" || res.stderr != want {
		t.Errorf("reload with the file pid serves bad: exit %d, stdout %q, stderr %q; want 2 and %q", res.code, res.stdout, res.stderr, want)
	}

	other := writeConfig(t, good)
	res = reload("-c", other, pid)
	want = "nicproxy reload: -c " + other + ": pid " + pid + " serves " + path + ", which a SIGHUP re-reads: not signalled\n"
	if res.code != 2 || res.stderr != want {
		t.Errorf("reload -c another file: exit %d, stderr %q; want 2 and %q", res.code, res.stderr, want)
	}

	if err := os.WriteFile(path, []byte(strings.Replace(good, "ens33", "ens160", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	res = reload(pid)
	if want := path + ": OK; pid " + pid + " is reloading it (its log says when it is done)\n"; res.code != 0 || res.stdout != want {
		t.Errorf("reload with the file fixed: exit %d, stdout %q, stderr %q; want 0 and %q", res.code, res.stdout, res.stderr, want)
	}
	eventually(t, 5*time.Second, func() bool { return strings.Contains(proc.Output(), `reloaded	{"default_via": "ens160"`) },
		func() string { return "not reloaded:\n" + proc.Output() })
	// One SIGHUP reached it, the good file's: the refused reloads sent none.
	if out := proc.Output(); strings.Count(out, "SIGHUP: reloading") != 1 || strings.Contains(out, "reload failed") {
		t.Errorf("want exactly one SIGHUP, and no failed reload, in the log:\n%s", out)
	}
}
