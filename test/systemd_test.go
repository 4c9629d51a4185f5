package test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"nicproxy/test/netlab"
)

// TestSystemdUnitVerifies runs systemd-analyze verify on the shipped unit,
// with the binary path pointed at the one just built.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		netlab.SkipOrFail(t, "systemd-analyze is not installed (Debian: systemd)")
	}
	unit, err := os.ReadFile("../deploy/nicproxy.service")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(unit), "/usr/bin/nicproxy", nicproxyBinary)
	path := filepath.Join(t.TempDir(), "nicproxy.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, want := range []string{"Type=notify", "ExecReload=/usr/bin/nicproxy reload -c /etc/nicproxy/config.yaml $MAINPID", "StartLimitBurst=", "DynamicUser=yes", "/etc/nicproxy/config.yaml"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
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
