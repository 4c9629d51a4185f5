package proxy

import (
	"errors"
	"net/http"

	"github.com/things-go/go-socks5/statute"

	"nicproxy/bind"
	"nicproxy/proxy/upstream"
)

// errRejected is a connection refused by a reject rule or the allow list.
var errRejected = errors.New("rejected")

// socks5Reply maps a dial error to the spec's SOCKS5 reply code.
func socks5Reply(err error) uint8 {
	switch {
	case errors.Is(err, errRejected):
		return statute.RepRuleFailure
	case errors.Is(err, bind.ErrNICMissing), errors.Is(err, bind.ErrNICDown),
		errors.Is(err, bind.ErrNoRoute), errors.Is(err, bind.ErrPermission):
		return statute.RepNetworkUnreachable
	case errors.Is(err, bind.ErrUnreachable), errors.Is(err, upstream.ErrResolve):
		return statute.RepHostUnreachable
	case errors.Is(err, bind.ErrRefused):
		return statute.RepConnectionRefused
	case errors.Is(err, bind.ErrTimeout):
		return statute.RepTTLExpired
	}
	return statute.RepServerFailure
}

// httpStatus maps a dial error to the spec's HTTP status.
func httpStatus(err error) int {
	switch {
	case errors.Is(err, errRejected):
		return http.StatusForbidden
	case errors.Is(err, bind.ErrTimeout):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// resultOf names a connection's outcome for the access log and metrics.
func resultOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errRejected):
		return "rejected"
	case errors.Is(err, errAuth):
		return "auth-failed"
	case errors.Is(err, bind.ErrNICMissing), errors.Is(err, bind.ErrNICDown),
		errors.Is(err, bind.ErrNoRoute), errors.Is(err, bind.ErrPermission):
		return "nic-unavailable"
	case errors.Is(err, upstream.ErrResolve):
		return "resolve-failed"
	case errors.Is(err, bind.ErrUnreachable):
		return "unreachable"
	case errors.Is(err, bind.ErrRefused):
		return "refused"
	case errors.Is(err, bind.ErrTimeout):
		return "timeout"
	}
	return "error"
}

// errAuth is a client that failed authentication.
var errAuth = errors.New("authentication failed")
