// Package cgroup pins every socket of a cgroup v2 to a NIC in the kernel:
// BPF programs at cgroup/connect4, connect6, sendmsg4, sendmsg6 and
// sock_create bind each socket with SO_BINDTOIFINDEX before the kernel
// routes it, so nothing is relayed and unmodified programs are pinned. A
// cgroup_skb/egress program is the guarantee behind those hooks: it passes
// a packet only when it leaves through loopback or the NIC its
// destination's rule names, and drops and counts the rest.
//
// Policy is the part that knows no kernel: the rules, compiled into the
// tables the programs look up (a port class per port, then an LPM trie from
// (port class, transport, destination prefix) to a verdict).
package cgroup

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Action is what a verdict does to a socket.
type Action uint32

// Actions. The values are what the programs read from the rules map.
const (
	// Pin binds the socket to Verdict.Index.
	Pin Action = 0
	// System leaves the socket unpinned: the routing table decides.
	System Action = 1
	// Reject makes connect(2) or sendmsg(2) fail with EPERM.
	Reject Action = 2
)

// String is the word used in messages.
func (a Action) String() string {
	switch a {
	case System:
		return "system"
	case Reject:
		return "reject"
	}
	return "pin"
}

// Verdict is what happens to a socket a rule matched.
type Verdict struct {
	Action Action
	NIC    string // for Pin: the NIC's name, for messages
	Index  int    // for Pin: the NIC's interface index
}

// String renders "ens160", "system" or "reject".
func (v Verdict) String() string {
	if v.Action == Pin {
		return v.NIC
	}
	return v.Action.String()
}

// Network restricts a rule to one transport.
type Network uint8

// Networks.
const (
	AnyNetwork Network = iota
	TCP                // SOCK_STREAM sockets
	UDP                // IPPROTO_UDP sockets
)

// PortRange is an inclusive range of destination ports.
type PortRange struct{ Lo, Hi uint16 }

// Rule is one rule the kernel can evaluate at connect or send time: by
// destination address, destination port and transport. An empty Dst or
// Ports matches any.
type Rule struct {
	Name    string
	Dst     []netip.Prefix
	Ports   []PortRange
	Network Network
	Verdict Verdict
}

// Policy is the ordered rules (first match wins) and the verdict for
// destinations no rule matches.
type Policy struct {
	Rules   []Rule
	Default Verdict

	// UDPAtFirstUse leaves UDP sockets unbound when they are made and
	// pins each at its first connect or send off the host. The kernel
	// lets a process without CAP_NET_RAW bind an unbound socket to a
	// device, but not re-bind a bound one: pinned at creation, such a
	// process's UDP socket could never reach loopback or another rule's
	// NIC. The price: the kernel routes an unconnected socket's first
	// datagram off the host before the program pins the socket, so that
	// datagram follows the routing table, and the egress program lets it
	// out only if the table chose the rule's NIC (else sendmsg fails
	// with EPERM and the next datagram leaves pinned). A connected socket
	// is pinned from the start.
	UDPAtFirstUse bool
}

// transports are the values of the transport byte in a rules key: the
// programs map a SOCK_STREAM socket to 0, IPPROTO_UDP to 1 and any other
// (ICMP datagram sockets, say) to 2.
const (
	transportTCP   = 0
	transportUDP   = 1
	transportOther = 2
	transports     = 3
)

// maxClasses bounds the port classes: the class is one byte of the key.
const maxClasses = 256

// entry is one element of the rules trie: destinations in Prefix (an IPv4
// prefix is stored as its IPv4-mapped IPv6 prefix), sent by a socket of
// Transport to a port of Class, get Verdict.
type entry struct {
	Class     uint8
	Transport uint8
	Prefix    netip.Prefix // always IPv6: IPv4 as ::ffff:a.b.c.d/(96+n)
	Verdict   Verdict
}

// tables is a Policy compiled for the kernel.
type tables struct {
	// portClass[p] is the class of destination port p (host order); only
	// non-zero classes need storing.
	portClass []uint8
	entries   []entry
}

// v4Mapped is ::ffff:0.0.0.0/96, where IPv4 destinations live in the trie.
var v4Mapped = netip.MustParsePrefix("::ffff:0.0.0.0/96")

// to16 turns an IPv4 prefix into its IPv4-mapped IPv6 prefix.
func to16(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if p.Addr().Is4() {
		return netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), p.Bits()+96)
	}
	return p
}

// compile turns first-match-wins rules into longest-prefix-match tables.
//
// For every address a, the longest trie prefix P containing a is nested in
// (or equal to) every rule prefix that contains a, because CIDR prefixes
// either nest or are disjoint. So the rules matching a are exactly the
// rules containing all of P, and P's verdict is the first such rule. Port
// and transport cannot be prefixes of the address, so they go first in the
// key and every (class, transport) pair gets its own set of prefixes.
func (p Policy) compile() (tables, error) {
	classes, portClass, err := p.portClasses()
	if err != nil {
		return tables{}, err
	}
	var t tables
	t.portClass = portClass
	for class, matches := range classes {
		for tr := uint8(0); tr < transports; tr++ {
			var eligible []Rule
			for i, r := range p.Rules {
				if matches[i] && r.Network.matches(tr) {
					eligible = append(eligible, r)
				}
			}
			// The root (any address) and the IPv4 space always get an
			// entry, so every lookup finds one and no IPv6 rule such as
			// ::/0 can reach IPv4 destinations through the mapped space.
			prefixes := []netip.Prefix{netip.PrefixFrom(netip.IPv6Unspecified(), 0), v4Mapped}
			for _, r := range eligible {
				for _, d := range r.Dst {
					prefixes = append(prefixes, to16(d))
				}
			}
			slices.SortFunc(prefixes, func(a, b netip.Prefix) int {
				if c := a.Addr().Compare(b.Addr()); c != 0 {
					return c
				}
				return a.Bits() - b.Bits()
			})
			prefixes = slices.Compact(prefixes)
			for _, pre := range prefixes {
				t.entries = append(t.entries, entry{
					Class: uint8(class), Transport: tr, Prefix: pre,
					Verdict: p.verdictFor(eligible, pre),
				})
			}
		}
	}
	return t, nil
}

// verdictFor is the verdict of the first rule containing all of pre.
func (p Policy) verdictFor(eligible []Rule, pre netip.Prefix) Verdict {
	inV4 := v4Mapped.Bits() <= pre.Bits() && v4Mapped.Contains(pre.Addr())
	for _, r := range eligible {
		if len(r.Dst) == 0 {
			return r.Verdict
		}
		for _, d := range r.Dst {
			// A native IPv6 prefix (::/0, say) matches IPv6
			// destinations only, as it does in the proxy.
			if d.Addr().Is4() != inV4 {
				continue
			}
			d = to16(d)
			if d.Bits() <= pre.Bits() && d.Contains(pre.Addr()) {
				return r.Verdict
			}
		}
	}
	return p.Default
}

func (n Network) matches(transport uint8) bool {
	switch n {
	case TCP:
		return transport == transportTCP
	case UDP:
		return transport == transportUDP
	}
	return true
}

// portClasses splits the port space where any rule's port ranges begin
// or end, and gives each distinct set of matching rules a class number;
// class 0 is the set of port 0's, so untouched array slots are right.
func (p Policy) portClasses() (classes [][]bool, portClass []uint8, err error) {
	cuts := []int{0, 65536}
	for _, r := range p.Rules {
		for _, pr := range r.Ports {
			cuts = append(cuts, int(pr.Lo), int(pr.Hi)+1)
		}
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	portClass = make([]uint8, 65536)
	ids := map[string]int{}
	for i := 0; i+1 < len(cuts); i++ {
		lo, hi := cuts[i], cuts[i+1] // [lo, hi)
		matches := make([]bool, len(p.Rules))
		var sig strings.Builder
		for j, r := range p.Rules {
			matches[j] = len(r.Ports) == 0 || slices.ContainsFunc(r.Ports, func(pr PortRange) bool {
				return int(pr.Lo) <= lo && lo <= int(pr.Hi)
			})
			if matches[j] {
				sig.WriteByte('1')
			} else {
				sig.WriteByte('0')
			}
		}
		id, ok := ids[sig.String()]
		if !ok {
			id = len(classes)
			if id >= maxClasses {
				return nil, nil, fmt.Errorf("the rules' ports split the port space into more than %d classes; use fewer distinct port ranges", maxClasses)
			}
			ids[sig.String()] = id
			classes = append(classes, matches)
		}
		for port := lo; port < hi; port++ {
			portClass[port] = uint8(id)
		}
	}
	return classes, portClass, nil
}

// otherVerdict is the one verdict every destination gets for a socket of
// the "other" transport (ICMP, raw: no port, so port 0's class), or ok
// false when the rules give different destinations different verdicts.
func (t tables) otherVerdict() (v Verdict, ok bool) {
	class := t.portClass[0]
	first := true
	for _, e := range t.entries {
		if e.Class != class || e.Transport != transportOther {
			continue
		}
		if first {
			v, first = e.Verdict, false
		} else if e.Verdict != v {
			return Verdict{}, false
		}
	}
	return v, !first
}

// lookup is what the programs decide for a socket of transport network
// connecting or sending to dst (an off-host address): the Go twin of the
// kernel's two lookups, for tests.
func (t tables) lookup(dst netip.AddrPort, network Network) Verdict {
	tr := uint8(transportOther)
	switch network {
	case TCP:
		tr = transportTCP
	case UDP:
		tr = transportUDP
	}
	addr := netip.AddrFrom16(dst.Addr().As16())
	class := t.portClass[dst.Port()]
	best := -1
	for i, e := range t.entries {
		if e.Class == class && e.Transport == tr && e.Prefix.Contains(addr) &&
			(best < 0 || e.Prefix.Bits() > t.entries[best].Prefix.Bits()) {
			best = i
		}
	}
	return t.entries[best].Verdict
}

// Probe is an off-host destination the policy pins for a UDP socket,
// and the verdict: what a self-test connects a UDP socket to (which sends
// nothing) to see that the pin takes. local are the destinations the
// programs leave alone; ok is false when the policy pins nothing.
func (p Policy) Probe(local []netip.Prefix) (dst netip.AddrPort, v Verdict, ok bool) {
	t, err := p.compile()
	if err != nil {
		return netip.AddrPort{}, Verdict{}, false
	}
	var candidates []netip.AddrPort
	for _, r := range p.Rules {
		port := uint16(9)
		if len(r.Ports) > 0 {
			port = r.Ports[0].Lo
		}
		for _, d := range r.Dst {
			candidates = append(candidates, netip.AddrPortFrom(d.Masked().Addr().Next(), port))
		}
	}
	for _, a := range []string{"192.0.2.1", "198.51.100.1", "203.0.113.1", "10.255.255.1", "2001:db8::1"} {
		candidates = append(candidates, netip.AddrPortFrom(netip.MustParseAddr(a), 9))
	}
	for _, c := range candidates {
		if !c.Addr().IsValid() || c.Addr().IsLoopback() || c.Addr().IsUnspecified() ||
			slices.ContainsFunc(local, func(l netip.Prefix) bool { return l.Contains(c.Addr()) }) {
			continue
		}
		if v := t.lookup(c, UDP); v.Action == Pin {
			return c, v, true
		}
	}
	return netip.AddrPort{}, Verdict{}, false
}
