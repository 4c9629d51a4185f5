package bind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// pinToInterface pins a socket to one NIC with IP_BOUND_IF or IPV6_BOUND_IF,
// which take an interface index and need no privilege.
func pinToInterface(name string, index int) Control {
	return func(network, address string, c syscall.RawConn) error {
		// A local copy: the closure runs for many sockets at once, and the
		// index looked up for one must not be written into the captured
		// variable the others read.
		index := index
		if name == "" {
			return fmt.Errorf("pin socket to an unnamed interface: %w", ErrNICMissing)
		}
		if index <= 0 {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				return fmt.Errorf("pin socket to %s: %w", name, ErrNICMissing)
			}
			index = ifi.Index
		}
		err := rawControl(c, func(fd int) error {
			if isIPv6(network) {
				return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_BOUND_IF, index)
			}
			return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BOUND_IF, index)
		})
		if err != nil {
			return fmt.Errorf("pin socket to %s: %w", name, os.NewSyscallError("setsockopt", err))
		}
		return nil
	}
}

// setMark fails: macOS has no socket mark.
func setMark(mark uint32) Control {
	return func(network, address string, c syscall.RawConn) error {
		return fmt.Errorf("set mark %#x: %w", mark, errors.ErrUnsupported)
	}
}

// bindSource binds an outgoing socket to a source address before connect.
func bindSource(src netip.Addr) Control {
	return func(network, address string, c syscall.RawConn) error {
		if src.Is4() == isIPv6(network) {
			return nil
		}
		err := rawControl(c, func(fd int) error { return unix.Bind(fd, sockaddr(src)) })
		if err != nil {
			return fmt.Errorf("bind source %s: %w", src, os.NewSyscallError("bind", err))
		}
		return nil
	}
}
