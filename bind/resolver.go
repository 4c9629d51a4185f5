package bind

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"nicproxy/bind/dnscache"
)

// systemdUpstreams is where systemd-resolved lists the real nameservers
// behind its loopback stub (127.0.0.53).
const systemdUpstreams = "/run/systemd/resolve/resolv.conf"

// Resolver returns a resolver whose every query leaves through the Dialer's
// NIC. With servers, queries go to them (in turn); without, to the system's
// nameservers from resolv.conf, with the query sockets pinned all the same.
// A name chosen for ens160 is thus never looked up through ens33 — the leak
// that resolving with the default resolver first would cause.
//
// A loopback nameserver (systemd-resolved's 127.0.0.53, a local dnsmasq)
// cannot be reached through a NIC, and asking it unpinned would let it
// forward the query out of any NIC. Queries meant for it go to the servers
// systemd-resolved forwards to instead; without those, they fail with an
// error that says to set `dns` for the NIC.
//
// It is on its way out: dnscache.New with Dial set to d.DialContext does
// all this and caches answers for their TTL. It stays until every caller
// has moved.
func (d *Dialer) Resolver(servers []netip.AddrPort) *net.Resolver {
	return d.resolver(servers, systemdUpstreams)
}

func (d *Dialer) resolver(servers []netip.AddrPort, stubUpstreams string) *net.Resolver {
	var next atomic.Uint32
	return &net.Resolver{
		// The pure-Go resolver is the one that calls Dial; cgo's would
		// bypass the pin entirely.
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			targets := servers
			if len(targets) == 0 {
				ap, err := netip.ParseAddrPort(address)
				if err != nil || !ap.Addr().Unmap().IsLoopback() {
					return d.DialContext(ctx, network, address)
				}
				if targets = dnscache.Nameservers(stubUpstreams); len(targets) == 0 {
					return nil, &DialError{NIC: d.NIC, Network: network, Address: address, Kind: ErrNoRoute,
						Err: fmt.Errorf("the system nameserver %s is on loopback and cannot be reached through %s; set interfaces.%s.dns", ap.Addr(), d.NIC, d.NIC)}
				}
			}
			// Go asks each resolv.conf server in turn; map those tries onto
			// the chosen servers, in turn.
			i := int(next.Add(1)-1) % len(targets)
			return d.DialContext(ctx, network, targets[i].String())
		},
	}
}
