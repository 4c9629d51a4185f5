package bind

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"
)

// Resolver returns a resolver whose every query leaves through the Dialer's
// NIC. With servers, queries go to them (in turn); without, to the system's
// nameservers from resolv.conf, with the query sockets pinned all the same.
// A name chosen for ens160 is thus never looked up through ens33 — the leak
// that resolving with the default resolver first would cause.
func (d *Dialer) Resolver(servers []netip.AddrPort) *net.Resolver {
	var next atomic.Uint32
	return &net.Resolver{
		// The pure-Go resolver is the one that calls Dial; cgo's would
		// bypass the pin entirely.
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			if len(servers) > 0 {
				// Go asks each resolv.conf server in turn; map those tries
				// onto the configured servers, in turn.
				i := int(next.Add(1)-1) % len(servers)
				address = servers[i].String()
			}
			return d.DialContext(ctx, network, address)
		},
	}
}
