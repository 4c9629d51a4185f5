package relay

import (
	"io"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// copyStream moves src to dst until EOF. Between two *net.TCPConn it waits
// for src to be readable first, then splices exactly what is queued, so
// that a waiting tunnel holds no pipe: Go's splice keeps a pipe pair (two
// descriptors) per direction for as long as one call lasts, and io.Copy's
// call lasts the whole tunnel. Waiting on the socket itself brings an idle
// tunnel down to its two sockets.
func copyStream(dst, src net.Conn) (int64, error) {
	d, dok := dst.(*net.TCPConn)
	s, sok := src.(*net.TCPConn)
	if !dok || !sok {
		return io.Copy(dst, src)
	}
	rc, err := s.SyscallConn()
	if err != nil {
		return io.Copy(dst, src)
	}
	var total int64
	for {
		queued, err := waitQueued(rc)
		if err != nil {
			return total, err
		}
		if queued == 0 {
			return total, nil // EOF
		}
		var n int64
		if queued <= smallCopy {
			n, err = copySmall(d, s, queued)
		} else {
			// *io.LimitedReader keeps TCPConn.ReadFrom on the splice path.
			n, err = d.ReadFrom(&io.LimitedReader{R: s, N: int64(queued)})
		}
		total += n
		if err != nil {
			return total, err
		}
	}
}

// smallCopy is the most a read and a write move instead of a splice. Go's
// splice takes a pipe pair from a pool that only a garbage collection
// empties, so a burst of tunnels each splicing a few bytes (a banner, a TLS
// hello) leaves two idle descriptors per concurrent splice open for minutes
// in a proxy that allocates little. Small chunks gain nothing from splice
// anyway; bulk transfers queue more than this and keep it.
const smallCopy = 4 << 10

var smallBuffers = sync.Pool{New: func() any { return new([smallCopy]byte) }}

// copySmall moves the n queued bytes (n <= smallCopy) through a pooled
// buffer.
func copySmall(dst, src *net.TCPConn, n int) (int64, error) {
	buf := smallBuffers.Get().(*[smallCopy]byte)
	defer smallBuffers.Put(buf)
	read, err := src.Read(buf[:n])
	if read > 0 {
		written, werr := dst.Write(buf[:read])
		if werr != nil {
			return int64(written), werr
		}
	}
	return int64(read), err
}

// waitQueued blocks, in Go's poller and holding nothing, until the socket
// has bytes queued or has reached EOF, and returns how many are queued
// (0 at EOF).
func waitQueued(rc interface {
	Read(func(fd uintptr) bool) error
}) (int, error) {
	var queued int
	var opErr error
	err := rc.Read(func(fd uintptr) bool {
		queued, opErr = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if opErr != nil || queued > 0 {
			return true
		}
		// Nothing queued: either the peer has finished (a peek reads 0)
		// or nothing has come yet (EAGAIN: let the poller wait).
		var b [1]byte
		n, _, perr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case perr == unix.EAGAIN:
			return false
		case perr == unix.EINTR:
			return false
		case perr != nil:
			opErr = perr
		case n > 0:
			queued = n // arrived between the two calls
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	return queued, opErr
}
