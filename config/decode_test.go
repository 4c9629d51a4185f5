package config

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func mustParse(t *testing.T, src string, opts Options) *Config {
	t.Helper()
	cfg, err := Parse("config.yaml", []byte(src), opts)
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return cfg
}

func warnings(cfg *Config) []string {
	var out []string
	for _, w := range cfg.Warnings {
		out = append(out, w.Error())
	}
	return out
}

// specExample is the configuration shown in the spec, verbatim.
const specExample = `listen:
  - addr: 127.0.0.1:1080
    protocol: mixed
  - name: browser-b
    addr: "[::1]:8080"
    protocol: http
admin:
  addr: 127.0.0.1:9090
interfaces:
  ens160:
    source: 192.168.3.48
    mark: 0x100
    dns: ["192.168.3.1:53"]
    check:
      target: 192.168.3.1:53
      interval: 10s
users:
  - name: alice
    password: "s3cret"
  - name: bob
    password_hash: "` + goodHash + `"
allow: [127.0.0.0/8, "::1/128"]
rules:
  - name: lan
    dst: [192.168.3.0/24]
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
  - name: no-smtp
    port: [25]
    action: reject
default: ens160
timeouts: { handshake: 10s, dial: 10s, idle: 5m, body: 60s, shutdown: 10s }
limits:   { max_connections: 20000, max_handshakes: 1024, max_header_bytes: 64KiB, max_headers: 101 }
log:      { level: info, format: console, access: true }
`

func TestParseSpecExample(t *testing.T) {
	cfg := mustParse(t, specExample, hostOpts())
	wantListeners := []Listener{
		{Name: "127.0.0.1:1080", Addr: netip.MustParseAddrPort("127.0.0.1:1080"), Protocol: ProtocolMixed},
		{Name: "browser-b", Addr: netip.MustParseAddrPort("[::1]:8080"), Protocol: ProtocolHTTP},
	}
	if !reflect.DeepEqual(cfg.Listeners, wantListeners) {
		t.Errorf("Listeners = %+v, want %+v", cfg.Listeners, wantListeners)
	}
	if cfg.Admin == nil || cfg.Admin.Addr != netip.MustParseAddrPort("127.0.0.1:9090") {
		t.Errorf("Admin = %+v", cfg.Admin)
	}
	wantIf := Interface{
		Name:    "ens160",
		Source:  netip.MustParseAddr("192.168.3.48"),
		Mark:    0x100,
		HasMark: true,
		DNS:     []netip.AddrPort{netip.MustParseAddrPort("192.168.3.1:53")},
		Check:   &Check{Target: "192.168.3.1:53", Interval: 10 * time.Second},
	}
	if !reflect.DeepEqual(cfg.Interfaces, map[string]Interface{"ens160": wantIf}) {
		t.Errorf("Interfaces = %+v", cfg.Interfaces)
	}
	if len(cfg.Users) != 2 || !reflect.DeepEqual(cfg.Users[0], User{Name: "alice", Password: "s3cret"}) ||
		cfg.Users[1].Name != "bob" || cfg.Users[1].Password != "" {
		t.Errorf("Users = %+v", cfg.Users)
	}
	if err := bcrypt.CompareHashAndPassword(cfg.Users[1].PasswordHash, []byte("s3cret")); err != nil {
		t.Errorf("bob's hash does not verify: %v", err)
	}
	if cfg.AllowAll() || cfg.Allow.String() != "127.0.0.0/8, ::1" {
		t.Errorf("Allow = %v", cfg.Allow)
	}
	type ruleSummary struct {
		Index                          int
		Name, Dst, Domains, Ports, Via string
		Users, Listeners               []string
		Action                         Action
	}
	var got []ruleSummary
	for _, r := range cfg.Rules {
		got = append(got, ruleSummary{r.Index, r.Name, r.Dst.String(), r.Domains.String(), r.Ports.String(), r.Via.String(), r.Users, r.Listeners, r.Action})
	}
	want := []ruleSummary{
		{0, "lan", "192.168.3.0/24", "", "", "ens33", nil, nil, ActionVia},
		{1, "alice-wan", "", "", "", "ens160", []string{"alice"}, nil, ActionVia},
		{2, "corp", "", "example.com, .corp.example", "443, 8000-8999", "ens160 -> ens33", nil, nil, ActionVia},
		{3, "downloads", "", "", "", "balance(ens33, ens160; sticky)", nil, []string{"browser-b"}, ActionVia},
		{4, "no-smtp", "", "", "25", "", nil, nil, ActionReject},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Rules =\n%+v\nwant\n%+v", got, want)
	}
	if !cfg.Rules[4].Via.IsZero() {
		t.Errorf("reject rule has a Via: %+v", cfg.Rules[4].Via)
	}
	if cfg.Default.String() != "ens160" || cfg.DefaultFromRoute {
		t.Errorf("Default = %v (from route %v)", cfg.Default, cfg.DefaultFromRoute)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("Warnings = %v", warnings(cfg))
	}
	if got := cfg.NICs(); !slices.Equal(got, []string{"ens160", "ens33"}) {
		t.Errorf("NICs() = %v", got)
	}
	if cfg.Limits != (Limits{MaxConnections: 20000, MaxHandshakes: 1024, MaxHeaderBytes: 64 << 10, MaxHeaders: 101}) {
		t.Errorf("Limits = %+v", cfg.Limits)
	}
	// Users are configured: the host's own services are off limits.
	if cfg.LocalDestinations != LocalDeny || !cfg.LocalDestinationsDefaulted {
		t.Errorf("LocalDestinations = %q (defaulted %v), want deny by default", cfg.LocalDestinations, cfg.LocalDestinationsDefaulted)
	}
}

// TestParseLimits: sizes with and without units, and the defaults.
func TestParseLimits(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want Limits
	}{
		{"limits: {max_handshakes: 10}\n", Limits{MaxConnections: 20000, MaxHandshakes: 10, MaxHeaderBytes: 64 << 10, MaxHeaders: 101}},
		{"limits: {max_header_bytes: 8192}\n", Limits{MaxConnections: 20000, MaxHandshakes: 1024, MaxHeaderBytes: 8192, MaxHeaders: 101}},
		{"limits: {max_header_bytes: 16KiB}\n", Limits{MaxConnections: 20000, MaxHandshakes: 1024, MaxHeaderBytes: 16 << 10, MaxHeaders: 101}},
		{"limits: {max_header_bytes: 1MiB, max_connections: 5}\n", Limits{MaxConnections: 5, MaxHandshakes: 1024, MaxHeaderBytes: 1 << 20, MaxHeaders: 101}},
		{"limits: {max_headers: 50}\n", Limits{MaxConnections: 20000, MaxHandshakes: 1024, MaxHeaderBytes: 64 << 10, MaxHeaders: 50}},
	} {
		if got := mustParse(t, "default: ens160\n"+tt.yaml, hostOpts()).Limits; got != tt.want {
			t.Errorf("%q: Limits = %+v, want %+v", tt.yaml, got, tt.want)
		}
	}
}

// TestParseLocalDestinations: the file's word wins; without one, allow
// only for loopback listeners and no users.
func TestParseLocalDestinations(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       LocalPolicy
		defaulted  bool
	}{
		{"loopback, no users", "default: ens160\n", LocalAllow, true},
		{"IPv6 loopback, no users", "listen: [{addr: \"[::1]:1080\"}]\ndefault: ens160\n", LocalAllow, true},
		{"loopback with users", "users: [{name: a, password: b}]\ndefault: ens160\n", LocalDeny, true},
		{"LAN listener with allow", "listen: [{addr: 192.168.3.48:1080}]\nallow: [192.168.3.0/24]\ndefault: ens160\n", LocalDeny, true},
		{"one of two listeners on the LAN", "listen: [{addr: 127.0.0.1:1080}, {addr: \"0.0.0.0:1081\"}]\nallow: [192.168.3.0/24]\ndefault: ens160\n", LocalDeny, true},
		{"explicit deny", "local_destinations: deny\ndefault: ens160\n", LocalDeny, false},
		{"explicit allow with users", "local_destinations: allow\nusers: [{name: a, password: b}]\ndefault: ens160\n", LocalAllow, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.yaml, hostOpts())
			if cfg.LocalDestinations != tt.want || cfg.LocalDestinationsDefaulted != tt.defaulted {
				t.Errorf("LocalDestinations = %q (defaulted %v), want %q (%v)", cfg.LocalDestinations, cfg.LocalDestinationsDefaulted, tt.want, tt.defaulted)
			}
		})
	}
	// -l decides too: the file's loopback listener is replaced.
	opts := hostOpts()
	opts.ListenOverride = "0.0.0.0:1080"
	if cfg := mustParse(t, "allow: [10.0.0.0/8]\ndefault: ens160\n", opts); cfg.LocalDestinations != LocalDeny {
		t.Errorf("-l 0.0.0.0:1080: LocalDestinations = %q, want deny", cfg.LocalDestinations)
	}
}

func TestParseDefaults(t *testing.T) {
	cfg := mustParse(t, "default: ens160\n", hostOpts())
	want := &Config{
		Source:     "config.yaml",
		Listeners:  []Listener{{Name: "127.0.0.1:1080", Addr: netip.MustParseAddrPort("127.0.0.1:1080"), Protocol: ProtocolMixed}},
		Interfaces: map[string]Interface{},
		Default:    Via{Mode: ViaPinned, NICs: []string{"ens160"}},
		Timeouts: Timeouts{Handshake: 10 * time.Second, Dial: 10 * time.Second, Attempt: 250 * time.Millisecond,
			ResolutionDelay: 50 * time.Millisecond, Idle: 5 * time.Minute, Body: 60 * time.Second, Shutdown: 10 * time.Second},
		Resolver: Resolver{Via: "ens160", CacheSize: 10000, MaxTTL: 10 * time.Minute, NegativeTTLWithoutSOA: 5 * time.Second},
		Limits:   Limits{MaxConnections: 20000, MaxHandshakes: 1024, MaxHeaderBytes: 64 << 10, MaxHeaders: 101},
		Log:      Log{Level: "info", Format: "console", Access: true},
		// A loopback listener and no users: a one-person local proxy.
		LocalDestinations: LocalAllow, LocalDestinationsDefaulted: true,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}
	if !cfg.AllowAll() {
		t.Error("AllowAll() = false with no allow key")
	}
}

// TestParseResolver: resolver.via defaults to the default's first NIC
// (system for default: system), the file can name another, and -i, which
// drops the rules that would need it, takes the flag's NIC.
func TestParseResolver(t *testing.T) {
	const neg = 5 * time.Second
	for _, tc := range []struct {
		name, yaml string
		opts       Options
		want       Resolver
		attempt    time.Duration
		resDelay   time.Duration
	}{
		{"default's first NIC", "default: [ens33, ens160]\n", hostOpts(),
			Resolver{Via: "ens33", CacheSize: 10000, MaxTTL: 10 * time.Minute, NegativeTTLWithoutSOA: neg}, 250 * time.Millisecond, 50 * time.Millisecond},
		{"system", "default: system\n", hostOpts(),
			Resolver{Via: "system", CacheSize: 10000, MaxTTL: 10 * time.Minute, NegativeTTLWithoutSOA: neg}, 250 * time.Millisecond, 50 * time.Millisecond},
		{"named", "default: ens33\nresolver: {via: ens160, cache_size: 0, min_ttl: 5s, max_ttl: 1h, negative_ttl_without_soa: 2s}\ntimeouts: {attempt: 100ms, resolution_delay: 20ms}\n", hostOpts(),
			Resolver{Via: "ens160", CacheSize: 0, MinTTL: 5 * time.Second, MaxTTL: time.Hour, NegativeTTLWithoutSOA: 2 * time.Second}, 100 * time.Millisecond, 20 * time.Millisecond},
		{"negative_ttl_without_soa off", "default: ens33\nresolver: {negative_ttl_without_soa: 0s}\n", hostOpts(),
			Resolver{Via: "ens33", CacheSize: 10000, MaxTTL: 10 * time.Minute}, 250 * time.Millisecond, 50 * time.Millisecond},
		{"-i", "default: ens33\nresolver: {via: ens33}\n", Options{Interfaces: []string{"ens33", "ens160"}, InterfaceOverride: "ens160"},
			Resolver{Via: "ens160", CacheSize: 10000, MaxTTL: 10 * time.Minute, NegativeTTLWithoutSOA: neg}, 250 * time.Millisecond, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, tc.yaml, tc.opts)
			if cfg.Resolver != tc.want || cfg.Timeouts.Attempt != tc.attempt || cfg.Timeouts.ResolutionDelay != tc.resDelay {
				t.Errorf("Resolver = %+v, attempt %v, resolution_delay %v; want %+v, %v, %v",
					cfg.Resolver, cfg.Timeouts.Attempt, cfg.Timeouts.ResolutionDelay, tc.want, tc.attempt, tc.resDelay)
			}
		})
	}
}

// TestParseBodyTimeout: timeouts.body is read like the other timeouts and
// defaults to nginx's client_body_timeout, 60s.
func TestParseBodyTimeout(t *testing.T) {
	if got := mustParse(t, "default: ens160\n", hostOpts()).Timeouts.Body; got != 60*time.Second {
		t.Errorf("default timeouts.body = %v, want 60s", got)
	}
	if got := mustParse(t, "default: ens160\ntimeouts: {body: 300ms}\n", hostOpts()).Timeouts.Body; got != 300*time.Millisecond {
		t.Errorf("timeouts.body = %v, want 300ms", got)
	}
}

// TestParseNegativeTTLWithoutSOABounds: a negative or over-long
// negative_ttl_without_soa, or a resolution_delay of 0, is an error naming
// the key.
func TestParseNegativeTTLWithoutSOABounds(t *testing.T) {
	for _, tc := range []struct{ yaml, key string }{
		{"default: ens33\nresolver: {negative_ttl_without_soa: -1s}\n", "resolver.negative_ttl_without_soa"},
		{"default: ens33\nresolver: {negative_ttl_without_soa: 1m}\n", "resolver.negative_ttl_without_soa"},
		{"default: ens33\ntimeouts: {resolution_delay: 0s}\n", "timeouts.resolution_delay"},
	} {
		_, err := Parse("test.yaml", []byte(tc.yaml), hostOpts())
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: error %v, want one naming %s", tc.yaml, err, tc.key)
		}
	}
}

// TestParseTrailingEmptyDocument: a trailing "---" hides nothing.
func TestParseTrailingEmptyDocument(t *testing.T) {
	if cfg := mustParse(t, "default: ens160\n---\n", hostOpts()); cfg.Default.String() != "ens160" {
		t.Errorf("Default = %v", cfg.Default)
	}
}

// TestParseNullSections: a section whose entries are all commented out is
// absent, not an error.
func TestParseNullSections(t *testing.T) {
	cfg := mustParse(t, "listen:\nadmin:\ninterfaces:\nusers:\nallow:\nrules:\n#  - via: ens160\ntimeouts:\nlimits:\nlog:\n", hostOpts())
	if len(cfg.Listeners) != 1 || cfg.Admin != nil || len(cfg.Users) != 0 || !cfg.AllowAll() || len(cfg.Rules) != 0 {
		t.Errorf("got %+v", cfg)
	}
	if cfg.Default.String() != "ens33" || !cfg.DefaultFromRoute {
		t.Errorf("Default = %v (from route %v), want ens33 from the route", cfg.Default, cfg.DefaultFromRoute)
	}
}

func TestParseVia(t *testing.T) {
	tests := []struct {
		yaml string
		want Via
		str  string
	}{
		{"ens160", Via{Mode: ViaPinned, NICs: []string{"ens160"}}, "ens160"},
		{"[ens160]", Via{Mode: ViaPinned, NICs: []string{"ens160"}}, "ens160"},
		{"[ens160, ens33]", Via{Mode: ViaPinned, NICs: []string{"ens160", "ens33"}}, "ens160 -> ens33"},
		{"\n  - ens33\n  - ens160", Via{Mode: ViaPinned, NICs: []string{"ens33", "ens160"}}, "ens33 -> ens160"},
		{"system", Via{Mode: ViaSystem}, "system"},
		{"{balance: [ens33, ens160]}", Via{Mode: ViaBalance, NICs: []string{"ens33", "ens160"}, Strategy: StrategyRoundRobin}, "balance(ens33, ens160; round-robin)"},
		{"{balance: [ens160, ens33], strategy: least-connections}", Via{Mode: ViaBalance, NICs: []string{"ens160", "ens33"}, Strategy: StrategyLeastConnections}, "balance(ens160, ens33; least-connections)"},
		{"\n  strategy: sticky\n  balance:\n    - ens33\n    - ens160", Via{Mode: ViaBalance, NICs: []string{"ens33", "ens160"}, Strategy: StrategySticky}, "balance(ens33, ens160; sticky)"},
	}
	for _, tt := range tests {
		t.Run(tt.str, func(t *testing.T) {
			cfg := mustParse(t, "default: "+tt.yaml+"\n", hostOpts())
			if !reflect.DeepEqual(cfg.Default, tt.want) {
				t.Errorf("default: got %+v, want %+v", cfg.Default, tt.want)
			}
			if got := cfg.Default.String(); got != tt.str {
				t.Errorf("String() = %q, want %q", got, tt.str)
			}
			cfg = mustParse(t, "rules:\n  - port: [80]\n    via: "+strings.ReplaceAll(tt.yaml, "\n", "\n    ")+"\n", hostOpts())
			if !reflect.DeepEqual(cfg.Rules[0].Via, tt.want) {
				t.Errorf("rule via: got %+v, want %+v", cfg.Rules[0].Via, tt.want)
			}
		})
	}
}

func TestParseInterfaces(t *testing.T) {
	cfg := mustParse(t, `interfaces:
  ens33:
    mark: 256
    dns: [192.168.3.1, "2001:db8::53", "[2001:db8::1]:5353", "::ffff:10.0.0.1"]
    check: {target: "gw.example:53"}
  ens160:
    mark: 0X100
    source: "::ffff:192.168.3.48"
  ens200:
default: ens200
`, hostOpts())
	e33, e160 := cfg.Interfaces["ens33"], cfg.Interfaces["ens160"]
	if e33.Mark != 256 || !e33.HasMark || e160.Mark != 256 || !e160.HasMark {
		t.Errorf("marks: %+v %+v", e33, e160)
	}
	wantDNS := []netip.AddrPort{
		netip.MustParseAddrPort("192.168.3.1:53"),
		netip.MustParseAddrPort("[2001:db8::53]:53"),
		netip.MustParseAddrPort("[2001:db8::1]:5353"),
		netip.MustParseAddrPort("10.0.0.1:53"),
	}
	if !slices.Equal(e33.DNS, wantDNS) {
		t.Errorf("DNS = %v, want %v", e33.DNS, wantDNS)
	}
	if *e33.Check != (Check{Target: "gw.example:53", Interval: 10 * time.Second}) {
		t.Errorf("Check = %+v", e33.Check)
	}
	if e160.Source != netip.MustParseAddr("192.168.3.48") || e160.DNS != nil || e160.Check != nil {
		t.Errorf("ens160 = %+v", e160)
	}
	if e200, ok := cfg.Interfaces["ens200"]; !ok || !reflect.DeepEqual(e200, Interface{Name: "ens200"}) {
		t.Errorf("ens200 = %+v, %v", e200, ok)
	}
	want := []string{`config.yaml:9:3: interfaces.ens200: not present on this host now; it will be used when it appears`}
	if got := warnings(cfg); !slices.Equal(got, want) {
		t.Errorf("Warnings = %q, want %q", got, want)
	}
	if got := cfg.NICs(); !slices.Equal(got, []string{"ens200", "ens160", "ens33"}) {
		t.Errorf("NICs() = %v", got)
	}
}

func TestParseListenAddrs(t *testing.T) {
	cfg := mustParse(t, `allow: [192.168.3.0/24]
listen:
  - addr: "[::1]:8080"
  - addr: ":1080"
  - addr: localhost:1081
  - addr: LocalHost.:1082
  - addr: "[::ffff:127.0.0.1]:1083"
  - {addr: 192.168.3.48:3128, protocol: http, name: lan-http}
  - {addr: "[fe80::1%ens160]:1084", protocol: socks5}
default: ens33
`, hostOpts())
	want := []Listener{
		{"[::1]:8080", netip.MustParseAddrPort("[::1]:8080"), ProtocolMixed},
		{":1080", netip.AddrPortFrom(netip.IPv6Unspecified(), 1080), ProtocolMixed},
		{"localhost:1081", netip.MustParseAddrPort("127.0.0.1:1081"), ProtocolMixed},
		{"LocalHost.:1082", netip.MustParseAddrPort("127.0.0.1:1082"), ProtocolMixed},
		{"[::ffff:127.0.0.1]:1083", netip.MustParseAddrPort("127.0.0.1:1083"), ProtocolMixed},
		{"lan-http", netip.MustParseAddrPort("192.168.3.48:3128"), ProtocolHTTP},
		{"[fe80::1%ens160]:1084", netip.MustParseAddrPort("[fe80::1%ens160]:1084"), ProtocolSOCKS5},
	}
	if !reflect.DeepEqual(cfg.Listeners, want) {
		t.Errorf("got  %+v\nwant %+v", cfg.Listeners, want)
	}
}

// TestParseUsers: the three bcrypt prefixes in use are all accepted; users
// make non-loopback listeners safe; a user rule names a configured user.
func TestParseUsers(t *testing.T) {
	rest := goodHash[4:]
	cfg := mustParse(t, `listen: [{addr: "0.0.0.0:1080"}]
users:
  - {name: a, password_hash: "$2a$`+rest+`"}
  - {name: b, password_hash: "$2b$`+rest+`"}
  - {name: c, password_hash: "$2y$`+rest+`"}
rules:
  - {user: c, via: ens160}
default: ens33
`, hostOpts())
	for _, u := range cfg.Users {
		if err := bcrypt.CompareHashAndPassword(u.PasswordHash, []byte("s3cret")); err != nil {
			t.Errorf("user %s: %v", u.Name, err)
		}
	}
	if !slices.Equal(cfg.Rules[0].Users, []string{"c"}) {
		t.Errorf("rule users = %v", cfg.Rules[0].Users)
	}
}

// TestParseSOCKS4UserIDs: without users, a user rule matches a SOCKS4 user
// id, which can be any name.
func TestParseSOCKS4UserIDs(t *testing.T) {
	cfg := mustParse(t, "rules:\n  - {user: [nobody-configured], via: ens160}\n", hostOpts())
	if !slices.Equal(cfg.Rules[0].Users, []string{"nobody-configured"}) {
		t.Errorf("rule users = %v", cfg.Rules[0].Users)
	}
}

func TestParseRuleFields(t *testing.T) {
	cfg := mustParse(t, `rules:
  - dst: 10.0.0.0/8
    src: "::1"
    port: 443
    domain: Example.COM.
    network: udp
    listener: 127.0.0.1:1080
    via: system
  - {network: tcp, via: ens33}
  - {via: ens160}
`, hostOpts())
	r := cfg.Rules[0]
	if r.Name != "rules[0]" || r.Index != 0 || r.Dst.String() != "10.0.0.0/8" || r.Src.String() != "::1" ||
		r.Ports.String() != "443" || r.Domains.String() != "example.com" || r.Network != NetworkUDP ||
		!slices.Equal(r.Listeners, []string{"127.0.0.1:1080"}) || r.Via.Mode != ViaSystem {
		t.Errorf("rule 0 = %+v", r)
	}
	if cfg.Rules[1].Network != NetworkTCP || cfg.Rules[1].Name != "rules[1]" || cfg.Rules[1].Dst.Len() != 0 {
		t.Errorf("rule 1 = %+v", cfg.Rules[1])
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("a catch-all last rule is fine; got %v", warnings(cfg))
	}
}

// TestParseClientRules: unit, cgroup, uid and program decode as written,
// a single value stands for a one-item list like the other rule keys, and
// a rule with only client keys is no catch-all.
func TestParseClientRules(t *testing.T) {
	cfg := mustParse(t, `rules:
  - {name: updates, unit: [apt-daily.service, session-2.scope], via: ens33}
  - {name: backup, cgroup: /system.slice/restic.service, via: ens33}
  - {name: browser, program: [firefox, chromium], via: ens160}
  - {name: builds, uid: [1001, 0], via: ens160}
  - {name: last, via: ens33}
`, hostOpts())
	r := cfg.Rules
	if !slices.Equal(r[0].Units, []string{"apt-daily.service", "session-2.scope"}) || !r[0].NeedsClient() {
		t.Errorf("rule 0 = %+v", r[0])
	}
	if !slices.Equal(r[1].Cgroups, []string{"/system.slice/restic.service"}) || !slices.Equal(r[1].ClientKeys(), []string{"cgroup"}) {
		t.Errorf("rule 1 = %+v", r[1])
	}
	if !slices.Equal(r[2].Programs, []string{"firefox", "chromium"}) {
		t.Errorf("rule 2 = %+v", r[2])
	}
	if !slices.Equal(r[3].UIDs, []uint32{1001, 0}) || !r[3].MatchUID(0) || r[3].MatchUID(1000) {
		t.Errorf("rule 3 = %+v", r[3])
	}
	if r[4].NeedsClient() {
		t.Errorf("rule 4 needs no client lookup: %+v", r[4])
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("client rules are not catch-alls; got %v", warnings(cfg))
	}
	for path, want := range map[string]bool{
		"/system.slice/restic.service":         true,
		"/system.slice/restic.service/payload": true,
		"/system.slice/restic.service2":        false,
		"/system.slice":                        false,
	} {
		if got := r[1].MatchCgroup(path); got != want {
			t.Errorf("cgroup rule on %s: %v, want %v", path, got, want)
		}
	}
}

func TestParseWarnings(t *testing.T) {
	cfg := mustParse(t, `interfaces:
  ens200: {}
admin: {addr: "0.0.0.0:9090"}
rules:
  - dst: [10.1.2.3/8]
    via: ens200
  - via: ens160
  - port: [25]
    action: reject
`, hostOpts())
	want := []string{
		`config.yaml:2:3: interfaces.ens200: not present on this host now; it will be used when it appears`,
		`config.yaml:3:15: admin.addr: 0.0.0.0:9090 is not a loopback address; the status page, metrics and recent connections are visible to the network`,
		`config.yaml:5:11: rules[0].dst: 10.1.2.3/8 has host bits set; it means 10.0.0.0/8`,
		`config.yaml:7:5: rules[1]: matches every connection; the rules after it are never reached`,
	}
	if got := warnings(cfg); !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestParseInterfaceDNSAuto: `dns: auto` asks for the NIC's own servers
// (no explicit list) and keeps the NIC's other options; an absent dns
// means the same, without the flag.
func TestParseInterfaceDNSAuto(t *testing.T) {
	cfg := mustParse(t, "interfaces:\n  ens33: {dns: auto, check: {target: \"192.0.2.1:53\"}}\n  ens160: {mark: 1}\ndefault: ens33\n", hostOpts())
	e33, e160 := cfg.Interfaces["ens33"], cfg.Interfaces["ens160"]
	if !e33.DNSAuto || len(e33.DNS) != 0 || e33.Check == nil {
		t.Errorf("ens33 (dns: auto): %+v", e33)
	}
	if e160.DNSAuto || len(e160.DNS) != 0 {
		t.Errorf("ens160 (no dns): %+v", e160)
	}
}
