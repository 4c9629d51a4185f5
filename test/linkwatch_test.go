package test

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"sync"
	"testing"
	"time"

	"nicproxy/bind"
	"nicproxy/test/netlab"
)

// startLinkWatcher makes a watcher in the lab's host namespace and runs it
// until the test ends, when Run must return context.Canceled.
func startLinkWatcher(t *testing.T, lab *netlab.Lab) *bind.LinkWatcher {
	t.Helper()
	var w *bind.LinkWatcher
	if err := lab.InHost(func() (err error) { w, err = bind.NewLinkWatcher(); return err }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = w.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if !errors.Is(runErr, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", runErr)
		}
	})
	return w
}

// TestLinkWatcher: the watcher made in the lab's host namespace follows
// that namespace's NICs from notifications: a NIC going down and up, one
// appearing and one deleted (a deleted NIC still in memory would be
// answered from there, so "missing" proves the notification was applied).
func TestLinkWatcher(t *testing.T) {
	lab := netlab.New(t)
	w := startLinkWatcher(t, lab)

	state := func(name string) (Link bind.Link, missing bool) {
		l, err := w.Link(name)
		return l, errors.Is(err, bind.ErrNICMissing)
	}
	if l, missing := state("ens160"); missing || !l.Up || l.Name != "ens160" || l.Index < 1 {
		t.Fatalf("ens160 at start: %+v missing=%v", l, missing)
	}
	lab.SetDown("ens160")
	eventually(t, 5*time.Second, func() bool { l, _ := state("ens160"); return !l.Up }, func() string { return "ens160 never reported down" })
	lab.SetUp(netlab.Ens160)
	eventually(t, 5*time.Second, func() bool { l, _ := state("ens160"); return l.Up }, func() string { return "ens160 never reported up again" })

	ens200 := netlab.NIC{Name: "ens200", Addr: netip.MustParseAddr("192.0.2.200"), Metric: 102}
	lab.AddNIC(ens200)
	eventually(t, 5*time.Second, func() bool { l, _ := state("ens200"); return l.Up }, func() string { return "ens200 never reported up" })
	if out, err := exec.Command("ip", "-n", lab.Host, "link", "del", "ens200").CombinedOutput(); err != nil {
		t.Fatalf("delete ens200: %v: %s", err, out)
	}
	eventually(t, 5*time.Second, func() bool { _, missing := state("ens200"); return missing }, func() string { return "ens200 still reported after deletion" })
}

// TestLinkWatcherFamilies: the watcher knows each NIC's address families
// from memory and follows them: on the lab's IPv6-less host only IPv4;
// after EnableIPv6 a global address and route; without the address, no
// AAAA again; with it back, AAAA again.
func TestLinkWatcherFamilies(t *testing.T) {
	lab := netlab.New(t)
	w := startLinkWatcher(t, lab)

	network := func() string {
		f, err := w.Families("ens160")
		if err != nil || !f.Known {
			t.Fatalf("Families(ens160): %+v, %v", f, err)
		}
		return f.Network()
	}
	if !lab.IPv6Disabled() {
		t.Fatal("the lab's host has IPv6 enabled by default")
	}
	if got := network(); got != "ip4" {
		t.Fatalf("ens160 on the IPv6-less host asks %q, want ip4", got)
	}
	lab.EnableIPv6()
	eventually(t, 5*time.Second, func() bool { return network() == "ip" }, func() string { return "ens160's IPv6 address and route never seen" })
	lab.DelAddress6(netlab.Ens160)
	eventually(t, 5*time.Second, func() bool { return network() == "ip4" }, func() string { return "ens160's IPv6 address still seen after removal" })
	if f, _ := w.Families("ens160"); !f.Route6 || f.Addr6 {
		t.Errorf("ens160 without its address: %+v, want its IPv6 route kept and no global address", f)
	}
	lab.AddAddress6(netlab.Ens160)
	eventually(t, 5*time.Second, func() bool { return network() == "ip" }, func() string { return "ens160's IPv6 address never seen again" })

	// Its IPv6 routes gone (the address stays): no AAAA; one back: AAAA.
	ip := func(args ...string) {
		if out, err := exec.Command("ip", append([]string{"-n", lab.Host, "-6"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("route", "flush", "dev", "ens160")
	eventually(t, 5*time.Second, func() bool { return network() == "ip4" }, func() string { return "ens160's IPv6 routes still seen after the flush" })
	ip("route", "add", "2001:db8:2::/64", "dev", "ens160")
	eventually(t, 5*time.Second, func() bool { return network() == "ip" }, func() string { return "ens160's new IPv6 route never seen" })
}
