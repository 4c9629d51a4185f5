package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"nicproxy/config"
)

// errLoop is a request whose destination is nicproxy itself: one of its
// listeners or its admin endpoint. Served, it would open a tunnel into
// nicproxy, which could open another, until every slot is taken.
var errLoop = fmt.Errorf("loop: the destination is nicproxy itself: %w", errRejected)

// errLocal is a destination on the proxy host under local_destinations: deny.
var errLocal = fmt.Errorf("the destination is on the proxy host and local_destinations is deny: %w", errRejected)

// normalizeHost rewrites a requested host the way the kernel would read it,
// before any rule sees it, so that one dst rule on 127.0.0.0/8 or ::1
// covers every spelling of the host itself:
//   - brackets go, and IPv4-mapped IPv6 becomes IPv4 ([::ffff:0:0] is
//     0.0.0.0);
//   - 0.0.0.0 and :: become 127.0.0.1 and ::1, the addresses a connect to
//     them reaches on Linux;
//   - localhost, localhost. and every name under .localhost are 127.0.0.1,
//     without a lookup (RFC 6761 §6.3).
//
// It returns the host to route and dial, and its address when it is one.
func normalizeHost(host string) (string, netip.Addr) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		a = a.Unmap().WithZone("")
		switch {
		case a == netip.IPv4Unspecified():
			a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		case a == netip.IPv6Unspecified():
			a = netip.IPv6Loopback()
		}
		return a.String(), a
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		a := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		return a.String(), a
	}
	return host, netip.Addr{}
}

// LocalAddrs reports whether an address is one of the host's own, from
// memory; a running *bind.AddrWatcher is one.
type LocalAddrs interface {
	Has(netip.Addr) bool
}

// hostAddrs knows the host's own addresses; every dial asks it, so it
// never makes a dial wait. Given a watcher, it asks that. Without one it
// lists them (a netlink dump) at most once a hostAddrsTTL: the first check
// after that refreshes the listing while others read the one before.
type hostAddrs struct {
	watched LocalAddrs                 // nil: listed
	list    func() ([]net.Addr, error) // net.InterfaceAddrs; a field so tests can give their own

	listing    atomic.Pointer[addrListing]
	refreshing sync.Mutex // held by the one check listing again
}

// addrListing is one listing of the host's addresses, never changed.
type addrListing struct {
	addrs map[netip.Addr]bool
	at    time.Time
}

func newHostAddrs(watched LocalAddrs) *hostAddrs {
	return &hostAddrs{watched: watched, list: net.InterfaceAddrs}
}

// hostAddrsTTL is how long a listing of the host's addresses is trusted.
const hostAddrsTTL = time.Second

// has reports whether a is one of the host's addresses.
func (h *hostAddrs) has(a netip.Addr) bool {
	if h.watched != nil {
		return h.watched.Has(a)
	}
	l := h.listing.Load()
	switch {
	case l == nil:
		// The first listing: no check can be answered without it.
		h.refreshing.Lock()
		if l = h.listing.Load(); l == nil {
			l = h.relist(nil)
		}
		h.refreshing.Unlock()
	case time.Since(l.at) > hostAddrsTTL && h.refreshing.TryLock():
		l = h.relist(l)
		h.refreshing.Unlock()
	}
	return l.addrs[a]
}

// relist lists the addresses again and publishes the listing; a listing
// that fails keeps the one before (old) for another TTL.
func (h *hostAddrs) relist(old *addrListing) *addrListing {
	addrs, err := h.list()
	l := &addrListing{addrs: map[netip.Addr]bool{}, at: time.Now()}
	if err != nil && old != nil {
		l.addrs = old.addrs
		addrs = nil
	}
	for _, addr := range addrs {
		if p, ok := addr.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(p.IP); ok {
				l.addrs[ip.Unmap()] = true
			}
		}
	}
	h.listing.Store(l)
	return l
}

// isLocal reports whether a is the proxy host itself: loopback, the
// unspecified address, or one of its own addresses.
func (h *hostAddrs) isLocal(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	return a.IsLoopback() || a.IsUnspecified() || h.has(a)
}

// checkDest refuses a destination address that is nicproxy itself (always)
// or elsewhere on the host (under local_destinations: deny). It runs on
// literals before routing and, through upstream.Options.CheckAddr, on every
// address a name resolved to, right before it is dialed.
func (s *Server) checkDest(cfg *config.Config, dst netip.AddrPort) error {
	a := dst.Addr().Unmap().WithZone("")
	if !s.local.isLocal(a) {
		return nil
	}
	if s.isSelf(cfg, netip.AddrPortFrom(a, dst.Port())) {
		return fmt.Errorf("%s: %w", dst, errLoop)
	}
	if cfg.LocalDestinations == config.LocalDeny {
		return fmt.Errorf("%s: %w", dst, errLocal)
	}
	return nil
}

// isSelf reports whether dst, an address on this host, reaches one of
// nicproxy's listeners or its admin endpoint. Listeners of the running
// configuration count, and so do listeners still open from an older one.
func (s *Server) isSelf(cfg *config.Config, dst netip.AddrPort) bool {
	var own []netip.AddrPort
	for _, l := range cfg.Listeners {
		own = append(own, l.Addr)
	}
	if cfg.Admin != nil {
		own = append(own, cfg.Admin.Addr)
	}
	own = append(own, s.Addrs()...)
	for _, l := range own {
		if l.Port() != dst.Port() {
			continue
		}
		la := l.Addr().Unmap()
		switch {
		case la == dst.Addr(), dst.Addr().IsUnspecified():
			// The unspecified address reaches a local listener on the
			// port, whichever address it is on (Go's dialer takes it
			// for loopback; the kernel, for the host).
			return true
		case la.IsUnspecified() && (la.Is6() || dst.Addr().Is4()):
			// A wildcard listener is reached through any local address
			// of its family ([::] is dual-stack).
			return true
		}
	}
	return false
}

// destination normalises a requested host and checks it when it is an
// address; names are checked at dial time, address by address.
func (ss *session) destination(host string, port uint16) (string, error) {
	host, addr := normalizeHost(host)
	if addr.IsValid() {
		if err := ss.srv.checkDest(ss.st.cfg, netip.AddrPortFrom(addr, port)); err != nil {
			return host, err
		}
	}
	return host, nil
}
