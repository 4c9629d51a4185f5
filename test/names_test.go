package test

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"nicproxy/test/netlab"
)

// Names on real hosts (issue 16): the lab made to look like a LAN host
// without IPv6, with a resolver that answers AAAA with NOERROR, no records
// and no SOA, as many home routers and dnsmasq do.

// namesZone is what the tests of this file ask for: names with an IPv4
// address only, and one with both families.
var namesZone = map[string][]netip.Addr{
	"socks.example.test":   {netlab.Server},
	"connect.example.test": {netlab.Server},
	"v4only.example.test":  {netlab.Server},
	"both.example.test":    {netlab.Server, netlab.Server6},
}

// newNamesLab is the lab with a 20 ms DNS server for z and an echo
// server; with ipv6 the host's NICs get IPv6 addresses and routes, without
// it the host is the lab's default, IPv6 disabled (checked, so the variant
// is explicit). options is resolv.conf's options line.
func newNamesLab(t testing.TB, z netlab.Zone, ipv6 bool, options string) *speedLab {
	t.Helper()
	lab := netlab.New(t)
	if ipv6 {
		lab.EnableIPv6()
	}
	if disabled := lab.IPv6Disabled(); disabled == ipv6 {
		t.Fatalf("host IPv6 disabled = %v, want %v", disabled, !ipv6)
	}
	if z.Records == nil {
		z.Records = namesZone
	}
	z.Delay = 20 * time.Millisecond
	dns := lab.StartDNSZone(z)
	lab.UseDNSWith(dns.Addr(), options)
	return &speedLab{Lab: lab, dns: dns, echo: lab.StartEcho()}
}

// throughBoth connects once by SOCKS5 to socks.example.test and once by
// HTTP CONNECT to connect.example.test, each of which the echo server must
// see from ens160.
func throughBoth(t *testing.T, lab *speedLab) {
	t.Helper()
	if rep, seen := lab.connectSOCKS5(t, "socks.example.test"); rep != 0 || seen != netlab.Ens160.Addr {
		t.Fatalf("socks5: reply %#x seen %v, want 0 from %v", rep, seen, netlab.Ens160.Addr)
	}
	if status, seen := lab.connectHTTP(t, "connect.example.test"); status != http.StatusOK || seen != netlab.Ens160.Addr {
		t.Fatalf("CONNECT: status %d seen %v, want 200 from %v", status, seen, netlab.Ens160.Addr)
	}
}

// bothQueried checks the A and AAAA queries for throughBoth's two names.
func bothQueried(t *testing.T, lab *speedLab, wantA, wantAAAA int) {
	t.Helper()
	for _, name := range []string{"socks.example.test", "connect.example.test"} {
		if a, aaaa := lab.queries(name); a != wantA || aaaa != wantAAAA {
			t.Errorf("%s: %d A and %d AAAA queries, want %d and %d", name, a, aaaa, wantA, wantAAAA)
		}
	}
}

// TestIPv6LessHostAsksOnlyA: on a host without IPv6, behind a resolver
// that answers AAAA without an SOA, 200 connections to one name send
// exactly one query, for A, through SOCKS5 and through HTTP CONNECT alike
// (negative_ttl_without_soa is off, so no cached NODATA hides an AAAA
// query: the NIC's families alone decide). Every flow and query leaves
// through ens160: the echo server saw its address, ens33 sent nothing.
func TestIPv6LessHostAsksOnlyA(t *testing.T) {
	lab := newNamesLab(t, netlab.Zone{NoSOA: true}, false, "attempts:1 timeout:1")
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\nresolver: {negative_ttl_without_soa: 0s}\n")
	before := lab.Snapshot()
	for range 200 {
		throughBoth(t, lab)
	}
	bothQueried(t, lab, 1, 0)
	netlab.QueriedOnlyFrom(t, lab.dns, netlab.Ens160)
	lab.pinned(t, before, netlab.Ens160, netlab.Ens33)
}

// TestNoSOANodataCachedPerNIC: with IPv6 on and a resolver whose NODATA
// answers carry no SOA, connections to an IPv4-only name send at most one
// AAAA query per negative_ttl_without_soa (the bound is counted from the
// time the connections took, so a slow machine is allowed more, never a
// fast one fewer), and one more once it has passed.
func TestNoSOANodataCachedPerNIC(t *testing.T) {
	const negTTL = 2 * time.Second
	lab := newNamesLab(t, netlab.Zone{NoSOA: true}, true, "attempts:1 timeout:1")
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", fmt.Sprintf("default: ens160\nresolver: {negative_ttl_without_soa: %s}\n", negTTL))
	name := "v4only.example.test"
	before := lab.Snapshot()
	start := time.Now()
	for range 100 {
		if rep, seen := lab.connectSOCKS5(t, name); rep != 0 || seen != netlab.Ens160.Addr {
			t.Fatalf("reply %#x seen %v, want 0 from %v", rep, seen, netlab.Ens160.Addr)
		}
	}
	periods := 1 + int(time.Since(start)/negTTL)
	a, aaaa := lab.queries(name)
	if aaaa < 1 || aaaa > periods || a != 1 {
		t.Errorf("100 connections in %d period(s) of %s sent %d A and %d AAAA queries, want 1 A and 1 to %d AAAA",
			periods, negTTL, a, aaaa, periods)
	}
	time.Sleep(negTTL + 500*time.Millisecond) // the negative TTL itself is what is tested
	if rep, _ := lab.connectSOCKS5(t, name); rep != 0 {
		t.Fatalf("after the negative TTL: reply %#x", rep)
	}
	if _, aaaa2 := lab.queries(name); aaaa2 != aaaa+1 {
		t.Errorf("after the negative TTL: %d AAAA queries in all, want %d", aaaa2, aaaa+1)
	}
	netlab.QueriedOnlyFrom(t, lab.dns, netlab.Ens160)
	lab.pinned(t, before, netlab.Ens160, netlab.Ens33)
}

// TestSecondFamilyNotWaitedFor: a resolver that never answers AAAA, with
// resolv.conf giving that question 30 s (beyond the client's 20 s
// deadline) and timeouts.dial far above, still lets a connection to a
// name whose A answer came succeed, through SOCKS5 and HTTP CONNECT: the
// connection does not wait for a family it does not need. The AAAA
// question was asked (counted by the server), through ens160.
func TestSecondFamilyNotWaitedFor(t *testing.T) {
	lab := newNamesLab(t, netlab.Zone{SilentAAAA: true}, true, "attempts:1 timeout:30")
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\ntimeouts: {dial: 120s}\n")
	before := lab.Snapshot()
	throughBoth(t, lab)
	bothQueried(t, lab, 1, 1) // the AAAA one never answered
	netlab.QueriedOnlyFrom(t, lab.dns, netlab.Ens160)
	lab.pinned(t, before, netlab.Ens160, netlab.Ens33)
}

// TestIPv6AddressAppearsAskedAAAA: a NIC without a global IPv6 address is
// not asked AAAA; once its address appears, connections are (the link
// watcher follows the address notification; the test waits for it by
// trying fresh names), and every one after that is too.
func TestIPv6AddressAppearsAskedAAAA(t *testing.T) {
	zone := map[string][]netip.Addr{}
	for i := range 40 {
		zone[fmt.Sprintf("n%d.example.test", i)] = []netip.Addr{netlab.Server, netlab.Server6}
	}
	lab := newNamesLab(t, netlab.Zone{Records: zone}, true, "attempts:1 timeout:1")
	lab.DelAddress6(netlab.Ens160)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\n")
	route := func() string {
		out, err := lab.Command(nicproxyBinary, "route", "-c", writeConfig(t, "default: ens160\n"), "n0.example.test:443").CombinedOutput()
		if err != nil {
			t.Fatalf("nicproxy route: %v\n%s", err, out)
		}
		return string(out)
	}
	if out, want := route(), "asks      ens160: A (an IPv4 address; no global IPv6 address)"; !strings.Contains(out, want) {
		t.Errorf("route without ens160's IPv6 address does not say %q:\n%s", want, out)
	}
	before := lab.settled(t)
	next := 0
	connect := func() (name string) {
		name = fmt.Sprintf("n%d.example.test", next)
		next++
		if rep, seen := lab.connectSOCKS5(t, name); rep != 0 || seen != netlab.Ens160.Addr {
			t.Fatalf("%s: reply %#x seen %v, want 0 from %v", name, rep, seen, netlab.Ens160.Addr)
		}
		return name
	}
	for range 3 {
		if name := connect(); lab.dns.Queries(name, dnsmessage.TypeAAAA) != 0 {
			t.Fatalf("%s was asked AAAA through ens160, which has no IPv6 address", name)
		}
	}
	lab.pinned(t, before, netlab.Ens160, netlab.Ens33)

	lab.AddAddress6(netlab.Ens160)
	if out, want := route(), "asks      ens160: A and AAAA (an IPv4 address; a global IPv6 address and route)"; !strings.Contains(out, want) {
		t.Errorf("route with ens160's IPv6 address does not say %q:\n%s", want, out)
	}
	eventually(t, 10*time.Second, func() bool {
		return lab.dns.Queries(connect(), dnsmessage.TypeAAAA) == 1
	}, func() string { return "ens160 was never asked AAAA after its IPv6 address appeared" })
	before = lab.settled(t)
	for range 3 {
		if name := connect(); lab.dns.Queries(name, dnsmessage.TypeAAAA) != 1 {
			t.Errorf("%s was not asked AAAA after ens160's IPv6 address appeared", name)
		}
	}
	netlab.QueriedOnlyFrom(t, lab.dns, netlab.Ens160)
	lab.pinned(t, before, netlab.Ens160, netlab.Ens33)
}
