package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	socks5 "github.com/things-go/go-socks5"
	"github.com/things-go/go-socks5/statute"
	"go.uber.org/zap"

	"nicproxy/proxy/socks5udp"
)

// associate serves SOCKS5 UDP ASSOCIATE. The client-facing UDP socket sits
// on the address the client reached (loopback, usually) and is never pinned;
// the sockets facing the destinations are pinned per the rules, one per NIC
// and address family, so every datagram of a pinned flow, and the lookups
// made for it, leave through its NIC. The association lasts as long as the
// client keeps its TCP connection open (RFC 1928) and something moved
// within timeouts.idle.
func (p *socks5Server) associate(_ context.Context, w io.Writer, req *socks5.Request) error {
	sc, ok := w.(*sessionConn)
	if !ok {
		return fmt.Errorf("socks5: associate handler got %T, not the session", w)
	}
	ss := sc.ss
	ss.hs.end()
	ss.protocol = "socks5-udp"
	if req.AuthContext != nil {
		ss.user = req.AuthContext.Payload["username"]
	}
	local := ss.client.LocalAddr().(*net.TCPAddr).AddrPort()
	network := "udp4"
	if local.Addr().Is6() && !local.Addr().Is4In6() {
		network = "udp6"
	}
	clientSide, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), 0)))
	if err != nil {
		ss.err = err
		return socks5.SendReply(w, statute.RepServerFailure, nil)
	}
	if err := socks5.SendReply(w, statute.RepSuccess, clientSide.LocalAddr()); err != nil {
		clientSide.Close()
		ss.err = err
		return nil
	}
	_ = ss.client.SetDeadline(time.Time{})
	a := newAssociation(ss, clientSide)
	// RFC 1928: the request names the address the client will send from;
	// when it does, only that address may use the relay.
	if ip := req.RawDestAddr.IP; ip != nil && !ip.IsUnspecified() {
		if addr, ok := netip.AddrFromSlice(ip); ok {
			expected := netip.AddrPortFrom(addr.Unmap(), uint16(req.RawDestAddr.Port))
			a.expected = &expected
		}
	}
	a.touch()
	a.run()
	return nil
}

// association is one UDP ASSOCIATE.
//
// Its mutex guards maps and a summary only and is never held across
// network I/O (a lookup, a socket made, a send): a destination is decided
// on a goroutine of its own while its datagrams wait in a short queue, so
// a slow name stalls neither the datagrams nor the replies of the
// association's other destinations.
type association struct {
	ss     *session
	ctx    context.Context // ends with the association, and with it lookups in flight
	cancel context.CancelFunc
	client *net.UDPConn

	expected   *netip.AddrPort                // the source the request announced (port 0: any port), or nil
	clientAddr atomic.Pointer[netip.AddrPort] // the client's UDP address, fixed by its first valid datagram
	up, down   atomic.Int64
	active     atomic.Int64 // unix nanoseconds of the last relayed datagram either way

	mu      sync.Mutex
	closed  bool                                // set when the association ends: no new uplinks or decisions
	routes  map[socks5udp.Destination]*udpRoute // one per destination, deciding, decided or failed
	uplinks map[string]*uplink                  // by NIC and family
	sentTo  map[netip.AddrPort]struct{}         // destinations whose replies may come back
	summary udpSummary                          // what the access line says
	// queuedBytes are the payload bytes queued for destinations being
	// decided (at most maxQueuedBytes); lookups, the names being decided
	// on goroutines of their own (at most maxLookups).
	queuedBytes, lookups int
	// workers are the goroutines the association starts besides run's
	// own: the client reader, the uplinks' reply readers, the deciders.
	workers sync.WaitGroup
}

func newAssociation(ss *session, client *net.UDPConn) *association {
	ctx, cancel := context.WithCancel(ss.ctx)
	return &association{ss: ss, ctx: ctx, cancel: cancel, client: client,
		routes:  map[socks5udp.Destination]*udpRoute{},
		uplinks: map[string]*uplink{}, sentTo: map[netip.AddrPort]struct{}{}}
}

// uplink is a socket facing the destinations, pinned to one NIC.
type uplink struct {
	pc  net.PacketConn
	nic string
}

func (a *association) touch() { a.active.Store(time.Now().UnixNano()) }

func (a *association) run() {
	ss := a.ss
	control := make(chan struct{})
	go func() {
		// The client ends the association by closing its TCP connection.
		_, _ = io.Copy(io.Discard, ss.client)
		close(control)
	}()
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		a.fromClient()
	}()

	idle := ss.st.cfg.Timeouts.Idle
	tick := time.NewTicker(min(max(idle/4, 50*time.Millisecond), 15*time.Second))
	defer tick.Stop()
wait:
	for {
		select {
		case <-control:
			break wait
		case <-ss.ctx.Done():
			break wait
		case <-tick.C:
			if time.Since(time.Unix(0, a.active.Load())) > idle {
				break wait
			}
		}
	}
	ss.client.Close()
	a.client.Close()
	a.cancel() // lookups in flight end now
	a.mu.Lock()
	a.closed = true // a destination decided from now on cannot open an uplink
	for _, u := range a.uplinks {
		u.pc.Close()
	}
	a.mu.Unlock()
	a.workers.Wait()
	<-control
	ss.up, ss.down = a.up.Load(), a.down.Load()
	a.summary.apply(ss)
}

func (a *association) fromClient() {
	buf := make([]byte, 64<<10)
	clientHost := a.ss.from.Addr().Unmap()
	for {
		n, from, err := a.client.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if !a.fromClientAddr(from, clientHost) {
			continue
		}
		dest, payload, err := socks5udp.Parse(buf[:n])
		if err != nil {
			a.ss.srv.log.Debug("udp: bad datagram from client", zap.Stringer("client", from), zap.Error(err))
			continue
		}
		a.relay(dest, payload, from)
	}
}

// fixClient makes from the client's address if none is fixed yet: the
// first datagram taken for relaying fixes it, before it is sent, so the
// reply finds it; replies go there and nowhere else.
func (a *association) fixClient(from netip.AddrPort) {
	if a.clientAddr.Load() == nil {
		a.clientAddr.CompareAndSwap(nil, &from)
	}
}

// fromClientAddr says whether a datagram from `from` is the client's: from
// the host holding the TCP connection, from the address the request
// announced if it did, and, once the client's address is fixed, from it.
func (a *association) fromClientAddr(from netip.AddrPort, clientHost netip.Addr) bool {
	if from.Addr() != clientHost {
		return false
	}
	if e := a.expected; e != nil && (from.Addr() != e.Addr() || e.Port() != 0 && from.Port() != e.Port()) {
		return false
	}
	if fixed := a.clientAddr.Load(); fixed != nil && *fixed != from {
		return false
	}
	return true
}

// send writes one payload to a decided destination.
func (a *association) send(via *uplink, to netip.AddrPort, payload []byte) {
	if _, err := via.pc.WriteTo(payload, net.UDPAddrFromAddrPort(to)); err == nil {
		a.up.Add(int64(len(payload)))
		a.touch()
	}
}

// uplink returns the socket for datagrams through nic (pinned to it, or
// unpinned for upstream.System) and family, opening it (and its reply
// reader) on first use. The socket is made without a.mu held; of two
// deciders that race to open one, the second closes its own.
func (a *association) uplink(ctx context.Context, nic, family string) (*uplink, error) {
	key := nic + "|" + family
	a.mu.Lock()
	u, ok := a.uplinks[key]
	closed := a.closed
	a.mu.Unlock()
	if ok {
		return u, nil
	}
	if closed {
		return nil, errAssociationClosed
	}
	pc, err := a.ss.st.dialer.ListenPacket(ctx, nic, family)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		pc.Close()
		return nil, errAssociationClosed
	}
	if u, ok := a.uplinks[key]; ok {
		pc.Close()
		return u, nil
	}
	u = &uplink{pc: pc, nic: nic}
	a.uplinks[key] = u
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		a.fromUpstream(u)
	}()
	return u, nil
}

// acquireUDPLookup takes one of the server's maxLookupsTotal slots for a
// UDP name being decided, if one is free; it never waits.
func (s *Server) acquireUDPLookup() bool {
	select {
	case s.udpLookups <- struct{}{}:
		return true
	default:
		return false
	}
}

// releaseUDPLookup gives back a slot acquireUDPLookup took.
func (s *Server) releaseUDPLookup() { <-s.udpLookups }

// errAssociationClosed is a decision finished after its association ended.
var errAssociationClosed = errors.New("association closed")

// fromUpstream relays replies to the client, each behind a header naming
// the address it came from.
func (a *association) fromUpstream(u *uplink) {
	// The header is written just before the payload in one buffer, so a
	// reply costs no allocation and one copy-free send.
	const headroom = 4 + 16 + 2
	buf := make([]byte, headroom+64<<10)
	scratch := make([]byte, 0, headroom)
	for {
		n, from, err := u.pc.ReadFrom(buf[headroom:])
		if err != nil {
			return
		}
		src, ok := from.(*net.UDPAddr)
		to := a.clientAddr.Load()
		if !ok || to == nil {
			continue
		}
		// Only replies from destinations the client sent to: the pinned
		// socket must not let anyone else reach the client, nor keep the
		// association alive.
		srcAddr := netip.AddrPortFrom(src.AddrPort().Addr().Unmap(), src.AddrPort().Port())
		a.mu.Lock()
		_, known := a.sentTo[srcAddr]
		a.mu.Unlock()
		if !known {
			continue
		}
		hdr := socks5udp.AppendHeader(scratch[:0], src.AddrPort())
		start := headroom - len(hdr)
		copy(buf[start:], hdr)
		pkt := buf[start : headroom+n]
		if _, err := a.client.WriteToUDPAddrPort(pkt, *to); err == nil {
			a.down.Add(int64(n))
			a.touch()
		}
	}
}
