// Package proxy serves clients: listeners, the SOCKS5, SOCKS4a and HTTP
// protocols, and the relay to the upstream connection the router and the
// pinned dialers chose. Every connection it opens toward a destination goes
// through upstream.Dialer, which never dials unpinned unless told to.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"nicproxy/bind"
	"nicproxy/config"
	"nicproxy/proxy/relay"
	"nicproxy/proxy/router"
	"nicproxy/proxy/upstream"
)

// Server serves every listener of one configuration.
type Server struct {
	log *zap.Logger

	state atomic.Pointer[state] // swapped whole by a reload

	slots   chan struct{} // one per open client connection (limits.max_connections)
	sweeper *relay.IdleSweeper

	mu        sync.Mutex
	listeners []*listener
	conns     sync.WaitGroup // every client connection being served
}

// state is everything derived from one configuration. A connection takes
// the current state when it is accepted and keeps it to the end, so a
// reload never changes the rules under an open connection.
type state struct {
	cfg    *config.Config
	router *router.Router
	dialer *upstream.Dialer
	users  *users
	socks5 *socks5Server
	http   *httpProxy
}

// Options are the host services a Server uses.
type Options struct {
	// Links reports NIC state; nil asks the kernel on each dial.
	Links bind.Links
	// Resolver serves dst rules that meet a name; nil: the system resolver.
	Resolver router.Resolver
}

// New builds a Server for cfg. It opens nothing until Serve.
func New(cfg *config.Config, log *zap.Logger, opts Options) *Server {
	s := &Server{
		log:     log,
		slots:   make(chan struct{}, cfg.Limits.MaxConnections),
		sweeper: relay.NewIdleSweeper(cfg.Timeouts.Idle),
	}
	s.state.Store(s.newState(cfg, opts))
	return s
}

func (s *Server) newState(cfg *config.Config, opts Options) *state {
	dialer := upstream.New(cfg, opts.Links)
	resolvers := func(via config.Via) router.Resolver { return dstResolver(via, dialer) }
	if opts.Resolver != nil {
		resolvers = func(config.Via) router.Resolver { return opts.Resolver }
	}
	st := &state{
		cfg:    cfg,
		router: router.NewWithResolvers(cfg, resolvers),
		dialer: dialer,
		users:  newUsers(cfg.Users),
	}
	st.socks5 = newSOCKS5Server(s, st)
	st.http = newHTTPProxy(s, st)
	return st
}

// dstResolver is the resolver a dst rule uses to look a name up before the
// flow is dialed: through the rule's first NIC that is present and up, the
// NIC the flow takes when the rule matches, so the query never leaves
// through whatever NIC the routing table prefers. Only `system` resolves
// unpinned. (For a balance, the balancer's pick is not known yet; its
// first available NIC asks.)
func dstResolver(via config.Via, dialer *upstream.Dialer) router.Resolver {
	if via.Mode == config.ViaSystem || len(via.NICs) == 0 {
		return net.DefaultResolver
	}
	for _, nic := range via.NICs {
		if dialer.Available(nic) {
			return dialer.Resolver(nic)
		}
	}
	return dialer.Resolver(via.NICs[0]) // fails: the name then matches no dst rule
}

// listener is one open listening socket and the config entry behind it.
type listener struct {
	config.Listener
	ln *net.TCPListener
}

// Listen opens every listener of the configuration; nothing is served yet.
// A listener that cannot be opened is an error naming its address.
func (s *Server) Listen(ctx context.Context) error {
	cfg := s.state.Load().cfg
	var lc net.ListenConfig
	for _, l := range cfg.Listeners {
		network := "tcp4"
		if l.Addr.Addr().Is6() {
			network = "tcp" // [::]:port also takes IPv4 clients
			if !l.Addr.Addr().IsUnspecified() {
				network = "tcp6"
			}
		}
		ln, err := lc.Listen(ctx, network, l.Addr.String())
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s (%s): %w", l.Name, l.Addr, err)
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, &listener{Listener: l, ln: ln.(*net.TCPListener)})
		s.mu.Unlock()
	}
	return nil
}

// Addrs returns the bound address of each listener, in config order
// (useful when a config asks for port 0).
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	var addrs []netip.AddrPort
	for _, l := range s.listeners {
		addrs = append(addrs, l.ln.Addr().(*net.TCPAddr).AddrPort())
	}
	return addrs
}

// Serve accepts on every listener until ctx ends, then stops accepting and
// lets open connections finish for up to timeouts.shutdown before closing
// them. It returns when every connection has ended.
func (s *Server) Serve(ctx context.Context) error {
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	defer stopSweep()
	go s.sweeper.Run(sweepCtx)

	st := s.state.Load()
	st.http.start()
	defer st.http.close()

	s.mu.Lock()
	listeners := s.listeners
	s.mu.Unlock()
	// Connections get their own context: ending ctx stops accepting, while
	// open connections are only cut when the grace period runs out.
	connCtx, cutConns := context.WithCancel(context.Background())
	defer cutConns()
	var accepting sync.WaitGroup
	for _, l := range listeners {
		accepting.Add(1)
		go func() {
			defer accepting.Done()
			s.accept(connCtx, l)
		}()
	}

	<-ctx.Done()
	s.closeListeners()
	accepting.Wait()

	grace := st.cfg.Timeouts.Shutdown
	graceCtx, cancelGrace := context.WithTimeout(context.Background(), grace)
	defer cancelGrace()
	// Idle keep-alive HTTP clients are closed now; busy ones finish their
	// request first.
	go func() { _ = st.http.server.Shutdown(graceCtx) }()
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-graceCtx.Done():
		s.log.Warn("shutdown grace period over: closing open connections", zap.Duration("grace", grace))
		cutConns()
		<-done
	}
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		l.ln.Close()
	}
}

func (s *Server) accept(ctx context.Context, l *listener) {
	var backoff time.Duration
	for {
		conn, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors and the like: back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", zap.String("listener", l.Name), zap.Error(err), zap.Duration("retry_in", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		select {
		case s.slots <- struct{}{}:
		default:
			// Over limits.max_connections: refuse at once rather than queue.
			s.log.Warn("connection limit reached: refusing client",
				zap.Stringer("client", conn.RemoteAddr()), zap.Int("max_connections", cap(s.slots)))
			conn.SetLinger(0)
			conn.Close()
			continue
		}
		s.conns.Add(1)
		go func() {
			defer func() {
				<-s.slots
				s.conns.Done()
			}()
			s.serveConn(ctx, l.Listener, conn)
		}()
	}
}
