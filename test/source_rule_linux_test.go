package test

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"nicproxy/bind"
	"nicproxy/test/netlab"
)

// lateResponse opens a connection pinned to ens160 to a server upstream,
// makes the client's socket vanish, and has the server send the rest of
// its response, as a server does whose client cancelled: the host answers
// with a reset from a socket that no longer exists. It returns what each
// NIC sent from the moment the socket was gone, once the reset has reached
// the server.
func lateResponse(t *testing.T, lab *netlab.Lab) (ens33, ens160 uint64) {
	t.Helper()
	ln := lab.With(t).ListenUpstream(netlab.Server)
	var client net.Conn
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := lab.InHost(func() (err error) {
		client, err = bind.NewDialer(netlab.Ens160.Name, bind.Options{}, nil).DialContext(ctx, "tcp4", ln.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = ln.SetDeadline(time.Now().Add(10 * time.Second))
	server, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if seen := server.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); seen != netlab.Ens160.Addr {
		t.Fatalf("server saw %v, want ens160's address", seen)
	}
	// The client's socket goes without a word: closed in repair mode, it
	// sends neither FIN nor reset. This stands in, deterministically, for
	// the segments a real server has in flight when the client's close
	// (or its reset) leaves: they all reach a socket that is gone.
	raw, err := client.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		sockErr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_REPAIR, 1)
	}); err != nil || sockErr != nil {
		t.Fatalf("TCP_REPAIR: %v %v", err, sockErr)
	}
	client.Close()

	before := lab.Snapshot()
	if _, err := server.Write([]byte("the rest of the response")); err != nil {
		t.Fatal(err)
	}
	// The host's reset is what ends the server's connection: a read
	// that fails with ECONNRESET is the proof that it left the host.
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := server.Read(make([]byte, 100)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server read %v, want the host's reset (ECONNRESET)", err)
	}
	return before.TxSince(netlab.Ens33.Name), before.TxSince(netlab.Ens160.Name)
}

// TestResetForAGoneSocket: the reset the kernel sends for a pinned socket
// that is gone carries no pin. Without a source rule it leaves through
// ens33, the main table's NIC, and doctor says so and prints the
// commands; with the rule deploy/nicproxy-source-rule makes, or the one
// doctor's commands make, it leaves through ens160, and doctor says ok.
func TestResetForAGoneSocket(t *testing.T) {
	lab := netlab.New(t)
	source := func(nic string) string {
		t.Helper()
		res := nicproxy(t, lab, "doctor", "-c", writeConfig(t, "default: [ens160, ens33]\n"))
		for _, line := range strings.Split(res.stdout, "\n") {
			if strings.HasPrefix(line, "  ") && strings.Contains(line, " source ") && strings.Contains(line, nic+"'s addresses") {
				return strings.TrimSpace(line)
			}
		}
		t.Fatalf("no source line for %s in doctor's output:\n%s%s", nic, res.stdout, res.stderr)
		return ""
	}
	leaks := func(t *testing.T) {
		t.Helper()
		ens33, ens160 := lateResponse(t, lab)
		t.Logf("reset: ens33 %d bytes, ens160 %d bytes", ens33, ens160)
		if ens33 == 0 || ens160 != 0 {
			t.Errorf("the reset left through ens33 %d bytes, ens160 %d bytes; want it through ens33 alone (no rule yet)", ens33, ens160)
		}
	}
	pinned := func(t *testing.T) {
		t.Helper()
		ens33, ens160 := lateResponse(t, lab)
		t.Logf("reset: ens33 %d bytes, ens160 %d bytes", ens33, ens160)
		if ens33 != 0 || ens160 == 0 {
			t.Errorf("the reset left through ens33 %d bytes, ens160 %d bytes; want it through ens160 alone", ens33, ens160)
		}
	}
	// The script runs as nicproxy-source-rule@.service runs it: as a user
	// that is not root (DynamicUser=yes) with CAP_NET_ADMIN alone
	// (AmbientCapabilities= and CapabilityBoundingSet=).
	asUnit := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all,+net_admin", "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin", "--"}
	script := func(action string) {
		t.Helper()
		argv := append(asUnit, "../deploy/nicproxy-source-rule", action, "ens160")
		if out, err := lab.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("nicproxy-source-rule %s ens160, as its unit runs it: %v\n%s", action, err, out)
		}
	}

	t.Run("without a rule the reset leaks out ens33", func(t *testing.T) {
		leaks(t)
		if line := source("ens160"); !strings.HasPrefix(line, "warn  source") || !strings.Contains(line, "to 203.0.113.1: ens33") {
			t.Errorf("doctor: %q, want a warning that packets from ens160's address leave through ens33", line)
		}
		if line := source("ens33"); !strings.HasPrefix(line, "ok    source") {
			t.Errorf("doctor on ens33, which holds the default route: %q, want ok", line)
		}
	})
	t.Run("deploy's source rule sends it out ens160", func(t *testing.T) {
		script("add")
		pinned(t)
		if line := source("ens160"); !strings.HasPrefix(line, "ok    source") || !strings.Contains(line, "from 192.0.2.48/32 lookup") {
			t.Errorf("doctor: %q, want ok naming the rule", line)
		}
		script("del")
		leaks(t)
	})
	t.Run("doctor's commands do the same", func(t *testing.T) {
		res := nicproxy(t, lab, "doctor", "-c", writeConfig(t, "default: ens160\n"))
		var commands []string
		for _, line := range strings.Split(res.stdout, "\n") {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "ip ") {
				commands = append(commands, line)
			}
		}
		if len(commands) < 2 {
			t.Fatalf("doctor printed no ip commands:\n%s", res.stdout)
		}
		for _, c := range commands {
			args := strings.Fields(c)
			if out, err := lab.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", c, err, out)
			}
		}
		pinned(t)
	})
}
