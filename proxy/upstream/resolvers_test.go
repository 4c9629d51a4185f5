package upstream

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"weak"

	"nicproxy/bind/dnscache"
	"nicproxy/config"
)

// TestReloadFreesRetiredResolvers: after 20 reloads that each change one
// NIC's dns, only the running Dialer's resolvers are reachable; every
// retired set and the caches it replaced can be collected, and the NIC
// whose dns did not change keeps its one cache throughout. (Each set's
// closures and carried map kept the set before it, a chain of all 20.)
func TestReloadFreesRetiredResolvers(t *testing.T) {
	const reloads = 20
	cfg := func(i int) *config.Config {
		return &config.Config{
			Default: config.Via{Mode: config.ViaPinned, NICs: []string{"ens33"}},
			Interfaces: map[string]config.Interface{
				"ens33":  {DNS: []netip.AddrPort{netip.MustParseAddrPort(fmt.Sprintf("192.0.2.%d:53", i+1))}},
				"ens160": {DNS: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.53:53")}},
			},
		}
	}
	d := New(cfg(0), Options{})
	steady := d.resolvers.byNIC["ens160"].resolver
	var sets []weak.Pointer[resolvers]
	var caches []weak.Pointer[dnscache.Resolver]
	for i := 1; i <= reloads; i++ {
		sets = append(sets, weak.Make(d.resolvers))
		caches = append(caches, weak.Make(d.resolvers.byNIC["ens33"].resolver))
		d = New(cfg(i), Options{Previous: d})
		if got := d.resolvers.byNIC["ens160"].resolver; got != steady {
			t.Fatalf("reload %d replaced ens160's cache, whose dns did not change", i)
		}
	}
	runtime.GC()
	runtime.GC()
	var liveSets, liveCaches int
	for i := range sets {
		if sets[i].Value() != nil {
			liveSets++
		}
		if caches[i].Value() != nil {
			liveCaches++
		}
	}
	if liveSets != 0 || liveCaches != 0 {
		t.Errorf("after %d reloads, %d retired resolver sets and %d retired ens33 caches are still reachable, want none",
			reloads, liveSets, liveCaches)
	}
	if d.resolvers.byNIC["ens160"].resolver != steady {
		t.Error("the running set lost ens160's cache")
	}
}
