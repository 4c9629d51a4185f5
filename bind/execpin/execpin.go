// Package execpin is the body of `nicproxy exec`: it turns a configuration
// into the kernel policy of bind/cgroup, runs a command in a cgroup with the
// programs attached (or attaches them to an existing cgroup), gives the
// command a resolv.conf of its own when the host's names a resolver on the
// host, and waits for the command and everything it left behind.
//
// cmd/nicproxy only parses exec's flags and loads the configuration.
package execpin

import (
	"io"
	"net/netip"

	"nicproxy/config"
)

// Exit statuses exec shares with the other commands.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Options are what one `nicproxy exec` was asked to do.
type Options struct {
	// Config holds the dst rules and default the sockets are pinned by
	// (with -i, a default of that one NIC).
	Config *config.Config
	// User runs CMD as this user (name or uid), after the programs are
	// attached; "" keeps exec's own.
	User string
	// Cgroup attaches to this existing cgroup v2 instead of running CMD.
	Cgroup string
	// Pin, with Cgroup, pins the programs under this bpffs directory so
	// they outlive exec.
	Pin string
	// ExistingSocketsOK lets Cgroup name a cgroup that has processes,
	// whose sockets made before the attach keep their old route.
	ExistingSocketsOK bool
	// DNS, when set, are the nameservers CMD's private resolv.conf names
	// (--dns), asked through the pinned NIC.
	DNS []netip.Addr
	// LinkDNS are each NIC's own link's servers (systemd-resolved's), for
	// CMD's resolv.conf when neither DNS nor the NIC's dns names any.
	LinkDNS map[string][]netip.AddrPort

	Stdout, Stderr io.Writer
}

// HelperCommand is the hidden subcommand exec runs as CMD's first step when
// CMD needs a resolv.conf of its own: in a new mount namespace, it mounts
// that file over /etc/resolv.conf, takes on --user, and becomes CMD (see
// Helper).
const HelperCommand = "__exec-with-resolv-conf"

// SelfTestCommand is the hidden subcommand exec runs inside the cgroup,
// with CMD's credentials, before CMD: it checks that a pin takes (see
// SelfTest).
const SelfTestCommand = "__exec-selftest"
