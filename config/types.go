// Package config decodes, checks and compiles nicproxy's YAML configuration.
//
// It knows no sockets: facts about the host (which NICs exist, which one
// carries the default route) come in through Options, so that the same file
// can be checked in tests, by `nicproxy check` and at reload time with the
// same result for the same host.
package config

import (
	"net/netip"
	"strings"
	"time"
)

// Options carries facts about the host that validation needs; config itself
// never looks at the host, so callers (and tests) decide what "the host" is.
type Options struct {
	// Interfaces are the NICs that exist on the host now, in index order,
	// without loopback. They decide which NIC names are known and are listed
	// in "unknown interface" errors.
	Interfaces []string
	// DefaultRouteInterface is the NIC carrying the default route at
	// start-up, or "" if none. It fills Config.Default when the file has no
	// `default` key.
	DefaultRouteInterface string
	// ListenOverride is the -l flag: when set, the file's listeners are
	// replaced by one mixed listener on this address, named after it.
	ListenOverride string
	// InterfaceOverride is the -i flag: when set, every connection is pinned
	// to this NIC: the file's rules are dropped and Default becomes this NIC.
	InterfaceOverride string
	// Loopback names the host's loopback interfaces ("lo"). Pinning to one
	// is an error wherever a NIC is named (-i, via, default, interfaces):
	// nothing pinned to it can leave the host.
	Loopback []string
}

// Config is a decoded and checked configuration. Every value in it has been
// validated and compiled once, so the proxy never re-parses at request time.
type Config struct {
	// Source is the file name, or "(embedded default)".
	Source string
	// Listeners are the client-facing ports, in file order; never empty.
	Listeners []Listener
	// Admin is the status/metrics endpoint; nil when absent (off).
	Admin *Admin
	// Interfaces are the declared per-NIC options, keyed by NIC name.
	Interfaces map[string]Interface
	// Users, when not empty, make authentication mandatory.
	Users []User
	// LocalDestinations says whether clients may reach the proxy host
	// itself (loopback, the unspecified address, the host's own
	// addresses); never empty after loading.
	LocalDestinations LocalPolicy
	// LocalDestinationsDefaulted is true when the file did not say and
	// the default was derived from the listeners and users.
	LocalDestinationsDefaulted bool
	// Allow lists the client addresses allowed; empty means everyone
	// (see AllowAll).
	Allow PrefixSet
	// Rules are tried in order; the first whose given fields all match wins.
	Rules []Rule
	// Default carries traffic no rule matched; never zero after loading.
	Default Via
	// DefaultFromRoute is true when Default was taken from
	// Options.DefaultRouteInterface because the file named none, so the
	// summary and the first log line can say where it came from.
	DefaultFromRoute bool
	// Timeouts are filled with defaults where the file is silent.
	Timeouts Timeouts
	// Resolver configures name lookups; filled with defaults where the
	// file is silent.
	Resolver Resolver
	// Limits are filled with defaults where the file is silent.
	Limits Limits
	// Log is filled with defaults where the file is silent.
	Log Log
	// Warnings are problems worth telling the user about that do not stop
	// nicproxy from serving (for example a declared NIC that is absent now).
	Warnings []*Error
}

// AllowAll reports whether every client that reaches a listener is allowed,
// which is the meaning of an absent `allow` key.
func (c *Config) AllowAll() bool { return c.Allow.Len() == 0 }

// NICs returns every NIC name the configuration refers to (default, rules,
// declared interfaces), each once, in first-mention order, so that the
// status page, the metrics, the health checks and `doctor` know what to
// look at.
func (c *Config) NICs() []string {
	var out []string
	seen := map[string]bool{}
	add := func(names ...string) {
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	add(c.Default.NICs...)
	for _, r := range c.Rules {
		add(r.Via.NICs...)
	}
	for _, n := range sortedKeys(c.Interfaces) {
		add(n)
	}
	return out
}

// Listener is one client-facing address.
type Listener struct {
	// Name is what rules match with `listener:`; it defaults to the address
	// exactly as written in the file (or on the -l flag).
	Name string
	// Addr is where to listen. A host-less address such as ":1080" is stored
	// as [::]:1080, which Go's net.Listen treats as the dual-stack wildcard
	// (IPv4 and IPv6), the same as it treats ":1080". 4in6 addresses are
	// unmapped, and "localhost" becomes 127.0.0.1.
	Addr netip.AddrPort
	// Protocol is what the listener speaks.
	Protocol Protocol
}

// Protocol is what a listener speaks.
type Protocol string

// Listener protocols.
const (
	// ProtocolMixed sniffs the first bytes and serves SOCKS5, SOCKS4a or
	// HTTP on one port, so one address fits every client; the default.
	ProtocolMixed Protocol = "mixed"
	// ProtocolSOCKS5 serves SOCKS5 only.
	ProtocolSOCKS5 Protocol = "socks5"
	// ProtocolHTTP serves HTTP proxy requests (CONNECT and forward) only.
	ProtocolHTTP Protocol = "http"
)

// Admin is the status page, metrics, health and PAC endpoint.
type Admin struct {
	// Addr is where the admin endpoint listens.
	Addr netip.AddrPort
}

// Interface holds the declared options of one NIC.
type Interface struct {
	// Name is the NIC name (the key under `interfaces:`).
	Name string
	// Source, when valid, is bound as the local address of pinned sockets;
	// the zero Addr means "let the kernel pick".
	Source netip.Addr
	// Mark is set as SO_MARK for policy routing when HasMark is true.
	Mark uint32
	// HasMark tells a configured mark from none, since 0 is a valid uint32.
	HasMark bool
	// DNS are resolvers reached through this NIC; empty means the NIC's
	// own servers where the host keeps them per link (systemd-resolved),
	// else the system's nameservers, queried through this NIC. A bare IP
	// gets port 53.
	DNS []netip.AddrPort
	// DNSAuto is true when the file says `dns: auto`, which is what an
	// absent dns means too: the NIC's own servers, else the system's.
	DNSAuto bool
	// Check is the active health check; nil when absent.
	Check *Check
}

// Check is an active health check: a TCP connect bound to the NIC.
type Check struct {
	// Target is "host:port"; host may be a name or an IP literal.
	Target string
	// Interval is the time between checks; 10s when not set.
	Interval time.Duration
}

// User is one account allowed to use the proxy.
type User struct {
	// Name is the user name, as sent in SOCKS5 or HTTP Basic auth.
	Name string
	// Password is the plain-text password; empty when PasswordHash is set.
	Password string
	// PasswordHash is a bcrypt hash ($2a$, $2b$ or $2y$); nil when Password
	// is set.
	PasswordHash []byte
}

// Rule maps matching connections to a Via or a rejection. A set whose Len is
// 0 was absent from the file and matches anything; the decoder refuses
// explicitly empty lists so that "absent" and "empty" cannot be confused.
type Rule struct {
	// Index is the rule's position in the file's `rules` list, counted from
	// 0 like the rules[N] paths in error messages.
	Index int
	// Name defaults to "rules[N]", the same spelling as the error paths, so
	// an unnamed rule printed by `route` can be found in the file.
	Name string
	// Dst matches the destination address.
	Dst PrefixSet
	// Domains matches the requested host name.
	Domains DomainSet
	// Ports matches the destination port.
	Ports PortSet
	// Src matches the client address.
	Src PrefixSet
	// Users matches the authenticated user (or SOCKS4 user id).
	Users []string
	// Listeners matches the name of the listener the client came in on.
	Listeners []string
	// Units matches the systemd unit (service or scope) of the local
	// client's socket: the last *.service or *.scope in its cgroup path.
	Units []string
	// Cgroups matches the cgroup v2 path of the local client's socket, or
	// any cgroup below one of them.
	Cgroups []string
	// UIDs matches the user id owning the local client's socket.
	UIDs []uint32
	// Programs matches the file name of the executable of the process
	// holding the local client's socket.
	Programs []string
	// Network restricts the rule to TCP or UDP; NetworkAny matches both.
	Network Network
	// Action is what a match does.
	Action Action
	// Via is where matching traffic goes; zero when Action is ActionReject.
	Via Via
}

// Network is the transport a rule applies to.
type Network uint8

// Networks.
const (
	// NetworkAny matches TCP and UDP; the zero value, used when the rule
	// has no `network` field.
	NetworkAny Network = iota
	// NetworkTCP matches TCP connections only.
	NetworkTCP
	// NetworkUDP matches UDP (SOCKS5 UDP ASSOCIATE) only.
	NetworkUDP
)

// String returns the spelling used in the file ("any" for NetworkAny).
func (n Network) String() string {
	switch n {
	case NetworkTCP:
		return "tcp"
	case NetworkUDP:
		return "udp"
	}
	return "any"
}

// Action is what a matching rule does.
type Action uint8

// Actions.
const (
	// ActionVia dials through the rule's Via; the zero value, because a
	// rule with `via` has no `action` key.
	ActionVia Action = iota
	// ActionReject refuses the connection.
	ActionReject
)

// String returns "via" or "reject".
func (a Action) String() string {
	if a == ActionReject {
		return "reject"
	}
	return "via"
}

// ViaMode says how a Via chooses among its NICs.
type ViaMode uint8

// Via modes.
const (
	// ViaPinned tries NICs in order (failover); one NIC is the common case.
	ViaPinned ViaMode = iota
	// ViaSystem dials unpinned: the routing table decides. It is the only
	// way to dial unpinned, so it must be asked for by name.
	ViaSystem
	// ViaBalance spreads new connections over NICs using Strategy.
	ViaBalance
)

// Strategy is how ViaBalance picks a NIC for a new connection.
type Strategy string

// Balancing strategies.
const (
	// StrategyRoundRobin takes NICs in turn; the default.
	StrategyRoundRobin Strategy = "round-robin"
	// StrategyLeastConnections takes the NIC with the fewest open
	// connections.
	StrategyLeastConnections Strategy = "least-connections"
	// StrategySticky hashes (client address, destination host) so a site
	// keeps seeing one source address.
	StrategySticky Strategy = "sticky"
)

// Via is where traffic goes.
type Via struct {
	// Mode says how NICs are chosen.
	Mode ViaMode
	// NICs are the candidate NICs, in failover order for ViaPinned; empty
	// for ViaSystem.
	NICs []string
	// Strategy is set only for ViaBalance.
	Strategy Strategy
}

// String renders v the way `check` and `route` print it: "ens160",
// "ens160 -> ens33", "balance(ens33, ens160; sticky)" or "system".
func (v Via) String() string {
	switch v.Mode {
	case ViaSystem:
		return "system"
	case ViaBalance:
		return "balance(" + strings.Join(v.NICs, ", ") + "; " + string(v.Strategy) + ")"
	}
	return strings.Join(v.NICs, " -> ")
}

// IsZero reports whether v was never set; Config.Default never is after
// loading, and a rejecting Rule's Via always is.
func (v Via) IsZero() bool {
	return v.Mode == ViaPinned && len(v.NICs) == 0 && v.Strategy == ""
}

// Timeouts bound each phase of a connection; all are > 0.
type Timeouts struct {
	// Handshake bounds the client's proxy handshake; default 10s.
	Handshake time.Duration
	// Dial bounds the upstream connect, per NIC tried; default 10s.
	Dial time.Duration
	// Attempt is the Happy Eyeballs delay (RFC 8305): how long one address
	// may try alone before the next address starts beside it; default 250ms.
	Attempt time.Duration
	// ResolutionDelay is RFC 8305's Resolution Delay: once one family's
	// addresses are known, how long a dial waits for the other before it
	// connects with what it has; default 50ms.
	ResolutionDelay time.Duration
	// Idle closes a relay with no traffic either way; default 5m.
	Idle time.Duration
	// Body bounds the pause between two reads of an HTTP request's body
	// (nginx's client_body_timeout); past it the client gets 408 and the
	// connection is closed. Default 60s.
	Body time.Duration
	// Shutdown is how long open connections may finish on SIGTERM;
	// default 10s.
	Shutdown time.Duration
}

// ResolverViaSystem is Resolver.Via when dst-rule lookups use the system
// resolver, unpinned: the meaning of `default: system`.
const ResolverViaSystem = "system"

// Resolver configures how names are looked up and cached.
type Resolver struct {
	// Via is the NIC that looks names up to test dst rules, or
	// ResolverViaSystem. Never empty after loading: it defaults to the
	// first NIC of Default (system when Default is system), so such a
	// lookup leaves through a NIC the flow is likely to take.
	Via string
	// CacheSize is the number of names each NIC's cache keeps; 0 turns
	// caching off. Default 10000.
	CacheSize int
	// MinTTL and MaxTTL clamp the TTL of cached answers; defaults 0 and 10m.
	MinTTL, MaxTTL time.Duration
	// NegativeTTLWithoutSOA is how long a negative answer without an SOA
	// (NOERROR with no records, as many home routers answer AAAA) is
	// cached per NIC; 0 keeps RFC 2308's "not at all". Default 5s, at most 30s.
	NegativeTTLWithoutSOA time.Duration
}

// DNSAuto is the value of interfaces.NIC.dns that asks for the NIC's own
// servers from the host's per-link source (the default).
const DNSAuto = "auto"

// LocalPolicy is the value of local_destinations.
type LocalPolicy string

// Local destination policies.
const (
	// LocalAllow lets clients reach services on the proxy host.
	LocalAllow LocalPolicy = "allow"
	// LocalDeny refuses destinations on the proxy host (0x02 / 403).
	LocalDeny LocalPolicy = "deny"
)

// Limits bound resource use.
type Limits struct {
	// MaxConnections caps concurrent client connections; default 20000.
	MaxConnections int
	// MaxHandshakes caps clients still in their handshake (before their
	// request is read) at once; default 1024. It bounds the memory
	// clients can hold before they have authenticated.
	MaxHandshakes int
	// MaxHeaderBytes caps an HTTP request's header; default 64 KiB.
	// Larger headers get 431. An origin's response header is held to the
	// same bytes, and so are its interim (1xx) responses together; past
	// them the client gets 502.
	MaxHeaderBytes int
	// MaxHeaders caps the header lines of an HTTP request (431 past it)
	// and of an origin's response (502); default 101, HAProxy's
	// tune.http.maxhdr. They are counted as they arrive, before net/http
	// builds its map of them, which costs far more than their bytes.
	MaxHeaders int
}

// Log configures logging.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string
	// Format is console (default) or json.
	Format string
	// Access enables one line per closed connection; default true.
	Access bool
}
