package main

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"
)

// execOptions are exec's flags.
type execOptions struct {
	file, nic, user    string
	cgroup, pin, unpin string
	dns                addrList // --dns: CMD's nameservers, reached through the pinned NIC

	// resolvConf, when set, is the resolv.conf CMD sees instead of the
	// host's (whose nameserver is a resolver on the host).
	resolvConf string
}

// resolvHelper is the hidden subcommand exec runs as CMD's first step when
// CMD needs a resolv.conf of its own: in a new mount namespace, it mounts
// that file over /etc/resolv.conf, takes on --user, and becomes CMD.
const resolvHelper = "__exec-with-resolv-conf"

func execFlags() (*flag.FlagSet, *execOptions) {
	o := &execOptions{}
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	fs.StringVar(&o.file, "c", "", "config `FILE` whose dst rules and default pin the sockets (default: the embedded default)")
	fs.StringVar(&o.nic, "i", "", "pin every socket to `NIC`")
	fs.StringVar(&o.user, "user", "", "run CMD as `USER` (name or uid), after the programs are attached")
	fs.StringVar(&o.cgroup, "cgroup", "", "attach to the existing cgroup v2 `PATH` instead of running CMD")
	fs.StringVar(&o.pin, "pin", "", "with --cgroup: pin the programs under `DIR` (bpffs) so they outlive exec")
	fs.StringVar(&o.unpin, "unpin", "", "detach and remove programs pinned under `DIR`")
	fs.Var(&o.dns, "dns", "nameserver `ADDR` for CMD's resolv.conf, asked through the pinned NIC (repeatable); for a host whose only resolver is a loopback stub")
	return fs, o
}

// addrList is a repeatable flag of IP addresses.
type addrList []netip.Addr

func (l *addrList) String() string {
	s := make([]string, len(*l))
	for i, a := range *l {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func (l *addrList) Set(v string) error {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return fmt.Errorf("%q is not an IP address (a resolv.conf nameserver is on port 53)", v)
	}
	*l = append(*l, a.Unmap())
	return nil
}

// check validates the flag combination; cmd is what follows the flags.
func (o *execOptions) check(cmd []string) error {
	switch {
	case o.unpin != "":
		if o.cgroup != "" || o.pin != "" || o.file != "" || o.nic != "" || o.user != "" || len(o.dns) > 0 || len(cmd) > 0 {
			return usageError{"--unpin DIR takes nothing else"}
		}
	case o.cgroup != "":
		if len(o.dns) > 0 {
			return usageError{"--dns sets a CMD's resolv.conf; --cgroup runs none"}
		}
		if len(cmd) > 0 {
			return usageError{"--cgroup attaches to processes already in PATH; it runs no CMD"}
		}
		if o.user != "" {
			return usageError{"--user applies to a CMD; --cgroup runs none"}
		}
	case o.pin != "":
		return usageError{"--pin needs --cgroup PATH"}
	case len(cmd) == 0:
		return usageError{"missing CMD: nicproxy exec [-c FILE | -i NIC] [--user USER] [--dns ADDR] [--] CMD [ARGS...]"}
	}
	if o.file != "" && o.nic != "" {
		return usageError{"give -c FILE or -i NIC, not both"}
	}
	return nil
}
