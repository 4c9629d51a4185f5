//go:build !linux

package bind

import (
	"context"
	"maps"
	"net/netip"
	"sync/atomic"
	"time"
)

// AddrWatcher knows the host's own addresses. Without Linux's address
// notifications it lists them again every second while Run runs; readers
// take the latest listing without a lock.
type AddrWatcher struct {
	addrs atomic.Pointer[map[netip.Addr]bool]
}

// NewAddrWatcher lists the host's addresses and returns a watcher serving
// that list. Run keeps it current.
func NewAddrWatcher() (*AddrWatcher, error) {
	w := &AddrWatcher{}
	local := listLocal()
	w.addrs.Store(&local)
	return w, nil
}

// Has reports whether a is one of the host's addresses.
func (w *AddrWatcher) Has(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if m := w.addrs.Load(); m != nil {
		return (*m)[a]
	}
	return listLocal()[a]
}

// Addrs returns the host's addresses, each once.
func (w *AddrWatcher) Addrs() map[netip.Addr]bool {
	if m := w.addrs.Load(); m != nil {
		return maps.Clone(*m)
	}
	return listLocal()
}

// Run lists the addresses every second until ctx ends, calling changed
// (when not nil) after a listing that differs from the one before.
func (w *AddrWatcher) Run(ctx context.Context, changed func()) error {
	defer w.addrs.Store(nil)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			local := listLocal()
			if old := w.addrs.Swap(&local); old == nil || !maps.Equal(*old, local) {
				if changed != nil {
					changed()
				}
			}
		}
	}
}
