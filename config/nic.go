package config

import (
	"net/netip"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// interfaces decodes the per-NIC options. A NIC may be declared with no
// options at all (`ens200:`), which is how a NIC that does not exist yet is
// made a known name.
func (d *decoder) interfaces(dr *draft, n *yaml.Node) {
	ps, ok := d.pairs(n, "interfaces")
	if !ok {
		return
	}
	for _, f := range ps {
		name := f.key.Value
		p := join("interfaces", name)
		if err := checkNICName(name); err != nil {
			d.errorf(f.key, p, "%v", err)
			continue
		}
		it := Interface{Name: name}
		if !isNull(f.val) {
			d.interfaceOptions(&it, f.val, p)
		}
		dr.cfg.Interfaces[name] = it
		dr.ifaceKeys = append(dr.ifaceKeys, f.key)
	}
}

func (d *decoder) interfaceOptions(it *Interface, n *yaml.Node, p string) {
	fs, ok := d.fields(n, p, "source", "mark", "dns", "check")
	if !ok {
		return
	}
	if f, ok := fs["source"]; ok {
		if s, ok := d.scalar(f.val, p+".source"); ok {
			a, err := parseSource(s)
			if err != nil {
				d.errorf(resolve(f.val), p+".source", "%v", err)
			}
			it.Source = a
		}
	}
	if f, ok := fs["mark"]; ok {
		if s, ok := d.scalar(f.val, p+".mark"); ok {
			m, err := parseMark(s)
			if err != nil {
				d.errorf(resolve(f.val), p+".mark", "%v", err)
			}
			it.Mark, it.HasMark = m, err == nil
		}
	}
	if f, ok := fs["dns"]; ok {
		if v := resolve(f.val); v.Kind == yaml.ScalarNode && v.Value == DNSAuto {
			it.DNSAuto = true
		} else {
			it.DNS = d.dnsServers(f.val, p+".dns")
		}
	}
	if f, ok := fs["check"]; ok {
		it.Check = d.check(f.val, p+".check")
	}
}

// dnsServers decodes a list of nameservers (a bare IP gets port 53).
func (d *decoder) dnsServers(n *yaml.Node, p string) []netip.AddrPort {
	items, ok := d.seq(n, p, true)
	if ok && len(items) == 0 {
		d.errorf(resolve(n), p, "empty list; remove the field (or say auto) to use the NIC's own or the system's nameservers")
	}
	var servers []netip.AddrPort
	for i, e := range items {
		ip := index(p, i)
		if s, ok := d.scalar(e, ip); ok {
			ap, err := parseDNS(s)
			if err != nil {
				d.errorf(e, ip, "%v", err)
				continue
			}
			servers = append(servers, ap)
		}
	}
	return servers
}

func (d *decoder) check(n *yaml.Node, p string) *Check {
	fs, ok := d.fields(n, p, "target", "interval")
	if !ok {
		return nil
	}
	c := &Check{Interval: defaultCheckInterval}
	f, ok := fs["target"]
	if !ok {
		d.errorf(resolve(n), p, "needs target (host:port to connect to through this NIC)")
	} else if s, ok := d.scalar(f.val, p+".target"); ok {
		if err := checkTarget(s); err != nil {
			d.errorf(resolve(f.val), p+".target", "%v", err)
		}
		c.Target = s
	}
	if f, ok := fs["interval"]; ok {
		if v, ok := d.duration(f.val, p+".interval"); ok {
			c.Interval = v
		}
	}
	return c
}

func strategies() []string {
	return []string{string(StrategyRoundRobin), string(StrategyLeastConnections), string(StrategySticky)}
}

const viaWant = `a NIC, a list of NICs (failover), "system" or {balance: [NIC, NIC], strategy: ...}`

// via decodes a `via` or `default` value. NIC names are recorded as refs
// and checked once `interfaces` and the flags are known.
func (d *decoder) via(dr *draft, n *yaml.Node, path string, rule int) (Via, bool) {
	n = resolve(n)
	switch {
	case isNull(n):
		d.errorf(n, path, "needs a value: %s", viaWant)
	case n.Kind == yaml.ScalarNode:
		if n.Value == "system" {
			return Via{Mode: ViaSystem}, true
		}
		if nics, ok := d.nicList(dr, []*yaml.Node{n}, path, rule); ok {
			return Via{Mode: ViaPinned, NICs: nics}, true
		}
	case n.Kind == yaml.SequenceNode:
		items, _ := d.seq(n, path, false)
		if len(items) == 0 {
			d.errorf(n, path, "empty list; want %s", viaWant)
			return Via{}, false
		}
		if nics, ok := d.nicList(dr, items, path, rule); ok {
			return Via{Mode: ViaPinned, NICs: nics}, true
		}
	case n.Kind == yaml.MappingNode:
		return d.balance(dr, n, path, rule)
	}
	return Via{}, false
}

// balance decodes {balance: [...], strategy: ...}. It needs two NICs or
// more: balancing over one NIC is a plain via in disguise, and more likely
// a list that lost an entry than an intent.
func (d *decoder) balance(dr *draft, n *yaml.Node, path string, rule int) (Via, bool) {
	fs, _ := d.fields(n, path, "balance", "strategy")
	v := Via{Mode: ViaBalance, Strategy: StrategyRoundRobin}
	ok := true
	if f, has := fs["strategy"]; has {
		s, good := d.scalar(f.val, path+".strategy")
		switch {
		case !good:
			ok = false
		case !slices.Contains(strategies(), s):
			d.errorf(resolve(f.val), path+".strategy", "unknown strategy %q (want one of: %s)", s, strings.Join(strategies(), ", "))
			ok = false
		default:
			v.Strategy = Strategy(s)
		}
	}
	f, has := fs["balance"]
	if !has {
		d.errorf(n, path, "needs balance: [NIC, NIC, ...]")
		return Via{}, false
	}
	bp := path + ".balance"
	items, good := d.seq(f.val, bp, false)
	if !good {
		return Via{}, false
	}
	if len(items) < 2 {
		d.errorf(resolve(f.val), bp, "needs at least 2 NICs to balance over; for one NIC write via: NIC")
		return Via{}, false
	}
	nics, good := d.nicList(dr, items, bp, rule)
	if !good || !ok {
		return Via{}, false
	}
	v.NICs = nics
	return v, true
}

// nicList reads NIC names, refusing repeats (a NIC tried twice in one
// failover list is a typo for another) and "system" inside a list (an
// unpinned fallback would defeat failing closed).
func (d *decoder) nicList(dr *draft, items []*yaml.Node, path string, rule int) ([]string, bool) {
	var nics []string
	ok := true
	for _, it := range items {
		name, good := d.scalar(it, path)
		switch {
		case !good:
			ok = false
		case name == "system" && len(items) > 1:
			d.errorf(it, path, `"system" cannot be part of a list: it would dial unpinned when a NIC fails; use it alone`)
			ok = false
		case slices.Contains(nics, name):
			d.errorf(it, path, "%s is listed twice", name)
			ok = false
		default:
			nics = append(nics, name)
			dr.nicRefs = append(dr.nicRefs, ref{name: name, node: it, path: path, rule: rule})
		}
	}
	return nics, ok
}
