package main

import (
	"errors"
	"fmt"
	"io"

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
	return config.Options{Interfaces: nics, DefaultRouteInterface: defaultNIC}, nil
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
