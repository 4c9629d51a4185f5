package bind

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func doctor(ctx context.Context, opts DoctorOptions) []NICReport {
	defaultNIC, _ := DefaultRouteInterface()
	subnets := hostSubnets()
	var reports []NICReport
	for _, name := range opts.NICs {
		r := NICReport{NIC: name}
		add := r.Add
		link, err := netlink.LinkByName(name)
		if err != nil {
			add(Fail, "exists", "no NIC named %s on this host (have: %s)", name, strings.Join(names(), ", "))
			reports = append(reports, r)
			continue
		}
		attrs := link.Attrs()
		add(OK, "exists", "index %d, %s", attrs.Index, link.Type())
		// "Up" means what it means to a dial (Link.Up: IFF_UP and
		// IFF_RUNNING), so doctor fails exactly the NICs dials refuse.
		switch {
		case attrs.Flags&net.FlagUp == 0:
			add(Fail, "up", "administratively down: ip link set %s up", name)
		case !linkOf(link).Up:
			add(Fail, "carrier", "up but no carrier (state %s): check the cable, the switch or the VM's network", attrs.OperState)
		default:
			add(OK, "up", "up, carrier")
		}

		addrs := addresses(link)
		if len(addrs) == 0 {
			add(Fail, "addresses", "no IPv4 or IPv6 address: a pinned socket has no source address")
		} else {
			add(OK, "addresses", "%s", joinPrefixes(addrs))
		}

		nicOpts := opts.PerNIC[name]
		checkRoutes(link, name, defaultNIC, add)
		checkRPFilter(name, defaultNIC, add)
		checkARPFlux(name, addrs, subnets, add)
		checkSourceRule(link, name, addrs, add)
		checkPin(name, attrs.Index, nicOpts.Options, add)
		checkDNS(name, nicOpts, add)

		if opts.Target != "" {
			checkConnect(ctx, name, opts, nicOpts, add)
		}
		reports = append(reports, r)
	}
	return reports
}

type addFunc func(sev Severity, check, format string, args ...any)

func names() []string {
	all, _ := Interfaces()
	return all
}

func addresses(link netlink.Link) []netip.Prefix {
	list, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || (ip.Is6() && ip.IsLinkLocalUnicast()) {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out
}

func joinPrefixes(ps []netip.Prefix) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}

// hostSubnets maps each IPv4 subnet to the NICs that have an address in it.
func hostSubnets() map[netip.Prefix][]string {
	out := map[netip.Prefix][]string{}
	links, err := netlink.LinkList()
	if err != nil {
		return out
	}
	for _, l := range links {
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		for _, p := range addresses(l) {
			if p.Addr().Is4() {
				out[p.Masked()] = append(out[p.Masked()], l.Attrs().Name)
			}
		}
	}
	return out
}

func checkRoutes(link netlink.Link, name, defaultNIC string, add addFunc) {
	// Every table, not just main: a two-NIC host often gives each NIC a
	// policy-routing table of its own. Local and broadcast routes say
	// nothing about leaving the host.
	var routes []netlink.Route
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		list, err := netlink.RouteListFiltered(family,
			&netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_UNSPEC},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
		if err != nil {
			add(Warn, "routes", "cannot list routes: %v", err)
			return
		}
		routes = append(routes, list...)
	}
	var defaults, others []string
	for _, r := range routes {
		if r.Type != unix.RTN_UNICAST || r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() {
			continue
		}
		table := ""
		if r.Table != unix.RT_TABLE_MAIN {
			table = fmt.Sprintf(" table %d", r.Table)
		}
		if r.Dst == nil || maskOnes(r.Dst) == 0 {
			gw := "on-link"
			if r.Gw != nil {
				gw = "via " + r.Gw.String()
			}
			defaults = append(defaults, fmt.Sprintf("default %s metric %d%s", gw, r.Priority, table))
		} else {
			others = append(others, r.Dst.String()+table)
		}
	}
	switch {
	case len(defaults) > 0:
		note := ""
		if defaultNIC != "" && defaultNIC != name {
			note = fmt.Sprintf("; unpinned traffic prefers %s", defaultNIC)
		}
		add(OK, "routes", "%s%s", strings.Join(defaults, ", "), note)
	case len(others) > 0:
		add(Warn, "routes", "no default route through %s: pinned connections reach only %s (add: ip route add default via GATEWAY dev %s metric 101)", name, strings.Join(others, ", "), name)
	default:
		add(Fail, "routes", "no route through %s: pinned connections cannot leave", name)
	}
}

func maskOnes(n *net.IPNet) int {
	ones, _ := n.Mask.Size()
	return ones
}

func readSysctl(path string) (int, bool) {
	b, err := os.ReadFile(filepath.Join("/proc/sys/net/ipv4/conf", path))
	if err != nil {
		return 0, false
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return v, err == nil
}

// effective reads a conf value the kernel combines from "all" and the NIC
// by taking the larger (rp_filter, arp_ignore, arp_announce).
func effective(nic, key string) (int, bool) {
	all, okAll := readSysctl("all/" + key)
	own, okOwn := readSysctl(nic + "/" + key)
	return max(all, own), okAll && okOwn
}

func checkRPFilter(name, defaultNIC string, add addFunc) {
	v, ok := effective(name, "rp_filter")
	switch {
	case !ok:
		add(Warn, "rp_filter", "cannot read net.ipv4.conf.%s.rp_filter", name)
	case v == 1 && defaultNIC != "" && defaultNIC != name:
		add(Warn, "rp_filter", "strict (1): replies to connections pinned to %s come back from sources whose best route is via %s, and the kernel drops them; set loose mode: sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.%s.rp_filter=2", name, defaultNIC, name)
	default:
		mode := map[int]string{0: "off", 1: "strict", 2: "loose"}[v]
		add(OK, "rp_filter", "%d (%s): replies through %s are accepted", v, mode, name)
	}
}

func checkARPFlux(name string, addrs []netip.Prefix, subnets map[netip.Prefix][]string, add addFunc) {
	var shared []string
	for _, p := range addrs {
		if !p.Addr().Is4() {
			continue
		}
		for _, other := range subnets[p.Masked()] {
			if other != name {
				shared = append(shared, fmt.Sprintf("%s (%s)", other, p.Masked()))
			}
		}
	}
	if len(shared) == 0 {
		add(OK, "arp", "no other NIC on %s's subnets", name)
		return
	}
	ignore, _ := effective(name, "arp_ignore")
	announce, _ := effective(name, "arp_announce")
	filterAll, _ := readSysctl("all/arp_filter")
	filterOwn, _ := readSysctl(name + "/arp_filter")
	if ignore >= 1 && announce >= 2 || filterAll == 1 || filterOwn == 1 {
		add(OK, "arp", "shares a subnet with %s; arp_ignore=%d arp_announce=%d arp_filter=%d keep each address on its own NIC", strings.Join(shared, ", "), ignore, announce, max(filterAll, filterOwn))
		return
	}
	add(Warn, "arp", "shares a subnet with %s and arp_ignore=%d arp_announce=%d arp_filter=%d: the host may answer ARP for %s's address from the other NIC (ARP flux), so replies can arrive on the wrong NIC; set: sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2", strings.Join(shared, ", "), ignore, announce, max(filterAll, filterOwn), name)
}

// checkPin pins a real (unconnected) socket to the NIC: the one way to know
// that this process may, whatever the kernel version and capabilities.
func checkPin(name string, index int, opts Options, add addFunc) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		add(Warn, "permission", "cannot make a test socket: %v", err)
		return
	}
	defer unix.Close(fd)
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, index)
	if errors.Is(err, unix.ENOPROTOOPT) {
		err = unix.BindToDevice(fd, name)
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	kernel := unix.ByteSliceToString(uts.Release[:])
	if err != nil {
		add(Fail, "permission", "cannot pin a socket to %s: %v (kernel %s; before 5.7 this needs CAP_NET_RAW)", name, err, kernel)
		return
	}
	if opts.Mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(opts.Mark)); err != nil {
			add(Fail, "permission", "cannot set mark %#x on %s's sockets: %v (needs CAP_NET_ADMIN, or CAP_NET_RAW on Linux 5.17 and newer)", opts.Mark, name, err)
			return
		}
	}
	if opts.Source.IsValid() && opts.Source.Is4() {
		if err := unix.Bind(fd, sockaddr(opts.Source)); err != nil {
			add(Fail, "permission", "cannot bind source %s on %s: %v (is it %s's address?)", opts.Source, name, err, name)
			return
		}
	}
	add(OK, "permission", "this process can pin sockets to %s (kernel %s)", name, kernel)
}

// checkDNS says which nameservers the NIC's lookups ask, and where they
// come from; a NIC with none it can reach fails its lookups.
func checkDNS(name string, nicOpts NICOptions, add addFunc) {
	servers, origin, err := NICServers(name, nicOpts)
	if err != nil {
		add(Warn, "dns", "%v", err)
		return
	}
	list := make([]string, len(servers))
	for i, s := range servers {
		list[i] = s.String()
	}
	add(OK, "dns", "%s (from %s)", strings.Join(list, ", "), origin)
}

func checkConnect(ctx context.Context, name string, opts DoctorOptions, nicOpts NICOptions, add addFunc) {
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	start := time.Now()
	dialer := NewDialer(name, nicOpts.Options, nil)
	target := opts.Target
	if host, port, err := net.SplitHostPort(target); err == nil {
		if _, err := netip.ParseAddr(host); err != nil {
			// A name is resolved through the NIC too, as the proxy would.
			resolver := nicResolver(name, nicOpts, dialer.DialContext)
			addrs, err := resolver.LookupNetIP(ctx, "ip4", host)
			if err != nil || len(addrs) == 0 {
				add(Fail, "connect", "resolve %s through %s: %v", host, name, err)
				return
			}
			target = net.JoinHostPort(addrs[0].String(), port)
		}
	}
	conn, err := dialer.DialContext(ctx, "tcp", target)
	if err != nil {
		add(Fail, "connect", "%v", err)
		return
	}
	defer conn.Close()
	add(OK, "connect", "%s from %s in %s", opts.Target, conn.LocalAddr(), time.Since(start).Round(time.Millisecond))
}
