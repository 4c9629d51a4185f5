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

// What one association may hold, and what all of them may do at once.
const (
	// maxDestinations bounds what one association remembers, so a client
	// spraying destinations cannot grow it without limit. A datagram to
	// a destination past it is refused before any lookup.
	maxDestinations = 4096
	// maxQueued is how many datagrams wait for a destination while it is
	// decided; more are dropped, as a full socket buffer would drop them.
	maxQueued = 16
	// maxQueuedBytes bounds the payload bytes one association holds for
	// destinations still being decided, whatever their number: without
	// it, 64 names each holding 16 datagrams of 64 KiB would be 64 MiB.
	maxQueuedBytes = 1 << 20
	// maxLookups is how many names one association may be deciding at
	// once; each lookup holds a socket per question in flight. A datagram
	// to another new name meanwhile is dropped, before any lookup, and a
	// later one tries again.
	maxLookups = 64
	// maxLookupsTotal is the same bound over every association of the
	// server, so many associations cannot fill the descriptor table.
	maxLookupsTotal = 1024
	// retryFailed is how long a destination that failed (a name that did
	// not resolve, a NIC that was down) stays failed: its datagrams are
	// dropped without a lookup each, yet a NIC that comes back or a name
	// that appears is used within this time.
	retryFailed = time.Second
)

// UDPBounds are what one SOCKS5 UDP association may hold and what all of
// them may do at once, for `check` to say.
type UDPBounds struct {
	Destinations int // destinations one association remembers
	Queued       int // datagrams waiting for one destination being decided
	QueuedBytes  int // payload bytes one association holds for destinations being decided
	Lookups      int // names one association may be deciding at once
	LookupsTotal int // names every association together may be deciding at once
}

// UDPLimits returns the bounds associations are served with.
func UDPLimits() UDPBounds {
	return UDPBounds{Destinations: maxDestinations, Queued: maxQueued, QueuedBytes: maxQueuedBytes,
		Lookups: maxLookups, LookupsTotal: maxLookupsTotal}
}

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
// destination is decided, or drops it. A destination that is an address
// is decided at once (routing an address does no I/O but opening its
// socket); a name is decided on a goroutine of its own, so the client's
// other datagrams keep flowing while it is looked up.
func (a *association) relay(dest socks5udp.Destination, payload []byte, from netip.AddrPort) {
	a.mu.Lock()
	r := a.routes[dest]
	if r != nil && r.state == routeFailed && !time.Now().Before(r.retryAt) {
		delete(a.routes, dest) // decided again, below
		r = nil
	}
	if r == nil {
		a.relayNew(dest, payload, from) // unlocks a.mu
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
	a.enqueue(r, payload)
	a.mu.Unlock()
}

// relayNew starts deciding a destination the association has no route
// for, with payload as the first datagram of its queue, or refuses it when
// the association is at one of its bounds. It is called with a.mu held
// and unlocks it.
func (a *association) relayNew(dest socks5udp.Destination, payload []byte, from netip.AddrPort) {
	if a.closed {
		a.mu.Unlock()
		return
	}
	var (
		refused *int   // the count of datagrams refused by the bound hit
		why     string // the bound, in words
		bound   zap.Field
	)
	isName := dest.Host != "" && !isLiteral(dest.Host)
	slot := false
	switch {
	case len(a.routes) >= maxDestinations:
		refused, why, bound = &a.summary.refused, "the association has reached its cap of destinations", zap.Int("max_destinations", maxDestinations)
	case a.queuedBytes+len(payload) > maxQueuedBytes:
		refused, why, bound = &a.summary.overBudget, "the association holds its budget of queued bytes", zap.Int("max_queued_bytes", maxQueuedBytes)
	case isName:
		if slot = a.lookups < maxLookups && a.ss.srv.acquireUDPLookup(); !slot {
			refused, why, bound = &a.summary.busy, "too many names are being looked up",
				zap.Ints("max_lookups", []int{maxLookups, maxLookupsTotal})
		}
	}
	if refused != nil {
		*refused++
		first := *refused == 1
		a.mu.Unlock()
		if first {
			a.ss.srv.log.Warn("udp: datagram dropped: "+why,
				zap.Stringer("client", a.ss.from), zap.Stringer("dest", dest), bound)
		}
		return
	}
	a.fixClient(from)
	r := &udpRoute{}
	a.enqueue(r, payload)
	a.routes[dest] = r
	if !slot {
		a.mu.Unlock()
		a.settle(dest, r)
		return
	}
	a.lookups++
	// fromClient, the caller, is a worker: the count cannot be zero
	// here, so this Add never races run's Wait.
	a.workers.Add(1)
	a.mu.Unlock()
	go func() {
		defer a.workers.Done()
		defer func() {
			a.mu.Lock()
			a.lookups--
			a.mu.Unlock()
			a.ss.srv.releaseUDPLookup()
		}()
		a.settle(dest, r)
	}()
}

// isLiteral reports whether a requested host needs no lookup.
func isLiteral(host string) bool {
	_, a := normalizeHost(host)
	return a.IsValid()
}

// enqueue keeps a copy of payload for r, still being decided, within
// maxQueued and the association's byte budget; a.mu is held.
func (a *association) enqueue(r *udpRoute, payload []byte) {
	if len(r.queue) >= maxQueued || a.queuedBytes+len(payload) > maxQueuedBytes {
		return
	}
	r.queue = append(r.queue, bytes.Clone(payload))
	a.queuedBytes += len(payload)
}

// takeQueue empties r's queue and gives its bytes back to the budget; a.mu
// is held.
func (a *association) takeQueue(r *udpRoute) [][]byte {
	queue := r.queue
	r.queue = nil
	for _, p := range queue {
		a.queuedBytes -= len(p)
	}
	return queue
}

// settle decides dest, then sends what queued for it meanwhile, or drops
// it and says why.
func (a *association) settle(dest socks5udp.Destination, r *udpRoute) {
	d := a.decide(dest)
	a.mu.Lock()
	if d.err != nil {
		r.state, r.retryAt = routeFailed, time.Now().Add(retryFailed)
		dropped := len(a.takeQueue(r))
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
		queue := a.takeQueue(r)
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
// NIC, then, for a name, a lookup through that NIC, then the socket for
// that NIC and the address's family. The address is checked (loops,
// local_destinations) by the dialer, in the one place TCP dials are
// checked too. It runs without a.mu held.
func (a *association) decide(dest socks5udp.Destination) udpDecision {
	ss := a.ss
	ctx, cancel := context.WithTimeout(a.ctx, ss.st.cfg.Timeouts.Dial)
	defer cancel()
	host := dest.Host
	if host == "" {
		host = dest.Addr.String()
	}
	host, _ = normalizeHost(host)
	decision := ss.st.router.Route(ctx, ss.routeRequest(host, dest.Port, config.NetworkUDP))
	d := udpDecision{rule: decision.RuleName}
	if decision.Action == config.ActionReject {
		d.err = fmt.Errorf("%w by rule %s", errRejected, decision.RuleName)
		return d
	}
	route, err := ss.st.dialer.RoutePacket(ctx, decision, ss.from, upstream.Target{Host: host, Port: dest.Port, Addr: decision.Addr})
	if err != nil {
		d.err = err
		var de *bind.DialError
		if errors.As(err, &de) {
			d.nic = de.NIC
		}
		return d
	}
	d.nic = route.NIC
	family := "udp4"
	if route.Addr.Is6() {
		family = "udp6"
	}
	via, err := a.uplink(ctx, route.NIC, family)
	if err != nil {
		d.err = err
		return d
	}
	d.to, d.via = netip.AddrPortFrom(route.Addr, dest.Port), via
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
	overBudget      int // datagrams to new destinations refused past maxQueuedBytes
	busy            int // datagrams to new names refused past maxLookups or maxLookupsTotal
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
