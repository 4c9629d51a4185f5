package bind

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// Kinds of dial failure a caller can tell apart with errors.Is. They map to
// SOCKS5 reply codes and HTTP statuses one layer up; bind itself knows no
// proxy protocol.
var (
	// ErrNICMissing: the NIC does not exist on the host (now).
	ErrNICMissing = errors.New("no such interface")
	// ErrNICDown: the NIC exists but is administratively down or has no carrier.
	ErrNICDown = errors.New("interface is down")
	// ErrNoRoute: no route reaches the destination through this NIC.
	ErrNoRoute = errors.New("no route through interface")
	// ErrPermission: the kernel refused to pin the socket (kernel < 5.7
	// without CAP_NET_RAW, or SO_MARK without CAP_NET_ADMIN).
	ErrPermission = errors.New("permission denied to pin socket")
	// ErrRefused: the destination answered with a reset.
	ErrRefused = errors.New("connection refused")
	// ErrUnreachable: the destination host could not be reached.
	ErrUnreachable = errors.New("host unreachable")
	// ErrTimeout: the dial did not complete in time.
	ErrTimeout = errors.New("dial timeout")
)

// DialError is returned by every failed bound dial. errors.Is matches both
// its Kind (one of the Err* values above, when known) and the underlying
// error, so callers can branch on either.
type DialError struct {
	NIC     string // the NIC the socket was (to be) pinned to
	Network string // "tcp", "udp", ...
	Address string // the destination as dialed
	Kind    error  // one of the Err* kinds, or nil when unclassified
	Err     error  // the underlying error; nil when Kind says it all
}

func (e *DialError) Error() string {
	cause := e.Err
	if cause == nil {
		cause = e.Kind
	}
	return fmt.Sprintf("dial %s %s via %s: %v", e.Network, e.Address, e.NIC, cause)
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *DialError) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Timeout lets DialError satisfy net.Error's timeout contract.
func (e *DialError) Timeout() bool { return errors.Is(e.Kind, ErrTimeout) }

// NewDialError wraps a failed dial through nic in a DialError with its kind
// classified. A DialError passes through unchanged.
func NewDialError(nic, network, address string, err error) error {
	var dialErr *DialError
	if errors.As(err, &dialErr) {
		return err
	}
	kind := Classify(err)
	if errors.Is(err, ErrNICMissing) {
		kind, err = ErrNICMissing, nil
	}
	// DialError already names the network and address; keep only the cause
	// ("connect: connection refused") so the message does not say them twice.
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		err = opErr.Err
	}
	return &DialError{NIC: nic, Network: network, Address: address, Kind: kind, Err: err}
}

// Classify names the kind of a dial error from its errno, or returns nil.
func Classify(err error) error {
	var netErr net.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ENXIO):
		return ErrNICMissing
	case errors.Is(err, syscall.ENETDOWN):
		return ErrNICDown
	case errors.Is(err, syscall.ENETUNREACH):
		return ErrNoRoute
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return ErrPermission
	case errors.Is(err, syscall.ECONNREFUSED):
		return ErrRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		return ErrUnreachable
	case errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return ErrTimeout
	}
	return nil
}
