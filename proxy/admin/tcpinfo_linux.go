package admin

import (
	"net"

	"golang.org/x/sys/unix"
)

// socketBytes reads how many bytes an open tunnel's upstream socket has
// had acknowledged (sent, up) and has received (down): what crossed the
// NIC so far, from the kernel, without wrapping the conn the relay splices.
func socketBytes(conn *net.TCPConn) (sent, received uint64, ok bool) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || serr != nil {
		return 0, 0, false
	}
	return info.Bytes_acked, info.Bytes_received, true
}
