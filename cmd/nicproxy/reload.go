package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
)

// reloadCommand checks a file and only then sends SIGHUP to a running
// nicproxy, the way `nginx -t && nginx -s reload` does: a bad file is
// reported to whoever asked for the reload (systemctl reload, a script)
// with exit status 2, instead of only to the daemon's log. It needs no
// other tool, so the unit's ExecReload works on a minimal system without
// procps' kill.
func reloadCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	file := fs.String("c", "", "config `FILE` the running nicproxy reads (default: the embedded default)")
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
		return reportUsage(stderr, "reload", fs, err)
	}

	opts, err := hostOptions()
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy reload: %v\n", err)
		return exitFailure
	}
	cfg, err := loadConfig(*file, opts)
	if err != nil {
		code := reportConfigError(stderr, err)
		fmt.Fprintf(stderr, "nicproxy reload: not reloading: fix the file; pid %d keeps serving its running configuration\n", pid)
		return code
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
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
