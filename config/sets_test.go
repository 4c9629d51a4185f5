package config

import (
	"net/netip"
	"testing"
)

// ruleSets parses one rule and returns it, so the sets are built the way
// the router will get them.
func ruleSets(t *testing.T, fields string) Rule {
	t.Helper()
	return mustParse(t, "rules:\n  - "+fields+"\n    via: ens33\n", hostOpts()).Rules[0]
}

func TestPrefixSetContains(t *testing.T) {
	r := ruleSets(t, `dst: [192.168.3.0/24, 10.0.0.1, 10.0.0.0/30, "2001:db8::/32", "::1", "::ffff:172.16.0.0/108", 0.0.0.0/32]`)
	tests := []struct {
		addr string
		want bool
	}{
		{"192.168.3.0", true},
		{"192.168.3.255", true},
		{"192.168.4.0", false},
		{"192.168.2.255", false},
		{"10.0.0.1", true},
		{"10.0.0.3", true},
		{"10.0.0.4", false},
		{"::ffff:192.168.3.48", true}, // 4in6 matches IPv4 prefixes
		{"::ffff:192.168.4.1", false},
		{"2001:db8::1", true},
		{"2001:db8:ffff::1", true},
		{"2001:db9::1", false},
		{"::1", true},
		{"::2", false},
		{"fe80::1%ens160", false},
		{"172.16.0.1", true}, // 4in6 prefix written in the file
		{"172.31.255.255", true},
		{"172.32.0.0", false},
		{"0.0.0.0", true},
		{"0.0.0.1", false},
	}
	for _, tt := range tests {
		if got := r.Dst.Contains(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Contains(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if r.Dst.Contains(netip.Addr{}) {
		t.Error("the zero Addr matched")
	}
	// 10.0.0.1 and 10.0.0.0/30 overlap: only the wider one is kept.
	if got, want := r.Dst.String(), "0.0.0.0, 10.0.0.0/30, 172.16.0.0/12, 192.168.3.0/24, ::1, 2001:db8::/32"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if r.Dst.Len() != 6 {
		t.Errorf("Len() = %d", r.Dst.Len())
	}
	var empty PrefixSet
	if empty.Len() != 0 || empty.Contains(netip.MustParseAddr("1.2.3.4")) {
		t.Error("the zero PrefixSet is not empty")
	}
}

func TestPrefixSetZones(t *testing.T) {
	r := ruleSets(t, `src: ["fe80::/10"]`)
	if !r.Src.Contains(netip.MustParseAddr("fe80::1%ens160")) {
		t.Error("a zoned client address did not match its prefix")
	}
}

func TestNewPrefixSet(t *testing.T) {
	s := NewPrefixSet(netip.MustParsePrefix("10.1.2.3/8"), netip.Prefix{}, netip.MustParsePrefix("10.0.0.0/16"))
	if s.String() != "10.0.0.0/8" || !s.Contains(netip.MustParseAddr("10.200.0.1")) {
		t.Errorf("got %v", s)
	}
}

func TestDomainSetMatch(t *testing.T) {
	r := ruleSets(t, `domain: [example.com, .corp.example, Mixed.Case.Example., .svc.]`)
	tests := []struct {
		host string
		want bool
	}{
		{"example.com", true},
		{"EXAMPLE.com", true},
		{"example.com.", true},
		{"www.example.com", false}, // exact entries are exact
		{"xexample.com", false},
		{"corp.example", false}, // a suffix does not match its own name
		{"a.corp.example", true},
		{"b.a.corp.example", true},
		{"A.Corp.Example.", true},
		{"acorp.example", false},
		{"mixed.case.example", true},
		{"x.svc", true},
		{"svc", false},
		{"", false},
		{".", false},
		{"192.168.3.1", false},
		{"::1", false},
		{"[::1]", false},
	}
	for _, tt := range tests {
		if got := r.Domains.Match(tt.host); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	if r.Domains.Len() != 4 || r.Domains.String() != "example.com, mixed.case.example, .corp.example, .svc" {
		t.Errorf("Len() = %d, String() = %q", r.Domains.Len(), r.Domains.String())
	}
	var empty DomainSet
	if empty.Len() != 0 || empty.Match("example.com") {
		t.Error("the zero DomainSet is not empty")
	}
}

func TestNewDomainSet(t *testing.T) {
	if _, err := NewDomainSet("ok.example", "bad name"); err == nil {
		t.Error("a name with a space was accepted")
	}
	if _, err := NewDomainSet("bücher.example"); err == nil || err.Error() != `"bücher.example": write internationalised names in their xn-- (punycode) form` {
		t.Errorf("IDN: %v", err)
	}
	s, err := NewDomainSet("xn--bcher-kva.example", "_sip._tcp.example")
	if err != nil || !s.Match("XN--BCHER-KVA.example") || !s.Match("_sip._tcp.example") {
		t.Errorf("got %v, %v", s, err)
	}
}

func TestPortSetContains(t *testing.T) {
	r := ruleSets(t, `port: [443, "8000-8999", 80, "9000 - 9001", "444", 65535, "1-2"]`)
	tests := []struct {
		port uint16
		want bool
	}{
		{0, false}, {1, true}, {2, true}, {3, false},
		{79, false}, {80, true}, {81, false},
		{442, false}, {443, true}, {444, true}, {445, false},
		{7999, false}, {8000, true}, {8500, true}, {8999, true}, {9000, true}, {9001, true}, {9002, false},
		{65534, false}, {65535, true},
	}
	for _, tt := range tests {
		if got := r.Ports.Contains(tt.port); got != tt.want {
			t.Errorf("Contains(%d) = %v, want %v", tt.port, got, tt.want)
		}
	}
	// Adjacent and overlapping ranges merge.
	if got, want := r.Ports.String(), "1-2, 80, 443-444, 8000-9001, 65535"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	var empty PortSet
	if empty.Len() != 0 || empty.Contains(80) {
		t.Error("the zero PortSet is not empty")
	}
	if s := NewPortSet(PortRange{10, 5}, PortRange{7, 7}); s.String() != "7" {
		t.Errorf("reversed range kept: %v", s)
	}
}
