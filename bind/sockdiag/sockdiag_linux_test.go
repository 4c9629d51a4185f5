package sockdiag

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// needRoot skips (or, with NICPROXY_NO_SKIP=1, fails) a test that mounts
// cgroup2 or moves processes between cgroups.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("NICPROXY_NO_SKIP") == "1" {
		t.Fatal("needs root to mount cgroup2")
	}
	t.Skip("needs root to mount cgroup2")
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

// inodeOf is the inode of a connection's socket, as fstat tells it.
func inodeOf(t *testing.T, c net.Conn) uint64 {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	return st.Ino
}

// TestSocketLoopback: the exact lookup finds a connected loopback socket,
// IPv4 and IPv6, from either end, with its owner and inode.
func TestSocketLoopback(t *testing.T) {
	l := NewLookup()
	defer l.Close()
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1"
			if network == "tcp6" {
				host = "[::1]"
			}
			ln, err := net.Listen(network, host+":0")
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			client, err := net.Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			server, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer server.Close()
			for _, c := range []net.Conn{client, server} {
				s, err := l.Socket(addrPort(c.LocalAddr()), addrPort(c.RemoteAddr()))
				if err != nil {
					t.Fatalf("lookup %s -> %s: %v", c.LocalAddr(), c.RemoteAddr(), err)
				}
				if s.UID != uint32(os.Geteuid()) || s.Inode != inodeOf(t, c) || s.CgroupID == 0 {
					t.Errorf("%s -> %s: %+v, want uid %d, inode %d, a cgroup id", c.LocalAddr(), c.RemoteAddr(), s, os.Geteuid(), inodeOf(t, c))
				}
			}
			// A 4-tuple no socket has: the listener's port matches, but
			// a near match is no answer.
			other := netip.AddrPortFrom(addrPort(client.LocalAddr()).Addr(), 1)
			if _, err := l.Socket(other, addrPort(client.RemoteAddr())); ReasonOf(err) != NotFound {
				t.Errorf("unused 4-tuple: %v, want %s", err, NotFound)
			}
		})
	}
}

// TestSocketClosed: a client that closed its end is still known to the
// kernel (FIN_WAIT), but held by no process: Closed, not its old owner.
func TestSocketClosed(t *testing.T) {
	l := NewLookup()
	defer l.Close()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	local, remote := addrPort(client.LocalAddr()), addrPort(client.RemoteAddr())
	if _, err := l.Socket(local, remote); err != nil {
		t.Fatalf("open socket: %v", err)
	}
	client.Close()
	if s, err := l.Socket(local, remote); ReasonOf(err) != Closed {
		t.Errorf("closed socket: %+v %v, want %s", s, err, Closed)
	}
}

// cgroupLab is a cgroup2 hierarchy mounted for one test.
type cgroupLab struct {
	mount string
}

func newCgroupLab(t testing.TB) *cgroupLab {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("none", dir, "cgroup2", 0, ""); err != nil {
		t.Skipf("mount cgroup2: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return &cgroupLab{mount: dir}
}

// mkdir makes the cgroup path (say /system.slice/t-x.service) and returns
// its id; it is removed when the test ends.
func (c *cgroupLab) mkdir(t testing.TB, path string) uint64 {
	t.Helper()
	dir := filepath.Join(c.mount, path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Remove(dir) })
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// connectFrom starts program (bash, or a copy under another name) in
// cgroup path; it connects to addr and waits. It returns the address of
// the connection as the listener accepted it.
// enter moves this test process into the cgroup at path, and back to the
// root when the test ends, before the cgroup is removed.
func (c *cgroupLab) enter(t testing.TB, path string) {
	t.Helper()
	pid := []byte(strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(filepath.Join(c.mount, path, "cgroup.procs"), pid, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(c.mount, "cgroup.procs"), pid, 0) })
}

func (c *cgroupLab) connectFrom(t *testing.T, program, path string, ln net.Listener) (net.Conn, *exec.Cmd) {
	t.Helper()
	ap := addrPort(ln.Addr())
	script := fmt.Sprintf("echo $$ > %s/cgroup.procs && exec 3<>/dev/tcp/%s/%d && echo ready && read x", filepath.Join(c.mount, path), ap.Addr(), ap.Port())
	cmd := exec.Command(program, "-c", script)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("%s in %s: %q %v", program, path, line, err)
	}
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, cmd
}

// copyBinary copies a program under another name, as a second program.
func copyBinary(t *testing.T, src, name string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), name)
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestCgroupAndProgram: a socket made in a cgroup carries that cgroup's
// id; the id maps to the path and unit; the program holding the socket
// is found among that cgroup's processes, by its executable's name.
func TestCgroupAndProgram(t *testing.T) {
	lab := newCgroupLab(t)
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := NewLookup()
	defer l.Close()
	cgroups := NewCgroups(lab.mount, 100)
	programs := NewPrograms()

	aPath := fmt.Sprintf("/system.slice/t-sockdiag-%d.service", os.Getpid())
	bPath := fmt.Sprintf("/user.slice/t-sockdiag-%d.scope/sub", os.Getpid())
	aID, bID := lab.mkdir(t, aPath), lab.mkdir(t, bPath)
	other := copyBinary(t, bash, "otherprog")
	for _, tt := range []struct {
		program, path, unit, name string
		id                        uint64
	}{
		{bash, aPath, fmt.Sprintf("t-sockdiag-%d.service", os.Getpid()), filepath.Base(mustRealpath(t, bash)), aID},
		{other, bPath, fmt.Sprintf("t-sockdiag-%d.scope", os.Getpid()), "otherprog", bID},
	} {
		conn, _ := lab.connectFrom(t, tt.program, tt.path, ln)
		s, err := l.Socket(addrPort(conn.RemoteAddr()), addrPort(conn.LocalAddr()))
		if err != nil {
			t.Fatalf("%s: %v", tt.path, err)
		}
		if s.CgroupID != tt.id || s.UID != 0 {
			t.Errorf("%s: socket %+v, want cgroup id %d, uid 0", tt.path, s, tt.id)
		}
		path, err := cgroups.Path(s.CgroupID)
		if err != nil || path != tt.path || UnitOf(path) != tt.unit {
			t.Errorf("cgroup %d: %q %v, unit %q; want %s, unit %s", s.CgroupID, path, err, UnitOf(path), tt.path, tt.unit)
		}
		if name, err := programs.Find(lab.mount, path, s.Inode); err != nil || name != tt.name {
			t.Errorf("program of %s: %q %v, want %s", tt.path, name, err, tt.name)
		}
		// Asked in the wrong cgroup, no process there holds it.
		if name, err := programs.Find(lab.mount, "/", s.Inode); ReasonOf(err) != NoOwner {
			t.Errorf("program of %s asked in /: %q %v, want %s", tt.path, name, err, NoOwner)
		}
	}
	// Both cgroups existed at the first miss: one walk found them both.
	if w := cgroups.Walks(); w != 1 {
		t.Errorf("%d walks of the hierarchy, want 1", w)
	}
}

// TestCgroupsFollowRemoval: a removed cgroup leaves the cache at the next
// walk; an id no walk finds costs no second walk; the cache stays bounded.
func TestCgroupsFollowRemoval(t *testing.T) {
	lab := newCgroupLab(t)
	base := fmt.Sprintf("/t-sockdiag-%d.slice", os.Getpid())
	cgroups := NewCgroups(lab.mount, 3)
	oldID := lab.mkdir(t, base+"/old.service")
	if p, err := cgroups.Path(oldID); err != nil || p != base+"/old.service" {
		t.Fatalf("old: %q %v", p, err)
	}
	if err := os.Remove(filepath.Join(lab.mount, base, "old.service")); err != nil {
		t.Fatal(err)
	}
	newID := lab.mkdir(t, base+"/new.service")
	if p, err := cgroups.Path(newID); err != nil || p != base+"/new.service" {
		t.Fatalf("new: %q %v", p, err)
	}
	walks := cgroups.Walks()
	if _, err := cgroups.Path(oldID); ReasonOf(err) != NoCgroup2 {
		t.Errorf("removed cgroup: %v, want %s", err, NoCgroup2)
	}
	if _, err := cgroups.Path(oldID); ReasonOf(err) != NoCgroup2 || cgroups.Walks() != walks+1 {
		t.Errorf("removed cgroup asked twice: %v after %d walks, want %s after one more walk than %d", err, cgroups.Walks(), NoCgroup2, walks)
	}
	cgroups.mu.Lock()
	n := len(cgroups.byID)
	cgroups.mu.Unlock()
	if n > 3 {
		t.Errorf("cache holds %d paths, bound 3", n)
	}
	if p, err := cgroups.Path(newID); err != nil || p != base+"/new.service" {
		t.Errorf("new after the walks: %q %v", p, err)
	}
}

func mustRealpath(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUnitOf(t *testing.T) {
	for path, want := range map[string]string{
		"/system.slice/apt-daily.service":                                             "apt-daily.service",
		"/system.slice/docker.service/payload":                                        "docker.service",
		"/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1.scope": "app-firefox-1.scope",
		"/":             "",
		"/system.slice": "",
	} {
		if got := UnitOf(path); got != want {
			t.Errorf("UnitOf(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestProgramsCacheProves: a socket found in an earlier reading of the
// cgroup's processes is named only if its process still holds it; one it
// has closed since is no one's, not the cached answer.
func TestProgramsCacheProves(t *testing.T) {
	lab := newCgroupLab(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := fmt.Sprintf("/t-sockdiag-cache-%d.service", os.Getpid())
	lab.mkdir(t, path)
	ap := addrPort(ln.Addr())
	script := fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec 3<>/dev/tcp/%s/%d 4<>/dev/tcp/%s/%d && echo ready && read x && exec 4>&- && echo closed && read y`,
		filepath.Join(lab.mount, path), ap.Addr(), ap.Port(), ap.Addr(), ap.Port())
	cmd := exec.Command("bash", "-c", script)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	out := bufio.NewReader(stdout)
	if line, _ := out.ReadString('\n'); line != "ready\n" {
		t.Fatalf("bash: %q", line)
	}
	for range 2 {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// Which socket is on which fd, as bash holds them.
	fdInode := func(fd int) uint64 {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", cmd.Process.Pid, fd))
		var ino uint64
		if _, serr := fmt.Sscanf(link, "socket:[%d]", &ino); err != nil || serr != nil {
			t.Fatalf("fd %d: %q %v %v", fd, link, err, serr)
		}
		return ino
	}
	kept, closed := fdInode(3), fdInode(4)
	programs := NewPrograms()
	name := filepath.Base(mustRealpath(t, mustLookPath(t, "bash")))
	// The first lookup reads the cgroup's processes: both sockets are seen.
	if got, err := programs.Find(lab.mount, path, kept); err != nil || got != name {
		t.Fatalf("first socket: %q %v, want %s", got, err, name)
	}
	_, _ = io.WriteString(stdin, "\n")
	if line, _ := out.ReadString('\n'); line != "closed\n" {
		t.Fatalf("bash: %q", line)
	}
	if got, err := programs.Find(lab.mount, path, closed); ReasonOf(err) != NoOwner {
		t.Errorf("socket closed since it was seen: %q %v, want %s", got, err, NoOwner)
	}
	if got, err := programs.Find(lab.mount, path, kept); err != nil || got != name {
		t.Errorf("socket still held: %q %v, want %s", got, err, name)
	}
}

// TestProgramsShareReadings: sockets made after a reading of their
// cgroup, looked up all at once, cost one more reading between them, and
// each is named right.
func TestProgramsShareReadings(t *testing.T) {
	lab := newCgroupLab(t)
	path := fmt.Sprintf("/t-sockdiag-share-%d.scope", os.Getpid())
	lab.mkdir(t, path)
	// This test process is the cgroup's one process.
	lab.enter(t, path)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := NewLookup()
	defer l.Close()
	dial := func() uint64 {
		t.Helper()
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		s, err := l.Socket(addrPort(c.LocalAddr()), addrPort(c.RemoteAddr()))
		if err != nil {
			t.Fatal(err)
		}
		return s.Inode
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(self)
	programs := NewPrograms()
	if got, err := programs.Find(lab.mount, path, dial()); err != nil || got != name {
		t.Fatalf("first socket: %q %v, want %s", got, err, name)
	}
	var inodes []uint64
	for range 32 {
		inodes = append(inodes, dial())
	}
	var wg sync.WaitGroup
	for _, inode := range inodes {
		wg.Go(func() {
			if got, err := programs.Find(lab.mount, path, inode); err != nil || got != name {
				t.Errorf("socket %d: %q %v, want %s", inode, got, err, name)
			}
		})
	}
	wg.Wait()
	programs.mu.Lock()
	n := programs.readings
	programs.mu.Unlock()
	if n != 2 {
		t.Errorf("%d readings of the cgroup, want 2: one for the first socket, one shared by the 32 made after it", n)
	}
}

func mustLookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("no %s", name)
	}
	return p
}
