// Package e2e holds what the end-to-end test packages under test/ share
// beside the lab itself (test/netlab): the nicproxy binary they run, the
// protocol clients that expose exact replies, and the serving lab's web
// upload with its proof of the NIC.
package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
)

// Minimal protocol clients that expose what curl hides: the exact SOCKS5
// reply code and the exact HTTP status of a CONNECT.

// SOCKS5Dial performs a SOCKS5 handshake on conn (user "" = no auth) and a
// CONNECT to host:port. It returns the reply code; on 0x00 the conn is the
// tunnel. An authentication failure returns ErrAuthFailed.
func SOCKS5Dial(conn net.Conn, user, password, host string, port uint16) (byte, error) {
	rep, _, err := SOCKS5Request(conn, user, password, SOCKS5Connect, host, port)
	return rep, err
}

// SOCKS5 commands (RFC 1928).
const (
	SOCKS5Connect      byte = 0x01
	SOCKS5Bind         byte = 0x02
	SOCKS5UDPAssociate byte = 0x03
)

// SOCKS5Request performs a SOCKS5 handshake on conn (user "" = no auth)
// and sends command cmd for host:port. It returns the reply code and the
// address the reply names (for UDP ASSOCIATE, the relay). An
// authentication failure returns ErrAuthFailed.
func SOCKS5Request(conn net.Conn, user, password string, cmd byte, host string, port uint16) (byte, netip.AddrPort, error) {
	method := byte(0x00)
	if user != "" {
		method = 0x02
	}
	if _, err := conn.Write([]byte{0x05, 0x01, method}); err != nil {
		return 0, netip.AddrPort{}, err
	}
	var choice [2]byte
	if _, err := io.ReadFull(conn, choice[:]); err != nil {
		return 0, netip.AddrPort{}, fmt.Errorf("method reply: %w", err)
	}
	if choice[1] != method {
		return 0, netip.AddrPort{}, fmt.Errorf("server chose method %#x, want %#x", choice[1], method)
	}
	if user != "" {
		msg := append([]byte{0x01, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(password))), password...)
		if _, err := conn.Write(msg); err != nil {
			return 0, netip.AddrPort{}, err
		}
		var status [2]byte
		if _, err := io.ReadFull(conn, status[:]); err != nil {
			return 0, netip.AddrPort{}, fmt.Errorf("auth reply: %w", err)
		}
		if status[1] != 0x00 {
			return 0, netip.AddrPort{}, ErrAuthFailed
		}
	}
	req := []byte{0x05, cmd, 0x00}
	if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		req = append(append(req, 0x01), a.AsSlice()...)
	} else if err == nil {
		req = append(append(req, 0x04), a.AsSlice()...)
	} else {
		req = append(append(req, 0x03, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, port)
	if _, err := conn.Write(req); err != nil {
		return 0, netip.AddrPort{}, err
	}
	var head [4]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return 0, netip.AddrPort{}, fmt.Errorf("reply: %w", err)
	}
	size := map[byte]int{0x01: 4, 0x04: 16}[head[3]]
	if head[3] == 0x03 {
		var n [1]byte
		if _, err := io.ReadFull(conn, n[:]); err != nil {
			return 0, netip.AddrPort{}, err
		}
		size = int(n[0])
	}
	bound := make([]byte, size+2)
	if _, err := io.ReadFull(conn, bound); err != nil {
		return 0, netip.AddrPort{}, fmt.Errorf("bound address: %w", err)
	}
	var addr netip.AddrPort
	if ip, ok := netip.AddrFromSlice(bound[:size]); ok && head[3] != 0x03 {
		addr = netip.AddrPortFrom(ip, binary.BigEndian.Uint16(bound[size:]))
	}
	return head[1], addr, nil
}

// ErrAuthFailed is a SOCKS5 server refusing the username and password.
var ErrAuthFailed = errors.New("socks5 authentication failed")

// HTTPConnect sends a CONNECT for host:port and returns the response; on
// 200 the returned reader continues the tunnel.
func HTTPConnect(conn net.Conn, host string, port uint16, header http.Header) (*http.Response, *bufio.Reader, error) {
	target := net.JoinHostPort(host, strconv.Itoa(int(port)))
	req := &http.Request{Method: http.MethodConnect, Host: target, URL: nil, Header: header}
	if req.Header == nil {
		req.Header = http.Header{}
	}
	if _, err := fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target); err != nil {
		return nil, nil, err
	}
	if err := req.Header.Write(conn); err != nil {
		return nil, nil, err
	}
	if _, err := io.WriteString(conn, "\r\n"); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	return resp, br, err
}
