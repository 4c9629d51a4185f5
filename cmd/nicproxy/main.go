// Command nicproxy is a local SOCKS5/SOCKS4a/HTTP forward proxy that pins
// every upstream connection to a chosen NIC. This file only parses the
// command line and hands over to the packages that do the work.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"nicproxy/bind/execpin"
)

// Exit statuses, as the spec promises them to scripts.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure
	exitUsage   = 2 // usage or configuration error
)

const usage = `nicproxy — a local SOCKS5/SOCKS4a/HTTP proxy that pins connections to a NIC

Usage:
  nicproxy [run] [-c FILE] [-i NIC] [-l ADDR]   serve (default: 127.0.0.1:1080, default-route NIC)
  nicproxy check [-c FILE]                validate a config (default: the embedded one), print a summary
  nicproxy route [-c FILE] [-u USER] [-s SRC] [--listener NAME] [--udp] DEST[:PORT]
                                          which rule and NIC would carry DEST
  nicproxy doctor [-c FILE] [--target HOST:PORT]
                                          diagnose the host for each NIC
  nicproxy exec [-c FILE | -i NIC] [--user USER] [--] CMD [ARGS...]
                                          run CMD with every socket it opens pinned (cgroup BPF)
  nicproxy exec --cgroup PATH [--pin DIR] [--existing-sockets-ok] [-c FILE | -i NIC]
                                          pin an existing cgroup (a systemd unit's)
  nicproxy exec --unpin DIR               remove programs pinned with --pin
  nicproxy hash-password                  read a password on stdin, print its bcrypt hash
  nicproxy reload [-c FILE] PID           check the file, then tell nicproxy PID to re-read it
  nicproxy version                        (also --version)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && !isHelp(args[0]) && !isVersion(args[0]) {
		return serve(args, stderr)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return serve(rest, stderr)
	case "hash-password":
		return hashPassword(rest, stdin, stdout, stderr)
	case "check":
		return check(rest, stdout, stderr)
	case "route":
		return route(rest, stdout, stderr)
	case "doctor":
		return doctor(rest, stdout, stderr)
	case "exec":
		return execCmd(rest, stdout, stderr)
	case execpin.HelperCommand:
		return execpin.Helper(rest, stderr)
	case execpin.SelfTestCommand:
		return execpin.SelfTest(rest, stdout, stderr)
	case "reload":
		return reloadCommand(rest, stdout, stderr)
	case "version", "--version", "-version", "-V":
		fmt.Fprintln(stdout, versionString())
		return exitOK
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "nicproxy: unknown command %q (try: nicproxy help)\n", cmd)
	return exitUsage
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

// isVersion accepts the spellings scripts and package tools try first.
func isVersion(arg string) bool {
	return arg == "--version" || arg == "-version" || arg == "-V"
}

// usageError is a command-line mistake: it exits 2 with a one-line hint.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// parseFlags parses flags that may come before or after the positional
// arguments (`nicproxy route example.com:443 -u alice` reads naturally) and
// returns the positionals.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// reportUsage prints a usage error with a hint to the command's help.
func reportUsage(stderr io.Writer, cmd string, fs *flag.FlagSet, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stderr)
		fmt.Fprintf(stderr, "Usage of nicproxy %s:\n", cmd)
		fs.PrintDefaults()
		return exitUsage
	}
	fmt.Fprintf(stderr, "nicproxy %s: %s (see: nicproxy %s -h)\n", cmd, strings.TrimSpace(err.Error()), cmd)
	return exitUsage
}
