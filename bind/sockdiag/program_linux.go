package sockdiag

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Program returns the file name of the executable of the process holding
// the socket with inode, looked for only among the processes of the
// cgroup at path under mount (its cgroup.procs), not all of /proc. The
// socket's cgroup is where it was made, so its maker is found there unless
// it moved since. When processes running different programs share the
// socket, there is no one answer, and that is an error, not a pick.
func Program(mount, path string, inode uint64) (string, error) {
	if mount == "" {
		return "", fail(NoCgroup2, "no cgroup v2 hierarchy is mounted")
	}
	procs, err := os.ReadFile(filepath.Join(mount, path, "cgroup.procs"))
	if err != nil {
		return "", fsFail(err, "read the processes of cgroup %s: %w", path, err)
	}
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	var name string
	var denied error
	for len(procs) > 0 {
		var line []byte
		line, procs, _ = bytes.Cut(procs, []byte("\n"))
		if len(line) == 0 {
			continue
		}
		pid := string(line)
		holds, err := holdsSocket(pid, want)
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				denied = err
			}
			continue // exited, or not ours to read
		}
		if !holds {
			continue
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
	switch {
	case name != "":
		return name, nil
	case denied != nil:
		return "", &Error{Reason: Denied, Err: denied}
	}
	return "", fail(NoOwner, "no process of cgroup %s holds socket %d", path, inode)
}

// holdsSocket reports whether process pid has an fd linking to want.
func holdsSocket(pid, want string) (bool, error) {
	dir := "/proc/" + pid + "/fd/"
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if link, err := os.Readlink(dir + n); err == nil && link == want {
			return true, nil
		}
	}
	return false, nil
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
