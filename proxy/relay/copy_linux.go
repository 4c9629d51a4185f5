package relay

import (
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// copyStream moves src to dst until EOF. Between two *net.TCPConn it waits
// in Go's poller on src itself, holding nothing, then reads what came (up
// to smallCopy) through a pooled buffer and writes it; when that filled
// the buffer, it splices whatever else is queued. So a waiting tunnel holds
// its two sockets and no pipe or buffer (Go's splice keeps a pipe pair per
// direction for as long as one call lasts, and io.Copy's call lasts the
// whole tunnel), a small chunk (a banner, a request, a TLS record) costs
// one read and one write, and bulk transfers still move in the kernel.
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
		n, err := readSmall(rc, d)
		total += int64(n)
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil // EOF
		}
		if n < smallCopy {
			continue
		}
		// The buffer filled: more is likely queued; splice it.
		queued, err := queuedBytes(rc)
		if err != nil {
			return total, err
		}
		if queued > 0 {
			// *io.LimitedReader keeps TCPConn.ReadFrom on the splice path.
			spliced, err := d.ReadFrom(&io.LimitedReader{R: s, N: int64(queued)})
			total += spliced
			if err != nil {
				return total, err
			}
		}
	}
}

// smallCopy is the most one read moves through user space. Go's splice
// takes a pipe pair from a pool that only a garbage collection empties, so
// a burst of tunnels each splicing a few bytes leaves two idle descriptors
// per concurrent splice open for minutes in a proxy that allocates little;
// small chunks gain nothing from splice anyway.
const smallCopy = 4 << 10

var smallBuffers = sync.Pool{New: func() any { return new([smallCopy]byte) }}

// readSmall waits until src (through rc) is readable, reads what is there
// into a pooled buffer, and writes it to dst. The buffer is taken only once
// data is there, so a tunnel waiting for data holds none. It returns the
// bytes moved (0 at EOF).
func readSmall(rc interface {
	Read(func(fd uintptr) bool) error
}, dst *net.TCPConn) (int, error) {
	var (
		buf   *[smallCopy]byte
		n     int
		rerr  error
		empty bool
	)
	err := rc.Read(func(fd uintptr) bool {
		buf = smallBuffers.Get().(*[smallCopy]byte)
		for {
			n, rerr = unix.Read(int(fd), buf[:])
			if rerr != unix.EINTR {
				break
			}
		}
		if rerr == unix.EAGAIN {
			smallBuffers.Put(buf)
			buf = nil
			return false // nothing yet: wait in the poller, holding nothing
		}
		empty = n <= 0
		return true
	})
	if buf != nil {
		defer smallBuffers.Put(buf)
	}
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, os.NewSyscallError("read", rerr)
	}
	if empty {
		return 0, nil
	}
	written, err := dst.Write(buf[:n])
	return written, err
}

// queuedBytes returns how many bytes wait in the socket's receive queue,
// without waiting.
func queuedBytes(rc interface {
	Control(func(fd uintptr)) error
}) (int, error) {
	var queued int
	var qerr error
	if err := rc.Control(func(fd uintptr) { queued, qerr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		return 0, err
	}
	if qerr != nil {
		return 0, os.NewSyscallError("ioctl", qerr)
	}
	return queued, nil
}
