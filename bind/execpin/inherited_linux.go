package execpin

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// A socket made outside the cgroup belongs to the cgroup it was made in:
// none of exec's programs, egress included, ever see its packets. So exec
// does not hand CMD the network sockets it inherited itself (a shell's
// fd 3, a supervisor's leftovers): they are closed in CMD. On stdin,
// stdout or stderr, where closing would break CMD, such a socket is an
// error instead.

// netFamilies are the socket families that send through a NIC.
var netFamilies = map[int]string{
	unix.AF_INET:   "AF_INET",
	unix.AF_INET6:  "AF_INET6",
	unix.AF_PACKET: "AF_PACKET",
	unix.AF_XDP:    "AF_XDP",
}

// keepInheritedSocketsFromCMD marks every inherited network socket above
// stderr close-on-exec, saying so on stderr, and fails if stdin, stdout or
// stderr is one.
func keepInheritedSocketsFromCMD(stderr io.Writer) error {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list the descriptors exec inherited: %w", err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
		if err != nil {
			continue // not a socket, or the directory's own descriptor, now closed
		}
		family, ok := netFamilies[domain]
		if !ok {
			continue
		}
		if fd <= 2 {
			return fmt.Errorf("descriptor %d is an %s socket made outside exec's cgroup, which nothing could pin; give CMD a pipe or a file there", fd, family)
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		unix.CloseOnExec(fd)
		fmt.Fprintf(stderr, "nicproxy exec: warning: descriptor %d, an %s socket exec inherited, is closed in the command: a socket made outside the cgroup cannot be pinned\n", fd, family)
	}
	return nil
}
