package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"nicproxy/proxy/router"
	"nicproxy/proxy/upstream"
)

// isUpgrade reports whether r asks to switch protocols (WebSocket, h2c…)
// and has no body, which is how such requests come: one with a body goes
// through ReverseProxy, which handles both.
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" &&
		hasToken(r.Header.Values("Connection"), "upgrade") &&
		r.ContentLength == 0 && len(r.TransferEncoding) == 0
}

// hasToken reports whether a comma-separated header's values name token.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1 and the proxy
// ones a forward proxy consumes; the upgrade adds back its own two.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// upgrade forwards a request to switch protocols on an upstream connection
// of its own. When the origin answers 101, the client's and the origin's
// TCP connections go to the relay, as a CONNECT tunnel's do: spliced, with
// no deadline call per read and write and no goroutine of net/http's, and
// counted as a tunnel. (ReverseProxy would copy every upgraded byte through
// user space for the life of the connection.) Any other answer is passed
// on, and the client's connection stays with net/http. It reports whether
// the client connection left net/http.
func (p *httpProxy) upgrade(w http.ResponseWriter, r *http.Request, rs *session, d router.Decision, host string, port uint16) (hijacked bool) {
	start := time.Now()
	up, err := p.st.dialer.Dial(r.Context(), "tcp", d, rs.from, upstream.Target{Host: host, Port: port, Addr: d.Addr})
	if err != nil {
		rs.nic, rs.err = failedNIC(err), err
		p.report.Dialed(rs.nic, resultOf(err), time.Since(start))
		http.Error(w, "nicproxy: "+err.Error(), httpStatus(err))
		return false
	}
	rs.nic = up.NIC
	p.report.Dialed(up.NIC, resultOf(nil), time.Since(start))
	handedOff := false
	defer func() {
		if !handedOff {
			up.Close()
		}
	}()

	// The request line, headers and the response's head cross the NIC
	// here; what follows the 101, in the relay.
	counted := &countedConn{Conn: up.Conn}
	tally := func() { rs.up, rs.down = counted.up.Load(), counted.down.Load() }
	defer func() {
		if !handedOff {
			tally()
		}
	}()
	_ = up.SetDeadline(time.Now().Add(p.st.cfg.Timeouts.Idle))
	out := upgradeRequest(r)
	limits := p.st.cfg.Limits
	head := &headLimit{r: counted, max: int64(limits.MaxHeaderBytes)}
	br := bufio.NewReader(head)
	resp, err := exchange(counted, br, out, limits.MaxHeaders)
	if err != nil {
		rs.err = fmt.Errorf("upgrade %s via %s: %w", rs.dest, up.NIC, err)
		// What the origin sent is not all read: the client's connection
		// cannot be trusted to line up with a next request either.
		w.Header().Set("Connection", "close")
		http.Error(w, "nicproxy: "+rs.err.Error(), http.StatusBadGateway)
		return false
	}
	head.lift()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// Refused (401, 426…): the answer goes back as any response does.
		defer resp.Body.Close()
		copyEndToEnd(w.Header(), resp.Header)
		w.WriteHeader(resp.StatusCode)
		if _, err := io.Copy(w, resp.Body); err != nil {
			rs.err = fmt.Errorf("response from %s: %w", rs.dest, err)
		}
		return false
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), out.Header.Get("Upgrade")) {
		rs.err = fmt.Errorf("%s switched to %q, not the %q asked for", rs.dest, resp.Header.Get("Upgrade"), out.Header.Get("Upgrade"))
		http.Error(w, "nicproxy: "+rs.err.Error(), http.StatusBadGateway)
		return false
	}

	_, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		rs.err = err
		return false
	}
	// net/http no longer owns the client: the relay does from handOff.
	var answer bytes.Buffer
	fmt.Fprintf(&answer, "HTTP/1.1 101 %s\r\n", http.StatusText(http.StatusSwitchingProtocols))
	_ = resp.Header.Write(&answer)
	answer.WriteString("\r\n")
	// The origin's first bytes after its 101 may already sit in br.
	if n := br.Buffered(); n > 0 {
		_, _ = io.CopyN(&answer, br, int64(n))
	}
	_ = up.SetDeadline(time.Time{})
	if _, err := rs.client.Write(answer.Bytes()); err != nil {
		rs.err = err
		rs.client.Close()
		return true
	}
	var pending io.Reader
	if n := brw.Reader.Buffered(); n > 0 {
		pending = io.LimitReader(brw.Reader, int64(n))
	}
	tally() // before the relay adds to the counts
	handedOff = true
	rs.handOff(up, pending)
	if !rs.handedOff {
		rs.client.Close()
	}
	return true
}

// upgradeRequest is r as the origin gets it: origin-form, its end-to-end
// headers and the upgrade's two, and Via.
func upgradeRequest(r *http.Request) *http.Request {
	out := r.Clone(r.Context())
	out.Header = r.Header.Clone()
	copyEndToEnd(out.Header, nil)
	out.Header.Set("Connection", "Upgrade")
	out.Header.Set("Upgrade", r.Header.Get("Upgrade"))
	out.Header.Add("Via", fmt.Sprintf("%d.%d %s", r.ProtoMajor, r.ProtoMinor, viaToken))
	if _, ok := r.Header["User-Agent"]; !ok {
		out.Header.Set("User-Agent", "") // Request.Write would send Go's own
	}
	out.Host = r.Host
	out.Body, out.ContentLength, out.Close = http.NoBody, 0, false
	return out
}

// exchange writes req and reads the origin's answer, skipping informational
// ones other than 101: at most MaxInformational of them, and each answer
// with at most maxLines header lines. br bounds the heads' bytes.
func exchange(conn net.Conn, br *bufio.Reader, req *http.Request, maxLines int) (*http.Response, error) {
	if err := req.Write(conn); err != nil {
		return nil, err
	}
	for interim := 0; ; interim++ {
		if interim > MaxInformational {
			return nil, fmt.Errorf("%w: more than %d informational (1xx) responses", errOriginHead, MaxInformational)
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		if err := checkResponseHead(resp, maxLines); err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

// copyEndToEnd copies src's end-to-end headers into dst, and drops from dst
// the hop-by-hop ones and those its Connection header names (src nil: only
// the dropping).
func copyEndToEnd(dst, src http.Header) {
	for k, vv := range src {
		for _, v := range vv {
			dst.Add(k, v)
		}
	}
	for _, v := range dst.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				dst.Del(name)
			}
		}
	}
	for _, h := range hopHeaders {
		dst.Del(h)
	}
}

// countedConn counts the bytes of an upgrade's handshake.
type countedConn struct {
	net.Conn
	up, down atomic.Int64
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.down.Add(int64(n))
	return n, err
}

func (c *countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.up.Add(int64(n))
	return n, err
}
