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

// outcome is how one kind of failure is reported: its name in the access
// log and metrics, its SOCKS5 reply code and its HTTP status.
type outcome struct {
	result string
	socks5 uint8
	http   int
}

// classify names the outcome of a connection from its error. It is the one
// place that maps failure kinds to what clients and logs are told, so the
// SOCKS5 code, the HTTP status and the logged result always agree.
func classify(err error) outcome {
	switch {
	case err == nil:
		return outcome{"ok", statute.RepSuccess, http.StatusOK}
	case errors.Is(err, errLoop):
		return outcome{"loop", statute.RepRuleFailure, http.StatusForbidden}
	case errors.Is(err, errRejected):
		return outcome{"rejected", statute.RepRuleFailure, http.StatusForbidden}
	case errors.Is(err, errWrongProtocol):
		return outcome{"wrong-protocol", statute.RepCommandNotSupported, http.StatusBadRequest}
	case errors.Is(err, errBodyTimeout):
		return outcome{"body-timeout", statute.RepServerFailure, http.StatusRequestTimeout}
	case errors.Is(err, errOriginHead):
		return outcome{"bad-response", statute.RepServerFailure, http.StatusBadGateway}
	case errors.Is(err, errAuth):
		return outcome{"auth-failed", statute.RepServerFailure, http.StatusProxyAuthRequired}
	case errors.Is(err, bind.ErrNICMissing), errors.Is(err, bind.ErrNICDown),
		errors.Is(err, bind.ErrNoRoute), errors.Is(err, bind.ErrPermission):
		return outcome{"nic-unavailable", statute.RepNetworkUnreachable, http.StatusBadGateway}
	case errors.Is(err, upstream.ErrResolve):
		return outcome{"resolve-failed", statute.RepHostUnreachable, http.StatusBadGateway}
	case errors.Is(err, bind.ErrUnreachable):
		return outcome{"unreachable", statute.RepHostUnreachable, http.StatusBadGateway}
	case errors.Is(err, bind.ErrRefused):
		return outcome{"refused", statute.RepConnectionRefused, http.StatusBadGateway}
	case errors.Is(err, bind.ErrTimeout):
		return outcome{"timeout", statute.RepTTLExpired, http.StatusGatewayTimeout}
	}
	return outcome{"error", statute.RepServerFailure, http.StatusBadGateway}
}

// socks5Reply is the spec's SOCKS5 reply code for a dial error.
func socks5Reply(err error) uint8 { return classify(err).socks5 }

// httpStatus is the spec's HTTP status for a dial error.
func httpStatus(err error) int { return classify(err).http }

// resultOf names a connection's outcome for the access log and metrics.
func resultOf(err error) string { return classify(err).result }

// errAuth is a client that failed authentication.
var errAuth = errors.New("authentication failed")

// failedNIC is the NIC a failed dial failed on (or was to be pinned to),
// so a failure is counted and listed under its NIC; "" when the failure
// came before any NIC was chosen.
func failedNIC(err error) string {
	var dialErr *bind.DialError
	if errors.As(err, &dialErr) {
		return dialErr.NIC
	}
	return ""
}

// reasonOf says in a few words why a connection failed, for the access
// log and the status page: the kind of a dial failure ("connection
// refused", "dial timeout"), what a name lookup answered, or the error
// itself. "" for a connection that did not fail.
func reasonOf(err error) string {
	var dialErr *bind.DialError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &dialErr) && dialErr.Kind != nil && !errors.Is(dialErr.Kind, upstream.ErrResolve):
		return dialErr.Kind.Error()
	case errors.As(err, &dialErr) && dialErr.Err != nil:
		return dialErr.Err.Error()
	}
	return err.Error()
}
