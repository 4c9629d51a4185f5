package execpin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"nicproxy/bind"
	"nicproxy/bind/cgroup"
	"nicproxy/bind/dnscache"
)

// Run is `nicproxy exec` once its flags are read: it runs argv in a new
// cgroup v2 whose BPF programs pin every socket to the NIC, or attaches
// the same programs to o.Cgroup. Nothing is relayed: the kernel routes the
// command's own sockets. It fails closed: when the programs cannot be
// attached, the command is not started and Run returns 2. Otherwise it
// returns the command's exit status.
func Run(argv []string, o Options) int {
	policy, warnings, err := Policy(o.Config, bind.SystemLinks{})
	if err != nil {
		fmt.Fprintf(o.Stderr, "nicproxy exec: %s: cannot pin, so nothing was started: %v\n", o.Config.Source, err)
		return exitUsage
	}
	for _, w := range warnings {
		fmt.Fprintf(o.Stderr, "nicproxy exec: warning: %s: %s\n", o.Config.Source, w)
	}
	// Without CAP_NET_RAW, CMD's sockets can be pinned once but never
	// moved: its UDP sockets wait for their first destination.
	policy.UDPAtFirstUse = o.User != ""
	resolvConf := ""
	if o.Cgroup == "" {
		if resolvConf, err = privateResolvConf(o.Config, "/etc/resolv.conf", dnscache.DefaultStubUpstreams, o.DNS, o.LinkDNS); err != nil {
			fmt.Fprintf(o.Stderr, "nicproxy exec: cannot pin the command's DNS, so nothing was started: %v\n", err)
			return exitUsage
		}
	} else if stub, _ := readResolvConf("/etc/resolv.conf"); stub != "" {
		// An existing cgroup's processes keep their mount namespace.
		fmt.Fprintf(o.Stderr, "nicproxy exec: warning: /etc/resolv.conf names %s, a resolver on this host: the processes' queries to it stay on the host, and it looks names up through whichever NIC it chooses\n", stub)
	}

	local, err := cgroup.LocalPrefixes()
	if err != nil {
		return setupFailed(o.Stderr, err)
	}
	progs, err := cgroup.Load(policy, local)
	if err != nil {
		return setupFailed(o.Stderr, err)
	}
	defer progs.Close()

	if o.Cgroup != "" {
		return attachExisting(o, progs)
	}

	hierarchy, err := cgroup.Hierarchy()
	if err != nil {
		return setupFailed(o.Stderr, err)
	}
	group, err := cgroup.NewGroup(hierarchy)
	if err != nil {
		return setupFailed(o.Stderr, err)
	}
	detach, err := progs.AttachGroup(group)
	if err != nil {
		_ = group.Remove()
		return setupFailed(o.Stderr, err)
	}
	probe := func() error { return selfTest(group, policy, local, o.User) }
	code := run(argv, o, resolvConf, group, progs, probe)
	reportDrops(o.Stderr, progs)
	if err := detach(); err != nil {
		fmt.Fprintf(o.Stderr, "nicproxy exec: detach the programs: %v\n", err)
	}
	if err := group.Remove(); err != nil {
		fmt.Fprintf(o.Stderr, "nicproxy exec: %v\n", err)
	}
	return code
}

// reportDrops says how many packets the egress program dropped: each is a
// packet that tried to leave through another NIC than its rule names (an
// IP_PKTINFO, a socket from outside the cgroup's hooks), or to a rejected
// destination.
func reportDrops(stderr io.Writer, progs *cgroup.Programs) {
	n, err := progs.Dropped()
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy exec: warning: %v\n", err)
		return
	}
	reportDropped(stderr, n)
}

func reportDropped(stderr io.Writer, n uint64) {
	if n > 0 {
		fmt.Fprintf(stderr, "nicproxy exec: dropped %d packets at egress that would have left through another NIC than their destination's rule names, or to a rejected destination\n", n)
	}
}

// Unpin detaches and removes programs pinned with Options.Pin under dir,
// and says on stderr how many packets egress dropped while they were.
func Unpin(dir string, stderr io.Writer) error {
	n, err := cgroup.Unpin(dir)
	reportDropped(stderr, n)
	return err
}

// setupFailed reports why the command was not started.
func setupFailed(stderr io.Writer, err error) int {
	hint := ""
	if errors.Is(err, cgroup.ErrPermission) || errors.Is(err, os.ErrPermission) {
		hint = "\n  run exec as root (sudo nicproxy exec ...) or give it CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN; `nicproxy doctor` checks this host"
	}
	fmt.Fprintf(stderr, "nicproxy exec: cannot pin, so the command was not started: %v%s\n", err, hint)
	return exitUsage
}

// run starts the command inside group and waits for it and every process
// it left behind; it returns the command's exit status.
func run(argv []string, o Options, resolvConf string, group *cgroup.Group, progs *cgroup.Programs, probe func() error) int {
	stderr := o.Stderr
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = progs.WatchLocal(ctx, func(err error) { fmt.Fprintf(stderr, "nicproxy exec: warning: %v\n", err) })
	}()

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// Born in the cgroup (clone3 with CLONE_INTO_CGROUP): the programs
	// apply from the child's first instruction.
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: group.FD()}
	if o.User != "" {
		cred, err := lookupCredential(o.User)
		if err != nil {
			fmt.Fprintf(stderr, "nicproxy exec: --user: %v\n", err)
			return exitUsage
		}
		cmd.SysProcAttr.Credential = cred
	}
	if err := probe(); err != nil {
		return setupFailed(stderr, err)
	}
	if err := keepInheritedSocketsFromCMD(stderr); err != nil {
		return setupFailed(stderr, err)
	}

	if resolvConf != "" {
		cleanup, err := withPrivateResolvConf(cmd, resolvConf, o.User)
		if err != nil {
			fmt.Fprintf(stderr, "nicproxy exec: cannot give the command its resolv.conf, so it was not started: %v\n", err)
			return exitUsage
		}
		defer cleanup()
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "nicproxy exec: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 127
		}
		return 126
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = cmd.Wait()
	}()
	for waiting := true; waiting; {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGINT && inForeground() {
				// Ctrl-C: the terminal signalled exec's whole process
				// group, CMD included; once is enough.
				continue
			}
			_ = cmd.Process.Signal(sig)
		case <-done:
			waiting = false
		}
	}
	code := cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}

	// Descendants may outlive the command; the programs stay until the
	// last has gone. A signal now ends them all.
	emptied := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		emptied <- group.WaitEmpty(ctx)
	}()
	for {
		select {
		case <-sigs:
			if err := group.Kill(); err != nil {
				fmt.Fprintf(stderr, "nicproxy exec: %v\n", err)
			}
		case err := <-emptied:
			if err != nil {
				fmt.Fprintf(stderr, "nicproxy exec: %v\n", err)
			}
			return code
		}
	}
}

// attachExisting attaches the programs to an existing cgroup (a
// systemd unit's) and holds them until SIGINT or SIGTERM, or pins them in
// bpffs so they outlive this process.
func attachExisting(o Options, progs *cgroup.Programs) int {
	stdout, stderr := o.Stdout, o.Stderr
	if !o.ExistingSocketsOK {
		procs, err := os.ReadFile(filepath.Join(o.Cgroup, "cgroup.procs"))
		if err != nil {
			return setupFailed(stderr, fmt.Errorf("read the processes of %s: %w", o.Cgroup, err))
		}
		// exec itself may be in it: systemd runs ExecStartPre in the
		// unit's cgroup.
		n := 0
		for _, pid := range strings.Fields(string(procs)) {
			if pid != strconv.Itoa(os.Getpid()) {
				n++
			}
		}
		if n > 0 {
			fmt.Fprintf(stderr, "nicproxy exec: %s has %d processes; the sockets they opened before now would not be pinned (the egress program drops what they send through another NIC than the rules name), so nothing was attached: attach while the cgroup is empty (before the unit starts), or give --existing-sockets-ok\n", o.Cgroup, n)
			return exitUsage
		}
	}
	att, err := progs.Attach(o.Cgroup)
	if err != nil {
		return setupFailed(stderr, err)
	}
	if o.Pin != "" {
		if err := att.Pin(o.Pin); err != nil {
			_ = att.Close()
			return setupFailed(stderr, err)
		}
		// The pins hold the programs attached; this process's
		// references go with it.
		_ = att.Close()
		fmt.Fprintf(stdout, "pinned %s; remove with: nicproxy exec --unpin %s\n", o.Cgroup, o.Pin)
		return exitOK
	}
	defer att.Close()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = progs.WatchLocal(ctx, func(err error) { fmt.Fprintf(stderr, "nicproxy exec: warning: %v\n", err) })
	}()
	fmt.Fprintf(stdout, "pinning %s until SIGINT or SIGTERM\n", o.Cgroup)
	<-sigs
	cancel()
	wg.Wait()
	reportDrops(stderr, progs)
	return exitOK
}

// inForeground reports whether exec's process group is its controlling
// terminal's foreground group, which gets the terminal's SIGINT (CMD, born
// in the same group, among them).
func inForeground() bool {
	tty, err := os.Open("/dev/tty")
	if err != nil {
		return false // no controlling terminal
	}
	defer tty.Close()
	pgrp, err := unix.IoctlGetInt(int(tty.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

// lookupCredential resolves a user name or numeric id to the credentials
// the command runs with: its uid, primary gid and supplementary groups.
func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			if u, err = user.LookupId(name); err != nil {
				return nil, fmt.Errorf("no user %q", name)
			}
		} else {
			return nil, err
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %q: gid %q: %w", name, u.Gid, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	ids, _ := u.GroupIds() // no supplementary groups is not an error
	for _, g := range ids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil && uint32(n) != cred.Gid {
			cred.Groups = append(cred.Groups, uint32(n))
		}
	}
	return cred, nil
}
