package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"sync/atomic"
)

// Bounds on what one HTTP message may make nicproxy hold, whoever sent it.
// Request headers are held to limits.max_header_bytes by net/http itself
// and to limits.max_headers by headScan below; an origin's response is
// held to the same two numbers here, and to MaxInformational interim
// responses before its final one.

// MaxInformational is how many 1xx responses (other than 101) an origin
// may send before its final answer; past it the client gets 502. One 100 Continue and a 103 Early Hints
// or two is what real servers send; an endless stream of them would
// otherwise keep the exchange, and a CPU, busy for ever.
const MaxInformational = 5

// errOriginHead is an origin's response head that broke a bound: too many
// bytes, lines or interim responses. The client gets 502.
var errOriginHead = errors.New("origin's response head is over nicproxy's limits")

// headLimit reads an origin's response heads (the interim ones and the
// final one together) through at most max bytes, then lets the body
// through unbounded once lift is called: the bound is on what is parsed
// into headers, which net/http's textproto reads line by line with no
// limit of its own.
type headLimit struct {
	r    io.Reader
	max  int64 // bytes the heads may take
	used int64
	open bool // lifted: the head has been read
}

func (h *headLimit) Read(b []byte) (int, error) {
	if h.open {
		return h.r.Read(b)
	}
	if h.used >= h.max {
		return 0, fmt.Errorf("%w: more than %d bytes of header", errOriginHead, h.max)
	}
	if left := h.max - h.used; int64(len(b)) > left {
		b = b[:left]
	}
	n, err := h.r.Read(b)
	h.used += int64(n)
	return n, err
}

// lift ends the bound: what follows is the body (or, after a 101, the new
// protocol).
func (h *headLimit) lift() { h.open = true }

// headerLines counts a parsed header's lines (one per value).
func headerLines(h http.Header) int {
	n := 0
	for _, vv := range h {
		n += len(vv)
	}
	return n
}

// headerSize is about the bytes a header took on the wire.
func headerSize(h textproto.MIMEHeader) int {
	n := 0
	for k, vv := range h {
		for _, v := range vv {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n
}

// interimBudget bounds one forwarded exchange's 1xx responses, in count and
// in header bytes, for the transport's Got1xxResponse hook. ReverseProxy
// passes each 1xx on to the client, and so makes the transport reset its
// header byte limit after each one: without this, an origin could send
// them for ever.
type interimBudget struct {
	count    atomic.Int32
	bytes    atomic.Int64
	maxBytes int64
	maxLines int
}

// got is the Got1xxResponse hook: an error ends the exchange with 502.
func (b *interimBudget) got(code int, h textproto.MIMEHeader) error {
	if code == http.StatusSwitchingProtocols {
		return nil
	}
	if n := b.count.Add(1); n > MaxInformational {
		return fmt.Errorf("%w: more than %d informational (1xx) responses", errOriginHead, MaxInformational)
	}
	if lines := headerLines(http.Header(h)); lines > b.maxLines {
		return fmt.Errorf("%w: a %d response with %d header lines (limit %d)", errOriginHead, code, lines, b.maxLines)
	}
	if n := b.bytes.Add(int64(headerSize(h) + len("HTTP/1.1 100 Continue\r\n\r\n"))); n > b.maxBytes {
		return fmt.Errorf("%w: informational responses of more than %d bytes", errOriginHead, b.maxBytes)
	}
	return nil
}

// checkResponseHead holds a final response's parsed header to
// limits.max_headers (its bytes are bounded before parsing).
func checkResponseHead(resp *http.Response, maxLines int) error {
	if lines := headerLines(resp.Header); lines > maxLines {
		return fmt.Errorf("%w: %d header lines (limit %d)", errOriginHead, lines, maxLines)
	}
	return nil
}
