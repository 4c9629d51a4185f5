package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"nicproxy/bind"
	"nicproxy/config"
	"nicproxy/proxy/socks5udp"
	"nicproxy/proxy/upstream"
)

// What one association may hold.
const (
	// maxDestinations bounds what one association remembers, so a client
	// spraying destinations cannot grow it without limit. A datagram to
	// a destination past it is refused before any lookup.
	maxDestinations = 4096
	// maxQueued is how many datagrams wait for a destination while it is
	// decided; more are dropped, as a full socket buffer would drop them.
	maxQueued = 16
	// retryFailed is how long a destination that failed (a name that did
	// not resolve, a NIC that was down) stays failed: its datagrams are
	// dropped without a lookup each, yet a NIC that comes back or a name
	// that appears is used within this time.
	retryFailed = time.Second
)

// routeState is where a destination is in its life.
type routeState uint8

const (
	routeDeciding routeState = iota // routing and resolving; datagrams queue
	routeFlushing                   // decided; its decider sends the queue, in order
	routeReady                      // datagrams go straight out
	routeFailed                     // datagrams are dropped until retryAt
)

// udpRoute is where one destination's datagrams go. Its fields are guarded
// by the association's mu; to and via are set before state leaves
// routeDeciding and never change after.
type udpRoute struct {
	state   routeState
	to      netip.AddrPort
	via     *uplink
	queue   [][]byte
	retryAt time.Time
}

// udpDecision is the outcome of routing one destination.
type udpDecision struct {
	to   netip.AddrPort
	via  *uplink
	rule string
	// nic carried the datagrams or would have: for a name that did not
	// resolve, the NIC that looked it up.
	nic string
	err error
}

// relay sends one datagram of the client (from), queues it while its
// destination is decided, or drops it. A new destination is decided on a
// goroutine of its own, so the client's other datagrams keep flowing
// meanwhile.
func (a *association) relay(dest socks5udp.Destination, payload []byte, from netip.AddrPort) {
	a.mu.Lock()
	r := a.routes[dest]
	if r != nil && r.state == routeFailed && !time.Now().Before(r.retryAt) {
		delete(a.routes, dest) // decided again, below
		r = nil
	}
	if r == nil {
		if a.closed {
			a.mu.Unlock()
			return
		}
		if len(a.routes) >= maxDestinations {
			a.summary.refused++
			first := a.summary.refused == 1
			a.mu.Unlock()
			if first {
				a.ss.srv.log.Warn("udp: destination refused: the association has reached its cap",
					zap.Stringer("client", a.ss.from), zap.Stringer("dest", dest),
					zap.Int("max_destinations", maxDestinations))
			}
			return
		}
		a.fixClient(from)
		r = &udpRoute{queue: [][]byte{bytes.Clone(payload)}}
		a.routes[dest] = r
		// fromClient, the caller, is a worker: the count cannot be zero
		// here, so this Add never races run's Wait.
		a.workers.Add(1)
		a.mu.Unlock()
		go func() {
			defer a.workers.Done()
			a.settle(dest, r)
		}()
		return
	}
	switch r.state {
	case routeFailed:
		a.mu.Unlock()
		return
	case routeReady:
		via, to := r.via, r.to
		a.mu.Unlock()
		a.fixClient(from)
		a.send(via, to, payload)
		return
	}
	a.fixClient(from)
	if len(r.queue) < maxQueued {
		r.queue = append(r.queue, bytes.Clone(payload))
	}
	a.mu.Unlock()
}

// settle decides dest, then sends what queued for it meanwhile, or drops
// it and says why.
func (a *association) settle(dest socks5udp.Destination, r *udpRoute) {
	d := a.decide(dest)
	a.mu.Lock()
	if d.err != nil {
		r.state, r.retryAt = routeFailed, time.Now().Add(retryFailed)
		dropped := len(r.queue)
		r.queue = nil
		ending := a.closed || a.ctx.Err() != nil
		if !ending {
			a.summary.record(dest, d)
		}
		a.mu.Unlock()
		if !ending {
			a.ss.srv.log.Info("udp: destination not relayed",
				zap.Stringer("client", a.ss.from), zap.String("user", a.ss.user),
				zap.Stringer("dest", dest), zap.String("rule", d.rule), zap.String("nic", d.nic),
				zap.Int("datagrams", dropped), zap.String("result", resultOf(d.err)), zap.Error(d.err))
		}
		return
	}
	r.to, r.via, r.state = d.to, d.via, routeFlushing
	a.sentTo[d.to] = struct{}{}
	a.summary.record(dest, d)
	// Datagrams that arrive while the queue is sent join its tail, so the
	// destination sees them in the order the client sent them.
	for len(r.queue) > 0 {
		queue := r.queue
		r.queue = nil
		a.mu.Unlock()
		for _, p := range queue {
			a.send(d.via, d.to, p)
		}
		a.mu.Lock()
	}
	r.state = routeReady
	a.mu.Unlock()
}

// decide routes dest like a TCP flow with network udp: rules, then the
// NIC's socket, then, for a name, a lookup through that NIC. It runs
// without a.mu held.
func (a *association) decide(dest socks5udp.Destination) udpDecision {
	ss := a.ss
	ctx, cancel := context.WithTimeout(a.ctx, ss.st.cfg.Timeouts.Dial)
	defer cancel()
	host := dest.Host
	if host == "" {
		host = dest.Addr.String()
	}
	host, literal := normalizeHost(host)
	if literal.IsValid() {
		dest.Addr = literal
	}
	if dest.Addr.IsValid() {
		if err := ss.srv.checkDest(ss.st.cfg, netip.AddrPortFrom(dest.Addr, dest.Port)); err != nil {
			return udpDecision{err: err}
		}
	}
	decision := ss.st.router.Route(ctx, ss.routeRequest(host, dest.Port, config.NetworkUDP))
	d := udpDecision{rule: decision.RuleName}
	if decision.Action == config.ActionReject {
		d.err = fmt.Errorf("%w by rule %s", errRejected, decision.RuleName)
		return d
	}
	addr := dest.Addr
	if !addr.IsValid() {
		addr = decision.Addr
	}
	if addr.IsValid() && addr.IsLoopback() {
		decision.Via = config.Via{Mode: config.ViaSystem} // never leaves the host
	}
	// Names are resolved through the NIC the datagrams will take: the
	// IPv4 socket's NIC decides, and IPv4 answers are preferred.
	family := "udp4"
	if addr.IsValid() && addr.Is6() {
		family = "udp6"
	}
	via, err := a.uplink(ctx, decision, host, family)
	if err != nil {
		d.err = err
		var de *bind.DialError
		if errors.As(err, &de) {
			d.nic = de.NIC
		}
		return d
	}
	d.nic = via.nic
	if !addr.IsValid() {
		addrs, err := ss.st.dialer.Lookup(ctx, via.nic, dest.Host)
		if err != nil || len(addrs) == 0 {
			d.err = fmt.Errorf("resolve %s via %s: %w", dest.Host, via.nic, errors.Join(upstream.ErrResolve, err))
			return d
		}
		addr = addrs[0] // IPv4 first, as Lookup orders them
		if err := ss.srv.checkDest(ss.st.cfg, netip.AddrPortFrom(addr, dest.Port)); err != nil {
			d.err = err
			return d
		}
		if addr.Is6() {
			if via, err = a.uplink(ctx, decision, host, "udp6"); err != nil {
				d.err = err
				return d
			}
			d.nic = via.nic
		}
	}
	d.to, d.via = netip.AddrPortFrom(addr, dest.Port), via
	return d
}

// udpSummary is what an association's access line says: the last
// destination it relayed to, or, when it relayed to none, the last that
// failed and why. Each failed destination has a line of its own too.
type udpSummary struct {
	relayed         bool
	dest, rule, nic string
	err             error
	refused         int // datagrams refused past maxDestinations
}

func (s *udpSummary) record(dest socks5udp.Destination, d udpDecision) {
	if d.err == nil {
		s.relayed = true
		s.dest, s.rule, s.nic, s.err = dest.String(), d.rule, d.nic, nil
		return
	}
	if !s.relayed {
		s.dest, s.rule, s.nic, s.err = dest.String(), d.rule, d.nic, d.err
	}
}

// apply writes the summary into the session, for its access line.
func (s *udpSummary) apply(ss *session) {
	if s.dest == "" {
		return
	}
	ss.dest, ss.rule, ss.nic = s.dest, s.rule, s.nic
	if s.err != nil && ss.err == nil {
		ss.err = s.err
	}
}
