package upstream

import (
	"hash/maphash"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"nicproxy/config"
	"nicproxy/proxy/router"
)

// balancer orders a balanced Via's NICs for one new connection: the pick
// first, then the others as failover.
type balancer struct {
	seed maphash.Seed

	mu     sync.Mutex
	turns  map[int]*atomic.Uint64 // round-robin position per rule index
	active map[string]int         // open balanced connections per NIC
}

func newBalancer() *balancer {
	return &balancer{seed: maphash.MakeSeed(), turns: map[int]*atomic.Uint64{}, active: map[string]int{}}
}

func (b *balancer) order(d router.Decision, client netip.AddrPort, host string) []string {
	nics := d.Via.NICs
	if len(nics) < 2 {
		return nics
	}
	var first int
	switch d.Via.Strategy {
	case config.StrategySticky:
		first = b.sticky(nics, client, host)
	case config.StrategyLeastConnections:
		b.mu.Lock()
		for i, nic := range nics {
			if b.active[nic] < b.active[nics[first]] {
				first = i
			}
		}
		b.mu.Unlock()
	default: // round-robin
		b.mu.Lock()
		turn, ok := b.turns[d.Rule]
		if !ok {
			turn = new(atomic.Uint64)
			b.turns[d.Rule] = turn
		}
		b.mu.Unlock()
		first = int((turn.Add(1) - 1) % uint64(len(nics)))
	}
	ordered := slices.Concat(nics[first:], nics[:first])
	return ordered
}

// sticky is the index of the NIC a sticky balance picks: same client and
// site, same NIC, so the site keeps seeing one address.
func (b *balancer) sticky(nics []string, client netip.AddrPort, host string) int {
	var h maphash.Hash
	h.SetSeed(b.seed)
	ip := client.Addr().As16()
	h.Write(ip[:])
	h.WriteString(host)
	return int(h.Sum64() % uint64(len(nics)))
}

// StickyPick is the NIC a sticky balance tries first for client and host
// (the one Dial dials unless it fails); "" for any other Via.
func (d *Dialer) StickyPick(decision router.Decision, client netip.AddrPort, host string) string {
	v := decision.Via
	if v.Mode != config.ViaBalance || v.Strategy != config.StrategySticky || len(v.NICs) == 0 {
		return ""
	}
	return v.NICs[d.balancer.sticky(v.NICs, client, host)]
}

// opened counts a connection on nic and returns the func that uncounts it.
func (b *balancer) opened(nic string) func() {
	b.mu.Lock()
	b.active[nic]++
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		b.active[nic]--
		b.mu.Unlock()
	}
}
