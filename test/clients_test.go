package test

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"

	"nicproxy/test/e2e"
)

// The protocol clients live in test/e2e, shared with the other end-to-end
// packages; these are their names here.

// socks5Dial is e2e.SOCKS5Dial: the SOCKS5 reply code of a CONNECT.
func socks5Dial(conn net.Conn, user, password, host string, port uint16) (byte, error) {
	return e2e.SOCKS5Dial(conn, user, password, host, port)
}

// SOCKS5 commands (RFC 1928).
const (
	socks5Connect      = e2e.SOCKS5Connect
	socks5Bind         = e2e.SOCKS5Bind
	socks5UDPAssociate = e2e.SOCKS5UDPAssociate
)

// socks5Request is e2e.SOCKS5Request: any command, and the address the
// reply names.
func socks5Request(conn net.Conn, user, password string, cmd byte, host string, port uint16) (byte, netip.AddrPort, error) {
	return e2e.SOCKS5Request(conn, user, password, cmd, host, port)
}

// errAuthFailed is what socks5Dial returns when the server refuses the login.
var errAuthFailed = e2e.ErrAuthFailed

// httpConnect is e2e.HTTPConnect: a CONNECT and its exact response.
func httpConnect(conn net.Conn, host string, port uint16, header http.Header) (*http.Response, *bufio.Reader, error) {
	return e2e.HTTPConnect(conn, host, port, header)
}
