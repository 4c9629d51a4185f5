package bind

import (
	"context"
	"fmt"
	"maps"
	"net"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// LinkWatcher answers Links from memory: it lists the NICs once, then keeps
// the list current from the kernel's link notifications (RTM_NEWLINK and
// RTM_DELLINK), so a dial reads a map instead of listing every interface
// through the kernel. It follows addresses and IPv6 routes the same way
// (RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE) for each NIC's
// Families, so deciding which families to ask costs a dial nothing. When a notification is lost (the socket's buffer
// overflowed, or any receive error), it subscribes again and re-lists.
//
// A name it does not know is asked of the kernel before it is called
// missing, so a NIC that appeared a moment before its notification was read
// is found all the same.
type LinkWatcher struct {
	links  atomic.Pointer[linkTable]
	handle *netlink.Handle
	ns     netns.NsHandle
	kernel SystemLinks
	// onChange, set by OnChange before Run, hears of NICs turning up or
	// down, appearing or going.
	onChange func(LinkChange)
}

// linkTable is one immutable view of the host's NICs; updates replace it
// whole, so readers never lock.
type linkTable struct {
	byIndex map[int]Link
	byName  map[string]Link
	fams    map[int]Families // by index, Known set
}

// NewLinkWatcher lists the NICs of the calling thread's network namespace
// and returns a watcher serving that list. Run keeps it current.
func NewLinkWatcher() (*LinkWatcher, error) {
	ns, handle, err := handleHere()
	if err != nil {
		return nil, fmt.Errorf("watch links: %w", err)
	}
	w := &LinkWatcher{handle: handle, ns: ns}
	if err := w.relist(); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// Link implements Links.
func (w *LinkWatcher) Link(name string) (Link, error) {
	if t := w.links.Load(); t != nil {
		if link, ok := t.byName[name]; ok {
			return link, nil
		}
	}
	return w.kernel.Link(name)
}

// Families implements FamilyLinks from memory; a NIC the watcher does not
// know is asked of the kernel, as Link does.
func (w *LinkWatcher) Families(name string) (Families, error) {
	if t := w.links.Load(); t != nil {
		if link, ok := t.byName[name]; ok {
			f := t.fams[link.Index]
			f.Known = true
			return f, nil
		}
	}
	return w.kernel.Families(name)
}

// subscriptions are the three notification streams the watcher follows.
type subscriptions struct {
	links  chan netlink.LinkUpdate
	addrs  chan netlink.AddrUpdate
	routes chan netlink.RouteUpdate
	done   chan struct{}
}

func newSubscriptions() *subscriptions {
	return &subscriptions{
		links:  make(chan netlink.LinkUpdate, 64),
		addrs:  make(chan netlink.AddrUpdate, 64),
		routes: make(chan netlink.RouteUpdate, 256),
		done:   make(chan struct{}),
	}
}

// stop ends the subscriptions and waits for their readers to close their
// channels, which they do once their sockets are closed, so no goroutine
// of them outlives Run. started says how many were subscribed.
func (s *subscriptions) stop(started int) {
	close(s.done)
	if started > 0 {
		drain(s.links)
	}
	if started > 1 {
		drain(s.addrs)
	}
	if started > 2 {
		drain(s.routes)
	}
}

// subscribe starts link, address and route notifications from the
// watcher's namespace; started says how many it started.
func (w *LinkWatcher) subscribe(subs *subscriptions) (started int, err error) {
	onError := func(error) {} // the closed channel in Run is the signal
	err = subscribeIn(w.ns, func(ns *netns.NsHandle) error {
		if err := netlink.LinkSubscribeWithOptions(subs.links, subs.done, netlink.LinkSubscribeOptions{Namespace: ns, ErrorCallback: onError}); err != nil {
			return err
		}
		started++
		if err := netlink.AddrSubscribeWithOptions(subs.addrs, subs.done, netlink.AddrSubscribeOptions{Namespace: ns, ErrorCallback: onError}); err != nil {
			return err
		}
		started++
		if err := netlink.RouteSubscribeWithOptions(subs.routes, subs.done, netlink.RouteSubscribeOptions{Namespace: ns, ErrorCallback: onError}); err != nil {
			return err
		}
		started++
		return nil
	})
	return started, err
}

// Run follows link notifications until ctx ends, then releases the
// watcher's netlink sockets. Once it has returned, Link asks the kernel
// again: a list nobody keeps current would go stale. It returns ctx's
// error, or the error that stopped it from subscribing again.
func (w *LinkWatcher) Run(ctx context.Context) error {
	defer w.close()
	defer w.links.Store(nil)
	for {
		// Subscribe before listing, so no change between the two is
		// missed; a notification older than the list is applied on top of
		// it, and the newer ones that follow it correct it.
		subs := newSubscriptions()
		if started, err := w.subscribe(subs); err != nil {
			subs.stop(started)
			return fmt.Errorf("watch links: subscribe: %w", err)
		}
		if err := w.relist(); err != nil {
			subs.stop(3)
			return err
		}
		lost := w.follow(ctx, subs)
		subs.stop(3)
		if !lost {
			return ctx.Err()
		}
	}
}

// follow applies updates until ctx ends (false) or a subscription dies
// (true: notifications may have been lost). An address change re-reads
// the addresses once for all the changes queued with it. A route change
// costs nothing unless it can change a NIC's Route6: a new IPv6 route on
// a NIC that had none sets it, a removed one re-reads the IPv6 routes.
// IPv4 routes, and the bursts of them a routing daemon loads, are skipped.
func (w *LinkWatcher) follow(ctx context.Context, subs *subscriptions) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case u, ok := <-subs.links:
			if !ok {
				return ctx.Err() == nil
			}
			w.apply(u)
		case _, ok := <-subs.addrs:
			if !ok || !w.refreshAddrs(subs) {
				return ctx.Err() == nil
			}
		case u, ok := <-subs.routes:
			if !ok || !w.applyRoute(u, subs) {
				return ctx.Err() == nil
			}
		}
	}
}

// refreshAddrs takes the address notifications queued now, then re-reads
// the addresses; false when the channel closed or the read failed.
func (w *LinkWatcher) refreshAddrs(subs *subscriptions) bool {
	if !takeQueued(subs.addrs) {
		return false
	}
	t := w.links.Load()
	fams, err := listAddrFamilies(w.handle, t.fams)
	if err != nil {
		return false
	}
	w.links.Store(newLinkTable(t.byIndex, fams))
	return true
}

// applyRoute follows one route notification; false when a re-read failed
// or the channel closed.
func (w *LinkWatcher) applyRoute(u netlink.RouteUpdate, subs *subscriptions) bool {
	links := route6Links(u.Route)
	if len(links) == 0 {
		return true
	}
	t := w.links.Load()
	if u.Type == unix.RTM_NEWROUTE {
		var fams map[int]Families
		for _, i := range links {
			if t.fams[i].Route6 {
				continue
			}
			if fams == nil {
				fams = maps.Clone(t.fams)
			}
			f := fams[i]
			f.Route6 = true
			fams[i] = f
		}
		if fams != nil {
			w.links.Store(newLinkTable(t.byIndex, fams))
		}
		return true
	}
	// A removed route: another may still carry the NIC's IPv6. The
	// re-read covers every change queued behind it (a NIC going down
	// removes its routes one notification each), so those are taken first.
	if !takeQueued(subs.routes) {
		return false
	}
	fams, err := listRouteFamilies(w.handle, t.fams)
	if err != nil {
		return false
	}
	w.links.Store(newLinkTable(t.byIndex, fams))
	return true
}

// takeQueued discards what ch holds now, without waiting; false when it
// is closed (the subscription died).
func takeQueued[T any](ch <-chan T) bool {
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return false
			}
		default:
			return true
		}
	}
}

func (w *LinkWatcher) apply(u netlink.LinkUpdate) {
	byIndex := maps.Clone(w.links.Load().byIndex)
	index := int(u.Index)
	before, existed := byIndex[index]
	var after Link
	exists := u.Header.Type != unix.RTM_DELLINK
	if exists {
		after = linkOf(u.Link)
		byIndex[index] = after
	} else {
		delete(byIndex, index)
	}
	w.links.Store(newLinkTable(byIndex, w.links.Load().fams))
	w.report(before, existed, after, exists)
}

func (w *LinkWatcher) relist() error {
	links, err := w.handle.LinkList()
	if err != nil {
		return fmt.Errorf("watch links: list: %w", err)
	}
	byIndex := make(map[int]Link, len(links))
	for _, l := range links {
		byIndex[l.Attrs().Index] = linkOf(l)
	}
	fams, err := listFamilies(w.handle)
	if err != nil {
		return fmt.Errorf("watch links: %w", err)
	}
	w.links.Store(newLinkTable(byIndex, fams))
	return nil
}

func (w *LinkWatcher) close() {
	w.handle.Close()
	w.ns.Close()
}

func newLinkTable(byIndex map[int]Link, fams map[int]Families) *linkTable {
	t := &linkTable{byIndex: byIndex, byName: make(map[string]Link, len(byIndex)), fams: fams}
	for _, l := range byIndex {
		t.byName[l.Name] = l
	}
	return t
}

// linkOf reads a notification's link with the same meaning of "up" as
// SystemLinks: IFF_UP and IFF_RUNNING.
func linkOf(l netlink.Link) Link {
	a := l.Attrs()
	return Link{
		Name:  a.Name,
		Index: a.Index,
		Up:    a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_RUNNING != 0,
	}
}
