// Package proxy serves clients: listeners, the SOCKS5, SOCKS4a and HTTP
// protocols, and the relay to the upstream connection the router and the
// pinned dialers chose. Every connection it opens toward a destination goes
// through upstream.Dialer, which never dials unpinned unless told to.
package proxy

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"nicproxy/bind"
	"nicproxy/config"
	"nicproxy/proxy/admin"
	"nicproxy/proxy/relay"
	"nicproxy/proxy/router"
	"nicproxy/proxy/upstream"
)

// Server serves the listeners of a configuration, and of each configuration
// Reload hands it after that.
type Server struct {
	log  *zap.Logger
	opts Options

	state   atomic.Pointer[state] // swapped whole by Reload
	active  atomic.Int64          // open client connections, for limits.max_connections
	hs      *gate                 // clients in their handshake, for limits.max_handshakes
	local   *hostAddrs            // the host's own addresses, for loops and local_destinations
	auth    *authGuard            // bcrypt bound and failed logins per address, across reloads
	sweeper *relay.IdleSweeper
	ops     *admin.Admin // metrics and the status page
	report  reporter     // ops, as sessions see it
	health  *health
	// udpLookups holds a token per UDP name being decided, across every
	// association (maxLookupsTotal).
	udpLookups chan struct{}

	clientsMu sync.Mutex
	clients   *clients // who local clients are; nil until a configuration needs it

	// reloading makes reloads one at a time, so that one can build its
	// state (bcrypt, resolvers) before it takes mu, which every dial to a
	// local address takes too (Addrs).
	reloading sync.Mutex

	mu        sync.Mutex
	listeners map[string]*listener // by listen address
	serving   *serving             // set while Serve runs
	retired   []*state             // replaced by Reload; their HTTP servers drain
	admin     *admin.Endpoint      // nil when admin is off
	stopped   bool                 // Serve is shutting down: Reload opens nothing more
	conns     sync.WaitGroup       // every client connection being served
	drains    sync.WaitGroup       // upstream connections closing gracefully
}

// serving is what accept loops need from a running Serve.
type serving struct {
	connCtx   context.Context // ended when the shutdown grace period is over
	accepting sync.WaitGroup
	workers   *workers // run each client's handshake
	// background owns every other goroutine Serve and Reload start: the
	// idle sweeper, the HTTP servers, the admin endpoint, retired states
	// draining. Serve returns only once they have all ended.
	background sync.WaitGroup
}

// state is everything derived from one configuration. A connection takes
// the current state when it is accepted and keeps it to the end, so a
// reload never changes the rules under an open connection.
type state struct {
	cfg     *config.Config
	clients bool // a rule matches by who the client is
	router  *router.Router
	dialer  *upstream.Dialer
	users   *users
	socks5  *socks5Server
	http    *httpProxy
}

// Options are the host services a Server uses.
type Options struct {
	// Links reports NIC state; nil asks the kernel on each dial. The
	// caller runs a bind.LinkWatcher here so dials read NIC state from
	// memory.
	Links bind.Links
	// Local knows the host's own addresses from memory, for loops and
	// local_destinations; nil lists them through the kernel at most once
	// a second. The caller runs a bind.AddrWatcher here.
	Local LocalAddrs
	// LinkDNS reports each NIC's own DNS servers (systemd-resolved's per
	// link); nil: NICs without a dns setting use the system's nameservers.
	LinkDNS upstream.LinkDNS
}

// New builds a Server for cfg. It opens nothing until Listen.
func New(cfg *config.Config, log *zap.Logger, opts Options) *Server {
	s := &Server{
		log:        log,
		opts:       opts,
		sweeper:    relay.NewIdleSweeper(cfg.Timeouts.Idle),
		listeners:  map[string]*listener{},
		udpLookups: make(chan struct{}, maxLookupsTotal),
	}
	s.local = newHostAddrs(opts.Local)
	s.hs = newGate(func() int { return s.state.Load().cfg.Limits.MaxHandshakes })
	s.ops = admin.New(adminSource{s})
	s.report = s.ops
	s.auth = newAuthGuard(s.report.AuthFailed)
	s.health = newHealth()
	s.state.Store(s.newState(cfg, nil))
	return s
}

// newState derives everything a configuration needs. prev is the state
// it replaces at a reload (nil at start): name caches and balancer state
// carry over from it.
func (s *Server) newState(cfg *config.Config, prev *state) *state {
	opts := upstream.Options{
		Links: s.opts.Links, LinkDNS: s.opts.LinkDNS, Healthy: s.health.healthy, DNS: s.report,
		// Names are checked once resolved: one that resolves to nicproxy's
		// own listener, or to the host under local_destinations: deny, is
		// refused like the literal.
		CheckAddr: func(dst netip.AddrPort) error { return s.checkDest(cfg, dst) },
	}
	if prev != nil {
		opts.Previous = prev.dialer
	}
	dialer := upstream.New(cfg, opts)
	st := &state{
		cfg:     cfg,
		clients: needsClients(cfg),
		router:  router.New(cfg, dialer.Resolver(cfg.Resolver.Via), s.clientsFor(cfg)),
		dialer:  dialer,
		users:   newUsers(cfg.Users, s.auth, prevUsers(prev)),
	}
	st.socks5 = newSOCKS5Server(s, st)
	st.http = newHTTPProxy(s, st)
	return st
}

func prevUsers(prev *state) *users {
	if prev == nil {
		return nil
	}
	return prev.users
}

// Serve accepts on every listener until ctx ends, then stops accepting and
// lets open connections finish for up to timeouts.shutdown before closing
// them. It returns when every connection has ended.
func (s *Server) Serve(ctx context.Context) error {
	// Connections get their own context: ending ctx stops accepting, while
	// open connections are only cut when the grace period runs out.
	connCtx, cutConns := context.WithCancel(context.Background())
	defer cutConns()
	defer s.closeClients()
	run := &serving{connCtx: connCtx, workers: newWorkers(10 * time.Second)}
	defer run.workers.close()

	// The sweeper, the status sampler and the health checks run until
	// Serve has closed everything else.
	backgroundCtx, stopBackground := context.WithCancel(context.Background())
	defer func() {
		stopBackground()
		run.background.Wait()
	}()
	run.background.Go(func() { s.sweeper.Run(backgroundCtx) })
	run.background.Go(func() { s.ops.Run(backgroundCtx) })
	run.background.Go(func() { s.health.run(backgroundCtx, s) })

	s.mu.Lock()
	s.state.Load().http.start(&run.background)
	s.serving = run
	for _, l := range s.listeners {
		s.startAccepting(run, l)
	}
	if s.admin != nil {
		run.background.Go(s.admin.Serve)
	}
	s.mu.Unlock()

	<-ctx.Done()

	s.mu.Lock()
	s.serving = nil
	s.stopped = true
	for addr, l := range s.listeners {
		l.close()
		delete(s.listeners, addr)
	}
	states := append([]*state{s.state.Load()}, s.retired...)
	if s.admin != nil {
		s.admin.Close()
		s.admin = nil
	}
	s.mu.Unlock()
	run.accepting.Wait()

	grace := s.state.Load().cfg.Timeouts.Shutdown
	graceCtx, cancelGrace := context.WithTimeout(context.Background(), grace)
	defer cancelGrace()
	// Idle keep-alive HTTP clients are closed now; busy ones finish their
	// request first.
	for _, st := range states {
		run.background.Go(func() { _ = st.http.server.Shutdown(graceCtx) })
	}
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-graceCtx.Done():
		s.log.Warn("shutdown grace period over: closing open connections", zap.Duration("grace", grace))
		cutConns()
		<-done
	}
	for _, st := range states {
		st.http.close()
	}
	s.drains.Wait()
	return nil
}

// Reload switches to cfg. Listeners the new file adds are opened (if one
// cannot be, nothing changes and the error says which), listeners it drops
// are closed, and new connections follow the new rules. Open connections
// keep the configuration they started with and are never cut; the next
// request on an HTTP keep-alive connection of the old configuration is
// served under the new one, with Connection: close.
func (s *Server) Reload(ctx context.Context, cfg *config.Config) (err error) {
	defer func() { s.report.Reloaded(err == nil, time.Now()) }()
	s.reloading.Lock()
	defer s.reloading.Unlock()
	// The new state may cost a bcrypt hash (users' dummy hash at a new
	// cost): it is built before s.mu is taken. Only Reload swaps states,
	// and reloads are one at a time, so the state it carries over from is
	// still the current one below.
	next := s.newState(cfg, s.state.Load())
	s.log.Debug("reload: new configuration built")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		next.http.close()
		return errors.New("shutting down: not reloading")
	}
	opened, ep, err := s.openFor(ctx, cfg)
	if err != nil {
		next.http.close()
		return err
	}
	s.swapAdmin(cfg, ep)
	if s.serving != nil {
		next.http.start(&s.serving.background)
	}
	old := s.state.Swap(next)
	s.sweeper.SetIdle(cfg.Timeouts.Idle)
	s.hs.wake() // limits.max_handshakes may have grown

	keep := map[string]bool{}
	for _, lc := range cfg.Listeners {
		key := lc.Addr.String()
		keep[key] = true
		if l, ok := s.listeners[key]; ok {
			l.cfg.Store(&lc)
		}
	}
	for key, l := range s.listeners {
		if !keep[key] {
			s.log.Info("listener closed by reload", zap.String("name", l.cfg.Load().Name), zap.String("addr", key))
			l.close()
			delete(s.listeners, key)
		}
	}
	for _, l := range opened {
		s.listeners[l.cfg.Load().Addr.String()] = l
		s.log.Info("listening", zap.String("name", l.cfg.Load().Name), zap.Stringer("addr", l.ln.Addr()),
			zap.String("protocol", string(l.cfg.Load().Protocol)))
		if s.serving != nil {
			s.startAccepting(s.serving, l)
		}
	}

	// The old HTTP server lets its requests in flight finish and answers
	// the next request on each kept-alive connection (under the new
	// configuration) with Connection: close; then it closes what it owned:
	// its transports' idle upstream connections. Serve's own shutdown cuts
	// the wait short by closing every state it finds in retired.
	if s.serving == nil {
		old.http.close() // never served: nothing to drain
		return nil
	}
	s.retired = append(s.retired, old)
	s.serving.background.Go(func() {
		old.http.retire()
		old.http.close()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.retired = slices.DeleteFunc(s.retired, func(st *state) bool { return st == old })
	})
	return nil
}

// admit counts a new client connection against limits.max_connections.
func (s *Server) admit() bool {
	limit := int64(s.state.Load().cfg.Limits.MaxConnections)
	if s.active.Add(1) > limit {
		s.active.Add(-1)
		return false
	}
	return true
}

func (s *Server) accept(run *serving, l *listener) {
	var backoff time.Duration
	for {
		conn, err := l.ln.AcceptTCP()
		if err != nil {
			if isClosed(err) {
				return
			}
			// Out of descriptors and the like: back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", zap.String("listener", l.cfg.Load().Name), zap.Error(err), zap.Duration("retry_in", backoff))
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !s.admit() {
			// Over limits.max_connections: refuse at once rather than queue.
			s.log.Warn("connection limit reached: refusing client",
				zap.Stringer("client", conn.RemoteAddr()), zap.Int("max_connections", s.state.Load().cfg.Limits.MaxConnections))
			_ = conn.SetLinger(0)
			conn.Close()
			continue
		}
		// Over limits.max_handshakes: wait, and let new clients queue in
		// the kernel's backlog rather than in memory.
		if !s.hs.acquire(l.done, 0) {
			conn.Close()
			s.active.Add(-1)
			return // the listener closed
		}
		// serveConn's session uncounts the connection (s.active, s.conns)
		// when it ends, or when a tunnel it handed to the relay ends.
		s.conns.Add(1)
		cfg := *l.cfg.Load()
		if !run.workers.run(func() { s.serveConn(run.connCtx, cfg, conn, &handshake{g: s.hs, on: true}) }) {
			conn.Close() // Serve is returning
			s.hs.release()
			s.active.Add(-1)
			s.conns.Done()
			return
		}
	}
}
