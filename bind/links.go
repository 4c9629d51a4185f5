package bind

import (
	"errors"
	"fmt"
	"net"
)

// Link is what a dial needs to know about a NIC at the moment it dials.
type Link struct {
	Name  string
	Index int
	// Up means administratively up and with carrier (IFF_UP and IFF_RUNNING):
	// a NIC without carrier would accept a pinned socket and then black-hole it.
	Up bool
}

// Links looks NICs up by name. SystemLinks asks the kernel on every call;
// LinkWatcher answers from memory, kept current by link notifications.
type Links interface {
	// Link returns the NIC's current state, or an error wrapping
	// ErrNICMissing when no NIC has that name.
	Link(name string) (Link, error)
}

// SystemLinks asks the kernel for each lookup.
type SystemLinks struct{}

// Link implements Links.
func (SystemLinks) Link(name string) (Link, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		// The standard library has no exported sentinel for a missing NIC;
		// its lookup wraps this exact text in an *OpError.
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Err != nil && opErr.Err.Error() == "no such network interface" {
			return Link{}, fmt.Errorf("interface %s: %w", name, ErrNICMissing)
		}
		return Link{}, fmt.Errorf("interface %s: %w", name, err)
	}
	return Link{
		Name:  ifi.Name,
		Index: ifi.Index,
		Up:    ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagRunning != 0,
	}, nil
}

// Interfaces lists the host's NICs that can carry traffic off the host, in
// index order: every NIC but loopback, which never needs pinning.
func Interfaces() ([]string, error) {
	return interfaces(func(net.Interface) bool { return true })
}

// UpInterfaces is Interfaces without the NICs that are administratively
// down: the candidates for pinning when no config names any.
func UpInterfaces() ([]string, error) {
	return interfaces(func(ifi net.Interface) bool { return ifi.Flags&net.FlagUp != 0 })
}

func interfaces(keep func(net.Interface) bool) ([]string, error) {
	ifis, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var names []string
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagLoopback == 0 && keep(ifi) {
			names = append(names, ifi.Name)
		}
	}
	return names, nil
}
