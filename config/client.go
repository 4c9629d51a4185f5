package config

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The rule keys in this file match the local program behind a connection
// (its systemd unit, cgroup, user id, executable), which the proxy learns
// from the kernel per connection; config only checks how they are spelled.

// NeedsClient reports whether the rule matches by who the local client
// is (unit, cgroup, uid or program), which the proxy must ask the kernel.
func (r *Rule) NeedsClient() bool {
	return len(r.Units) > 0 || len(r.Cgroups) > 0 || len(r.UIDs) > 0 || len(r.Programs) > 0
}

// ClientKeys names the client keys the rule uses, in file order, for
// messages that say a rule cannot be applied somewhere.
func (r *Rule) ClientKeys() []string {
	var keys []string
	for _, k := range []struct {
		name string
		set  bool
	}{{"unit", len(r.Units) > 0}, {"cgroup", len(r.Cgroups) > 0}, {"uid", len(r.UIDs) > 0}, {"program", len(r.Programs) > 0}} {
		if k.set {
			keys = append(keys, k.name)
		}
	}
	return keys
}

// MatchCgroup reports whether path (a cgroup v2 path such as
// /system.slice/restic.service) is one of the rule's cgroups or below one.
func (r *Rule) MatchCgroup(path string) bool {
	for _, c := range r.Cgroups {
		if c == "/" || path == c || strings.HasPrefix(path, c) && len(path) > len(c) && path[len(c)] == '/' {
			return true
		}
	}
	return false
}

// MatchUID reports whether uid is one of the rule's.
func (r *Rule) MatchUID(uid uint32) bool { return slices.Contains(r.UIDs, uid) }

// strings reads a non-empty list of strings, each passing check.
func (d *decoder) strings(n *yaml.Node, path, what string, check func(string) error) []string {
	items, ok := d.seq(n, path, true)
	if ok && len(items) == 0 {
		d.errorf(resolve(n), path, "empty list; remove the field to match any %s", what)
	}
	var out []string
	for _, it := range items {
		if s, ok := d.scalar(it, path); ok {
			if err := check(s); err != nil {
				d.errorf(it, path, "%v", err)
				continue
			}
			out = append(out, s)
		}
	}
	return out
}

// uids reads a list of numeric user ids. Names are refused rather than
// looked up: config knows nothing of the host, and a name resolved at load
// time would silently keep the old uid if the account changed.
func (d *decoder) uids(n *yaml.Node, path string) []uint32 {
	items, ok := d.seq(n, path, true)
	if ok && len(items) == 0 {
		d.errorf(resolve(n), path, "empty list; remove the field to match any user")
	}
	var out []uint32
	for _, it := range items {
		s, ok := d.scalar(it, path)
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(s, 10, 32)
		switch {
		case err != nil && s != "" && !strings.HasPrefix(s, "-") && strings.Trim(s, "0123456789") != "":
			d.errorf(it, path, "%q is not a numeric user id (find it with `id -u %s`)", s, s)
		case err != nil || v == 1<<32-1:
			d.errorf(it, path, "%q: a user id is 0-4294967294", s)
		default:
			out = append(out, uint32(v))
		}
	}
	return out
}

// checkUnit accepts a systemd service or scope name: those are the units
// a cgroup path names (slices hold units; they run nothing themselves).
func checkUnit(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("cannot be empty")
	case strings.ContainsAny(s, "/ \t"):
		return fmt.Errorf("%q: a unit name has no '/' or spaces (cgroup paths go under cgroup)", s)
	case !strings.HasSuffix(s, ".service") && !strings.HasSuffix(s, ".scope"):
		return fmt.Errorf("%q: want a unit ending in .service or .scope (such as apt-daily.service)", s)
	case s == ".service" || s == ".scope":
		return fmt.Errorf("%q: the unit has no name", s)
	}
	return nil
}

// checkCgroup accepts an absolute, clean cgroup v2 path, as
// /proc/PID/cgroup and systemd-cgls print it.
func checkCgroup(s string) error {
	switch {
	case !strings.HasPrefix(s, "/"):
		return fmt.Errorf("%q: want an absolute cgroup path such as /system.slice/restic.service", s)
	case path.Clean(s) != s:
		return fmt.Errorf("%q: write it as %s", s, path.Clean(s))
	case strings.HasPrefix(s, "/sys/fs/cgroup"):
		return fmt.Errorf("%q: give the path inside the cgroup hierarchy, without its mount point (%s)", s, strings.TrimPrefix(s, "/sys/fs/cgroup"))
	}
	return nil
}

// checkProgram accepts an executable's file name, the way the kernel
// links it from /proc/PID/exe, without its directory.
func checkProgram(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("cannot be empty")
	case strings.Contains(s, "/"):
		return fmt.Errorf("%q: give the program's file name without its directory (%s)", s, path.Base(s))
	case s == "." || s == "..":
		return fmt.Errorf("%q is not a program name", s)
	}
	return nil
}
