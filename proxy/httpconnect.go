package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"nicproxy/proxy/sniff"
)

// connectPrefix is how a CONNECT request starts.
const connectPrefix = "CONNECT "

// startsWithConnect reports whether the client's first bytes, already
// queued, are a CONNECT request line. Anything else (or a request line
// still on its way) goes to net/http.
// peeked is what the listener's own peek found, if it looked.
func startsWithConnect(conn *net.TCPConn, peeked []byte) bool {
	if len(peeked) == 0 {
		var buf [len(connectPrefix)]byte
		_, n, err := sniff.Peek(conn, buf[:])
		if err != nil {
			return false
		}
		peeked = buf[:n]
	}
	return string(peeked) == connectPrefix
}

// serveConnect serves a connection whose first request is CONNECT, which is
// how browsers and most clients use an HTTP proxy: one CONNECT per
// connection, then a tunnel. It reads the request with net/http's own
// parser (http.ReadRequest, bounded by limits.max_header_bytes) on the
// goroutine that accepted the client, and answers it with ServeHTTP, the
// same handler net/http calls, through a ResponseWriter of its own. So a
// tunnel costs no net/http server goroutine, connection state or buffers,
// and nothing is handed between goroutines before the dial.
//
// Any answer but a tunnel closes the connection (Connection: close): a
// client told 407 opens a new connection with its credentials, as it may.
func (p *httpProxy) serveConnect(ss *session) {
	ss.protocol = "http-connect"
	c := &httpConn{TCPConn: ss.client, ss: ss, done: make(chan struct{})}
	defer c.finish()

	// net/http allows 4 KiB for the request line beyond MaxHeaderBytes.
	limit := &io.LimitedReader{R: ss.client, N: int64(p.st.cfg.Limits.MaxHeaderBytes) + 4096}
	// Its lines are counted as they arrive, against limits.max_headers,
	// before ReadRequest builds its map of them.
	c.framing.start()
	br := requestReaders.Get().(*bufio.Reader)
	br.Reset(&lineLimit{r: limit, scan: &c.framing, max: p.st.cfg.Limits.MaxHeaders})
	// Nothing holds br once ServeHTTP has returned: a tunnel's pending
	// bytes were copied upstream before its hand-off.
	defer func() {
		br.Reset(nil)
		requestReaders.Put(br)
	}()
	r, err := http.ReadRequest(br)
	if err != nil {
		w := newConnectWriter(c, br)
		switch {
		case errors.Is(err, errTooManyHeaders):
			ss.err = fmt.Errorf("request header over limits.max_headers (%d lines)", p.st.cfg.Limits.MaxHeaders)
			http.Error(w, "nicproxy: request header has too many lines", http.StatusRequestHeaderFieldsTooLarge)
		case limit.N == 0:
			ss.err = fmt.Errorf("request header over limits.max_header_bytes (%d)", p.st.cfg.Limits.MaxHeaderBytes)
			http.Error(w, "nicproxy: request header too large", http.StatusRequestHeaderFieldsTooLarge)
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isTimeout(err):
			return // the client left or stalled mid-request: nothing to answer
		default:
			ss.err = fmt.Errorf("bad request: %w", err)
			http.Error(w, "nicproxy: bad request", http.StatusBadRequest)
		}
		w.flush()
		ss.logHandshake()
		return
	}
	r = r.WithContext(context.WithValue(ss.ctx, httpConnKey{}, c))
	r.RemoteAddr = ss.from.String()
	w := newConnectWriter(c, br)
	p.ServeHTTP(w, r)
	if !w.hijacked {
		w.flush()
	}
}

// lineLimit fails a read once the header it scans has more than max lines.
type lineLimit struct {
	r    io.Reader
	scan *framingScan
	max  int
}

func (l *lineLimit) Read(b []byte) (int, error) {
	n, err := l.r.Read(b)
	if n > 0 && l.scan.feed(b[:n]) > l.max {
		return 0, errTooManyHeaders
	}
	return n, err
}

// requestReaders hold a CONNECT request while it is read.
var requestReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// connectWriter is the http.ResponseWriter and http.Hijacker serveConnect
// hands ServeHTTP. An answer other than a tunnel is buffered and written
// whole by flush, with its length and Connection: close.
type connectWriter struct {
	c        *httpConn
	br       *bufio.Reader
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
}

func newConnectWriter(c *httpConn, br *bufio.Reader) *connectWriter {
	return &connectWriter{c: c, br: br, header: http.Header{}}
}

func (w *connectWriter) Header() http.Header { return w.header }

func (w *connectWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *connectWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// Hijack hands over the client connection and the reader that holds any
// bytes the client sent after its request.
func (w *connectWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.status != 0 {
		return nil, nil, errors.New("hijack after a response was written")
	}
	w.hijacked = true
	// Past the handshake the tunnel has no header limit.
	// The tunnel writes to the conn itself; the writer is there for the
	// interface, as small as bufio allows.
	return w.c.TCPConn, bufio.NewReadWriter(w.br, bufio.NewWriterSize(w.c.TCPConn, 16)), nil
}

// flush writes the buffered answer, which ends the connection.
func (w *connectWriter) flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.header.Set("Content-Length", strconv.Itoa(w.body.Len()))
	w.header.Set("Connection", "close")
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %d %s\r\n", w.status, http.StatusText(w.status))
	_ = w.header.Write(&out)
	out.WriteString("\r\n")
	out.Write(w.body.Bytes())
	_ = w.c.TCPConn.SetWriteDeadline(time.Now().Add(w.c.ss.st.cfg.Timeouts.Handshake))
	_, _ = w.c.TCPConn.Write(out.Bytes())
}
