package cgroup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FallbackMount is where exec mounts a cgroup v2 hierarchy of its own on a
// host that mounts only cgroup v1.
const FallbackMount = "/run/nicproxy/cgroup"

// FindHierarchy returns the mount point of the cgroup v2 hierarchy: the
// unified one (/sys/fs/cgroup), a hybrid host's /sys/fs/cgroup/unified, or
// any other cgroup2 mount; "" if the host mounts none.
func FindHierarchy() (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find the cgroup v2 hierarchy: %w", err)
	}
	var found []string
	for line := range strings.Lines(string(data)) {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fields, fsFields := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(fsFields) < 1 || fsFields[0] != "cgroup2" || fields[3] != "/" {
			continue
		}
		found = append(found, unescapeMount(fields[4]))
	}
	for _, preferred := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		for _, m := range found {
			if m == preferred {
				return m, nil
			}
		}
	}
	if len(found) > 0 {
		return found[0], nil
	}
	return "", nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Hierarchy returns the cgroup v2 mount point, mounting one at
// FallbackMount when the host has none.
func Hierarchy() (string, error) {
	m, err := FindHierarchy()
	if err != nil || m != "" {
		return m, err
	}
	if err := os.MkdirAll(FallbackMount, 0o755); err != nil {
		return "", fmt.Errorf("the host mounts no cgroup v2 hierarchy, and making %s for one failed: %w", FallbackMount, err)
	}
	if err := unix.Mount("none", FallbackMount, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return "", fmt.Errorf("the host mounts no cgroup v2 hierarchy, and mounting one at %s failed: %w", FallbackMount, os.NewSyscallError("mount", err))
	}
	return FallbackMount, nil
}

// Group is a cgroup exec made for one command.
type Group struct {
	Path string
	dir  *os.File // held open for clone3(CLONE_INTO_CGROUP)
}

// NewGroup makes a fresh cgroup for one exec: below this process's own
// cgroup when it is in the hierarchy, so resource limits that apply to
// nicproxy apply to the command as well.
func NewGroup(hierarchy string) (*Group, error) {
	parent := hierarchy
	if own, err := ownCgroup(); err == nil && own != "/" {
		if st, err := os.Stat(filepath.Join(hierarchy, own)); err == nil && st.IsDir() {
			parent = filepath.Join(hierarchy, own)
		}
	}
	path := filepath.Join(parent, fmt.Sprintf("nicproxy-exec.%d", os.Getpid()))
	if err := os.Mkdir(path, 0o755); err != nil {
		return nil, fmt.Errorf("make cgroup %s: %w", path, err)
	}
	dir, err := os.Open(path)
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("open cgroup %s: %w", path, err)
	}
	return &Group{Path: path, dir: dir}, nil
}

// ownCgroup is this process's cgroup v2 path ("0::/PATH").
func ownCgroup() (string, error) {
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(data)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("not in a cgroup v2")
}

// FD is the cgroup directory's descriptor, for SysProcAttr.CgroupFD: the
// child is born in the cgroup, so not one of its instructions runs
// unpinned.
func (g *Group) FD() int { return int(g.dir.Fd()) }

// Populated reports whether any process is still in the cgroup.
func (g *Group) Populated() (bool, error) {
	data, err := os.ReadFile(filepath.Join(g.Path, "cgroup.events"))
	if err != nil {
		return false, fmt.Errorf("read %s/cgroup.events: %w", g.Path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "populated "); ok {
			return v != "0", nil
		}
	}
	return false, fmt.Errorf("%s/cgroup.events has no populated line", g.Path)
}

// WaitEmpty waits until every process in the cgroup has exited (the
// command's descendants may outlive it) or ctx ends.
func (g *Group) WaitEmpty(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		populated, err := g.Populated()
		if err != nil || !populated {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Remove removes the cgroup; it must be empty.
func (g *Group) Remove() error {
	g.dir.Close()
	if err := os.Remove(g.Path); err != nil {
		return fmt.Errorf("remove cgroup %s: %w", g.Path, err)
	}
	return nil
}

// Kill kills every process in the cgroup (cgroup.kill, Linux 5.14+).
func (g *Group) Kill() error {
	if err := os.WriteFile(filepath.Join(g.Path, "cgroup.kill"), []byte("1"), 0); err != nil {
		return fmt.Errorf("kill the processes left in %s: %w", g.Path, err)
	}
	return nil
}
