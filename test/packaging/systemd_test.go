package packaging

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the shipped
// units, with the binary and script paths pointed at the ones just built,
// and holds both to the exposure level `systemd-analyze security` rates
// OK (2.0 at most): nicproxy.service, and nicproxy-source-rule@.service,
// which needs CAP_NET_ADMIN and nothing else.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		netlab.SkipOrFail(t, "systemd-analyze is not installed (Debian: systemd)")
	}
	script, err := filepath.Abs("../../deploy/nicproxy-source-rule")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"nicproxy.service", "nicproxy-source-rule@.service"} {
		t.Run(name, func(t *testing.T) {
			unit, err := os.ReadFile("../../deploy/" + name)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.NewReplacer("/usr/bin/nicproxy", nicproxyBinary, "/usr/lib/nicproxy/nicproxy-source-rule", script).Replace(string(unit))
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, out)
			}
			// --offline: the file itself, not a loaded unit (there is no
			// systemd to ask); --threshold makes the exit status say it too.
			out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", path).CombinedOutput()
			if err != nil {
				t.Fatalf("systemd-analyze security: %v\n%s", err, out)
			}
			if level, ok := exposure(string(out)); !ok || level > 2.0 {
				t.Errorf("exposure level %v, want 2.0 or less (OK):\n%s", level, exposed(string(out)))
			}
		})
	}
	unit, err := os.ReadFile("../../deploy/nicproxy.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "ExecReload=/usr/bin/nicproxy reload -c /etc/nicproxy/config.yaml $MAINPID", "StartLimitBurst=", "DynamicUser=yes", "/etc/nicproxy/config.yaml"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
}

// exposure reads the overall exposure level from systemd-analyze security.
func exposure(report string) (float64, bool) {
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d)`).FindStringSubmatch(report)
	if m == nil {
		return 0, false
	}
	level, err := strconv.ParseFloat(m[1], 64)
	return level, err == nil
}

// exposed keeps the lines of systemd-analyze security that cost exposure.
func exposed(report string) string {
	var lines []string
	for _, line := range strings.Split(report, "\n") {
		if strings.HasPrefix(line, "✗") || strings.HasPrefix(line, "→") {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}

// TestSystemdNotify plays systemd's side of Type=notify with a real
// NOTIFY_SOCKET: READY=1 once listening, RELOADING=1 then READY=1 around a
// reload, STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	lab := netlab.New(t)
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	messages := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := sock.ReadFromUnix(buf)
			if err != nil {
				close(messages)
				return
			}
			messages <- string(buf[:n])
		}
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case msg := <-messages:
			if !strings.Contains(msg, want) {
				t.Fatalf("got notification %q, want %s", msg, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s notification within 5s", want)
		}
	}

	t.Setenv("NOTIFY_SOCKET", sockPath)
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-i", "ens160")
	expect("READY=1")
	if err := proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expect("RELOADING=1")
	expect("READY=1")
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	expect("STOPPING=1")
	if code, err := proc.Wait(5 * time.Second); err != nil || code != 0 {
		t.Errorf("exit %d %v", code, err)
	}
}
