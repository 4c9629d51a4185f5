package test

import (
	"os"
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
		if res := nicproxy(t, lab, "reload", "-c", path, "99999999"); res.code != 1 || !strings.Contains(res.stderr, "signal pid 99999999: no such process") {
			t.Errorf("gone: exit %d: %s", res.code, res.stderr)
		}
	})
}
