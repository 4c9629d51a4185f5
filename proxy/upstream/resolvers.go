package upstream

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"nicproxy/bind"
	"nicproxy/bind/dnscache"
	"nicproxy/bind/linkdns"
	"nicproxy/config"
)

// Resolver looks names up through one NIC (or the system's resolver).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// LinkDNS reports a NIC's own DNS servers where the host keeps them per
// link (bind/linkdns.Watcher), nil when it has none; called on every
// lookup, so it reads memory.
type LinkDNS interface {
	Servers(nic string) []netip.AddrPort
}

// DNSObserver is told about each query a resolver sends and each lookup a
// cache answers, for the metrics and the status page.
type DNSObserver interface {
	Query(nic, result string)
	CacheHit(nic string)
}

// resolvers holds one resolver per NIC. A reload builds a new set from the
// old one and keeps a NIC's resolver, with its cache, when nothing that
// decides its answers changed: its servers, its socket options and the
// cache settings.
type resolvers struct {
	settings config.Resolver
	resDelay time.Duration // timeouts.resolution_delay
	observer DNSObserver
	linkDNS  LinkDNS
	// carried are the previous set's resolvers not yet claimed by this
	// set, offered to it as it fills: a copy, from which each NIC's entry
	// goes once the NIC has a resolver here (its old one kept or
	// replaced), so a retired resolver is not kept by the set after it.
	// Nothing here refers to the set itself, so sets of past reloads are
	// not kept alive in a chain.
	carried    map[string]*nicResolver
	carriedSys Resolver

	mu    sync.Mutex
	byNIC map[string]*nicResolver
	sys   Resolver
}

type nicResolver struct {
	servers  []netip.AddrPort
	options  bind.Options
	resolver *dnscache.Resolver
}

func newResolvers(settings config.Resolver, resDelay time.Duration, observer DNSObserver, linkDNS LinkDNS, prev *resolvers) *resolvers {
	if observer == nil {
		observer = discardDNS{}
	}
	rs := &resolvers{settings: settings, resDelay: resDelay, observer: observer, linkDNS: linkDNS, byNIC: map[string]*nicResolver{}}
	// When the cache size, TTL clamps or resolution delay changed, every
	// cache starts afresh.
	if prev != nil && prev.settings == settings && prev.resDelay == resDelay {
		prev.mu.Lock()
		rs.carried, rs.carriedSys = maps.Clone(prev.byNIC), prev.sys
		prev.mu.Unlock()
	}
	return rs
}

// forNIC returns nic's resolver, whose queries leave through dialer.
func (rs *resolvers) forNIC(nic string, servers []netip.AddrPort, dialer *bind.Dialer) Resolver {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r, ok := rs.byNIC[nic]; ok {
		return familyResolver{r.resolver, dialer}
	}
	old, ok := rs.carried[nic]
	delete(rs.carried, nic)
	if ok && slices.Equal(old.servers, servers) && old.options == dialer.Options {
		rs.byNIC[nic] = old
		return familyResolver{old.resolver, dialer}
	}
	var linkServers func() []netip.AddrPort
	if src := rs.linkDNS; src != nil {
		linkServers = func() []netip.AddrPort { return src.Servers(nic) }
	}
	// The callbacks hold the observer, not rs: a cache carried into the
	// next set must not keep this one alive.
	observer := rs.observer
	cache := dnscache.New(dnscache.Config{
		NIC: nic, Servers: servers, Dial: dialer.DialContext,
		LinkServers: linkServers, LinkOrigin: linkdns.Origin,
		CacheSize: rs.settings.CacheSize, MinTTL: rs.settings.MinTTL, MaxTTL: rs.settings.MaxTTL,
		NegativeTTLWithoutSOA: rs.settings.NegativeTTLWithoutSOA, ResolutionDelay: rs.resDelay,
		OnQuery:    func(result string) { observer.Query(nic, result) },
		OnCacheHit: func() { observer.CacheHit(nic) },
	})
	r := &nicResolver{servers: servers, options: dialer.Options, resolver: cache}
	rs.byNIC[nic] = r
	return familyResolver{r.resolver, dialer}
}

// familyResolver asks a name, when both families are wanted, only for the
// families its NIC can carry now (bind.Families: AI_ADDRCONFIG per NIC),
// read from the dialer's Links, which the link watcher keeps in memory.
type familyResolver struct {
	cache  *dnscache.Resolver
	dialer *bind.Dialer
}

func (f familyResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if network == "ip" {
		network = f.dialer.Families().Network()
	}
	return f.cache.LookupNetIP(ctx, network, host)
}

// Lookup is the router's lookup for dst rules (it reports whether the
// cache answered), narrowed to the NIC's families like LookupNetIP.
func (f familyResolver) Lookup(ctx context.Context, host string) (dnscache.Result, error) {
	return f.cache.LookupNetwork(ctx, f.dialer.Families().Network(), host)
}

// stats returns nic's cache counters, if nic has a resolver yet.
func (rs *resolvers) stats(nic string) (dnscache.Stats, bool) {
	rs.mu.Lock()
	r, ok := rs.byNIC[nic]
	rs.mu.Unlock()
	if !ok {
		return dnscache.Stats{}, false
	}
	return r.resolver.Stats(), true
}

// discardDNS is the observer when nobody counts.
type discardDNS struct{}

func (discardDNS) Query(string, string) {}
func (discardDNS) CacheHit(string)      {}

// system returns the unpinned resolver for via: system: the host's own
// (nsswitch, a loopback stub and its cache included), which is what
// "the routing table decides" means for names too.
func (rs *resolvers) system() Resolver {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.sys == nil {
		rs.sys = rs.carriedSys
		if rs.sys == nil {
			rs.sys = net.DefaultResolver
		}
	}
	return rs.sys
}
