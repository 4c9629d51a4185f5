package proxy

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"

	"nicproxy/config"
)

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0":               "127.0.0.1",
		"[::]":                  "::1",
		"::":                    "::1",
		"[::ffff:0.0.0.0]":      "127.0.0.1",
		"[::ffff:0:0]":          "127.0.0.1",
		"::ffff:127.0.0.2":      "127.0.0.2",
		"[::ffff:198.51.100.1]": "198.51.100.1",
		"localhost":             "127.0.0.1",
		"LocalHost.":            "127.0.0.1",
		"a.b.localhost":         "127.0.0.1",
		"x.localhost.":          "127.0.0.1",
		"localhost.example":     "localhost.example",
		"notlocalhost":          "notlocalhost",
		"example.com":           "example.com",
		"fe80::1%eth0":          "fe80::1",
	} {
		if got, _ := normalizeHost(in); got != want {
			t.Errorf("normalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckDest(t *testing.T) {
	parse := func(yaml string) *config.Config {
		cfg, err := config.Parse("t.yaml", []byte(yaml), config.Options{Interfaces: []string{"eth0"}})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	deny := parse("listen: [{addr: \"127.0.0.1:1080\"}, {addr: \"[::]:3128\", protocol: http}]\nadmin: {addr: \"127.0.0.1:9090\"}\nallow: [10.0.0.0/8]\nlocal_destinations: deny\ndefault: eth0\n")
	allow := parse("listen: [{addr: \"127.0.0.1:1080\"}]\nadmin: {addr: \"127.0.0.1:9090\"}\ndefault: eth0\n")
	s := New(allow, zap.NewNop(), Options{})
	s.local.list = func() ([]net.Addr, error) {
		return []net.Addr{&net.IPNet{IP: net.ParseIP("192.0.2.80"), Mask: net.CIDRMask(24, 32)}}, nil
	}
	for _, tt := range []struct {
		cfg  *config.Config
		dst  string
		want error
	}{
		{allow, "127.0.0.1:1080", errLoop},
		{allow, "127.0.0.1:9090", errLoop},
		{allow, "127.0.0.2:1080", nil}, // another address: not the listener
		{allow, "127.0.0.1:22", nil},   // allow: the host's services are reachable
		{allow, "198.51.100.1:1080", nil},
		{deny, "127.0.0.1:22", errLocal},
		{deny, "[::1]:22", errLocal},
		{deny, "192.0.2.80:22", errLocal},
		{deny, "0.0.0.0:22", errLocal},
		{deny, "192.0.2.80:3128", errLoop}, // [::]:3128 listens on every address
		{deny, "[::1]:3128", errLoop},
		{deny, "127.0.0.1:1080", errLoop},
		{deny, "198.51.100.1:22", nil},
	} {
		err := s.checkDest(tt.cfg, netip.MustParseAddrPort(tt.dst))
		if tt.want == nil && err != nil || tt.want != nil && !errorsIs(err, tt.want) {
			t.Errorf("checkDest(%s, %s) = %v, want %v", tt.cfg.LocalDestinations, tt.dst, err, tt.want)
		}
	}
}

func errorsIs(err, target error) bool { return err != nil && errors.Is(err, target) }

// TestHostAddrsNeverWaitsForAListing: while one check lists the host's
// addresses again (a netlink dump that can take a while), other checks
// answer from the listing before instead of waiting for it. (The listing
// was made under the mutex every check took.)
func TestHostAddrsNeverWaitsForAListing(t *testing.T) {
	own := []net.Addr{&net.IPNet{IP: net.ParseIP("192.0.2.80"), Mask: net.CIDRMask(24, 32)}}
	entered, release := make(chan struct{}), make(chan struct{})
	calls := 0
	h := newHostAddrs(nil)
	h.list = func() ([]net.Addr, error) {
		calls++
		if calls > 1 {
			close(entered)
			<-release
		}
		return own, nil
	}
	if !h.has(netip.MustParseAddr("192.0.2.80")) {
		t.Fatal("192.0.2.80 is listed but not the host's")
	}
	l := *h.listing.Load()
	l.at = l.at.Add(-2 * hostAddrsTTL) // stale: the next check lists again
	h.listing.Store(&l)
	listed := make(chan struct{})
	go func() { defer close(listed); h.has(netip.MustParseAddr("192.0.2.1")) }()
	<-entered
	answered := make(chan bool)
	go func() { answered <- h.has(netip.MustParseAddr("192.0.2.80")) }()
	select {
	case got := <-answered:
		if !got {
			t.Error("a check during the listing answered 192.0.2.80 is not the host's")
		}
	case <-time.After(10 * time.Second):
		t.Error("a check waited for another's listing")
		close(release)
		<-answered
		<-listed
		return
	}
	close(release)
	<-listed
}

// TestHostAddrsWatched: given a watcher, the checks ask it and list
// nothing themselves.
func TestHostAddrsWatched(t *testing.T) {
	h := newHostAddrs(watchedAddrs{netip.MustParseAddr("192.0.2.48"): true})
	h.list = func() ([]net.Addr, error) {
		t.Error("a check listed the addresses though a watcher knows them")
		return nil, nil
	}
	if !h.isLocal(netip.MustParseAddr("192.0.2.48")) || h.isLocal(netip.MustParseAddr("192.0.2.80")) {
		t.Error("the checks did not answer what the watcher knows")
	}
}

type watchedAddrs map[netip.Addr]bool

func (w watchedAddrs) Has(a netip.Addr) bool { return w[a] }
