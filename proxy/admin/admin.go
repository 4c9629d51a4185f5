// Package admin is what an operator sees of a running nicproxy: the
// Prometheus metrics, the status page and /api/status, the PAC file and the
// health endpoint, served on admin.addr. The proxy's sessions report to it
// through a few calls (Dialed, Relaying, Finished); it asks the proxy for
// the rest (configuration, NIC state, open connections) through Source. It
// knows no proxy protocol.
package admin

import (
	"context"
	"net"
	"net/netip"
	"time"

	"nicproxy/config"
)

// Unpinned is the NIC name sessions report for traffic no NIC carries
// pinned (loopback destinations, via: system); it has a card of its own.
const Unpinned = "system"

// Source is what the admin endpoint asks the proxy.
type Source interface {
	// Config is the configuration in force.
	Config() *config.Config
	// NIC describes a configured NIC now.
	NIC(name string) NICState
	// Active is the number of client connections open now.
	Active() int64
	// IsLocal reports whether a is one of the host's own addresses.
	IsLocal(a netip.Addr) bool
}

// NIC states, in the words `nicproxy check` uses.
const (
	StateUp     = "up"
	StateDown   = "down"   // present, but administratively down or without carrier
	StateAbsent = "absent" // no NIC has that name (now)
)

// NICState is a NIC as the proxy sees it.
type NICState struct {
	State string // StateUp, StateDown or StateAbsent
	// Check is the health check's state ("passing", "failing since …",
	// "pending"); "" when the NIC has none.
	Check string
	// DNS is the NIC's name cache; nil before it has looked anything up.
	DNS *DNSCache
}

// DNSCache is one NIC's name cache on the status page.
type DNSCache struct {
	Hits    uint64  `json:"hits"`
	Misses  uint64  `json:"misses"`
	Queries uint64  `json:"queries"`
	Entries int     `json:"entries"`
	HitRate float64 `json:"hit_rate"` // hits over hits plus misses; 0 before any lookup
}

// Flow is one finished client connection (a tunnel, or one forwarded HTTP
// request), as a session reports it when it ends.
type Flow struct {
	Start    time.Time
	Client   netip.AddrPort
	User     string
	Protocol string
	Listener string
	Dest     string
	Rule     string
	// NIC carried the flow, or a failed flow's dial failed on it; ""
	// when it failed before a NIC was chosen; Unpinned when none pins it.
	NIC string
	// Up and Down are the bytes that crossed the NIC: for a tunnel what
	// it relayed, for forwarded HTTP the request and response as sent
	// and received upstream, headers included.
	Up, Down int64
	Result   string // ok, refused, timeout, …
	Reason   string // why it failed, in a few words; "" when it did not
	// Unit, UID and Program are who the local client was, when a rule
	// asked the kernel: "" and HasUID false when unknown or not asked.
	Unit    string
	UID     uint32
	HasUID  bool
	Program string
}

// Admin keeps the metrics and the status page's figures, and serves them.
// It is safe for concurrent use.
type Admin struct {
	src     Source
	metrics *metrics
	status  *status
}

// New builds the admin side of a proxy that src describes.
func New(src Source) *Admin {
	a := &Admin{src: src, status: newStatus()}
	a.metrics = newMetrics(src)
	return a
}

// Run samples throughput for the status page until ctx ends.
func (a *Admin) Run(ctx context.Context) {
	a.status.run(ctx, func() []string { return append(a.src.Config().NICs(), Unpinned) })
}

// Dialed records one upstream dial through nic (or the NIC it failed on).
func (a *Admin) Dialed(nic, result string, took time.Duration) {
	a.metrics.dials.WithLabelValues(nic, result).Observe(took.Seconds())
}

// Relaying counts an open tunnel on nic, whose bytes the status page reads
// from the upstream socket as they move, until done is called.
func (a *Admin) Relaying(nic string, upstream *net.TCPConn) (done func()) {
	return a.status.relaying(nic, upstream)
}

// Finished records a flow that ended.
func (a *Admin) Finished(f Flow) {
	a.metrics.finished(f)
	a.status.finished(f)
}

// AuthFailed counts one failed proxy authentication.
func (a *Admin) AuthFailed() { a.metrics.authFailures.Inc() }

// ClientUnknown counts a client whose socket, cgroup or program could not
// be told, by reason (sockdiag.Reason): unit, cgroup, uid and program
// rules then matched nothing for it.
func (a *Admin) ClientUnknown(reason string) { a.metrics.clientUnknown.WithLabelValues(reason).Inc() }

// Query counts one DNS question sent through nic (upstream.DNSObserver).
func (a *Admin) Query(nic, result string) { a.metrics.dnsQueries.WithLabelValues(nic, result).Inc() }

// CacheHit counts one lookup nic's cache answered (upstream.DNSObserver).
func (a *Admin) CacheHit(nic string) { a.metrics.dnsHits.WithLabelValues(nic).Inc() }

// Reloaded records a configuration reload and its outcome.
func (a *Admin) Reloaded(ok bool, at time.Time) { a.metrics.reloads.observe(ok, at) }
