package bind

import (
	"fmt"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// pinToInterface pins a socket to one NIC for every family and both TCP and
// UDP: once bound, the kernel routes the socket only through that device and
// never falls back to another.
//
// SO_BINDTOIFINDEX (Linux 5.0+) is tried first because the kernel then skips
// a name lookup per socket; older kernels answer ENOPROTOOPT and get
// SO_BINDTODEVICE by name. Since Linux 5.7 neither needs CAP_NET_RAW on a
// socket that is not yet bound, which is always the case inside Control.
//
// An empty name or an index below 1 is refused with ErrNICMissing: the
// kernel reads SO_BINDTODEVICE "" and index 0 as "remove the binding", so
// passing either on would dial unpinned.
func pinToInterface(name string, index int) Control {
	return func(network, address string, c syscall.RawConn) error {
		if name == "" || index < 1 {
			return fmt.Errorf("pin socket to %q (index %d): %w", name, index, ErrNICMissing)
		}
		err := rawControl(c, func(fd int) error {
			err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BINDTOIFINDEX, index)
			if err != unix.ENOPROTOOPT {
				return err
			}
			return unix.BindToDevice(fd, name)
		})
		if err != nil {
			return fmt.Errorf("pin socket to %s: %w", name, os.NewSyscallError("setsockopt", err))
		}
		return nil
	}
}

// setMark sets SO_MARK so policy routing (ip rule fwmark) can act on the
// flow as well. It needs CAP_NET_ADMIN.
func setMark(mark uint32) Control {
	return func(network, address string, c syscall.RawConn) error {
		err := rawControl(c, func(fd int) error {
			return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		})
		if err != nil {
			return fmt.Errorf("set mark %#x: %w", mark, os.NewSyscallError("setsockopt", err))
		}
		return nil
	}
}

// bindSource binds an outgoing socket to a source address before connect.
// IP_BIND_ADDRESS_NO_PORT defers the port choice to connect(2), so a busy
// proxy does not run out of ephemeral ports per source address.
func bindSource(src netip.Addr) Control {
	return func(network, address string, c syscall.RawConn) error {
		if src.Is4() == isIPv6(network) {
			return nil // the source is for the other family; the NIC pin still holds
		}
		err := rawControl(c, func(fd int) error {
			if network == "tcp4" || network == "tcp6" {
				_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			}
			return unix.Bind(fd, sockaddr(src))
		})
		if err != nil {
			return fmt.Errorf("bind source %s: %w", src, os.NewSyscallError("bind", err))
		}
		return nil
	}
}
