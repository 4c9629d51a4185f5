package execpin

import (
	"errors"
	"fmt"
	"strings"

	"nicproxy/bind"
	"nicproxy/bind/cgroup"
	"nicproxy/config"
)

// Policy turns a configuration into what the kernel can enforce at
// connect and send time. The kernel sees the destination address and port
// and the socket's transport, but not the name a program looked up, nor a
// proxy user, listener or client: rules that need those are skipped, each
// with a warning that names it. A failover list pins to its first NIC that
// is present and up now; when none is, it is an error, not a silent
// fallback to the routing table.
func Policy(cfg *config.Config, links bind.Links) (cgroup.Policy, []string, error) {
	var p cgroup.Policy
	var warnings []string
	for _, r := range cfg.Rules {
		if r.NeedsClient() {
			// Skipping would be wrong: the rule was written for this one
			// command, and exec has no other clients to tell it from.
			return cgroup.Policy{}, nil, fmt.Errorf("rule %d %s matches by %s: exec pins the one command it runs, so there is no local client to tell apart; drop the key for exec, or run the program under `nicproxy serve` with this rule", r.Index, r.Name, strings.Join(r.ClientKeys(), " and "))
		}
		var needs []string
		if r.Domains.Len() > 0 {
			needs = append(needs, "domain")
		}
		if len(r.Users) > 0 {
			needs = append(needs, "user")
		}
		if len(r.Listeners) > 0 {
			needs = append(needs, "listener")
		}
		if r.Src.Len() > 0 {
			needs = append(needs, "src")
		}
		if len(needs) > 0 {
			warnings = append(warnings, fmt.Sprintf("rule %d %s skipped: it matches by %s, which the kernel cannot see when a program connects", r.Index, r.Name, strings.Join(needs, " and ")))
			continue
		}
		v, warn, err := verdict(r.Action == config.ActionReject, r.Via, links)
		if err != nil {
			return cgroup.Policy{}, nil, fmt.Errorf("rule %d %s: %w", r.Index, r.Name, err)
		}
		if warn != "" {
			warnings = append(warnings, fmt.Sprintf("rule %d %s: %s", r.Index, r.Name, warn))
		}
		rule := cgroup.Rule{Name: r.Name, Dst: r.Dst.Prefixes(), Verdict: v}
		for _, pr := range r.Ports.Ranges() {
			rule.Ports = append(rule.Ports, cgroup.PortRange{Lo: pr.Lo, Hi: pr.Hi})
		}
		switch r.Network {
		case config.NetworkTCP:
			rule.Network = cgroup.TCP
		case config.NetworkUDP:
			rule.Network = cgroup.UDP
		}
		p.Rules = append(p.Rules, rule)
	}
	v, warn, err := verdict(false, cfg.Default, links)
	if err != nil {
		return cgroup.Policy{}, nil, fmt.Errorf("default: %w", err)
	}
	if warn != "" {
		warnings = append(warnings, "default: "+warn)
	}
	p.Default = v
	return p, warnings, nil
}

// errNoNICUp is a pin whose NICs are all missing or down.
var errNoNICUp = errors.New("none of its NICs is present and up")

func verdict(reject bool, via config.Via, links bind.Links) (cgroup.Verdict, string, error) {
	if reject {
		return cgroup.Verdict{Action: cgroup.Reject}, "", nil
	}
	if via.Mode == config.ViaSystem {
		return cgroup.Verdict{Action: cgroup.System}, "", nil
	}
	var seen []string
	for _, name := range via.NICs {
		l, err := links.Link(name)
		if err != nil {
			seen = append(seen, name+" missing")
			continue
		}
		if !l.Up {
			seen = append(seen, name+" down")
			continue
		}
		warn := ""
		if via.Mode == config.ViaBalance {
			warn = fmt.Sprintf("exec does not balance; every socket is pinned to %s", name)
		}
		return cgroup.Verdict{Action: cgroup.Pin, NIC: name, Index: l.Index}, warn, nil
	}
	return cgroup.Verdict{}, "", fmt.Errorf("%w (%s)", errNoNICUp, strings.Join(seen, ", "))
}
