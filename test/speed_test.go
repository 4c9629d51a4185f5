package test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"nicproxy/test/netlab"
)

// speedLab is the lab with a DNS server that models a 20 ms round trip
// and an echo server, the setting of the speed issue.
type speedLab struct {
	*netlab.Lab
	dns  *netlab.DNS
	echo *netlab.Echo
}

// Names the speed tests ask for, and what they resolve to.
var speedZone = map[string][]netip.Addr{
	"www.example.test":  {netlab.Server},
	"many.example.test": {netlab.Server},
	"ttl.example.test":  {netlab.Server},
	// The first address is black-holed: every packet to it is dropped.
	"hole.example.test": {netlab.Blackhole, netlab.Server},
	// Nothing listens on the echo port at the DNS server's address: the
	// first attempt is refused.
	"refused.example.test": {netlab.DNSServer, netlab.Server},
}

func newSpeedLab(t testing.TB, ttl uint32) *speedLab {
	lab := netlab.New(t)
	dns := lab.StartDNSZone(netlab.Zone{Records: speedZone, TTL: ttl, NegTTL: ttl, Delay: 20 * time.Millisecond})
	lab.UseDNS(dns.Addr())
	return &speedLab{Lab: lab, dns: dns, echo: lab.StartEcho()}
}

// with is the lab as seen from t, a subtest (netlab.Lab.With).
func (s *speedLab) with(t testing.TB) *speedLab {
	return &speedLab{Lab: s.Lab.With(t), dns: s.dns, echo: s.echo}
}

// queries counts the questions the DNS server got for name (A and AAAA).
func (s *speedLab) queries(name string) (a, aaaa int) {
	return s.dns.Queries(name, dnsmessage.TypeA), s.dns.Queries(name, dnsmessage.TypeAAAA)
}

// connectSOCKS5 opens a SOCKS5 tunnel to host at the echo port and returns
// the reply code and, on success, the address the echo server saw.
func (s *speedLab) connectSOCKS5(t testing.TB, host string) (byte, netip.Addr) {
	t.Helper()
	conn, err := s.DialHost("tcp", "127.0.0.1:1080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	rep, err := socks5Dial(conn, "", "", host, s.echo.TCP.Port())
	if err != nil {
		t.Fatalf("socks5 %s: %v", host, err)
	}
	if rep != 0 {
		return rep, netip.Addr{}
	}
	return 0, netlab.MustSeen(t, bufio.NewReader(conn)).Addr()
}

// connectHTTP opens a CONNECT tunnel to host at the echo port and returns
// the status and, on 200, the address the echo server saw.
func (s *speedLab) connectHTTP(t testing.TB, host string) (int, netip.Addr) {
	t.Helper()
	conn, err := s.DialHost("tcp", "127.0.0.1:1080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	resp, br, err := httpConnect(conn, host, s.echo.TCP.Port(), nil)
	if err != nil {
		t.Fatalf("CONNECT %s: %v", host, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, netip.Addr{}
	}
	return resp.StatusCode, netlab.MustSeen(t, br).Addr()
}

// settled is netlab's Settled, from the speed lab.
func (s *speedLab) settled(t testing.TB) netlab.Snapshot {
	t.Helper()
	return s.Lab.With(t).Settled()
}

// pinned checks, once what it sent is out, that since before want sent
// something and other sent nothing: the second proof of pinning, beside
// the address the server saw.
func (s *speedLab) pinned(t testing.TB, before netlab.Snapshot, want, other netlab.NIC) {
	t.Helper()
	s.settled(t)
	if tx := before.TxSince(want.Name); tx == 0 {
		t.Errorf("%s sent nothing", want.Name)
	}
	if tx := before.TxSince(other.Name); tx != 0 {
		t.Errorf("%s sent %d bytes, want 0", other.Name, tx)
	}
}

// TestDNSCacheTTL: a cached answer serves connections until its TTL runs
// out, and not after: then one new query per family.
func TestDNSCacheTTL(t *testing.T) {
	const ttl = 2
	lab := newSpeedLab(t, ttl)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\n")
	name := "ttl.example.test"
	before := lab.Snapshot()
	first := time.Now()
	for range 3 {
		if rep, seen := lab.connectSOCKS5(t, name); rep != 0 || seen != netlab.Ens160.Addr {
			t.Fatalf("reply %#x seen %v, want 0 from %v", rep, seen, netlab.Ens160.Addr)
		}
	}
	a, aaaa := lab.queries(name)
	// The lab's host has no IPv6: ens160 is never asked AAAA.
	if time.Since(first) < ttl*time.Second && (a != 1 || aaaa != 0) {
		t.Fatalf("three connections within the TTL sent %d A and %d AAAA queries, want 1 and 0", a, aaaa)
	}
	time.Sleep(time.Until(first.Add(ttl*time.Second + 500*time.Millisecond))) // the TTL itself is what is tested
	if rep, _ := lab.connectSOCKS5(t, name); rep != 0 {
		t.Fatalf("after the TTL: reply %#x", rep)
	}
	if a2, aaaa2 := lab.queries(name); a2 != a+1 || aaaa2 != 0 {
		t.Errorf("after the TTL: %d A and %d AAAA queries in all, want %d and 0", a2, aaaa2, a+1)
	}
	lab.pinned(t, before, netlab.Ens160, netlab.Ens33)
}

// TestDNSCacheNegative: a name that does not exist is answered 0x04 (and
// 502 over HTTP), and the second request is answered from the cache with
// no query sent.
func TestDNSCacheNegative(t *testing.T) {
	lab := newSpeedLab(t, 60)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\n")
	name := "nx.example.test"
	before := lab.Snapshot()
	if rep, _ := lab.connectSOCKS5(t, name); rep != 0x04 {
		t.Fatalf("first request: reply %#x, want 0x04", rep)
	}
	total := lab.dns.Total()
	if a, aaaa := lab.queries(name); a != 1 || aaaa != 0 {
		t.Fatalf("first request: %d A, %d AAAA queries; want 1 and 0 (the host has no IPv6)", a, aaaa)
	}
	if rep, _ := lab.connectSOCKS5(t, name); rep != 0x04 {
		t.Errorf("second request: reply %#x, want 0x04", rep)
	}
	if status, _ := lab.connectHTTP(t, name); status != http.StatusBadGateway {
		t.Errorf("CONNECT: status %d, want 502", status)
	}
	if got := lab.dns.Total(); got != total {
		t.Errorf("the cached NXDOMAIN still sent %d queries", got-total)
	}
	// The one query per family left through ens160, the default's NIC.
	lab.pinned(t, before, netlab.Ens160, netlab.Ens33)
}

// TestDNSSharedQuery: 50 connections at once to one uncached name send one
// query per family between them.
func TestDNSSharedQuery(t *testing.T) {
	lab := newSpeedLab(t, 60)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\n")
	before := lab.Snapshot()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if rep, seen := lab.connectSOCKS5(t, "many.example.test"); rep != 0 || seen != netlab.Ens160.Addr {
				t.Errorf("reply %#x seen %v", rep, seen)
			}
		})
	}
	wg.Wait()
	if a, aaaa := lab.queries("many.example.test"); a != 1 || aaaa != 0 {
		t.Errorf("50 concurrent connections sent %d A and %d AAAA queries, want 1 and 0 (the host has no IPv6)", a, aaaa)
	}
	lab.pinned(t, before, netlab.Ens160, netlab.Ens33)
}

// TestHappyEyeballs: a name whose first address is black-holed connects
// through its second, over SOCKS5 and HTTP CONNECT, inside a dial timeout
// that the first attempt alone would use up: the second attempt started
// while the first still waited. A refused first address moves on at
// once: with an attempt delay longer than the dial timeout, only the
// refusal can start the second attempt in time. Every attempt leaves
// through ens160: ens33 sends nothing, the black-holed SYNs included. How
// fast, against a literal, is BenchmarkSpeed's (a clock decides it).
func TestHappyEyeballs(t *testing.T) {
	lab := newSpeedLab(t, 60)
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\ntimeouts: {dial: 10s, attempt: 250ms}\n")
	for _, tc := range []struct {
		name    string
		connect func(t testing.TB, host string) netip.Addr
	}{
		{"socks5", func(t testing.TB, host string) netip.Addr {
			rep, seen := lab.connectSOCKS5(t, host)
			if rep != 0 {
				t.Fatalf("reply %#x", rep)
			}
			return seen
		}},
		{"http-connect", func(t testing.TB, host string) netip.Addr {
			status, seen := lab.connectHTTP(t, host)
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			return seen
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := lab.with(t)
			lab.connectSOCKS5(t, "hole.example.test") // resolve once: what follows is the race alone
			before := lab.Snapshot()
			if seen := tc.connect(t, "hole.example.test"); seen != netlab.Ens160.Addr {
				t.Errorf("server saw %v, want %v", seen, netlab.Ens160.Addr)
			}
			if tx := before.TxSince("ens160"); tx == 0 {
				t.Error("ens160 sent nothing")
			}
			if tx := before.TxSince("ens33"); tx != 0 {
				t.Errorf("ens33 sent %d bytes, want 0", tx)
			}
		})
	}
	if strings.Contains(proc.Output(), "panic") {
		t.Errorf("the proxy panicked:\n%s", proc.Output())
	}

	slow := newSpeedLab(t, 60)
	slow.StartProxy(nicproxyBinary, "127.0.0.1:1080", "default: ens160\ntimeouts: {dial: 10s, attempt: 1h}\n")
	slow.connectSOCKS5(t, "refused.example.test")
	before := slow.Snapshot()
	if rep, seen := slow.connectSOCKS5(t, "refused.example.test"); rep != 0 || seen != netlab.Ens160.Addr {
		t.Errorf("refused first address: reply %#x seen %v; want 0 from %v within the 10s dial timeout (the attempt delay is 1h)",
			rep, seen, netlab.Ens160.Addr)
	}
	if tx := before.TxSince("ens33"); tx != 0 {
		t.Errorf("ens33 sent %d bytes, want 0", tx)
	}
}

// TestDstLookupThroughResolverVia: with a dst rule on ens33 and the
// default on ens160, a name that matches no dst rule is looked up through
// resolver.via (the default's NIC) — the server sees every query from
// ens160 — and ens33 sends nothing, neither query nor flow.
func TestDstLookupThroughResolverVia(t *testing.T) {
	lab := newSpeedLab(t, 60)
	lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", `
rules:
  - {name: lan, dst: [192.0.2.0/24], via: ens33}
default: ens160
`)
	before := lab.Snapshot()
	if rep, seen := lab.connectSOCKS5(t, "www.example.test"); rep != 0 || seen != netlab.Ens160.Addr {
		t.Fatalf("reply %#x seen %v, want 0 from %v", rep, seen, netlab.Ens160.Addr)
	}
	if tx := before.TxSince("ens33"); tx != 0 {
		t.Errorf("ens33 sent %d bytes, want 0", tx)
	}
	seen := lab.dns.Seen()
	if len(seen) == 0 {
		t.Fatal("the DNS server saw no query")
	}
	for _, a := range seen {
		if a != netlab.Ens160.Addr {
			t.Errorf("a query came from %v, want only %v", a, netlab.Ens160.Addr)
		}
	}
	if a, aaaa := lab.queries("www.example.test"); a != 1 || aaaa != 0 {
		t.Errorf("%d A and %d AAAA queries, want 1 and 0 (no IPv6 on the host): the dst lookup's answer is reused for the flow", a, aaaa)
	}
}

// TestDNSCacheReload: a reload that changes one NIC's dns empties that
// NIC's cache and keeps the other's.
func TestDNSCacheReload(t *testing.T) {
	lab := newSpeedLab(t, 60)
	config := func(ens33DNS string) string {
		return fmt.Sprintf(`
interfaces:
  ens33: {%s}
  ens160: {dns: ["%s"]}
rules:
  - {name: a, domain: [www.example.test], via: ens33}
  - {name: b, domain: [many.example.test], via: ens160}
default: ens160
`, ens33DNS, netlab.DNSServer)
	}
	path := writeConfig(t, config(fmt.Sprintf(`dns: ["%s"]`, netlab.DNSServer)))
	proc := lab.StartProxy(nicproxyBinary, "127.0.0.1:1080", "", "-c", path)
	both := func() {
		t.Helper()
		before := lab.settled(t)
		if rep, seen := lab.connectSOCKS5(t, "www.example.test"); rep != 0 || seen != netlab.Ens33.Addr {
			// The proxy's access line says what the lookup answered: the
			// one failure seen (0x04 after the reload) left no trace of why.
			t.Fatalf("www: reply %#x seen %v, want 0 from ens33; the proxy said:\n%s", rep, seen, proc.Output())
		}
		lab.pinned(t, before, netlab.Ens33, netlab.Ens160)
		before = lab.Snapshot()
		if rep, seen := lab.connectSOCKS5(t, "many.example.test"); rep != 0 || seen != netlab.Ens160.Addr {
			t.Fatalf("many: reply %#x seen %v, want 0 from ens160; the proxy said:\n%s", rep, seen, proc.Output())
		}
		lab.pinned(t, before, netlab.Ens160, netlab.Ens33)
	}
	both()
	// ens33 now asks the system's nameservers (the same server, through
	// ens33 all the same): a different dns setting.
	if err := os.WriteFile(path, []byte(config("")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return strings.Contains(proc.Output(), "reloaded") },
		func() string { return "no reload in the log:\n" + proc.Output() })
	both()
	if a, aaaa := lab.queries("www.example.test"); a != 2 || aaaa != 0 {
		t.Errorf("www.example.test (ens33, dns changed): %d A, %d AAAA queries; want 2 and 0", a, aaaa)
	}
	if a, aaaa := lab.queries("many.example.test"); a != 1 || aaaa != 0 {
		t.Errorf("many.example.test (ens160, dns kept): %d A, %d AAAA queries; want 1 and 0", a, aaaa)
	}
}
