package sockdiag

import (
	"fmt"
	"net"
	"os"
	"testing"
)

// BenchmarkSocket is one exact lookup of a connected loopback socket.
func BenchmarkSocket(b *testing.B) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	l := NewLookup()
	defer l.Close()
	local, remote := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
	for b.Loop() {
		if _, err := l.Socket(local, remote); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProgram finds the program holding each socket in turn of a
// process that holds 128 (this test process, moved into a cgroup of its
// own), each looked up once per reading of the cgroup's processes, as a
// program rule does for a busy client's connections; reported per lookup.
func BenchmarkProgram(b *testing.B) {
	lab := newCgroupLab(b)
	path := fmt.Sprintf("/t-sockdiag-bench-%d.scope", os.Getpid())
	lab.mkdir(b, path)
	lab.enter(b, path)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	for range 64 {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c, s)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	l := NewLookup()
	defer l.Close()
	var inodes []uint64
	for _, c := range conns {
		s, err := l.Socket(addrPort(c.LocalAddr()), addrPort(c.RemoteAddr()))
		if err != nil {
			b.Fatal(err)
		}
		inodes = append(inodes, s.Inode)
	}
	programs := NewPrograms()
	i := 0
	for b.Loop() {
		if _, err := programs.Find(lab.mount, path, inodes[i%len(inodes)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
