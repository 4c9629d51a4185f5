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

	protocol string // socks5, socks4, http-connect, http
	user     string
	dest     string
	rule     string
	nic      string
	up, down int64
	err      error
}

func (s *Server) serveConn(ctx context.Context, l config.Listener, conn *net.TCPConn) {
	ss := &session{
		srv:      s,
		ctx:      ctx,
		st:       s.state.Load(),
		listener: l,
		client:   conn,
		from:     conn.RemoteAddr().(*net.TCPAddr).AddrPort(),
		start:    time.Now(),
	}
	// When the shutdown grace period ends, cut the connection; the relay
	// then closes its upstream side too.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()

	_ = conn.SetDeadline(ss.start.Add(ss.st.cfg.Timeouts.Handshake))
	protocol := l.Protocol
	if protocol == config.ProtocolMixed {
		p, err := sniff.Peek(conn)
		if err != nil {
			s.log.Debug("client left before its first byte", zap.Stringer("client", ss.from), zap.Error(err))
			return
		}
		switch p {
		case sniff.SOCKS5:
			protocol = config.ProtocolSOCKS5
		case sniff.SOCKS4:
			ss.serveSOCKS4()
			return
		default:
			protocol = config.ProtocolHTTP
		}
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
	ss.dest = net.JoinHostPort(host, strconv.Itoa(int(port)))
	decision := ss.st.router.Route(ctx, router.Request{
		Client: ss.from, User: ss.user, Listener: ss.listener.Name,
		Host: host, Port: port, Network: config.NetworkTCP,
	})
	ss.rule = decision.RuleName
	if decision.Action == config.ActionReject {
		return nil, fmt.Errorf("%s: %w by rule %s", ss.dest, errRejected, decision.RuleName)
	}
	start := time.Now()
	conn, err := ss.st.dialer.Dial(ctx, "tcp", decision, ss.from,
		upstream.Target{Host: host, Port: port, Addr: decision.Addr})
	if err != nil {
		ss.srv.metrics.observeDial("", err, time.Since(start))
		return nil, err
	}
	ss.nic = conn.NIC
	ss.srv.metrics.observeDial(conn.NIC, nil, time.Since(start))
	return conn, nil
}

// relay moves bytes until both sides are done. pending holds bytes the
// client sent that a handshake parser already buffered; they go first.
func (ss *session) relay(up *upstream.Conn, pending io.Reader) {
	defer up.Release()
	defer ss.srv.status.relaying(ss)()
	_ = ss.client.SetDeadline(time.Time{})
	if pending != nil {
		n, err := io.Copy(up.Conn, pending)
		ss.up += n
		if err != nil {
			up.Close()
			ss.err = err
			return
		}
	}
	res := relay.RelayWithIdle(ss.client, up.Conn, ss.srv.sweeper)
	ss.up += res.Up
	ss.down += res.Down
	ss.err = res.Err
}

// logAccess records the finished connection in the metrics and writes its
// access-log line. Passwords never reach either.
func (ss *session) logAccess() {
	result := resultOf(ss.err)
	if errors.Is(ss.err, relay.ErrIdle) {
		result = "idle-timeout"
	}
	ss.srv.metrics.observeEnd(ss, result)
	ss.srv.status.finished(ss, result)
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
	if ss.err != nil && !errors.Is(ss.err, relay.ErrIdle) {
		fields = append(fields, zap.Error(ss.err))
	}
	ss.srv.log.Info("access", fields...)
}
