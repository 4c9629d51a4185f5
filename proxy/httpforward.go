package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"nicproxy/config"
	"nicproxy/proxy/router"
	"nicproxy/proxy/upstream"
)

// forwarded carries a request's routing into the transport's dial.
type forwarded struct {
	rs       *session
	decision router.Decision
	host     string // the destination, normalised: dialed instead of the URL's spelling
	port     uint16
}

type forwardedKey struct{}

// forward proxies one absolute-URI request; it reports whether the client
// connection was hijacked for a protocol upgrade.
func (p *httpProxy) forward(w http.ResponseWriter, r *http.Request, rs *session) (hijacked bool) {
	defaultPort := uint16(80)
	if r.URL.Scheme == "https" {
		defaultPort = 443
	}
	host, port, err := splitHostPort(r.URL.Host, defaultPort)
	if err != nil {
		rs.dest, rs.err = r.URL.Host, err
		http.Error(w, "nicproxy: "+err.Error(), http.StatusBadRequest)
		return false
	}
	rs.dest = net.JoinHostPort(host, strconv.Itoa(int(port)))
	if host, err = rs.destination(host, port); err != nil {
		rs.err = err
		http.Error(w, "nicproxy: "+err.Error(), httpStatus(err))
		return false
	}
	decision := p.st.router.Route(r.Context(), rs.routeRequest(host, port, config.NetworkTCP))
	rs.noteDecision(decision)
	if decision.Action == config.ActionReject {
		rs.err = fmt.Errorf("%s: %w by rule %s", rs.dest, errRejected, decision.RuleName)
		http.Error(w, "nicproxy: "+rs.err.Error(), http.StatusForbidden)
		return false
	}
	if r.URL.Scheme == "http" && isUpgrade(r) {
		return p.upgrade(w, r, rs, decision, host, port)
	}
	// Bytes are counted on the upstream connection, as they cross the
	// NIC: the request as sent (line, headers, body) up, the response as
	// received down. An error page nicproxy writes itself crosses no NIC.
	counts := &flowBytes{}
	defer func() { rs.up, rs.down = counts.up.Load(), counts.down.Load() }()
	ctx := context.WithValue(r.Context(), forwardedKey{}, &forwarded{rs: rs, decision: decision, host: host, port: port})
	limits := p.st.cfg.Limits
	interim := &interimBudget{maxBytes: int64(limits.MaxHeaderBytes), maxLines: limits.MaxHeaders}
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			if up, ok := info.Conn.(*forwardConn); ok {
				rs.nic = up.NIC
				up.attach(counts)
			}
		},
		// ReverseProxy adds its own hook, which passes each 1xx on; the
		// transport then calls this one, whose error ends the exchange.
		Got1xxResponse: interim.got,
	})
	// ReverseProxy streams the request body upstream while it writes the
	// response; without full duplex, net/http would drain the unread body
	// itself as the response starts, racing the transport for it.
	_ = http.NewResponseController(w).EnableFullDuplex()
	body := &pausedBody{ReadCloser: r.Body, conn: rs.client, pause: p.st.cfg.Timeouts.Body}
	r.Body = body
	counter := &upgradeWriter{ResponseWriter: w}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The client's absolute URI is already the destination. No
			// X-Forwarded-For: a forward proxy does not announce its client.
			pr.Out.Host = r.Host
			pr.Out.Header.Add("Via", fmt.Sprintf("%d.%d %s", r.ProtoMajor, r.ProtoMinor, viaToken))
		},
		Transport: p.transport(decision, rs.from, host),
		ErrorLog:  zap.NewStdLog(p.log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
		ModifyResponse: func(resp *http.Response) error {
			// The pause was seen before the origin could see the body
			// cut short, so an answer that comes after it is the
			// origin's answer to a truncated body: not the client's.
			// The transport would pass it on when it reads it before
			// it notices its own failed write.
			if body.timedOut.Load() {
				return errors.New("the origin answered a request body cut short")
			}
			return checkResponseHead(resp, limits.MaxHeaders)
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			if body.timedOut.Load() {
				err = fmt.Errorf("%w: %w", errBodyTimeout, err)
			}
			rs.err = err
			if rs.nic == "" {
				rs.nic = failedNIC(err) // the dial failed: on this NIC
			}
			// The exchange broke off: how much of the request's body was
			// read, or of the origin's answer, is not known, so the
			// client's connection is not used again.
			w.Header().Set("Connection", "close")
			http.Error(w, "nicproxy: "+err.Error(), httpStatus(err))
		},
	}
	rp.ServeHTTP(counter, r.WithContext(ctx))
	return counter.hijacked
}

// transport returns the keep-alive pool for a decision's NICs: connections
// dialed through one set of NICs are only reused for requests routed to the
// same set, so keep-alive never moves a request to another NIC.
//
// A sticky balance promises one NIC per client and site, so its pools are
// also per NIC picked: a connection pooled for one client's pick is reused
// only by requests whose pick is the same NIC. (Per client address, the
// pools would grow with every client ever seen.)
func (p *httpProxy) transport(d router.Decision, client netip.AddrPort, host string) *http.Transport {
	key := d.Via.String()
	if pick := p.st.dialer.StickyPick(d, client, host); pick != "" {
		key += "|" + pick
	}
	idle := p.st.cfg.Timeouts.Idle
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.transports[key]; ok {
		return t
	}
	t := &http.Transport{
		Proxy: nil, // never chain to the environment's proxy
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			f, ok := ctx.Value(forwardedKey{}).(*forwarded)
			if !ok {
				return nil, errors.New("nicproxy: dial without a routing decision")
			}
			// The transport pools connections by the URL's spelling of the
			// host; it always names the same destination as f.host.
			start := time.Now()
			up, err := p.st.dialer.Dial(ctx, "tcp", f.decision, f.rs.from,
				upstream.Target{Host: f.host, Port: f.port, Addr: f.decision.Addr})
			if err != nil {
				p.report.Dialed(failedNIC(err), resultOf(err), time.Since(start))
				return nil, err
			}
			p.report.Dialed(up.NIC, resultOf(nil), time.Since(start))
			// The NIC reaches the access log through GotConn, on the
			// handler's goroutine: the transport may finish this dial after
			// the request has gone.
			return &forwardConn{Conn: up, idle: idle, drains: p.drains}, nil
		},
		ResponseHeaderTimeout: idle,
		// Go's default is 10 MB; an origin's header is held to what a
		// client's is. (The 1xx responses before it: interimBudget.)
		MaxResponseHeaderBytes: int64(p.st.cfg.Limits.MaxHeaderBytes),
		// With Expect: 100-continue, the body waits for the origin's
		// 100; an origin that answers 413 at once is not sent it.
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true, // pass bodies through as the server sent them
		ForceAttemptHTTP2:     false,
	}
	p.transports[key] = t
	return t
}

// forwardConn is an upstream connection of the HTTP transport that is closed
// after timeouts.idle without a byte either way, and that counts the bytes
// it moves for the request using it. Forwarded requests do not splice, so
// a deadline per read and write costs nothing the relay avoids.
type forwardConn struct {
	*upstream.Conn
	idle    time.Duration
	drains  *sync.WaitGroup
	closed  sync.Once
	closing atomic.Bool // the transport is done with it: reads fail

	// flow counts for the request the transport gave this connection
	// to; nil until the first. Bytes moved while none is attached (a TLS
	// handshake in the dial) wait in unclaimed for the next one.
	flow      atomic.Pointer[flowBytes]
	unclaimed flowBytes
}

// Bounds of a graceful close: how long and how much of the rest of a
// response is read and dropped before the socket is closed anyway.
const (
	drainTime  = time.Second
	drainBytes = 4 << 20
)

// Close ends the connection without provoking the kernel into resets that
// leave through the wrong NIC. The transport closes a connection whose
// response is still arriving when the client gave up on it; a close(2)
// with unread data resets at once and destroys the socket, and the
// segments still in flight then meet no socket: the kernel answers them
// with resets that carry no binding and follow the main routing table. So
// the connection is shut down for writing (the origin sees a FIN, not a
// reset) and the rest of the response is read and dropped, for at most
// drainTime and drainBytes, by a goroutine the Server waits for; only then
// is the socket closed.
func (c *forwardConn) Close() error {
	tcp, ok := c.Conn.Conn.(*net.TCPConn)
	if !ok {
		return c.Conn.Close()
	}
	c.closed.Do(func() {
		// The transport's own reader must stop reading now, as it would
		// after a close: reads through c fail from here on, and a read
		// already waiting is woken by a deadline in the past.
		c.closing.Store(true)
		_ = tcp.SetReadDeadline(time.Unix(1, 0))
		_ = tcp.CloseWrite()
		c.drains.Go(func() {
			defer c.Conn.Close()
			_ = tcp.SetReadDeadline(time.Now().Add(drainTime))
			_, _ = io.Copy(io.Discard, io.LimitReader(tcp, drainBytes))
		})
	})
	return nil
}

// flowBytes are the bytes one forwarded request moved upstream.
type flowBytes struct{ up, down atomic.Int64 }

// attach makes f count this connection's bytes from now on, with those
// no request has claimed yet. The transport uses a connection for one
// request at a time and attaches (GotConn) before it writes the request,
// so every byte lands on the request it belongs to.
func (c *forwardConn) attach(f *flowBytes) {
	c.flow.Store(f)
	f.up.Add(c.unclaimed.up.Swap(0))
	f.down.Add(c.unclaimed.down.Swap(0))
}

func (c *forwardConn) counts() *flowBytes {
	if f := c.flow.Load(); f != nil {
		return f
	}
	return &c.unclaimed
}

func (c *forwardConn) Read(b []byte) (int, error) {
	if c.closing.Load() {
		return 0, net.ErrClosed
	}
	_ = c.Conn.SetDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Read(b)
	c.counts().down.Add(int64(n))
	return n, err
}

func (c *forwardConn) Write(b []byte) (int, error) {
	_ = c.Conn.SetDeadline(time.Now().Add(c.idle))
	n, err := c.Conn.Write(b)
	c.counts().up.Add(int64(n))
	return n, err
}

// upgradeWriter passes the response on and records whether ReverseProxy
// hijacked the client for an upgrade (an https:// upgrade, which the
// relay cannot splice). It keeps Hijack and Flush reachable: ReverseProxy
// needs them for upgrades and streaming.
type upgradeWriter struct {
	http.ResponseWriter
	hijacked bool
}

func (c *upgradeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// WriteHeader passes the origin's status on, except its 100 Continue:
// net/http already sent the client one when the body was first read, and
// a client must see one (RFC 9110 §15.2.1).
func (c *upgradeWriter) WriteHeader(code int) {
	if code == http.StatusContinue {
		return
	}
	c.ResponseWriter.WriteHeader(code)
}

// Hijack records that ReverseProxy took the connection for an upgrade.
func (c *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(c.ResponseWriter).Hijack()
	if err == nil {
		c.hijacked = true
	}
	return conn, brw, err
}

// errBodyTimeout is a client that paused its request body for longer than
// timeouts.body: it gets 408, as nginx's client_body_timeout answers.
var errBodyTimeout = errors.New("the request body paused for longer than timeouts.body")

// pausedBody drops a client that stops sending its request body for
// timeouts.body; the transport reads it from its own goroutine.
type pausedBody struct {
	io.ReadCloser
	conn     net.Conn      // the client connection the body arrives on
	pause    time.Duration // a client that sends nothing for this long is dropped
	timedOut atomic.Bool
}

func (c *pausedBody) Read(b []byte) (int, error) {
	// net/http sets no deadline while a handler reads the body; without
	// one, a client that stops mid-body would hold its slot forever.
	_ = c.conn.SetReadDeadline(time.Now().Add(c.pause))
	n, err := c.ReadCloser.Read(b)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		c.timedOut.Store(true)
	}
	return n, err
}
