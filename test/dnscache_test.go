package test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"nicproxy/bind"
	"nicproxy/bind/dnscache"
	"nicproxy/test/netlab"
)

// TestDNSCacheQueriesLeaveThroughTheNIC proves a NIC's resolver asks
// through that NIC, over UDP and over TCP, by the address the server saw
// and by the tx counters; that a cached answer sends nothing; and that a
// NIC that is down fails the lookup rather than asking through the other.
func TestDNSCacheQueriesLeaveThroughTheNIC(t *testing.T) {
	lab := netlab.New(t)
	dns := lab.StartDNSZone(netlab.Zone{
		Records: map[string][]netip.Addr{
			"www.example.test": {netlab.Server, netlab.Blackhole},
			"big.example.test": {netlab.Server},
		},
		Truncate: map[string]bool{"big.example.test": true},
		Delay:    20 * time.Millisecond,
	})
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	if err := os.WriteFile(hosts, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pinned := bind.NewDialer("ens160", bind.Options{}, nil)
	r := dnscache.New(dnscache.Config{
		NIC: "ens160",
		// The bound dial must run in the lab's host namespace, where ens160 is.
		Dial: func(ctx context.Context, network, address string) (conn net.Conn, err error) {
			err = lab.InHost(func() error {
				conn, err = pinned.DialContext(ctx, network, address)
				return err
			})
			return conn, err
		},
		ResolvConf:    lab.ResolvConf(dns.Addr()), // the system's nameservers, not Servers
		StubUpstreams: filepath.Join(dir, "missing"),
		Hosts:         hosts,
		CacheSize:     100,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	onlyEns160 := func(t *testing.T, before netlab.Snapshot, what string) {
		t.Helper()
		if tx := before.TxSince("ens160"); tx == 0 {
			t.Errorf("%s: ens160 sent nothing", what)
		}
		if tx := before.TxSince("ens33"); tx != 0 {
			t.Errorf("%s: ens33 sent %d bytes", what, tx)
		}
		if seen := dns.Seen(); !slices.Equal(seen, []netip.Addr{netlab.Ens160.Addr}) {
			t.Errorf("%s: server saw %v, want only %v", what, seen, netlab.Ens160.Addr)
		}
	}

	before := lab.Snapshot()
	res, err := r.Lookup(ctx, "www.example.test")
	if err != nil || !slices.Equal(res.V4, []netip.Addr{netlab.Server, netlab.Blackhole}) || len(res.V6) != 0 || res.Cached {
		t.Fatalf("Lookup: %+v, %v", res, err)
	}
	onlyEns160(t, before, "UDP")
	if a, aaaa := dns.Queries("www.example.test", dnsmessage.TypeA), dns.Queries("www.example.test", dnsmessage.TypeAAAA); a != 1 || aaaa != 1 {
		t.Errorf("server saw %d A and %d AAAA queries, want 1 each", a, aaaa)
	}

	// From the cache: nothing sent at all. (Checked before the TCP
	// query below, whose connection may still send its last ACK later.)
	total := dns.Total()
	before = lab.Snapshot()
	if res, err := r.Lookup(ctx, "www.example.test"); err != nil || !res.Cached {
		t.Errorf("second lookup: %+v, %v; want it cached", res, err)
	}
	if tx33, tx160 := before.TxSince("ens33"), before.TxSince("ens160"); tx33 != 0 || tx160 != 0 || dns.Total() != total {
		t.Errorf("a cached lookup sent %d bytes on ens33, %d on ens160, %d queries", tx33, tx160, dns.Total()-total)
	}

	// A truncated answer: asked again over TCP, through ens160 all the same.
	before = lab.Snapshot()
	if addrs, err := r.LookupNetIP(ctx, "ip4", "big.example.test"); err != nil || !slices.Equal(addrs, []netip.Addr{netlab.Server}) {
		t.Fatalf("big.example.test: %v, %v", addrs, err)
	}
	onlyEns160(t, before, "TCP")
	if n := dns.Queries("big.example.test", dnsmessage.TypeA); n != 2 {
		t.Errorf("big.example.test asked %d times, want twice (UDP, then TCP)", n)
	}

	// ens160 down: the lookup fails closed, and nothing leaves through ens33.
	lab.SetDown("ens160")
	total = dns.Total()
	before = lab.Snapshot()
	_, err = r.Lookup(ctx, "other.example.test")
	var dnsErr *net.DNSError
	if !errors.Is(err, bind.ErrNICDown) || !errors.As(err, &dnsErr) || dnsErr.IsNotFound {
		t.Errorf("lookup through a NIC that is down: %v, want a DNSError wrapping bind.ErrNICDown", err)
	}
	if tx := before.TxSince("ens33"); tx != 0 || dns.Total() != total {
		t.Errorf("with ens160 down, ens33 sent %d bytes and the server got %d queries", tx, dns.Total()-total)
	}
}
