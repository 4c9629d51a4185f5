package bind

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"nicproxy/internal/poll"
)

// privateNetns makes a network namespace and returns a netlink handle
// inside it, its lo (up), and an AddrWatcher made there. It
// needs root; without it, the test skips (or fails under NICPROXY_NO_SKIP).
func privateNetns(t *testing.T) (*netlink.Handle, netlink.Link, *AddrWatcher) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("NICPROXY_NO_SKIP") == "1" {
			t.Fatal("needs root to make a network namespace")
		}
		t.Skip("needs root to make a network namespace")
	}
	type made struct {
		h    *netlink.Handle
		link netlink.Link
		w    *AddrWatcher
		err  error
	}
	ch := make(chan made, 1)
	go func() {
		// The thread enters the new namespace and is never unlocked, so
		// it ends with this goroutine instead of serving others there.
		runtime.LockOSThread()
		var m made
		defer func() { ch <- m }()
		if m.err = unix.Unshare(unix.CLONE_NEWNET); m.err != nil {
			return
		}
		if m.h, m.err = netlink.NewHandle(); m.err != nil {
			return
		}
		if m.link, m.err = m.h.LinkByName("lo"); m.err != nil {
			return
		}
		if m.err = m.h.LinkSetUp(m.link); m.err != nil {
			return
		}
		m.w, m.err = NewAddrWatcher()
	}()
	m := <-ch
	if m.err != nil {
		t.Fatalf("private network namespace: %v", m.err)
	}
	t.Cleanup(func() { m.h.Close() })
	return m.h, m.link, m.w
}

func hostAddr(a string) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(a), Mask: net.CIDRMask(32, 32)}}
}

// TestAddrWatcherRelistsAfterOverflow: when notifications are lost (the
// subscription's buffer overflows while its reader is held), the watcher
// subscribes again and re-lists, so an address removed meanwhile is no
// longer the host's, and the ones added meanwhile are. (Exec's WatchLocal
// stopped for good when its subscription ended this way: the removed
// address stayed local.)
func TestAddrWatcherRelistsAfterOverflow(t *testing.T) {
	h, link, w := privateNetns(t)
	leaving := netip.MustParseAddr("192.0.2.1")
	if err := h.AddrAdd(link, hostAddr(leaving.String())); err != nil {
		t.Fatal(err)
	}
	w.rcvbuf = 4096
	hold := make(chan struct{})
	held := false
	w.beforeApply = func() {
		if !held {
			held = true
			<-hold
		}
	}
	subscribed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- w.Run(ctx, func() {
			select {
			case subscribed <- struct{}{}:
			default:
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	}()
	<-subscribed
	if !w.Has(leaving) {
		t.Fatalf("%v is on lo but not local", leaving)
	}

	// The first notification is held; the flood behind it fills the
	// channel and the 4 KiB socket buffer, and the kernel drops the rest,
	// the removal among them.
	const flood = 400
	var added []netip.Addr
	for i := range flood {
		a := netip.AddrFrom4([4]byte{198, 51, 100 + byte(i/250), byte(1 + i%250)})
		if i >= 250 {
			a = netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i - 250)})
		}
		if err := h.AddrAdd(link, hostAddr(a.String())); err != nil {
			t.Fatalf("add %v: %v", a, err)
		}
		added = append(added, a)
	}
	if err := h.AddrDel(link, hostAddr(leaving.String())); err != nil {
		t.Fatal(err)
	}
	close(hold)
	poll.Until(t, 10*time.Second, func() bool { return !w.Has(leaving) && w.Has(added[len(added)-1]) },
		func() string {
			return fmt.Sprintf("after the overflow, %v local: %v (removed), %v local: %v (added last)",
				leaving, w.Has(leaving), added[len(added)-1], w.Has(added[len(added)-1]))
		})
	for _, a := range added {
		if !w.Has(a) {
			t.Errorf("%v, added during the overflow, is not local", a)
		}
	}
}
