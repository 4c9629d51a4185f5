package config

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Load reads the file at path and parses it; error positions name the file
// as path was given, so they match what the user typed.
func Load(path string, opts Options) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, opts)
}

// Parse decodes and validates data. name is the file part of error
// positions. On failure the error is an Errors holding every problem found,
// in file order.
func Parse(name string, data []byte, opts Options) (*Config, error) {
	return parse(name, data, opts, false)
}

func parse(name string, data []byte, opts Options, embedded bool) (*Config, error) {
	d := &decoder{file: name}
	root, ok := d.document(data)
	if !ok {
		return nil, Errors(d.errs)
	}
	dr := d.top(root)
	d.validate(dr, opts, embedded)
	if len(d.errs) > 0 {
		sortErrors(d.errs)
		return nil, Errors(d.errs)
	}
	sortErrors(d.warns)
	dr.cfg.Warnings = d.warns
	return dr.cfg, nil
}

// draft is a Config being decoded, plus the nodes that checks needing the
// whole file (or the host, or the flags) report against once every section
// has been read: sections may come in any order.
type draft struct {
	cfg         *Config
	defaultNode *yaml.Node
	listenNodes []*yaml.Node // addr node of each file listener, nil for the built-in one
	listenText  []string     // each file listener's addr as written
	usersGiven  bool
	ruleNodes   []*yaml.Node // mapping node of each rule
	nicRefs     []ref        // NIC names in via and default
	userRefs    []ref
	listenRefs  []ref
	ifaceKeys   []*yaml.Node // key node of each declared interface
	adminNode   *yaml.Node
	adminText   string
}

// ref is a name used somewhere that must be defined somewhere else. rule is
// the rule's index, or -1 for `default`, so -i can drop what it replaces.
type ref struct {
	name string
	node *yaml.Node
	path string
	rule int
}

// topKeys, like the other key and value lists, is a function so that no
// package-level value can be changed by accident.
func topKeys() []string {
	return []string{"listen", "admin", "interfaces", "local_destinations", "users", "allow", "resolver", "rules", "default", "timeouts", "limits", "log"}
}

// Defaults for everything the file may leave out. They are values, not
// package variables, so nothing can change them at run time.
const (
	defaultListen         = "127.0.0.1:1080"
	defaultCheckInterval  = 10 * time.Second
	defaultMaxConnections = 20000
	defaultCacheSize      = 10000
	defaultMaxTTL         = 10 * time.Minute
	defaultNegTTLNoSOA    = 5 * time.Second
	maxNegTTLNoSOA        = 30 * time.Second // the cache's bound for any negative answer
	defaultMaxHandshakes  = 1024
	defaultMaxHeaderBytes = 64 << 10
	defaultMaxHeaders     = 101
)

func defaults(source string) *Config {
	return &Config{
		Source:     source,
		Interfaces: map[string]Interface{},
		Timeouts: Timeouts{Handshake: 10 * time.Second, Dial: 10 * time.Second, Attempt: 250 * time.Millisecond,
			ResolutionDelay: 50 * time.Millisecond, Idle: 5 * time.Minute, Body: 60 * time.Second, Shutdown: 10 * time.Second},
		Resolver: Resolver{CacheSize: defaultCacheSize, MaxTTL: defaultMaxTTL, NegativeTTLWithoutSOA: defaultNegTTLNoSOA},
		Limits: Limits{MaxConnections: defaultMaxConnections, MaxHandshakes: defaultMaxHandshakes,
			MaxHeaderBytes: defaultMaxHeaderBytes, MaxHeaders: defaultMaxHeaders},
		Log: Log{Level: "info", Format: "console", Access: true},
	}
}

// top decodes the top-level mapping section by section. An empty (null)
// section counts as absent, so commenting out every entry of a list is not
// an error.
func (d *decoder) top(root *yaml.Node) *draft {
	dr := &draft{cfg: defaults(d.file)}
	fs, _ := d.fields(root, "", topKeys()...)
	present := func(k string) (*yaml.Node, bool) {
		f, ok := fs[k]
		return f.val, ok && !isNull(f.val)
	}
	if n, ok := present("listen"); ok {
		d.listen(dr, n)
	} else {
		ap, _ := parseListenAddr(defaultListen)
		dr.cfg.Listeners = []Listener{{Name: defaultListen, Addr: ap, Protocol: ProtocolMixed}}
		dr.listenNodes, dr.listenText = []*yaml.Node{nil}, []string{defaultListen}
	}
	if n, ok := present("admin"); ok {
		d.admin(dr, n)
	}
	if n, ok := present("interfaces"); ok {
		d.interfaces(dr, n)
	}
	if n, ok := present("local_destinations"); ok {
		d.localDestinations(dr, n)
	}
	if n, ok := present("users"); ok {
		d.users(dr, n)
	}
	if n, ok := present("allow"); ok {
		dr.cfg.Allow = d.prefixes(n, "allow", "empty list; remove the key to allow everyone")
	}
	if n, ok := present("resolver"); ok {
		d.resolver(dr, n)
	}
	if n, ok := present("rules"); ok {
		d.rules(dr, n)
	}
	if f, ok := fs["default"]; ok {
		dr.defaultNode = f.val
		dr.cfg.Default, _ = d.via(dr, f.val, "default", -1)
	}
	if n, ok := present("timeouts"); ok {
		d.timeouts(dr, n)
	}
	if n, ok := present("limits"); ok {
		d.limits(dr, n)
	}
	if n, ok := present("log"); ok {
		d.log(dr, n)
	}
	return dr
}

func protocols() []string {
	return []string{string(ProtocolMixed), string(ProtocolSOCKS5), string(ProtocolHTTP)}
}

func (d *decoder) listen(dr *draft, n *yaml.Node) {
	items, ok := d.seq(n, "listen", false)
	if !ok {
		return
	}
	if len(items) == 0 {
		d.errorf(resolve(n), "listen", "empty list; remove the key for the default listener on %s", defaultListen)
		return
	}
	names := map[string]int{}
	for i, it := range items {
		p := index("listen", i)
		fs, ok := d.fields(it, p, "name", "addr", "protocol")
		if !ok {
			continue
		}
		l := Listener{Protocol: ProtocolMixed}
		af, hasAddr := fs["addr"]
		if !hasAddr {
			d.errorf(it, p, "needs addr")
			continue
		}
		text, ok := d.scalar(af.val, p+".addr")
		if !ok {
			continue
		}
		addrNode := resolve(af.val)
		ap, err := parseListenAddr(text)
		if err != nil {
			d.errorf(addrNode, p+".addr", "%v", err)
			continue
		}
		l.Addr, l.Name = ap, text
		nameNode := addrNode
		if f, ok := fs["name"]; ok {
			if l.Name, ok = d.scalar(f.val, p+".name"); !ok {
				continue
			}
			nameNode = resolve(f.val)
			if l.Name == "" {
				d.errorf(nameNode, p+".name", "cannot be empty; remove the field to name the listener after its addr")
			}
		}
		if f, ok := fs["protocol"]; ok {
			v, ok := d.scalar(f.val, p+".protocol")
			if ok && !slices.Contains(protocols(), v) {
				d.errorf(resolve(f.val), p+".protocol", "unknown protocol %q (want one of: %s)", v, strings.Join(protocols(), ", "))
			}
			l.Protocol = Protocol(v)
		}
		if j, dup := names[l.Name]; dup {
			d.errorf(nameNode, p+".name", "duplicate listener name %q (also listen[%d])", l.Name, j)
		}
		names[l.Name] = i
		for j, o := range dr.cfg.Listeners {
			if msg := addrClash(ap, o.Addr, dr.listenText[j]); msg != "" {
				d.errorf(addrNode, p+".addr", "%s %s", text, msg)
				break
			}
		}
		dr.cfg.Listeners = append(dr.cfg.Listeners, l)
		dr.listenNodes = append(dr.listenNodes, addrNode)
		dr.listenText = append(dr.listenText, text)
	}
}

// addrClash says why a and b cannot both be listened on, or "". Besides
// equal addresses, a wildcard takes its port on every address of its family
// ([::] on both, as Go listens dual-stack), so the second bind would fail.
func addrClash(a, b netip.AddrPort, bText string) string {
	if a.Port() != b.Port() {
		return ""
	}
	if a == b {
		return "is already used by " + bText
	}
	covers := func(w, o netip.Addr) bool { return w.IsUnspecified() && (w.Is6() || o.Is4()) }
	if covers(a.Addr(), b.Addr()) || covers(b.Addr(), a.Addr()) {
		return "overlaps " + bText + " (a wildcard address takes the port on every address)"
	}
	return ""
}

func (d *decoder) admin(dr *draft, n *yaml.Node) {
	fs, ok := d.fields(n, "admin", "addr")
	if !ok {
		return
	}
	f, ok := fs["addr"]
	if !ok {
		d.errorf(resolve(n), "admin", "needs addr")
		return
	}
	text, ok := d.scalar(f.val, "admin.addr")
	if !ok {
		return
	}
	ap, err := parseListenAddr(text)
	if err != nil {
		d.errorf(resolve(f.val), "admin.addr", "%v", err)
		return
	}
	if !ap.Addr().IsLoopback() {
		d.warnf(resolve(f.val), "admin.addr", "%s is not a loopback address; the status page, metrics and recent connections are visible to the network", text)
	}
	dr.cfg.Admin = &Admin{Addr: ap}
	dr.adminNode, dr.adminText = resolve(f.val), text
}

func (d *decoder) timeouts(dr *draft, n *yaml.Node) {
	fs, _ := d.fields(n, "timeouts", "handshake", "dial", "attempt", "resolution_delay", "idle", "body", "shutdown")
	t := &dr.cfg.Timeouts
	for _, x := range []struct {
		key string
		dst *time.Duration
	}{{"handshake", &t.Handshake}, {"dial", &t.Dial}, {"attempt", &t.Attempt}, {"resolution_delay", &t.ResolutionDelay},
		{"idle", &t.Idle}, {"body", &t.Body}, {"shutdown", &t.Shutdown}} {
		if f, ok := fs[x.key]; ok {
			if v, ok := d.duration(f.val, "timeouts."+x.key); ok {
				*x.dst = v
			}
		}
	}
}

// resolver decodes the `resolver` section. via is a NIC reference like
// any other, so an unknown name is caught with the same message.
func (d *decoder) resolver(dr *draft, n *yaml.Node) {
	fs, _ := d.fields(n, "resolver", "via", "cache_size", "min_ttl", "max_ttl", "negative_ttl_without_soa")
	r := &dr.cfg.Resolver
	if f, ok := fs["via"]; ok {
		if name, ok := d.scalar(f.val, "resolver.via"); ok {
			r.Via = name
			if name != ResolverViaSystem {
				dr.nicRefs = append(dr.nicRefs, ref{name: name, node: resolve(f.val), path: "resolver.via", rule: -1})
			}
		}
	}
	if f, ok := fs["cache_size"]; ok {
		if s, ok := d.scalar(f.val, "resolver.cache_size"); ok {
			v, err := strconv.Atoi(s)
			switch {
			case err != nil:
				d.errorf(resolve(f.val), "resolver.cache_size", "%q is not a whole number", s)
			case v < 0:
				d.errorf(resolve(f.val), "resolver.cache_size", "%d: must be 0 (no cache) or more", v)
			default:
				r.CacheSize = v
			}
		}
	}
	minNode := resolve(n)
	if f, ok := fs["min_ttl"]; ok {
		minNode = resolve(f.val)
		if s, ok := d.scalar(f.val, "resolver.min_ttl"); ok {
			if v, err := time.ParseDuration(s); err != nil || v < 0 {
				d.errorf(minNode, "resolver.min_ttl", "%q is not a duration of 0s or more (such as 0s, 30s or 1m)", s)
			} else {
				r.MinTTL = v
			}
		}
	}
	if f, ok := fs["max_ttl"]; ok {
		if v, ok := d.duration(f.val, "resolver.max_ttl"); ok {
			r.MaxTTL = v
		}
	}
	if r.MinTTL > r.MaxTTL {
		d.errorf(minNode, "resolver.min_ttl", "%s is more than max_ttl %s", r.MinTTL, r.MaxTTL)
	}
	if f, ok := fs["negative_ttl_without_soa"]; ok {
		if s, ok := d.scalar(f.val, "resolver.negative_ttl_without_soa"); ok {
			v, err := time.ParseDuration(s)
			switch {
			case err != nil || v < 0:
				d.errorf(resolve(f.val), "resolver.negative_ttl_without_soa", "%q is not a duration of 0s (off) or more (such as 5s)", s)
			case v > maxNegTTLNoSOA:
				d.errorf(resolve(f.val), "resolver.negative_ttl_without_soa", "%s is more than %s, the longest any negative answer is kept", v, maxNegTTLNoSOA)
			default:
				r.NegativeTTLWithoutSOA = v
			}
		}
	}
}

// duration reads a Go duration ("10s", "5m", "1m30s") that must be > 0. A
// bare number is refused: seconds or milliseconds would be a guess.
func (d *decoder) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := d.scalar(n, path)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	switch {
	case err != nil:
		d.errorf(resolve(n), path, "%q is not a duration (want a number with a unit, such as 10s, 500ms or 5m)", s)
	case v <= 0:
		d.errorf(resolve(n), path, "%s: must be greater than 0", s)
	default:
		return v, true
	}
	return 0, false
}

func (d *decoder) limits(dr *draft, n *yaml.Node) {
	fs, _ := d.fields(n, "limits", "max_connections", "max_handshakes", "max_header_bytes", "max_headers")
	l := &dr.cfg.Limits
	for _, x := range []struct {
		key string
		dst *int
	}{{"max_connections", &l.MaxConnections}, {"max_handshakes", &l.MaxHandshakes}, {"max_headers", &l.MaxHeaders}} {
		f, ok := fs[x.key]
		if !ok {
			continue
		}
		s, ok := d.scalar(f.val, "limits."+x.key)
		if !ok {
			continue
		}
		v, err := strconv.Atoi(s)
		switch {
		case err != nil:
			d.errorf(resolve(f.val), "limits."+x.key, "%q is not a whole number", s)
		case v < 1:
			d.errorf(resolve(f.val), "limits."+x.key, "%d: must be at least 1", v)
		default:
			*x.dst = v
		}
	}
	if f, ok := fs["max_header_bytes"]; ok {
		if s, ok := d.scalar(f.val, "limits.max_header_bytes"); ok {
			v, err := parseSize(s)
			switch {
			case err != nil:
				d.errorf(resolve(f.val), "limits.max_header_bytes", "%v", err)
			case v < minHeaderBytes || v > maxHeaderBytes:
				d.errorf(resolve(f.val), "limits.max_header_bytes", "%s: must be between 1KiB and 1MiB", s)
			default:
				l.MaxHeaderBytes = v
			}
		}
	}
}

// Bounds of limits.max_header_bytes: below 1 KiB ordinary requests with a
// cookie fail; above 1 MiB (Go's own default) one client's headers cost
// more than the handshake limit is meant to allow.
const (
	minHeaderBytes = 1 << 10
	maxHeaderBytes = 1 << 20
)

// parseSize reads a byte count: a whole number of bytes, or one with a
// KiB or MiB suffix ("64KiB"). KB and MB are refused rather than guessed
// at: squid reads them as 1024, most other software as 1000.
func parseSize(s string) (int, error) {
	text, unit := strings.TrimSpace(s), 1
	for _, u := range []struct {
		suffix string
		n      int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}} {
		if t, ok := strings.CutSuffix(text, u.suffix); ok {
			text, unit = strings.TrimSpace(t), u.n
			break
		}
	}
	v, err := strconv.Atoi(text)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size (want bytes, or a number with KiB or MiB, such as 64KiB)", s)
	}
	if v > maxHeaderBytes/unit+1 {
		return maxHeaderBytes + 1, nil // out of bounds, and no overflow
	}
	return v * unit, nil
}

// localDestinations reads `local_destinations: allow | deny`.
func (d *decoder) localDestinations(dr *draft, n *yaml.Node) {
	v, ok := d.scalar(n, "local_destinations")
	if !ok {
		return
	}
	switch LocalPolicy(v) {
	case LocalAllow, LocalDeny:
		dr.cfg.LocalDestinations = LocalPolicy(v)
	default:
		d.errorf(resolve(n), "local_destinations", "unknown value %q (want one of: allow, deny)", v)
	}
}

func (d *decoder) log(dr *draft, n *yaml.Node) {
	fs, _ := d.fields(n, "log", "level", "format", "access")
	l := &dr.cfg.Log
	oneOf := func(key string, valid []string, dst *string) {
		f, ok := fs[key]
		if !ok {
			return
		}
		if v, ok := d.scalar(f.val, "log."+key); ok {
			if !slices.Contains(valid, v) {
				d.errorf(resolve(f.val), "log."+key, "unknown %s %q (want one of: %s)", key, v, strings.Join(valid, ", "))
				return
			}
			*dst = v
		}
	}
	oneOf("level", []string{"debug", "info", "warn", "error"}, &l.Level)
	oneOf("format", []string{"console", "json"}, &l.Format)
	if f, ok := fs["access"]; ok {
		if v, ok := d.scalar(f.val, "log.access"); ok {
			switch strings.ToLower(v) {
			case "true":
				l.Access = true
			case "false":
				l.Access = false
			default:
				d.errorf(resolve(f.val), "log.access", "%q: want true or false", v)
			}
		}
	}
}

// prefixes reads a list of IPs and CIDRs. An explicitly empty list is an
// error (emptyMsg), because "absent" means "anything" and an empty list
// would read as "nothing".
func (d *decoder) prefixes(n *yaml.Node, path, emptyMsg string) PrefixSet {
	items, ok := d.seq(n, path, true)
	if !ok {
		return PrefixSet{}
	}
	if len(items) == 0 {
		d.errorf(resolve(n), path, "%s", emptyMsg)
		return PrefixSet{}
	}
	var ps []netip.Prefix
	for _, it := range items {
		s, ok := d.scalar(it, path)
		if !ok {
			continue
		}
		p, hostBits, err := parsePrefix(s)
		if err != nil {
			if strings.HasSuffix(path, ".dst") && checkHostname(s) == nil {
				err = fmt.Errorf("%v; names go under domain", err)
			}
			d.errorf(it, path, "%v", err)
			continue
		}
		if hostBits {
			d.warnf(it, path, "%s has host bits set; it means %s", s, p)
		}
		ps = append(ps, p)
	}
	return NewPrefixSet(ps...)
}
