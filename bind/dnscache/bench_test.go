package dnscache

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkLookup compares, in one run, a lookup through Go's net.Resolver
// (what each NIC used before: a full query for A and AAAA every time)
// with this package's, uncached and cached, against the same loopback
// server, and logs the ratios.
func BenchmarkLookup(b *testing.B) {
	srv := startServer(b, map[string]zoneName{"web.test": {A: []netip.Addr{addr1}, AAAA: []netip.Addr{addr6}}})
	ctx := context.Background()
	perOp := map[string]time.Duration{}
	run := func(name string, lookup func() error) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := lookup(); err != nil {
					b.Fatal(err)
				}
			}
			perOp[name] = b.Elapsed() / time.Duration(b.N)
		})
	}
	goResolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return loopbackDial(ctx, network, srv.addr.String())
	}}
	run("net.Resolver", func() error { _, err := goResolver.LookupNetIP(ctx, "ip", "web.test."); return err })
	for _, size := range []int{0, 100} {
		r := New(Config{NIC: "bench", Servers: []netip.AddrPort{srv.addr}, Dial: loopbackDial, CacheSize: size,
			ResolvConf: "/nonexistent", Hosts: "/nonexistent"})
		name := "dnscache-uncached"
		if size > 0 {
			name = "dnscache-cached"
		}
		run(name, func() error { _, err := r.LookupNetIP(ctx, "ip", "web.test."); return err })
	}
	if base := perOp["net.Resolver"]; base > 0 {
		for _, name := range []string{"dnscache-uncached", "dnscache-cached"} {
			b.Logf("%s: %v per lookup, %.4fx net.Resolver's %v", name, perOp[name], float64(perOp[name])/float64(base), base)
		}
	}
}
