package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"

	socks5 "github.com/things-go/go-socks5"
	"github.com/things-go/go-socks5/statute"
	"go.uber.org/zap"
)

// socks5Server wraps things-go/go-socks5 for what it does well — method
// negotiation, RFC 1929 auth, request parsing, replies — and takes over the
// CONNECT step: the library would resolve names itself with the system
// resolver (a DNS query out of the default NIC for every socks5h request)
// and relay through buffers, which never splices. nicproxy hands it a
// resolver that resolves nothing and a connect handler that routes, dials
// pinned, and relays with splice.
type socks5Server struct {
	lib    *socks5.Server
	denied *socks5.Server // for clients outside allow
}

// sessionConn carries the session through the library to the connect
// handler, which receives the conn back as its writer. It embeds the
// *net.TCPConn so nothing in the relay path is wrapped.
type sessionConn struct {
	*net.TCPConn
	ss *session
}

// Close closes the connection unless its tunnel was handed to the relay,
// which owns it from then on: the library closes the conn when its
// ServeConn returns, which a handed-off tunnel outlives.
func (c *sessionConn) Close() error {
	if c.ss.detached {
		return nil
	}
	return c.TCPConn.Close()
}

func newSOCKS5Server(s *Server, st *state) *socks5Server {
	auth := []socks5.Authenticator{socks5.NoAuthAuthenticator{}}
	if st.users.required() {
		auth = []socks5.Authenticator{userPass{st.users}}
	}
	p := &socks5Server{}
	p.lib = socks5.NewServer(
		socks5.WithAuthMethods(auth),
		socks5.WithResolver(noResolver{}),
		socks5.WithConnectHandle(p.connect),
		socks5.WithBindHandle(unsupportedCommand),
		socks5.WithAssociateHandle(p.associate),
		socks5.WithLogger(zapLogger{s.log}),
	)
	// A client outside allow gets 0x02 to whatever it asks, without its
	// password being checked: it cannot use the proxy to guess passwords
	// or spend bcrypt time.
	p.denied = socks5.NewServer(
		socks5.WithAuthMethods([]socks5.Authenticator{
			socks5.NoAuthAuthenticator{},
			socks5.UserPassAuthenticator{Credentials: acceptAny{}},
		}),
		socks5.WithResolver(noResolver{}),
		socks5.WithConnectHandle(notAllowed),
		socks5.WithBindHandle(notAllowed),
		socks5.WithAssociateHandle(notAllowed),
		socks5.WithLogger(zapLogger{s.log}),
	)
	return p
}

func notAllowed(_ context.Context, w io.Writer, req *socks5.Request) error {
	if sc, ok := w.(*sessionConn); ok {
		sc.ss.hs.end()
		sc.ss.dest = req.RawDestAddr.String()
		sc.ss.err = fmt.Errorf("client %s is not in allow: %w", sc.ss.from.Addr(), errRejected)
	}
	return socks5.SendReply(w, statute.RepRuleFailure, nil)
}

// acceptAny lets a client outside allow through authentication, to reach
// the 0x02 reply the spec gives it.
type acceptAny struct{}

func (acceptAny) Valid(string, string, string) bool { return true }

func (p *socks5Server) serve(ss *session) {
	ss.protocol = "socks5"
	lib := p.lib
	if !ss.allowed() {
		lib = p.denied
	}
	err := lib.ServeConn(&sessionConn{TCPConn: ss.client, ss: ss})
	if ss.handedOff {
		return // the relay owns the session now, and logs it when it ends
	}
	if ss.err == nil && err != nil {
		ss.err = err
	}
	switch {
	case errors.Is(err, statute.ErrUserAuthFailed):
		ss.err = fmt.Errorf("%w: %w", errAuth, err)
	case errors.Is(err, statute.ErrNoSupportedAuth) && ss.st.users.required():
		// The client offered no user name and password (0xFF was its
		// answer): a login that failed, not a fault.
		ss.err = fmt.Errorf("%w: the client offered no user name and password", errAuth)
	}
	if ss.dest == "" && errors.Is(err, io.EOF) {
		return // a client that left mid-handshake is not worth a line
	}
	ss.logHandshake()
}

func (p *socks5Server) connect(_ context.Context, w io.Writer, req *socks5.Request) error {
	sc, ok := w.(*sessionConn)
	if !ok {
		return fmt.Errorf("socks5: connect handler got %T, not the session", w)
	}
	ss := sc.ss
	ss.hs.end()
	if req.AuthContext != nil {
		ss.user = req.AuthContext.Payload["username"]
	}
	host := req.RawDestAddr.FQDN
	if host == "" {
		host = req.RawDestAddr.IP.String()
	}
	if !ss.allowed() {
		ss.dest = net.JoinHostPort(host, fmt.Sprint(req.RawDestAddr.Port))
		ss.err = fmt.Errorf("client %s is not in allow: %w", ss.from.Addr(), errRejected)
		return socks5.SendReply(w, statute.RepRuleFailure, nil)
	}
	up, err := ss.connect(ss.ctx, host, uint16(req.RawDestAddr.Port))
	if err != nil {
		ss.err = err
		return socks5.SendReply(w, socks5Reply(err), nil)
	}
	if err := socks5.SendReply(w, statute.RepSuccess, up.LocalAddr()); err != nil {
		up.Close()
		up.Release()
		ss.err = err
		return nil
	}
	// Bytes the client sent right after its request may sit in the
	// library's bufio.Reader; they must reach the upstream first.
	var pending io.Reader
	if br, ok := req.Reader.(*bufio.Reader); ok && br.Buffered() > 0 {
		pending = io.LimitReader(br, int64(br.Buffered()))
	}
	ss.handOff(up, pending)
	return nil
}

func unsupportedCommand(_ context.Context, w io.Writer, req *socks5.Request) error {
	if sc, ok := w.(*sessionConn); ok {
		sc.ss.hs.end()
		sc.ss.err = fmt.Errorf("socks5: command %d is not supported", req.Command)
	}
	return socks5.SendReply(w, statute.RepCommandNotSupported, nil)
}

// noResolver leaves names unresolved: the connect step resolves them
// through the NIC the rules chose.
type noResolver struct{}

func (noResolver) Resolve(ctx context.Context, _ string) (context.Context, net.IP, error) {
	return ctx, nil, nil
}

// userPass is RFC 1929 user name and password authentication, as the
// library's UserPassAuthenticator does it, except that the name tried
// reaches the session first, so a failed login logs whom it tried to be.
type userPass struct{ users *users }

func (userPass) GetCode() uint8 { return statute.MethodUserPassAuth }

func (a userPass) Authenticate(r io.Reader, w io.Writer, clientAddr string) (*socks5.AuthContext, error) {
	if _, err := w.Write([]byte{statute.VersionSocks5, statute.MethodUserPassAuth}); err != nil {
		return nil, err
	}
	req, err := statute.ParseUserPassRequest(r)
	if err != nil {
		return nil, err
	}
	user, password := string(req.User), string(req.Pass)
	if sc, ok := w.(*sessionConn); ok {
		sc.ss.user = user
	}
	client, _ := netip.ParseAddrPort(clientAddr) // zero when unparsable: one shared record
	if !a.users.valid(client.Addr().Unmap(), user, password) {
		if _, err := w.Write([]byte{statute.UserPassAuthVersion, statute.AuthFailure}); err != nil {
			return nil, err
		}
		return nil, statute.ErrUserAuthFailed
	}
	if _, err := w.Write([]byte{statute.UserPassAuthVersion, statute.AuthSuccess}); err != nil {
		return nil, err
	}
	return &socks5.AuthContext{Method: statute.MethodUserPassAuth, Payload: map[string]string{"username": user}}, nil
}

// zapLogger sends the library's messages to the debug log.
type zapLogger struct{ log *zap.Logger }

func (l zapLogger) Errorf(format string, args ...any) {
	l.log.Debug("socks5", zap.String("detail", fmt.Sprintf(format, args...)))
}
