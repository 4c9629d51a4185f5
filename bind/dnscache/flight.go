package dnscache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// settings are the servers and options in force, derived from the Config
// and the files it names.
type settings struct {
	conf     *resolvConf
	stub     []netip.AddrPort // the stub upstreams they were built from
	link     []netip.AddrPort // the per-link servers they were built from
	origin   string           // where servers come from, for Servers
	servers  []netip.AddrPort
	rotate   bool
	noServer error // set when there is no server to ask: the lookup fails with it
}

// current returns the settings, rebuilt when a file they come from changed.
func (r *Resolver) current(now time.Time) *settings {
	conf := r.resolv.get(now)
	var stub, link []netip.AddrPort
	if len(r.cfg.Servers) == 0 && r.cfg.LinkServers != nil {
		link = r.cfg.LinkServers()
	}
	needStub := len(r.cfg.Servers) == 0 && len(link) == 0 &&
		(len(conf.servers) == 0 || slices.ContainsFunc(conf.servers, netip.Addr.IsLoopback))
	if needStub {
		stub = r.stub.get(now)
	}
	r.setMu.Lock()
	defer r.setMu.Unlock()
	if s := r.settings; s != nil && s.conf == conf && slices.Equal(s.stub, stub) && slices.Equal(s.link, link) {
		return s
	}
	s := &settings{conf: conf, stub: stub, link: link}
	switch {
	case len(r.cfg.Servers) > 0:
		// Explicit servers take turns, as the pinned net.Resolver had them.
		s.servers, s.rotate = r.cfg.Servers, true
		s.origin = "interfaces." + r.cfg.NIC + ".dns"
	case len(link) > 0:
		// The link's own servers, in the order the link has them, as
		// systemd-resolved uses them: the first, the next when it fails.
		s.servers, s.rotate = link, conf.rotate
		s.origin = r.cfg.LinkOrigin
	default:
		s.origin = r.cfg.ResolvConf
		s.rotate = conf.rotate
		servers := conf.servers
		if len(servers) == 0 {
			// resolv(5): no nameserver line means the local one.
			servers = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}
		}
		// A loopback nameserver (systemd-resolved's 127.0.0.53, a local
		// dnsmasq) cannot be reached through a NIC, and asking it unpinned
		// would let it forward the query out of any NIC: its upstream
		// servers are asked instead.
		var loopback netip.Addr
		for _, addr := range servers {
			if !addr.IsLoopback() {
				s.servers = appendNew(s.servers, netip.AddrPortFrom(addr, 53))
				continue
			}
			if !loopback.IsValid() {
				loopback = addr
			}
			for _, up := range stub {
				s.servers = appendNew(s.servers, up)
			}
		}
		if loopback.IsValid() {
			s.origin += " (its loopback " + loopback.String() + " replaced by " + r.cfg.StubUpstreams + ")"
		}
		if len(s.servers) == 0 {
			s.noServer = fmt.Errorf("%w: the system nameserver %s is on loopback and cannot be reached through %s; set interfaces.%s.dns",
				ErrNoNameserver, loopback, r.cfg.NIC, r.cfg.NIC)
		}
	}
	r.settings = s
	return s
}

// Servers returns the servers a lookup would ask now and where they come
// from ("interfaces.ens33.dns", the per-link source, or the resolv.conf
// file), or the error a lookup would fail with: for check and doctor.
func (r *Resolver) Servers() ([]netip.AddrPort, string, error) {
	s := r.current(r.now())
	return slices.Clone(s.servers), s.origin, s.noServer
}

func appendNew(servers []netip.AddrPort, s netip.AddrPort) []netip.AddrPort {
	if slices.Contains(servers, s) {
		return servers
	}
	return append(servers, s)
}

// flightKey names one question: an absolute lower-case name and a family.
type flightKey struct {
	name string
	fam  family
}

// flight is one question in flight, shared by every lookup that needs it.
// Its goroutine is owned by its waiters: the last one to give up cancels it
// and waits for it to end.
type flight struct {
	key     flightKey
	done    chan struct{}
	cancel  context.CancelFunc
	waiters int // guarded by Resolver.mu
	result  known
	err     error // set instead of result when the question failed
}

// lookupName asks for fqdn's wanted families, from the cache where fresh,
// else through a shared flight. Unless complete, once one family has
// addresses it waits at most the Resolution Delay for the other (RFC 8305
// section 3): a connection never waits for a family it does not need, and
// the late answer still fills the cache for the next one. asked reports
// whether any family was not answered from the cache. err is a
// *net.DNSError.
func (r *Resolver) lookupName(ctx context.Context, s *settings, fqdn string, want [2]bool, complete bool) (res Result, asked bool, err error) {
	var got [2]known
	var waits [2]*flight
	now := r.now()
	r.mu.Lock()
	for fam := range 2 {
		if !want[fam] {
			continue
		}
		key := flightKey{fqdn, family(fam)}
		if k, ok := r.cache.get(fqdn, key.fam, now); ok {
			got[fam] = k
			continue
		}
		f := r.flights[key]
		if f == nil {
			f = r.start(s, key)
		}
		f.waiters++
		waits[fam] = f
		asked = true
	}
	r.mu.Unlock()

	var failure error
	var done [2]<-chan struct{}
	for fam, f := range waits {
		if f != nil {
			done[fam] = f.done
		}
	}
	var delay *time.Timer
	var delayed <-chan time.Time
	hasAddrs := func() bool { return len(got[ipv4].addrs)+len(got[ipv6].addrs) > 0 }
	for done[ipv4] != nil || done[ipv6] != nil {
		if delayed == nil && !complete && hasAddrs() {
			delay = time.NewTimer(r.cfg.ResolutionDelay)
			defer delay.Stop()
			delayed = delay.C
		}
		var fam family
		select {
		case <-done[ipv4]:
			fam = ipv4
		case <-done[ipv6]:
			fam = ipv6
		case <-delayed:
			// Enough to connect: the other question goes on alone.
			for fam, f := range waits {
				if done[fam] != nil {
					r.detach(f)
				}
			}
			done = [2]<-chan struct{}{}
			continue
		case <-ctx.Done():
			for fam, f := range waits {
				if done[fam] != nil {
					r.leave(f)
				}
			}
			return Result{}, asked, canceled(fqdn, ctx.Err())
		}
		done[fam] = nil
		if f := waits[fam]; f.err != nil {
			failure = f.err
		} else {
			got[fam] = f.result
		}
	}

	// Addresses of one family answer the lookup even when the other
	// family's question failed.
	res = Result{V4: slices.Clone(got[ipv4].addrs), V6: slices.Clone(got[ipv6].addrs)}
	switch {
	case len(res.V4)+len(res.V6) > 0:
		return res, asked, nil
	case failure != nil:
		return Result{}, asked, failure
	default:
		return Result{}, asked, notFound(fqdn)
	}
}

// detach drops a waiter that no longer needs the answer, without
// cancelling the flight even when it was the last: the answer is still
// wanted in the cache. The flight ends within its own budget (or at Close).
func (r *Resolver) detach(f *flight) {
	r.mu.Lock()
	f.waiters--
	r.mu.Unlock()
}

// leave drops a waiter that gave up; the last one cancels the flight and
// waits for its goroutine, so none outlives the lookups that needed it.
func (r *Resolver) leave(f *flight) {
	r.mu.Lock()
	f.waiters--
	last := f.waiters == 0 && r.flights[f.key] == f
	if last {
		delete(r.flights, f.key)
	}
	r.mu.Unlock()
	if last {
		f.cancel()
		<-f.done
	}
}

// start launches the flight for key. The question is bounded by the
// resolv.conf budget (timeout per try, attempts rounds over the servers),
// not by any one caller's ctx: a caller that gives up must not fail the
// others. Called with r.mu held.
func (r *Resolver) start(s *settings, key flightKey) *flight {
	budget := s.conf.timeout * time.Duration(s.conf.attempts*len(s.servers))
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	f := &flight{key: key, done: make(chan struct{}), cancel: cancel}
	r.flights[key] = f
	r.running.Add(1)
	go func() {
		defer r.running.Done()
		defer close(f.done)
		defer cancel()
		ans, server, err := r.ask(ctx, s, key)
		r.count(ans, err)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.flights[key] == f {
			delete(r.flights, key)
		}
		if err != nil {
			f.err = r.dnsError(key.name, server, err)
			return
		}
		addrs := ans.addrs
		if len(addrs) > MaxAddrsPerFamily {
			addrs = slices.Clone(addrs[:MaxAddrsPerFamily]) // not the whole answer's array
		}
		f.result = known{outcome: ans.outcome, addrs: addrs}
		if ttl := r.lifetime(ans); ttl > 0 {
			k := f.result
			k.expires = r.now().Add(ttl)
			r.cache.put(key.name, key.fam, k)
		}
	}()
	return f
}

// lifetime is how long an answer is kept: a positive one for its TTL
// clamped to MinTTL..MaxTTL, a negative one for its SOA's TTL, at most
// MaxNegativeTTL, and one without an SOA for NegativeTTLWithoutSOA (0:
// not at all, as RFC 2308 has it).
func (r *Resolver) lifetime(ans answer) time.Duration {
	if !ans.hasTTL {
		if ans.outcome == found {
			return 0
		}
		return r.cfg.NegativeTTLWithoutSOA
	}
	ttl := time.Duration(ans.ttl) * time.Second
	if ans.outcome == found {
		return max(min(ttl, r.cfg.MaxTTL), r.cfg.MinTTL)
	}
	return min(ttl, MaxNegativeTTL)
}

func (r *Resolver) count(ans answer, err error) {
	r.queries.Add(1)
	if r.cfg.OnQuery == nil {
		return
	}
	result := "error"
	switch {
	case err != nil:
	case ans.outcome == found:
		result = "ok"
	case ans.outcome == nxdomain:
		result = "nxdomain"
	case ans.outcome == nodata:
		result = "nodata"
	}
	r.cfg.OnQuery(result)
}

// ask puts the question to the servers, attempts rounds of each in turn,
// each try bounded by the resolv.conf timeout, until one answers (a
// negative answer included). It returns the server of the last failure.
func (r *Resolver) ask(ctx context.Context, s *settings, key flightKey) (answer, netip.AddrPort, error) {
	name, err := dnsmessage.NewName(key.name)
	if err != nil {
		return answer{}, netip.AddrPort{}, err
	}
	q := dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	if key.fam == ipv6 {
		q.Type = dnsmessage.TypeAAAA
	}
	start := 0
	if s.rotate {
		start = int(r.next.Add(1) - 1)
	}
	var server netip.AddrPort
	for attempt := 0; attempt < s.conf.attempts; attempt++ {
		for i := range s.servers {
			server = s.servers[(start+i)%len(s.servers)]
			tryCtx, cancel := context.WithTimeout(ctx, s.conf.timeout)
			ans, tryErr := r.exchange(tryCtx, server, q, s.conf.useTCP)
			cancel()
			if tryErr == nil {
				return ans, server, nil
			}
			err = tryErr
			if ctx.Err() != nil {
				return answer{}, server, err
			}
		}
	}
	return answer{}, server, err
}

// dnsError describes a failed question: which name, which server, through
// which NIC, and whether it was a timeout.
func (r *Resolver) dnsError(name string, server netip.AddrPort, err error) *net.DNSError {
	e := &net.DNSError{Name: name, Err: err.Error(), UnwrapErr: err}
	if server.IsValid() {
		e.Server = server.String()
	}
	if r.cfg.NIC != "" {
		e.Server += " via " + r.cfg.NIC
	}
	switch {
	case isTimeout(err):
		e.Err, e.IsTimeout, e.IsTemporary = "i/o timeout", true, true
	case errors.Is(err, errServFail), errors.Is(err, errRefused), errors.Is(err, errLame):
		e.IsTemporary = true
	}
	return e
}
