package proxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// socketBytes reads how many bytes a tunnel's client socket has received
// (up) and had acknowledged (down).
func socketBytes(conn *net.TCPConn) (up, down uint64, ok bool) {
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
	return info.Bytes_received, info.Bytes_acked, true
}
