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

// command is one line (or two) of the top-level usage, and the head of
// the command's own -h.
type command struct {
	name     string // as reportUsage is called with it
	synopsis string
	summary  string
	args     string // the positional arguments, explained for -h
}

// commands lists every command for the usage texts, in the order of the
// top-level one.
func commands() []command {
	return []command{
		{"run", "nicproxy [run] [-c FILE] [-i NIC] [-l ADDR]", "serve (default: 127.0.0.1:1080, default-route NIC)", ""},
		{"check", "nicproxy check [-q] [-c FILE]", "validate a config (default: the embedded one), print a summary", ""},
		{"route", "nicproxy route [-c FILE] [-u USER] [-s SRC] [--listener NAME] [--udp] [--from-pid PID | --unit NAME] DEST[:PORT]", "which rule and NIC would carry DEST",
			"DEST[:PORT]  the destination: a name, an IPv4 address or an IPv6 one ([2001:db8::1]:443 with a port)"},
		{"doctor", "nicproxy doctor [-c FILE] [--target HOST:PORT]", "diagnose the host for each NIC", ""},
		{"exec", "nicproxy exec [-c FILE | -i NIC] [--user USER] [--dns ADDR] [--] CMD [ARGS...]", "run CMD with every socket it opens pinned (cgroup BPF)",
			"CMD [ARGS...]  the program to run, and its arguments"},
		{"exec", "nicproxy exec --cgroup PATH [--pin DIR] [--existing-sockets-ok] [-c FILE | -i NIC]", "pin an existing cgroup (a systemd unit's)", ""},
		{"exec", "nicproxy exec --unpin DIR", "remove programs pinned with --pin", ""},
		{"hash-password", "nicproxy hash-password", "read a password (asked twice on a terminal), print its bcrypt hash", ""},
		{"reload", "nicproxy reload [-c FILE] PID", "check the file PID serves, then tell nicproxy PID to re-read it",
			"PID  the process id of the serving nicproxy ($MAINPID in a systemd unit)"},
		{"version", "nicproxy version", "(also --version)", ""},
	}
}

// usage is the top-level help: each command's synopsis and summary, the
// summary on a line of its own under a long synopsis.
func usage() string {
	const column = 40
	var b strings.Builder
	b.WriteString("nicproxy — a local SOCKS5/SOCKS4a/HTTP proxy that pins connections to a NIC\n\nUsage:\n")
	for _, c := range commands() {
		if len(c.synopsis) < column {
			fmt.Fprintf(&b, "  %-*s%s\n", column, c.synopsis, c.summary)
		} else {
			fmt.Fprintf(&b, "  %s\n  %*s%s\n", c.synopsis, column, "", c.summary)
		}
	}
	return b.String()
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") && !isHelp(args[0]) && !isVersion(args[0]) {
		return serve(args, stdout, stderr)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return serve(rest, stdout, stderr)
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
		fmt.Fprint(stdout, usage())
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

// reportUsage answers -h and --help with the command's help on stderr and
// exit 0, and a usage error with a hint to that help and exit 2. Commands
// that have stdout at hand use helpOrUsage, which puts the help there.
func reportUsage(stderr io.Writer, cmd string, fs *flag.FlagSet, err error) int {
	return helpOrUsage(stderr, stderr, cmd, fs, err)
}

// helpOrUsage answers -h and --help with the command's help on stdout and
// exit 0, like `nicproxy help`, and a usage error on stderr with a hint to
// that help and exit 2.
func helpOrUsage(stdout, stderr io.Writer, cmd string, fs *flag.FlagSet, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stdout, cmd, fs)
		return exitOK
	}
	fmt.Fprintf(stderr, "nicproxy %s: %s (see: nicproxy %s -h)\n", cmd, strings.TrimSpace(err.Error()), cmd)
	return exitUsage
}

// printHelp prints cmd's synopsis and summary, its positional arguments,
// then its flags.
func printHelp(w io.Writer, cmd string, fs *flag.FlagSet) {
	var args []string
	head := "Usage:"
	for _, c := range commands() {
		if c.name != cmd {
			continue
		}
		fmt.Fprintf(w, "%s %s\n         %s\n", head, c.synopsis, c.summary)
		head = "   or:"
		if c.args != "" {
			args = append(args, c.args)
		}
	}
	if len(args) > 0 {
		fmt.Fprintf(w, "\nArguments:\n  %s\n", strings.Join(args, "\n  "))
	}
	if fs == nil {
		return
	}
	var flags strings.Builder
	fs.SetOutput(&flags)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	if flags.Len() > 0 {
		fmt.Fprintf(w, "\nFlags:\n%s", flags.String())
	}
}
