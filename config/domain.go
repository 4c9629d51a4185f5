package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// DomainSet matches host names. An entry is either an exact name, or, when
// written with a leading dot, a suffix: ".corp.example" matches
// "a.corp.example" and "b.a.corp.example" but not "corp.example" itself
// (list both to match both), so a suffix never silently widens to the
// parent zone. Matching ignores case and a trailing dot; IP literals never
// match. The zero value is empty, which is how an absent field looks.
type DomainSet struct {
	exact  map[string]struct{}
	suffix map[string]struct{} // stored without the leading dot
}

// NewDomainSet compiles entries, refusing the first one that is not a
// valid host name or ".suffix".
func NewDomainSet(entries ...string) (DomainSet, error) {
	var s DomainSet
	for _, e := range entries {
		if err := s.add(e); err != nil {
			return DomainSet{}, err
		}
	}
	return s, nil
}

func (s *DomainSet) add(entry string) error {
	name := strings.TrimSuffix(strings.ToLower(entry), ".")
	isSuffix := strings.HasPrefix(name, ".")
	name = strings.TrimPrefix(name, ".")
	switch {
	case strings.HasPrefix(name, "*."):
		return fmt.Errorf("%q: wildcards are not used; write %q to match every name under %s", entry, name[1:], name[2:])
	case name == "":
		return fmt.Errorf("%q is not a domain name", entry)
	}
	if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		return fmt.Errorf("%q is an IP address; put it under dst", entry)
	}
	if err := checkHostname(name); err != nil {
		return fmt.Errorf("%q: %v", entry, err)
	}
	m := &s.exact
	if isSuffix {
		m = &s.suffix
	}
	if *m == nil {
		*m = map[string]struct{}{}
	}
	(*m)[name] = struct{}{}
	return nil
}

// Match reports whether host is in the set. The exact names are one map
// lookup; the suffixes one lookup per label of host.
func (s DomainSet) Match(host string) bool {
	if s.Len() == 0 {
		return false
	}
	h := strings.TrimSuffix(host, ".")
	if strings.ContainsFunc(h, func(r rune) bool { return 'A' <= r && r <= 'Z' }) {
		h = strings.ToLower(h)
	}
	if h == "" || strings.HasPrefix(h, "[") {
		return false
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return false
	}
	if _, ok := s.exact[h]; ok {
		return true
	}
	for i := 0; i < len(h); i++ {
		if h[i] == '.' {
			if _, ok := s.suffix[h[i+1:]]; ok {
				return true
			}
		}
	}
	return false
}

// Len is the number of distinct entries; 0 means the field was absent.
func (s DomainSet) Len() int { return len(s.exact) + len(s.suffix) }

// String lists the entries, exact names first, each group sorted.
func (s DomainSet) String() string {
	parts := sortedKeys(s.exact)
	for _, k := range sortedKeys(s.suffix) {
		parts = append(parts, "."+k)
	}
	return strings.Join(parts, ", ")
}

// checkHostname accepts what DNS and proxies carry: ASCII labels of
// letters, digits, '-' and '_' (seen in real service names), 1-63 bytes
// each, 253 in all.
func checkHostname(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("longer than 253 bytes")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("not a host name (each label is 1-63 bytes)")
		}
		for _, r := range label {
			switch {
			case r > 0x7f:
				return fmt.Errorf("write internationalised names in their xn-- (punycode) form")
			case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-', r == '_':
			default:
				return fmt.Errorf("not a host name (%q is not allowed)", r)
			}
		}
	}
	return nil
}

// sortedKeys gives maps a stable order for printing.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
