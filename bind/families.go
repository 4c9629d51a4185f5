package bind

import (
	"net/netip"
	"strings"
)

// Families is what a NIC can carry by address family, the per-NIC form of
// glibc's AI_ADDRCONFIG: a name is asked only for the families the NIC has
// a use for, so an IPv4-only NIC sends no AAAA query and makes no IPv6
// attempt, and a NIC without an IPv4 address sends no A query.
type Families struct {
	// Known is false when the NIC's addresses could not be read (a Links
	// that does not report them, a NIC missing now): both families are
	// asked, as before the NIC's state was known.
	Known bool
	// Addr4: the NIC has an IPv4 address.
	Addr4 bool
	// Addr6: the NIC has a global IPv6 address (not link-local, not
	// tentative or failed duplicate detection).
	Addr6 bool
	// Route6: an IPv6 unicast route other than link-local leaves through
	// the NIC, in any routing table.
	Route6 bool
}

// V4 reports whether names are asked for A records through the NIC.
func (f Families) V4() bool { return !f.Known || f.Addr4 || f.none() }

// V6 reports whether names are asked for AAAA records through the NIC.
func (f Families) V6() bool { return !f.Known || f.Addr6 && f.Route6 || f.none() }

// none: neither family is usable. Both are asked then, as before: a NIC
// with no address of its own (unnumbered, or between DHCP leases) may still
// carry a pinned dial with a source address the kernel picks elsewhere,
// and the dial, not the lookup, is the place to fail.
func (f Families) none() bool { return f.Known && !f.Addr4 && !(f.Addr6 && f.Route6) }

// Network is the network to look a name up in for a dial through the NIC:
// "ip" (both families), "ip4" or "ip6".
func (f Families) Network() string {
	switch v4, v6 := f.V4(), f.V6(); {
	case v4 && !v6:
		return "ip4"
	case v6 && !v4:
		return "ip6"
	}
	return "ip"
}

// String says which families are asked and why, for `nicproxy route`.
func (f Families) String() string {
	if !f.Known {
		return "A and AAAA (the NIC's addresses are not known)"
	}
	if f.none() {
		return "A and AAAA (no IPv4 address and no global IPv6 address with a route: the dial decides)"
	}
	var asks []string
	var why []string
	if f.Addr4 {
		asks = append(asks, "A")
		why = append(why, "an IPv4 address")
	} else {
		why = append(why, "no IPv4 address")
	}
	switch {
	case f.Addr6 && f.Route6:
		asks = append(asks, "AAAA")
		why = append(why, "a global IPv6 address and route")
	case f.Addr6:
		why = append(why, "a global IPv6 address but no IPv6 route")
	default:
		why = append(why, "no global IPv6 address")
	}
	return strings.Join(asks, " and ") + " (" + strings.Join(why, "; ") + ")"
}

// FamilyLinks is a Links that also knows each NIC's Families. LinkWatcher
// answers from memory, SystemLinks asks the kernel.
type FamilyLinks interface {
	Links
	// Families returns the NIC's families; an error when it cannot be read.
	Families(name string) (Families, error)
}

// Families implements FamilyLinks by asking the kernel.
func (SystemLinks) Families(name string) (Families, error) { return kernelFamilies(name) }

// Families returns what the Dialer's NIC can carry, from its Links when
// they report it (unknown otherwise, and when the NIC cannot be read).
func (d *Dialer) Families() Families {
	var links Links = SystemLinks{}
	if d.Links != nil {
		links = d.Links
	}
	fl, ok := links.(FamilyLinks)
	if !ok {
		return Families{}
	}
	f, err := fl.Families(d.NIC)
	if err != nil {
		return Families{}
	}
	return f
}

// globalIPv6 is an IPv6 address that can reach beyond the link: not
// link-local, loopback or multicast (unique local addresses count, as
// they do for glibc).
func globalIPv6(ip netip.Addr) bool {
	return ip.Is6() && !ip.IsLinkLocalUnicast() && !ip.IsLoopback() && !ip.IsMulticast() && !ip.IsUnspecified()
}
