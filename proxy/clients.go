package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"

	"go.uber.org/zap"

	"nicproxy/bind/sockdiag"
	"nicproxy/config"
	"nicproxy/proxy/router"
)

// clients tells the router who a local client is (router.Clients),
// through one sockdiag.Identifier kept across reloads so its cgroup cache
// stays warm. A client that cannot be told is counted by reason, and each
// reason is logged once: a busy host can meet thousands.
type clients struct {
	id     *sockdiag.Identifier
	local  *hostAddrs
	report reporter
	log    *zap.Logger

	mu     sync.Mutex
	logged map[sockdiag.Reason]bool
}

// notLocal is a client from another host: no socket of this host to ask
// about, so no unit, cgroup, uid or program.
const notLocal sockdiag.Reason = "not-local"

func newClients(local *hostAddrs, report reporter, log *zap.Logger) *clients {
	mount, err := sockdiag.FindMount()
	if err != nil {
		log.Warn("unit and cgroup rules match nothing: the cgroup v2 hierarchy cannot be found", zap.Error(err))
	} else if mount == "" {
		log.Warn("unit and cgroup rules match nothing: this host mounts no cgroup v2 hierarchy (cgroup v1 only); uid rules still work")
	}
	return &clients{id: sockdiag.NewIdentifier(mount), local: local, report: report, log: log, logged: map[sockdiag.Reason]bool{}}
}

// needsClients reports whether any rule of cfg matches by who the client is.
func needsClients(cfg *config.Config) bool {
	for i := range cfg.Rules {
		if cfg.Rules[i].NeedsClient() {
			return true
		}
	}
	return false
}

func (c *clients) Client(client, server netip.AddrPort) (sockdiag.Client, error) {
	if !c.local.isLocal(client.Addr()) {
		err := &sockdiag.Error{Reason: notLocal, Err: errNotLocal}
		c.failed(err)
		return sockdiag.Client{}, err
	}
	found, err := c.id.Client(client, server)
	if err != nil {
		c.failed(err)
	} else if found.CgroupErr != nil {
		c.failed(found.CgroupErr)
	}
	return found, err
}

func (c *clients) Program(client sockdiag.Client) (string, error) {
	name, err := c.id.Program(client)
	if err != nil {
		c.failed(err)
	}
	return name, err
}

var errNotLocal = errors.New("the client is on another host")

func (c *clients) failed(err error) {
	reason := sockdiag.ReasonOf(err)
	c.report.ClientUnknown(string(reason))
	c.mu.Lock()
	first := !c.logged[reason]
	c.logged[reason] = true
	c.mu.Unlock()
	if first {
		c.log.Warn("a client could not be told apart: unit, cgroup, uid and program rules match none for it (logged once per reason; nicproxy_client_lookup_failures_total counts them)",
			zap.String("reason", string(reason)), zap.Error(err))
	}
}

func (c *clients) close() { c.id.Close() }

// clientsFor returns the server's clients when cfg has a rule that needs
// them (made at the first such configuration), else nil: a configuration
// without unit, cgroup, uid or program rules never asks the kernel.
func (s *Server) clientsFor(cfg *config.Config) router.Clients {
	if !needsClients(cfg) {
		return nil
	}
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	if s.clients == nil || s.clients.id.Mount() == "" {
		// Looked for again at a reload: cgroup2 may be mounted since.
		if s.clients != nil {
			s.clients.close()
		}
		s.clients = newClients(s.local, s.report, s.log)
	}
	return s.clients
}

// closeClients releases the netlink sockets kept for lookups.
func (s *Server) closeClients() {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	if s.clients != nil {
		s.clients.close()
	}
}

// peer is the connection's record of who its client is, made when the
// configuration first needs it; nil otherwise, so connections under a
// configuration without client rules allocate nothing for it.
func (ss *session) peer() *router.Peer {
	if !ss.st.clients {
		return nil
	}
	o := ss.owner
	if o.peerRec == nil {
		o.peerRec = &router.Peer{}
	}
	return o.peerRec
}

// routeRequest is what the router needs of this session's request.
func (ss *session) routeRequest(host string, port uint16, network config.Network) router.Request {
	req := router.Request{
		Client: ss.from, User: ss.user, Listener: ss.listener.Name,
		Host: host, Port: port, Network: network, Peer: ss.peer(),
	}
	if req.Peer != nil {
		if a, ok := ss.client.LocalAddr().(*net.TCPAddr); ok {
			req.Server = a.AddrPort()
		}
	}
	return req
}

// noteDecision keeps what the decision says of the session.
func (ss *session) noteDecision(d router.Decision) {
	ss.rule, ss.who = d.RuleName, d.Peer
}

// router.Clients is what the router asks.
var _ router.Clients = (*clients)(nil)
