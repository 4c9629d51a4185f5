package proxy

import (
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
)

// What RFC 9110 and 9112 ask of a proxy beyond what net/http and
// httputil.ReverseProxy already do.

// viaToken is what nicproxy adds to Via on forwarded requests; a request
// that already carries it has come round through nicproxy (RFC 9110 §7.6.3).
const viaToken = "nicproxy"

// viaLoop reports whether a request's Via names nicproxy.
func viaLoop(h http.Header) bool {
	for _, v := range h.Values("Via") {
		for _, hop := range strings.Split(v, ",") {
			fields := strings.Fields(hop)
			if len(fields) >= 2 && strings.EqualFold(fields[1], viaToken) {
				return true
			}
		}
	}
	return false
}

// connectTarget reads a CONNECT request's target, which must be
// authority-form, host and port (RFC 9110 §9.3.6): no path, no default
// port.
func connectTarget(r *http.Request) (string, uint16, bool) {
	target := r.RequestURI
	host, portText, err := net.SplitHostPort(target)
	if err != nil || host == "" || strings.ContainsAny(target, "/?#@") {
		return "", 0, false
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return "", 0, false
	}
	return host, uint16(port), true
}

// maxForwards handles Max-Forwards on TRACE and OPTIONS (RFC 9110 §7.6.2):
// at 0 the proxy answers itself; otherwise the value is decremented. It
// reports whether it answered.
func maxForwards(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodTrace && r.Method != http.MethodOptions {
		return false
	}
	v := r.Header.Get("Max-Forwards")
	if v == "" {
		return false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 31)
	if err != nil {
		return false // not a number: the header is ignored
	}
	if n > 0 {
		r.Header.Set("Max-Forwards", strconv.FormatUint(n-1, 10))
		return false
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Allow", "CONNECT, GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return true
	}
	// TRACE echoes the request as received, less what RFC 9110 §9.3.8
	// says to leave out: credentials and cookies.
	echo := r.Clone(r.Context())
	for _, h := range []string{"Proxy-Authorization", "Authorization", "Cookie"} {
		echo.Header.Del(h)
	}
	echo.Body = nil
	dump, err := httputil.DumpRequest(echo, false)
	if err != nil {
		http.Error(w, "nicproxy: "+err.Error(), http.StatusBadRequest)
		return true
	}
	w.Header().Set("Content-Type", "message/http")
	w.Header().Set("Content-Length", strconv.Itoa(len(dump)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(dump)
	return true
}

// framingScan watches the header section of each request as its bytes
// arrive, for two things net/http does not do. It counts the header
// lines, so a request over limits.max_headers is refused before net/http
// parses it: 9,000 empty headers (54 KB) cost about 2 MB once in
// net/http's map and ReverseProxy's copy of it. And it tells whether the
// request carried both Content-Length and Transfer-Encoding. net/http
// rightly lets Transfer-Encoding win and deletes Content-Length, but RFC
// 9112 §6.1 then asks the server to close the connection after
// responding: a proxy in front of nicproxy may have framed the request by
// Content-Length, and what follows the body would be read as a smuggled
// request. The scan holds a few bytes of state, never the header.
type framingScan struct {
	mu       sync.Mutex
	scanning bool // inside a header section
	started  bool // the request line has begun
	lineLen  int
	name     [len("transfer-encoding")]byte
	nameLen  int
	nameDone bool
	cl, te   bool
	lines    int  // header lines so far, the request line not counted
	done     bool // a header section was scanned whole and not yet taken
}

// start begins a new request's header section.
func (f *framingScan) start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scanning, f.started, f.done = true, false, false
	f.lineLen, f.nameLen, f.nameDone = 0, 0, false
	f.cl, f.te, f.lines = false, false, 0
}

// feed scans bytes read from the client. It reports the header lines
// counted so far in the request being read.
func (f *framingScan) feed(b []byte) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range b {
		if !f.scanning {
			return f.lines
		}
		switch c {
		case '\r':
			continue
		case '\n':
			if f.lineLen == 0 && f.started {
				f.scanning, f.done = false, true // end of the header section
			}
			if f.lineLen > 0 && f.started {
				f.lines++
			}
			f.started = f.started || f.lineLen > 0
			f.lineLen, f.nameLen, f.nameDone = 0, 0, false
			continue
		}
		f.lineLen++
		if f.nameDone {
			continue
		}
		switch {
		case c == ':':
			f.nameDone = true
			switch string(f.name[:f.nameLen]) {
			case "content-length":
				f.cl = true
			case "transfer-encoding":
				f.te = true
			}
		case c == ' ' || c == '\t' || f.nameLen == len(f.name):
			f.nameDone = true
		default:
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			f.name[f.nameLen] = c
			f.nameLen++
		}
	}
	return f.lines
}

// take reports, for the request just read, whether its header section was
// scanned and whether it had both framing headers; the next request needs
// a scan of its own.
func (f *framingScan) take() (scanned, both bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	scanned, both = f.done, f.cl && f.te
	f.done, f.cl, f.te = false, false, false
	return scanned, both
}

// mustClose reports whether the connection must close after this request:
// it had both Content-Length and Transfer-Encoding, or it was chunked and
// its header was not scanned (it came pipelined behind another request,
// already buffered), so nothing says it did not.
func (f *framingScan) mustClose(r *http.Request) bool {
	scanned, both := f.take()
	return both || !scanned && len(r.TransferEncoding) > 0
}
