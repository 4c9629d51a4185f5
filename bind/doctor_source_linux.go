package bind

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Source rules. SO_BINDTODEVICE pins a socket; the packets the kernel
// sends for a socket that is gone (a reset answering a segment that
// arrived after the close, such as the rest of a response the client
// cancelled) carry no binding and follow the routing table, which on a
// host whose NICs share a subnet sends them out the NIC with the default
// route, from the other NIC's address. A source rule (from ADDRESS lookup
// TABLE, TABLE holding the NIC's routes) sends them the NIC's way.

// sourceRuleBase and sourceRulePref are the table (plus the NIC's index)
// and the rule priority the commands doctor prints use, the same as
// deploy/nicproxy-source-rule's defaults.
const (
	sourceRuleBase = 1000
	sourceRulePref = 1000
)

// Addresses a route lookup asks about: off every network of the host
// (documentation space, never sent to: a lookup sends nothing).
var (
	offNet4 = net.ParseIP("203.0.113.1")
	offNet6 = net.ParseIP("2001:db8::1")
)

// checkSourceRule asks the kernel, for each of the NIC's addresses, which
// NIC an unpinned packet from that address would leave by, as the
// kernel's own resets do: toward a host off the NIC's networks and
// toward its gateway.
func checkSourceRule(link netlink.Link, name string, addrs []netip.Prefix, add addFunc) {
	var leaks []string
	var fixed []string
	for _, p := range addrs {
		a := p.Addr()
		if a.IsLinkLocalUnicast() || a.IsLoopback() {
			continue
		}
		probes := []net.IP{offNet4}
		if a.Is6() {
			probes = []net.IP{offNet6}
		}
		if gw := gateway(link, a.Is4()); gw != nil {
			probes = append(probes, gw)
		}
		for _, dst := range probes {
			out, err := routeOut(dst, a)
			if err != nil {
				add(Warn, "source", "cannot ask the kernel how packets from %s to %s leave: %v", a, dst, err)
				return
			}
			if out != name {
				leaks = append(leaks, fmt.Sprintf("from %s to %s: %s", a, dst, orNone(out)))
			}
		}
		if rule, ok := sourceRule(a); ok {
			fixed = append(fixed, rule)
		}
	}
	switch {
	case len(leaks) > 0:
		add(Warn, "source", "unpinned packets from %s's addresses leave through another NIC (%s): the "+
			"resets the kernel sends for sockets that are gone (a late segment after a cancelled "+
			"download) carry no pin and go that way, with %s's address. A source rule sends them "+
			"through %s, the main table left as it is:\n%s",
			name, strings.Join(leaks, ", "), name, name, strings.Join(sourceRuleCommands(link, name, addrs), "\n"))
	case len(fixed) > 0:
		add(OK, "source", "packets from %s's addresses leave through %s, pinned or not (%s)", name, name, strings.Join(fixed, "; "))
	default:
		add(OK, "source", "packets from %s's addresses leave through %s, pinned or not (the main table sends them there)", name, name)
	}
}

func orNone(nic string) string {
	if nic == "" {
		return "no NIC"
	}
	return nic
}

// routeOut is the NIC the kernel routes an unbound packet from src to dst
// through, as `ip route get DST from SRC` says.
func routeOut(dst net.IP, src netip.Addr) (string, error) {
	routes, err := netlink.RouteGetWithOptions(dst, &netlink.RouteGetOptions{SrcAddr: src.AsSlice()})
	if err != nil {
		return "", err
	}
	if len(routes) == 0 || routes[0].LinkIndex == 0 {
		return "", nil
	}
	link, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", err
	}
	return link.Attrs().Name, nil
}

// gateway is the NIC's default gateway in the main table, or nil.
func gateway(link netlink.Link, v4 bool) net.IP {
	family := netlink.FAMILY_V6
	if v4 {
		family = netlink.FAMILY_V4
	}
	routes, err := netlink.RouteListFiltered(family,
		&netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil
	}
	for _, r := range routes {
		if (r.Dst == nil || maskOnes(r.Dst) == 0) && r.Gw != nil {
			return r.Gw
		}
	}
	return nil
}

// sourceRule describes the rule that matches packets from a, if one
// sends them to a table other than the standard three.
func sourceRule(a netip.Addr) (string, bool) {
	family := netlink.FAMILY_V6
	if a.Is4() {
		family = netlink.FAMILY_V4
	}
	rules, err := netlink.RuleList(family)
	if err != nil {
		return "", false
	}
	for _, r := range rules {
		if r.Src == nil || !r.Src.Contains(a.AsSlice()) || r.Table == unix.RT_TABLE_MAIN ||
			r.Table == unix.RT_TABLE_LOCAL || r.Table == unix.RT_TABLE_DEFAULT || r.Table <= 0 {
			continue
		}
		return fmt.Sprintf("rule %d: from %s lookup %d", r.Priority, r.Src, r.Table), true
	}
	return "", false
}

// sourceRuleCommands are the commands that make the source rule: the unit
// deploy/ offers, or the same by hand.
func sourceRuleCommands(link netlink.Link, name string, addrs []netip.Prefix) []string {
	table := sourceRuleBase + link.Attrs().Index
	cmds := []string{
		"systemctl enable --now nicproxy-source-rule@" + name + "   (deploy/; or by hand, as root:)",
	}
	for _, v4 := range []bool{true, false} {
		family, flag := netlink.FAMILY_V6, "-6"
		if v4 {
			family, flag = netlink.FAMILY_V4, "-4"
		}
		var from []string
		for _, p := range addrs {
			if a := p.Addr(); a.Is4() == v4 && !a.IsLinkLocalUnicast() {
				from = append(from, a.String())
			}
		}
		if len(from) == 0 {
			continue
		}
		routes, _ := netlink.RouteListFiltered(family,
			&netlink.Route{LinkIndex: link.Attrs().Index, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
		for _, r := range routes {
			if r.Type != unix.RTN_UNICAST || r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() {
				continue
			}
			dst := "default"
			if r.Dst != nil && maskOnes(r.Dst) > 0 {
				dst = r.Dst.String()
			}
			via := ""
			if r.Gw != nil {
				via = " via " + r.Gw.String()
			}
			src := ""
			if r.Src != nil {
				src = " src " + r.Src.String()
			}
			cmds = append(cmds, fmt.Sprintf("ip %s route replace %s%s dev %s%s table %d", flag, dst, via, name, src, table))
		}
		for _, a := range from {
			cmds = append(cmds, fmt.Sprintf("ip %s rule add from %s lookup %d pref %d", flag, a, table, sourceRulePref))
		}
	}
	return cmds
}
