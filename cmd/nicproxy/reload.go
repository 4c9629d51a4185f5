package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// reloadCommand checks a file and only then sends SIGHUP to a running
// nicproxy, the way `nginx -t && nginx -s reload` does: a bad file is
// reported to whoever asked for the reload (systemctl reload, a script)
// with exit status 2, instead of only to the daemon's log. It needs no
// other tool, so the unit's ExecReload works on a minimal system without
// procps' kill.
//
// The file checked is the one PID was started with (its -c, -i and -l), as
// its command line says: SIGHUP makes it re-read that file, not the one
// this command would read by default. PID must be a serving nicproxy: a
// SIGHUP kills most other programs (a shell, sleep).
func reloadCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	file := fs.String("c", "", "config `FILE` the running nicproxy reads (default: the -c it was started with)")
	positional, err := parseFlags(fs, args)
	var pid int
	if err == nil {
		if len(positional) != 1 {
			err = usageError{"want the PID of the running nicproxy"}
		} else if pid, err = strconv.Atoi(positional[0]); err != nil || pid <= 0 {
			err = usageError{fmt.Sprintf("PID %q is not a process id", positional[0])}
		}
	}
	if err != nil {
		return helpOrUsage(stdout, stderr, "reload", fs, err)
	}

	target, code, err := reloadTarget(pid, *file)
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy reload: %v\n", err)
		return code
	}
	opts, err := hostOptions()
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy reload: %v\n", err)
		return exitFailure
	}
	opts.InterfaceOverride, opts.ListenOverride = target.nic, target.listen
	cfg, err := loadConfig(target.file, opts)
	if err != nil {
		code := reportConfigError(stderr, err)
		fmt.Fprintf(stderr, "nicproxy reload: not reloading: fix the file; pid %d keeps serving its running configuration\n", pid)
		return code
	}
	printWarnings(stderr, cfg)
	proc, err := os.FindProcess(pid)
	if err == nil {
		err = proc.Signal(syscall.SIGHUP)
	}
	if err != nil {
		if errors.Is(err, os.ErrProcessDone) || errors.Is(err, syscall.ESRCH) {
			err = errors.New("no such process")
		}
		fmt.Fprintf(stderr, "nicproxy reload: signal pid %d: %v\n", pid, err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: OK; pid %d is reloading it (its log says when it is done)\n", cfg.Source, pid)
	return exitOK
}

// reloadTarget reads what pid runs and returns the serve options it was
// started with, its file made absolute. It refuses (exit 2) a process that
// is not a serving nicproxy, and a -c that names another file than the one
// pid serves; a process that is gone is exit 1.
func reloadTarget(pid int, file string) (*serveOptions, int, error) {
	p, err := readProcess(pid)
	if errors.Is(err, os.ErrNotExist) {
		return nil, exitFailure, fmt.Errorf("pid %d: no such process", pid)
	}
	if err != nil {
		return nil, exitFailure, fmt.Errorf("cannot tell what pid %d runs, so it is not signalled: %w", pid, err)
	}
	if !isNicproxy(p.exe) {
		return nil, exitUsage, fmt.Errorf("pid %d is %s, not nicproxy: not signalled (SIGHUP would stop most programs)", pid, p.exe)
	}
	serveArgs, serving := serveArguments(p.args)
	fs, target := serveFlags()
	if serving {
		serving = target.parse(fs, serveArgs) == nil
	}
	if !serving {
		return nil, exitUsage, fmt.Errorf("pid %d is %q, not a serving nicproxy: not signalled", pid, strings.Join(p.args, " "))
	}
	if target.file != "" && !filepath.IsAbs(target.file) {
		target.file = filepath.Join(p.cwd, target.file)
	}
	if file != "" && !sameConfig(file, target.file) {
		serves := target.file
		if serves == "" {
			serves = "the embedded default"
		}
		return nil, exitUsage, fmt.Errorf("-c %s: pid %d serves %s, which a SIGHUP re-reads: not signalled", file, pid, serves)
	}
	return target, exitOK, nil
}

// process is what /proc says a process runs.
type process struct {
	exe  string   // the executable's path, without " (deleted)"
	args []string // the command line, its first word included
	cwd  string   // the working directory its relative paths start from
}

// isNicproxy tells a nicproxy binary by its name, or by being this very
// executable under another name. A package upgrade that replaced the file
// leaves the name.
func isNicproxy(exe string) bool {
	if filepath.Base(exe) == "nicproxy" {
		return true
	}
	self, err := os.Executable()
	if err != nil {
		return false
	}
	a, errA := os.Stat(exe)
	b, errB := os.Stat(self)
	return errA == nil && errB == nil && os.SameFile(a, b)
}

// serveArguments returns the serve flags in a nicproxy command line and
// whether it serves at all (`nicproxy`, `nicproxy run ...`, `nicproxy -i
// NIC ...`), the way run in main.go reads them.
func serveArguments(args []string) ([]string, bool) {
	if len(args) < 2 {
		return nil, true
	}
	first := args[1]
	switch {
	case first == "run":
		return args[2:], true
	case strings.HasPrefix(first, "-") && !isHelp(first) && !isVersion(first):
		return args[1:], true
	}
	return nil, false
}

// sameConfig says whether a and b name one file ("" is the embedded
// default).
func sameConfig(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	absA, _ := filepath.Abs(a)
	return filepath.Clean(absA) == filepath.Clean(b)
}
