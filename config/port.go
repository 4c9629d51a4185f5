package config

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// PortRange is an inclusive range of ports; a single port has Lo == Hi.
type PortRange struct {
	Lo, Hi uint16
}

// String prints "443" or "8000-8999".
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// PortSet is a set of ports compiled once into sorted, merged ranges, so
// Contains is a binary search. The zero value is empty, which is how an
// absent field looks.
type PortSet struct {
	ranges []PortRange
}

// NewPortSet compiles ranges, merging overlapping and adjacent ones.
// Reversed ranges are ignored.
func NewPortSet(ranges ...PortRange) PortSet {
	rs := slices.DeleteFunc(slices.Clone(ranges), func(r PortRange) bool { return r.Lo > r.Hi })
	slices.SortFunc(rs, func(a, b PortRange) int { return int(a.Lo) - int(b.Lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && int(r.Lo) <= int(out[n-1].Hi)+1 {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return PortSet{ranges: slices.Clip(out)}
}

// Contains reports whether p is in the set.
func (s PortSet) Contains(p uint16) bool {
	i := sort.Search(len(s.ranges), func(i int) bool { return s.ranges[i].Hi >= p })
	return i < len(s.ranges) && s.ranges[i].Lo <= p
}

// Len is the number of merged ranges; 0 means the field was absent.
func (s PortSet) Len() int { return len(s.ranges) }

// Ranges returns the merged ranges in order.
func (s PortSet) Ranges() []PortRange { return slices.Clone(s.ranges) }

// String lists the ranges, such as "443, 8000-8999".
func (s PortSet) String() string {
	parts := make([]string, len(s.ranges))
	for i, r := range s.ranges {
		parts[i] = r.String()
	}
	return strings.Join(parts, ", ")
}

// parsePortRange reads a `port` entry: 443 or "8000-8999".
func parsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	if !isRange {
		p, err := parsePort(strings.TrimSpace(s))
		if err != nil {
			return PortRange{}, fmt.Errorf("%v (want a port or a range such as 8000-8999)", err)
		}
		return PortRange{p, p}, nil
	}
	a, err := parsePort(strings.TrimSpace(lo))
	if err == nil {
		var b uint16
		if b, err = parsePort(strings.TrimSpace(hi)); err == nil {
			if a > b {
				return PortRange{}, fmt.Errorf("range %q is reversed; write %d-%d", s, b, a)
			}
			return PortRange{a, b}, nil
		}
	}
	return PortRange{}, fmt.Errorf("range %q: %v", s, err)
}
