package exectest

import (
	"net/netip"
	"strings"
	"testing"

	"nicproxy/test/e2e"
	"nicproxy/test/netlab"
)

// TestExecDNSFlag: on a host whose only resolver is a loopback stub with no
// known upstream, `exec --dns ADDR` gives the command a resolv.conf naming
// ADDR, reached through the pinned NIC: getent resolves a name, the DNS
// server saw only ens160's address, and ens33 sent nothing. No config file
// is needed.
func TestExecDNSFlag(t *testing.T) {
	lab := netlab.New(t)
	dns := lab.StartDNSZone(netlab.Zone{Records: map[string][]netip.Addr{"web.test": {netlab.Server}}})
	lab.UseDNS(netip.MustParseAddrPort("127.0.0.53:53"))
	before := lab.Snapshot()
	out := mustRun(t, lab, "exec", "-i", "ens160", "--dns", netlab.DNSServer.String(), "--",
		"sh", "-c", "getent hosts web.test && cat /etc/resolv.conf")
	if !strings.HasPrefix(out, netlab.Server.String()) {
		t.Errorf("getent hosts web.test under exec --dns = %q, want %v", out, netlab.Server)
	}
	if !strings.Contains(out, "nameserver "+netlab.DNSServer.String()+"\n") || strings.Contains(out, "nameserver 127.0.0.53") {
		t.Errorf("the command's resolv.conf does not name the --dns server instead of the stub:\n%s", out)
	}
	netlab.QueriedOnlyFrom(t, dns, netlab.Ens160)
	if tx := before.TxSince("ens160"); tx == 0 {
		t.Error("ens160 sent nothing")
	}
	if tx := before.TxSince("ens33"); tx != 0 {
		t.Errorf("ens33 sent %d bytes, want 0", tx)
	}
	if res := e2e.Run(t, lab, nicproxyBinary, "exec", "-i", "ens160", "--dns", "dns.example", "--", "true"); res.Code != 2 || !strings.Contains(res.Stderr, "not an IP address") {
		t.Errorf("--dns with a name: exit %d, stderr %q; want 2 and why", res.Code, res.Stderr)
	}
}
