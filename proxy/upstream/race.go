package upstream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"nicproxy/bind"
)

// dialAddr connects to one address; race calls it once per address tried.
type dialAddr func(ctx context.Context, addr netip.Addr) (net.Conn, error)

// race connects to the first of addrs that answers, as RFC 8305 (Happy
// Eyeballs v2) describes for one host: the first address starts alone; when
// it has not connected after delay, the next starts beside it, and so on;
// an attempt that fails starts the next at once. The first connection wins
// and every other attempt is cancelled (a late winner is closed). ctx bounds
// the whole race. addrs should already be interleaved by family.
//
// A failure that says the NIC itself cannot carry the dial (missing, down,
// permission), or that the destination is refused, ends the race: no other
// address would do better through it.
// When every attempt fails, the first address's error is returned: it is
// the one the client most likely meant, and it had the most time.
//
// Every attempt's goroutine has ended when race returns.
func race(ctx context.Context, addrs []netip.Addr, delay time.Duration, dial dialAddr) (net.Conn, netip.Addr, error) {
	switch len(addrs) {
	case 0:
		return nil, netip.Addr{}, errors.New("no addresses to dial")
	case 1:
		conn, err := dial(ctx, addrs[0])
		return conn, addrs[0], err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type attempt struct {
		conn  net.Conn
		index int
		err   error
	}
	results := make(chan attempt, len(addrs)) // never blocks a loser
	started, running := 0, 0
	start := func() {
		i := started
		started++
		running++
		go func() {
			conn, err := dial(ctx, addrs[i])
			results <- attempt{conn, i, err}
		}()
	}
	next := time.NewTimer(delay)
	defer next.Stop()

	errs := make([]error, len(addrs))
	var fatal error
	winner := attempt{index: -1}
	start()
	for running > 0 && winner.index < 0 && fatal == nil {
		var tick <-chan time.Time
		if started < len(addrs) {
			tick = next.C
		}
		select {
		case r := <-results:
			running--
			switch {
			case r.err == nil:
				winner = r
			case nicUnusable(r.err):
				fatal = r.err
			default:
				errs[r.index] = r.err
				if started < len(addrs) && ctx.Err() == nil {
					start()
					next.Reset(delay)
				}
			}
		case <-tick:
			start()
			next.Reset(delay)
		}
	}
	cancel()
	for ; running > 0; running-- {
		if r := <-results; r.err == nil {
			r.conn.Close() // connected just after the winner
		}
	}
	switch {
	case winner.index >= 0:
		return winner.conn, addrs[winner.index], nil
	case fatal != nil:
		return nil, netip.Addr{}, fatal
	}
	for _, err := range errs {
		if err != nil {
			return nil, netip.Addr{}, err
		}
	}
	return nil, netip.Addr{}, ctx.Err()
}

// nicUnusable says the failure is the NIC's, not the address's, or a
// refusal of the destination itself (Options.CheckAddr): trying another
// address would not help.
func nicUnusable(err error) bool {
	return errors.Is(err, bind.ErrNICMissing) || errors.Is(err, bind.ErrNICDown) || errors.Is(err, bind.ErrPermission) ||
		errors.As(err, new(checkFailed))
}

// interleave orders a name's addresses for racing (RFC 8305 §4): families
// alternate, starting with IPv4 — a NIC picked for pinning more often has a
// working IPv4 route than an IPv6 one — each family in the server's order.
func interleave(v4, v6 []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(v4)+len(v6))
	for i := 0; i < len(v4) || i < len(v6); i++ {
		if i < len(v4) {
			out = append(out, v4[i])
		}
		if i < len(v6) {
			out = append(out, v6[i])
		}
	}
	return out
}
