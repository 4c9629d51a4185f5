package sockdiag

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is who a running process is, the way its sockets would show it.
type Process struct {
	// UID is the process's effective user id, the one its sockets get.
	UID uint32
	// Cgroup is its cgroup v2 path, "" when the host has no cgroup v2.
	Cgroup string
	// Unit is Cgroup's systemd unit, "" when none.
	Unit string
	// Program is the file name of its executable.
	Program string
}

// ProcessOf reads /proc for pid: for `nicproxy route --from-pid`, which
// asks what a program's connection would match before it makes one.
// mount is the cgroup v2 mount point ("" when none: no cgroup).
func ProcessOf(pid int, mount string) (Process, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return Process{}, fmt.Errorf("process %d: %w", pid, err)
	}
	var p Process
	uidFound := false
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				v, err := strconv.ParseUint(f[1], 10, 32)
				p.UID, uidFound = uint32(v), err == nil
			}
		}
	}
	if !uidFound {
		return Process{}, fmt.Errorf("process %d: no Uid line in %s/status", pid, dir)
	}
	exe, err := os.Readlink(dir + "/exe")
	if err != nil {
		return Process{}, fmt.Errorf("process %d's program: %w", pid, err)
	}
	p.Program = filepath.Base(strings.TrimSuffix(exe, " (deleted)"))
	if mount == "" {
		return p, nil
	}
	cg, err := os.ReadFile(dir + "/cgroup")
	if err != nil {
		return Process{}, fmt.Errorf("process %d's cgroup: %w", pid, err)
	}
	for line := range strings.Lines(string(cg)) {
		if path, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			p.Cgroup, p.Unit = path, UnitOf(path)
		}
	}
	return p, nil
}
