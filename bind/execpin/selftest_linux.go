package execpin

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"nicproxy/bind/cgroup"
)

// selfTest checks, before CMD starts, that a pin really takes inside
// group for a process with CMD's credentials: exec runs itself there (the
// SelfTestCommand step), which connects a UDP socket to a destination the
// policy pins (connecting a UDP socket sends nothing) and reads back the
// interface the socket is bound to. A pin that does not take is an error:
// the command is not started.
func selfTest(group *cgroup.Group, policy cgroup.Policy, local []netip.Prefix, user string) error {
	dst, v, ok := policy.Probe(local)
	if !ok {
		return nil // nothing is pinned; egress still holds the rules
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("self-test: %w", err)
	}
	// Started as root (exec's binary need not be the user's to run), it
	// becomes the user itself.
	cmd := exec.Command(self, SelfTestCommand, dst.String(), user)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: group.FD()}
	out, err := cmd.CombinedOutput()
	got := strings.TrimSpace(string(out))
	if err != nil {
		return fmt.Errorf("self-test: a UDP socket connected to %s inside the cgroup: %v: %s", dst, err, got)
	}
	if got != strconv.Itoa(v.Index) {
		return fmt.Errorf("self-test: a UDP socket connected to %s inside the cgroup is bound to interface %s, want %s (%d): the pin does not take", dst, got, v.NIC, v.Index)
	}
	return nil
}

// SelfTest is the self-test's own step: args are ADDR:PORT and USER (""
// for exec's own). As USER, it prints the interface index a UDP socket
// connected to ADDR:PORT is bound to.
func SelfTest(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(stderr, "nicproxy: "+SelfTestCommand+" is exec's own step, not a command")
		return exitUsage
	}
	dst, err := netip.ParseAddrPort(args[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if err := becomeUser(args[1]); err != nil {
		fmt.Fprintln(stderr, err)
		return exitFailure
	}
	family, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
	if dst.Addr().Is6() && !dst.Addr().Is4In6() {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		fmt.Fprintf(stderr, "socket: %v\n", err)
		return exitFailure
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, sa); err != nil {
		if errors.Is(err, unix.EPERM) {
			err = fmt.Errorf("%w (the connect program could not pin it)", err)
		}
		fmt.Fprintf(stderr, "connect: %v\n", err)
		return exitFailure
	}
	idx, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX)
	if err != nil {
		fmt.Fprintf(stderr, "getsockopt SO_BINDTOIFINDEX: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, idx)
	return exitOK
}
