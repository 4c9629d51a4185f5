package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/things-go/go-socks5/statute"

	"nicproxy/config"
	"nicproxy/proxy/sniff"
	"nicproxy/proxy/socks4"
)

// errWrongProtocol is a client that spoke a protocol its listener does not
// serve: HTTP or SOCKS4 on a socks5 port, SOCKS on an http port.
var errWrongProtocol = errors.New("wrong protocol")

// Answers to a client on the wrong port, each in the client's own protocol
// so that it can tell the user what happened: SOCKS5's "no acceptable
// methods" (RFC 1928 section 3) to what is not a SOCKS5 greeting, and a
// plain 400 to a SOCKS greeting on an HTTP port.
var (
	noAcceptableMethods = []byte{statute.VersionSocks5, statute.MethodNoAcceptable}
	badRequestResponse  = httpError(http.StatusBadRequest, "nicproxy: this port speaks HTTP, not SOCKS\n")
)

// httpError is a whole HTTP/1.1 error response that closes the connection.
func httpError(status int, body string) []byte {
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Connection: close\r\nContent-Length: %d\r\n\r\n%s", status, http.StatusText(status), len(body), body)
}

// refusalDrain bounds how long a refused client's unread bytes are
// drained after the answer, so that closing does not reset the connection
// (and discard the answer at the client) while it is still sending.
const refusalDrain = time.Second

// serves reports whether a listener of protocol p serves a client that
// speaks spoken. A mixed listener serves all three.
func serves(p config.Protocol, spoken sniff.Protocol) bool {
	switch p {
	case config.ProtocolSOCKS5:
		return spoken == sniff.SOCKS5
	case config.ProtocolHTTP:
		return spoken == sniff.HTTP
	}
	return true
}

// refuseProtocol answers a client that spoke the wrong protocol for its
// listener at once, closes, and logs it once with the reason.
func (ss *session) refuseProtocol(spoken sniff.Protocol) {
	ss.protocol = spoken.String()
	ss.err = fmt.Errorf("%w: a %s client on a %s listener", errWrongProtocol, spoken, ss.listener.Protocol)
	defer ss.logHandshake()
	var err error
	switch {
	case ss.listener.Protocol == config.ProtocolHTTP:
		_, err = ss.client.Write(badRequestResponse)
	case spoken == sniff.SOCKS4:
		err = socks4.WriteReply(ss.client, false)
	default:
		_, err = ss.client.Write(noAcceptableMethods)
	}
	if err != nil {
		return
	}
	// Half-close, then read what the client still sends until it closes
	// too: a close with unread bytes queued would answer with a reset.
	_ = ss.client.CloseWrite()
	_ = ss.client.SetReadDeadline(time.Now().Add(refusalDrain))
	_, _ = io.CopyN(io.Discard, ss.client, 64<<10)
}
