package test

import (
	"fmt"
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
	sysctl := func(assignments ...string) {
		t.Helper()
		for _, a := range assignments {
			key, value, _ := strings.Cut(a, "=")
			path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
			if out, err := lab.Command("sh", "-c", fmt.Sprintf("echo %s > %s", value, path)).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v: %s", a, err, out)
			}
		}
	}
	section := func(out, nic string) string {
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

	res := nicproxy(t, lab, "doctor", "-c", cfg, "--target", echo.TCP.String())
	if res.code != 1 {
		t.Errorf("exit %d, want 1 (ens200 is missing)\n%s%s", res.code, res.stdout, res.stderr)
	}
	for _, nic := range []netlab.NIC{netlab.Ens33, netlab.Ens160} {
		s := section(res.stdout, nic.Name)
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
	if s := section(res.stdout, "ens200"); !strings.Contains(s, "FAIL  exists      no NIC named ens200 on this host (have: ens33, ens160)") {
		t.Errorf("ens200:\n%s", s)
	}

	// Strict rp_filter drops replies on the NIC that is not the kernel's
	// choice; the ARP fix makes the flux warning go away.
	sysctl("net.ipv4.conf.all.rp_filter=1",
		"net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
	res = nicproxy(t, lab, "doctor", "-c", writeConfig(t, "rules: [{port: [80], via: ens33}]\ndefault: ens160\n"))
	if res.code != 0 {
		t.Errorf("exit %d, want 0 (warnings only)\n%s", res.code, res.stdout)
	}
	if s := section(res.stdout, "ens160"); !strings.Contains(s, "warn  rp_filter   strict (1): replies to connections pinned to ens160") {
		t.Errorf("ens160 with strict rp_filter:\n%s", s)
	}
	if s := section(res.stdout, "ens33"); !strings.Contains(s, "ok    rp_filter   1 (strict)") {
		t.Errorf("ens33, the default-route NIC, is fine with strict rp_filter:\n%s", s)
	}
	if strings.Contains(res.stdout, "warn  arp") {
		t.Errorf("ARP flux still reported after arp_ignore=1 arp_announce=2:\n%s", res.stdout)
	}
}
