package upstream

import (
	"net/netip"
	"testing"

	"nicproxy/config"
	"nicproxy/proxy/router"
)

func decision(strategy config.Strategy) router.Decision {
	return router.Decision{Rule: 3, Via: config.Via{Mode: config.ViaBalance, NICs: []string{"ens33", "ens160"}, Strategy: strategy}}
}

func TestRoundRobinAlternates(t *testing.T) {
	b := newBalancer()
	client := netip.MustParseAddrPort("127.0.0.1:1")
	var firsts []string
	for range 4 {
		order := b.order(decision(config.StrategyRoundRobin), client, "example.com")
		if len(order) != 2 || order[0] == order[1] {
			t.Fatalf("order %v: want both NICs once", order)
		}
		firsts = append(firsts, order[0])
	}
	if firsts[0] == firsts[1] || firsts[0] != firsts[2] || firsts[1] != firsts[3] {
		t.Errorf("round-robin picked %v, want alternation", firsts)
	}
}

func TestStickyKeepsClientAndHostTogether(t *testing.T) {
	b := newBalancer()
	client := netip.MustParseAddrPort("127.0.0.1:1")
	first := b.order(decision(config.StrategySticky), client, "example.com")[0]
	for range 20 {
		// Another source port of the same client is the same client.
		other := netip.AddrPortFrom(client.Addr(), 5555)
		if got := b.order(decision(config.StrategySticky), other, "example.com")[0]; got != first {
			t.Fatalf("sticky moved example.com from %s to %s", first, got)
		}
	}
	seen := map[string]bool{}
	for i := range 64 {
		host := string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".example"
		seen[b.order(decision(config.StrategySticky), client, host)[0]] = true
	}
	if len(seen) != 2 {
		t.Errorf("64 hosts all hashed to %v: sticky does not spread", seen)
	}
}

func TestLeastConnectionsPicksTheIdlerNIC(t *testing.T) {
	b := newBalancer()
	client := netip.MustParseAddrPort("127.0.0.1:1")
	release := b.opened("ens33")
	if got := b.order(decision(config.StrategyLeastConnections), client, "x")[0]; got != "ens160" {
		t.Errorf("with ens33 busy, picked %s", got)
	}
	release()
	b.opened("ens160")
	if got := b.order(decision(config.StrategyLeastConnections), client, "x")[0]; got != "ens33" {
		t.Errorf("with ens160 busy, picked %s", got)
	}
}

// TestBalancerSurvivesReload: a Dialer built for a reload from the one
// before it continues the round-robin rotation and still counts the
// connections opened before the reload (before, both restarted from zero:
// the first pick after every reload was the same NIC, and
// least-connections forgot every open connection).
func TestBalancerSurvivesReload(t *testing.T) {
	cfg, err := config.Parse("b.yaml", []byte(`
rules:
  - {name: rr, port: [80], via: {balance: [ens33, ens160], strategy: round-robin}}
  - {name: lc, port: [81], via: {balance: [ens33, ens160], strategy: least-connections}}
default: ens160
`), config.Options{Interfaces: []string{"ens33", "ens160"}})
	if err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddrPort("127.0.0.1:1")
	rr := router.Decision{Rule: 0, Via: cfg.Rules[0].Via}
	lc := router.Decision{Rule: 1, Via: cfg.Rules[1].Via}

	before := New(cfg, Options{})
	first := before.balancer.order(rr, client, "x")[0]
	busy := before.balancer.opened("ens33") // a connection open across the reload
	defer busy()

	after := New(cfg, Options{Previous: before})
	if got := after.balancer.order(rr, client, "x")[0]; got == first {
		t.Errorf("round-robin after the reload picked %s again: the rotation restarted", got)
	}
	if got := after.balancer.order(lc, client, "x")[0]; got != "ens160" {
		t.Errorf("least-connections after the reload picked %s: it forgot the connection open on ens33", got)
	}
}
