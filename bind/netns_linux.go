package bind

import (
	"context"
	"fmt"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// handleHere returns the calling thread's network namespace and a netlink
// handle made in it, both from one thread, for a watcher that lists what
// it then follows. The handle is made in the current namespace rather than
// with NewHandleAt(ns), which enters ns even when it is the current one,
// and entering a namespace needs CAP_SYS_ADMIN: the unit runs with
// CAP_NET_RAW alone.
func handleHere() (netns.NsHandle, *netlink.Handle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := netns.Get()
	if err != nil {
		return ns, nil, fmt.Errorf("current network namespace: %w", err)
	}
	handle, err := netlink.NewHandle()
	if err != nil {
		ns.Close()
		return ns, nil, err
	}
	return ns, handle, nil
}

// subscribeIn calls subscribe, on one thread, with the namespace a
// subscription should name: ns when the calling thread is in another one
// (a watcher made inside a test's namespace, run from elsewhere), nil when
// it is ns itself, since naming it makes netlink enter it, which needs
// CAP_SYS_ADMIN even when it is the current namespace.
func subscribeIn(ns netns.NsHandle, subscribe func(*netns.NsHandle) error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	current, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer current.Close()
	if current.Equal(ns) {
		return subscribe(nil)
	}
	return subscribe(&ns)
}

// follower is what keepCurrent needs of a watcher: how to subscribe to
// its notifications, list what they are about, and apply one.
type follower[U any] struct {
	subscribe func(updates chan U, done chan struct{}) error
	relist    func() error
	apply     func(U)
	listed    func() // after each listing; may be nil
}

// keepCurrent keeps a watcher's view current until ctx ends: it
// subscribes, lists, then applies notifications; when the subscription
// dies (its socket's buffer overflowed, or any receive error: a
// notification may be lost) it subscribes again and re-lists. It returns
// ctx's error, or the error that stopped it from subscribing or listing.
func keepCurrent[U any](ctx context.Context, what string, f follower[U]) error {
	for {
		// Subscribe before listing, so no change between the two is
		// missed; a notification older than the list is applied on top of
		// it, and the newer ones that follow it correct it.
		updates := make(chan U, 64)
		done := make(chan struct{})
		if err := f.subscribe(updates, done); err != nil {
			close(done)
			return fmt.Errorf("%s: subscribe: %w", what, err)
		}
		if err := f.relist(); err != nil {
			close(done)
			drain(updates)
			return err
		}
		if f.listed != nil {
			f.listed()
		}
		lost := follow(ctx, updates, f.apply)
		close(done)
		drain(updates)
		if !lost {
			return ctx.Err()
		}
	}
}

// follow applies updates until ctx ends (false) or the subscription dies
// (true: notifications may have been lost).
func follow[U any](ctx context.Context, updates <-chan U, apply func(U)) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case u, ok := <-updates:
			if !ok {
				return ctx.Err() == nil
			}
			apply(u)
		}
	}
}

// drain waits for the subscription's reader to close its channel, which it
// does once its socket is closed, so no goroutine of it outlives the watch.
func drain[U any](updates <-chan U) {
	for range updates {
	}
}
