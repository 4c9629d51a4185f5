package execpin

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"nicproxy/bind/dnscache"
	"nicproxy/config"
)

// privateResolvConf returns the resolv.conf CMD should see instead of the
// host's, or "" when the host's will do. A nameserver on loopback (the
// 127.0.0.53 of systemd-resolved, a local dnsmasq) is reached without
// leaving the host, so exec's programs cannot pin the query, and the
// resolver then asks through whichever NIC it likes: CMD gets a
// resolv.conf that names, in this order of preference, the --dns servers,
// the pinned NIC's `dns` servers, the NIC's own link's servers
// (linkDNS, systemd-resolved's per link), or the servers the stub itself
// forwards to, whose queries exec does pin. Without any, exec would let
// names leak through another NIC, so it refuses. --dns and a link's own
// servers replace the host's nameservers even when none is a stub: they
// are what the NIC is meant to ask, as the proxy's own lookups do.
func privateResolvConf(cfg *config.Config, hostResolv, stubUpstreams string, flagDNS []netip.Addr, linkDNS map[string][]netip.AddrPort) (string, error) {
	stub, keep := readResolvConf(hostResolv)
	if cfg.Default.Mode == config.ViaSystem || len(cfg.Default.NICs) == 0 {
		return "", nil
	}
	nic := cfg.Default.NICs[0]
	explicit := cfg.Interfaces[nic].DNS
	if stub == "" && len(flagDNS) == 0 && (len(explicit) > 0 || len(linkDNS[nic]) == 0) {
		return "", nil
	}
	servers, origin := flagDNS, "--dns"
	if len(servers) == 0 {
		origin = "interfaces." + nic + ".dns"
		for _, s := range explicit {
			if s.Port() != 53 {
				return "", fmt.Errorf("interfaces.%s.dns: %s: a resolv.conf can only name servers on port 53", nic, s)
			}
			servers = append(servers, s.Addr())
		}
	}
	if len(servers) == 0 {
		origin = "the link's own servers (systemd-resolved)"
		for _, s := range linkDNS[nic] {
			servers = append(servers, s.Addr())
		}
	}
	if len(servers) == 0 {
		origin = stubUpstreams
		for _, s := range dnscache.Nameservers(stubUpstreams) {
			servers = append(servers, s.Addr())
		}
	}
	if len(servers) == 0 {
		return "", fmt.Errorf("%s names %s, a resolver on this host that looks names up through whichever NIC it likes, and neither interfaces.%s.dns nor %s names the servers behind it; give --dns ADDR or set interfaces.%s.dns",
			hostResolv, stub, nic, stubUpstreams, nic)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# written by nicproxy exec: %s's nameservers replaced by servers reached through %s (from %s)\n", hostResolv, nic, origin)
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	for _, line := range keep {
		b.WriteString(line + "\n")
	}
	return b.String(), nil
}

// readResolvConf returns the first loopback nameserver a resolv.conf
// names (systemd-resolved's 127.0.0.53, a local dnsmasq), or "", and its
// lines other than nameservers (search, options), which a replacement
// keeps. A missing file names none: glibc then asks 127.0.0.1, which is
// the command's own business.
func readResolvConf(path string) (stub string, keep []string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil
	}
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if a, err := netip.ParseAddr(fields[1]); err == nil && a.Unmap().IsLoopback() && stub == "" {
				stub = a.String()
			}
			continue
		}
		keep = append(keep, strings.TrimRight(line, "\n"))
	}
	return stub, keep
}

// withPrivateResolvConf turns cmd into the helper that mounts content over
// /etc/resolv.conf in a mount namespace of CMD's own, then becomes CMD.
// The returned cleanup removes the file once CMD has ended.
func withPrivateResolvConf(cmd *exec.Cmd, content, user string) (cleanup func(), err error) {
	f, err := os.CreateTemp("", "nicproxy-exec-resolv-*.conf")
	if err != nil {
		return nil, err
	}
	cleanup = func() { os.Remove(f.Name()) }
	if _, err := io.WriteString(f, content); err != nil {
		f.Close()
		cleanup()
		return nil, err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		cleanup()
		return nil, err
	}
	if err := f.Close(); err != nil {
		cleanup()
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		cleanup()
		return nil, err
	}
	cmd.Args = append([]string{self, HelperCommand, f.Name(), user, "--"}, cmd.Args...)
	cmd.Path = self
	cmd.Err = nil // the helper finds CMD itself
	cmd.SysProcAttr.Unshareflags |= syscall.CLONE_NEWNS
	// The helper mounts as root, then drops to --user itself.
	cmd.SysProcAttr.Credential = nil
	return cleanup, nil
}

// Helper is the helper's body: args are FILE USER -- CMD
// [ARGS...] (USER may be empty). It never returns on success.
func Helper(args []string, stderr io.Writer) int {
	if len(args) < 4 || args[2] != "--" {
		fmt.Fprintln(stderr, "nicproxy: "+HelperCommand+" is exec's own step, not a command")
		return exitUsage
	}
	file, user, argv := args[0], args[1], args[3:]
	fail := func(err error) int {
		fmt.Fprintf(stderr, "nicproxy exec: cannot give the command its resolv.conf, so it was not started: %v\n", err)
		return exitUsage
	}
	// Mounts made here must not propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(fmt.Errorf("make / private: %w", err))
	}
	if err := unix.Mount(file, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		return fail(fmt.Errorf("mount %s over /etc/resolv.conf: %w", file, err))
	}
	if err := becomeUser(user); err != nil {
		return fail(err)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy exec: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 127
		}
		return 126
	}
	err = syscall.Exec(path, argv, os.Environ())
	fmt.Fprintf(stderr, "nicproxy exec: %s: %v\n", argv[0], err)
	return 126
}

// becomeUser drops this process to user's uid, gid and groups ("" keeps
// it as it is): the helpers start as root, for what needs root, and then
// act as CMD will.
func becomeUser(user string) error {
	if user == "" {
		return nil
	}
	cred, err := lookupCredential(user)
	if err != nil {
		return err
	}
	groups := make([]int, len(cred.Groups))
	for i, g := range cred.Groups {
		groups[i] = int(g)
	}
	// Groups first: once the uid is dropped, they can no longer be set.
	for _, step := range []func() error{
		func() error { return syscall.Setgroups(groups) },
		func() error { return syscall.Setgid(int(cred.Gid)) },
		func() error { return syscall.Setuid(int(cred.Uid)) },
	} {
		if err := step(); err != nil {
			return fmt.Errorf("become %s: %w", user, err)
		}
	}
	return nil
}
