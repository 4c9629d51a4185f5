package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"nicproxy/bind/execpin"
)

// execUsage heads `nicproxy exec -h`, before the flags.
const execUsage = `Usage:
  nicproxy exec [-c FILE | -i NIC] [--user USER] [--dns ADDR] [--] CMD [ARGS...]
  nicproxy exec --cgroup PATH [--pin DIR] [--existing-sockets-ok] [-c FILE | -i NIC]
  nicproxy exec --unpin DIR

Runs CMD with every socket it opens pinned to a NIC in the kernel (cgroup BPF).

Flags:
`

// execOptions are exec's flags.
type execOptions struct {
	file, nic, user    string
	cgroup, pin, unpin string
	existingOK         bool
	dns                addrList // --dns: CMD's nameservers, reached through the pinned NIC
}

func execFlags() (*flag.FlagSet, *execOptions) {
	o := &execOptions{}
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	fs.StringVar(&o.file, "c", "", "config `FILE` whose dst rules and default pin the sockets (default: the embedded default)")
	fs.StringVar(&o.nic, "i", "", "pin every socket to `NIC`")
	fs.StringVar(&o.user, "user", "", "run CMD as `USER` (name or uid), after the programs are attached")
	fs.StringVar(&o.cgroup, "cgroup", "", "attach to the existing cgroup v2 `PATH` instead of running CMD")
	fs.StringVar(&o.pin, "pin", "", "with --cgroup: pin the programs under `DIR` (bpffs) so they outlive exec")
	fs.StringVar(&o.unpin, "unpin", "", "detach and remove programs pinned under `DIR`")
	fs.BoolVar(&o.existingOK, "existing-sockets-ok", false, "with --cgroup: attach although PATH has processes, whose sockets made before now are not pinned")
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
		if o.cgroup != "" || o.pin != "" || o.file != "" || o.nic != "" || o.user != "" || o.existingOK || len(o.dns) > 0 || len(cmd) > 0 {
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
	case o.existingOK:
		return usageError{"--existing-sockets-ok needs --cgroup PATH"}
	case len(cmd) == 0:
		return usageError{"missing CMD: nicproxy exec [-c FILE | -i NIC] [--user USER] [--dns ADDR] [--] CMD [ARGS...]"}
	}
	if o.file != "" && o.nic != "" {
		return usageError{"give -c FILE or -i NIC, not both"}
	}
	return nil
}

// execCmd is `nicproxy exec`: it reads the flags and the configuration and
// hands them to bind/execpin, which pins CMD's sockets in the kernel.
func execCmd(args []string, stdout, stderr io.Writer) int {
	fs, o := execFlags()
	// The FlagSet would print its usage on -h and on every error, and
	// reportUsage again: once is enough.
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, execUsage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return exitOK
	}
	if err == nil {
		err = o.check(fs.Args())
	}
	if err != nil {
		return reportUsage(stderr, "exec", fs, err)
	}
	if o.unpin != "" {
		if err := execpin.Unpin(o.unpin, stderr); err != nil {
			fmt.Fprintf(stderr, "nicproxy exec: unpin: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	opts, err := hostOptions()
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy exec: %v\n", err)
		return exitUsage
	}
	opts.InterfaceOverride = o.nic
	cfg, err := loadConfig(o.file, opts)
	if err != nil {
		return reportConfigError(stderr, err)
	}
	return execpin.Run(fs.Args(), execpin.Options{
		Config: cfg, User: o.user, Cgroup: o.cgroup, Pin: o.pin, ExistingSocketsOK: o.existingOK,
		DNS: o.dns, LinkDNS: linkDNSUnlessSet(o), Stdout: stdout, Stderr: stderr,
	})
}

// linkDNSUnlessSet reads each NIC's own link servers for CMD's resolv.conf,
// unless --dns already names its servers or --cgroup runs no CMD.
func linkDNSUnlessSet(o *execOptions) map[string][]netip.AddrPort {
	if len(o.dns) > 0 || o.cgroup != "" {
		return nil
	}
	return readLinkDNS()
}
