package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// httpProxy serves HTTP proxy clients with net/http: CONNECT tunnels and
// absolute-URI requests forwarded by httputil.ReverseProxy, which already
// strips hop-by-hop headers (Proxy-Authorization among them), handles
// chunked bodies and relays protocol upgrades.
type httpProxy struct {
	st     *state
	log    *zap.Logger
	report reporter
	server *http.Server
	conns  *connQueue

	// drains owns the goroutines that close upstream connections
	// gracefully (forwardConn.Close); the Server waits for it.
	drains *sync.WaitGroup

	mu         sync.Mutex
	transports map[string]*http.Transport // keyed by the NICs a decision allows

	// A reload retires this server: it takes no new connections, and the
	// next request on each of its kept-alive ones is served by the
	// current configuration and answered with Connection: close. Closing
	// them idle instead would race their clients' next request.
	retiring atomic.Bool
	served   chan struct{}  // closed when server.Serve has returned
	open     sync.WaitGroup // connections net/http is serving
}

type httpConnKey struct{}

// httpConn is a client connection handed to net/http, and how the session
// learns that net/http is finished with it.
type httpConn struct {
	*net.TCPConn
	ss       *session
	doneOnce sync.Once
	done     chan struct{}
	idle     atomic.Bool // between requests: the next byte read starts a handshake
	framing  framingScan
}

func (c *httpConn) finish() {
	c.doneOnce.Do(func() {
		c.ss.hs.finish()
		close(c.done)
	})
}

// errHandshakesFull drops a kept-alive client whose next request found
// limits.max_handshakes taken for a whole handshake timeout.
var errHandshakesFull = errors.New("nicproxy: too many clients in their handshake")

// Read starts a new handshake when a kept-alive connection's next request
// begins: its header is read under limits.max_handshakes like the first.
func (c *httpConn) Read(b []byte) (int, error) {
	n, err := c.TCPConn.Read(b)
	if n > 0 && c.idle.CompareAndSwap(true, false) {
		if !c.ss.hs.restart(c.ss.ctx.Done(), c.ss.st.cfg.Timeouts.Handshake) {
			return 0, errHandshakesFull
		}
		c.framing.start()
	}
	if n > 0 && c.framing.feed(b[:n]) > c.ss.st.cfg.Limits.MaxHeaders {
		return 0, c.refuseHeaders()
	}
	return n, err
}

// errTooManyHeaders is a request refused for its header lines.
var errTooManyHeaders = errors.New("nicproxy: more header lines than limits.max_headers")

// refuseHeaders answers a request whose header has more lines than
// limits.max_headers, before net/http has parsed any of it, and ends the
// connection: net/http takes the error for a read error and closes it
// without an answer of its own. Nothing else writes to the client while
// its request header is being read.
func (c *httpConn) refuseHeaders() error {
	const body = "nicproxy: request header has too many lines\n"
	_, _ = fmt.Fprintf(c.TCPConn, "HTTP/1.1 431 Request Header Fields Too Large\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	// Half-close, and leave the rest of the header unread but not reset:
	// a close with unread bytes would reset the connection and could
	// destroy the answer before the client reads it.
	_ = c.TCPConn.CloseWrite()
	return errTooManyHeaders
}

func newHTTPProxy(s *Server, st *state) *httpProxy {
	p := &httpProxy{
		st:         st,
		log:        s.log,
		report:     s.report,
		conns:      newConnQueue(),
		transports: map[string]*http.Transport{},
		drains:     &s.drains,
		served:     make(chan struct{}),
	}
	p.server = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: st.cfg.Timeouts.Handshake,
		// net/http answers 431 past this (plus 4 KiB it allows for the
		// request line), and holds at most about twice it per client.
		MaxHeaderBytes: st.cfg.Limits.MaxHeaderBytes,
		IdleTimeout:    st.cfg.Timeouts.Idle,
		ErrorLog:       zap.NewStdLog(s.log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, httpConnKey{}, c.(*httpConn))
		},
		ConnState: func(c net.Conn, cs http.ConnState) {
			switch cs {
			case http.StateNew:
				p.open.Add(1)
			case http.StateIdle:
				c.(*httpConn).idle.Store(true)
			case http.StateHijacked:
				p.open.Done()
			case http.StateClosed:
				c.(*httpConn).finish()
				p.open.Done()
			}
		},
	}
	return p
}

// start serves handed-over connections until close, on a goroutine owner
// waits for.
func (p *httpProxy) start(owner *sync.WaitGroup) {
	owner.Go(func() {
		defer close(p.served)
		_ = p.server.Serve(p.conns)
	})
}

// retire stops taking connections and returns once every connection the
// server had has ended: each after its next request (Connection: close),
// by timeouts.idle, or when Serve's shutdown closes it. It is only called
// on a server that was started.
func (p *httpProxy) retire() {
	p.retiring.Store(true)
	p.conns.Close()
	<-p.served // no StateNew after this: open only goes down
	p.open.Wait()
}

// close stops serving: net/http closes its idle keep-alive connections,
// and every upstream keep-alive connection is closed too.
func (p *httpProxy) close() {
	p.conns.Close()
	_ = p.server.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.transports {
		t.CloseIdleConnections()
	}
}

// serve hands the session's connection to net/http and waits until
// net/http has closed it or has handed a tunnel on it to the relay. A
// connection that starts with CONNECT is served without net/http's
// server (serveConnect).
func (p *httpProxy) serve(ss *session) {
	if startsWithConnect(ss.client, ss.peeked) {
		p.serveConnect(ss)
		return
	}
	ss.protocol = "http"
	_ = ss.client.SetDeadline(time.Time{}) // net/http sets its own
	c := &httpConn{TCPConn: ss.client, ss: ss, done: make(chan struct{})}
	c.framing.start()
	if !p.conns.push(c) {
		// A reload retired this configuration between accept and now: the
		// client has sent nothing yet, so the current one serves it.
		current := ss.srv.state.Load()
		if current.http == p {
			return // shutting down
		}
		ss.st = current
		current.http.serve(ss)
		return
	}
	select {
	case <-c.done:
	case <-ss.ctx.Done(): // the shutdown grace period is over; the conn is cut
	}
}

func (p *httpProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := r.Context().Value(httpConnKey{}).(*httpConn)
	if p.retiring.Load() {
		// The first request after a reload on a kept-alive connection:
		// the new configuration serves it, and the client is told to open
		// a new connection for the next (as HAProxy does after a reload).
		w.Header().Set("Connection", "close")
		if current := c.ss.srv.state.Load().http; current != p {
			current.handle(w, r, c)
			return
		}
	}
	p.handle(w, r, c)
}

// handle serves one request of c under p's configuration.
func (p *httpProxy) handle(w http.ResponseWriter, r *http.Request, c *httpConn) {
	c.ss.hs.end() // the request is read
	if headerLines(r.Header) > p.st.cfg.Limits.MaxHeaders {
		// Only a request that came pipelined behind another, already
		// buffered and so not counted as it arrived, gets here.
		w.Header().Set("Connection", "close")
		http.Error(w, "nicproxy: request header has too many lines", http.StatusRequestHeaderFieldsTooLarge)
		return
	}
	if c.framing.mustClose(r) {
		// RFC 9112 §6.1: both Content-Length and Transfer-Encoding.
		w.Header().Set("Connection", "close")
	}
	// One access-log line per tunnel or forwarded request: each has its own
	// destination, rule and NIC, even on one keep-alive connection.
	rs := &session{
		srv: c.ss.srv, ctx: c.ss.ctx, st: p.st, listener: c.ss.listener,
		client: c.ss.client, from: c.ss.from, start: time.Now(), protocol: "http", hs: c.ss.hs,
		owner: c.ss,
	}
	if r.Method == http.MethodConnect {
		rs.protocol = "http-connect"
	}
	defer rs.logHandshake()

	if !rs.allowed() {
		rs.dest = r.Host
		rs.err = fmt.Errorf("client %s is not in allow: %w", rs.from.Addr(), errRejected)
		http.Error(w, "nicproxy: client not allowed", http.StatusForbidden)
		return
	}
	if viaLoop(r.Header) {
		rs.dest = r.Host
		rs.err = fmt.Errorf("the request's Via names %s: %w", viaToken, errLoop)
		http.Error(w, "nicproxy: loop: this request has already passed through nicproxy (Via)", http.StatusLoopDetected)
		return
	}
	if p.st.users.required() {
		user, ok := p.authenticate(r, rs.from)
		if !ok {
			rs.dest, rs.user = r.Host, user // the name tried, if any
			rs.err = errAuth
			w.Header().Set("Proxy-Authenticate", `Basic realm="nicproxy"`)
			http.Error(w, "nicproxy: proxy authentication required", http.StatusProxyAuthRequired)
			return
		}
		rs.user = user
	}
	switch {
	case r.Method == http.MethodConnect:
		p.tunnel(w, r, rs, c)
	case r.URL.IsAbs() && (r.URL.Scheme == "http" || r.URL.Scheme == "https"):
		if maxForwards(w, r) {
			rs.dest = r.URL.Host
			return
		}
		if hijacked := p.forward(w, r, rs); hijacked {
			// An upgraded (WebSocket) connection left net/http's hands:
			// to the relay, or closed by ReverseProxy. net/http will not
			// report it closed, so say so here.
			c.finish()
		}
	default:
		rs.err = fmt.Errorf("not a proxy request: %s %s", r.Method, r.URL.Redacted())
		http.Error(w, "nicproxy: this is a proxy; send absolute-URI or CONNECT requests", http.StatusBadRequest)
	}
}

// authenticate checks Basic proxy credentials. It returns the user name
// the client gave, right or wrong, so a failed login says whom it tried.
func (p *httpProxy) authenticate(r *http.Request, client netip.AddrPort) (string, bool) {
	scheme, encoded, ok := strings.Cut(r.Header.Get("Proxy-Authorization"), " ")
	if !ok || subtle.ConstantTimeCompare([]byte(strings.ToLower(scheme)), []byte("basic")) != 1 {
		return "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	if err != nil {
		return "", false
	}
	user, password, ok := strings.Cut(string(raw), ":")
	if !ok {
		return "", false
	}
	if !p.st.users.valid(client.Addr().Unmap(), user, password) {
		return user, false
	}
	return user, true
}

func (p *httpProxy) tunnel(w http.ResponseWriter, r *http.Request, rs *session, c *httpConn) {
	host, port, ok := connectTarget(r)
	if !ok {
		rs.dest, rs.err = r.RequestURI, fmt.Errorf("CONNECT wants host:port, not %q", r.RequestURI)
		http.Error(w, "nicproxy: "+rs.err.Error(), http.StatusBadRequest)
		return
	}
	up, err := rs.connect(rs.ctx, host, port)
	if err != nil {
		rs.err = err
		http.Error(w, "nicproxy: "+err.Error(), httpStatus(err))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		up.Release()
		rs.err = errors.New("connection cannot be hijacked")
		http.Error(w, "nicproxy: "+rs.err.Error(), http.StatusInternalServerError)
		return
	}
	_, brw, err := hj.Hijack()
	if err != nil {
		up.Close()
		up.Release()
		rs.err = err
		return
	}
	// net/http no longer owns the connection: the relay does once the
	// tunnel is handed off, and this handler until then. Either way the
	// session waiting in serve may go on.
	defer c.finish()
	if _, err := io.WriteString(c.ss.client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		up.Close()
		up.Release()
		rs.err = err
		c.ss.client.Close()
		return
	}
	var pending io.Reader
	if n := brw.Reader.Buffered(); n > 0 {
		pending = io.LimitReader(brw.Reader, int64(n))
	}
	rs.handOff(up, pending)
	if !rs.handedOff {
		c.ss.client.Close()
	}
}

// splitHostPort splits "host:port", or takes a bare host with defaultPort.
func splitHostPort(hostport string, defaultPort uint16) (string, uint16, error) {
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return strings.Trim(hostport, "[]"), defaultPort, nil
		}
		return "", 0, fmt.Errorf("bad host %q: %w", hostport, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("bad port in %q", hostport)
	}
	if host == "" {
		return "", 0, fmt.Errorf("no host in %q", hostport)
	}
	return host, uint16(port), nil
}

// connQueue is a net.Listener fed by the mixed-port sniffer: net/http
// serves connections it did not accept itself.
type connQueue struct {
	ch        chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newConnQueue() *connQueue {
	return &connQueue{ch: make(chan net.Conn), closed: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.closed:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closeOnce.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return &net.TCPAddr{} }
