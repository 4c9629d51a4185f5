package bind

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestChainRunsInOrderAndStopsAtFirstError(t *testing.T) {
	var ran []string
	step := func(name string, err error) Control {
		return func(string, string, syscall.RawConn) error {
			ran = append(ran, name)
			return err
		}
	}
	boom := errors.New("boom")
	err := Chain(step("pin", nil), nil, step("mark", boom), step("source", nil))("tcp4", "", nil)
	if !errors.Is(err, boom) {
		t.Fatalf("Chain returned %v, want %v", err, boom)
	}
	if got := strings.Join(ran, ","); got != "pin,mark" {
		t.Errorf("ran %s, want pin,mark", got)
	}
}

func TestClassify(t *testing.T) {
	wrap := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	tests := []struct {
		err  error
		want error
	}{
		{wrap(syscall.ENODEV), ErrNICMissing},
		{wrap(syscall.ENETDOWN), ErrNICDown},
		{wrap(syscall.ENETUNREACH), ErrNoRoute},
		{fmt.Errorf("pin socket to ens160: %w", os.NewSyscallError("setsockopt", syscall.EPERM)), ErrPermission},
		{wrap(syscall.ECONNREFUSED), ErrRefused},
		{wrap(syscall.EHOSTUNREACH), ErrUnreachable},
		{context.DeadlineExceeded, ErrTimeout},
		{context.Canceled, nil},
		{errors.New("something else"), nil},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestDialErrorMatchesKindAndCause(t *testing.T) {
	cause := os.NewSyscallError("connect", syscall.ECONNREFUSED)
	err := error(&DialError{NIC: "ens160", Network: "tcp", Address: "192.0.2.9:80", Kind: ErrRefused, Err: cause})
	if !errors.Is(err, ErrRefused) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("errors.Is does not see both kind and cause of %v", err)
	}
	want := "dial tcp 192.0.2.9:80 via ens160: connect: connection refused"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	missing := &DialError{NIC: "ens16O", Network: "tcp", Address: "192.0.2.9:80", Kind: ErrNICMissing}
	if got := missing.Error(); got != "dial tcp 192.0.2.9:80 via ens16O: no such interface" {
		t.Errorf("Error() = %q", got)
	}
}

func TestSystemLinksMissing(t *testing.T) {
	_, err := SystemLinks{}.Link("nicproxy-none0")
	if !errors.Is(err, ErrNICMissing) {
		t.Fatalf("Link of a missing NIC: %v, want ErrNICMissing", err)
	}
	names, err := Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if name == "lo" {
			t.Errorf("Interfaces lists loopback: %v", names)
		}
	}
}
