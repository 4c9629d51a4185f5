//go:build !linux

package main

import (
	"fmt"
	"io"
)

// execCmd needs cgroup v2 and BPF, which only Linux has.
func execCmd(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "nicproxy exec: pinning in the kernel needs Linux (cgroup v2 and BPF); use the proxy on this system")
	return exitUsage
}

// execWithResolvConf is exec's own step on Linux.
func execWithResolvConf(args []string, stderr io.Writer) int {
	fmt.Fprintln(stderr, "nicproxy: "+resolvHelper+" is exec's own step, not a command")
	return exitUsage
}
