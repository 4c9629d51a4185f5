// Package sockdiag tells who is behind a local TCP connection: the user
// id and cgroup v2 of the socket (one exact netlink sock_diag lookup of
// its 4-tuple), the cgroup's path and systemd unit (a bounded cache), and
// on request the program holding it (from that cgroup's processes only).
//
// It never guesses: a socket that cannot be found, is closed, or whose
// owner cannot be read is an error with a Reason, never a near match.
package sockdiag

import (
	"errors"
	"fmt"
	"strings"
)

// Socket is what the kernel says about one connected TCP socket.
type Socket struct {
	// UID owns the socket (the creating process's effective uid).
	UID uint32
	// Inode is the socket's inode, as /proc/PID/fd links name it
	// (socket:[INODE]); never 0 for a socket that Lookup returns.
	Inode uint64
	// CgroupID is the socket's cgroup v2 id: the inode of the cgroup's
	// directory. 0 when the kernel reports none.
	CgroupID uint64
}

// Reason is why a socket's owner could not be told; it labels the
// metric and the one log line per reason.
type Reason string

// Reasons.
const (
	// NotFound: no socket has the 4-tuple here (it is gone, or in
	// another network namespace).
	NotFound Reason = "not-found"
	// Closed: the socket is still known but no process holds it (the
	// client closed it, or it is in TIME_WAIT).
	Closed Reason = "closed"
	// Denied: the kernel or /proc refused to tell (no permission).
	Denied Reason = "denied"
	// NoCgroup2: no cgroup v2 hierarchy is mounted, or the socket's
	// cgroup is not in it.
	NoCgroup2 Reason = "no-cgroup2"
	// NoOwner: no process in the socket's cgroup holds the socket (it
	// moved, or passed the socket on), or its owners run different
	// programs.
	NoOwner Reason = "no-owner"
	// Failed: the lookup itself failed (netlink or /proc errors).
	Failed Reason = "failed"
)

// Reasons lists every Reason, so metrics can show each one from zero.
func Reasons() []Reason { return []Reason{NotFound, Closed, Denied, NoCgroup2, NoOwner, Failed} }

// Error is a failed lookup, with its reason.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %v", e.Reason, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns err's Reason, Failed for an error of another kind.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return Failed
}

func fail(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}

// UnitOf returns the systemd unit a cgroup path belongs to: its last
// *.service or *.scope element, or "" when it has none.
func UnitOf(path string) string {
	for path != "" && path != "/" {
		i := strings.LastIndexByte(path, '/')
		el := path[i+1:]
		if strings.HasSuffix(el, ".service") || strings.HasSuffix(el, ".scope") {
			return el
		}
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return ""
}
