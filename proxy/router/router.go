// Package router decides, for one client request, which rule applies and
// which NICs may carry it. It is pure apart from the one name lookup a dst
// rule needs, which goes through an injected Resolver, so the same code
// answers `nicproxy route` and serves live connections.
package router

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"nicproxy/bind/dnscache"
	"nicproxy/config"
)

// Request is what is known about a connection when it is routed.
type Request struct {
	Client   netip.AddrPort // the client's address as the listener saw it
	User     string         // authenticated user (or SOCKS4 user id); "" if none
	Listener string         // name of the listener the client came in on
	Host     string         // destination as requested: a name or an IP literal
	Port     uint16         // destination port; 0 when unknown (no port rule matches)
	Network  config.Network // config.NetworkTCP or config.NetworkUDP
	// Server is the address the client connected to (the accepted
	// socket's local address); with Client it names the client's socket
	// for unit, cgroup, uid and program rules.
	Server netip.AddrPort
	// Peer is the connection's record of who the client is; nil when
	// the caller keeps none (those rules then match nothing).
	Peer *Peer
}

// Decision is the router's answer.
type Decision struct {
	// Rule is the index of the matching rule, or -1 for the default.
	Rule int
	// RuleName is the rule's name, or "default".
	RuleName string
	// Action is config.ActionVia or config.ActionReject.
	Action config.Action
	// Via lists the NICs that may carry the connection (zero when rejected).
	Via config.Via
	// Addr is the address a dst rule matched after resolving Host; the
	// caller dials it and does not look the name up again. Zero when the
	// rule did not need an address resolved.
	Addr netip.Addr
	// Lookup is the lookup of Host made to test dst rules, or nil when
	// none was needed. When the flow is dialed through the NIC that made
	// it, the dialer uses its answer rather than ask again.
	Lookup *Lookup
	// Peer is the request's Peer when a rule asked who the client is,
	// nil when none needed to.
	Peer *Peer
}

// Lookup is one lookup of a destination name, made to test dst rules.
type Lookup struct {
	// Via is the NIC that looked the name up (config.Resolver.Via), or
	// "system".
	Via string
	// Addrs are the addresses found, in the resolver's order.
	Addrs []netip.Addr
	// Err is the lookup's error; dst rules then matched nothing.
	Err error
	// Cached is true when the resolver answered from its cache.
	Cached bool
}

// Resolver looks names up for dst rules; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// cacheReporter is a Resolver that can say whether a lookup was answered
// from its cache, for `nicproxy route` (*dnscache.Resolver).
type cacheReporter interface {
	Lookup(ctx context.Context, host string) (dnscache.Result, error)
}

// Router matches requests against one configuration's compiled rules.
// It holds no mutable state and is safe for concurrent use; a reload builds
// a new Router.
type Router struct {
	rules       []config.Rule
	fallback    config.Via
	resolver    Resolver
	resolverVia string
	clients     Clients
}

// New returns a Router over cfg's rules and default. resolver looks up the
// names dst rules meet, through cfg.Resolver.Via; nil means such rules
// never match a name. One resolver for every dst rule makes the NIC that
// carries a flow's lookup predictable: resolver.via, or the flow's own NIC.
// clients tells who a local client is, for unit, cgroup, uid and program
// rules; nil means they match only a Request's already known Peer.
func New(cfg *config.Config, resolver Resolver, clients Clients) *Router {
	if isNilResolver(resolver) {
		resolver = nil
	}
	return &Router{rules: cfg.Rules, fallback: cfg.Default, resolver: resolver, resolverVia: cfg.Resolver.Via, clients: clients}
}

// Route returns the decision for req: the first rule whose given fields all
// match, or the default.
func (r *Router) Route(ctx context.Context, req Request) Decision {
	d, _ := r.route(ctx, req, false)
	return d
}

// Explanation says why a decision was made, for `nicproxy route`.
type Explanation struct {
	// Matched describes each field of the winning rule and why it matched.
	Matched []string
	// Lookup is the lookup dst rules needed, if any: who made it, what it
	// found, and whether the answer was cached.
	Lookup *Lookup
}

// Explain is Route with the reasons spelled out.
func (r *Router) Explain(ctx context.Context, req Request) (Decision, Explanation) {
	return r.route(ctx, req, true)
}

func (r *Router) route(ctx context.Context, req Request, explain bool) (Decision, Explanation) {
	var (
		why    Explanation
		lookup *Lookup // made at most once per request
	)
	dest := newDestination(req)
	for i := range r.rules {
		rule := &r.rules[i]
		if !matchFields(rule, req, dest) {
			continue
		}
		// Who the client is costs a netlink round trip: asked only once
		// every field in memory has matched, and once per connection.
		if rule.NeedsClient() && (req.Peer == nil || !req.Peer.matchClient(rule, r.clients, req.Client, req.Server)) {
			continue
		}
		// dst is tried last so a name is only resolved once every cheaper
		// field of the rule has matched.
		matched, ok := r.matchDst(ctx, rule, req, dest, &lookup)
		if !ok {
			continue
		}
		if explain {
			why.Matched = explainFields(rule, req, dest, matched)
		}
		why.Lookup = lookup
		d := Decision{Rule: rule.Index, RuleName: rule.Name, Action: rule.Action, Via: rule.Via, Lookup: lookup, Peer: askedPeer(req.Peer)}
		if !dest.isLiteral {
			d.Addr = matched // resolved: dial the address that matched, not the name
		}
		return d, why
	}
	if explain {
		why.Matched = []string{"no rule matched"}
	}
	why.Lookup = lookup
	return Decision{Rule: -1, RuleName: "default", Action: config.ActionVia, Via: r.fallback, Lookup: lookup, Peer: askedPeer(req.Peer)}, why
}

// askedPeer is p when a rule asked who the client is, else nil.
func askedPeer(p *Peer) *Peer {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.asked {
		return nil
	}
	return p
}

// destination is what matching needs of a request, worked out once.
type destination struct {
	literal   netip.Addr // the host as an IP, when it is one
	isLiteral bool
	client    netip.Addr
}

func newDestination(req Request) destination {
	d := destination{client: req.Client.Addr().Unmap()}
	if a, err := netip.ParseAddr(strings.Trim(req.Host, "[]")); err == nil {
		d.literal, d.isLiteral = a.Unmap(), true
	}
	return d
}

// matchFields reports whether every field of rule but dst matches. It
// allocates nothing: it runs for every rule of every connection.
func matchFields(rule *config.Rule, req Request, dest destination) bool {
	switch {
	case rule.Network != config.NetworkAny && rule.Network != req.Network:
	case len(rule.Listeners) > 0 && !slices.Contains(rule.Listeners, req.Listener):
	case len(rule.Users) > 0 && (req.User == "" || !slices.Contains(rule.Users, req.User)):
	case rule.Src.Len() > 0 && !rule.Src.Contains(dest.client):
	case rule.Ports.Len() > 0 && (req.Port == 0 || !rule.Ports.Contains(req.Port)):
	case rule.Domains.Len() > 0 && (dest.isLiteral || !rule.Domains.Match(req.Host)):
	default:
		return true
	}
	return false
}

// matchDst reports whether rule's dst matches (true when it has none), and
// the address that matched: the literal, or the first address of the name
// inside dst, looked up at most once per request through resolver.via.
func (r *Router) matchDst(ctx context.Context, rule *config.Rule, req Request, dest destination, lookup **Lookup) (netip.Addr, bool) {
	switch {
	case rule.Dst.Len() == 0:
		return netip.Addr{}, true
	case dest.isLiteral:
		return dest.literal, rule.Dst.Contains(dest.literal)
	}
	if *lookup == nil {
		*lookup = r.resolve(ctx, req.Host)
	}
	return firstIn(rule.Dst, (*lookup).Addrs)
}

// explainFields says why each field of a matching rule matched, for
// `nicproxy route`.
func explainFields(rule *config.Rule, req Request, dest destination, matched netip.Addr) []string {
	var reasons []string
	note := func(format string, args ...any) { reasons = append(reasons, fmt.Sprintf(format, args...)) }
	if rule.Network != config.NetworkAny {
		note("network %s", rule.Network)
	}
	if len(rule.Listeners) > 0 {
		note("listener %s", req.Listener)
	}
	if len(rule.Users) > 0 {
		note("user %s", req.User)
	}
	if rule.Src.Len() > 0 {
		note("client %s in src %s", dest.client, rule.Src)
	}
	if rule.Ports.Len() > 0 {
		note("port %d in %s", req.Port, rule.Ports)
	}
	if rule.Domains.Len() > 0 {
		note("domain %s in %s", req.Host, rule.Domains)
	}
	if rule.NeedsClient() {
		info := req.Peer.Info()
		if len(rule.Units) > 0 {
			note("unit %s in %s", info.Unit, strings.Join(rule.Units, ", "))
		}
		if len(rule.Cgroups) > 0 {
			note("cgroup %s in %s", info.Cgroup, strings.Join(rule.Cgroups, ", "))
		}
		if len(rule.UIDs) > 0 {
			note("uid %d", info.UID)
		}
		if len(rule.Programs) > 0 {
			note("program %s in %s", info.Program, strings.Join(rule.Programs, ", "))
		}
	}
	if rule.Dst.Len() > 0 {
		note("address %s in dst %s", matched, rule.Dst)
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "the rule has no match fields: it matches everything")
	}
	return reasons
}

// resolve looks host up through resolver.via for dst rules.
func (r *Router) resolve(ctx context.Context, host string) *Lookup {
	l := &Lookup{Via: r.resolverVia}
	var addrs []netip.Addr
	switch res := r.resolver.(type) {
	case nil:
		l.Err = fmt.Errorf("no resolver for dst rules")
		return l
	case cacheReporter:
		var found dnscache.Result
		if found, l.Err = res.Lookup(ctx, host); l.Err == nil {
			addrs, l.Cached = append(found.V4, found.V6...), found.Cached
		}
	default:
		addrs, l.Err = res.LookupNetIP(ctx, "ip", host)
	}
	if l.Err == nil {
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
		l.Addrs = addrs
	}
	return l
}

// isNilResolver catches a typed nil inside the interface (a nil
// *net.Resolver or *dnscache.Resolver handed to New).
func isNilResolver(r Resolver) bool {
	switch nr := r.(type) {
	case *net.Resolver:
		return nr == nil
	case *dnscache.Resolver:
		return nr == nil
	}
	return false
}

// firstIn returns the first address, in resolver order, inside set.
func firstIn(set config.PrefixSet, addrs []netip.Addr) (netip.Addr, bool) {
	for _, a := range addrs {
		if set.Contains(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}
