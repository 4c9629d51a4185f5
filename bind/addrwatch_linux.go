package bind

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// AddrWatcher knows the host's own addresses from memory: it lists them
// once, then keeps the list current from the kernel's address
// notifications (RTM_NEWADDR and RTM_DELADDR), so the check a dial makes
// ("is this the host itself?") reads a map without a lock or a netlink
// dump. When a notification is lost (the socket's buffer overflowed, or
// any receive error), it subscribes again and re-lists, as LinkWatcher
// does, so an address that left the host while notifications were lost
// does not stay local.
type AddrWatcher struct {
	addrs  atomic.Pointer[addrTable]
	handle *netlink.Handle
	ns     netns.NsHandle

	// rcvbuf, when set, is the subscription socket's receive buffer
	// (forced): tests make it small to overflow it. beforeApply, when
	// set, runs before each notification is applied: tests hold it to
	// let notifications pile up.
	rcvbuf      int
	beforeApply func()
}

// addrTable is one immutable view of the host's addresses; updates
// replace it whole, so readers never lock. An address on two NICs is
// in it until it has left both.
type addrTable struct {
	byLink map[linkAddr]struct{}
	local  map[netip.Addr]bool
}

type linkAddr struct {
	addr  netip.Addr
	index int
}

// NewAddrWatcher lists the addresses of the calling thread's network
// namespace and returns a watcher serving that list. Run keeps it current.
func NewAddrWatcher() (*AddrWatcher, error) {
	ns, handle, err := handleHere()
	if err != nil {
		return nil, fmt.Errorf("watch addresses: %w", err)
	}
	w := &AddrWatcher{handle: handle, ns: ns}
	if err := w.relist(); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// Has reports whether a is one of the host's addresses (loopback counts
// only as the addresses lo carries). Once Run has returned, it lists the
// addresses through the kernel on every call: a list nobody keeps current
// would go stale.
func (w *AddrWatcher) Has(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if t := w.addrs.Load(); t != nil {
		return t.local[a]
	}
	return listLocal()[a]
}

// Addrs returns the host's addresses, each once.
func (w *AddrWatcher) Addrs() map[netip.Addr]bool {
	if t := w.addrs.Load(); t != nil {
		return maps.Clone(t.local)
	}
	return listLocal()
}

// Run follows address notifications until ctx ends, then releases the
// watcher's netlink sockets; changed, when not nil, is called after each
// listing and each change applied (on Run's goroutine, one call at a
// time). It returns ctx's error, or the error that stopped it from
// subscribing again.
func (w *AddrWatcher) Run(ctx context.Context, changed func()) error {
	defer w.close()
	defer w.addrs.Store(nil)
	notify := func() {
		if changed != nil {
			changed()
		}
	}
	return keepCurrent(ctx, "watch addresses", follower[netlink.AddrUpdate]{
		subscribe: w.subscribe, relist: w.relist, listed: notify,
		apply: func(u netlink.AddrUpdate) {
			if w.beforeApply != nil {
				w.beforeApply()
			}
			if w.apply(u) {
				notify()
			}
		},
	})
}

// subscribe starts address notifications from the watcher's namespace.
func (w *AddrWatcher) subscribe(updates chan netlink.AddrUpdate, done chan struct{}) error {
	return subscribeIn(w.ns, func(ns *netns.NsHandle) error {
		return netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{
			Namespace:              ns,
			ErrorCallback:          func(error) {}, // the closed channel in Run is the signal
			ReceiveBufferSize:      w.rcvbuf,
			ReceiveBufferForceSize: w.rcvbuf != 0,
		})
	})
}

// apply applies one notification and reports whether the set of
// addresses changed.
func (w *AddrWatcher) apply(u netlink.AddrUpdate) bool {
	a, ok := netip.AddrFromSlice(u.LinkAddress.IP)
	if !ok {
		return false
	}
	key := linkAddr{a.Unmap(), u.LinkIndex}
	old := w.addrs.Load()
	if _, has := old.byLink[key]; has == u.NewAddr {
		return false
	}
	byLink := maps.Clone(old.byLink)
	if u.NewAddr {
		byLink[key] = struct{}{}
	} else {
		delete(byLink, key)
	}
	t := newAddrTable(byLink)
	w.addrs.Store(t)
	return !maps.Equal(t.local, old.local)
}

func (w *AddrWatcher) relist() error {
	list, err := w.handle.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("watch addresses: list: %w", err)
	}
	byLink := make(map[linkAddr]struct{}, len(list))
	for _, l := range list {
		if a, ok := netip.AddrFromSlice(l.IP); ok {
			byLink[linkAddr{a.Unmap(), l.LinkIndex}] = struct{}{}
		}
	}
	w.addrs.Store(newAddrTable(byLink))
	return nil
}

func (w *AddrWatcher) close() {
	w.handle.Close()
	w.ns.Close()
}

func newAddrTable(byLink map[linkAddr]struct{}) *addrTable {
	t := &addrTable{byLink: byLink, local: make(map[netip.Addr]bool, len(byLink))}
	for k := range byLink {
		t.local[k.addr] = true
	}
	return t
}
