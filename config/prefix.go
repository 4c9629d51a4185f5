package config

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// PrefixSet is a set of IPv4 and IPv6 prefixes compiled once into sorted,
// disjoint lists, so Contains is a binary search. The zero value is empty,
// which is how an absent field looks.
type PrefixSet struct {
	v4, v6 []netip.Prefix
}

// NewPrefixSet compiles prefixes: host bits are cleared, 4in6 prefixes of
// /96 or longer become IPv4 prefixes, and prefixes inside others are
// dropped. Invalid prefixes are ignored.
func NewPrefixSet(prefixes ...netip.Prefix) PrefixSet {
	var s PrefixSet
	for _, p := range prefixes {
		if !p.IsValid() {
			continue
		}
		p = unmapPrefix(p).Masked()
		if p.Addr().Is4() {
			s.v4 = append(s.v4, p)
		} else {
			s.v6 = append(s.v6, p)
		}
	}
	s.v4, s.v6 = compact(s.v4), compact(s.v6)
	return s
}

// unmapPrefix turns ::ffff:a.b.c.d/N (N >= 96) into a.b.c.d/(N-96), because
// clients' 4in6 addresses are unmapped before matching.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// compact sorts prefixes by first address (shorter first on ties) and drops
// those inside an earlier one. Two CIDR prefixes either nest or are
// disjoint, so what is left is disjoint and ordered.
func compact(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := ps[:0]
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return slices.Clip(out)
}

// Contains reports whether a is in the set. A 4in6 address (::ffff:1.2.3.4,
// as dual-stack sockets report IPv4 clients) matches IPv4 prefixes; zones
// are ignored.
func (s PrefixSet) Contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.WithZone("").Unmap()
	list := s.v6
	if a.Is4() {
		list = s.v4
	}
	// The last prefix starting at or before a is the only candidate,
	// because the prefixes are disjoint.
	i := sort.Search(len(list), func(i int) bool { return a.Less(list[i].Addr()) })
	return i > 0 && list[i-1].Contains(a)
}

// Len is the number of compiled prefixes; 0 means the field was absent.
func (s PrefixSet) Len() int { return len(s.v4) + len(s.v6) }

// Prefixes returns the compiled prefixes, IPv4 first.
func (s PrefixSet) Prefixes() []netip.Prefix {
	return append(slices.Clone(s.v4), s.v6...)
}

// String lists the prefixes for summaries; a single address is printed
// without its /32 or /128.
func (s PrefixSet) String() string {
	parts := make([]string, 0, s.Len())
	for _, p := range s.Prefixes() {
		if p.IsSingleIP() {
			parts = append(parts, p.Addr().String())
		} else {
			parts = append(parts, p.String())
		}
	}
	return strings.Join(parts, ", ")
}

// parsePrefix reads one `dst`, `src` or `allow` entry: an IP (a /32 or
// /128) or a CIDR. hostBits reports a CIDR such as 10.1.2.3/8 whose host
// part is not zero, which usually means a typo.
func parsePrefix(s string) (p netip.Prefix, hostBits bool, err error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
		p = unmapPrefix(p)
		return p.Masked(), p.Masked() != p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, false, fmt.Errorf("%q: zones are not matched; drop the %%%s", s, a.Zone())
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), false, nil
}
