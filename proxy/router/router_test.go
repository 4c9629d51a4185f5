package router

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"nicproxy/config"
)

// fakeResolver answers from a table and counts lookups.
type fakeResolver struct {
	names   map[string][]string
	lookups int
}

func (f *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	f.lookups++
	addrs, ok := f.names[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

const rulesYAML = `
listen:
  - addr: 127.0.0.1:1080
  - name: browser-b
    addr: "[::1]:8080"
    protocol: http
users:
  - name: alice
    password: a
  - name: bob
    password: b
rules:
  - name: lan
    dst: [192.0.2.0/24, "2001:db8:1::/48"]
    via: ens33
  - name: alice-wan
    user: [alice]
    via: ens160
  - name: corp
    domain: [example.com, .corp.example]
    port: [443, "8000-8999"]
    via: [ens160, ens33]
  - name: downloads
    listener: [browser-b]
    via:
      balance: [ens33, ens160]
      strategy: sticky
  - name: dns
    network: udp
    port: [53]
    via: ens160
  - name: office
    src: [198.51.100.0/24]
    via: system
  - name: no-smtp
    port: [25]
    action: reject
default: ens160
`

func newRouter(t *testing.T, res Resolver) *Router {
	t.Helper()
	cfg, err := config.Parse("rules.yaml", []byte(rulesYAML), config.Options{
		Interfaces: []string{"ens33", "ens160"}, DefaultRouteInterface: "ens33",
	})
	if err != nil {
		t.Fatal(err)
	}
	return New(cfg, res, nil)
}

func TestRoute(t *testing.T) {
	client := netip.MustParseAddrPort("127.0.0.1:50000")
	tests := []struct {
		name     string
		req      Request
		wantRule string
		wantVia  string
		reject   bool
		wantAddr string // address to dial when a dst rule resolved a name
	}{
		{"IPv4 literal in dst", Request{Host: "192.0.2.7", Port: 80}, "lan", "ens33", false, ""},
		{"IPv6 literal in dst", Request{Host: "2001:db8:1::9", Port: 80}, "lan", "ens33", false, ""},
		{"bracketed IPv6 literal", Request{Host: "[2001:db8:1::9]", Port: 80}, "lan", "ens33", false, ""},
		{"4in6 literal matches IPv4 prefix", Request{Host: "::ffff:192.0.2.7", Port: 80}, "lan", "ens33", false, ""},
		{"IPv6 outside prefix", Request{Host: "2001:db8:2::1", Port: 25}, "no-smtp", "", true, ""},
		{"name resolving into dst", Request{Host: "printer.lan", Port: 631}, "lan", "ens33", false, "192.0.2.9"},
		{"name resolving outside dst falls through", Request{Host: "far.example", Port: 631}, "default", "ens160", false, ""},
		{"name that does not resolve falls through", Request{Host: "nx.example", Port: 631}, "default", "ens160", false, ""},
		{"user rule", Request{User: "alice", Host: "198.51.100.1", Port: 80}, "alice-wan", "ens160", false, ""},
		{"other user skips user rule", Request{User: "bob", Host: "198.51.100.1", Port: 25}, "no-smtp", "", true, ""},
		{"dst rule wins over user rule by order", Request{User: "alice", Host: "192.0.2.1", Port: 80}, "lan", "ens33", false, ""},
		{"exact domain and port", Request{Host: "example.com", Port: 443}, "corp", "ens160 -> ens33", false, ""},
		{"exact domain is case-insensitive", Request{Host: "EXAMPLE.com.", Port: 443}, "corp", "ens160 -> ens33", false, ""},
		{"exact domain does not cover subdomains", Request{Host: "www.example.com", Port: 443}, "default", "ens160", false, ""},
		{"suffix domain in port range", Request{Host: "git.corp.example", Port: 8443}, "corp", "ens160 -> ens33", false, ""},
		{"suffix domain does not match its bare name", Request{Host: "corp.example", Port: 443}, "default", "ens160", false, ""},
		{"domain with port outside list", Request{Host: "example.com", Port: 9000}, "default", "ens160", false, ""},
		{"port range upper bound", Request{Host: "a.corp.example", Port: 8999}, "corp", "ens160 -> ens33", false, ""},
		{"no port never matches a port rule", Request{Host: "example.com"}, "default", "ens160", false, ""},
		{"listener rule", Request{Listener: "browser-b", Host: "198.51.100.1", Port: 80}, "downloads", "balance(ens33, ens160; sticky)", false, ""},
		{"udp network rule", Request{Network: config.NetworkUDP, Host: "198.51.100.53", Port: 53}, "dns", "ens160", false, ""},
		{"tcp skips udp rule", Request{Network: config.NetworkTCP, Host: "198.51.100.53", Port: 53}, "default", "ens160", false, ""},
		{"src rule", Request{Client: netip.MustParseAddrPort("198.51.100.20:4000"), Host: "203.0.113.5", Port: 80}, "office", "system", false, ""},
		{"reject rule", Request{Host: "203.0.113.5", Port: 25}, "no-smtp", "", true, ""},
		{"no match: default", Request{Host: "203.0.113.5", Port: 80}, "default", "ens160", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := &fakeResolver{names: map[string][]string{
				"printer.lan": {"2001:db8:9::1", "192.0.2.9"},
				"far.example": {"203.0.113.1"},
			}}
			r := newRouter(t, res)
			req := tt.req
			if !req.Client.IsValid() {
				req.Client = client
			}
			if req.Listener == "" {
				req.Listener = "127.0.0.1:1080"
			}
			if req.Network == 0 {
				req.Network = config.NetworkTCP
			}
			d := r.Route(context.Background(), req)
			if d.RuleName != tt.wantRule {
				t.Errorf("rule %q (%d), want %q", d.RuleName, d.Rule, tt.wantRule)
			}
			if got := d.Action == config.ActionReject; got != tt.reject {
				t.Errorf("reject = %v, want %v", got, tt.reject)
			}
			if !tt.reject && d.Via.String() != tt.wantVia {
				t.Errorf("via %q, want %q", d.Via, tt.wantVia)
			}
			if got := addrString(d.Addr); got != tt.wantAddr {
				t.Errorf("addr to dial %q, want %q", got, tt.wantAddr)
			}
			if res.lookups > 1 {
				t.Errorf("resolved the name %d times, want at most once", res.lookups)
			}
		})
	}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// A name is only resolved when a dst rule is reached with its other fields
// matching: a request routed by a domain rule costs no lookup at all.
func TestRouteResolvesOnlyWhenNeeded(t *testing.T) {
	res := &fakeResolver{names: map[string][]string{}}
	r := newRouter(t, res)
	d := r.Route(context.Background(), Request{Host: "example.com", Port: 443, Network: config.NetworkTCP, Client: netip.MustParseAddrPort("127.0.0.1:1")})
	// The lan rule comes first and has only dst, so it is reached and
	// resolves once; the corp rule then needs no second lookup.
	if d.RuleName != "corp" || res.lookups != 1 {
		t.Errorf("rule %q after %d lookups, want corp after 1", d.RuleName, res.lookups)
	}
	r = New(&config.Config{Rules: nil, Default: config.Via{Mode: config.ViaPinned, NICs: []string{"ens33"}}}, res, nil)
	res.lookups = 0
	r.Route(context.Background(), Request{Host: "example.com", Port: 443})
	if res.lookups != 0 {
		t.Errorf("no dst rule, but resolved %d times", res.lookups)
	}
}

func TestExplain(t *testing.T) {
	r := newRouter(t, &fakeResolver{})
	d, why := r.Explain(context.Background(), Request{
		Host: "git.corp.example", Port: 8443, Network: config.NetworkTCP,
		Client: netip.MustParseAddrPort("127.0.0.1:1"), Listener: "127.0.0.1:1080",
	})
	if d.Rule != 2 {
		t.Fatalf("rule %d, want 2", d.Rule)
	}
	got := strings.Join(why.Matched, "; ")
	want := "port 8443 in 443, 8000-8999; domain git.corp.example in example.com, .corp.example"
	if got != want {
		t.Errorf("explanation %q, want %q", got, want)
	}
	if why.Lookup == nil || why.Lookup.Err == nil || why.Lookup.Via != "ens160" {
		t.Errorf("the lan rule's lookup through ens160 (the default's NIC) failed, but the explanation says %+v", why.Lookup)
	}
}

// Every dst rule's lookup goes through resolver.via, once per request,
// whichever NIC the rules name: the query leaves through one predictable
// NIC, and the decision carries the answer for the dialer to reuse.
func TestRouteResolvesOnceThroughResolverVia(t *testing.T) {
	cfg, err := config.Parse("r.yaml", []byte(`
resolver: {via: ens160}
rules:
  - {name: a, dst: [192.0.2.0/24], via: ens33}
  - {name: b, dst: [198.51.100.0/24], via: ens33}
  - {name: c, dst: [203.0.113.0/24], via: ens33}
default: ens33
`), config.Options{Interfaces: []string{"ens33", "ens160"}})
	if err != nil {
		t.Fatal(err)
	}
	res := &fakeResolver{names: map[string][]string{"x.example": {"203.0.113.1"}, "y.example": {"8.8.8.8"}}}
	r := New(cfg, res, nil)
	d := r.Route(context.Background(), Request{Host: "x.example", Port: 80, Network: config.NetworkTCP})
	if d.RuleName != "c" || addrString(d.Addr) != "203.0.113.1" {
		t.Fatalf("rule %q addr %v, want c and 203.0.113.1", d.RuleName, d.Addr)
	}
	if res.lookups != 1 || d.Lookup == nil || d.Lookup.Via != "ens160" {
		t.Errorf("%d lookups, lookup %+v; want one, through ens160", res.lookups, d.Lookup)
	}
	d = r.Route(context.Background(), Request{Host: "y.example", Port: 80, Network: config.NetworkTCP})
	if d.RuleName != "default" || d.Addr.IsValid() || d.Lookup == nil || len(d.Lookup.Addrs) != 1 {
		t.Errorf("unmatched name: rule %q addr %v lookup %+v; want default, no addr, the lookup kept", d.RuleName, d.Addr, d.Lookup)
	}
}

// TestRouteAllocatesNothing: routing an IP literal through every rule to
// the default allocates nothing; matching runs for every rule of every
// connection, and explanations are built only for `nicproxy route`.
func TestRouteAllocatesNothing(t *testing.T) {
	r := newRouter(t, &fakeResolver{})
	req := Request{Host: "203.0.113.7", Port: 9, Network: config.NetworkTCP,
		Client: netip.MustParseAddrPort("127.0.0.1:1"), Listener: "127.0.0.1:1080", User: "bob", Peer: &Peer{}}
	if d := r.Route(context.Background(), req); d.RuleName != "default" {
		t.Fatalf("routed to %s, want the default", d.RuleName)
	}
	if n := testing.AllocsPerRun(100, func() { r.Route(context.Background(), req) }); n != 0 {
		t.Errorf("Route allocated %v times per call, want 0", n)
	}
}
