package proxy

import (
	"fmt"
	"io"

	"nicproxy/proxy/socks4"
)

// serveSOCKS4 serves a SOCKS4 or SOCKS4a client. Its user id stands in for
// a user name in `user` rules when no users are configured; with users,
// SOCKS4 is refused, since it carries no password.
func (ss *session) serveSOCKS4() {
	ss.protocol = "socks4"
	defer ss.logHandshake()
	// ReadRequest reads exactly the request, so the unwrapped conn can be
	// spliced afterwards with nothing left behind in a buffer.
	req, err := socks4.ReadRequest(ss.client)
	ss.hs.end()
	if err != nil {
		if err != io.EOF {
			_ = socks4.WriteReply(ss.client, false)
		}
		ss.err = err
		return
	}
	host := req.Host
	if host == "" {
		host = req.IP.String()
		ss.protocol = "socks4"
	} else {
		ss.protocol = "socks4a"
	}
	ss.dest = fmt.Sprintf("%s:%d", host, req.Port)
	switch {
	case ss.st.users.required():
		ss.err = fmt.Errorf("socks4 has no password and users are configured: %w", errAuth)
	case !ss.allowed():
		ss.err = fmt.Errorf("client %s is not in allow: %w", ss.from.Addr(), errRejected)
	case req.Command != socks4.CmdConnect:
		ss.err = fmt.Errorf("socks4: command %d is not supported", req.Command)
	}
	if ss.err != nil {
		_ = socks4.WriteReply(ss.client, false)
		return
	}
	ss.user = req.UserID
	up, err := ss.connect(ss.ctx, host, req.Port)
	if err != nil {
		ss.err = err
		_ = socks4.WriteReply(ss.client, false)
		return
	}
	if err := socks4.WriteReply(ss.client, true); err != nil {
		up.Close()
		up.Release()
		ss.err = err
		return
	}
	ss.handOff(up, nil)
}
