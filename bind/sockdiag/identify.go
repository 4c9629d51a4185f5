package sockdiag

import "net/netip"

// Client is who is behind one local connection.
type Client struct {
	// UID owns the client's socket.
	UID uint32
	// Cgroup is the socket's cgroup v2 path, "" when CgroupErr is set.
	Cgroup string
	// Unit is the systemd unit of Cgroup (its last *.service or *.scope),
	// "" when it has none.
	Unit string
	// CgroupErr says why Cgroup is unknown (no cgroup v2 hierarchy, or
	// the cgroup was not found in it); unit and cgroup rules then match
	// nothing, while uid rules still can.
	CgroupErr error

	inode uint64
}

// Identifier finds the Client behind a connection. Safe for concurrent use.
type Identifier struct {
	lookup   *Lookup
	cgroups  *Cgroups
	programs *Programs
}

// cgroupCacheSize bounds the cgroup id cache: far more cgroups than a
// host runs services and sessions, and a few hundred KiB at most.
const cgroupCacheSize = 4096

// NewIdentifier returns an Identifier over the cgroup v2 hierarchy at
// mount ("" when the host has none).
func NewIdentifier(mount string) *Identifier {
	return &Identifier{lookup: NewLookup(), cgroups: NewCgroups(mount, cgroupCacheSize), programs: NewPrograms()}
}

// Mount is the cgroup v2 mount point the Identifier reads, or "".
func (i *Identifier) Mount() string { return i.cgroups.Mount() }

// Close releases the Identifier's netlink sockets.
func (i *Identifier) Close() error { return i.lookup.Close() }

// Client looks up the socket whose address is client and whose peer is
// server (the address the client connected to), and its cgroup.
func (i *Identifier) Client(client, server netip.AddrPort) (Client, error) {
	s, err := i.lookup.Socket(client, server)
	if err != nil {
		return Client{}, err
	}
	c := Client{UID: s.UID, inode: s.Inode}
	if c.Cgroup, c.CgroupErr = i.cgroups.Path(s.CgroupID); c.CgroupErr == nil {
		c.Unit = UnitOf(c.Cgroup)
	}
	return c, nil
}

// Program returns the name of the executable holding c's socket.
func (i *Identifier) Program(c Client) (string, error) {
	if c.CgroupErr != nil {
		return "", c.CgroupErr
	}
	return i.programs.Find(i.cgroups.Mount(), c.Cgroup, c.inode)
}
