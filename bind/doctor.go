package bind

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"nicproxy/bind/dnscache"
	"nicproxy/bind/linkdns"
)

// Severity grades one doctor finding.
type Severity int

// Severities, mildest first.
const (
	OK   Severity = iota // the check passed
	Warn                 // nicproxy works, but something may bite (a reply could be dropped)
	Fail                 // traffic cannot be pinned to this NIC as things are
)

func (s Severity) String() string {
	return [...]string{"ok", "warn", "FAIL"}[s]
}

// Finding is one check's result for one NIC.
type Finding struct {
	Severity Severity
	Check    string // "exists", "rp_filter", ...
	Detail   string // what was seen and, when not OK, what to do
}

// NICReport is every finding for one NIC.
type NICReport struct {
	NIC      string
	Findings []Finding
}

// Add records a finding, its detail formatted as fmt.Sprintf does.
func (r *NICReport) Add(sev Severity, check, format string, args ...any) {
	r.Findings = append(r.Findings, Finding{Severity: sev, Check: check, Detail: fmt.Sprintf(format, args...)})
}

// Worst is the most severe finding of the report.
func (r NICReport) Worst() Severity {
	worst := OK
	for _, f := range r.Findings {
		worst = max(worst, f.Severity)
	}
	return worst
}

// DoctorOptions say what to diagnose.
type DoctorOptions struct {
	NICs    []string      // the NICs to check
	Target  string        // host:port for a real bound TCP connect; "" skips it
	Timeout time.Duration // for the connect; default 3s
	// PerNIC holds each NIC's options from the config (source, mark, dns),
	// so the checks pin and resolve exactly as the proxy will.
	PerNIC map[string]NICOptions
}

// NICOptions are a NIC's pinning options and resolvers.
type NICOptions struct {
	Options
	DNS []netip.AddrPort
	// LinkDNS are the NIC's own servers from the host's per-link source
	// (bind/linkdns), used when DNS is empty.
	LinkDNS []netip.AddrPort
}

// NICServers returns the nameservers a NIC's lookups ask and where they
// come from: its dns setting, its link's own servers (systemd-resolved),
// or the system's resolv.conf; or the error its lookups fail with. For
// check and doctor, which say so per NIC.
func NICServers(nic string, opts NICOptions) ([]netip.AddrPort, string, error) {
	return nicResolver(nic, opts, nil).Servers()
}

// nicResolver is the resolver the proxy gives a NIC with opts.
func nicResolver(nic string, opts NICOptions, dial dnscache.DialFunc) *dnscache.Resolver {
	link := opts.LinkDNS
	return dnscache.New(dnscache.Config{NIC: nic, Servers: opts.DNS, Dial: dial,
		LinkServers: func() []netip.AddrPort { return link }, LinkOrigin: linkdns.Origin})
}

// Doctor diagnoses the host for each NIC: presence, link state, addresses,
// routes a pinned socket can use, reverse-path filtering, ARP flux between
// NICs sharing a subnet, permission to pin, and optionally a real pinned
// connect. It only reads and connects; it changes nothing.
func Doctor(ctx context.Context, opts DoctorOptions) []NICReport {
	if opts.Timeout <= 0 {
		opts.Timeout = 3 * time.Second
	}
	return doctor(ctx, opts)
}
