package sockdiag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Programs finds the program holding a socket, among the processes of the
// socket's cgroup only (its cgroup.procs), never all of /proc. Reading a
// process's fd links costs about a microsecond and a half each, and a busy
// client holds hundreds, so one reading of a cgroup's processes is kept:
// it names every socket they hold, and the sockets of connections still in
// their handshake are among them. A later lookup found there costs one
// readlink that proves the process still holds the socket; one not found
// reads the cgroup's processes again. Safe for concurrent use.
type Programs struct {
	mu    sync.Mutex
	scans map[string]map[uint64][]holder // by cgroup path: socket inode -> its holders
}

// holder is one fd of one process that linked to a socket when read.
type holder struct {
	pid, fd int32
}

// Bounds of the Programs cache: cgroups kept, and sockets kept per cgroup.
const (
	maxScans       = 32
	maxScanSockets = 4096
)

// NewPrograms returns an empty Programs.
func NewPrograms() *Programs { return &Programs{scans: map[string]map[uint64][]holder{}} }

// Find returns the file name of the executable of the process holding the
// socket with inode, looked for among the processes of the cgroup at path
// under mount. The socket's cgroup is where it was made, so its maker is
// found there unless it moved since. When processes running different
// programs share the socket, there is no one answer, and that is an
// error, not a pick.
func (p *Programs) Find(mount, path string, inode uint64) (string, error) {
	if mount == "" {
		return "", fail(NoCgroup2, "no cgroup v2 hierarchy is mounted")
	}
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	p.mu.Lock()
	defer p.mu.Unlock()
	if holders, ok := p.scans[path][inode]; ok {
		delete(p.scans[path], inode) // one lookup per connection
		if name, err := programOf(holders, want, inode); ReasonOf(err) != NoOwner {
			return name, err
		}
	}
	sc, err := scan(mount, path, inode)
	if err != nil {
		return "", err
	}
	denied := sc.denied
	if _, ok := p.scans[path]; !ok && len(p.scans) >= maxScans {
		clear(p.scans)
	}
	holders, ok := sc.found[inode]
	delete(sc.found, inode)
	p.scans[path] = sc.found
	if !ok {
		if denied != nil {
			return "", &Error{Reason: Denied, Err: denied}
		}
		return "", fail(NoOwner, "no process of cgroup %s holds socket %d", path, inode)
	}
	return programOf(holders, want, inode)
}

// programOf checks that holders still hold the socket (their fd still
// links to want) and returns their one program.
func programOf(holders []holder, want string, inode uint64) (string, error) {
	var name string
	var link [64]byte
	for _, h := range holders {
		pid := strconv.Itoa(int(h.pid))
		n, err := unix.Readlink("/proc/"+pid+"/fd/"+strconv.Itoa(int(h.fd)), link[:])
		if err != nil || string(link[:n]) != want {
			continue // closed or replaced since it was read
		}
		exe, err := os.Readlink("/proc/" + pid + "/exe")
		if err != nil {
			return "", fsFail(err, "read the program of process %s: %w", pid, err)
		}
		exe = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
		if name != "" && name != exe {
			return "", fail(NoOwner, "socket %d is held by both %s and %s", inode, name, exe)
		}
		name = exe
	}
	if name == "" {
		return "", fail(NoOwner, "no process holds socket %d any more", inode)
	}
	return name, nil
}

// scan reads the socket links of every process of the cgroup at path:
// socket inode -> the fds holding it, at most maxScanSockets sockets
// besides want, which is always kept. denied is the last permission
// error met on a process, for when the socket is not found.
func scan(mount, path string, want uint64) (scanned, error) {
	procs, err := os.ReadFile(filepath.Join(mount, path, "cgroup.procs"))
	if err != nil {
		return scanned{}, fsFail(err, "read the processes of cgroup %s: %w", path, err)
	}
	found := map[uint64][]holder{}
	var denied error
	for len(procs) > 0 {
		var line []byte
		line, procs, _ = bytes.Cut(procs, []byte("\n"))
		pid, err := strconv.ParseInt(string(line), 10, 32)
		if err != nil {
			continue
		}
		if err := socketsOf(int32(pid), want, found); errors.Is(err, os.ErrPermission) {
			denied = err
		}
	}
	return scanned{found: found, denied: denied}, nil
}

// scanned is one reading of a cgroup's processes.
type scanned struct {
	found  map[uint64][]holder
	denied error // the last permission error met, if any
}

// socketsOf adds the sockets process pid holds to found. It reads the
// fd directory once and each link relative to it (readlinkat), with no
// path walk and no allocation per fd.
func socketsOf(pid int32, want uint64, found map[uint64][]holder) error {
	path := "/proc/" + strconv.Itoa(int(pid)) + "/fd"
	dir, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(dir)
	var ents [8192]byte
	var link [64]byte
	for {
		n, err := unix.Getdents(dir, ents[:])
		if err != nil {
			return &os.PathError{Op: "getdents", Path: path, Err: err}
		}
		if n <= 0 {
			return nil
		}
		for b := ents[:n]; len(b) >= 19; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			if reclen < 19 || reclen > len(b) {
				break
			}
			name := b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			b = b[reclen:]
			if len(name) == 0 || name[0] == '.' {
				continue
			}
			m, err := readlinkat(dir, name, link[:])
			if err != nil {
				continue
			}
			inode, ok := socketInode(link[:m])
			if !ok {
				continue
			}
			fd, _ := strconv.Atoi(string(name))
			if inode != want && len(found[inode]) == 0 && len(found) >= maxScanSockets {
				continue
			}
			found[inode] = append(found[inode], holder{pid: pid, fd: int32(fd)})
		}
	}
}

// socketInode parses a "socket:[INODE]" link.
func socketInode(link []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(link, []byte("socket:["))
	if !ok || len(rest) < 2 || rest[len(rest)-1] != ']' {
		return 0, false
	}
	var v uint64
	for _, c := range rest[:len(rest)-1] {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// readlinkat is unix.Readlinkat with the name given as bytes, so no
// string is made per fd.
func readlinkat(dir int, name []byte, buf []byte) (int, error) {
	var path [32]byte
	if len(name) >= len(path) {
		return 0, unix.ENAMETOOLONG
	}
	copy(path[:], name)
	r, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dir), uintptr(unsafe.Pointer(&path[0])),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

func fsFail(err error, format string, args ...any) error {
	r := Failed
	switch {
	case errors.Is(err, os.ErrPermission):
		r = Denied
	case errors.Is(err, os.ErrNotExist):
		r = NoOwner
	}
	return fail(r, format, args...)
}
