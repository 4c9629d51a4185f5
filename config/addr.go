package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
)

// splitHostPort splits "host:port", "[v6]:port" or ":port" without the net
// package: config parses text and must not grow a dependency on sockets.
// A bare IPv6 address needs brackets, or its last group would be taken for
// the port.
func splitHostPort(s string) (host, port string, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 || !strings.HasPrefix(s[end+1:], ":") {
			return "", "", false
		}
		return s[1:end], s[end+2:], true
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.ContainsAny(s[:i], ":[]") {
		return "", "", false
	}
	return s[:i], s[i+1:], true
}

// parsePort reads a port 1-65535. Port 0 is refused everywhere: for a
// listener it means "any free port", which no client could find.
func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	switch {
	case err != nil && strings.Trim(s, "0123456789") == "" && s != "":
		return 0, fmt.Errorf("port %s is out of range 1-65535", s)
	case err != nil:
		return 0, fmt.Errorf("port %q is not a number 1-65535", s)
	case n == 0:
		return 0, fmt.Errorf("port 0 is not a fixed port; give one 1-65535")
	}
	return uint16(n), nil
}

// parseListenAddr reads a listener or admin address. Only IP literals and
// "localhost" are taken: resolving other names would make the listening
// address depend on DNS at start-up.
func parseListenAddr(s string) (netip.AddrPort, error) {
	host, port, ok := splitHostPort(s)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%q: want IP:port, such as 127.0.0.1:1080 or [::1]:1080", s)
	}
	p, err := parsePort(port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %v", s, err)
	}
	var a netip.Addr
	switch h := strings.TrimSuffix(strings.ToLower(host), "."); {
	case h == "":
		// Go's net.Listen treats [::] as the dual-stack wildcard, as it
		// does a missing host, so ":1080" keeps its usual meaning.
		a = netip.IPv6Unspecified()
	case h == "localhost":
		a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	default:
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, fmt.Errorf("%q: %q is not an IP address (the only name allowed is localhost)", s, host)
		}
	}
	return netip.AddrPortFrom(a.Unmap(), p), nil
}

// parseDNS reads a resolver address; a bare IP means port 53. Names are
// refused: finding the resolver would need a resolver.
func parseDNS(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	host, port, ok := splitHostPort(s)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%q: want an IP, IP:port or [IPv6]:port", s)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %q is not an IP address (a resolver cannot be found by name)", s, host)
	}
	p, err := parsePort(port)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: %v", s, err)
	}
	return netip.AddrPortFrom(a.Unmap(), p), nil
}

// checkTarget validates a health-check target "host:port" where host is an
// IP literal or a host name; nothing is resolved or dialed here.
func checkTarget(s string) error {
	host, port, ok := splitHostPort(s)
	if !ok || host == "" {
		return fmt.Errorf("%q: want host:port, such as 192.168.3.1:53 or example.com:443", s)
	}
	if _, err := parsePort(port); err != nil {
		return fmt.Errorf("%q: %v", s, err)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Unmap().IsLoopback() {
			// A check connects through the NIC; loopback is never there.
			return fmt.Errorf("%q is on loopback, which no NIC reaches; check something beyond the NIC, such as its gateway", s)
		}
		return nil
	}
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return fmt.Errorf("%q is on loopback, which no NIC reaches; check something beyond the NIC, such as its gateway", s)
	}
	if err := checkHostname(host); err != nil {
		return fmt.Errorf("%q: %v", s, err)
	}
	return nil
}

// parseSource reads a source address to bind; one that cannot be a
// packet's source is refused here rather than at the first dial.
func parseSource(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address", s)
	}
	a = a.Unmap()
	switch {
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("%q: a source address takes no zone; the NIC is already known", s)
	case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return netip.Addr{}, fmt.Errorf("%s cannot be a source address; give one of the NIC's own addresses", a)
	}
	return a, nil
}

// parseMark reads an SO_MARK value in decimal or 0x hex, the two ways
// `ip rule` users write fwmarks. Octal is not guessed from a leading 0.
func parseMark(s string) (uint32, error) {
	digits, base := s, 10
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		digits, base = s[2:], 16
	}
	n, err := strconv.ParseUint(digits, base, 32)
	if err != nil {
		return 0, fmt.Errorf("%q: want a number 1-4294967295, decimal or 0x hex", s)
	}
	if n == 0 {
		return 0, fmt.Errorf("0 means no mark; remove the field or pick a non-zero mark")
	}
	return uint32(n), nil
}

// checkNICName applies the kernel's rules for interface names (Linux
// dev_valid_name, IFNAMSIZ 16), so a name that can never exist is caught as
// a typo instead of waiting forever to "appear".
func checkNICName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("an interface name cannot be empty")
	case name == "system":
		return fmt.Errorf(`"system" is reserved (it means "let the routing table decide") and cannot name a NIC`)
	case len(name) > 15:
		return fmt.Errorf("%q is longer than 15 bytes, the kernel's limit for interface names", name)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not a valid interface name", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) }):
		return fmt.Errorf("%q is not a valid interface name (no '/', ':' or spaces)", name)
	}
	return nil
}
