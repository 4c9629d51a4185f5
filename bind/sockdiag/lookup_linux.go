package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// Layout of the kernel's structs (include/uapi/linux/inet_diag.h).
const (
	sizeofSockID    = 48 // inet_diag_sockid
	sizeofReqV2     = 8 + sizeofSockID
	sizeofDiagMsg   = 4 + sizeofSockID + 20 // inet_diag_msg
	inetDiagCgroup  = 21                    // INET_DIAG_CGROUP_ID, a u64
	tcpTimeWait     = 6                     // TCP_TIME_WAIT
	tcpListen       = 10                    // TCP_LISTEN
	noCookie        = 0xffffffff            // INET_DIAG_NOCOOKIE, each half
	netlinkPoolSize = 8
)

// Lookup asks the kernel for one socket by its exact 4-tuple, through
// NETLINK_SOCK_DIAG. It keeps a few netlink sockets open for reuse, so a
// lookup costs one send and one receive; safe for concurrent use.
type Lookup struct {
	mu     sync.Mutex
	idle   []int // netlink sockets not in use
	closed bool
}

// NewLookup returns a Lookup; it opens netlink sockets as lookups need them.
func NewLookup() *Lookup { return &Lookup{} }

// Close closes the idle netlink sockets; lookups after it open and close
// their own.
func (l *Lookup) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fd := range l.idle {
		unix.Close(fd)
	}
	l.idle, l.closed = nil, true
	return nil
}

// Socket returns the TCP socket whose local address is local and whose
// peer is remote, as seen from that socket: for a proxy's client, local
// is the client's address and remote the proxy's listening address. A
// socket in TIME_WAIT, or one no process holds any more, is Closed; one
// that does not exist is NotFound.
func (l *Lookup) Socket(local, remote netip.AddrPort) (Socket, error) {
	la, ra := local.Addr().Unmap(), remote.Addr().Unmap()
	if la.Is4() != ra.Is4() {
		return Socket{}, fail(NotFound, "%s and %s are of different families", local, remote)
	}
	fd, err := l.get()
	if err != nil {
		return Socket{}, err
	}
	s, err := query(fd, la, local.Port(), ra, remote.Port())
	if err != nil && ReasonOf(err) == Failed {
		unix.Close(fd) // its state is unknown: do not reuse it
	} else {
		l.put(fd)
	}
	return s, err
}

func (l *Lookup) get() (int, error) {
	l.mu.Lock()
	if n := len(l.idle); n > 0 {
		fd := l.idle[n-1]
		l.idle = l.idle[:n-1]
		l.mu.Unlock()
		return fd, nil
	}
	l.mu.Unlock()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		r := Failed
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EAFNOSUPPORT) {
			r = Denied
		}
		return -1, &Error{Reason: r, Err: fmt.Errorf("open a sock_diag netlink socket: %w", err)}
	}
	// The kernel answers during the send; the timeout only bounds a
	// receive that should never wait.
	tv := unix.Timeval{Sec: 1}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return fd, nil
}

func (l *Lookup) put(fd int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(l.idle) >= netlinkPoolSize {
		unix.Close(fd)
		return
	}
	l.idle = append(l.idle, fd)
}

// query sends one SOCK_DIAG_BY_FAMILY request without NLM_F_DUMP: the
// kernel then looks the 4-tuple up in its hash tables (inet_diag_find_one)
// instead of walking every socket.
func query(fd int, la netip.Addr, lport uint16, ra netip.Addr, rport uint16) (Socket, error) {
	var req [unix.NLMSG_HDRLEN + sizeofReqV2]byte
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(req[8:], 1) // sequence
	b := req[unix.NLMSG_HDRLEN:]
	b[0] = unix.AF_INET
	if la.Is6() {
		b[0] = unix.AF_INET6
	}
	b[1] = unix.IPPROTO_TCP
	// idiag_ext asks for nothing: the kernel adds INET_DIAG_CGROUP_ID to
	// every full socket's answer unasked.
	ne.PutUint32(b[4:], 0xffffffff) // every state
	putSockID(b[8:], la, lport, ra, rport)
	id := b[8 : 8+sizeofSockID]

	if err := unix.Sendto(fd, req[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return Socket{}, fail(Failed, "sock_diag request: %w", err)
	}
	var resp [1024]byte
	n, _, err := unix.Recvfrom(fd, resp[:], 0)
	if err != nil {
		return Socket{}, fail(Failed, "sock_diag answer: %w", err)
	}
	return parse(resp[:n], id)
}

// putSockID writes an inet_diag_sockid: ports and addresses in network
// order, no interface, no cookie.
func putSockID(b []byte, la netip.Addr, lport uint16, ra netip.Addr, rport uint16) {
	binary.BigEndian.PutUint16(b[0:], lport)
	binary.BigEndian.PutUint16(b[2:], rport)
	if la.Is4() {
		a, r := la.As4(), ra.As4()
		copy(b[4:], a[:])
		copy(b[20:], r[:])
	} else {
		a, r := la.As16(), ra.As16()
		copy(b[4:], a[:])
		copy(b[20:], r[:])
	}
	binary.NativeEndian.PutUint32(b[36:], 0)
	binary.NativeEndian.PutUint32(b[40:], noCookie)
	binary.NativeEndian.PutUint32(b[44:], noCookie)
}

// parse reads the kernel's one answer: an inet_diag_msg, or an error
// message (ENOENT when no socket has the 4-tuple).
func parse(msg []byte, id []byte) (Socket, error) {
	ne := binary.NativeEndian
	if len(msg) < unix.NLMSG_HDRLEN {
		return Socket{}, fail(Failed, "sock_diag answer of %d bytes", len(msg))
	}
	length := int(ne.Uint32(msg[0:]))
	if length > len(msg) || length < unix.NLMSG_HDRLEN {
		return Socket{}, fail(Failed, "sock_diag answer says %d bytes, has %d", length, len(msg))
	}
	body := msg[unix.NLMSG_HDRLEN:length]
	switch ne.Uint16(msg[4:]) {
	case unix.NLMSG_ERROR:
		if len(body) < 4 {
			return Socket{}, fail(Failed, "short sock_diag error")
		}
		errno := unix.Errno(-int32(ne.Uint32(body)))
		switch errno {
		case unix.ENOENT:
			return Socket{}, fail(NotFound, "no such socket")
		case unix.EPERM, unix.EACCES:
			return Socket{}, fail(Denied, "sock_diag: %w", errno)
		}
		return Socket{}, fail(Failed, "sock_diag: %w", errno)
	case unix.SOCK_DIAG_BY_FAMILY:
	default:
		return Socket{}, fail(Failed, "sock_diag answer of type %d", ne.Uint16(msg[4:]))
	}
	if len(body) < sizeofDiagMsg {
		return Socket{}, fail(Failed, "short inet_diag_msg (%d bytes)", len(body))
	}
	state := body[1]
	// The kernel's lookup falls back to a listener on the port; only the
	// socket with exactly the asked ports and addresses is the answer.
	got := body[4 : 4+sizeofSockID]
	if string(got[:36]) != string(id[:36]) {
		return Socket{}, fail(NotFound, "the kernel answered for another socket")
	}
	s := Socket{UID: ne.Uint32(body[64:]), Inode: uint64(ne.Uint32(body[68:]))}
	if state == tcpTimeWait || state == tcpListen || s.Inode == 0 {
		return Socket{}, fail(Closed, "socket in state %d held by no process", state)
	}
	for attrs := body[sizeofDiagMsg:]; len(attrs) >= unix.SizeofRtAttr; {
		alen, typ := int(ne.Uint16(attrs[0:])), ne.Uint16(attrs[2:])
		if alen < unix.SizeofRtAttr || alen > len(attrs) {
			break
		}
		if typ == inetDiagCgroup && alen >= unix.SizeofRtAttr+8 {
			s.CgroupID = ne.Uint64(attrs[unix.SizeofRtAttr:])
		}
		next := (alen + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if next > len(attrs) {
			break
		}
		attrs = attrs[next:]
	}
	return s, nil
}
