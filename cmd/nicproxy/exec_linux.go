package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"strconv"
	"sync"
	"syscall"

	"nicproxy/bind"
	"nicproxy/bind/cgroup"
	"nicproxy/bind/dnscache"
)

// execCmd is `nicproxy exec`: it runs a command in a new cgroup v2 whose
// BPF programs pin every socket to the NIC, or attaches the same programs
// to an existing cgroup. Nothing is relayed: the kernel routes the
// command's own sockets. It fails closed: when the programs cannot be
// attached, the command is not started and exec exits 2.
func execCmd(args []string, stdout, stderr io.Writer) int {
	fs, o := execFlags()
	err := fs.Parse(args)
	if err == nil {
		err = o.check(fs.Args())
	}
	if err != nil {
		return reportUsage(stderr, "exec", fs, err)
	}
	if o.unpin != "" {
		if err := cgroup.Unpin(o.unpin); err != nil {
			fmt.Fprintf(stderr, "nicproxy exec: unpin: %v\n", err)
			return exitFailure
		}
		return exitOK
	}

	policy, code := execLoadPolicy(o, stderr)
	if code != exitOK {
		return code
	}
	local, err := cgroup.LocalPrefixes()
	if err != nil {
		return execSetupFailed(stderr, err)
	}
	progs, err := cgroup.Load(policy, local)
	if err != nil {
		return execSetupFailed(stderr, err)
	}
	defer progs.Close()

	if o.cgroup != "" {
		return execAttachExisting(o, progs, stdout, stderr)
	}

	hierarchy, err := cgroup.Hierarchy()
	if err != nil {
		return execSetupFailed(stderr, err)
	}
	group, err := cgroup.NewGroup(hierarchy)
	if err != nil {
		return execSetupFailed(stderr, err)
	}
	detach, err := progs.AttachGroup(group)
	if err != nil {
		_ = group.Remove()
		return execSetupFailed(stderr, err)
	}
	code = execRun(fs.Args(), o, group, progs, stderr)
	if err := detach(); err != nil {
		fmt.Fprintf(stderr, "nicproxy exec: detach the programs: %v\n", err)
	}
	if err := group.Remove(); err != nil {
		fmt.Fprintf(stderr, "nicproxy exec: %v\n", err)
	}
	return code
}

// execSetupFailed reports why the command was not started.
func execSetupFailed(stderr io.Writer, err error) int {
	hint := ""
	if errors.Is(err, cgroup.ErrPermission) || errors.Is(err, os.ErrPermission) {
		hint = "\n  run exec as root (sudo nicproxy exec ...) or give it CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN; `nicproxy doctor` checks this host"
	}
	fmt.Fprintf(stderr, "nicproxy exec: cannot pin, so the command was not started: %v%s\n", err, hint)
	return exitUsage
}

// execLoadPolicy loads the configuration (or -i) and compiles what the
// kernel can enforce, printing the warnings.
func execLoadPolicy(o *execOptions, stderr io.Writer) (cgroup.Policy, int) {
	opts, err := hostOptions()
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy exec: %v\n", err)
		return cgroup.Policy{}, exitUsage
	}
	opts.InterfaceOverride = o.nic
	cfg, err := loadConfig(o.file, opts)
	if err != nil {
		return cgroup.Policy{}, reportConfigError(stderr, err)
	}
	policy, warnings, err := execPolicy(cfg, bind.SystemLinks{})
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy exec: %s: cannot pin, so nothing was started: %v\n", cfg.Source, err)
		return cgroup.Policy{}, exitUsage
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "nicproxy exec: warning: %s: %s\n", cfg.Source, w)
	}
	if o.cgroup == "" {
		if o.resolvConf, err = privateResolvConf(cfg, "/etc/resolv.conf", dnscache.DefaultStubUpstreams, o.dns, readLinkDNS()); err != nil {
			fmt.Fprintf(stderr, "nicproxy exec: cannot pin the command's DNS, so nothing was started: %v\n", err)
			return cgroup.Policy{}, exitUsage
		}
	} else if stub, _ := readResolvConf("/etc/resolv.conf"); stub != "" {
		// An existing cgroup's processes keep their mount namespace.
		fmt.Fprintf(stderr, "nicproxy exec: warning: /etc/resolv.conf names %s, a resolver on this host: the processes' queries to it stay on the host, and it looks names up through whichever NIC it chooses\n", stub)
	}
	return policy, exitOK
}

// execRun starts the command inside group and waits for it and every
// process it left behind; it returns the command's exit status.
func execRun(argv []string, o *execOptions, group *cgroup.Group, progs *cgroup.Programs, stderr io.Writer) int {
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
	if o.user != "" {
		cred, err := lookupCredential(o.user)
		if err != nil {
			fmt.Fprintf(stderr, "nicproxy exec: --user: %v\n", err)
			return exitUsage
		}
		cmd.SysProcAttr.Credential = cred
	}

	if o.resolvConf != "" {
		cleanup, err := withPrivateResolvConf(cmd, o.resolvConf, o.user)
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

// execAttachExisting attaches the programs to an existing cgroup (a
// systemd unit's) and holds them until SIGINT or SIGTERM, or pins them in
// bpffs so they outlive this process.
func execAttachExisting(o *execOptions, progs *cgroup.Programs, stdout, stderr io.Writer) int {
	att, err := progs.Attach(o.cgroup)
	if err != nil {
		return execSetupFailed(stderr, err)
	}
	if o.pin != "" {
		if err := att.Pin(o.pin); err != nil {
			_ = att.Close()
			return execSetupFailed(stderr, err)
		}
		// The pins hold the programs attached; this process's
		// references go with it.
		_ = att.Close()
		fmt.Fprintf(stdout, "pinned %s; remove with: nicproxy exec --unpin %s\n", o.cgroup, o.pin)
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
	fmt.Fprintf(stdout, "pinning %s until SIGINT or SIGTERM\n", o.cgroup)
	<-sigs
	cancel()
	wg.Wait()
	return exitOK
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
