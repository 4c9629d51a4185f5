package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"nicproxy/bind"
	"nicproxy/bind/cgroup"
	"nicproxy/bind/sockdiag"
)

// doctor diagnoses the host for each NIC the config names (every NIC that
// is up, without -c). It exits 1 when a check failed, 0 otherwise (warnings too).
func doctor(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	file := fs.String("c", "", "config `FILE` whose NICs to check (default: every NIC that is up)")
	target := fs.String("target", "", "`HOST:PORT` to connect to through each NIC")
	timeout := fs.Duration("timeout", 3*time.Second, "how long the connect may take")
	positional, err := parseFlags(fs, args)
	if err == nil && len(positional) > 0 {
		err = usageError{fmt.Sprintf("unexpected argument %q", positional[0])}
	}
	if err == nil && *target != "" {
		if _, _, splitErr := net.SplitHostPort(*target); splitErr != nil {
			err = usageError{fmt.Sprintf("--target %q: want HOST:PORT", *target)}
		}
	}
	if err != nil {
		return helpOrUsage(stdout, stderr, "doctor", fs, err)
	}

	nics, err := bind.UpInterfaces()
	if err != nil {
		fmt.Fprintf(stderr, "nicproxy doctor: %v\n", err)
		return exitFailure
	}
	perNIC := map[string]bind.NICOptions{}
	if *file != "" {
		opts, err := hostOptions()
		if err != nil {
			fmt.Fprintf(stderr, "nicproxy doctor: %v\n", err)
			return exitFailure
		}
		cfg, err := loadConfig(*file, opts)
		if err != nil {
			return reportConfigError(stderr, err)
		}
		nics = cfg.NICs()
		for name, it := range cfg.Interfaces {
			perNIC[name] = bind.NICOptions{Options: bind.Options{Source: it.Source, Mark: it.Mark}, DNS: it.DNS}
		}
	}

	link := readLinkDNS()
	for _, nic := range nics {
		o := perNIC[nic]
		o.LinkDNS = link[nic]
		perNIC[nic] = o
	}
	reports := bind.Doctor(context.Background(), bind.DoctorOptions{NICs: nics, Target: *target, Timeout: *timeout, PerNIC: perNIC})
	reports = append(reports, cgroup.Doctor(), sockdiag.Doctor())
	worst := bind.OK
	for _, r := range reports {
		fmt.Fprintf(stdout, "%s\n", r.NIC)
		for _, f := range r.Findings {
			// A detail's further lines (commands to run) line up under
			// its first.
			detail := strings.ReplaceAll(f.Detail, "\n", "\n"+strings.Repeat(" ", 20))
			fmt.Fprintf(stdout, "  %-4s  %-10s  %s\n", f.Severity, f.Check, detail)
		}
		worst = max(worst, r.Worst())
	}
	switch worst {
	case bind.Fail:
		fmt.Fprintln(stdout, "\nsome NICs cannot carry pinned traffic: see FAIL above")
		return exitFailure
	case bind.Warn:
		fmt.Fprintln(stdout, "\npinning works; see warn above for what may still drop traffic")
	default:
		fmt.Fprintln(stdout, "\nall checks passed")
	}
	return exitOK
}
