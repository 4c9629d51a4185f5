//go:build !linux

package sockdiag

import (
	"errors"
	"net/netip"

	"nicproxy/bind"
)

var errNotLinux = errors.New("sock_diag is Linux only")

// Lookup asks the kernel for sockets; on this system it finds none.
type Lookup struct{}

// NewLookup returns a Lookup that finds nothing on this system.
func NewLookup() *Lookup { return &Lookup{} }

// Close does nothing here.
func (l *Lookup) Close() error { return nil }

// Socket fails on this system: sock_diag is Linux only.
func (l *Lookup) Socket(local, remote netip.AddrPort) (Socket, error) {
	return Socket{}, &Error{Reason: Failed, Err: errNotLinux}
}

// Cgroups maps cgroup ids to paths; cgroup v2 is Linux only.
type Cgroups struct{ mount string }

// NewCgroups returns a cache that finds no cgroup on this system.
func NewCgroups(mount string, max int) *Cgroups { return &Cgroups{mount: mount} }

// Mount is the mount point given to NewCgroups.
func (c *Cgroups) Mount() string { return c.mount }

// Path fails on this system.
func (c *Cgroups) Path(id uint64) (string, error) {
	return "", &Error{Reason: NoCgroup2, Err: errNotLinux}
}

// Programs finds programs holding sockets; it finds none here.
type Programs struct{}

// NewPrograms returns a Programs that finds nothing on this system.
func NewPrograms() *Programs { return &Programs{} }

// Find fails on this system.
func (p *Programs) Find(mount, path string, inode uint64) (string, error) {
	return "", &Error{Reason: NoCgroup2, Err: errNotLinux}
}

// Process is who a running process is.
type Process struct {
	UID     uint32
	Cgroup  string
	Unit    string
	Program string
}

// ProcessOf fails on this system: it reads Linux's /proc.
func ProcessOf(pid int, mount string) (Process, error) { return Process{}, errNotLinux }

// FindMount finds no cgroup v2 hierarchy on this system.
func FindMount() (string, error) { return "", nil }

// Doctor says client rules cannot work on this system.
func Doctor() bind.NICReport {
	return bind.NICReport{NIC: "client rules (unit, cgroup, uid, program)", Findings: []bind.Finding{
		{Severity: bind.Warn, Check: "os", Detail: "unit, cgroup, uid and program rules need Linux (sock_diag); they match nothing here"},
	}}
}
