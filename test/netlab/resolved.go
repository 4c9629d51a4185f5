package netlab

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
)

// Resolved is a systemd-resolved-like per-link DNS source for the lab: a
// private D-Bus system bus (dbus-daemon from Debian's dbus package) and,
// on it, test/fakeresolved in the host namespace exporting
// org.freedesktop.resolve1 with each NIC's own servers.
type Resolved struct {
	lab   *Lab
	state string
	// byIndex names links by the host namespace's indexes ("@3"), for a
	// service that runs outside it.
	byIndex bool
	// Bus is the bus's address, for DBUS_SYSTEM_BUS_ADDRESS.
	Bus   string
	proc  *exec.Cmd
	lines chan string
}

// busConfig is a system bus that lets root own and call anything: the
// lab's bus has no other users.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// StartResolved starts a private system bus and binary (test/fakeresolved,
// built by the test) on it in the host namespace, naming servers per NIC,
// and stops both when the test ends. Processes started after it find the
// bus through DBUS_SYSTEM_BUS_ADDRESS, which it sets for the test
// (t.Setenv: such a test cannot run in parallel).
func (l *Lab) StartResolved(binary string, servers map[string][]netip.Addr) *Resolved {
	l.t.Helper()
	return l.startResolved(binary, servers, true)
}

// StartResolvedOutside is StartResolved with the service in the test's own
// network namespace instead of the lab's host, as a systemd-resolved of the
// real host is to a nicproxy run in a namespace: it names the host
// namespace's links by their indexes, which there are other links'.
func (l *Lab) StartResolvedOutside(binary string, servers map[string][]netip.Addr) *Resolved {
	l.t.Helper()
	return l.startResolved(binary, servers, false)
}

func (l *Lab) startResolved(binary string, servers map[string][]netip.Addr, inHost bool) *Resolved {
	l.t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		SkipOrFail(l.t, "dbus-daemon (Debian's dbus package) is not installed")
	}
	dir := l.t.TempDir()
	socket := filepath.Join(dir, "system_bus_socket")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, busConfig, socket), 0o644); err != nil {
		l.t.Fatal(err)
	}
	bus := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile")
	if out, err := bus.StderrPipe(); err == nil {
		go func() { _, _ = bufio.NewReader(out).WriteTo(os.Stderr) }()
	}
	if err := bus.Start(); err != nil {
		l.t.Fatalf("dbus-daemon: %v", err)
	}
	l.t.Cleanup(func() { _ = bus.Process.Kill(); _ = bus.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(socket); err == nil {
			break
		}
		if time.Now().After(deadline) {
			l.t.Fatal("dbus-daemon made no socket within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := &Resolved{lab: l, state: filepath.Join(dir, "links"), Bus: "unix:path=" + socket, lines: make(chan string, 16), byIndex: !inHost}
	l.t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", r.Bus)
	r.write(servers)

	r.proc = exec.Command("ip", "netns", "exec", l.Host, binary, "-state", r.state)
	if !inHost {
		r.proc = exec.Command(binary, "-state", r.state)
	}
	r.proc.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+r.Bus)
	r.proc.Stderr = os.Stderr
	stdout, err := r.proc.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := r.proc.Start(); err != nil {
		l.t.Fatalf("fakeresolved: %v", err)
	}
	go func() {
		defer close(r.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
	}()
	l.t.Cleanup(func() {
		_ = r.proc.Process.Signal(syscall.SIGTERM)
		_ = r.proc.Wait()
	})
	r.expect("ready")
	return r
}

// Set changes the NICs' servers (a NIC left out keeps none) and waits
// until the service has published them.
func (r *Resolved) Set(servers map[string][]netip.Addr) {
	r.lab.t.Helper()
	r.write(servers)
	if err := r.proc.Process.Signal(syscall.SIGHUP); err != nil {
		r.lab.t.Fatal(err)
	}
	r.expect("updated")
}

func (r *Resolved) write(servers map[string][]netip.Addr) {
	r.lab.t.Helper()
	var lines []string
	for _, nic := range []string{Ens33.Name, Ens160.Name} {
		fields := []string{nic}
		if r.byIndex {
			fields[0] = fmt.Sprintf("@%d", r.lab.index(nic))
		}
		for _, a := range servers[nic] {
			fields = append(fields, a.String())
		}
		lines = append(lines, strings.Join(fields, " "))
	}
	sort.Strings(lines)
	if err := os.WriteFile(r.state, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		r.lab.t.Fatal(err)
	}
}

func (r *Resolved) expect(want string) {
	r.lab.t.Helper()
	select {
	case line, ok := <-r.lines:
		if !ok || line != want {
			r.lab.t.Fatalf("fakeresolved said %q (open %v), want %q", line, ok, want)
		}
	case <-time.After(10 * time.Second):
		r.lab.t.Fatalf("fakeresolved did not say %q within 10s", want)
	}
}

// index is a host NIC's link index in the host namespace.
func (l *Lab) index(nic string) int {
	l.t.Helper()
	var index int
	err := l.withHandle(l.Host, func(h *netlink.Handle) error {
		link, err := h.LinkByName(nic)
		if err == nil {
			index = link.Attrs().Index
		}
		return err
	})
	if err != nil {
		l.t.Fatalf("index of %s: %v", nic, err)
	}
	return index
}
