package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"nicproxy/bind"
	"nicproxy/config"
	"nicproxy/proxy/router"
	"nicproxy/proxy/upstream"
)

// route answers "which rule and NIC would carry DEST", the way `ip route
// get` answers it for the routing table.
func route(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("route", flag.ContinueOnError)
	file := fs.String("c", "", "config `FILE` (default: the embedded default)")
	user := fs.String("u", "", "authenticated `USER`")
	src := fs.String("s", "", "client address `SRC` (default 127.0.0.1)")
	listener := fs.String("listener", "", "`NAME` of the listener the client came in on (default: the first)")
	udp := fs.Bool("udp", false, "route a UDP flow (SOCKS5 UDP ASSOCIATE) instead of TCP")
	fromPID := fs.Int("from-pid", 0, "route a connection `PID` would make (its unit, cgroup, uid and program)")
	unit := fs.String("unit", "", "route a connection from systemd unit `NAME`")
	positional, err := parseFlags(fs, args)
	if err == nil && len(positional) != 1 {
		err = usageError{"want exactly one DEST[:PORT]"}
	}
	var host string
	var port uint16
	if err == nil {
		host, port, err = parseDest(positional[0])
	}
	client := netip.MustParseAddrPort("127.0.0.1:0")
	if err == nil && *src != "" {
		a, perr := netip.ParseAddr(*src)
		if perr != nil {
			err = usageError{fmt.Sprintf("-s %q is not an IP address", *src)}
		}
		client = netip.AddrPortFrom(a, 0)
	}
	if err != nil {
		return helpOrUsage(stdout, stderr, "route", fs, err)
	}
	peer, err := routePeer(*fromPID, *unit)
	if _, usage := err.(usageError); usage {
		return helpOrUsage(stdout, stderr, "route", fs, err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy route: --from-pid: %v\n", err)
		return exitFailure
	}

	opts, err := hostOptions()
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy route: %v\n", err)
		return exitFailure
	}
	cfg, err := loadConfig(*file, opts)
	if err != nil {
		return reportConfigError(stderr, err)
	}
	listenerName := cfg.Listeners[0].Name
	if *listener != "" {
		if !hasListener(cfg, *listener) {
			fmt.Fprintf(stderr, "nicproxy route: --listener: no listener named %q in %s\n", *listener, cfg.Source)
			return exitUsage
		}
		listenerName = *listener
	}
	network := config.NetworkTCP
	if *udp {
		network = config.NetworkUDP
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The lookup dst rules need goes through resolver.via, pinned, as the
	// proxy would make it.
	r := router.New(cfg, upstream.New(cfg, upstream.Options{}).Resolver(cfg.Resolver.Via), nil)
	d, why := r.Explain(ctx, router.Request{
		Client: client, User: *user, Listener: listenerName,
		Host: host, Port: port, Network: network, Peer: peer,
	})
	printDecision(stdout, host, port, network, d, why)
	printFamilies(stdout, host, d)
	return exitOK
}

// printFamilies says, for a name, which record types each NIC of the
// decision asks and why (bind.Families: the NIC's addresses and routes).
func printFamilies(w io.Writer, host string, d router.Decision) {
	if _, err := netip.ParseAddr(host); err == nil || host == "localhost" ||
		d.Action == config.ActionReject || d.Via.Mode == config.ViaSystem {
		return
	}
	for _, nic := range d.Via.NICs {
		f, err := bind.SystemLinks{}.Families(nic)
		if err != nil {
			f = bind.Families{}
		}
		fmt.Fprintf(w, "%-10s%s: %s\n", "asks", nic, f)
	}
}

func hasListener(cfg *config.Config, name string) bool {
	for _, l := range cfg.Listeners {
		if l.Name == name {
			return true
		}
	}
	return false
}

// parseDest splits DEST[:PORT]: a name or IP, an IPv6 literal bare or in
// brackets, with an optional port.
func parseDest(s string) (string, uint16, error) {
	if s == "" {
		return "", 0, usageError{"empty DEST"}
	}
	if a, err := netip.ParseAddr(s); err == nil { // bare IP, including IPv6
		return a.String(), 0, nil
	}
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(s, ":") && !strings.HasPrefix(s, "[") {
			return "", 0, usageError{fmt.Sprintf("%q: want HOST, HOST:PORT or [IPv6]:PORT", s)}
		}
		return strings.Trim(s, "[]"), 0, nil
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return "", 0, usageError{fmt.Sprintf("%q: port must be 1-65535", s)}
	}
	return host, uint16(port), nil
}

func printDecision(w io.Writer, host string, port uint16, network config.Network, d router.Decision, why router.Explanation) {
	// Fixed-width labels, like `ip route get`: scripts can cut on them.
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-10s"+format+"\n", append([]any{label}, args...)...)
	}
	dest := host
	if port != 0 {
		dest = net.JoinHostPort(host, strconv.Itoa(int(port)))
	}
	line("dest", "%s (%s)", dest, network)
	if d.Rule >= 0 {
		line("rule", "%d %s", d.Rule, d.RuleName)
	} else {
		line("rule", "default")
	}
	switch {
	case d.Action == config.ActionReject:
		line("action", "reject")
	case upstream.IsLoopback(host):
		// Dial leaves loopback unpinned, whatever the rule names.
		line("via", "%s (unpinned: a loopback destination never leaves the host)", upstream.System)
	default:
		line("via", "%s", describeVia(d.Via, d.Via.String()))
		for _, nic := range d.Via.NICs {
			if state, usable := nicState(nic); !usable {
				line("note", "NIC %s is %s: %s until it is up", nic, state, pinnedFail)
			}
		}
	}
	line("why", "%s", strings.Join(why.Matched, "; "))
	if d.Peer != nil {
		line("client", "%s", describePeer(d.Peer.Info()))
	}
	if l := why.Lookup; l != nil {
		by := "looked up via " + l.Via
		if l.Via == config.ResolverViaSystem {
			by = "looked up by the system resolver"
		}
		if l.Cached {
			by += ", cached"
		} else {
			by += ", not cached"
		}
		if l.Err != nil {
			line("resolved", "%s did not resolve (%s: %v): dst rules skipped", host, by, l.Err)
		} else {
			addrs := make([]string, len(l.Addrs))
			for i, a := range l.Addrs {
				addrs[i] = a.String()
			}
			line("resolved", "%s -> %s (%s, for dst rules)", host, strings.Join(addrs, ", "), by)
		}
	}
	if d.Addr.IsValid() {
		line("dial", "%s (the address the dst rule matched)", d.Addr)
	}
	if port == 0 {
		line("note", "no port given: rules with a port field were skipped")
	}
}
