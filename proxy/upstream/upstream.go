// Package upstream turns a routing decision into a connection: it picks the
// NIC (failover order or balancing), resolves names through that NIC, and
// dials pinned. It is the only place in the proxy that opens sockets toward
// the destination, so it is where fail-closed is enforced.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"nicproxy/bind"
	"nicproxy/bind/dnscache"
	"nicproxy/config"
	"nicproxy/proxy/router"
)

// System is the NIC name reported for unpinned dials (via: system and
// loopback destinations).
const System = "system"

// ErrResolve marks a destination name that did not resolve through the
// chosen NIC; proxies answer it as "host unreachable".
var ErrResolve = errors.New("name did not resolve")

// Target is the destination of one connection.
type Target struct {
	Host string     // as requested: a name or an IP literal
	Port uint16     // destination port
	Addr netip.Addr // the address a dst rule matched, to dial as is; may be zero
}

// String renders the target as host:port.
func (t Target) String() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port)))
}

// Conn is a dialed upstream connection and what carried it.
type Conn struct {
	net.Conn
	NIC  string     // the NIC that carried it, or System
	Addr netip.Addr // the address dialed

	done    func() // uncounts the connection in the balancer; may be nil
	release sync.Once
}

// Release tells the balancer the connection is finished. It is safe to call
// more than once; Close calls it too.
func (c *Conn) Release() {
	c.release.Do(func() {
		if c.done != nil {
			c.done()
		}
	})
}

// Close closes the connection and releases it. Relays that splice the
// embedded conn close that directly and call Release themselves.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.Release()
	return err
}

// Dialer dials through NICs as decisions say. It is safe for concurrent use.
type Dialer struct {
	nics        map[string]*nicDialer
	links       bind.Links
	dialTimeout time.Duration
	attemptWait time.Duration
	balancer    *balancer
	healthy     func(nic string) bool
	resolvers   *resolvers
	system      Resolver // for via: system and loopback-free unpinned dials

	checkAddr func(netip.AddrPort) error

	mu      sync.Mutex // guards dynamic, NICs not named in the config (-i, default)
	dynamic map[string]*nicDialer
}

// checkFailed marks an error from Options.CheckAddr, so no other address
// or NIC is tried after it.
type checkFailed struct{ error }

func (e checkFailed) Unwrap() error { return e.error }

func (d *Dialer) check(a netip.Addr, port uint16) error {
	if d.checkAddr == nil {
		return nil
	}
	if err := d.checkAddr(netip.AddrPortFrom(a, port)); err != nil {
		return checkFailed{err}
	}
	return nil
}

type nicDialer struct {
	dialer   *bind.Dialer
	resolver Resolver
}

// Options are what a Dialer needs besides the configuration.
type Options struct {
	// Links reports NIC state; nil asks the kernel on every dial.
	Links bind.Links
	// Healthy reports whether a NIC passes its health check; nil: every
	// NIC does.
	Healthy func(nic string) bool
	// Previous is the Dialer this one replaces at a reload. Its name
	// caches carry over for NICs whose resolvers did not change, and its
	// balancer's counts and turns carry over, so a reload neither forgets
	// open connections nor restarts the rotation.
	Previous *Dialer
	// DNS receives the resolvers' query and cache-hit counts; nil drops them.
	DNS DNSObserver
	// LinkDNS gives a NIC without a dns setting its own servers; nil: the
	// system's nameservers.
	LinkDNS LinkDNS
	// CheckAddr, when set, is called with every address right before it
	// is dialed, pinned or not; its error aborts the whole dial (no other
	// address or NIC is tried) and is returned wrapped.
	CheckAddr func(netip.AddrPort) error
}

// New builds a Dialer for cfg.
func New(cfg *config.Config, opts Options) *Dialer {
	links := opts.Links
	if links == nil {
		links = bind.SystemLinks{}
	}
	healthy := opts.Healthy
	if healthy == nil {
		healthy = func(string) bool { return true }
	}
	var prev *resolvers
	bal := newBalancer()
	if opts.Previous != nil {
		prev, bal = opts.Previous.resolvers, opts.Previous.balancer
	}
	d := &Dialer{
		healthy:     healthy,
		nics:        map[string]*nicDialer{},
		links:       links,
		dialTimeout: cfg.Timeouts.Dial,
		attemptWait: cfg.Timeouts.Attempt,
		balancer:    bal,
		resolvers:   newResolvers(cfg.Resolver, cfg.Timeouts.ResolutionDelay, opts.DNS, opts.LinkDNS, prev),
		checkAddr:   opts.CheckAddr,
		dynamic:     map[string]*nicDialer{},
	}
	d.system = d.resolvers.system()
	for _, name := range cfg.NICs() {
		d.nics[name] = d.newNICDialer(name, cfg.Interfaces[name])
	}
	return d
}

func (d *Dialer) newNICDialer(name string, opts config.Interface) *nicDialer {
	bd := bind.NewDialer(name, bind.Options{Source: opts.Source, Mark: opts.Mark}, d.links)
	return &nicDialer{dialer: bd, resolver: d.resolvers.forNIC(name, opts.DNS, bd)}
}

func (d *Dialer) nic(name string) *nicDialer {
	if nd, ok := d.nics[name]; ok {
		return nd
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	nd, ok := d.dynamic[name]
	if !ok {
		nd = d.newNICDialer(name, config.Interface{})
		d.dynamic[name] = nd
	}
	return nd
}

// Available reports whether nic is present and up now.
func (d *Dialer) Available(nic string) bool {
	_, err := d.nic(nic).dialer.Check("tcp", "")
	return err == nil
}

// DNSStats returns the counters of nic's name cache; false when nic has
// not resolved anything since it was configured.
func (d *Dialer) DNSStats(nic string) (dnscache.Stats, bool) {
	return d.resolvers.stats(nic)
}

// Probe connects to target ("host:port") through nic and closes the
// connection: a health check that resolves and races exactly as a
// client's dial through that NIC would.
func (d *Dialer) Probe(ctx context.Context, nic, target string) error {
	host, portText, err := net.SplitHostPort(target)
	if err != nil {
		return err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return fmt.Errorf("port %q: %w", portText, err)
	}
	conn, err := d.dialNIC(ctx, "tcp", nic, Target{Host: host, Port: uint16(port)}, nil)
	if err != nil {
		return err
	}
	return conn.Conn.Close()
}

// Resolver returns the resolver whose queries leave through nic, or the
// system resolver for System.
func (d *Dialer) Resolver(nic string) Resolver {
	if nic == System || nic == config.ResolverViaSystem {
		return d.system
	}
	return d.nic(nic).resolver
}

// Dial connects to t as decision says, for the client at client. When the
// decision names several NICs, each is tried in turn (failover order, or the
// balancer's pick first) until one connects; the error of the last one is
// returned, and it names the NIC. Within a NIC, a name's addresses are
// raced (Happy Eyeballs), every attempt pinned to that NIC.
func (d *Dialer) Dial(ctx context.Context, network string, decision router.Decision, client netip.AddrPort, t Target) (*Conn, error) {
	if decision.Action == config.ActionReject {
		return nil, fmt.Errorf("dial %s: rejected by rule %s", t, decision.RuleName)
	}
	if isLoopback(t) {
		// Loopback never leaves the host: nothing to pin.
		return d.dialSystem(ctx, network, t, nil, nil)
	}
	if decision.Via.Mode == config.ViaSystem {
		return d.dialSystem(ctx, network, t, d.system, reusable(decision, System))
	}

	nics := decision.Via.NICs
	if len(nics) == 0 {
		return nil, fmt.Errorf("dial %s: rule %s names no NIC", t, decision.RuleName)
	}
	if decision.Via.Mode == config.ViaBalance {
		nics = d.balancer.order(decision, client, t.Host)
	}
	nics = d.healthyFirst(nics)
	var lastErr error
	for _, name := range nics {
		conn, err := d.dialNIC(ctx, network, name, t, reusable(decision, name))
		if err == nil {
			if decision.Via.Mode == config.ViaBalance {
				conn.done = d.balancer.opened(name)
			}
			return conn, nil
		}
		lastErr = err
		if !failoverWorthy(ctx, err) || errors.As(err, new(checkFailed)) {
			break
		}
	}
	return nil, lastErr
}

// reusable returns the router's lookup of the destination name when the NIC
// about to dial is the one that looked it up, so the name is not asked
// twice; nil otherwise: a NIC resolves through its own resolver.
func reusable(decision router.Decision, nic string) *router.Lookup {
	if l := decision.Lookup; l != nil && l.Via == nic {
		return l
	}
	return nil
}

// healthyFirst moves NICs failing their health check behind the others,
// keeping each group's order. They stay in the list: when every NIC fails
// its check, trying them (pinned) beats refusing.
func (d *Dialer) healthyFirst(nics []string) []string {
	if len(nics) < 2 {
		return nics
	}
	var good, bad []string
	for _, nic := range nics {
		if d.healthy(nic) {
			good = append(good, nic)
		} else {
			bad = append(bad, nic)
		}
	}
	if len(bad) == 0 {
		return nics
	}
	return append(good, bad...)
}

// failoverWorthy says whether another NIC may succeed where this one failed:
// not when the client gave up, nor when the destination itself answered no.
func failoverWorthy(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, bind.ErrRefused)
}

func (d *Dialer) dialNIC(ctx context.Context, network, name string, t Target, known *router.Lookup) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.dialTimeout)
	defer cancel()
	nd := d.nic(name)
	ready, err := nd.dialer.Check(network, t.String())
	if err != nil {
		return nil, err
	}
	addrs, err := d.addresses(ctx, nd.resolver, t, known)
	if err != nil {
		return nil, &bind.DialError{NIC: name, Network: network, Address: t.String(), Kind: ErrResolve, Err: err}
	}
	conn, addr, err := race(ctx, addrs, d.attemptWait, func(ctx context.Context, a netip.Addr) (net.Conn, error) {
		if err := d.check(a, t.Port); err != nil {
			return nil, err
		}
		if a.IsLoopback() {
			// A name that resolved to loopback never leaves the host.
			var direct net.Dialer
			return direct.DialContext(ctx, network, netip.AddrPortFrom(a, t.Port).String())
		}
		return nd.dialer.DialChecked(ctx, ready, network, netip.AddrPortFrom(a, t.Port).String())
	})
	if err != nil && !errors.As(err, new(checkFailed)) {
		// Every failure of a pinned dial names its NIC (the race's own
		// timeout, too), so it is logged and counted under that NIC.
		return nil, bind.NewDialError(name, network, t.String(), err)
	}
	if err != nil {
		return nil, err
	}
	if addr.IsLoopback() {
		name = System
	}
	return &Conn{Conn: conn, NIC: name, Addr: addr}, nil
}

func (d *Dialer) dialSystem(ctx context.Context, network string, t Target, resolver Resolver, known *router.Lookup) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.dialTimeout)
	defer cancel()
	addrs, err := d.addresses(ctx, resolver, t, known)
	if err != nil {
		return nil, &bind.DialError{NIC: System, Network: network, Address: t.String(), Kind: ErrResolve, Err: err}
	}
	conn, addr, err := race(ctx, addrs, d.attemptWait, func(ctx context.Context, a netip.Addr) (net.Conn, error) {
		if err := d.check(a, t.Port); err != nil {
			return nil, err
		}
		var dialer net.Dialer
		conn, err := dialer.DialContext(ctx, network, netip.AddrPortFrom(a, t.Port).String())
		if err != nil {
			return nil, bind.NewDialError(System, network, t.String(), err)
		}
		return conn, nil
	})
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: conn, NIC: System, Addr: addr}, nil
}

// addresses returns what to dial for t, in racing order: the address a dst
// rule matched, the literal, the router's lookup when it was made through
// this NIC, or the name resolved with resolver.
func (d *Dialer) addresses(ctx context.Context, resolver Resolver, t Target, known *router.Lookup) ([]netip.Addr, error) {
	if t.Addr.IsValid() {
		return []netip.Addr{t.Addr}, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(t.Host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if isLocalhost(t.Host) {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}, nil
	}
	var addrs []netip.Addr
	switch {
	case known != nil:
		if known.Err != nil {
			return nil, known.Err
		}
		addrs = known.Addrs
	case resolver == nil:
		return nil, fmt.Errorf("no resolver for %s", t.Host)
	default:
		var err error
		if addrs, err = resolver.LookupNetIP(ctx, "ip", t.Host); err != nil {
			return nil, err
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s has no addresses", t.Host)
	}
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	ordered := interleave(v4, v6)
	// The race tries at most MaxAttempts of them, both families kept.
	return ordered[:min(len(ordered), MaxAttempts)], nil
}

// IsLoopback reports whether a destination host (a name or an IP literal)
// is dialed unpinned, as System, because it never leaves the host; `route`
// asks it to say what Dial will do.
func IsLoopback(host string) bool { return isLoopback(Target{Host: host}) }

// MaxAttempts is how many of a name's addresses one NIC's race tries (as
// squid's forward_max_tries, 25): a name with 4,000 records would
// otherwise make 4,000 connection attempts for one client's connection.
const MaxAttempts = 25

func isLoopback(t Target) bool {
	if t.Addr.IsValid() {
		return t.Addr.IsLoopback()
	}
	if isLocalhost(t.Host) {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(t.Host, "[]"))
	return err == nil && a.Unmap().IsLoopback()
}

// isLocalhost matches "localhost" in any case, with or without the root dot.
func isLocalhost(host string) bool {
	return strings.EqualFold(strings.TrimSuffix(host, "."), "localhost")
}
