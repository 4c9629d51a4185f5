package sockdiag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Programs finds the program holding a socket, among the processes of the
// socket's cgroup only (its cgroup.procs), never all of /proc. Reading a
// process's fd links costs about a microsecond and a half each, and a busy
// client holds hundreds, so one reading of a cgroup's processes serves
// many lookups: it names every socket they hold, and the sockets of
// connections still in their handshake are among them. A later lookup
// found there costs one readlink that proves the process still holds the
// socket. Lookups that miss wait for the next reading, one per cgroup at a
// time, so a burst of new connections shares one reading instead of
// making one each. Safe for concurrent use.
type Programs struct {
	mu       sync.Mutex
	cgroups  map[string]*cgroupReadings // by cgroup path
	readings int                        // readings begun, for tests
}

// cgroupReadings is what one cgroup's readings left, and the readings
// under way and to come.
type cgroupReadings struct {
	found   map[uint64][]holder // socket inode -> holders, those not yet looked up
	current *reading            // under way, or nil
	next    *reading            // to start when current ends, or nil
}

// reading is one reading of a cgroup's processes' sockets. Its fields
// are set before done is closed; found is then guarded by Programs.mu.
type reading struct {
	done   chan struct{}
	wants  map[uint64]bool // sockets looked up by those waiting for it, kept past the bound
	found  map[uint64][]holder
	denied error // the last permission error met on a process, if any
	err    error // the cgroup's processes could not be read
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
func NewPrograms() *Programs { return &Programs{cgroups: map[string]*cgroupReadings{}} }

// Find returns the file name of the executable of the process holding the
// socket with inode, looked for among the processes of the cgroup at path
// under mount. The socket's cgroup is where it was made, so its maker is
// found there unless it moved since. When processes running different
// programs share the socket, there is no one answer, and that is an
// error, not a pick.
//
// A socket is no one's only when a reading that began after Find was
// called does not have it: the socket existed then, so such a reading
// saw it if any process of the cgroup held it.
func (p *Programs) Find(mount, path string, inode uint64) (string, error) {
	if mount == "" {
		return "", fail(NoCgroup2, "no cgroup v2 hierarchy is mounted")
	}
	p.mu.Lock()
	cg := p.cgroup(path)
	name, ok, err := p.fromFound(cg, inode)
	if cur := cg.current; !ok && cur != nil {
		// The reading under way may have seen it.
		p.mu.Unlock()
		<-cur.done
		p.mu.Lock()
		name, ok, err = p.fromFound(cg, inode)
	}
	if ok {
		p.mu.Unlock()
		return name, err
	}
	r := p.readAfterNow(mount, path, cg, inode)
	holders, ok := take(r.found, inode)
	p.mu.Unlock()
	switch {
	case r.err != nil:
		return "", r.err
	case !ok && r.denied != nil:
		return "", &Error{Reason: Denied, Err: r.denied}
	case !ok:
		return "", fail(NoOwner, "no process of cgroup %s holds socket %d", path, inode)
	}
	return programOf(holders, inode, true)
}

// cgroup returns path's readings, made if new; p.mu is held.
func (p *Programs) cgroup(path string) *cgroupReadings {
	cg, ok := p.cgroups[path]
	if !ok {
		if len(p.cgroups) >= maxScans {
			clear(p.cgroups) // readings under way still finish for their waiters
		}
		cg = &cgroupReadings{}
		p.cgroups[path] = cg
	}
	return cg
}

// readAfterNow waits for a reading of the cgroup that begins after it is
// called: it joins the next one, or makes it and, once the reading under
// way ends, does it. p.mu is held on entry and on return.
func (p *Programs) readAfterNow(mount, path string, cg *cgroupReadings, inode uint64) *reading {
	if r := cg.next; r != nil {
		r.wants[inode] = true
		p.mu.Unlock()
		<-r.done
		p.mu.Lock()
		return r
	}
	r := &reading{done: make(chan struct{}), wants: map[uint64]bool{inode: true}}
	cg.next = r
	for cg.current != nil {
		cur := cg.current
		p.mu.Unlock()
		<-cur.done
		p.mu.Lock()
	}
	cg.current, cg.next = r, nil
	p.readings++
	wants := r.wants // no one joins a reading once it is current
	p.mu.Unlock()
	found, denied, err := scan(mount, path, wants)
	p.mu.Lock()
	r.found, r.denied, r.err = found, denied, err
	if err == nil {
		cg.found = found
	}
	cg.current = nil
	close(r.done)
	return r
}

// fromFound answers from what earlier readings found, when one found
// the socket and its holder still holds it; ok is false otherwise.
// p.mu is held on entry and on return.
func (p *Programs) fromFound(cg *cgroupReadings, inode uint64) (name string, ok bool, err error) {
	holders, found := take(cg.found, inode)
	if !found {
		return "", false, nil
	}
	p.mu.Unlock()
	name, err = programOf(holders, inode, false)
	p.mu.Lock()
	return name, ReasonOf(err) != NoOwner, err
}

// take removes inode's holders from found and returns them.
func take(found map[uint64][]holder, inode uint64) ([]holder, bool) {
	holders, ok := found[inode]
	delete(found, inode)
	return holders, ok
}

// programOf returns the one program of holders. Holders from a reading
// that began before the lookup are first proved to still hold the socket
// (their fd still links to it), since it may have changed hands since;
// fresh ones were read after the lookup began.
func programOf(holders []holder, inode uint64, fresh bool) (string, error) {
	var name string
	var path [64]byte
	var link [unix.PathMax]byte
	for _, h := range holders {
		proc := strconv.AppendInt(append(path[:0], "/proc/"...), int64(h.pid), 10)
		if !fresh {
			n, err := readlinkat(unix.AT_FDCWD, strconv.AppendInt(append(proc, "/fd/"...), int64(h.fd), 10), link[:])
			if got, ok := socketInode(link[:max(n, 0)]); err != nil || !ok || got != inode {
				continue // closed or replaced since it was read
			}
		}
		n, err := readlinkat(unix.AT_FDCWD, append(proc, "/exe"...), link[:])
		if err != nil {
			err = &os.PathError{Op: "readlink", Path: string(proc) + "/exe", Err: err}
			return "", fsFail(err, "read the program of process %d: %w", h.pid, err)
		}
		exe := bytes.TrimSuffix(link[:n], []byte(" (deleted)"))
		exe = exe[bytes.LastIndexByte(exe, '/')+1:]
		if name != "" && name != string(exe) {
			return "", fail(NoOwner, "socket %d is held by both %s and %s", inode, name, string(exe))
		}
		if name == "" {
			name = string(exe)
		}
	}
	if name == "" {
		return "", fail(NoOwner, "no process holds socket %d any more", inode)
	}
	return name, nil
}

// scan reads the socket links of every process of the cgroup at path:
// socket inode -> the fds holding it, at most maxScanSockets sockets
// besides those in wants, which are always kept. denied is the last
// permission error met on a process, for when a socket is not found.
func scan(mount, path string, wants map[uint64]bool) (found map[uint64][]holder, denied, err error) {
	procs, err := os.ReadFile(filepath.Join(mount, path, "cgroup.procs"))
	if err != nil {
		return nil, nil, fsFail(err, "read the processes of cgroup %s: %w", path, err)
	}
	found = map[uint64][]holder{}
	for len(procs) > 0 {
		var line []byte
		line, procs, _ = bytes.Cut(procs, []byte("\n"))
		pid, err := strconv.ParseInt(string(line), 10, 32)
		if err != nil {
			continue
		}
		if err := socketsOf(int32(pid), wants, found); errors.Is(err, os.ErrPermission) {
			denied = err
		}
	}
	return found, denied, nil
}

// socketsOf adds the sockets process pid holds to found. It reads the
// fd directory once and each link relative to it (readlinkat), with no
// path walk and no allocation per fd.
func socketsOf(pid int32, wants map[uint64]bool, found map[uint64][]holder) error {
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
			if !wants[inode] && len(found[inode]) == 0 && len(found) >= maxScanSockets {
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
	var path [64]byte
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
