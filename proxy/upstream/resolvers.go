package upstream

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"

	"nicproxy/bind"
	"nicproxy/config"
)

// Resolver looks names up through one NIC (or the system's resolver).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
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
	observer DNSObserver
	// carried are the previous set's resolvers, offered to this set as it
	// fills; a copy, so sets of past reloads are not kept alive in a chain.
	carried    map[string]*nicResolver
	carriedSys Resolver

	mu    sync.Mutex
	byNIC map[string]*nicResolver
	sys   Resolver
}

type nicResolver struct {
	servers  []netip.AddrPort
	options  bind.Options
	resolver Resolver
}

func newResolvers(settings config.Resolver, observer DNSObserver, prev *resolvers) *resolvers {
	rs := &resolvers{settings: settings, observer: observer, byNIC: map[string]*nicResolver{}}
	// When the cache size or TTL clamps changed, every cache starts afresh.
	if prev != nil && prev.settings == settings {
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
		return r.resolver
	}
	if old, ok := rs.carried[nic]; ok && slices.Equal(old.servers, servers) && old.options == dialer.Options {
		rs.byNIC[nic] = old
		return old.resolver
	}
	r := &nicResolver{servers: servers, options: dialer.Options, resolver: dialer.Resolver(servers)}
	rs.byNIC[nic] = r
	return r.resolver
}

// system returns the unpinned resolver for via: system.
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
