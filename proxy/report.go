package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"nicproxy/bind"
	"nicproxy/config"
	"nicproxy/proxy/admin"
	"nicproxy/proxy/upstream"
)

// reporter is what sessions tell the operator's view of the proxy: the
// metrics, the status page. *admin.Admin is the one implementation; the
// sessions know only these calls.
type reporter interface {
	upstream.DNSObserver
	// Dialed records an upstream dial through nic, or the NIC it failed on.
	Dialed(nic, result string, took time.Duration)
	// Relaying counts an open tunnel on nic until done is called.
	Relaying(nic string, upstream *net.TCPConn) (done func())
	// Finished records a flow that ended.
	Finished(admin.Flow)
	// AuthFailed counts a failed proxy login.
	AuthFailed()
	// ClientUnknown counts a client that could not be told apart, by
	// reason.
	ClientUnknown(reason string)
	// Reloaded records a configuration reload.
	Reloaded(ok bool, at time.Time)
}

// adminSource answers the admin endpoint's questions about the server.
type adminSource struct{ s *Server }

func (a adminSource) Config() *config.Config { return a.s.state.Load().cfg }

func (a adminSource) Active() int64 { return a.s.active.Load() }

func (a adminSource) IsLocal(addr netip.Addr) bool { return a.s.local.isLocal(addr) }

// NIC names a NIC's state as `nicproxy check` does: absent, down or up.
func (a adminSource) NIC(name string) admin.NICState {
	links := a.s.opts.Links
	if links == nil {
		links = bind.SystemLinks{}
	}
	st := admin.NICState{State: admin.StateUp, Check: a.s.health.checkState(name)}
	switch link, err := links.Link(name); {
	case errors.Is(err, bind.ErrNICMissing):
		st.State = admin.StateAbsent
	case err != nil || !link.Up:
		st.State = admin.StateDown
	}
	if stats, ok := a.s.state.Load().dialer.DNSStats(name); ok {
		st.DNS = &admin.DNSCache{Hits: stats.Hits, Misses: stats.Misses, Queries: stats.Queries, Entries: stats.Entries}
		if lookups := stats.Hits + stats.Misses; lookups > 0 {
			st.DNS.HitRate = float64(stats.Hits) / float64(lookups)
		}
	}
	return st
}

// openAdmin opens admin.addr when the configuration has one and it is not
// open already. Called with s.mu held.
func (s *Server) openAdmin(ctx context.Context, cfg *config.Config) (*admin.Endpoint, error) {
	if cfg.Admin == nil || (s.admin != nil && s.admin.Configured() == cfg.Admin.Addr) {
		return nil, nil
	}
	return s.ops.Listen(ctx, cfg.Admin.Addr, s.log)
}

// swapAdmin makes next the admin endpoint (closing the old one when the
// address changed, or when the new configuration has none). Called with
// s.mu held.
func (s *Server) swapAdmin(cfg *config.Config, next *admin.Endpoint) {
	if next == nil && cfg.Admin != nil {
		return // same address: keep serving
	}
	if s.admin != nil {
		s.admin.Close()
	}
	s.admin = next
	if next != nil {
		s.log.Info("admin endpoint", zap.Stringer("addr", next.Addr()))
		if s.serving != nil {
			s.serving.background.Go(next.Serve)
		}
	}
}

// ReloadFailed records a reload that never reached Reload, because the
// file did not load; Reload records its own outcome.
func (s *Server) ReloadFailed() { s.report.Reloaded(false, time.Now()) }
