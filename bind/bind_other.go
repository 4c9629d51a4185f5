//go:build !linux && !darwin

package bind

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
)

// errNoPinning is returned on systems where nicproxy cannot pin sockets:
// failing every dial is the only safe answer, since an unpinned dial would
// silently leave through the wrong NIC.
var errNoPinning = fmt.Errorf("pinning sockets to a NIC is not supported on %s: %w", runtime.GOOS, errors.ErrUnsupported)

func pinToInterface(name string, index int) Control {
	return func(string, string, syscall.RawConn) error { return errNoPinning }
}

func setMark(mark uint32) Control {
	return func(string, string, syscall.RawConn) error { return errNoPinning }
}

func bindSource(src netip.Addr) Control {
	return func(string, string, syscall.RawConn) error { return errNoPinning }
}
