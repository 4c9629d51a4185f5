//go:build !linux

package bind

import (
	"errors"
	"fmt"
	"runtime"
)

// DefaultRouteInterface is only implemented on Linux; elsewhere the user
// names the NIC with -i or in the config.
func DefaultRouteInterface() (string, error) {
	return "", fmt.Errorf("finding the default-route interface on %s: %w (name a NIC with -i)", runtime.GOOS, errors.ErrUnsupported)
}
