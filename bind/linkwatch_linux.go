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
// through the kernel. When a notification is lost (the socket's buffer
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

// subscribe starts link notifications from the watcher's namespace.
func (w *LinkWatcher) subscribe(updates chan netlink.LinkUpdate, done chan struct{}) error {
	return subscribeIn(w.ns, func(ns *netns.NsHandle) error {
		return netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
			Namespace:     ns,
			ErrorCallback: func(error) {}, // the closed channel in Run is the signal
		})
	})
}

// Run follows link notifications until ctx ends, then releases the
// watcher's netlink sockets. Once it has returned, Link asks the kernel
// again: a list nobody keeps current would go stale. It returns ctx's
// error, or the error that stopped it from subscribing again.
func (w *LinkWatcher) Run(ctx context.Context) error {
	defer w.close()
	defer w.links.Store(nil)
	return keepCurrent(ctx, "watch links", follower[netlink.LinkUpdate]{subscribe: w.subscribe, relist: w.relist, apply: w.apply})
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
	w.links.Store(newLinkTable(byIndex))
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
	w.links.Store(newLinkTable(byIndex))
	return nil
}

func (w *LinkWatcher) close() {
	w.handle.Close()
	w.ns.Close()
}

func newLinkTable(byIndex map[int]Link) *linkTable {
	t := &linkTable{byIndex: byIndex, byName: make(map[string]Link, len(byIndex))}
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
