// Package dnscache is a stub resolver with a TTL cache, one per NIC, whose
// every query leaves on a socket from an injected (pinned) dial function.
//
// Go's net.Resolver hides TTLs, so it cannot cache; this package speaks
// DNS itself through golang.org/x/net/dns/dnsmessage (the parser Go's own
// resolver uses) and keeps what Go's resolver honours: /etc/hosts first,
// resolv.conf's nameservers, search, ndots, timeout, attempts and rotate,
// TCP after a truncated answer, random query IDs with answers checked
// against them.
package dnscache

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DialFunc opens a connection for DNS queries ("udp" or "tcp") to a
// nameserver. It must honour ctx: a lookup whose callers all gave up
// cancels it and waits for it to return.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Config configures a Resolver for one NIC.
type Config struct {
	NIC     string           // for messages and errors
	Servers []netip.AddrPort // interfaces.<nic>.dns, used in turn; empty: LinkServers', else resolv.conf's nameservers
	Dial    DialFunc         // required: the NIC's pinned dialer
	// LinkServers, when set and Servers is empty, returns the NIC's own
	// servers from a per-link source (systemd-resolved), or none; it is
	// called on every lookup, so it must read memory (linkdns.Watcher).
	// LinkOrigin says where they come from, for Servers.
	LinkServers func() []netip.AddrPort
	LinkOrigin  string

	ResolvConf    string // "" -> /etc/resolv.conf
	StubUpstreams string // "" -> /run/systemd/resolve/resolv.conf
	Hosts         string // "" -> /etc/hosts

	CacheSize      int           // names kept; 0 turns caching off (queries still shared in flight)
	MinTTL, MaxTTL time.Duration // clamp for positive answers; MaxTTL 0 means DefaultMaxTTL
	// NegativeTTLWithoutSOA is how long a negative answer that carries no
	// SOA is kept (RFC 2308 says not at all: 0), at most MaxNegativeTTL.
	// Many home routers and dnsmasq answer AAAA that way; without it every
	// connection to an IPv4-only name asks AAAA again.
	NegativeTTLWithoutSOA time.Duration
	// ResolutionDelay is how long a lookup of both families waits for the
	// second once the first has addresses (RFC 8305 section 3); the late
	// answer still lands in the cache. 0 means DefaultResolutionDelay.
	ResolutionDelay time.Duration

	// OnQuery is called once per question sent (one name, one family,
	// however many servers and retries it took) with its result: "ok",
	// "nxdomain", "nodata" or "error".
	OnQuery func(result string)
	// OnCacheHit is called once per lookup answered wholly from the DNS
	// cache, a cached negative answer included; /etc/hosts and IP
	// literals are neither hits nor queries.
	OnCacheHit func()
}

// Defaults for the Config's empty fields.
const (
	DefaultResolvConf    = "/etc/resolv.conf"
	DefaultStubUpstreams = "/run/systemd/resolve/resolv.conf" // systemd-resolved's upstream servers
	DefaultHosts         = "/etc/hosts"
	DefaultMaxTTL        = 10 * time.Minute
	// MaxNegativeTTL bounds how long a name is known not to exist.
	MaxNegativeTTL = 30 * time.Second
	// DefaultResolutionDelay is RFC 8305's recommended Resolution Delay.
	DefaultResolutionDelay = 50 * time.Millisecond
	// MaxAddrsPerFamily bounds the addresses kept (and returned) per
	// family of one name, so the cache's memory is bounded in bytes, not
	// only in names: an answer of hundreds of records is cut to its first.
	MaxAddrsPerFamily = 16
)

// ErrNoNameserver is wrapped by the error of a lookup that has no server
// to ask through the NIC: the system's nameserver is a loopback stub
// whose upstream servers are unknown.
var ErrNoNameserver = errors.New("no nameserver reachable through the NIC")

// Result holds a name's addresses by family, each in the server's order
// (Happy Eyeballs interleaves them), and whether the whole answer came from
// the cache (or /etc/hosts, or was an IP literal) with no query sent.
type Result struct {
	V4, V6 []netip.Addr
	Cached bool
}

// Stats are a Resolver's counters. The cache's hit rate is Hits over Hits
// plus Misses; /etc/hosts answers and IP literals are neither.
type Stats struct {
	Hits    uint64 // lookups answered wholly from the cache
	Misses  uint64 // lookups that waited for at least one query
	Queries uint64 // questions sent (one name, one family each)
	Entries int    // names held now, an expired one until next looked up or evicted
}

// Resolver resolves names through one NIC. It is safe for concurrent use.
type Resolver struct {
	cfg    Config
	now    func() time.Time // a fake clock in tests
	resolv *watchedFile[*resolvConf]
	stub   *watchedFile[[]netip.AddrPort]
	hosts  *watchedFile[hostsFile]
	next   atomic.Uint32 // rotation among the servers

	setMu    sync.Mutex
	settings *settings // the servers and options in force, rebuilt when a file changes

	mu      sync.Mutex
	cache   lru
	flights map[flightKey]*flight
	running sync.WaitGroup // every flight's goroutine, for Close

	hits, misses, queries atomic.Uint64
}

// New returns a Resolver for cfg. It reads no file and sends nothing yet.
func New(cfg Config) *Resolver {
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = DefaultResolvConf
	}
	if cfg.StubUpstreams == "" {
		cfg.StubUpstreams = DefaultStubUpstreams
	}
	if cfg.Hosts == "" {
		cfg.Hosts = DefaultHosts
	}
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.ResolutionDelay <= 0 {
		cfg.ResolutionDelay = DefaultResolutionDelay
	}
	cfg.NegativeTTLWithoutSOA = min(max(cfg.NegativeTTLWithoutSOA, 0), MaxNegativeTTL)
	if cfg.Dial == nil {
		cfg.Dial = func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("dnscache: Config.Dial is nil")
		}
	}
	cfg.Servers = append([]netip.AddrPort(nil), cfg.Servers...)
	return &Resolver{
		cfg:     cfg,
		now:     time.Now,
		resolv:  &watchedFile[*resolvConf]{path: cfg.ResolvConf, parse: parseResolvConf, interval: confCheckInterval},
		stub:    &watchedFile[[]netip.AddrPort]{path: cfg.StubUpstreams, parse: Nameservers, interval: confCheckInterval},
		hosts:   &watchedFile[hostsFile]{path: cfg.Hosts, parse: parseHosts, interval: confCheckInterval},
		cache:   newLRU(cfg.CacheSize),
		flights: map[flightKey]*flight{},
	}
}

// Stats returns the Resolver's counters.
func (r *Resolver) Stats() Stats {
	r.mu.Lock()
	entries := r.cache.len()
	r.mu.Unlock()
	return Stats{Hits: r.hits.Load(), Misses: r.misses.Load(), Queries: r.queries.Load(), Entries: entries}
}

// Close cancels the questions still in flight and waits for them to end.
// A lookup that stopped waiting for its second family (ResolutionDelay)
// leaves that question running so its answer reaches the cache; each such
// question ends by itself within its resolv.conf budget, and Close ends
// them at once. Lookups may still be made after Close.
func (r *Resolver) Close() {
	r.mu.Lock()
	for key, f := range r.flights {
		f.cancel()
		delete(r.flights, key)
	}
	r.mu.Unlock()
	r.running.Wait()
}

// Lookup returns host's IPv4 and IPv6 addresses, asking for both at once
// and waiting for both: a complete answer, for matching dst rules, where a
// family left out could choose another NIC. A name that does not exist,
// or has no address of either family, is a *net.DNSError with IsNotFound;
// a lookup that ran out of time has IsTimeout; any other failure names the
// server and the NIC.
func (r *Resolver) Lookup(ctx context.Context, host string) (Result, error) {
	return r.LookupNetwork(ctx, "ip", host)
}

// LookupNetIP returns host's addresses to connect to for network "ip"
// (IPv4 first, then IPv6), "ip4" or "ip6", asking only for the families
// needed. For "ip", once one family has addresses it waits at most the
// Resolution Delay for the other (RFC 8305 section 3). It satisfies
// proxy/router.Resolver. The slice is the caller's to change.
func (r *Resolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	want, err := families(network, host)
	if err != nil {
		return nil, err
	}
	res, err := r.lookup(ctx, host, want, false)
	if err != nil {
		return nil, err
	}
	return append(res.V4, res.V6...), nil
}

// LookupNetwork is Lookup for network "ip" (both families), "ip4" or
// "ip6": only the families needed are asked, and every one is waited for.
func (r *Resolver) LookupNetwork(ctx context.Context, network, host string) (Result, error) {
	want, err := families(network, host)
	if err != nil {
		return Result{}, err
	}
	return r.lookup(ctx, host, want, true)
}

// families is the families network asks for.
func families(network, host string) ([2]bool, error) {
	var want [2]bool
	switch network {
	case "ip":
		want = [2]bool{true, true}
	case "ip4":
		want[ipv4] = true
	case "ip6":
		want[ipv6] = true
	default:
		return want, &net.DNSError{Err: "unsupported network " + network, Name: host}
	}
	return want, nil
}

// lookup asks for host's wanted families; complete waits for every one
// of them, else the Resolution Delay applies.
func (r *Resolver) lookup(ctx context.Context, host string, want [2]bool, complete bool) (Result, error) {
	// IP literals are not the resolver's business.
	if addr, err := netip.ParseAddr(host); err == nil {
		if addr.Is4() {
			return Result{V4: []netip.Addr{addr}, Cached: true}, nil
		}
		return Result{V6: []netip.Addr{addr}, Cached: true}, nil
	}
	name := strings.ToLower(host)
	if !isDomainName(name) {
		return Result{}, notFound(host)
	}
	now := r.now()
	if addrs := r.hosts.get(now)[absolute(name)]; len(addrs) > 0 {
		if res, ok := split(addrs, want); ok {
			res.Cached = true
			return res, nil
		}
	}
	s := r.current(now)
	if s.noServer != nil {
		return Result{}, &net.DNSError{Err: s.noServer.Error(), Name: host, UnwrapErr: s.noServer}
	}

	sent := false
	var lastErr error
	for _, fqdn := range s.conf.nameList(name) {
		res, asked, err := r.lookupName(ctx, s, fqdn, want, complete)
		sent = sent || asked
		if err == nil {
			r.countHit(!sent)
			res.Cached = !sent
			return res, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			if sent {
				r.countHit(false)
			}
			return Result{}, canceled(host, ctxErr)
		}
		// As Go's resolver does: the error of the name as given wins,
		// else the first.
		if lastErr == nil || fqdn == name+"." {
			lastErr = err
		}
	}
	r.countHit(!sent)
	return Result{}, withName(lastErr, host)
}

// countHit counts a lookup as a hit or a miss.
func (r *Resolver) countHit(hit bool) {
	if !hit {
		r.misses.Add(1)
		return
	}
	r.hits.Add(1)
	if r.cfg.OnCacheHit != nil {
		r.cfg.OnCacheHit()
	}
}

// split sorts addrs (from /etc/hosts) into the families wanted; ok is
// false when none is left.
func split(addrs []netip.Addr, want [2]bool) (Result, bool) {
	var res Result
	for _, a := range addrs {
		switch {
		case a.Is4() && want[ipv4]:
			res.V4 = append(res.V4, a)
		case a.Is6() && want[ipv6]:
			res.V6 = append(res.V6, a)
		}
	}
	return res, len(res.V4)+len(res.V6) > 0
}

// notFound is the error for a name that does not exist (or has no address
// of the families asked for); callers map IsNotFound to "host unreachable".
func notFound(host string) *net.DNSError {
	return &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// canceled is the error of a lookup whose caller's ctx ended first.
func canceled(host string, ctxErr error) *net.DNSError {
	return &net.DNSError{
		Err: ctxErr.Error(), Name: host, UnwrapErr: ctxErr,
		IsTimeout: errors.Is(ctxErr, context.DeadlineExceeded),
	}
}

// withName returns a copy of a DNS error naming host as the caller gave it
// rather than the search-list name that failed.
func withName(err error, host string) error {
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		return err
	}
	c := *dnsErr
	c.Name = host
	return &c
}

// isDomainName reports whether s is a syntactically valid host name (RFC
// 1035 section 2.3.1, with underscores, as Go's resolver accepts it).
func isDomainName(s string) bool {
	if s == "." {
		return false
	}
	n := len(s)
	if n > 0 && s[n-1] == '.' {
		n--
	}
	if n == 0 || n > 253 {
		return false
	}
	last, labelLen := byte('.'), 0
	for i := 0; i < n; i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c >= 0x80:
			labelLen++
		case c == '-':
			if last == '.' {
				return false
			}
			labelLen++
		case c == '.':
			if last == '.' || last == '-' {
				return false
			}
			labelLen = 0
		default:
			return false
		}
		if labelLen > 63 {
			return false
		}
		last = c
	}
	return last != '-'
}
