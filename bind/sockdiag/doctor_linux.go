package sockdiag

import (
	"errors"
	"net"
	"os"
	"strings"

	"nicproxy/bind"
)

// Doctor says whether rules by unit, cgroup, uid and program can work on
// this host: a real exact sock_diag lookup of a loopback socket of its
// own, the cgroup v2 hierarchy (unified, hybrid, or cgroup v1 only), and
// whether other users' /proc/PID/fd can be read (program rules).
func Doctor() bind.NICReport {
	r := bind.NICReport{NIC: "client rules (unit, cgroup, uid, program)"}
	add := r.Add
	mount, err := FindMount()
	v1 := cgroupV1Mounted()
	switch {
	case err != nil:
		add(bind.Warn, "cgroup2", "%v; unit and cgroup rules match nothing", err)
	case mount == "":
		add(bind.Warn, "cgroup2", "no cgroup v2 hierarchy mounted (cgroup v1 only): unit and cgroup rules match nothing, uid rules still work; boot with systemd.unified_cgroup_hierarchy=1, or mount one (mount -t cgroup2 none /sys/fs/cgroup/unified)")
	case v1:
		add(bind.OK, "cgroup2", "hybrid: cgroup v2 at %s beside cgroup v1 controllers; systemd's units are in the v2 tree", mount)
	default:
		add(bind.OK, "cgroup2", "unified hierarchy at %s", mount)
	}
	checkLookup(mount, add)
	switch _, err := os.ReadDir("/proc/1/fd"); {
	case err == nil:
		add(bind.OK, "program", "other processes' /proc/PID/fd are readable: program rules can find a socket's process")
	case errors.Is(err, os.ErrPermission):
		add(bind.Warn, "program", "cannot read other users' /proc/PID/fd (%v): program rules match only this user's programs; they need CAP_SYS_PTRACE (and ProtectProc=default under systemd)", err)
	default:
		add(bind.Warn, "program", "cannot read /proc/1/fd: %v; program rules may match nothing", err)
	}
	return r
}

// checkLookup makes one loopback connection and looks its client socket up
// exactly, as the proxy would.
func checkLookup(mount string, add func(bind.Severity, string, string, ...any)) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		add(bind.Warn, "sock_diag", "cannot listen on loopback to try a lookup: %v", err)
		return
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		add(bind.Warn, "sock_diag", "cannot connect on loopback to try a lookup: %v", err)
		return
	}
	defer c.Close()
	l := NewLookup()
	defer l.Close()
	s, err := l.Socket(c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort())
	if err != nil {
		add(bind.Fail, "sock_diag", "an exact lookup of a loopback socket failed: %v; unit, cgroup, uid and program rules match nothing (a seccomp filter or RestrictAddressFamilies without AF_NETLINK?)", err)
		return
	}
	add(bind.OK, "sock_diag", "exact lookups work (a loopback socket: uid %d, cgroup id %d)", s.UID, s.CgroupID)
	if mount == "" {
		return
	}
	if p, err := NewCgroups(mount, 16).Path(s.CgroupID); err != nil {
		add(bind.Warn, "cgroup id", "this process's socket cgroup %d: %v", s.CgroupID, err)
	} else {
		add(bind.OK, "cgroup id", "socket cgroup ids map to paths (this process: %s)", p)
	}
}

// cgroupV1Mounted reports whether any cgroup v1 hierarchy is mounted.
func cgroupV1Mounted() bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	return err == nil && strings.Contains(string(data), " - cgroup ")
}
