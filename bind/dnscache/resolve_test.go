package dnscache

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSearchAndNdots(t *testing.T) {
	srv := startServer(t, map[string]zoneName{
		"host.b.test": {A: []netip.Addr{addr1}, AAAA: []netip.Addr{addr6}},
		"x.y.z":       {A: []netip.Addr{addr2}, AAAA: []netip.Addr{addr6}},
	})
	srv.setSOA(60, 60)
	for _, tc := range []struct {
		host  string
		want  netip.Addr
		asked []string // names in the order they were asked
	}{
		// Fewer than ndots (2) dots: the search list first, then as is.
		{"host", addr1, []string{"host.a.test.", "host.b.test."}},
		{"nope", netip.Addr{}, []string{"nope.a.test.", "nope.b.test.", "nope."}},
		{"x.y", netip.Addr{}, []string{"x.y.a.test.", "x.y.b.test.", "x.y."}},
		// ndots dots or more: as is first.
		{"x.y.z", addr2, []string{"x.y.z."}},
		{"host.b.test", addr1, []string{"host.b.test."}},
		// A trailing dot: only the name itself.
		{"host.", netip.Addr{}, []string{"host."}},
		{"HOST.B.Test.", addr1, []string{"host.b.test."}},
	} {
		t.Run(tc.host, func(t *testing.T) {
			r, _ := newTestResolver(t, srv, func(c *Config) {
				c.ResolvConf = writeFile(t, filepath.Join(t.TempDir(), "resolv.conf"),
					"domain ignored.test\nsearch a.test B.test.\noptions ndots:2 timeout:1 attempts:1\n")
			})
			before := len(srv.asked())
			res, err := r.LookupNetIP(context.Background(), "ip4", tc.host)
			var dnsErr *net.DNSError
			switch {
			case tc.want.IsValid() && (err != nil || !slices.Equal(res, []netip.Addr{tc.want})):
				t.Errorf("got %v, %v; want %v", res, err, tc.want)
			case !tc.want.IsValid() && (!errors.As(err, &dnsErr) || !dnsErr.IsNotFound || dnsErr.Name != tc.host):
				t.Errorf("got %v, %v; want not found for %q", res, err, tc.host)
			}
			var names []string
			for _, q := range srv.asked()[before:] {
				name, qtype, _ := strings.Cut(q, " ")
				if qtype != "A" {
					t.Errorf("asked %q for ip4", q)
				}
				names = append(names, name)
			}
			if !slices.Equal(names, tc.asked) {
				t.Errorf("asked %q, want %q", names, tc.asked)
			}
		})
	}
}

func TestHostsFileFirst(t *testing.T) {
	srv := startServer(t, map[string]zoneName{"myhost": {A: []netip.Addr{addr2}, AAAA: []netip.Addr{addr6}}})
	hosts := filepath.Join(t.TempDir(), "hosts")
	writeFile(t, hosts, "# comment\n192.0.2.7 myhost MyAlias.test # trailing\n2001:db8::7 myhost\n::ffff:192.0.2.8 mapped\n")
	r, clk := newTestResolver(t, srv, func(c *Config) { c.Hosts = hosts })

	res := mustLookup(t, r, "myhost")
	if !slices.Equal(res.V4, []netip.Addr{netip.MustParseAddr("192.0.2.7")}) ||
		!slices.Equal(res.V6, []netip.Addr{netip.MustParseAddr("2001:db8::7")}) || !res.Cached {
		t.Errorf("myhost: %+v", res)
	}
	for host, want := range map[string]string{"myalias.test.": "192.0.2.7", "MYHOST.": "192.0.2.7", "mapped": "192.0.2.8"} {
		if addrs, err := r.LookupNetIP(context.Background(), "ip4", host); err != nil || !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr(want)}) {
			t.Errorf("%s: %v, %v; want %s", host, addrs, err, want)
		}
	}
	// A name /etc/hosts has only IPv4 for: ip6 asks the server.
	if addrs, err := r.LookupNetIP(context.Background(), "ip6", "mapped"); err == nil {
		t.Errorf("mapped, ip6: %v from /etc/hosts' IPv4 entry", addrs)
	}
	if srv.total() != 1 || srv.queries("mapped", "AAAA") != 1 {
		t.Fatalf("server asked %q; want only mapped AAAA", srv.asked())
	}

	// A change is seen once the file's mtime moves and the check interval passed.
	writeFile(t, hosts, "192.0.2.9 myhost\n")
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(hosts, later, later); err != nil {
		t.Fatal(err)
	}
	if addrs, _ := r.LookupNetIP(context.Background(), "ip", "myhost"); !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}) {
		t.Errorf("re-read before the check interval: %v", addrs)
	}
	clk.advance(confCheckInterval)
	if addrs, _ := r.LookupNetIP(context.Background(), "ip", "myhost"); !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr("192.0.2.9")}) {
		t.Errorf("after the change: %v, want 192.0.2.9 only", addrs)
	}
	if srv.total() != 1 {
		t.Errorf("server asked %q", srv.asked())
	}
}

func TestIPLiteralsReturnedAsIs(t *testing.T) {
	srv := startServer(t, nil)
	r, _ := newTestResolver(t, srv, nil)
	for _, lit := range []string{"192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"} {
		addrs, err := r.LookupNetIP(context.Background(), "ip", lit)
		if err != nil || !slices.Equal(addrs, []netip.Addr{netip.MustParseAddr(lit)}) {
			t.Errorf("%s: %v, %v", lit, addrs, err)
		}
	}
	for _, bad := range []string{"", ".", "a..b", "-a.test", "a-.test", "a b", strings.Repeat("a", 64) + ".test"} {
		var dnsErr *net.DNSError
		if _, err := r.Lookup(context.Background(), bad); !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
			t.Errorf("%q: %v, want not found", bad, err)
		}
	}
	if srv.total() != 0 || r.Stats().Queries != 0 {
		t.Errorf("queries sent: %q", srv.asked())
	}
}

// recordingDial dials srv whatever address it is given, and records the
// addresses, so tests can see which nameserver a resolv.conf made it ask.
type recordingDial struct {
	srv  *testServer
	mu   sync.Mutex
	seen []string
}

func (d *recordingDial) dial(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.seen = append(d.seen, network+" "+address)
	d.mu.Unlock()
	return loopbackDial(ctx, network, d.srv.addr.String())
}

func (d *recordingDial) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.seen)
}

func TestLoopbackStubReplacedByUpstreams(t *testing.T) {
	srv := startServer(t, map[string]zoneName{"web.test": {A: []netip.Addr{addr1}}})
	dir := t.TempDir()
	resolv := writeFile(t, filepath.Join(dir, "resolv.conf"), "nameserver 127.0.0.53\noptions edns0 trust-ad timeout:1 attempts:1\n")
	stub := writeFile(t, filepath.Join(dir, "upstream.conf"), "nameserver 192.0.2.53\nnameserver 127.0.0.1\nnameserver fe80::1%eth0\n")
	d := &recordingDial{srv: srv}
	r, _ := newTestResolver(t, nil, func(c *Config) { c.ResolvConf, c.StubUpstreams, c.Dial = resolv, stub, d.dial })
	if addrs, err := r.LookupNetIP(context.Background(), "ip4", "web.test"); err != nil || !slices.Equal(addrs, []netip.Addr{addr1}) {
		t.Fatalf("got %v, %v", addrs, err)
	}
	if got := d.dialed(); !slices.Equal(got, []string{"udp 192.0.2.53:53"}) {
		t.Errorf("dialed %q, want only the stub's upstream 192.0.2.53:53", got)
	}

	// Without known upstreams, the lookup fails naming the fix, and nothing is dialed.
	d2 := &recordingDial{srv: srv}
	r2, _ := newTestResolver(t, nil, func(c *Config) { c.ResolvConf, c.Dial = resolv, d2.dial })
	_, err := r2.Lookup(context.Background(), "web.test")
	if !errors.Is(err, ErrNoNameserver) || !strings.Contains(err.Error(), "127.0.0.53") ||
		!strings.Contains(err.Error(), "set interfaces.test0.dns") {
		t.Errorf("got %v, want ErrNoNameserver naming 127.0.0.53 and interfaces.test0.dns", err)
	}
	// No nameserver line at all means the local one: the same.
	r3, _ := newTestResolver(t, nil, func(c *Config) { c.Dial = d2.dial })
	if _, err := r3.Lookup(context.Background(), "web.test"); !errors.Is(err, ErrNoNameserver) {
		t.Errorf("empty resolv.conf: %v, want ErrNoNameserver", err)
	}
	if got := d2.dialed(); len(got) != 0 {
		t.Errorf("dialed %q", got)
	}
}

func TestServersInTurn(t *testing.T) {
	srv := startServer(t, map[string]zoneName{"a.test": {A: []netip.Addr{addr1}}, "b.test": {A: []netip.Addr{addr1}}, "c.test": {A: []netip.Addr{addr1}}})
	one, two := netip.MustParseAddrPort("192.0.2.1:53"), netip.MustParseAddrPort("192.0.2.2:5353")
	for _, tc := range []struct {
		name   string
		mutate func(c *Config, dir string)
		want   []string
	}{
		{"explicit servers take turns", func(c *Config, _ string) { c.Servers = []netip.AddrPort{one, two} },
			[]string{"udp 192.0.2.1:53", "udp 192.0.2.2:5353", "udp 192.0.2.1:53"}},
		{"resolv.conf in order", func(c *Config, dir string) {
			c.ResolvConf = writeFile(t, filepath.Join(dir, "r"), "nameserver 192.0.2.1\nnameserver 192.0.2.2\noptions attempts:1 timeout:1\n")
		}, []string{"udp 192.0.2.1:53", "udp 192.0.2.1:53", "udp 192.0.2.1:53"}},
		{"resolv.conf rotate", func(c *Config, dir string) {
			c.ResolvConf = writeFile(t, filepath.Join(dir, "r"), "nameserver 192.0.2.1\nnameserver 192.0.2.2\noptions rotate timeout:1\n")
		}, []string{"udp 192.0.2.1:53", "udp 192.0.2.2:53", "udp 192.0.2.1:53"}},
		{"use-vc", func(c *Config, dir string) {
			c.ResolvConf = writeFile(t, filepath.Join(dir, "r"), "nameserver 192.0.2.1\noptions use-vc\n")
		}, []string{"tcp 192.0.2.1:53", "tcp 192.0.2.1:53", "tcp 192.0.2.1:53"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &recordingDial{srv: srv}
			dir := t.TempDir()
			r, _ := newTestResolver(t, nil, func(c *Config) { c.Dial = d.dial; tc.mutate(c, dir) })
			for _, name := range []string{"a.test", "b.test", "c.test"} {
				if _, err := r.LookupNetIP(context.Background(), "ip4", name); err != nil {
					t.Fatal(err)
				}
			}
			if got := d.dialed(); !slices.Equal(got, tc.want) {
				t.Errorf("dialed %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServerFailures(t *testing.T) {
	srv := startServer(t, map[string]zoneName{
		"fail.test":   {RCode: 2}, // SERVFAIL
		"silent.test": {Silent: true},
		"half.test":   {A: []netip.Addr{addr1}},
	})
	good := startServer(t, map[string]zoneName{"fail.test": {A: []netip.Addr{addr2}}})
	r, _ := newTestResolver(t, srv, nil)

	_, err := r.Lookup(context.Background(), "fail.test")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || dnsErr.IsNotFound || dnsErr.IsTimeout ||
		!strings.Contains(err.Error(), srv.addr.String()+" via test0") || !strings.Contains(err.Error(), "server misbehaving") {
		t.Errorf("SERVFAIL: %v, want a DNSError naming %v via test0", err, srv.addr)
	}
	_, err = r.Lookup(context.Background(), "silent.test")
	if !errors.As(err, &dnsErr) || !dnsErr.IsTimeout || dnsErr.IsNotFound {
		t.Errorf("no answer: %v, want a timeout", err)
	}
	// Failures are not cached.
	_, _ = r.Lookup(context.Background(), "fail.test")
	sent(t, srv, "fail.test", 2, 2)

	// The next server is asked after a SERVFAIL.
	r2, _ := newTestResolver(t, srv, func(c *Config) { c.Servers = []netip.AddrPort{srv.addr, good.addr} })
	if addrs, err := r2.LookupNetIP(context.Background(), "ip4", "fail.test"); err != nil || !slices.Equal(addrs, []netip.Addr{addr2}) {
		t.Errorf("after a SERVFAIL: %v, %v; want %v from the second server", addrs, err, addr2)
	}
	// A lookup whose A answers and AAAA is NODATA (no SOA) gets the A.
	if res := mustLookup(t, r, "half.test"); !slices.Equal(res.V4, []netip.Addr{addr1}) || len(res.V6) != 0 {
		t.Errorf("half.test: %+v", res)
	}
}

func TestCallerCancelReturnsPromptly(t *testing.T) {
	srv := startServer(t, map[string]zoneName{
		"slow.test":  {A: []netip.Addr{addr1}, AAAA: []netip.Addr{addr6}, Delay: 700 * time.Millisecond},
		"slow2.test": {A: []netip.Addr{addr1}, AAAA: []netip.Addr{addr6}, Delay: 700 * time.Millisecond},
	})
	r, _ := newTestResolver(t, srv, nil)

	// One caller gives up; another waiting for the same query gets its answer.
	ctx, cancel := context.WithCancel(context.Background())
	patient := make(chan error, 1)
	gaveUp := make(chan error, 1)
	go func() {
		_, err := r.Lookup(ctx, "slow.test")
		gaveUp <- err
	}()
	go func() {
		_, err := r.Lookup(context.Background(), "slow.test")
		patient <- err
	}()
	// Both callers wait on both families' queries.
	eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		waiting := 0
		for _, f := range r.flights {
			waiting += f.waiters
		}
		return waiting == 4
	})
	cancel()
	select {
	case err := <-gaveUp:
		var dnsErr *net.DNSError
		if !errors.Is(err, context.Canceled) || !errors.As(err, &dnsErr) || dnsErr.IsNotFound {
			t.Errorf("cancelled caller: %v", err)
		}
	case <-time.After(300 * time.Millisecond):
		t.Fatal("a cancelled caller still waits for the server")
	}
	if err := <-patient; err != nil {
		t.Errorf("the other caller: %v", err)
	}
	sent(t, srv, "slow.test", 1, 1)

	// The last caller to give up ends the query; a deadline is a timeout.
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := r.Lookup(ctx, "slow2.test")
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsTimeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v", err)
	}
}

// eventually polls cond until it holds, failing the test after 5 s.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestResolvConfParsing(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "resolv.conf"),
		"nameserver 192.0.2.53 ; comment\nnameserver ::ffff:192.0.2.54\nsearch one.test two.test\ndomain three.test\n"+
			"options ndots:20 timeout:0 attempts:9 rotate bogus\n#nameserver 192.0.2.99\n")
	c := parseResolvConf(path)
	if !slices.Equal(c.servers, []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("192.0.2.54")}) ||
		!slices.Equal(c.search, []string{"three.test."}) || c.ndots != 15 || c.timeout != time.Second ||
		c.attempts != 5 || !c.rotate || c.useTCP {
		t.Errorf("parsed %+v", c)
	}
	d := parseResolvConf(filepath.Join(t.TempDir(), "missing"))
	if len(d.servers) != 0 || d.ndots != 1 || d.timeout != 5*time.Second || d.attempts != 2 || d.rotate {
		t.Errorf("defaults %+v", d)
	}
}

func TestNameservers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	writeFile(t, path, "# written by systemd-resolved\nnameserver 192.0.2.53\nnameserver 127.0.0.53\nnameserver 2001:db8::53\nnameserver fe80::1%eth0\nsearch example\nnameserver bogus\n")
	want := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("[2001:db8::53]:53")}
	if got := Nameservers(path); !slices.Equal(got, want) {
		t.Errorf("nameservers = %v, want %v", got, want)
	}
	if got := Nameservers(filepath.Join(t.TempDir(), "missing")); got != nil {
		t.Errorf("missing file: %v", got)
	}
}

// TestLinkServersFollowed: without explicit servers, the per-link servers
// are asked, and a change of them is followed from the next lookup on;
// explicit servers win over them; Servers says which and from where.
func TestLinkServersFollowed(t *testing.T) {
	first := startServer(t, map[string]zoneName{"a.test": {A: []netip.Addr{addr1}}, "b.test": {A: []netip.Addr{addr1}}})
	second := startServer(t, map[string]zoneName{"b.test": {A: []netip.Addr{addr2}}})
	var link atomic.Pointer[[]netip.AddrPort]
	link.Store(&[]netip.AddrPort{first.addr})
	r, _ := newTestResolver(t, nil, func(c *Config) {
		c.LinkServers = func() []netip.AddrPort { return *link.Load() }
		c.LinkOrigin = "the link"
	})
	ctx := context.Background()
	if addrs, err := r.LookupNetIP(ctx, "ip4", "a.test"); err != nil || !slices.Equal(addrs, []netip.Addr{addr1}) {
		t.Fatalf("a.test: %v, %v", addrs, err)
	}
	if servers, origin, err := r.Servers(); err != nil || !slices.Equal(servers, []netip.AddrPort{first.addr}) || origin != "the link" {
		t.Errorf("Servers: %v %q %v", servers, origin, err)
	}
	link.Store(&[]netip.AddrPort{second.addr})
	if addrs, err := r.LookupNetIP(ctx, "ip4", "b.test"); err != nil || !slices.Equal(addrs, []netip.Addr{addr2}) {
		t.Fatalf("b.test after the change: %v, %v; want the second server's answer", addrs, err)
	}
	if first.queries("b.test", "A") != 0 || second.queries("b.test", "A") != 1 {
		t.Errorf("b.test asked of the first server %d times, of the second %d; want 0 and 1", first.queries("b.test", "A"), second.queries("b.test", "A"))
	}

	explicit, _ := newTestResolver(t, first, func(c *Config) {
		c.LinkServers = func() []netip.AddrPort { return *link.Load() }
	})
	if servers, origin, _ := explicit.Servers(); !slices.Equal(servers, []netip.AddrPort{first.addr}) || origin != "interfaces.test0.dns" {
		t.Errorf("explicit servers: %v %q; want them over the link's", servers, origin)
	}
}
