package netlab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Web is a pair of HTTP servers in the upstream namespace, one plain and one
// over TLS, with the same handlers:
//
//	/whoami      "IP:PORT\n", the client address the server saw
//	/bytes?n=N   N bytes of the ExpectedBytes stream, with Content-Length
//	/echo        the request body back (chunked bodies too), header X-Seen: IP:PORT
//	/headers     the request headers received, one "Key: value" line each, sorted
//	/ws          an Upgrade endpoint: 101, "IP:PORT\n", then a raw byte echo
//
// Both speak HTTP/1.1 only (no HTTP/2 over TLS), so /ws can hijack on either.
type Web struct {
	HTTP  netip.AddrPort // plain HTTP on the lab's Server address
	HTTPS netip.AddrPort // HTTPS on the lab's Server address

	// CAFile is the PEM file of the HTTPS server's self-signed certificate
	// (valid for 198.51.100.10, web.test and localhost, for an hour), for
	// curl --cacert. CertPool holds the same certificate for Go clients.
	CAFile   string
	CertPool *x509.CertPool

	wg       sync.WaitGroup // the Serve goroutines
	handlers tracker        // handlers in flight, and hijacked connections
}

// MaxBytes is the largest n /bytes serves.
const MaxBytes = 1 << 30

// bytesSeed seeds the /bytes stream; any fixed value does.
var bytesSeed = [32]byte([]byte("nicproxy netlab /bytes stream v1"))

// ExpectedBytes is the first n bytes of the stream /bytes?n=N serves, for
// comparing a download byte-exact (by hash, say) without holding it.
func ExpectedBytes(n int64) io.Reader {
	return io.LimitReader(mrand.NewChaCha8(bytesSeed), n)
}

// StartWeb starts the Web servers on the lab's Server address and stops
// them when the test ends, waiting for every handler to return.
func (l *Lab) StartWeb() *Web {
	l.t.Helper()
	cert, certPEM, err := selfSigned()
	if err != nil {
		l.t.Fatalf("web server certificate: %v", err)
	}
	w := &Web{CertPool: x509.NewCertPool(), CAFile: filepath.Join(l.t.TempDir(), "web-ca.pem")}
	w.CertPool.AddCert(cert.Leaf)
	if err := os.WriteFile(w.CAFile, certPEM, 0o644); err != nil {
		l.t.Fatalf("write %s: %v", w.CAFile, err)
	}

	var plainLn, tlsLn net.Listener
	err = l.InUpstream(func() error {
		var err error
		if plainLn, err = net.Listen("tcp4", netip.AddrPortFrom(Server, 0).String()); err != nil {
			return err
		}
		if tlsLn, err = net.Listen("tcp4", netip.AddrPortFrom(Server, 0).String()); err != nil {
			plainLn.Close()
			return err
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("start web server: %v", err)
	}
	w.HTTP = plainLn.Addr().(*net.TCPAddr).AddrPort()
	w.HTTPS = tlsLn.Addr().(*net.TCPAddr).AddrPort()

	plain := w.newServer()
	secure := w.newServer()
	secure.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}

	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		_ = plain.Serve(plainLn)
	}()
	go func() {
		defer w.wg.Done()
		_ = secure.Serve(tls.NewListener(tlsLn, secure.TLSConfig))
	}()
	l.t.Cleanup(func() {
		plain.Close() // closes listeners and connections, not hijacked ones
		secure.Close()
		w.wg.Wait()
		w.handlers.closeAndWait()
	})
	return w
}

func (w *Web) newServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/whoami", whoami)
	mux.HandleFunc("/bytes", serveBytes)
	mux.HandleFunc("/zeros", serveZeros)
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("/headers", headers)
	mux.HandleFunc("/ws", w.upgrade)
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	return &http.Server{
		Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if !w.handlers.enter() {
				http.Error(rw, "shutting down", http.StatusServiceUnavailable)
				return
			}
			defer w.handlers.leave()
			mux.ServeHTTP(rw, r)
		}),
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // probes that hang up are not news
	}
}

func whoami(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, r.RemoteAddr+"\n")
}

// sizedBody reads n from the query and writes the headers of an n-byte
// body; false when n is bad (answered with 400) or no body is wanted (HEAD).
func sizedBody(w http.ResponseWriter, r *http.Request) (int64, bool) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 || n > MaxBytes {
		http.Error(w, fmt.Sprintf("want n=0..%d", MaxBytes), http.StatusBadRequest)
		return 0, false
	}
	w.Header().Set("X-Seen", r.RemoteAddr) // downloads prove their NIC as uploads do
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	return n, r.Method != http.MethodHead
}

func serveBytes(w http.ResponseWriter, r *http.Request) {
	n, ok := sizedBody(w, r)
	if !ok {
		return
	}
	// io.CopyN streams through a small buffer: N is never held in memory.
	_, _ = io.CopyN(w, ExpectedBytes(n), n)
}

// serveZeros sends n zero bytes as fast as the server can write them, for
// benchmarks where generating /bytes' stream would be the bottleneck.
func serveZeros(w http.ResponseWriter, r *http.Request) {
	n, ok := sizedBody(w, r)
	if !ok {
		return
	}
	zeros := make([]byte, 256<<10)
	for n > 0 {
		chunk := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:chunk]); err != nil {
			return
		}
		n -= chunk
	}
}

func echo(w http.ResponseWriter, r *http.Request) {
	// Stream: reading the body while the response is being written needs
	// full duplex on HTTP/1.
	_ = http.NewResponseController(w).EnableFullDuplex()
	// One connection per upload: a connection a proxy kept alive would
	// acknowledge the response's last segment up to 40 ms later (delayed
	// ACK), and that frame would land in the next flow's count, perhaps of
	// the other NIC. Closing makes the client's side send its last frames
	// as it finishes.
	w.Header().Set("Connection", "close")
	w.Header().Set("X-Seen", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/octet-stream")
	if r.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(r.ContentLength, 10))
	}
	_, _ = io.Copy(w, r.Body)
}

// headers lists the request's headers as Go's server received them, plus
// Host (which Go keeps in r.Host) and Transfer-Encoding (r.TransferEncoding).
func headers(w http.ResponseWriter, r *http.Request) {
	var lines []string
	for key, values := range r.Header {
		for _, v := range values {
			lines = append(lines, key+": "+v)
		}
	}
	lines = append(lines, "Host: "+r.Host)
	for _, te := range r.TransferEncoding {
		lines = append(lines, "Transfer-Encoding: "+te)
	}
	slices.Sort(lines)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, strings.Join(lines, "\n")+"\n")
}

// upgrade is a minimal WebSocket-style endpoint. It does not parse frames:
// after the 101 and the "IP:PORT\n" line it echoes raw bytes until EOF, which
// is enough to prove a proxy relays an upgraded connection both ways.
func (web *Web) upgrade(w http.ResponseWriter, r *http.Request) {
	proto, _, _ := strings.Cut(r.Header.Get("Upgrade"), ",")
	proto = strings.TrimSpace(proto)
	if proto == "" || !hasToken(r.Header.Values("Connection"), "upgrade") {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "want Connection: Upgrade and an Upgrade token", http.StatusUpgradeRequired)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	if !web.handlers.hijacked(conn) {
		return
	}
	defer web.handlers.released(conn)

	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + proto + "\r\nConnection: Upgrade\r\n"
	if key := r.Header.Get("Sec-WebSocket-Key"); key != "" {
		resp += "Sec-WebSocket-Accept: " + websocketAccept(key) + "\r\n"
	}
	resp += "\r\n" + r.RemoteAddr + "\n"
	if _, err := io.WriteString(conn, resp); err != nil {
		return
	}
	// Bytes the client sent right behind the request sit in rw.Reader.
	_, _ = io.Copy(conn, rw.Reader)
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// websocketAccept is Sec-WebSocket-Accept for key (RFC 6455 section 4.2.2).
func websocketAccept(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// hasToken reports whether comma-separated header values hold token, in
// any case.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// selfSigned makes a P-256 certificate for the Web server, valid for an hour.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "web.test", Organization: []string{"nicproxy netlab"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own trust anchor, as httptest's is
		IPAddresses:           []net.IP{Server.AsSlice()},
		DNSNames:              []string{"web.test", "localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// tracker counts goroutines in flight so a server can wait for all of them
// on shutdown, and holds connections it must close itself (hijacked ones,
// which http.Server.Close leaves alone).
type tracker struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
	conns  map[net.Conn]struct{}
}

// enter registers one goroutine; false once the tracker is closed.
func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1) // never concurrent with Wait: closeAndWait sets closed first
	return true
}

func (t *tracker) leave() { t.wg.Done() }

// hijacked registers conn for closing on shutdown; false if already shut.
func (t *tracker) hijacked(conn net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.conns == nil {
		t.conns = make(map[net.Conn]struct{})
	}
	t.conns[conn] = struct{}{}
	return true
}

func (t *tracker) released(conn net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, conn)
}

// closeAndWait refuses new goroutines, closes the registered connections
// and waits for every goroutine registered to leave.
func (t *tracker) closeAndWait() {
	t.mu.Lock()
	t.closed = true
	for conn := range t.conns {
		conn.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}
