package config

import (
	"fmt"
	"slices"
	"strings"
)

// validate applies the flags, fills Default, and runs the checks that need
// more than one section, the host's NIC list, or the flags. The flags are
// applied first so that the checks judge what will actually run: a file
// with an open listener is fine under -l 127.0.0.1:1080, and -i NIC makes
// the rules, and any NIC they name, irrelevant.
func (d *decoder) validate(dr *draft, opts Options, embedded bool) {
	cfg := dr.cfg
	have := "none"
	if len(opts.Interfaces) > 0 {
		have = strings.Join(opts.Interfaces, ", ")
	}
	known := func(nic string) bool {
		_, declared := cfg.Interfaces[nic]
		return declared || slices.Contains(opts.Interfaces, nic)
	}

	loopback := func(nic string) string {
		return fmt.Sprintf("%s is the loopback interface: nothing pinned to it leaves the host; name a NIC (have: %s)", nic, have)
	}

	keepRules := opts.InterfaceOverride == ""
	switch nic := opts.InterfaceOverride; {
	case nic == "system":
		d.flagf("-i", `"system" is not a NIC; -i pins every connection to one NIC`)
	case slices.Contains(opts.Loopback, nic):
		d.flagf("-i", "%s", loopback(nic))
	case nic != "" && !known(nic):
		d.flagf("-i", "unknown interface %q (have: %s)", nic, have)
	}
	switch {
	case !keepRules:
		cfg.Rules, dr.ruleNodes = nil, nil
		cfg.Default = Via{Mode: ViaPinned, NICs: []string{opts.InterfaceOverride}}
	case dr.defaultNode != nil:
	case opts.DefaultRouteInterface != "":
		cfg.Default = Via{Mode: ViaPinned, NICs: []string{opts.DefaultRouteInterface}}
		cfg.DefaultFromRoute = true
	case embedded:
		// There is no file to edit, so point at the flag instead.
		d.errs = append(d.errs, &Error{File: d.file, Path: "default",
			Msg: "no NIC carries a default route; pin one with -i NIC, or give a config file with -c FILE"})
	default:
		d.errs = append(d.errs, &Error{File: d.file, Line: 1, Column: 1, Path: "default",
			Msg: `not set and no NIC carries a default route; name one (or "system")`})
	}
	if cfg.Resolver.Via == "" || !keepRules {
		// Without rules (-i) no dst rule needs a lookup; with a file that
		// names none, the default's first NIC is the one most flows take.
		cfg.Resolver.Via = ResolverViaSystem
		if cfg.Default.Mode != ViaSystem && len(cfg.Default.NICs) > 0 {
			cfg.Resolver.Via = cfg.Default.NICs[0]
		}
	}
	if keepRules {
		for _, r := range dr.nicRefs {
			switch {
			case slices.Contains(opts.Loopback, r.name):
				d.errorf(r.node, r.path, "%s", loopback(r.name))
			case !known(r.name):
				d.errorf(r.node, r.path, "unknown interface %q (have: %s)", r.name, have)
			}
		}
	}
	for _, k := range dr.ifaceKeys {
		switch {
		case slices.Contains(opts.Loopback, k.Value):
			d.errorf(k, "interfaces."+k.Value, "%s", loopback(k.Value))
		case !slices.Contains(opts.Interfaces, k.Value):
			d.warnf(k, "interfaces."+k.Value, "not present on this host now; it will be used when it appears")
		}
	}

	fileListeners := listenerNames(cfg.Listeners)
	if l := opts.ListenOverride; l != "" {
		if ap, err := parseListenAddr(l); err != nil {
			d.flagf("-l", "%v", err)
		} else {
			cfg.Listeners = []Listener{{Name: l, Addr: ap, Protocol: ProtocolMixed}}
			dr.listenNodes, dr.listenText = nil, []string{l}
		}
	}
	if keepRules {
		d.checkRefs(dr, fileListeners, opts.ListenOverride)
	}
	d.checkOpen(dr)
	if cfg.LocalDestinations == "" {
		cfg.LocalDestinations, cfg.LocalDestinationsDefaulted = defaultLocalPolicy(cfg, dr.usersGiven), true
	}
	if a := cfg.Admin; a != nil {
		for i, l := range cfg.Listeners {
			if msg := addrClash(a.Addr, l.Addr, dr.listenText[i]); msg != "" {
				d.errorf(dr.adminNode, "admin.addr", "%s %s", dr.adminText, msg)
				break
			}
		}
	}
}

// checkRefs checks the names rules use against what defines them, and
// warns about rules that hide the ones after them.
func (d *decoder) checkRefs(dr *draft, fileListeners []string, listenFlag string) {
	cfg := dr.cfg
	active := listenerNames(cfg.Listeners)
	for _, r := range dr.listenRefs {
		switch {
		case !slices.Contains(fileListeners, r.name):
			d.errorf(r.node, r.path, "unknown listener %q (have: %s)", r.name, strings.Join(fileListeners, ", "))
		case !slices.Contains(active, r.name):
			d.warnf(r.node, r.path, "listener %q is replaced by -l %s; this rule never matches", r.name, listenFlag)
		}
	}
	// Without users, a rule's user is a SOCKS4 user id, which is any name.
	if dr.usersGiven {
		var users []string
		for _, u := range cfg.Users {
			users = append(users, u.Name)
		}
		for _, r := range dr.userRefs {
			if !slices.Contains(users, r.name) {
				d.errorf(r.node, r.path, "unknown user %q (have: %s)", r.name, strings.Join(users, ", "))
			}
		}
	}
	for i, r := range cfg.Rules {
		if i < len(cfg.Rules)-1 && matchesAll(r) {
			d.warnf(dr.ruleNodes[i], index("rules", i), "matches every connection; the rules after it are never reached")
		}
	}
}

func matchesAll(r Rule) bool {
	return r.Dst.Len() == 0 && r.Domains.Len() == 0 && r.Ports.Len() == 0 && r.Src.Len() == 0 &&
		len(r.Users) == 0 && len(r.Listeners) == 0 && r.Network == NetworkAny && !r.NeedsClient()
}

// checkOpen refuses listeners reachable from the network that anyone could
// use: an open proxy on a LAN is an incident, and a missing `users` is far
// more often an oversight than an intent. The unspecified address counts
// as reachable.
func (d *decoder) checkOpen(dr *draft) {
	cfg := dr.cfg
	if len(cfg.Users) > 0 || dr.usersGiven || cfg.Allow.Len() > 0 {
		return
	}
	for i, l := range cfg.Listeners {
		if l.Addr.Addr().IsLoopback() {
			continue
		}
		msg := fmt.Sprintf("%s is not a loopback address; set users or allow so it is not an open proxy", dr.listenText[i])
		if i < len(dr.listenNodes) && dr.listenNodes[i] != nil {
			d.errorf(dr.listenNodes[i], index("listen", i)+".addr", "%s", msg)
		} else {
			d.flagf("-l", "%s", msg)
		}
	}
}

// defaultLocalPolicy allows destinations on the proxy host only for a
// one-person local proxy: every listener on loopback and no users. Its
// client can reach the host's services directly anyway; anyone else
// reaching them through the proxy would get past the host's firewall.
func defaultLocalPolicy(cfg *Config, usersGiven bool) LocalPolicy {
	if len(cfg.Users) > 0 || usersGiven {
		return LocalDeny
	}
	for _, l := range cfg.Listeners {
		if !l.Addr.Addr().IsLoopback() {
			return LocalDeny
		}
	}
	return LocalAllow
}

// flagf records a problem with a flag: it has no file position.
func (d *decoder) flagf(flag, format string, args ...any) {
	d.errs = append(d.errs, &Error{Path: flag, Msg: fmt.Sprintf(format, args...)})
}

func listenerNames(ls []Listener) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Name
	}
	return out
}
