package cgroup

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// firstMatch is the rules' meaning, evaluated the slow way.
func (p Policy) firstMatch(dst netip.AddrPort, network Network) Verdict {
	a := dst.Addr().Unmap()
	for _, r := range p.Rules {
		if r.Network != AnyNetwork && r.Network != network {
			continue
		}
		portOK := len(r.Ports) == 0
		for _, pr := range r.Ports {
			portOK = portOK || pr.Lo <= dst.Port() && dst.Port() <= pr.Hi
		}
		dstOK := len(r.Dst) == 0
		for _, d := range r.Dst {
			dstOK = dstOK || d.Contains(a)
		}
		if portOK && dstOK {
			return r.Verdict
		}
	}
	return p.Default
}

// TestCompileMatchesFirstMatch checks the longest-prefix tables against
// first-match-wins on random rules and destinations, biased to the
// prefixes' edges, where a wrong nesting would show.
func TestCompileMatchesFirstMatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	nics := []Verdict{{Action: Pin, NIC: "a", Index: 2}, {Action: Pin, NIC: "b", Index: 3}, {Action: System}, {Action: Reject}}
	pool := []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16"),
		netip.MustParsePrefix("10.1.2.0/24"), netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("::/0"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("2001:db8:1::/48"),
		netip.MustParsePrefix("2001:db8:1::1/128"),
	}
	addrs := []netip.Addr{
		netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("10.1.2.4"), netip.MustParseAddr("10.1.3.1"),
		netip.MustParseAddr("10.2.0.1"), netip.MustParseAddr("11.0.0.1"), netip.MustParseAddr("192.0.2.9"),
		netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:1::2"), netip.MustParseAddr("2001:db8:2::1"),
		netip.MustParseAddr("2001:dead::1"),
	}
	ports := []uint16{1, 53, 79, 80, 81, 443, 8000, 8999, 9000, 65535}
	for round := range 300 {
		var p Policy
		p.Default = nics[rng.IntN(len(nics))]
		for range 1 + rng.IntN(6) {
			r := Rule{Verdict: nics[rng.IntN(len(nics))], Network: Network(rng.IntN(3))}
			for range rng.IntN(3) {
				r.Dst = append(r.Dst, pool[rng.IntN(len(pool))])
			}
			for range rng.IntN(3) {
				lo := ports[rng.IntN(len(ports))]
				r.Ports = append(r.Ports, PortRange{lo, uint16(min(int(lo)+rng.IntN(1000), 65535))})
			}
			p.Rules = append(p.Rules, r)
		}
		tables, err := p.compile()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			for _, port := range ports {
				for _, n := range []Network{TCP, UDP} {
					dst := netip.AddrPortFrom(a, port)
					if got, want := tables.lookup(dst, n), p.firstMatch(dst, n); got != want {
						t.Fatalf("round %d: %v %v: tables say %v, rules say %v\npolicy: %+v", round, dst, n, got, want, p)
					}
				}
			}
		}
	}
}

// TestOtherVerdict: an ICMP or raw socket can be pinned at creation only
// when every destination gets the same verdict for it.
func TestOtherVerdict(t *testing.T) {
	a, b := Verdict{Action: Pin, NIC: "a", Index: 2}, Verdict{Action: Pin, NIC: "b", Index: 3}
	for _, c := range []struct {
		name    string
		p       Policy
		want    Verdict
		uniform bool
	}{
		{"default only", Policy{Default: a}, a, true},
		{"a TCP-only rule", Policy{Default: a, Rules: []Rule{{Dst: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Network: TCP, Verdict: b}}}, a, true},
		{"a port rule", Policy{Default: a, Rules: []Rule{{Ports: []PortRange{{80, 80}}, Verdict: b}}}, a, true},
		{"a dst rule", Policy{Default: a, Rules: []Rule{{Dst: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Verdict: b}}}, Verdict{}, false},
		{"a dst rule of the default's NIC", Policy{Default: a, Rules: []Rule{{Dst: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Verdict: a}}}, a, true},
	} {
		tables, err := c.p.compile()
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := tables.otherVerdict(); v != c.want || ok != c.uniform {
			t.Errorf("%s: otherVerdict() = %v, %v; want %v, %v", c.name, v, ok, c.want, c.uniform)
		}
	}
}

// TestProbe: the self-test's destination is off the host and pinned for
// UDP, by a rule when only a rule pins; none when nothing is pinned.
func TestProbe(t *testing.T) {
	a := Verdict{Action: Pin, NIC: "a", Index: 2}
	local := []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}
	dst, v, ok := Policy{Default: a}.Probe(local)
	if !ok || v != a || local[0].Contains(dst.Addr()) {
		t.Errorf("default a: probe %v %v %v, want an off-host destination pinned to a", dst, v, ok)
	}
	byRule := Policy{Default: Verdict{Action: System}, Rules: []Rule{{Dst: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, Ports: []PortRange{{53, 53}}, Verdict: a}}}
	dst, v, ok = byRule.Probe(local)
	if !ok || v != a || dst != netip.MustParseAddrPort("10.1.0.1:53") {
		t.Errorf("a rule to a: probe %v %v %v, want 10.1.0.1:53 pinned to a", dst, v, ok)
	}
	if _, _, ok := (Policy{Default: Verdict{Action: System}}).Probe(local); ok {
		t.Error("a policy that pins nothing has a probe")
	}
}
