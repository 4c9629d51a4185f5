package config

import (
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

func ruleKeys() []string {
	return []string{"name", "dst", "domain", "port", "src", "user", "listener", "unit", "cgroup", "uid", "program", "network", "via", "action"}
}

func (d *decoder) rules(dr *draft, n *yaml.Node) {
	items, _ := d.seq(n, "rules", false)
	names := map[string]int{}
	for i, it := range items {
		p := index("rules", i)
		fs, ok := d.fields(it, p, ruleKeys()...)
		if !ok {
			continue
		}
		r := Rule{Index: i, Name: p}
		nameNode := it
		if f, ok := fs["name"]; ok {
			if s, ok := d.scalar(f.val, p+".name"); ok {
				r.Name, nameNode = s, resolve(f.val)
				if s == "" {
					d.errorf(nameNode, p+".name", "cannot be empty; remove the field to call the rule %s", p)
				}
			}
		}
		if j, dup := names[r.Name]; dup {
			d.errorf(nameNode, p+".name", "duplicate rule name %q (also rules[%d])", r.Name, j)
		}
		names[r.Name] = i
		if f, ok := fs["dst"]; ok {
			r.Dst = d.prefixes(f.val, p+".dst", "empty list; remove the field to match any destination")
		}
		if f, ok := fs["src"]; ok {
			r.Src = d.prefixes(f.val, p+".src", "empty list; remove the field to match any client")
		}
		if f, ok := fs["domain"]; ok {
			r.Domains = d.domains(f.val, p+".domain")
		}
		if f, ok := fs["port"]; ok {
			r.Ports = d.ports(f.val, p+".port")
		}
		if f, ok := fs["user"]; ok {
			r.Users = d.names(f.val, p+".user", i, &dr.userRefs)
		}
		if f, ok := fs["listener"]; ok {
			r.Listeners = d.names(f.val, p+".listener", i, &dr.listenRefs)
		}
		if f, ok := fs["unit"]; ok {
			r.Units = d.strings(f.val, p+".unit", "unit", checkUnit)
		}
		if f, ok := fs["cgroup"]; ok {
			r.Cgroups = d.strings(f.val, p+".cgroup", "cgroup", checkCgroup)
		}
		if f, ok := fs["uid"]; ok {
			r.UIDs = d.uids(f.val, p+".uid")
		}
		if f, ok := fs["program"]; ok {
			r.Programs = d.strings(f.val, p+".program", "program", checkProgram)
		}
		if f, ok := fs["network"]; ok {
			if s, ok := d.scalar(f.val, p+".network"); ok {
				switch s {
				case "tcp":
					r.Network = NetworkTCP
				case "udp":
					r.Network = NetworkUDP
				default:
					d.errorf(resolve(f.val), p+".network", "unknown network %q (want one of: tcp, udp)", s)
				}
			}
		}
		vf, hasVia := fs["via"]
		af, hasAction := fs["action"]
		if hasAction {
			if s, ok := d.scalar(af.val, p+".action"); ok {
				if s != "reject" {
					d.errorf(resolve(af.val), p+".action", "unknown action %q (want: reject)", s)
				}
				r.Action = ActionReject
			}
		}
		switch {
		case hasVia && hasAction:
			d.errorf(it, p, "has both via and action; a rule either sends traffic via NICs or rejects it")
		case !hasVia && !hasAction:
			d.errorf(it, p, "needs via or action: reject")
		case hasVia:
			r.Via, _ = d.via(dr, vf.val, p+".via", i)
		}
		dr.cfg.Rules = append(dr.cfg.Rules, r)
		dr.ruleNodes = append(dr.ruleNodes, it)
	}
}

// names reads a list of user or listener names and records each as a ref,
// to be checked against the users and listeners once all are known.
func (d *decoder) names(n *yaml.Node, path string, rule int, refs *[]ref) []string {
	items, ok := d.seq(n, path, true)
	if ok && len(items) == 0 {
		d.errorf(resolve(n), path, "empty list; remove the field to match anyone")
	}
	var out []string
	for _, it := range items {
		if s, ok := d.scalar(it, path); ok {
			out = append(out, s)
			*refs = append(*refs, ref{name: s, node: it, path: path, rule: rule})
		}
	}
	return out
}

func (d *decoder) domains(n *yaml.Node, path string) DomainSet {
	items, ok := d.seq(n, path, true)
	if ok && len(items) == 0 {
		d.errorf(resolve(n), path, "empty list; remove the field to match any name")
	}
	var s DomainSet
	for _, it := range items {
		if v, ok := d.scalar(it, path); ok {
			if err := s.add(v); err != nil {
				d.errorf(it, path, "%v", err)
			}
		}
	}
	return s
}

func (d *decoder) ports(n *yaml.Node, path string) PortSet {
	items, ok := d.seq(n, path, true)
	if ok && len(items) == 0 {
		d.errorf(resolve(n), path, "empty list; remove the field to match any port")
	}
	var rs []PortRange
	for _, it := range items {
		if v, ok := d.scalar(it, path); ok {
			r, err := parsePortRange(v)
			if err != nil {
				d.errorf(it, path, "%v", err)
				continue
			}
			rs = append(rs, r)
		}
	}
	return NewPortSet(rs...)
}

func (d *decoder) users(dr *draft, n *yaml.Node) {
	items, ok := d.seq(n, "users", false)
	if !ok {
		return
	}
	dr.usersGiven = true
	if len(items) == 0 {
		d.errorf(resolve(n), "users", "empty list; remove the key to turn authentication off")
		return
	}
	names := map[string]int{}
	for i, it := range items {
		p := index("users", i)
		fs, ok := d.fields(it, p, "name", "password", "password_hash")
		if !ok {
			continue
		}
		var u User
		if f, ok := fs["name"]; !ok {
			d.errorf(it, p, "needs name")
		} else if s, ok := d.scalar(f.val, p+".name"); ok {
			if err := checkUserName(s); err != nil {
				d.errorf(resolve(f.val), p+".name", "%v", err)
			} else if j, dup := names[s]; dup {
				d.errorf(resolve(f.val), p+".name", "duplicate user %q (also users[%d])", s, j)
			}
			names[s] = i
			u.Name = s
		}
		pw, hasPw := fs["password"]
		h, hasHash := fs["password_hash"]
		switch {
		case hasPw && hasHash:
			d.errorf(it, p, "has both password and password_hash; keep one")
		case !hasPw && !hasHash:
			d.errorf(it, p, "needs password or password_hash")
		case hasPw:
			if s, ok := d.scalar(pw.val, p+".password"); ok {
				if len(s) > 255 {
					d.errorf(resolve(pw.val), p+".password", "longer than 255 bytes, the SOCKS5 limit")
				}
				u.Password = s
			}
		default:
			if s, ok := d.scalar(h.val, p+".password_hash"); ok {
				if err := checkBcrypt(s); err != nil {
					d.errorf(resolve(h.val), p+".password_hash", "%v", err)
				}
				u.PasswordHash = []byte(s)
			}
		}
		dr.cfg.Users = append(dr.cfg.Users, u)
	}
}

// checkUserName keeps names every client protocol can carry: SOCKS5 sends
// at most 255 bytes, and HTTP Basic splits user from password at the first
// ':'.
func checkUserName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("cannot be empty")
	case len(s) > 255:
		return fmt.Errorf("longer than 255 bytes, the SOCKS5 limit")
	case strings.Contains(s, ":"):
		return fmt.Errorf("%q: a user name cannot contain ':' (HTTP Basic auth splits at the first ':')", s)
	}
	return nil
}

// checkBcrypt validates the shape of a bcrypt hash. x/crypto's parser is
// lenient about the prefix and length, and a mangled hash would otherwise
// only show up as a user who can never log in.
func checkBcrypt(s string) error {
	const want = "not a bcrypt hash: want $2a$, $2b$ or $2y$, a two-digit cost, $, and 53 characters (60 in all); make one with `nicproxy hash-password`"
	if len(s) != 60 || s[0] != '$' || s[1] != '2' || !strings.ContainsRune("aby", rune(s[2])) || s[3] != '$' || s[6] != '$' {
		return fmt.Errorf("%s", want)
	}
	for _, c := range s[7:] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '/') {
			return fmt.Errorf("%s", want)
		}
	}
	if _, err := bcrypt.Cost([]byte(s)); err != nil {
		return fmt.Errorf("not a usable bcrypt hash: %v", err)
	}
	return nil
}
