package admin

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"nicproxy/config"
)

// statusPage is the self-contained status page: it polls /api/status.
//
//go:embed status.html
var statusPage string

// Endpoint is admin.addr open: the status page (/), /api/status,
// /metrics, /healthz and /proxy.pac.
type Endpoint struct {
	addr netip.AddrPort // as configured
	ln   net.Listener
	http *http.Server
}

// Listen opens addr for a's handler; nothing is served until Serve.
func (a *Admin) Listen(ctx context.Context, addr netip.AddrPort, log *zap.Logger) (*Endpoint, error) {
	network := "tcp6"
	switch {
	case addr.Addr().Is4():
		network = "tcp4"
	case addr.Addr().IsUnspecified():
		network = "tcp"
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("listen admin %s: %w", addr, err)
	}
	return &Endpoint{
		addr: addr,
		ln:   ln,
		http: &http.Server{
			Handler:           a.Handler(addr.Addr()),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          zap.NewStdLog(log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))),
		},
	}, nil
}

// Configured is the address the configuration gave.
func (e *Endpoint) Configured() netip.AddrPort { return e.addr }

// Addr is the address the endpoint listens on (the port chosen, for :0).
func (e *Endpoint) Addr() net.Addr { return e.ln.Addr() }

// Serve serves until Close.
func (e *Endpoint) Serve() { _ = e.http.Serve(e.ln) }

// Close stops serving and closes the listener and every admin connection.
func (e *Endpoint) Close() {
	_ = e.http.Close()
	e.ln.Close()
}

// Handler serves the admin endpoints for a listener on listen.
func (a *Admin) Handler(listen netip.Addr) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		_, _ = io.WriteString(w, statusPage)
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.Report(time.Now()))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /proxy.pac", func(w http.ResponseWriter, r *http.Request) {
		script, ok := pacScript(a.src.Config().Listeners, r.Host)
		if !ok {
			http.Error(w, "nicproxy: no mixed or http listener to point browsers at", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
		_, _ = io.WriteString(w, script)
	})
	return hostGuard(listen, a.src.IsLocal, mux)
}

// hostGuard answers only requests addressed to localhost or to an address
// the endpoint listens on (for a wildcard listener, any of the host's own
// addresses), never 0.0.0.0 or ::. A page the user browses through the
// proxy could otherwise rebind its own name to 127.0.0.1 and read the
// status API, which lists destinations and users, as same-origin (DNS
// rebinding); 0.0.0.0 reaches the host on Linux, and browsers have let
// pages use it.
func hostGuard(listen netip.Addr, isLocal func(netip.Addr) bool, next http.Handler) http.Handler {
	listen = listen.Unmap()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.Trim(host, "[]")
		ok := strings.EqualFold(host, "localhost")
		if a, err := netip.ParseAddr(host); err == nil {
			a = a.Unmap()
			ok = !a.IsUnspecified() && (a == listen || listen.IsUnspecified() && isLocal(a))
		}
		if !ok {
			http.Error(w, "nicproxy: the admin endpoint answers requests to localhost or the address it listens on only", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pacScript points browsers at the first mixed or http listener. A listener
// on every address is named by the host the browser fetched the PAC from.
// There is no DIRECT fallback: when nicproxy is down, browsing fails rather
// than leaving through whatever NIC the routing table prefers.
func pacScript(listeners []config.Listener, requestHost string) (string, bool) {
	for _, l := range listeners {
		if l.Protocol != config.ProtocolMixed && l.Protocol != config.ProtocolHTTP {
			continue
		}
		host := l.Addr.Addr().String()
		if l.Addr.Addr().IsUnspecified() {
			if h, _, err := net.SplitHostPort(requestHost); err == nil {
				host = h
			} else {
				host = strings.Trim(requestHost, "[]")
			}
		}
		proxy := net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(int(l.Addr.Port())))
		return fmt.Sprintf(`// nicproxy: send everything through %[1]s, pinned to its NIC.
function FindProxyForURL(url, host) {
  // This host's own names and addresses never leave it.
  if (host == "localhost" || shExpMatch(host, "127.*") || host == "::1" || host == "[::1]")
    return "DIRECT";
  return "PROXY %[1]s";
}
`, proxy), true
	}
	return "", false
}
