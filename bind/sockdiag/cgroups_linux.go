package sockdiag

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// Cgroups maps cgroup v2 ids to their paths. The id of a cgroup is the
// inode of its directory, so a miss walks the hierarchy once and keeps
// what it found: at most max entries, and only cgroups that still exist
// at the last walk, so removed ones fall out. Ids are never reused, so a
// cached path is never another cgroup's; an id no walk finds (its cgroup
// was removed) is remembered so that it costs no second walk.
type Cgroups struct {
	mount string
	max   int

	mu    sync.Mutex
	byID  map[uint64]string
	gone  map[uint64]struct{}
	walks int
}

// NewCgroups returns a cache over the cgroup v2 hierarchy mounted at
// mount ("" when none is: every lookup then fails with NoCgroup2),
// holding at most max paths.
func NewCgroups(mount string, max int) *Cgroups {
	return &Cgroups{mount: mount, max: max, byID: map[uint64]string{}, gone: map[uint64]struct{}{}}
}

// Mount is the hierarchy's mount point, or "".
func (c *Cgroups) Mount() string { return c.mount }

// Path returns the cgroup path of id ("/system.slice/a.service").
func (c *Cgroups) Path(id uint64) (string, error) {
	if c.mount == "" {
		return "", fail(NoCgroup2, "no cgroup v2 hierarchy is mounted")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.byID[id]; ok {
		return p, nil
	}
	if _, ok := c.gone[id]; ok {
		return "", fail(NoCgroup2, "cgroup %d is not in the hierarchy at %s", id, c.mount)
	}
	found, err := c.walk(id)
	if err != nil {
		return "", err
	}
	c.walks++
	c.byID = found
	if p, ok := found[id]; ok {
		return p, nil
	}
	if len(c.gone) >= c.max {
		clear(c.gone)
	}
	c.gone[id] = struct{}{}
	return "", fail(NoCgroup2, "cgroup %d is not in the hierarchy at %s (removed, or in another cgroup namespace)", id, c.mount)
}

// Walks counts the walks of the hierarchy so far, for tests.
func (c *Cgroups) Walks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.walks
}

// walk reads every cgroup directory under the mount, keeping want and up
// to max entries in all.
func (c *Cgroups) walk(want uint64) (map[uint64]string, error) {
	found := map[uint64]string{}
	err := filepath.WalkDir(c.mount, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != c.mount && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed while walking
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Ino == want || len(found) < c.max {
			rel, _ := filepath.Rel(c.mount, p)
			found[st.Ino] = filepath.Clean("/" + rel)
		}
		return nil
	})
	if err != nil {
		r := Failed
		if errors.Is(err, os.ErrPermission) {
			r = Denied
		}
		return nil, &Error{Reason: r, Err: fmt.Errorf("read the cgroup hierarchy at %s: %w", c.mount, err)}
	}
	return found, nil
}
