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
	balancer    *balancer
	healthy     func(nic string) bool

	mu      sync.Mutex // guards dynamic, NICs not named in the config (-i, default)
	dynamic map[string]*nicDialer

	// CheckAddr, when set, is called with every address right before it
	// is dialed, pinned or not; its error aborts the whole dial (no other
	// address or NIC is tried) and is returned as is.
	CheckAddr func(netip.AddrPort) error
}

// checkFailed marks an error from CheckAddr, so no failover follows it.
type checkFailed struct{ error }

func (e checkFailed) Unwrap() error { return e.error }

func (d *Dialer) check(a netip.Addr, port uint16) error {
	if d.CheckAddr == nil {
		return nil
	}
	if err := d.CheckAddr(netip.AddrPortFrom(a, port)); err != nil {
		return checkFailed{err}
	}
	return nil
}

type nicDialer struct {
	dialer   *bind.Dialer
	resolver *net.Resolver
}

// New builds a Dialer for cfg. links reports NIC state (nil: ask the
// kernel on every dial); healthy reports whether a NIC passes its health
// check (nil: every NIC does).
func New(cfg *config.Config, links bind.Links, healthy func(nic string) bool) *Dialer {
	if links == nil {
		links = bind.SystemLinks{}
	}
	if healthy == nil {
		healthy = func(string) bool { return true }
	}
	d := &Dialer{
		healthy:     healthy,
		nics:        map[string]*nicDialer{},
		links:       links,
		dialTimeout: cfg.Timeouts.Dial,
		balancer:    newBalancer(),
		dynamic:     map[string]*nicDialer{},
	}
	for _, name := range cfg.NICs() {
		d.nics[name] = newNICDialer(name, cfg.Interfaces[name], links)
	}
	return d
}

func newNICDialer(name string, opts config.Interface, links bind.Links) *nicDialer {
	bd := bind.NewDialer(name, bind.Options{Source: opts.Source, Mark: opts.Mark}, links)
	return &nicDialer{dialer: bd, resolver: bd.Resolver(opts.DNS)}
}

func (d *Dialer) nic(name string) *nicDialer {
	if nd, ok := d.nics[name]; ok {
		return nd
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	nd, ok := d.dynamic[name]
	if !ok {
		nd = newNICDialer(name, config.Interface{}, d.links)
		d.dynamic[name] = nd
	}
	return nd
}

// Available reports whether nic is present and up now.
func (d *Dialer) Available(nic string) bool {
	_, err := d.nic(nic).dialer.Check("tcp", "")
	return err == nil
}

// Resolver returns the resolver whose queries leave through nic.
func (d *Dialer) Resolver(nic string) *net.Resolver { return d.nic(nic).resolver }

// Dial connects to t as decision says, for the client at client. When the
// decision names several NICs, each is tried in turn (failover order, or the
// balancer's pick first) until one connects; the error of the last one is
// returned, and it names the NIC.
func (d *Dialer) Dial(ctx context.Context, network string, decision router.Decision, client netip.AddrPort, t Target) (*Conn, error) {
	if decision.Action == config.ActionReject {
		return nil, fmt.Errorf("dial %s: rejected by rule %s", t, decision.RuleName)
	}
	if isLoopback(t) {
		// Loopback never leaves the host: nothing to pin.
		return d.dialSystem(ctx, network, t, nil)
	}
	if decision.Via.Mode == config.ViaSystem {
		return d.dialSystem(ctx, network, t, net.DefaultResolver)
	}

	nics := decision.Via.NICs
	var release func()
	if decision.Via.Mode == config.ViaBalance {
		nics = d.balancer.order(decision, client, t.Host)
	}
	nics = d.healthyFirst(nics)
	var lastErr error
	for _, name := range nics {
		conn, err := d.dialNIC(ctx, network, name, t)
		if err == nil {
			if decision.Via.Mode == config.ViaBalance {
				release = d.balancer.opened(name)
			}
			conn.done = release
			return conn, nil
		}
		lastErr = err
		if !failoverWorthy(ctx, err) || errors.As(err, new(checkFailed)) {
			break
		}
	}
	return nil, lastErr
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

func (d *Dialer) dialNIC(ctx context.Context, network, name string, t Target) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.dialTimeout)
	defer cancel()
	nd := d.nic(name)
	link, err := nd.dialer.Check(network, t.String())
	if err != nil {
		return nil, err
	}
	addrs, err := d.addresses(ctx, nd.resolver, t)
	if err != nil {
		return nil, &bind.DialError{NIC: name, Network: network, Address: t.String(), Kind: ErrResolve, Err: err}
	}
	var lastErr error
	for _, a := range addrs {
		if a.IsLoopback() {
			// A name that resolved to loopback never leaves the host.
			return d.dialSystem(ctx, network, Target{Host: t.Host, Port: t.Port, Addr: a}, nil)
		}
		if err := d.check(a, t.Port); err != nil {
			return nil, err
		}
		conn, err := nd.dialer.DialChecked(ctx, link, network, netip.AddrPortFrom(a, t.Port).String())
		if err == nil {
			return &Conn{Conn: conn, NIC: name, Addr: a}, nil
		}
		lastErr = err
		if errors.Is(err, bind.ErrNICMissing) || errors.Is(err, bind.ErrNICDown) || ctx.Err() != nil {
			break // no other address will do better through this NIC
		}
	}
	return nil, lastErr
}

func (d *Dialer) dialSystem(ctx context.Context, network string, t Target, resolver *net.Resolver) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.dialTimeout)
	defer cancel()
	addrs, err := d.addresses(ctx, resolver, t)
	if err != nil {
		return nil, &bind.DialError{NIC: System, Network: network, Address: t.String(), Kind: ErrResolve, Err: err}
	}
	var dialer net.Dialer
	var lastErr error
	for _, a := range addrs {
		if err := d.check(a, t.Port); err != nil {
			return nil, err
		}
		conn, err := dialer.DialContext(ctx, network, netip.AddrPortFrom(a, t.Port).String())
		if err == nil {
			return &Conn{Conn: conn, NIC: System, Addr: a}, nil
		}
		lastErr = bind.NewDialError(System, network, t.String(), err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// addresses returns what to dial for t: the address a dst rule matched, the
// literal, or the name resolved with resolver (IPv4 first: a pinned NIC more
// often has IPv4 than a working IPv6 route).
func (d *Dialer) addresses(ctx context.Context, resolver *net.Resolver, t Target) ([]netip.Addr, error) {
	if t.Addr.IsValid() {
		return []netip.Addr{t.Addr}, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(t.Host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if isLocalhost(t.Host) {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}, nil
	}
	if resolver == nil {
		return nil, fmt.Errorf("no resolver for %s", t.Host)
	}
	addrs, err := resolver.LookupNetIP(ctx, "ip", t.Host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s has no addresses", t.Host)
	}
	v4 := addrs[:0:0]
	var v6 []netip.Addr
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	return append(v4, v6...), nil
}

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
