package test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"nicproxy/test/netlab"
)

// TestDoctor runs nicproxy doctor on the lab host: a real pinned connect
// through each NIC, the ARP flux of two NICs on one subnet, strict
// reverse-path filtering on the non-default NIC, and a missing NIC.
func TestDoctor(t *testing.T) {
	lab := netlab.New(t)
	echo := lab.StartEcho()
	cfg := writeConfig(t, "interfaces: {ens200: {}}\nrules: [{port: [80], via: ens33}]\ndefault: ens160\n")
	res := nicproxy(t, lab, "doctor", "-c", cfg, "--target", echo.TCP.String())
	if res.code != 1 {
		t.Errorf("exit %d, want 1 (ens200 is missing)\n%s%s", res.code, res.stdout, res.stderr)
	}
	for _, nic := range []netlab.NIC{netlab.Ens33, netlab.Ens160} {
		s := doctorSection(t, res.stdout, nic.Name)
		for _, want := range []string{
			"ok    up          up, carrier",
			"ok    connect     " + echo.TCP.String() + " from " + nic.Addr.String() + ":",
			"warn  arp         shares a subnet with",
			"ok    permission  this process can pin sockets to " + nic.Name,
			"ok    rp_filter   0 (off)",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("%s: lacks %q:\n%s", nic.Name, want, s)
			}
		}
	}
	if s := doctorSection(t, res.stdout, "ens200"); !strings.Contains(s, "FAIL  exists      no NIC named ens200 on this host (have: ens33, ens160)") {
		t.Errorf("ens200:\n%s", s)
	}

	// Strict rp_filter drops replies on the NIC that is not the kernel's
	// choice; the ARP fix makes the flux warning go away.
	lab.Sysctl(map[string]string{"net/ipv4/conf/all/rp_filter": "1",
		"net/ipv4/conf/all/arp_ignore": "1", "net/ipv4/conf/all/arp_announce": "2"})
	res = nicproxy(t, lab, "doctor", "-c", writeConfig(t, "rules: [{port: [80], via: ens33}]\ndefault: ens160\n"))
	if res.code != 0 {
		t.Errorf("exit %d, want 0 (warnings only)\n%s", res.code, res.stdout)
	}
	if s := doctorSection(t, res.stdout, "ens160"); !strings.Contains(s, "warn  rp_filter   strict (1): replies to connections pinned to ens160") {
		t.Errorf("ens160 with strict rp_filter:\n%s", s)
	}
	if s := doctorSection(t, res.stdout, "ens33"); !strings.Contains(s, "ok    rp_filter   1 (strict)") {
		t.Errorf("ens33, the default-route NIC, is fine with strict rp_filter:\n%s", s)
	}
	if strings.Contains(res.stdout, "warn  arp") {
		t.Errorf("ARP flux still reported after arp_ignore=1 arp_announce=2:\n%s", res.stdout)
	}
}

// doctorSection is what doctor says about nic: the indented lines under
// its name.
func doctorSection(t *testing.T, out, nic string) string {
	t.Helper()
	_, rest, ok := strings.Cut(out, "\n"+nic+"\n")
	if !ok && strings.HasPrefix(out, nic+"\n") {
		rest, ok = strings.TrimPrefix(out, nic+"\n"), true
	}
	if !ok {
		t.Fatalf("no section for %s in:\n%s", nic, out)
	}
	if i := strings.Index(rest, "\n\n"); i >= 0 {
		rest = rest[:i]
	}
	var lines []string
	for _, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// TestDoctorWithoutConfig: doctor without -c checks every NIC that is up
// (loopback is no NIC to pin to).
func TestDoctorWithoutConfig(t *testing.T) {
	lab := netlab.New(t)
	res := nicproxy(t, lab, "doctor")
	if res.code != 0 {
		t.Errorf("exit %d, want 0 (warnings only)\n%s%s", res.code, res.stdout, res.stderr)
	}
	for _, nic := range []string{"ens33", "ens160"} {
		if s := doctorSection(t, res.stdout, nic); !strings.Contains(s, "ok    permission  this process can pin sockets to "+nic) {
			t.Errorf("%s: no permission check:\n%s", nic, s)
		}
	}
	if strings.HasPrefix(res.stdout, "lo\n") || strings.Contains(res.stdout, "\nlo\n") {
		t.Errorf("doctor checked the loopback interface:\n%s", res.stdout)
	}
	lab.SetDown("ens160")
	res = nicproxy(t, lab, "doctor")
	if strings.Contains(res.stdout, "\nens160\n") || !strings.HasPrefix(res.stdout, "ens33\n") {
		t.Errorf("with ens160 down, doctor without -c checked:\n%s", res.stdout)
	}
}

// TestDoctorPermission: run without the privilege a configured mark needs
// (as nobody with no capability), doctor fails the permission check,
// says what is missing, and exits 1.
func TestDoctorPermission(t *testing.T) {
	lab := netlab.New(t)
	launcher, config := asNobody(t, "interfaces: {ens33: {mark: 42}}\ndefault: ens33\n", false)
	cmd := lab.Command(launcher, "doctor", "-c", config)
	cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("doctor as nobody: %v, want exit 1\n%s", err, out)
	}
	want := "FAIL  permission  cannot set mark 0x2a on ens33's sockets: "
	if s := doctorSection(t, string(out), "ens33"); !strings.Contains(s, want) || !strings.Contains(s, "CAP_NET_ADMIN") {
		t.Errorf("ens33: lacks %q naming the capability:\n%s", want, s)
	}
}
