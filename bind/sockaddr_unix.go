//go:build linux || darwin

package bind

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// sockaddr turns an address into a port-0 sockaddr for bind(2).
func sockaddr(a netip.Addr) unix.Sockaddr {
	if a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Addr: a.As16()}
}
