// Package netlab builds the two-NIC host from the spec for real, inside
// private network namespaces, so tests can prove which NIC carried a flow.
//
//	host namespace                       upstream namespace
//	  ens33  192.0.2.80/24  metric 100 ──┐
//	                                     ├─ br0 192.0.2.1/24 (the gateway)
//	  ens160 192.0.2.48/24  metric 101 ──┘  lo  198.51.100.10 (test servers)
//	  default via 192.0.2.1 on both             blackhole 203.0.113.0/24
//
// Both NICs sit on one /24 with a default route each, so the kernel sends
// every unpinned packet out ens33, as on the spec's host. Neighbours are
// static and IPv6 is off, so a NIC's tx counter moves only for traffic a
// test sent: "ens33 carried 0 bytes" is an exact statement.
//
// The lab comes in two variants of the host, as real hosts do: by default
// the host namespace has IPv6 disabled (net.ipv6.conf.all.disable_ipv6=1,
// the common LAN host: its NICs have no IPv6 address at all; IPv6Disabled
// says so), and EnableIPv6 gives both NICs global IPv6 addresses and
// routes.
package netlab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"nicproxy/internal/poll"
)

// The addresses of the lab, all from RFC 5737 documentation space.
var (
	Gateway   = netip.MustParseAddr("192.0.2.1")
	Server    = netip.MustParseAddr("198.51.100.10") // where test servers listen
	Blackhole = netip.MustParseAddr("203.0.113.99")  // routed, but every packet is dropped
)

// NIC is one of the host's two NICs.
type NIC struct {
	Name   string
	Addr   netip.Addr
	Addr6  netip.Addr // its IPv6 address, after EnableIPv6
	Metric int
	peer   string // its veth peer, a port of br0 in the upstream namespace
}

// NICs of the spec's host, in the kernel's order of preference.
var (
	Ens33  = NIC{Name: "ens33", Addr: netip.MustParseAddr("192.0.2.80"), Addr6: netip.MustParseAddr("2001:db8:1::80"), Metric: 100, peer: "u33"}
	Ens160 = NIC{Name: "ens160", Addr: netip.MustParseAddr("192.0.2.48"), Addr6: netip.MustParseAddr("2001:db8:1::48"), Metric: 101, peer: "u160"}
)

// The lab's IPv6 addresses (documentation space), after EnableIPv6.
var (
	Gateway6 = netip.MustParseAddr("2001:db8:1::1")
	Server6  = netip.MustParseAddr("2001:db8:2::10")
)

// Lab is one two-NIC host and its upstream, alive for one test.
type Lab struct {
	t        testing.TB
	Host     string // name of the host namespace
	Upstream string // name of the upstream namespace
}

// NoSkip is the environment variable that turns every skip for a missing
// requirement (root, network namespaces, a tool such as curl, Chromium or
// lintian) into a failure: test/check.sh sets it unless told
// NICPROXY_ALLOW_SKIP=1, so CI is never green with the proofs skipped.
const NoSkip = "NICPROXY_NO_SKIP"

// SkipOrFail skips the test for a missing requirement, saying which, or
// fails it when NICPROXY_NO_SKIP=1.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(NoSkip) == "1" {
		t.Fatalf("required (%s=1): "+format, append([]any{NoSkip}, args...)...)
	}
	t.Skipf("skipping: "+format, args...)
}

// New builds the lab and removes it when the test ends, even on failure.
// Where namespaces cannot be made it skips the test, saying why, or fails
// it (SkipOrFail).
func New(t testing.TB) *Lab {
	t.Helper()
	if reason := unavailable(); reason != "" {
		SkipOrFail(t, "network namespaces unavailable: %s", reason)
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	id := hex.EncodeToString(suffix)
	lab := &Lab{t: t, Host: "np" + id + "h", Upstream: "np" + id + "u"}
	t.Cleanup(lab.remove)
	lab.build()
	return lab
}

// With returns a view of the lab that reports to t, the test or subtest
// that calls it, so that a helper that fails (a netlink read, an ip
// command, a server that will not start) fails the test that called it:
// called through the lab of a parent test, FailNow would end the
// subtest's goroutine on the parent's behalf, which testing reports as
// "subtest may have called FailNow on a parent test" against the wrong
// test. The view shares the lab's namespaces; what it starts (servers,
// processes, a resolv.conf) is stopped when t ends, not when the lab does.
func (l *Lab) With(t testing.TB) *Lab {
	view := *l
	view.t = t
	return &view
}

func unavailable() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2 (ip) is not installed"
	}
	return ""
}

func (l *Lab) build() {
	l.t.Helper()
	l.ip("netns", "add", l.Host)
	l.ip("netns", "add", l.Upstream)
	for _, ns := range []string{l.Host, l.Upstream} {
		l.sysctl(ns, map[string]string{
			"net/ipv6/conf/all/disable_ipv6":     "1",
			"net/ipv6/conf/default/disable_ipv6": "1",
			"net/ipv4/conf/all/rp_filter":        "0",
			"net/ipv4/conf/default/rp_filter":    "0",
		})
		l.ip("-n", ns, "link", "set", "lo", "up")
	}
	// IPv6 on the host's loopback only, for [::1] listeners: lo sends
	// nothing on the NICs, so their counters stay exact. Written after
	// all=1, which would otherwise switch it off again.
	l.sysctl(l.Host, map[string]string{"net/ipv6/conf/lo/disable_ipv6": "0"})
	l.ip("-n", l.Upstream, "link", "add", "name", "br0", "type", "bridge")
	l.ip("-n", l.Upstream, "addr", "add", Gateway.String()+"/24", "dev", "br0")
	l.ip("-n", l.Upstream, "link", "set", "br0", "up")
	l.ip("-n", l.Upstream, "addr", "add", Server.String()+"/32", "dev", "lo")
	l.ip("-n", l.Upstream, "route", "add", "blackhole", "203.0.113.0/24")

	for _, nic := range []NIC{Ens33, Ens160} {
		l.ip("-n", l.Host, "link", "add", "name", nic.Name, "type", "veth", "peer", "name", nic.peer, "netns", l.Upstream)
		l.ip("-n", l.Upstream, "link", "set", nic.peer, "master", "br0", "up")
		l.ip("-n", l.Host, "addr", "add", nic.Addr.String()+"/24", "dev", nic.Name, "metric", fmt.Sprint(nic.Metric))
		l.ip("-n", l.Host, "link", "set", nic.Name, "up")
		l.ip("-n", l.Host, "route", "add", "default", "via", Gateway.String(), "dev", nic.Name, "metric", fmt.Sprint(nic.Metric))
	}

	// Static neighbours both ways: no ARP traffic can move a counter.
	gatewayMAC := l.mac(l.Upstream, "br0")
	for _, nic := range []NIC{Ens33, Ens160} {
		l.ip("-n", l.Host, "neigh", "replace", Gateway.String(), "lladdr", gatewayMAC, "dev", nic.Name, "nud", "permanent")
		l.ip("-n", l.Upstream, "neigh", "replace", nic.Addr.String(), "lladdr", l.mac(l.Host, nic.Name), "dev", "br0", "nud", "permanent")
	}
}

func (l *Lab) remove() {
	for _, ns := range []string{l.Host, l.Upstream} {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil &&
			!bytes.Contains(out, []byte("No such file")) {
			l.t.Errorf("remove namespace %s: %v: %s", ns, err, out)
		}
	}
}

// ip runs one iproute2 command and fails the test if it fails.
func (l *Lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// sysctl writes /proc/sys values from a thread inside ns: /proc/sys/net
// shows the namespace of the thread that opens it.
func (l *Lab) sysctl(ns string, values map[string]string) {
	l.t.Helper()
	err := Do(ns, func() error {
		for key, value := range values {
			if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("sysctl in %s: %v", ns, err)
	}
}

func (l *Lab) mac(ns, link string) string {
	l.t.Helper()
	var mac string
	err := l.withHandle(ns, func(h *netlink.Handle) error {
		ln, err := h.LinkByName(link)
		if err != nil {
			return err
		}
		mac = ln.Attrs().HardwareAddr.String()
		return nil
	})
	if err != nil {
		l.t.Fatalf("mac of %s in %s: %v", link, ns, err)
	}
	return mac
}

func (l *Lab) withHandle(ns string, fn func(*netlink.Handle) error) error {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer target.Close()
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

// InHost runs fn on an OS thread inside the host namespace. Sockets fn
// creates belong to that namespace for life; goroutines fn starts do not run
// there (make sockets in fn itself).
func (l *Lab) InHost(fn func() error) error { return Do(l.Host, fn) }

// InUpstream runs fn on an OS thread inside the upstream namespace.
func (l *Lab) InUpstream(fn func() error) error { return Do(l.Upstream, fn) }

// Do runs fn on a fresh OS thread that has entered network namespace ns.
// The thread stays locked and dies with the goroutine, so no other goroutine
// ever runs in the wrong namespace.
func Do(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		target, err := netns.GetFromName(ns)
		if err != nil {
			errc <- fmt.Errorf("open namespace %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Counters are a NIC's byte counters at one moment.
type Counters struct{ Tx, Rx uint64 }

// Counters reads a host NIC's byte counters.
func (l *Lab) Counters(nic string) Counters {
	l.t.Helper()
	var c Counters
	err := l.withHandle(l.Host, func(h *netlink.Handle) error {
		ln, err := h.LinkByName(nic)
		if err != nil {
			return err
		}
		stats := ln.Attrs().Statistics
		c = Counters{Tx: stats.TxBytes, Rx: stats.RxBytes}
		return nil
	})
	if err != nil {
		l.t.Fatalf("counters of %s: %v", nic, err)
	}
	return c
}

// Snapshot records every host NIC's counters so a test can later ask how
// many bytes each sent since.
func (l *Lab) Snapshot() Snapshot {
	return Snapshot{lab: l, at: map[string]Counters{
		Ens33.Name:  l.Counters(Ens33.Name),
		Ens160.Name: l.Counters(Ens160.Name),
	}}
}

// Settled waits until neither NIC has sent anything for 200 ms, so the
// closing packets of the flows before (a FIN, the last ACK, which a busy
// machine can delay past the next flow's start) are out, and returns the
// counters then: the "before" of a flow whose other NIC must send nothing.
func (l *Lab) Settled() Snapshot {
	l.t.Helper()
	var snap Snapshot
	poll.Until(l.t, 10*time.Second, func() bool {
		snap = l.Snapshot()
		time.Sleep(200 * time.Millisecond)
		return snap.TxSince(Ens33.Name) == 0 && snap.TxSince(Ens160.Name) == 0
	}, func() string { return "the NICs kept sending" })
	return snap
}

// Snapshot is the counters of both NICs at one moment.
type Snapshot struct {
	lab *Lab
	at  map[string]Counters
}

// TxSince is how many bytes nic has sent since the snapshot.
func (s Snapshot) TxSince(nic string) uint64 {
	return s.lab.Counters(nic).Tx - s.at[nic].Tx
}

// RxSince is how many bytes nic has received since the snapshot: for a
// download, the proof of which NIC the data came in through.
func (s Snapshot) RxSince(nic string) uint64 {
	return s.lab.Counters(nic).Rx - s.at[nic].Rx
}

// Sysctl writes /proc/sys values in the host namespace; keys are paths
// under /proc/sys ("net/ipv4/conf/all/rp_filter").
func (l *Lab) Sysctl(values map[string]string) {
	l.t.Helper()
	l.sysctl(l.Host, values)
}

// SetDown takes a host NIC administratively down.
func (l *Lab) SetDown(nic string) { l.ip("-n", l.Host, "link", "set", nic, "down") }

// Command returns a command that runs inside the host namespace, for real
// clients (curl) and the nicproxy binary, in the test's environment
// without its *_proxy variables (no client in the lab is proxied by
// accident); add to cmd.Env rather than replace it.
func (l *Lab) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.Host, name}, args...)...)
	cmd.Env = withoutProxyEnv(os.Environ())
	return cmd
}

// AddAddress gives a host NIC one more IPv4 address on the lab's /24, with a
// static neighbour entry upstream so that no ARP traffic (which the host
// would answer on both NICs: ARP flux) moves a counter.
func (l *Lab) AddAddress(nic string, addr netip.Addr) {
	l.t.Helper()
	l.ip("-n", l.Host, "addr", "add", addr.String()+"/24", "dev", nic)
	l.ip("-n", l.Upstream, "neigh", "replace", addr.String(), "lladdr", l.mac(l.Host, nic), "dev", "br0", "nud", "permanent")
}

// SetUp brings a host NIC back up after SetDown and restores what the
// kernel flushed when it went down: its default route and static neighbour.
func (l *Lab) SetUp(nic NIC) {
	l.t.Helper()
	l.ip("-n", l.Host, "link", "set", nic.Name, "up")
	l.ip("-n", l.Host, "route", "replace", "default", "via", Gateway.String(), "dev", nic.Name, "metric", fmt.Sprint(nic.Metric))
	l.ip("-n", l.Host, "neigh", "replace", Gateway.String(), "lladdr", l.mac(l.Upstream, "br0"), "dev", nic.Name, "nud", "permanent")
}

// AddNIC plugs one more NIC into the host while the test runs (a USB or VPN
// NIC appearing), on the lab's /24 with its own default route and static
// neighbours both ways.
func (l *Lab) AddNIC(nic NIC) {
	l.t.Helper()
	if nic.peer == "" {
		nic.peer = "u" + strings.TrimPrefix(nic.Name, "ens")
	}
	l.ip("-n", l.Host, "link", "add", "name", nic.Name, "type", "veth", "peer", "name", nic.peer, "netns", l.Upstream)
	l.ip("-n", l.Upstream, "link", "set", nic.peer, "master", "br0", "up")
	l.ip("-n", l.Host, "addr", "add", nic.Addr.String()+"/24", "dev", nic.Name, "metric", fmt.Sprint(nic.Metric))
	l.ip("-n", l.Host, "link", "set", nic.Name, "up")
	l.ip("-n", l.Host, "route", "add", "default", "via", Gateway.String(), "dev", nic.Name, "metric", fmt.Sprint(nic.Metric))
	l.ip("-n", l.Host, "neigh", "replace", Gateway.String(), "lladdr", l.mac(l.Upstream, "br0"), "dev", nic.Name, "nud", "permanent")
	l.ip("-n", l.Upstream, "neigh", "replace", nic.Addr.String(), "lladdr", l.mac(l.Host, nic.Name), "dev", "br0", "nud", "permanent")
}

// IPv6Disabled reports whether the host namespace has IPv6 disabled for
// its NICs (net.ipv6.conf.all.disable_ipv6 is 1, and so is each NIC's), the
// lab's default variant; after EnableIPv6 it is false.
func (l *Lab) IPv6Disabled() bool {
	l.t.Helper()
	disabled := true
	err := Do(l.Host, func() error {
		for _, key := range []string{"all", Ens33.Name, Ens160.Name} {
			b, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv6/conf", key, "disable_ipv6"))
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(b)) != "1" {
				disabled = false
			}
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("read disable_ipv6 in %s: %v", l.Host, err)
	}
	return disabled
}

// DelAddress6 removes a host NIC's IPv6 address (after EnableIPv6): the
// NIC keeps its IPv6 default route but has no global address left.
func (l *Lab) DelAddress6(nic NIC) {
	l.t.Helper()
	l.ip("-n", l.Host, "addr", "del", nic.Addr6.String()+"/64", "dev", nic.Name)
}

// AddAddress6 gives a host NIC its IPv6 address back after DelAddress6,
// as when a router advertisement or DHCPv6 lease arrives.
func (l *Lab) AddAddress6(nic NIC) {
	l.t.Helper()
	l.ip("-n", l.Host, "addr", "add", nic.Addr6.String()+"/64", "dev", nic.Name, "nodad", "metric", fmt.Sprint(nic.Metric))
}

// EnableIPv6 gives the lab IPv6 as well: both NICs and the gateway on
// 2001:db8:1::/64 with default routes of the same metrics, Server6 upstream,
// static neighbours. Link-local addresses, DAD, router solicitations and
// RA are off, and it waits until the NICs' counters are still, so they stay
// exact: only the test's traffic moves them afterwards.
func (l *Lab) EnableIPv6() {
	l.t.Helper()
	quiet := func(ns, link string) {
		l.ip("-n", ns, "link", "set", link, "addrgenmode", "none")
		l.sysctl(ns, map[string]string{
			"net/ipv6/conf/" + link + "/accept_dad":           "0",
			"net/ipv6/conf/" + link + "/accept_ra":            "0",
			"net/ipv6/conf/" + link + "/router_solicitations": "0",
		})
		l.sysctl(ns, map[string]string{"net/ipv6/conf/" + link + "/disable_ipv6": "0"})
	}
	quiet(l.Upstream, "br0")
	l.sysctl(l.Upstream, map[string]string{"net/ipv6/conf/lo/disable_ipv6": "0"})
	l.ip("-n", l.Upstream, "addr", "add", Gateway6.String()+"/64", "dev", "br0", "nodad")
	l.ip("-n", l.Upstream, "addr", "add", Server6.String()+"/128", "dev", "lo")
	gatewayMAC := l.mac(l.Upstream, "br0")
	for _, nic := range []NIC{Ens33, Ens160} {
		quiet(l.Host, nic.Name)
		l.ip("-n", l.Host, "addr", "add", nic.Addr6.String()+"/64", "dev", nic.Name, "nodad", "metric", fmt.Sprint(nic.Metric))
		l.ip("-n", l.Host, "-6", "route", "add", "default", "via", Gateway6.String(), "dev", nic.Name, "metric", fmt.Sprint(nic.Metric))
		l.ip("-n", l.Host, "-6", "neigh", "replace", Gateway6.String(), "lladdr", gatewayMAC, "dev", nic.Name, "nud", "permanent")
		l.ip("-n", l.Upstream, "-6", "neigh", "replace", nic.Addr6.String(), "lladdr", l.mac(l.Host, nic.Name), "dev", "br0", "nud", "permanent")
	}
	// Joining the new addresses' multicast groups sends a few MLD reports;
	// wait for them to be over.
	deadline := time.Now().Add(10 * time.Second)
	prev := l.Snapshot()
	for {
		time.Sleep(1500 * time.Millisecond)
		if prev.TxSince(Ens33.Name) == 0 && prev.TxSince(Ens160.Name) == 0 {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatal("the NICs' counters did not settle after enabling IPv6")
		}
		prev = l.Snapshot()
	}
}
