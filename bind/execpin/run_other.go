//go:build !linux

package execpin

import (
	"fmt"
	"io"
)

// Run needs cgroup v2 and BPF, which only Linux has.
func Run(argv []string, o Options) int {
	fmt.Fprintln(o.Stderr, "nicproxy exec: pinning in the kernel needs Linux (cgroup v2 and BPF); use the proxy on this system")
	return exitUsage
}

// Unpin needs Linux too.
func Unpin(dir string, stderr io.Writer) error {
	return fmt.Errorf("pinning in the kernel needs Linux")
}

// Helper is exec's own step on Linux.
func Helper(args []string, stderr io.Writer) int {
	fmt.Fprintln(stderr, "nicproxy: "+HelperCommand+" is exec's own step, not a command")
	return exitUsage
}

// SelfTest is exec's own step on Linux.
func SelfTest(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "nicproxy: "+SelfTestCommand+" is exec's own step, not a command")
	return exitUsage
}
