package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"nicproxy/bind"
	"nicproxy/bind/linkdns"

	"nicproxy/config"
	"nicproxy/proxy"
	"nicproxy/proxy/upstream"
)

// check validates a config file and prints a one-screen summary of what
// nicproxy would do with it.
func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	file := fs.String("c", "", "config `FILE` to check (default: the embedded default)")
	quiet := fs.Bool("q", false, "print only errors and warnings, no summary")
	positional, err := parseFlags(fs, args)
	if err == nil && len(positional) > 0 {
		err = usageError{fmt.Sprintf("unexpected argument %q", positional[0])}
	}
	if err != nil {
		return helpOrUsage(stdout, stderr, "check", fs, err)
	}
	opts, err := hostOptions()
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy check: %v\n", err)
		return exitFailure
	}
	cfg, err := loadConfig(*file, opts)
	if err != nil {
		return reportConfigError(stderr, err)
	}
	printWarnings(stderr, cfg)
	if !*quiet {
		printSummary(stdout, cfg)
	}
	return exitOK
}

func printSummary(w io.Writer, cfg *config.Config) {
	fmt.Fprintf(w, "%s: OK\n\n", cfg.Source)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)

	fmt.Fprintln(tw, "listeners:")
	for _, l := range cfg.Listeners {
		name := l.Name
		if name == l.Addr.String() {
			name = ""
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", l.Addr, l.Protocol, name)
	}
	if cfg.Admin != nil {
		fmt.Fprintf(tw, "admin:\t%s\n", cfg.Admin.Addr)
	}

	fmt.Fprintln(tw, "interfaces:")
	for _, nic := range cfg.NICs() {
		state, _ := nicState(nic)
		extra := interfaceOptions(cfg.Interfaces[nic])
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", nic, state, extra)
	}

	fmt.Fprintln(tw, "dns:")
	link := readLinkDNS()
	for _, nic := range cfg.NICs() {
		it := cfg.Interfaces[nic]
		fmt.Fprintf(tw, "  %s\t%s\n", nic, describeServers(nic, bind.NICOptions{DNS: it.DNS, LinkDNS: link[nic]}))
	}

	switch {
	case len(cfg.Users) > 0:
		names := make([]string, len(cfg.Users))
		for i, u := range cfg.Users {
			names[i] = u.Name
		}
		fmt.Fprintf(tw, "users:\t%s (authentication required)\n", strings.Join(names, ", "))
	default:
		fmt.Fprintf(tw, "users:\tnone (no authentication)\n")
	}
	if cfg.AllowAll() {
		fmt.Fprintf(tw, "allow:\teveryone who reaches a listener\n")
	} else {
		fmt.Fprintf(tw, "allow:\t%s\n", cfg.Allow)
	}

	fmt.Fprintln(tw, "rules:")
	tw.Flush()
	// Rules get columns of their own, not the labels' column widths.
	rules := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(cfg.Rules) == 0 {
		fmt.Fprintln(rules, "  (none: everything goes to the default)")
	}
	for _, r := range cfg.Rules {
		fmt.Fprintf(rules, "  %d\t%s\t%s\t-> %s\n", r.Index, r.Name, ruleFields(&r), ruleTarget(&r))
	}
	rules.Flush()
	def := cfg.Default.String()
	if cfg.DefaultFromRoute {
		def += " (the NIC of the default route)"
	}
	fmt.Fprintf(tw, "default:\t%s\n", describeVia(cfg.Default, def))
	fmt.Fprintf(tw, "resolver:\t%s\n", describeResolver(cfg.Resolver))
	t := cfg.Timeouts
	fmt.Fprintf(tw, "timeouts:\thandshake %s, dial %s, attempt %s, resolution_delay %s, idle %s, body %s, shutdown %s\n",
		t.Handshake, t.Dial, t.Attempt, t.ResolutionDelay, t.Idle, t.Body, t.Shutdown)
	l := cfg.Limits
	fmt.Fprintf(tw, "limits:\tmax_connections %d, max_handshakes %d, max_header_bytes %d, max_headers %d\n", l.MaxConnections, l.MaxHandshakes, l.MaxHeaderBytes, l.MaxHeaders)
	fmt.Fprintf(tw, "\tHTTP headers past them: 431 from a client, 502 from an origin (%d interim 1xx answers at most)\n", proxy.MaxInformational)
	fmt.Fprintf(tw, "\tat most %d of a name's addresses tried per NIC\n", upstream.MaxAttempts)
	u := proxy.UDPLimits()
	fmt.Fprintf(tw, "udp:\tper association %d destinations, %d datagrams and %d KiB queued while deciding, %d names in lookup; %d lookups in all\n",
		u.Destinations, u.Queued, u.QueuedBytes>>10, u.Lookups, u.LookupsTotal)
	local := string(cfg.LocalDestinations)
	if cfg.LocalDestinationsDefaulted {
		local += " (the default: " + map[config.LocalPolicy]string{
			config.LocalAllow: "every listener is on loopback and there are no users",
			config.LocalDeny:  "a listener off loopback, or users",
		}[cfg.LocalDestinations] + ")"
	}
	fmt.Fprintf(tw, "local:\tdestinations on this host: %s\n", local)
	fmt.Fprintf(tw, "log:\t%s, %s, access %v\n", cfg.Log.Level, cfg.Log.Format, cfg.Log.Access)
	tw.Flush()
}

// describeResolver says which NIC looks names up for dst rules and how
// much each NIC's cache keeps.
func describeResolver(r config.Resolver) string {
	via := "dst-rule lookups via " + r.Via
	if r.Via == config.ResolverViaSystem {
		via = "dst-rule lookups via the system resolver"
	}
	if r.CacheSize == 0 {
		return via + "; no cache"
	}
	noSOA := "negative answers without SOA not cached"
	if r.NegativeTTLWithoutSOA > 0 {
		noSOA = "negative answers without SOA cached " + r.NegativeTTLWithoutSOA.String()
	}
	return fmt.Sprintf("%s; cache %d names per NIC, TTL clamped to %s..%s, %s", via, r.CacheSize, r.MinTTL, r.MaxTTL, noSOA)
}

// readLinkDNS reads every NIC's own servers from the host's per-link
// source once (systemd-resolved over D-Bus); none where there is none.
func readLinkDNS() map[string][]netip.AddrPort {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	link, err := linkdns.Read(ctx)
	if err != nil {
		return nil
	}
	return link
}

// describeServers says which nameservers a NIC's lookups ask, and where
// they come from.
func describeServers(nic string, opts bind.NICOptions) string {
	servers, origin, err := bind.NICServers(nic, opts)
	if err != nil {
		return err.Error()
	}
	list := make([]string, len(servers))
	for i, s := range servers {
		list[i] = s.String()
	}
	return strings.Join(list, ", ") + " (from " + origin + ")"
}

func interfaceOptions(it config.Interface) string {
	var parts []string
	if it.Source.IsValid() {
		parts = append(parts, "source "+it.Source.String())
	}
	if it.HasMark {
		parts = append(parts, fmt.Sprintf("mark %#x", it.Mark))
	}
	if len(it.DNS) > 0 {
		dns := make([]string, len(it.DNS))
		for i, d := range it.DNS {
			dns[i] = d.String()
		}
		parts = append(parts, "dns "+strings.Join(dns, ", "))
	}
	if it.DNSAuto {
		parts = append(parts, "dns auto")
	}
	if it.Check != nil {
		parts = append(parts, fmt.Sprintf("check %s every %s", it.Check.Target, it.Check.Interval))
	}
	return strings.Join(parts, "; ")
}

// ruleFields renders a rule's match fields the way the file spells them.
func ruleFields(r *config.Rule) string {
	var parts []string
	add := func(key string, n int, value string) {
		if n > 0 {
			parts = append(parts, key+" "+value)
		}
	}
	add("network", boolInt(r.Network != config.NetworkAny), r.Network.String())
	add("listener", len(r.Listeners), strings.Join(r.Listeners, ", "))
	add("user", len(r.Users), strings.Join(r.Users, ", "))
	add("src", r.Src.Len(), r.Src.String())
	add("dst", r.Dst.Len(), r.Dst.String())
	add("domain", r.Domains.Len(), r.Domains.String())
	add("port", r.Ports.Len(), r.Ports.String())
	add("unit", len(r.Units), strings.Join(r.Units, ", "))
	add("cgroup", len(r.Cgroups), strings.Join(r.Cgroups, ", "))
	add("uid", len(r.UIDs), strings.ReplaceAll(strings.Trim(fmt.Sprint(r.UIDs), "[]"), " ", ", "))
	add("program", len(r.Programs), strings.Join(r.Programs, ", "))
	if len(parts) == 0 {
		return "(everything)"
	}
	return strings.Join(parts, "; ")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func ruleTarget(r *config.Rule) string {
	if r.Action == config.ActionReject {
		return "reject"
	}
	return describeVia(r.Via, r.Via.String())
}

// describeVia adds what a Via's mode means to its short form.
func describeVia(v config.Via, short string) string {
	switch {
	case v.Mode == config.ViaSystem:
		return short + " (unpinned: the routing table decides)"
	case v.Mode == config.ViaPinned && len(v.NICs) > 1:
		return short + " (failover, in order)"
	}
	return short
}
