package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"go.uber.org/zap"

	"nicproxy/config"
	"nicproxy/proxy/admin"
)

// listener is one open listening socket. Its config entry can change under
// it (a reload renaming it or changing its protocol) without closing it.
type listener struct {
	cfg atomic.Pointer[config.Listener]
	ln  *net.TCPListener

	done      chan struct{} // closed by close: an accept loop waiting for a handshake slot gives up
	closeOnce sync.Once
}

func newListener(ln *net.TCPListener, entry config.Listener) *listener {
	l := &listener{ln: ln, done: make(chan struct{})}
	l.cfg.Store(&entry)
	return l
}

// close stops the listener and its accept loop.
func (l *listener) close() {
	l.closeOnce.Do(func() {
		close(l.done)
		l.ln.Close()
	})
}

// Listen opens every listener of the configuration; nothing is served until
// Serve. A listener that cannot be opened is an error naming its address.
func (s *Server) Listen(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	opened, ep, err := s.openFor(ctx, s.state.Load().cfg)
	if err != nil {
		return err
	}
	for _, l := range opened {
		s.listeners[l.cfg.Load().Addr.String()] = l
	}
	s.admin = ep
	if ep != nil {
		s.log.Info("admin endpoint", zap.Stringer("addr", ep.Addr()))
	}
	return nil
}

// openFor opens what cfg needs that is not open yet: listeners and the
// admin endpoint. Either all of it opens or nothing changes. Called with
// s.mu held.
func (s *Server) openFor(ctx context.Context, cfg *config.Config) ([]*listener, *admin.Endpoint, error) {
	opened, undo, err := s.openNew(ctx, cfg.Listeners)
	if err != nil {
		return nil, nil, err
	}
	ep, err := s.openAdmin(ctx, cfg)
	if err != nil {
		undo()
		return nil, nil, err
	}
	return opened, ep, nil
}

// openNew opens the listeners in want that are not open yet. A listener
// that want drops and whose port a new one would share (127.0.0.1:1080
// widened to 0.0.0.0:1080, or narrowed back) is closed first: the kernel
// refuses the new bind while the old socket listens. undo closes what was
// opened and reopens what was closed; a failure calls it itself. Called
// with s.mu held.
func (s *Server) openNew(ctx context.Context, want []config.Listener) (opened []*listener, undo func(), err error) {
	var displaced []config.Listener
	undo = func() {
		for _, l := range opened {
			l.close()
		}
		s.reopen(displaced)
	}
	kept := map[string]bool{}
	for _, entry := range want {
		kept[entry.Addr.String()] = true
	}
	var lc net.ListenConfig
	for _, entry := range want {
		if _, ok := s.listeners[entry.Addr.String()]; ok {
			continue
		}
		for key, l := range s.listeners {
			if old := *l.cfg.Load(); !kept[key] && sharePort(old.Addr, entry.Addr) {
				s.log.Info("listener closed by reload to make room", zap.String("name", old.Name),
					zap.String("addr", key), zap.String("for", entry.Addr.String()))
				l.close()
				delete(s.listeners, key)
				displaced = append(displaced, old)
			}
		}
		ln, err := lc.Listen(ctx, listenNetwork(entry.Addr), entry.Addr.String())
		if err != nil {
			undo()
			return nil, nil, s.listenError(entry, err)
		}
		opened = append(opened, newListener(ln.(*net.TCPListener), entry))
	}
	return opened, undo, nil
}

// reopen listens again on listeners openNew closed to make room, after
// the reload that closed them failed. Called with s.mu held.
func (s *Server) reopen(entries []config.Listener) {
	var lc net.ListenConfig
	for _, entry := range entries {
		ln, err := lc.Listen(context.Background(), listenNetwork(entry.Addr), entry.Addr.String())
		if err != nil {
			s.log.Error("listener lost: a failed reload closed it and it cannot be opened again",
				zap.String("name", entry.Name), zap.Stringer("addr", entry.Addr), zap.Error(err))
			continue
		}
		l := newListener(ln.(*net.TCPListener), entry)
		s.listeners[entry.Addr.String()] = l
		if s.serving != nil {
			s.startAccepting(s.serving, l)
		}
	}
}

// sharePort reports whether listeners on a and b would clash in the
// kernel: the same port, and the same address or a wildcard on either.
func sharePort(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() &&
		(a.Addr() == b.Addr() || a.Addr().IsUnspecified() || b.Addr().IsUnspecified())
}

// listenError names the listener only when its name is not its address
// (the net error already says the address), and says what to do about
// the failures an operator meets. Called with s.mu held.
func (s *Server) listenError(entry config.Listener, err error) error {
	hint := ""
	own := ""
	for key, l := range s.listeners {
		if sharePort(l.cfg.Load().Addr, entry.Addr) {
			own = key
		}
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE) && own != "":
		hint = fmt.Sprintf(": nicproxy's own listener %s holds the port, and a wildcard address and a specific one cannot share it", own)
	case errors.Is(err, syscall.EADDRINUSE):
		hint = ": another process already listens there (ss -ltnp shows which); stop it or choose another address"
	case errors.Is(err, syscall.EACCES):
		hint = ": ports below 1024 need CAP_NET_BIND_SERVICE; choose a port above 1023"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = ": no NIC of this host has that address"
	}
	if entry.Name != entry.Addr.String() {
		return fmt.Errorf("listener %s: %w%s", entry.Name, err, hint)
	}
	return fmt.Errorf("%w%s", err, hint)
}

// listenNetwork keeps an IPv4 address IPv4-only and an IPv6 one IPv6-only,
// except [::], which Go listens on dual-stack, as users expect of ":port".
func listenNetwork(addr netip.AddrPort) string {
	switch {
	case addr.Addr().Is4():
		return "tcp4"
	case addr.Addr().IsUnspecified():
		return "tcp"
	}
	return "tcp6"
}

// Addrs returns the bound address of each listener, in config order.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	var addrs []netip.AddrPort
	for _, entry := range s.state.Load().cfg.Listeners {
		if l, ok := s.listeners[entry.Addr.String()]; ok {
			addrs = append(addrs, l.ln.Addr().(*net.TCPAddr).AddrPort())
		}
	}
	return addrs
}

// startAccepting runs l's accept loop under run. Called with s.mu held.
func (s *Server) startAccepting(run *serving, l *listener) {
	run.accepting.Add(1)
	go func() {
		defer run.accepting.Done()
		s.accept(run, l)
	}()
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
