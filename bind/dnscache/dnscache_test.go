package dnscache

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a fake clock: the cache's notion of now moves only when a test
// says so, so TTLs are tested exactly, without sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func loopbackDial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newTestResolver is a Resolver asking srv, with its own empty resolv.conf
// (1 s timeout, 1 attempt) and hosts file, a cache of 100 names and a fake
// clock; mutate adjusts the Config first.
func newTestResolver(t *testing.T, srv *testServer, mutate func(*Config)) (*Resolver, *clock) {
	t.Helper()
	dir := t.TempDir()
	cfg := Config{
		NIC:           "test0",
		Dial:          loopbackDial,
		ResolvConf:    writeFile(t, filepath.Join(dir, "resolv.conf"), "options timeout:1 attempts:1\n"),
		StubUpstreams: filepath.Join(dir, "missing"),
		Hosts:         writeFile(t, filepath.Join(dir, "hosts"), ""),
		CacheSize:     100,
		// Long enough that a test's lookups of both families, on a busy
		// machine, get both; the tests of the delay itself set it.
		ResolutionDelay: time.Minute,
	}
	if srv != nil {
		cfg.Servers = []netip.AddrPort{srv.addr}
	}
	if mutate != nil {
		mutate(&cfg)
	}
	r := New(cfg)
	t.Cleanup(r.Close)
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	r.now = clk.now
	return r, clk
}

var (
	addr1 = netip.MustParseAddr("192.0.2.10")
	addr2 = netip.MustParseAddr("192.0.2.11")
	addr6 = netip.MustParseAddr("2001:db8::10")
)

func mustLookup(t *testing.T, r *Resolver, host string) Result {
	t.Helper()
	res, err := r.Lookup(context.Background(), host)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", host, err)
	}
	return res
}

// sent checks how many A and AAAA queries srv has seen for name in all.
func sent(t *testing.T, srv *testServer, name string, wantA, wantAAAA int) {
	t.Helper()
	if a, aaaa := srv.queries(name, "A"), srv.queries(name, "AAAA"); a != wantA || aaaa != wantAAAA {
		t.Fatalf("%s: server saw %d A and %d AAAA queries, want %d and %d", name, a, aaaa, wantA, wantAAAA)
	}
}

func TestTTLExpiryRequeries(t *testing.T) {
	srv := startServer(t, map[string]zoneName{"web.test": {A: []netip.Addr{addr1, addr2}, AAAA: []netip.Addr{addr6}, TTL: 30}})
	r, clk := newTestResolver(t, srv, nil)

	res := mustLookup(t, r, "web.test")
	if !slices.Equal(res.V4, []netip.Addr{addr1, addr2}) || !slices.Equal(res.V6, []netip.Addr{addr6}) || res.Cached {
		t.Fatalf("first lookup: %+v", res)
	}
	sent(t, srv, "web.test", 1, 1)

	clk.advance(29*time.Second + 999*time.Millisecond)
	if res := mustLookup(t, r, "web.test"); !res.Cached || !slices.Equal(res.V4, []netip.Addr{addr1, addr2}) {
		t.Fatalf("within the TTL: %+v", res)
	}
	sent(t, srv, "web.test", 1, 1)

	clk.advance(time.Millisecond)
	if res := mustLookup(t, r, "web.test"); res.Cached {
		t.Fatalf("after the TTL: %+v, want a fresh answer", res)
	}
	sent(t, srv, "web.test", 2, 2)
	if st := r.Stats(); st.Hits != 1 || st.Misses != 2 || st.Queries != 4 || st.Entries != 1 {
		t.Errorf("stats %+v, want 1 hit, 2 misses, 4 queries, 1 entry", st)
	}
}

func TestTTLClamp(t *testing.T) {
	for _, tc := range []struct {
		name           string
		ttl            uint32
		minTTL, maxTTL time.Duration
		kept           time.Duration
	}{
		{"raised to MinTTL", 5, 40 * time.Second, 0, 40 * time.Second},
		{"lowered to MaxTTL", 3600, 0, 90 * time.Second, 90 * time.Second},
		{"default MaxTTL", 86400, 0, 0, DefaultMaxTTL},
		{"TTL 0 not kept", 0, 0, time.Minute, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := zoneName{A: []netip.Addr{addr1}, AAAA: []netip.Addr{addr6}, TTL: tc.ttl, ZeroTTL: tc.ttl == 0}
			srv := startServer(t, map[string]zoneName{"web.test": z})
			r, clk := newTestResolver(t, srv, func(c *Config) { c.MinTTL, c.MaxTTL = tc.minTTL, tc.maxTTL })
			mustLookup(t, r, "web.test")
			if tc.kept > 0 {
				clk.advance(tc.kept - time.Second)
				mustLookup(t, r, "web.test")
				sent(t, srv, "web.test", 1, 1)
				clk.advance(time.Second)
			}
			mustLookup(t, r, "web.test")
			sent(t, srv, "web.test", 2, 2)
		})
	}
}

func TestNegativeCache(t *testing.T) {
	for _, tc := range []struct {
		name        string
		zone        map[string]zoneName
		soa         *[2]uint32
		kept        time.Duration
		wantQueries int // per family, after a second lookup
	}{
		{"NXDOMAIN kept for the SOA minimum", nil, &[2]uint32{300, 10}, 10 * time.Second, 1},
		{"NXDOMAIN kept for the SOA's own TTL when smaller", nil, &[2]uint32{7, 100}, 7 * time.Second, 1},
		{"NXDOMAIN kept at most 30 s", nil, &[2]uint32{3600, 3600}, MaxNegativeTTL, 1},
		{"NODATA kept", map[string]zoneName{"nope.test": {}}, &[2]uint32{300, 20}, 20 * time.Second, 1},
		{"NXDOMAIN without SOA not kept", nil, nil, 0, 2},
		{"NODATA without SOA not kept", map[string]zoneName{"nope.test": {}}, nil, 0, 2},
		{"NODATA without SOA kept for NegativeTTLWithoutSOA", map[string]zoneName{"nope.test": {}}, nil, 5 * time.Second, 1},
		{"NXDOMAIN without SOA kept for NegativeTTLWithoutSOA", nil, nil, 5 * time.Second, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, tc.zone)
			if tc.soa != nil {
				srv.setSOA(tc.soa[0], tc.soa[1])
			}
			r, clk := newTestResolver(t, srv, func(c *Config) {
				if tc.soa == nil && tc.kept > 0 {
					c.NegativeTTLWithoutSOA = tc.kept
				}
			})
			for range 2 {
				_, err := r.Lookup(context.Background(), "nope.test")
				var dnsErr *net.DNSError
				if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound || dnsErr.Name != "nope.test" {
					t.Fatalf("got %v, want a not-found DNSError for nope.test", err)
				}
			}
			sent(t, srv, "nope.test", tc.wantQueries, tc.wantQueries)
			if tc.kept == 0 {
				return
			}
			if st := r.Stats(); st.Hits != 1 {
				t.Errorf("the cached answer counts as a hit: %+v", st)
			}
			clk.advance(tc.kept - time.Millisecond)
			_, _ = r.Lookup(context.Background(), "nope.test")
			sent(t, srv, "nope.test", 1, 1)
			clk.advance(time.Millisecond)
			_, _ = r.Lookup(context.Background(), "nope.test")
			sent(t, srv, "nope.test", 2, 2)
		})
	}
}

func TestConcurrentLookupsShareOneQuery(t *testing.T) {
	// The delay keeps the first query in flight while the others arrive.
	srv := startServer(t, map[string]zoneName{"web.test": {A: []netip.Addr{addr1}, AAAA: []netip.Addr{addr6}, Delay: 200 * time.Millisecond}})
	var queries, hits atomic.Int32
	r, _ := newTestResolver(t, srv, func(c *Config) {
		c.OnQuery = func(result string) {
			if result == "ok" {
				queries.Add(1)
			}
		}
		c.OnCacheHit = func() { hits.Add(1) }
	})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			res, err := r.Lookup(context.Background(), "web.test")
			if err == nil && (!slices.Equal(res.V4, []netip.Addr{addr1}) || !slices.Equal(res.V6, []netip.Addr{addr6})) {
				err = errors.New("wrong answer")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	sent(t, srv, "web.test", 1, 1)
	if queries.Load() != 2 || hits.Load() != 0 {
		t.Errorf("OnQuery(ok) called %d times, OnCacheHit %d; want 2 and 0", queries.Load(), hits.Load())
	}
}

// With the cache off, concurrent lookups still share a query; later ones ask again.
func TestCacheOff(t *testing.T) {
	srv := startServer(t, map[string]zoneName{"web.test": {A: []netip.Addr{addr1}, AAAA: []netip.Addr{addr6}, Delay: 100 * time.Millisecond}})
	r, _ := newTestResolver(t, srv, func(c *Config) { c.CacheSize = 0 })
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { mustLookup(t, r, "web.test") })
	}
	wg.Wait()
	sent(t, srv, "web.test", 1, 1)
	mustLookup(t, r, "web.test")
	sent(t, srv, "web.test", 2, 2)
	if st := r.Stats(); st.Entries != 0 || st.Hits != 0 {
		t.Errorf("stats %+v, want nothing cached", st)
	}
}

func TestLRUBound(t *testing.T) {
	zone := map[string]zoneName{}
	for _, n := range []string{"a.test", "b.test", "c.test"} {
		zone[n] = zoneName{A: []netip.Addr{addr1}, AAAA: []netip.Addr{addr6}}
	}
	srv := startServer(t, zone)
	r, _ := newTestResolver(t, srv, func(c *Config) { c.CacheSize = 2 })
	mustLookup(t, r, "a.test")
	mustLookup(t, r, "b.test")
	mustLookup(t, r, "a.test") // a is now the most recently used
	mustLookup(t, r, "c.test") // evicts b
	if st := r.Stats(); st.Entries != 2 {
		t.Fatalf("%d names cached, want 2", st.Entries)
	}
	if !mustLookup(t, r, "a.test").Cached {
		t.Error("a.test was evicted, though used more recently than b.test")
	}
	if mustLookup(t, r, "b.test").Cached {
		t.Error("b.test is still cached beyond the bound")
	}
	sent(t, srv, "b.test", 2, 2)
	sent(t, srv, "a.test", 1, 1)
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	srv := startServer(t, map[string]zoneName{"big.test": {A: []netip.Addr{addr1, addr2}, AAAA: []netip.Addr{addr6}, Truncate: true}})
	r, _ := newTestResolver(t, srv, nil)
	res := mustLookup(t, r, "big.test")
	if !slices.Equal(res.V4, []netip.Addr{addr1, addr2}) || !slices.Equal(res.V6, []netip.Addr{addr6}) {
		t.Fatalf("got %+v", res)
	}
	// Each family: once over UDP (truncated), once over TCP.
	sent(t, srv, "big.test", 2, 2)
	if srv.tcpQueries("big.test", "A") != 1 || srv.tcpQueries("big.test", "AAAA") != 1 {
		t.Errorf("TCP queries: %d A, %d AAAA; want 1 each", srv.tcpQueries("big.test", "A"), srv.tcpQueries("big.test", "AAAA"))
	}
}

func TestSpoofedRepliesIgnored(t *testing.T) {
	srv := startServer(t, map[string]zoneName{"web.test": {A: []netip.Addr{addr1}, AAAA: []netip.Addr{addr6}, Spoof: true}})
	r, _ := newTestResolver(t, srv, nil)
	res := mustLookup(t, r, "web.test")
	if !slices.Equal(res.V4, []netip.Addr{addr1}) || !slices.Equal(res.V6, []netip.Addr{addr6}) {
		t.Fatalf("got %+v; a spoofed reply (%v, %v) was taken", res, poisonAddr4, poisonAddr6)
	}
}

func TestCNAMEChainFollowed(t *testing.T) {
	srv := startServer(t, map[string]zoneName{
		"www.test":  {CNAME: "cdn.test", TTL: 20},
		"cdn.test":  {CNAME: "edge.test", TTL: 300},
		"edge.test": {A: []netip.Addr{addr2}, AAAA: []netip.Addr{addr6}, TTL: 300},
	})
	r, clk := newTestResolver(t, srv, nil)
	res := mustLookup(t, r, "www.test")
	if !slices.Equal(res.V4, []netip.Addr{addr2}) || !slices.Equal(res.V6, []netip.Addr{addr6}) {
		t.Fatalf("got %+v", res)
	}
	// The chain's smallest TTL (the first CNAME's 20 s) bounds the answer.
	clk.advance(20 * time.Second)
	mustLookup(t, r, "www.test")
	sent(t, srv, "www.test", 2, 2)
	sent(t, srv, "edge.test", 0, 0)
}

// TestNegativeTTLWithoutSOABounded: a setting above MaxNegativeTTL is
// clamped to it.
func TestNegativeTTLWithoutSOABounded(t *testing.T) {
	srv := startServer(t, map[string]zoneName{"nope.test": {}})
	r, clk := newTestResolver(t, srv, func(c *Config) { c.NegativeTTLWithoutSOA = time.Hour })
	_, _ = r.Lookup(context.Background(), "nope.test")
	clk.advance(MaxNegativeTTL - time.Millisecond)
	_, _ = r.Lookup(context.Background(), "nope.test")
	sent(t, srv, "nope.test", 1, 1)
	clk.advance(time.Millisecond)
	_, _ = r.Lookup(context.Background(), "nope.test")
	sent(t, srv, "nope.test", 2, 2)
}

// TestSecondFamilyNotWaitedFor: a server that never answers AAAA does not
// hold up a lookup whose A answer came (RFC 8305's Resolution Delay), with
// the resolv.conf budget for the AAAA question far beyond the test's
// deadline; and an AAAA answer that comes late still lands in the cache
// for the next lookup, which then sends nothing.
func TestSecondFamilyNotWaitedFor(t *testing.T) {
	srv := startServer(t, map[string]zoneName{
		"v4.test":   {A: []netip.Addr{addr1}, SilentAAAA: true},
		"late.test": {A: []netip.Addr{addr1}, AAAA: []netip.Addr{addr6}, DelayAAAA: 300 * time.Millisecond},
	})
	r, _ := newTestResolver(t, srv, func(c *Config) {
		c.ResolutionDelay = 0 // the default, 50 ms
		c.ResolvConf = writeFile(t, filepath.Join(t.TempDir(), "resolv.conf"), "options timeout:30 attempts:5\n")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", "v4.test")
	if err != nil || !slices.Equal(addrs, []netip.Addr{addr1}) {
		t.Fatalf("v4.test: %v, %v; want its A answer without waiting for the AAAA one", addrs, err)
	}
	// The second lookup is served by the cached A and leaves AAAA to the
	// question still in flight: no new query for either.
	if addrs, err := r.LookupNetIP(ctx, "ip", "v4.test"); err != nil || !slices.Equal(addrs, []netip.Addr{addr1}) {
		t.Fatalf("v4.test again: %v, %v", addrs, err)
	}
	sent(t, srv, "v4.test", 1, 1)

	if addrs, err := r.LookupNetIP(ctx, "ip", "late.test"); err != nil || !slices.Equal(addrs, []netip.Addr{addr1}) {
		t.Fatalf("late.test: %v, %v", addrs, err)
	}
	eventually(t, func() bool {
		res, err := r.Lookup(ctx, "late.test")
		return err == nil && res.Cached && slices.Equal(res.V6, []netip.Addr{addr6})
	})
	sent(t, srv, "late.test", 1, 1)

	// Lookup, for dst rules, waits for both families.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if res, err := r.Lookup(short, "v4.test"); err == nil {
		t.Errorf("Lookup of a name whose AAAA never comes: %+v, want it to wait (here, for its context)", res)
	}
}

// TestAddressesPerFamilyCapped: an answer of many records keeps only the
// first MaxAddrsPerFamily of them, in the server's order.
func TestAddressesPerFamilyCapped(t *testing.T) {
	var many []netip.Addr
	for i := range 40 {
		many = append(many, netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}))
	}
	srv := startServer(t, map[string]zoneName{"many.test": {A: many, AAAA: []netip.Addr{addr6}}})
	r, _ := newTestResolver(t, srv, nil)
	for _, want := range []bool{false, true} {
		res := mustLookup(t, r, "many.test")
		if res.Cached != want || !slices.Equal(res.V4, many[:MaxAddrsPerFamily]) || !slices.Equal(res.V6, []netip.Addr{addr6}) {
			t.Fatalf("cached %v: got %d IPv4 addresses %v, cached %v; want the first %d", want, len(res.V4), res.V4, res.Cached, MaxAddrsPerFamily)
		}
	}
}
