package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"go.uber.org/zap"

	"nicproxy/config"
	"nicproxy/proxy/admin"
	"nicproxy/proxy/relay"
	"nicproxy/proxy/router"
	"nicproxy/proxy/sniff"
	"nicproxy/proxy/upstream"
)

// session is one proxied connection, from the client's handshake to the
// access-log line written when it closes.
type session struct {
	srv      *Server
	ctx      context.Context // cancelled when the shutdown grace period ends
	st       *state
	listener config.Listener
	client   *net.TCPConn
	from     netip.AddrPort
	start    time.Time
	hs       *handshake // the connection's limits.max_handshakes slot

	protocol string // socks5, socks4, http-connect, http
	user     string
	dest     string
	rule     string
	nic      string
	who      *router.Peer // who the client is, when a rule asked
	peerRec  *router.Peer // on the owner: the connection's one Peer
	up, down int64
	err      error

	// release ends the client connection's life in the server: it stops
	// the shutdown cut, closes the connection and uncounts it. It runs
	// once, when serveConn returns, unless a tunnel was handed off: then
	// when the tunnel ends.
	release func()
	// owner is the session that owns the client connection: the session
	// itself, or for a request on an HTTP keep-alive connection the
	// connection's session.
	owner *session
	// peeked holds the first bytes the client sent, as a peek found them
	// queued (still unread), when the listener had to look.
	peeked []byte
	// handedOff is set when this session's tunnel was handed to the relay,
	// which then writes the access-log line; detached, on the owner, when
	// the client connection went with it.
	handedOff, detached bool
}

func (s *Server) serveConn(ctx context.Context, l config.Listener, conn *net.TCPConn, hs *handshake) {
	defer hs.finish()
	ss := &session{
		hs:       hs,
		srv:      s,
		ctx:      ctx,
		st:       s.state.Load(),
		listener: l,
		client:   conn,
		from:     conn.RemoteAddr().(*net.TCPAddr).AddrPort(),
		start:    time.Now(),
	}
	ss.owner = ss
	// When the shutdown grace period ends, cut the connection; the relay
	// then closes its upstream side too.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	ss.release = func() {
		stop()
		conn.Close()
		s.active.Add(-1)
		s.conns.Done()
	}
	defer func() {
		if !ss.detached {
			ss.release()
		}
	}()

	_ = conn.SetDeadline(ss.start.Add(ss.st.cfg.Timeouts.Handshake))
	// One peek tells the protocol and, for HTTP, whether the request is a
	// CONNECT (which httpProxy.serve would otherwise peek for). A port that
	// serves one protocol looks too, so that a client speaking the other is
	// answered at once instead of at the handshake timeout: go-socks5 would
	// wait for as many method bytes as "GET" claims, net/http for a line end
	// that a SOCKS greeting never sends.
	var head [len(connectPrefix)]byte
	spoken, n, err := sniff.Peek(conn, head[:])
	if err != nil {
		s.log.Debug("client left before its first byte", zap.Stringer("client", ss.from), zap.Error(err))
		return
	}
	ss.peeked = head[:n]
	protocol := l.Protocol
	switch {
	case protocol != config.ProtocolMixed && !serves(protocol, spoken):
		ss.refuseProtocol(spoken)
		return
	case spoken == sniff.SOCKS4: // a mixed port
		ss.serveSOCKS4()
		return
	case spoken == sniff.SOCKS5:
		protocol = config.ProtocolSOCKS5
	default:
		protocol = config.ProtocolHTTP
	}
	switch protocol {
	case config.ProtocolSOCKS5:
		ss.st.socks5.serve(ss)
	default:
		ss.st.http.serve(ss)
	}
}

// allowed reports whether the client's address passes `allow`.
func (ss *session) allowed() bool {
	return ss.st.cfg.AllowAll() || ss.st.cfg.Allow.Contains(ss.from.Addr().Unmap())
}

// connect routes and dials the destination for this session's client and
// user. A reject rule is an error that wraps errRejected.
func (ss *session) connect(ctx context.Context, host string, port uint16) (*upstream.Conn, error) {
	// The handshake is over once the request is read: the dial has its own
	// timeout, and the reply must still reach the client after it.
	_ = ss.client.SetDeadline(time.Time{})
	ss.hs.end()
	ss.dest = net.JoinHostPort(host, strconv.Itoa(int(port)))
	host, err := ss.destination(host, port)
	if err != nil {
		return nil, err
	}
	decision := ss.st.router.Route(ctx, ss.routeRequest(host, port, config.NetworkTCP))
	ss.noteDecision(decision)
	if decision.Action == config.ActionReject {
		return nil, fmt.Errorf("%s: %w by rule %s", ss.dest, errRejected, decision.RuleName)
	}
	start := time.Now()
	conn, err := ss.st.dialer.Dial(ctx, "tcp", decision, ss.from,
		upstream.Target{Host: host, Port: port, Addr: decision.Addr})
	if err != nil {
		ss.nic = failedNIC(err)
		ss.srv.report.Dialed(ss.nic, resultOf(err), time.Since(start))
		return nil, err
	}
	ss.nic = conn.NIC
	ss.srv.report.Dialed(conn.NIC, resultOf(nil), time.Since(start))
	return conn, nil
}

// handOff relays bytes between the client and up until both sides are
// done, on goroutines of the relay's own, and returns at once: the
// goroutine that ran the handshake ends, so an idle tunnel holds two small
// goroutine stacks rather than the deep one the handshake grew (and for
// HTTP CONNECT, net/http's per-connection state too). When the tunnel
// ends, the relay writes the access-log line and releases the client
// connection. pending holds bytes the client sent that a handshake parser
// already buffered; they go first, before handOff returns, so no parser's
// buffer outlives the handshake.
func (ss *session) handOff(up *upstream.Conn, pending io.Reader) {
	_ = ss.client.SetDeadline(time.Time{})
	if pending != nil {
		n, err := io.Copy(up.Conn, pending)
		ss.up += n
		if err != nil {
			up.Close()
			ss.err = err
			return // not handed off: the caller logs and releases
		}
	}
	ss.handedOff, ss.owner.detached = true, true
	relaying := func() {}
	if tc, ok := up.Conn.(*net.TCPConn); ok {
		relaying = ss.srv.report.Relaying(ss.nic, tc)
	}
	relay.Go(ss.client, up.Conn, ss.srv.sweeper, func(res relay.Result) {
		up.Release()
		relaying()
		ss.up += res.Up
		ss.down += res.Down
		ss.err = res.Err
		ss.logAccess()
		ss.owner.release()
	})
}

// logHandshake writes the access-log line of a session that ended in its
// handshake (refused, failed, or answered without a tunnel); a session
// whose tunnel was handed off is logged by the relay when it ends.
func (ss *session) logHandshake() {
	if !ss.handedOff {
		ss.logAccess()
	}
}

// logAccess records the finished connection in the metrics and writes its
// access-log line. Passwords never reach either.
func (ss *session) logAccess() {
	result := resultOf(ss.err)
	if errors.Is(ss.err, relay.ErrIdle) {
		result = "idle-timeout"
	}
	reason := ""
	if result != "ok" && result != "idle-timeout" {
		reason = reasonOf(ss.err)
	}
	who := ss.who.Info()
	ss.srv.report.Finished(admin.Flow{
		Start: ss.start, Client: ss.from, User: ss.user, Protocol: ss.protocol,
		Listener: ss.listener.Name, Dest: ss.dest, Rule: ss.rule, NIC: ss.nic,
		Up: ss.up, Down: ss.down, Result: result, Reason: reason,
		Unit: who.Unit, UID: uint32(max(who.UID, 0)), HasUID: who.UID >= 0, Program: who.Program,
	})
	if !ss.st.cfg.Log.Access {
		return
	}
	fields := []zap.Field{
		zap.Stringer("client", ss.from),
		zap.String("user", ss.user),
		zap.String("protocol", ss.protocol),
		zap.String("listener", ss.listener.Name),
		zap.String("dest", ss.dest),
		zap.String("rule", ss.rule),
		zap.String("nic", ss.nic),
		zap.Int64("bytes_up", ss.up),
		zap.Int64("bytes_down", ss.down),
		zap.Duration("duration", time.Since(ss.start).Round(time.Millisecond)),
		zap.String("result", result),
	}
	if reason != "" {
		fields = append(fields, zap.String("reason", reason))
	}
	if who.Asked {
		fields = append(fields, zap.String("unit", who.Unit), zap.Int64("uid", who.UID), zap.String("program", who.Program))
		if who.Err != "" {
			fields = append(fields, zap.String("client_unknown", who.Err))
		}
	}
	if ss.err != nil && !errors.Is(ss.err, relay.ErrIdle) {
		fields = append(fields, zap.Error(ss.err))
	}
	if result == "auth-failed" || result == "wrong-protocol" {
		// A guesser or a scanner makes these by the thousand: as a
		// warning, the logger samples them.
		ss.srv.log.Warn("access", fields...)
		return
	}
	ss.srv.log.Info("access", fields...)
}
