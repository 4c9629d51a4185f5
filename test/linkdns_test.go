package test

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"nicproxy/test/netlab"
)

// TestPerLinkDNSServers: on a host whose links have their own DNS servers
// (systemd-resolved's per-link servers, here test/fakeresolved on a
// private bus), a NIC without a dns setting asks its own link's servers,
// not the system's nameserver: ens33's queries reach ens33's server from
// ens33's address, ens160's reach ens160's, the other NIC's tx counter
// stays still, and when the links' servers change (swapped), the proxy
// follows without a restart.
func TestPerLinkDNSServers(t *testing.T) {
	lab := netlab.New(t)
	zone := map[string][]netip.Addr{}
	for i := range 20 {
		zone[fmt.Sprintf("n%d.ens33.test", i)] = []netip.Addr{netlab.Server}
		zone[fmt.Sprintf("n%d.ens160.test", i)] = []netip.Addr{netlab.Server}
	}
	serverA := lab.StartDNSZone(netlab.Zone{Records: zone, Addr: netip.MustParseAddr("198.51.100.54")})
	serverB := lab.StartDNSZone(netlab.Zone{Records: zone, Addr: netip.MustParseAddr("198.51.100.55")})
	system := lab.StartDNSZone(netlab.Zone{Records: zone}) // the system's nameserver, never to be asked
	lab.UseDNS(system.Addr())
	resolved := lab.StartResolved(buildTool(t, t.TempDir(), "nicproxy/test/fakeresolved"), map[string][]netip.Addr{
		"ens33":  {serverA.Addr().Addr()},
		"ens160": {serverB.Addr().Addr()},
	})
	l := &speedLab{Lab: lab, dns: system, echo: lab.StartEcho()}
	config := `
interfaces:
  ens33: {dns: auto}
rules:
  - {name: a, domain: [.ens33.test], via: ens33}
default: ens160
`
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", config)

	// check and doctor say which servers each NIC asks, and from where.
	path := writeConfig(t, config)
	for _, args := range [][]string{{"check", "-c", path}, {"doctor", "-c", path}} {
		out, _ := lab.Command(nicproxyBinary, args...).CombinedOutput()
		for nic, server := range map[string]netip.AddrPort{"ens33": serverA.Addr(), "ens160": serverB.Addr()} {
			if want := server.String() + " (from systemd-resolved"; !saysFor(string(out), nic, want) {
				t.Errorf("nicproxy %s does not say %s asks %q:\n%s", args[0], nic, want, out)
			}
		}
	}
	next := map[string]int{}
	connect := func(t *testing.T, nic netlab.NIC) string {
		t.Helper()
		name := fmt.Sprintf("n%d.%s.test", next[nic.Name], nic.Name)
		next[nic.Name]++
		if rep, seen := l.connectSOCKS5(t, name); rep != 0 || seen != nic.Addr {
			t.Fatalf("%s: reply %#x seen %v, want 0 from %v", name, rep, seen, nic.Addr)
		}
		return name
	}
	asked := func(d *netlab.DNS, name string) bool { return d.Queries(name, dnsmessage.TypeA) > 0 }
	// exactly checks that d alone was asked name, from nic's address.
	exactly := func(t *testing.T, d *netlab.DNS, name string, nic netlab.NIC) {
		t.Helper()
		for _, other := range []*netlab.DNS{serverA, serverB, system} {
			if got := asked(other, name); got != (other == d) {
				t.Errorf("%s asked of %v: %v, want %v", name, other.Addr(), got, other == d)
			}
		}
		if seen := d.Seen(); !slices.Contains(seen, nic.Addr) {
			t.Errorf("%v saw queries from %v, want %v among them", d.Addr(), seen, nic.Addr)
		}
	}

	// each connects once through each NIC: for33 and for160 alone are
	// asked, from their NIC's address, and the other NIC sends nothing.
	each := func(for33, for160 *netlab.DNS) {
		t.Helper()
		before := l.settled(t)
		exactly(t, for33, connect(t, netlab.Ens33), netlab.Ens33)
		l.pinned(t, before, netlab.Ens33, netlab.Ens160)
		before = l.Snapshot()
		exactly(t, for160, connect(t, netlab.Ens160), netlab.Ens160)
		l.pinned(t, before, netlab.Ens160, netlab.Ens33)
	}
	each(serverA, serverB)
	netlab.QueriedOnlyFrom(t, serverA, netlab.Ens33)
	netlab.QueriedOnlyFrom(t, serverB, netlab.Ens160)

	// The links' servers swap; the running proxy follows.
	resolved.Set(map[string][]netip.Addr{
		"ens33":  {serverB.Addr().Addr()},
		"ens160": {serverA.Addr().Addr()},
	})
	eventually(t, 15*time.Second, func() bool { return asked(serverB, connect(t, netlab.Ens33)) },
		func() string { return "ens33 never asked its new server" })
	each(serverB, serverA)
	if n := system.Total(); n != 0 {
		t.Errorf("the system's nameserver was asked %d times; every NIC has servers of its own", n)
	}
}

// saysFor reports whether out has want on nic's line (check: "  ens33
// ...") or in nic's section (doctor: a line "ens33", then its findings).
func saysFor(out, nic, want string) bool {
	section := ""
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, " ") {
			section = line
		}
		fields := strings.Fields(line)
		if strings.Contains(line, want) && (section == nic || len(fields) > 0 && fields[0] == nic) {
			return true
		}
	}
	return false
}

// TestPerLinkDNSOfAnotherNamespaceIgnored: a systemd-resolved that runs in
// another network namespace (the real host's, for a nicproxy run in a
// namespace) names links by indexes that are other NICs there: its
// servers are not used, the system's nameserver is, through the pinned
// NIC, and check says so.
func TestPerLinkDNSOfAnotherNamespaceIgnored(t *testing.T) {
	lab := netlab.New(t)
	zone := map[string][]netip.Addr{"www.example.test": {netlab.Server}}
	other := lab.StartDNSZone(netlab.Zone{Records: zone, Addr: netip.MustParseAddr("198.51.100.54")})
	system := lab.StartDNSZone(netlab.Zone{Records: zone})
	lab.UseDNS(system.Addr())
	lab.StartResolvedOutside(buildTool(t, t.TempDir(), "nicproxy/test/fakeresolved"), map[string][]netip.Addr{
		"ens33":  {other.Addr().Addr()},
		"ens160": {other.Addr().Addr()},
	})
	l := &speedLab{Lab: lab, dns: system, echo: lab.StartEcho()}
	config := "default: ens160\n"
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", config)
	before := l.settled(t)
	if rep, seen := l.connectSOCKS5(t, "www.example.test"); rep != 0 || seen != netlab.Ens160.Addr {
		t.Fatalf("reply %#x seen %v, want 0 from %v", rep, seen, netlab.Ens160.Addr)
	}
	l.pinned(t, before, netlab.Ens160, netlab.Ens33)
	netlab.QueriedOnlyFrom(t, system, netlab.Ens160)
	if n := other.Total(); n != 0 {
		t.Errorf("the other namespace's per-link server was asked %d times", n)
	}
	out, _ := lab.Command(nicproxyBinary, "check", "-c", writeConfig(t, config)).CombinedOutput()
	if !saysFor(string(out), "ens160", system.Addr().String()+" (from /etc/resolv.conf") {
		t.Errorf("check does not say ens160 asks the system's nameserver:\n%s", out)
	}
}
