package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"nicproxy/bind"
	"nicproxy/config"
)

// hostOptions gathers the host facts config validation needs.
func hostOptions() (config.Options, error) {
	nics, err := bind.Interfaces()
	if err != nil {
		return config.Options{}, err
	}
	// No default route is not an error here: the config may name its NICs.
	defaultNIC, _ := bind.DefaultRouteInterface()
	return config.Options{Interfaces: nics, DefaultRouteInterface: defaultNIC, Loopback: loopbacks()}, nil
}

// loopbacks names the host's loopback interfaces, so that pinning to one
// is refused the same way on the command line and in a file.
func loopbacks() []string {
	ifis, err := net.Interfaces()
	if err != nil {
		return nil // Interfaces already succeeded; a second failure only loses the hint
	}
	var names []string
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagLoopback != 0 {
			names = append(names, ifi.Name)
		}
	}
	return names
}

// nicState says what `check` and the start-up log call a NIC now: up,
// down (administratively, or without carrier), or absent.
func nicState(name string) (state string, usable bool) {
	ifi, err := net.InterfaceByName(name)
	switch {
	case err != nil:
		return "absent (used when it appears)", false
	case ifi.Flags&net.FlagUp == 0:
		return "down (administratively: ip link set " + name + " up)", false
	case ifi.Flags&net.FlagRunning == 0:
		return "down (no carrier)", false
	}
	return "up", true
}

// pinnedFail is what a NIC that cannot carry traffic means for the
// connections pinned to it, in every message that says one is down.
const pinnedFail = "connections pinned to it fail (or fail over)"

// nicDown is a NIC that is there but cannot carry traffic, and why.
type nicDown struct{ name, state string }

// downNICs lists the NICs cfg pins to that are present but down. A NIC
// that is absent is already a warning of the config itself.
func downNICs(cfg *config.Config) []nicDown {
	var down []nicDown
	for _, nic := range cfg.NICs() {
		if state, usable := nicState(nic); !usable && !strings.HasPrefix(state, "absent") {
			down = append(down, nicDown{nic, state})
		}
	}
	return down
}

// printWarnings prints the file's warnings and each NIC it pins to that is
// down, for check, reload and the unit's ExecStartPre (check -q).
func printWarnings(w io.Writer, cfg *config.Config) {
	for _, warning := range cfg.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
	for _, d := range downNICs(cfg) {
		fmt.Fprintf(w, "warning: NIC %s is %s: %s until it is up\n", d.name, d.state, pinnedFail)
	}
}

// loadConfig reads path, or the embedded default when path is "".
func loadConfig(path string, opts config.Options) (*config.Config, error) {
	if path == "" {
		return config.Embedded(opts)
	}
	return config.Load(path, opts)
}

// reportConfigError prints every configuration error, one per line, and
// returns the exit status for it.
func reportConfigError(stderr io.Writer, err error) int {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(stderr, e)
		}
		return exitUsage
	}
	var one *config.Error
	if errors.As(err, &one) {
		fmt.Fprintln(stderr, one)
		return exitUsage
	}
	fmt.Fprintf(stderr, "nicproxy: %v\n", err)
	return exitUsage
}
