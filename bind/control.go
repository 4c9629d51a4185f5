package bind

import "syscall"

// Control has exactly the shape of net.Dialer.Control and
// net.ListenConfig.Control, so a pinning step can be handed to the standard
// library as it is. Go calls it after socket(2) and before bind(2) or
// connect(2): the one moment an option that decides the route can be set.
type Control func(network, address string, c syscall.RawConn) error

// Chain runs controls in order and stops at the first error. Small controls
// (pin to a NIC, then mark, then bind a source) compose better than one
// function that knows every option.
func Chain(controls ...Control) Control {
	return func(network, address string, c syscall.RawConn) error {
		for _, control := range controls {
			if control == nil {
				continue
			}
			if err := control(network, address, c); err != nil {
				return err
			}
		}
		return nil
	}
}

// rawControl runs set on the socket's descriptor and returns the first error
// from either the RawConn or set itself.
func rawControl(c syscall.RawConn, set func(fd int) error) error {
	var setErr error
	if err := c.Control(func(fd uintptr) { setErr = set(int(fd)) }); err != nil {
		return err
	}
	return setErr
}

// isIPv6 reports whether Go created the socket for IPv6. Go always hands
// Control a network with its family resolved ("tcp4", "udp6", ...).
func isIPv6(network string) bool {
	return len(network) > 0 && network[len(network)-1] == '6'
}
