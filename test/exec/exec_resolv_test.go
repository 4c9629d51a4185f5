package exectest

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"nicproxy/bind/dnscache"
	"nicproxy/test/e2e"
	"nicproxy/test/netlab"
)

// TestExecLoopbackStub: when the host's resolv.conf names a resolver on
// the host (systemd-resolved's 127.0.0.53), exec gives the command a
// resolv.conf of its own naming the pinned NIC's dns servers, so its
// lookups leave through that NIC like its connections: getent resolves a
// name, the DNS server saw only ens160's address, and ens33 sent nothing.
// The host's resolv.conf is untouched. Without dns servers to name (and no
// stub upstream list), exec refuses to start the command (exit 2).
func TestExecLoopbackStub(t *testing.T) {
	lab := netlab.New(t)
	dns := lab.StartDNSZone(netlab.Zone{Records: map[string][]netip.Addr{"web.test": {netlab.Server}}})
	// The host's resolver is a stub on loopback; nothing answers there.
	lab.UseDNS(netip.MustParseAddrPort("127.0.0.53:53"))

	config := e2e.WriteConfig(t, fmt.Sprintf("interfaces: {ens160: {dns: [\"%s\"]}}\ndefault: ens160\n", netlab.DNSServer))
	before := lab.Snapshot()
	out := mustRun(t, lab, "exec", "-c", config, "--", "sh", "-c", "getent hosts web.test && cat /etc/resolv.conf")
	if !strings.HasPrefix(out, netlab.Server.String()) {
		t.Errorf("getent hosts web.test under exec = %q, want %v", out, netlab.Server)
	}
	if !strings.Contains(out, "nameserver "+netlab.DNSServer.String()) || strings.Contains(out, "nameserver 127.0.0.53") {
		t.Errorf("the command's resolv.conf does not name ens160's dns server instead of the stub:\n%s", out)
	}
	if seen := dns.Seen(); len(seen) == 0 {
		t.Error("the DNS server got no query")
	} else {
		for _, a := range seen {
			if a != netlab.Ens160.Addr {
				t.Errorf("a query came from %v, want only %v", a, netlab.Ens160.Addr)
			}
		}
	}
	if tx := before.TxSince("ens160"); tx == 0 {
		t.Error("ens160 sent nothing")
	}
	if tx := before.TxSince("ens33"); tx != 0 {
		t.Errorf("ens33 sent %d bytes, want 0", tx)
	}
	// The host (and so any process outside exec) still sees the stub.
	hostView, err := lab.Command("cat", "/etc/resolv.conf").Output()
	if err != nil || !strings.Contains(string(hostView), "127.0.0.53") {
		t.Errorf("the host's resolv.conf changed: %q %v", hostView, err)
	}

	// --user: the mount is made as root, then the command runs as nobody.
	out = mustRun(t, lab, "exec", "-c", config, "--user", "nobody", "--", "sh", "-c", "id -un && getent hosts web.test")
	if !strings.HasPrefix(out, "nobody\n"+netlab.Server.String()) {
		t.Errorf("as nobody: %q, want nobody then %v", out, netlab.Server)
	}

	// No dns for ens160 and no list of the stub's servers: refused. A
	// host running systemd-resolved has that list; an empty directory
	// mounted over it, in the mount namespace of this one command, hides
	// it.
	marker := filepath.Join(t.TempDir(), "ran")
	hide := lab.Command("sh", "-c", `if [ -d "${0%/*}" ]; then mount -t tmpfs none "${0%/*}" || exit 99; fi; shift; exec "$@"`,
		dnscache.DefaultStubUpstreams, "--", nicproxyBinary, "exec", "-i", "ens160", "--", "touch", marker)
	hide.Env = append(hide.Env, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	var stderr strings.Builder
	hide.Stderr = &stderr
	err = hide.Run()
	if code := hide.ProcessState.ExitCode(); code != 2 || !strings.Contains(stderr.String(), "set interfaces.ens160.dns") {
		t.Errorf("exec with an unpinnable stub: exit %d (%v), stderr %q; want 2 and the fix", code, err, stderr.String())
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran although its DNS could not be pinned")
	}
}
